"""The pure rules of work on an engine: external ids, the poll schedule, the verdict of
a poll (BigQuery jobs, Cloud Run executions), transient poll errors and timeouts."""

import re
from datetime import UTC, datetime, timedelta

import pytest

from freshet.core.external import (
    ATTEMPT_ENV,
    RUN_ENV,
    EngineState,
    EngineStatus,
    PollAction,
    deadline_of,
    decide_poll,
    external_job_id,
    is_marked,
    judge_bigquery,
    judge_cloud_run,
    judge_poll_error,
    label_value,
    poll_delay,
    polls_for,
    run_labels,
    run_marker,
)

T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
S = timedelta(seconds=1)
JOB_ID_RULE = re.compile(r"^[A-Za-z0-9_-]{1,1024}$")  # BigQuery's job id rule
LABEL_RULE = re.compile(r"^[a-z0-9_-]{0,63}$")


# -- external ids -------------------------------------------------------------------


@pytest.mark.parametrize(("run_id", "attempt", "expected"), [
    ("nightly__20261207T0600", 1, "freshet_nightly__20261207T0600_1"),
    ("nightly__20261207T0600", 2, "freshet_nightly__20261207T0600_2"),
    ("rollup-eu", 0, "freshet_rollup-eu_0"),
])
def test_a_clean_run_id_gives_freshet_run_attempt(run_id, attempt, expected):
    assert external_job_id(run_id, attempt) == expected


def test_the_same_run_and_attempt_always_give_the_same_job_id():
    assert external_job_id("a.b:c", 3) == external_job_id("a.b:c", 3)


def test_characters_bigquery_refuses_are_replaced_and_the_id_stays_unique():
    dotted, underscored = external_job_id("vendor.orders", 1), external_job_id("vendor_orders", 1)
    assert JOB_ID_RULE.match(dotted)
    assert dotted != underscored  # a digest of the original keeps them apart
    assert dotted.startswith("freshet_vendor_orders_") and dotted.endswith("_1")


def test_a_very_long_run_id_is_cut_to_bigquerys_limit_and_stays_distinct():
    a, b = external_job_id("x" * 2000, 1), external_job_id("x" * 1999 + "y", 1)
    assert len(a) <= 1024 and JOB_ID_RULE.match(a)
    assert a != b


def test_each_attempt_has_its_own_job_id():
    assert external_job_id("r", 1) != external_job_id("r", 2)


def test_a_negative_attempt_is_refused():
    with pytest.raises(ValueError):
        external_job_id("r", -1)


@pytest.mark.parametrize("text", ["nightly", "Nightly.Orders", "a" * 100, "job:x/y"])
def test_label_values_keep_googles_rule(text):
    value = label_value(text)
    assert LABEL_RULE.match(value)
    assert (value == text) == (text == "nightly")


def test_run_labels_name_job_run_and_attempt():
    labels = run_labels("orders__20261207T0600", 2, "orders")
    assert labels == {"freshet-job": "orders", "freshet-run": label_value("orders__20261207T0600"),
                      "freshet-attempt": "2"}
    assert all(LABEL_RULE.match(v) for v in labels.values())


def test_an_execution_is_the_runs_only_when_run_and_attempt_both_match():
    env = run_marker("r1", 2)
    assert env == {RUN_ENV: "r1", ATTEMPT_ENV: "2"}
    assert is_marked(env, "r1", 2)
    assert not is_marked(env, "r1", 1)
    assert not is_marked(env, "r2", 2)
    assert not is_marked({}, "r1", 2)


# -- the poll schedule ----------------------------------------------------------------


@pytest.mark.parametrize(("polls", "seconds"), [
    (0, 10), (1, 20), (2, 40), (3, 80), (4, 120), (5, 120), (100, 120), (10_000, 120)])
def test_polls_start_at_10s_and_double_up_to_two_minutes(polls, seconds):
    assert poll_delay(polls) == timedelta(seconds=seconds)


def test_the_cap_is_configurable():
    assert poll_delay(10, cap=timedelta(minutes=10)) == timedelta(minutes=10)
    assert poll_delay(3, cap=timedelta(seconds=30)) == timedelta(seconds=30)


def test_a_cap_below_the_first_poll_still_waits_the_first_poll():
    assert poll_delay(0, cap=timedelta(seconds=1)) == timedelta(seconds=10)


def test_polls_over_ten_minutes_stay_few():
    """A 10-minute job is polled about 8 times, not 60."""
    waited, polls = timedelta(0), 0
    while waited < timedelta(minutes=10):
        waited += poll_delay(polls)
        polls += 1
    assert polls == 8


# -- BigQuery's verdict ---------------------------------------------------------------


@pytest.mark.parametrize(("state", "reason", "message", "expected"), [
    ("PENDING", "", "", EngineState.RUNNING),
    ("RUNNING", "", "", EngineState.RUNNING),
    ("DONE", "", "", EngineState.SUCCEEDED),
    ("DONE", "invalidQuery", "Syntax error", EngineState.FAILED),
    ("DONE", "bytesBilledLimitExceeded", "Query exceeded limit", EngineState.FAILED),
    ("DONE", "stopped", "Job execution was cancelled: User requested cancellation",
     EngineState.CANCELLED),
    ("DONE", "timeout", "Job timed out after 10 min", EngineState.FAILED),
    ("WEIRD", "", "", EngineState.FAILED),
])
def test_a_bigquery_job_is_done_and_clean_to_succeed(state, reason, message, expected):
    status = judge_bigquery(state, reason, message)
    assert status.state == expected
    if expected in (EngineState.FAILED, EngineState.CANCELLED):
        assert status.error


