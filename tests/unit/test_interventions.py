"""An operator's interventions as tables: pause (reason, until), resume by itself,
cancel, retry, ad-hoc windows. No emulator."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from freshet.core import runs
from freshet.core.control import Control
from freshet.core.errors import Conflict, NotFound, ValidationError
from freshet.core.interventions import (
    adhoc_window,
    check_reason,
    decide_cancel,
    due_to_resume,
    parse_until,
    paused,
    resumed,
    retry_of,
    retry_run_id,
    with_window,
    without_window,
)
from freshet.core.lifecycle import (
    ClaimVerdict,
    FinishVerdict,
    RecoveryVerdict,
    SyncOutcome,
    decide_claim,
    decide_finish,
    decide_recovery,
)
from freshet.core.models import JobStatus, RunStatus, TriggerSource, new_job
from freshet.core.settings import load_settings

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
SETTINGS = load_settings({}, queued_grace_s=600, default_stuck_minutes=30)


def job(**kw):
    j = new_job(id="orders", kind="noop", schedule={"cron": "0 * * * *"},
                produces=["sales.orders"])
    return replace(j, next_run_at=T0 + 60 * MIN, **kw)


def queued_run(**kw):
    run = runs.new_run(job(), runs.scheduled_run_id("orders", T0), T0,
                       source=TriggerSource.SCHEDULE, now=T0, settings=SETTINGS)
    return replace(run, **kw)


def running_run():
    return runs.started(queued_run(), 1, T0 + MIN, timedelta(minutes=30))


# -- pause and resume ------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("2h", T0 + timedelta(hours=2)),
    ("90m", T0 + timedelta(minutes=90)),
    ("2026-11-29T08:00:00+01:00", datetime(2026, 11, 29, 7, 0, tzinfo=UTC)),
    (None, None),
    ("", None),
])
def test_until_is_a_time_or_a_duration_from_now(value, expected):
    assert parse_until(value, T0) == expected


@pytest.mark.parametrize("value, message", [
    ("2026-11-28T11:59:00Z", "must lie in the future"),
    ("2026-11-28T12:00:00Z", "must lie in the future"),
    ("400d", "must be within a year"),
    ("2026-11-28T13:00:00", "zone"),  # naive: which zone?
    ("soon", ""),
])
def test_a_bad_until_names_the_field(value, message):
    with pytest.raises(ValidationError) as exc:
        parse_until(value, T0)
    assert exc.value.field == "until" and message in str(exc.value)


@pytest.mark.parametrize("reason", [None, "", "   ", 7, "x" * 501])
def test_a_pause_needs_a_reason(reason):
    with pytest.raises(ValidationError) as exc:
        check_reason(reason)
    assert exc.value.field == "reason"


def test_pausing_records_why_by_whom_and_until_when():
    p = paused(job(), reason="vendor outage", until=T0 + 2 * 60 * MIN, by="ana", now=T0)
    assert (p.status, p.paused_reason, p.paused_by, p.paused_at, p.paused_until) == (
        JobStatus.PAUSED, "vendor outage", "ana", T0, T0 + 120 * MIN)
    again = paused(p, reason="still out", until=None, by="bo", now=T0 + MIN)
    assert (again.paused_reason, again.paused_until, again.paused_at) == ("still out", None, T0)


@pytest.mark.parametrize("status", [JobStatus.ARCHIVED, JobStatus.COMPLETED])
def test_only_an_active_or_paused_job_can_be_paused(status):
    with pytest.raises(Conflict):
        paused(job(status=status), reason="x", until=None, by="", now=T0)


@pytest.mark.parametrize("until, now, due", [
    (T0 + 60 * MIN, T0 + 59 * MIN, False),  # a minute early
    (T0 + 60 * MIN, T0 + 60 * MIN, True),  # at until
    (T0 + 60 * MIN, T0 + 61 * MIN, True),  # a minute late (the tick runs every minute)
    (None, T0 + 10_000 * MIN, False),  # no until: only a person resumes it
])
def test_a_pause_ends_by_itself_at_until(until, now, due):
    p = paused(job(), reason="x", until=until, by="", now=T0)
    assert due_to_resume(p, now) is due


def test_resuming_clears_the_pause_and_skips_the_missed_slots():
    p = paused(job(), reason="x", until=T0 + 150 * MIN, by="ana", now=T0)
    r = resumed(p, T0 + 150 * MIN)
    assert (r.status, r.paused_reason, r.paused_by, r.paused_until, r.paused_at) == (
        JobStatus.ACTIVE, "", "", None, None)
    assert r.next_run_at == T0 + 180 * MIN  # 15:00, not 13:00 or 14:00
    assert not due_to_resume(r, T0 + 200 * MIN)


def test_an_archived_job_is_not_resumed():
    with pytest.raises(Conflict):
        resumed(job(status=JobStatus.ARCHIVED), T0)


# -- cancel ------------------------------------------------------------------------------

@pytest.mark.parametrize("run", [queued_run(), running_run(),
                                 replace(queued_run(), status=RunStatus.RETRYING)],
                         ids=["queued", "running", "retrying"])
def test_a_cancelled_run_ends_with_no_lease_and_its_later_task_is_a_no_op(run):
    held = job(running_run_id=run.id)
    decision = decide_cancel(run, held, by="ana", now=T0 + 2 * MIN)
    ended = decision.run
    assert ended.status == RunStatus.CANCELLED and ended.lease_expires_at is None
    assert ended.finished_at == T0 + 2 * MIN and "cancelled by ana" in ended.error
    assert decision.job_fields == {"running_run_id": None, "updated_at": T0 + 2 * MIN}
    assert all(a.finished_at is not None for a in ended.attempts)
    # what the loop does next: a later delivery, the running sync's end, recovery
    claim = decide_claim(ended, held, None, 1, Control(), T0 + 3 * MIN, SETTINGS)
    assert claim.verdict == ClaimVerdict.DUPLICATE and claim.run is None
    finish = decide_finish(ended, 1, held, SyncOutcome(records={"sales.orders": 3}),
                           T0 + 3 * MIN, SETTINGS)
    assert finish.verdict == FinishVerdict.TAKEN_OVER and finish.datasets is None
    assert decide_recovery(ended, held, T0 + 90 * MIN, SETTINGS).verdict == \
        RecoveryVerdict.SETTLED


def test_cancelling_a_run_that_does_not_hold_its_job_leaves_the_job_alone():
    decision = decide_cancel(queued_run(), job(running_run_id="orders__other"), by="",
                             now=T0)
    assert decision.job_fields is None and decision.run.error == "cancelled while queued"


def test_cancelling_the_run_marked_running_ends_the_mark_its_datasets_show():
    run = running_run()
    marked = job(running_run_id=run.id, refresh_run_id=run.id, refresh_started_at=T0)
    decision = decide_cancel(run, marked, by="", now=T0 + MIN)
    assert decision.job_fields == {"running_run_id": None, "refresh_ended_run_id": run.id,
                                   "updated_at": T0 + MIN}
    assert not replace(marked, **decision.job_fields).refreshing


def test_cancelling_twice_changes_nothing_the_second_time():
    ended = decide_cancel(queued_run(), job(), by="", now=T0).run
    assert decide_cancel(ended, job(), by="", now=T0 + MIN) is None


@pytest.mark.parametrize("status", [RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.SKIPPED])
def test_a_finished_run_cannot_be_cancelled(status):
    with pytest.raises(Conflict, match="only a queued or running run"):
        decide_cancel(queued_run(status=status), job(), by="", now=T0)


def test_a_backfill_run_is_cancelled_with_its_backfill():
    with pytest.raises(Conflict, match="cancel the backfill"):
        decide_cancel(queued_run(backfill_id="bf-1", lane=0), job(), by="", now=T0)


# -- retry -------------------------------------------------------------------------------

def test_a_retry_is_one_new_run_of_the_same_slot():
    failed = runs.failed(running_run(), T0 + 5 * MIN, "boom")
    again = retry_of(failed, job(), now=T0 + 30 * MIN, settings=SETTINGS)
    assert again.id == retry_run_id(failed) != failed.id
    assert again.id.startswith("orders__r") and runs.job_of_run(again.id) == "orders"
    assert (again.status, again.attempt_number, again.trigger_source) == (
        RunStatus.QUEUED, 1, TriggerSource.RETRY)
    assert again.scheduled_for == failed.scheduled_for
    assert again.interval_start == failed.interval_start
    assert again.lease_expires_at == T0 + 40 * MIN  # the grace counts from now
    assert retry_of(failed, job(), now=T0 + 31 * MIN, settings=SETTINGS).id == again.id


@pytest.mark.parametrize("status", [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.SUCCEEDED,
                                    RunStatus.SKIPPED, RunStatus.RETRYING])
def test_only_a_failed_or_cancelled_run_is_retried(status):
    with pytest.raises(Conflict, match="only a failed or cancelled run"):
        retry_of(queued_run(status=status), job(), now=T0, settings=SETTINGS)


def test_a_run_of_an_archived_job_is_not_retried():
    failed = runs.failed(running_run(), T0, "boom")
    with pytest.raises(Conflict, match="archived"):
        retry_of(failed, job(status=JobStatus.ARCHIVED), now=T0, settings=SETTINGS)


# -- ad-hoc windows ----------------------------------------------------------------------

def test_an_adhoc_window_starts_now_and_lasts_n_minutes():
    w = adhoc_window(minutes=30, note="warehouse vacuum", by="ana", now=T0)
    assert (w.start, w.end, w.note) == (T0, T0 + 30 * MIN, "warehouse vacuum (by ana)")
    control = Control.from_doc({"adhoc_maintenance": [w.to_doc()]})
    assert control.maintenance.blocking_job("orders", [], T0 + 29 * MIN) is not None
    assert control.maintenance.blocking_job("orders", [], T0 + 30 * MIN) is None


@pytest.mark.parametrize("minutes, note, field", [
    (0, "x", "minutes"), (1441, "x", "minutes"), ("ten", "x", "minutes"), (True, "x", "minutes"),
    (10, "", "note"), (10, None, "note"), (10, "x" * 501, "note"),
])
def test_a_bad_adhoc_window_names_the_field(minutes, note, field):
    with pytest.raises(ValidationError) as exc:
        adhoc_window(minutes=minutes, note=note, by="", now=T0)
    assert exc.value.field == field


def test_declared_and_adhoc_windows_both_hold_jobs():
    declared = adhoc_window(minutes=10, note="declared", by="", now=T0)
    adhoc = adhoc_window(minutes=60, note="adhoc", by="", now=T0 + MIN)
    control = Control.from_doc({"maintenance": [replace(declared, id="nightly").to_doc()],
                                "adhoc_maintenance": [adhoc.to_doc()]})
    assert [o.window.id for o in control.maintenance.active(T0 + 5 * MIN)] == [
        "nightly", adhoc.id]


def test_over_windows_are_dropped_when_one_is_added_and_twenty_is_the_limit():
    old = adhoc_window(minutes=5, note="old", by="", now=T0).to_doc()
    new = adhoc_window(minutes=5, note="new", by="", now=T0 + 10 * MIN)
    assert [w["note"] for w in with_window([old], new, T0 + 10 * MIN)] == ["new"]
    many = [replace(new, id=f"w{i}").to_doc() for i in range(20)]
    with pytest.raises(Conflict, match="at most 20"):
        with_window(many, new, T0 + 10 * MIN)


def test_ending_an_adhoc_window_ends_it_now():
    w = adhoc_window(minutes=60, note="x", by="", now=T0)
    ended = without_window([w.to_doc()], w.id, T0 + 5 * MIN)
    control = Control.from_doc({"adhoc_maintenance": ended})
    assert control.maintenance.active(T0 + 5 * MIN) == []
    with pytest.raises(NotFound):
        without_window([w.to_doc()], "ghost", T0)
