"""core.waiting's rules as tables: which poll task is current, when the work must be
cancelled, how an engine's end becomes a run's outcome, and how a waiting run is
recovered (core.lifecycle.decide_recovery)."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from freshet.core import runs
from freshet.core.control import Control
from freshet.core.external import EngineState, EngineStatus, PollAction, PollDecision
from freshet.core.lifecycle import FinishVerdict, RecoveryVerdict, decide_recovery
from freshet.core.models import External, RunStatus, new_job
from freshet.core.settings import load_settings
from freshet.core.waiting import (
    cancel_reason,
    decide_ended,
    decide_polled,
    ended_outcome,
    is_current,
    poll_action,
    unconfirmed_cancel,
)
from freshet.core.windows import Maintenance, make_window

T0 = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
SETTINGS = load_settings({})
GRACE = timedelta(seconds=SETTINGS.queued_grace_s)
EXTERNAL = External("bigquery", "freshet_nightly__1_1", submitted_at=T0,
                    next_poll_at=T0 + timedelta(seconds=10))


def job():
    return new_job(id="nightly", kind="bigquery_query", schedule={"cron": "0 2 * * *"},
                   produces=["mart.daily"], max_retries=1)


def waiting(polls: int = 0):
    run = runs.new_run(job(), "nightly__1", T0, source="schedule", now=T0, settings=SETTINGS)
    run = runs.started(run, 1, T0, timedelta(minutes=30))
    return runs.waiting(run, replace(EXTERNAL, polls=polls), GRACE)


@pytest.mark.parametrize(("attempt", "poll", "current"), [
    (1, 4, True), (1, 3, False), (1, 5, False), (2, 4, False)])
def test_only_the_poll_the_run_waits_for_is_current(attempt, poll, current):
    assert is_current(waiting(polls=3), attempt, poll) is current


def test_a_finished_run_has_no_current_poll():
    done = runs.succeeded(waiting(), T0, {})
    assert not is_current(done, 1, 1)


def window(mode: str) -> Control:
    w = make_window({"id": "vacuum", "cron": "0 2 * * *", "duration": "30m", "mode": mode,
                     "note": "warehouse vacuum"}, "m")
    return Control(maintenance=Maintenance((w,)))


@pytest.mark.parametrize(("control", "why"), [
    (Control(), ""),
    (Control(disabled_kinds=frozenset({"bigquery_query"}), reason="bad data"),
     "kill switch (bad data)"),
    (Control(paused_all=True), "kill switch"),
    (window("skip"), "vacuum"),
    (window("drain"), ""),  # a drain window lets work under way finish
])
def test_the_work_is_cancelled_for_a_kill_switch_or_a_skip_window(control, why):
    said = cancel_reason(waiting(), control, T0 + timedelta(minutes=5))
    assert (why in said) if why else said == ""


def test_a_poll_renews_the_lease_and_sends_the_next_named_poll():
    at = T0 + timedelta(minutes=1)
    decision = PollDecision(PollAction.WAIT, at + timedelta(seconds=40), reason="running")
    made = decide_polled(waiting(polls=1), 2, decision, at, SETTINGS)
    assert made.verdict == FinishVerdict.WAITING
    assert made.run.external.polls == 2 and made.run.external.next_poll_at == \
        at + timedelta(seconds=40)
    assert made.run.lease_expires_at == at + timedelta(seconds=40) + GRACE
    assert (made.send.poll, made.send.at) == (3, at + timedelta(seconds=40))


def test_a_cancel_is_asked_once_then_the_run_waits_for_the_engine_to_say_so():
    asked = decide_polled(waiting(), 1, PollDecision(PollAction.CANCEL, T0), T0, SETTINGS,
                          cancel_asked="timed out")
    external = asked.run.external
    assert (external.cancel_reason, external.cancelled_at) == ("timed out", T0)
    assert poll_action(PollDecision(PollAction.CANCEL, T0), external) == PollAction.WAIT
    assert poll_action(PollDecision(PollAction.CANCEL, T0), EXTERNAL) == PollAction.CANCEL


@pytest.mark.parametrize(("state", "error", "permanent"), [
    (EngineState.SUCCEEDED, None, False),
    (EngineState.FAILED, "syntax error", False),  # a new attempt starts new work
    (EngineState.CANCELLED, "timed out (cancelled: 1 of 2 tasks succeeded)", True),
])
def test_the_engines_end_as_a_runs_outcome(state, error, permanent):
    status = EngineStatus(state, "syntax error" if state == EngineState.FAILED else
                          "cancelled: 1 of 2 tasks succeeded" if error else "")
    outcome = ended_outcome(status, replace(EXTERNAL, cancel_reason="timed out"),
                            {"mart.daily": 3})
    assert (outcome.error, outcome.permanent) == (error, permanent)


def test_an_end_with_attempts_left_sends_the_next_attempt_itself():
    outcome = ended_outcome(EngineStatus(EngineState.FAILED, "boom"), EXTERNAL)
    made = decide_ended(waiting(polls=5), 1, 6, job(), outcome, T0, SETTINGS)
    assert made.verdict == FinishVerdict.RETRYING
    assert (made.send.attempt, made.send.poll) == (2, None)
    assert made.run.external.polls == 6


def test_recovery_polls_a_waiting_run_again_and_never_fails_it():
    run = waiting(polls=7)
    late = run.lease_expires_at + timedelta(hours=5)
    made = decide_recovery(run, None, late, SETTINGS, job_read=False)
    assert made.verdict == RecoveryVerdict.REPOLLED
    assert made.run.status == RunStatus.WAITING and made.run.external.polls == 8
    assert (made.send.poll, made.send.at) == (9, late)
    assert decide_recovery(run, None, run.lease_expires_at - timedelta(seconds=1),
                           SETTINGS).verdict == RecoveryVerdict.SETTLED


def test_the_attempts_whose_work_may_exist_unrecorded_are_the_abandoned_and_retried_ones():
    run = runs.new_run(job(), "nightly__1", T0, source="schedule", now=T0, settings=SETTINGS)
    first = runs.retrying(runs.started(run, 1, T0, timedelta(minutes=30)), T0, "503",
                          GRACE)  # its submit's answer was lost
    second = runs.retrying(runs.started(first, 2, T0, timedelta(minutes=30)), T0, "stuck",
                           GRACE, stuck=True)  # recovery took it over
    third = runs.started(second, 3, T0, timedelta(minutes=30))
    assert runs.unrecorded_attempts(third) == (1, 2)
    assert runs.unrecorded_attempts(runs.started(run, 1, T0, GRACE)) == ()


@pytest.mark.parametrize(("asked_ago", "state", "ends"), [
    (None, EngineState.RUNNING, False),  # never asked
    (timedelta(minutes=9), EngineState.RUNNING, False),
    (timedelta(minutes=10), EngineState.RUNNING, True),
    (timedelta(minutes=30), EngineState.SUCCEEDED, False),  # the engine's end stands
])
def test_a_cancel_the_engine_never_confirms_ends_the_run_after_ten_minutes(asked_ago, state,
                                                                          ends):
    now = T0 + timedelta(hours=1)
    external = replace(EXTERNAL, cancelled_at=None if asked_ago is None else now - asked_ago,
                       cancel_reason="timed out")
    status = unconfirmed_cancel(EngineStatus(state), external, now)
    assert (status.state == EngineState.CANCELLED) is ends
    assert unconfirmed_cancel(None, replace(external, cancelled_at=None), now) is None