def test_a_bigquery_failure_says_the_reason_and_message():
    status = judge_bigquery("DONE", "bytesBilledLimitExceeded", "Query exceeded limit")
    assert status.error == "bytesBilledLimitExceeded: Query exceeded limit"


# -- Cloud Run's verdict (apache/airflow#57791) ------------------------------------


def cloud_run(task_count=3, succeeded=0, failed=0, cancelled=0, running=0, completed=False):
    return judge_cloud_run(task_count=task_count, succeeded=succeeded, failed=failed,
                           cancelled=cancelled, running=running, completed=completed)


@pytest.mark.parametrize(("counts", "expected"), [
    (dict(running=3), EngineState.RUNNING),
    (dict(succeeded=2, running=1), EngineState.RUNNING),
    (dict(succeeded=3, completed=True), EngineState.SUCCEEDED),
    (dict(succeeded=3), EngineState.SUCCEEDED),  # every task accounted for
    (dict(succeeded=2, failed=1, completed=True), EngineState.FAILED),
    (dict(succeeded=2, failed=1), EngineState.FAILED),
    # the Airflow bug: cancelled, nothing failed, yet not every task succeeded
    (dict(succeeded=1, cancelled=2, completed=True), EngineState.CANCELLED),
    (dict(cancelled=3, completed=True), EngineState.CANCELLED),
    # completed with tasks unaccounted for: a partial execution is no success
    (dict(succeeded=2, completed=True), EngineState.FAILED),
    (dict(task_count=0, completed=True), EngineState.FAILED),
    # completed while the counts still show a task running: they lag, look again
    (dict(succeeded=2, running=1, completed=True), EngineState.RUNNING),
])
def test_a_cloud_run_execution_succeeds_only_when_every_task_succeeded(counts, expected):
    assert cloud_run(**counts).state == expected


def test_a_cloud_run_verdict_keeps_the_task_counts():
    status = cloud_run(succeeded=2, failed=1, completed=True)
    assert dict(status.stats) == {"task_count": 3, "succeeded": 2, "failed": 1, "cancelled": 0}
    assert "2 of 3 tasks succeeded, 1 failed" in status.error


# -- poll errors (prefect#22096) --------------------------------------------------


def test_a_transient_poll_error_is_poll_again_never_a_failure():
    assert judge_poll_error(True, "503 Service Unavailable") is None
    decision = decide_poll(None, polls=3, now=T0, deadline=T0 + timedelta(hours=2))
    assert decision.action == PollAction.WAIT
    assert decision.next_poll_at == T0 + timedelta(seconds=80)


def test_a_permanent_poll_error_fails_with_what_the_engine_said():
    status = judge_poll_error(False, "404 job not found")
    assert status.state == EngineState.FAILED and "404 job not found" in status.error


# -- timeouts and cancels --------------------------------------------------------------


RUNNING = EngineStatus(EngineState.RUNNING)


def test_no_timeout_means_no_deadline():
    assert deadline_of(T0, None) is None
    assert deadline_of(T0, timedelta(hours=1)) == T0 + timedelta(hours=1)


@pytest.mark.parametrize(("offset", "action"), [
    (-S, PollAction.WAIT), (0 * S, PollAction.CANCEL), (S, PollAction.CANCEL)])
def test_the_timeout_cancels_on_the_engine_from_the_deadline_on(offset, action):
    deadline = T0 + timedelta(hours=1)
    decision = decide_poll(RUNNING, polls=9, now=deadline + offset, deadline=deadline)
    assert decision.action == action


def test_the_next_poll_is_never_later_than_the_deadline():
    deadline = T0 + timedelta(seconds=30)
    decision = decide_poll(RUNNING, polls=9, now=T0, deadline=deadline)
    assert decision.next_poll_at == deadline


def test_an_end_reported_after_the_deadline_is_recorded_not_cancelled():
    done = EngineStatus(EngineState.SUCCEEDED)
    decision = decide_poll(done, polls=9, now=T0 + timedelta(days=1), deadline=T0)
    assert decision.action == PollAction.FINISH and decision.status == done


def test_a_requested_cancel_cancels_running_work():
    decision = decide_poll(RUNNING, polls=0, now=T0, deadline=None, cancel_requested=True)
    assert decision.action == PollAction.CANCEL


def test_a_run_waiting_two_hours_without_timeout_keeps_waiting_at_the_cap():
    decision = decide_poll(RUNNING, polls=60, now=T0 + timedelta(hours=2), deadline=None)
    assert decision.action == PollAction.WAIT
    assert decision.next_poll_at == T0 + timedelta(hours=2, minutes=2)


@pytest.mark.parametrize(("minutes", "polls"), [
    (0, 1), (0.1, 1), (0.5, 2), (10, 8), (60, 33)])
def test_polls_for_work_of_a_length_see_its_end(minutes, polls):
    # 10, 20, 40, 80 s, then every 2 minutes: 150 s after four polls
    assert polls_for(timedelta(minutes=minutes)) == polls
