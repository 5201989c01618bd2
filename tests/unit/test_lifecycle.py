"""The rules of a run's life as tables: claim, finish and recovery, with no emulator."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from freshet.core import runs
from freshet.core.bookkeeping import with_running
from freshet.core.control import Control
from freshet.core.errors import ValidationError
from freshet.core.lifecycle import (
    OVERLAP_RETRY_DELAY,
    ClaimVerdict,
    DatasetEvent,
    FinishVerdict,
    RecoveryVerdict,
    SyncOutcome,
    decide_claim,
    decide_finish,
    decide_recovery,
    holder_to_check,
    recovery_reads_job,
)
from freshet.core.models import (
    AttemptOutcome,
    Dataset,
    JobStatus,
    LastRun,
    Run,
    RunStatus,
    TriggerSource,
    new_job,
)
from freshet.core.settings import load_settings

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
SETTINGS = load_settings({}, queued_grace_s=600, default_stuck_minutes=30)


def job(**kw):
    j = new_job(id="orders", kind="noop", schedule={"cron": "0 * * * *"},
                produces=["sales.orders"], max_retries=kw.pop("max_retries", 2),
                allow_overlap=kw.pop("allow_overlap", False))
    return replace(j, **kw)


def queued(j=None, run_id="orders__20261128T120000Z"):
    j = j or job()
    return runs.new_run(j, run_id, T0, source="schedule", now=T0, settings=SETTINGS)


def running(attempt=1, at=T0, **kw):
    return replace(runs.started(queued(), attempt, at, 30 * MIN), **kw)


def retrying(attempt=1):
    return runs.retrying(running(attempt), T0 + MIN, "HTTP 503", 10 * MIN)


# -- claim ------------------------------------------------------------------------------

CLAIMS = [
    # (case, run, attempt, control, expected verdict)
    ("unknown run", None, 1, Control(), ClaimVerdict.ORPHAN),
    ("duplicate delivery of a finished run",
     runs.succeeded(running(), T0 + MIN, {}), 1, Control(), ClaimVerdict.DUPLICATE),
    ("duplicate delivery of a failed run",
     runs.failed(running(), T0 + MIN, "boom"), 1, Control(), ClaimVerdict.DUPLICATE),
    ("duplicate delivery while it runs", running(), 1, Control(), ClaimVerdict.DUPLICATE),
    ("stale: an older attempt arrives late", replace(queued(), attempt_number=2), 1, Control(),
     ClaimVerdict.STALE),
    ("stale: the failed attempt delivered again", retrying(1), 1, Control(),
     ClaimVerdict.STALE),
    ("beyond the allowance (3 attempts)", queued(), 99, Control(), ClaimVerdict.STALE),
    ("the last allowed attempt", retrying(2), 3, Control(), ClaimVerdict.START),
    ("kill switch: kind off", queued(), 1, Control(disabled_kinds=frozenset({"noop"})),
     ClaimVerdict.DISABLED),
    ("kill switch: everything paused", queued(), 1, Control(paused_all=True),
     ClaimVerdict.DISABLED),
    ("a queued run starts", queued(), 1, Control(), ClaimVerdict.START),
    ("the retry starts", retrying(1), 2, Control(), ClaimVerdict.START),
]


@pytest.mark.parametrize("case,run,attempt,control,verdict", CLAIMS, ids=[c[0] for c in CLAIMS])
def test_claim_table(case, run, attempt, control, verdict):
    decision = decide_claim(run, job(), None, attempt, control, T0 + 2 * MIN, SETTINGS)
    assert decision.verdict == verdict, decision.detail
    if verdict in (ClaimVerdict.DUPLICATE, ClaimVerdict.STALE, ClaimVerdict.ORPHAN):
        assert decision.run is None and decision.job_fields is None and decision.send is None


def test_a_claim_of_a_run_whose_job_is_gone_writes_nothing():
    decision = decide_claim(queued(), None, None, 1, Control(), T0, SETTINGS)
    assert decision.verdict == ClaimVerdict.ORPHAN and decision.run is None


def test_starting_takes_the_job_marks_it_running_and_sets_the_lease():
    j = job(stuck_threshold_minutes=20)
    decision = decide_claim(queued(j), j, None, 1, Control(), T0, SETTINGS)
    assert decision.run.status == RunStatus.RUNNING
    assert decision.run.lease_expires_at == T0 + 20 * MIN
    assert decision.job_fields == {"running_run_id": queued().id,
                                   "refresh_run_id": queued().id, "refresh_started_at": T0,
                                   "refresh_ended_run_id": None}
    assert decision.datasets is None  # one job document, not one write per dataset
    marked = replace(j, **decision.job_fields)
    [shown] = with_running([Dataset("sales.orders")], [marked])
    assert shown.running_run_id == queued().id and shown.last_started_at == T0


def test_a_job_that_allows_overlap_is_marked_running_without_a_hold():
    j = job(allow_overlap=True)
    decision = decide_claim(queued(j), j, None, 1, Control(), T0, SETTINGS)
    assert decision.job_fields == {"refresh_run_id": queued().id, "refresh_started_at": T0,
                                   "refresh_ended_run_id": None}


def test_an_ending_records_its_start_on_the_datasets_and_ends_the_mark():
    j = job()
    claimed = decide_claim(queued(j), j, None, 1, Control(), T0, SETTINGS)
    marked = replace(j, **claimed.job_fields)
    done = decide_finish(claimed.run, 1, marked, SyncOutcome(records={}), T0 + MIN, SETTINGS)
    ended = replace(marked, **done.job_fields)
    assert not ended.refreshing
    after = done.datasets.apply(Dataset("sales.orders"))
    assert after.last_started_at == T0 and after.last_started_run_id == queued().id
    assert not after.running and after.last_success_at == T0 + MIN
    assert with_running([after], [ended]) == [after]


@pytest.mark.parametrize("run,delivered,starts", [
    (queued(), 1, 1),
    (queued(), 3, 1),  # two deliveries answered 5xx before claiming: no attempt ran
    (retrying(1), 2, 2),
    (retrying(1), 3, 2),  # the retry's first delivery timed out before claiming
])
def test_the_run_not_the_retry_count_says_which_attempt_starts(run, delivered, starts):
    decision = decide_claim(run, job(), None, delivered, Control(), T0 + 2 * MIN, SETTINGS)
    assert decision.verdict == ClaimVerdict.START
    assert decision.run.attempt_number == starts


def test_the_kill_switch_fails_the_run_without_running_it():
    decision = decide_claim(queued(), job(), None, 1,
                            Control(disabled_kinds=frozenset({"noop"}), reason="outage"),
                            T0, SETTINGS)
    assert decision.run.status == RunStatus.FAILED and "outage" in decision.run.error
    assert decision.datasets is None and decision.job_fields is None


def holder(status=RunStatus.RUNNING, lease=T0 + 10 * MIN):
    other = runs.started(queued(run_id="orders__20261128T110000Z"), 1, T0 - 20 * MIN, 30 * MIN)
    return replace(other, status=status, lease_expires_at=lease)


@pytest.mark.parametrize("case,held_by,allow,verdict", [
    ("the holder runs with a live lease", holder(), False, ClaimVerdict.DEFER),
    ("the holder's lease ran out (recovery's turn)", holder(lease=T0 - MIN), False,
     ClaimVerdict.START),
    ("the holder finished", holder(status=RunStatus.SUCCEEDED, lease=None), False,
     ClaimVerdict.START),
    ("the job allows overlap", holder(), True, ClaimVerdict.START),
    ("nobody holds the job", None, False, ClaimVerdict.START),
])
def test_overlap_table(case, held_by, allow, verdict):
    j = job(allow_overlap=allow, running_run_id=held_by.id if held_by else None)
    run = queued(j)
    assert holder_to_check(run, j) == (None if allow or held_by is None else held_by.id)
    decision = decide_claim(run, j, held_by, 1, Control(), T0, SETTINGS)
    assert decision.verdict == verdict
    if verdict == ClaimVerdict.DEFER:
        # a new task later, under the same attempt: no attempt is burnt waiting
        assert decision.run.status == RunStatus.QUEUED and decision.run.attempt_number == 1
        assert decision.send.at == T0 + OVERLAP_RETRY_DELAY
        assert decision.send.dispatch == decision.run.dispatches == 1


def test_a_deferred_retry_keeps_its_attempt_number():
    j = job(running_run_id=holder().id)
    decision = decide_claim(retrying(1), j, holder(), 2, Control(), T0 + 2 * MIN, SETTINGS)
    assert decision.verdict == ClaimVerdict.DEFER
    assert decision.run.attempt_number == 2 and decision.send.attempt == 2


# -- finish -----------------------------------------------------------------------------

FINISHES = [
    # (case, attempt of the run, max_retries, outcome, expected verdict, HTTP-level note)
    ("success", 1, 2, SyncOutcome(records={"sales.orders": 5}), FinishVerdict.SUCCEEDED),
    ("transient, attempts left", 1, 2, SyncOutcome(error="HTTP 503"), FinishVerdict.RETRYING),
    ("transient on the last attempt", 3, 2, SyncOutcome(error="HTTP 503"),
     FinishVerdict.FAILED),
    ("permanent on the first attempt", 1, 2, SyncOutcome(error="HTTP 404", permanent=True),
     FinishVerdict.FAILED),
    ("transient with no retries", 1, 0, SyncOutcome(error="HTTP 503"), FinishVerdict.FAILED),
]


@pytest.mark.parametrize("case,attempt,retries,outcome,verdict", FINISHES,
                         ids=[f[0] for f in FINISHES])
def test_finish_table(case, attempt, retries, outcome, verdict):
    j = job(max_retries=retries, running_run_id=queued().id)
    run = runs.started(queued(j), attempt, T0, 30 * MIN)
    decision = decide_finish(run, attempt, j, outcome, T0 + MIN, SETTINGS)
    assert decision.verdict == verdict
    assert decision.job_fields["running_run_id"] is None  # the job's hold is released
    match verdict:
        case FinishVerdict.SUCCEEDED:
            assert decision.run.status == RunStatus.SUCCEEDED
            assert decision.job_fields["last_run_status"] == LastRun.SUCCEEDED
            assert decision.job_fields["last_error"] is None
            assert decision.datasets.event == DatasetEvent.SUCCESS
            assert decision.datasets.records == {"sales.orders": 5}
        case FinishVerdict.RETRYING:
            assert decision.run.status == RunStatus.RETRYING
            assert decision.run.attempts[-1].outcome == AttemptOutcome.RETRYING
            assert decision.datasets is None  # a retry is not yet a failure of the data
            assert decision.run.lease_expires_at == T0 + MIN + 10 * MIN
        case FinishVerdict.FAILED:
            assert decision.run.status == RunStatus.FAILED
            assert decision.job_fields["last_run_status"] == LastRun.FAILED
            assert decision.job_fields["last_error"] == outcome.error
            assert decision.datasets.event == DatasetEvent.FAILURE


def test_a_finish_after_recovery_took_the_attempt_over_changes_nothing():
    run = runs.started(queued(), 1, T0, 30 * MIN)
    taken = runs.redispatched(runs.retrying(run, T0 + 31 * MIN, "stuck", 10 * MIN, stuck=True),
                              T0 + 31 * MIN, 10 * MIN, next_attempt=True)
    decision = decide_finish(taken, 1, job(), SyncOutcome(records={}), T0 + 40 * MIN, SETTINGS)
    assert decision.verdict == FinishVerdict.TAKEN_OVER
    assert decision.run is None and decision.job_fields is None and decision.datasets is None


def test_a_one_time_job_completes_with_its_run():
    j = replace(job(), schedule=replace(job().schedule, cron=None, run_at=T0))
    run = runs.started(queued(j), 1, T0, 30 * MIN)
    decision = decide_finish(run, 1, j, SyncOutcome(records={}), T0 + MIN, SETTINGS)
    assert decision.job_fields["status"] == JobStatus.COMPLETED


def test_errors_are_capped_where_they_are_kept():
    run = runs.started(queued(), 3, T0, 30 * MIN)  # the last attempt: the run fails
    decision = decide_finish(run, 3, job(), SyncOutcome(error="x" * 50_000), T0 + MIN,
                             SETTINGS)
    assert len(decision.run.error) <= 2000 and len(decision.job_fields["last_error"]) <= 2000
    assert len(decision.run.attempts[-1].error) <= 2000


# -- recovery ---------------------------------------------------------------------------

NOW = T0 + 45 * MIN

RECOVERIES = [
    # (case, run, expected verdict)
    ("queued, its task never arrived", replace(queued(), lease_expires_at=NOW - MIN),
     RecoveryVerdict.REDISPATCHED),
    ("retrying, its retry never arrived", replace(retrying(1), lease_expires_at=NOW - MIN),
     RecoveryVerdict.REDISPATCHED),
    ("running past its lease, attempts left", running(1), RecoveryVerdict.STUCK_RETRIED),
    ("running past its lease, last attempt", running(3), RecoveryVerdict.STUCK_FAILED),
    ("renewed since the sweep's query", running(1, at=NOW - MIN), RecoveryVerdict.SETTLED),
    ("finished since the sweep's query", runs.succeeded(running(1), NOW - MIN, {}),
     RecoveryVerdict.SETTLED),
    ("gone", None, RecoveryVerdict.SETTLED),
]


@pytest.mark.parametrize("case,run,verdict", RECOVERIES, ids=[r[0] for r in RECOVERIES])
def test_recovery_table(case, run, verdict):
    j = job(running_run_id=run.id if run else None)
    decision = decide_recovery(run, j, NOW, SETTINGS)
    assert decision.verdict == verdict
    match verdict:
        case RecoveryVerdict.REDISPATCHED:
            next_attempt = run.status == RunStatus.RETRYING
            assert decision.run.status == RunStatus.QUEUED
            assert decision.run.attempt_number == run.attempt_number + next_attempt
            assert decision.send.attempt == decision.run.attempt_number
            assert decision.run.lease_expires_at == NOW + 10 * MIN
            assert decision.datasets is None and decision.job_fields is None
        case RecoveryVerdict.STUCK_RETRIED:
            assert decision.run.status == RunStatus.QUEUED and decision.run.stuck
            assert decision.run.attempt_number == 2 and decision.send.attempt == 2
            assert decision.run.attempts[-1].outcome == AttemptOutcome.STUCK
            assert decision.datasets.event == DatasetEvent.FAILURE
            assert decision.job_fields["running_run_id"] is None
            assert "no heartbeat for 30 min" in decision.job_fields["last_error"]
        case RecoveryVerdict.STUCK_FAILED:
            assert decision.run.status == RunStatus.FAILED and decision.run.stuck
            assert decision.send is None
            assert decision.job_fields["last_run_status"] == LastRun.FAILED
        case RecoveryVerdict.SETTLED:
            assert decision.run is None and decision.send is None


@pytest.mark.parametrize("minutes,stuck", [(29, False), (30, True), (31, True)])
def test_the_stuck_threshold_boundary(minutes, stuck):
    run = running(1)  # started at T0 with a 30-minute lease
    decision = decide_recovery(run, job(), T0 + minutes * MIN, SETTINGS)
    assert (decision.verdict == RecoveryVerdict.STUCK_RETRIED) is stuck


# -- slots: lateness, backfill runs ----------------------------------------------------

def late_job(**kw):
    return job(max_lateness_s=600, **kw)


@pytest.mark.parametrize("late,verdict", [(9, ClaimVerdict.START), (10, ClaimVerdict.START),
                                          (11, ClaimVerdict.TOO_LATE)])
def test_max_lateness_at_the_first_start_boundary(late, verdict):
    decision = decide_claim(queued(late_job()), late_job(), None, 1, Control(),
                            T0 + late * MIN, SETTINGS)
    assert decision.verdict == verdict
    if verdict == ClaimVerdict.TOO_LATE:
        assert decision.run.status == RunStatus.SKIPPED and decision.run.terminal
        assert decision.run.lease_expires_at is None and "max_lateness (10m)" in decision.run.error
        assert decision.job_fields["last_run_status"] == LastRun.SKIPPED
        assert decision.datasets is None


def test_max_lateness_never_stops_a_retry_or_a_manual_or_backfill_run():
    retry = decide_claim(retrying(1), late_job(), None, 2, Control(), T0 + 90 * MIN, SETTINGS)
    assert retry.verdict == ClaimVerdict.START
    for source in (TriggerSource.MANUAL, TriggerSource.BACKFILL):
        run = replace(queued(late_job()), trigger_source=source)
        decision = decide_claim(run, late_job(), None, 1, Control(), T0 + 90 * MIN, SETTINGS)
        assert decision.verdict == ClaimVerdict.START, source


def backfill_run(status=RunStatus.QUEUED):
    return replace(queued(), trigger_source=TriggerSource.BACKFILL, backfill_id="b", lane=0,
                   status=status)


def test_a_backfill_run_ignores_the_jobs_hold_and_leaves_it_and_the_dataset_alone():
    held = job(running_run_id="orders__other")
    assert holder_to_check(backfill_run(), held) is None
    decision = decide_claim(backfill_run(), held, None, 1, Control(), T0 + MIN, SETTINGS)
    assert decision.verdict == ClaimVerdict.START
    assert decision.job_fields is None and decision.datasets is None


def test_a_backfill_run_finishing_leaves_the_jobs_last_run_alone():
    started = runs.started(backfill_run(), 1, T0 + MIN, 30 * MIN)
    ok = decide_finish(started, 1, job(), SyncOutcome(records={}), T0 + 2 * MIN, SETTINGS)
    assert ok.verdict == FinishVerdict.SUCCEEDED and ok.job_fields is None
    assert ok.datasets is None  # its lanes would contend on them: the sweep folds them in
    bad = decide_finish(started, 1, job(), SyncOutcome(error="x", permanent=True),
                        T0 + 2 * MIN, SETTINGS)
    assert bad.verdict == FinishVerdict.FAILED and bad.job_fields is None
    assert bad.datasets is None


def test_a_catchup_run_counts_for_its_dataset_as_of_its_slot():
    catchup = replace(queued(), trigger_source=TriggerSource.CATCHUP)
    started = runs.started(catchup, 1, T0 + 3 * MIN, 30 * MIN)
    ok = decide_finish(started, 1, job(), SyncOutcome(records={}), T0 + 9 * MIN, SETTINGS)
    assert ok.datasets.past and ok.datasets.slot == T0 and ok.datasets.at == T0


def test_sends_go_to_the_runs_pool_queue():
    pooled = replace(queued(), queue="freshet-runs-warehouse", lease_expires_at=T0)
    decision = decide_recovery(pooled, None, T0 + MIN, SETTINGS)
    assert decision.send.queue == "freshet-runs-warehouse"
    held = job(running_run_id=holder().id)
    deferred = decide_claim(pooled, held, holder(), 1, Control(), T0 + MIN, SETTINGS)
    assert deferred.verdict == ClaimVerdict.DEFER and deferred.send.queue == pooled.queue
# -- recovery without the job -----------------------------------------------------------


READS_JOB = [
    # (case, run, must recovery read the job?)
    ("running, recurring job, threshold recorded", running(1), False),
    ("running, started before runs recorded it", running(1, stuck_threshold_minutes=None),
     True),
    ("running, one-time job", running(1, one_time=True), True),
    ("queued", replace(queued(), lease_expires_at=NOW - MIN), False),
    ("gone", None, False),
]


@pytest.mark.parametrize("case,run,reads", READS_JOB, ids=[r[0] for r in READS_JOB])
def test_recovery_reads_the_job_only_when_the_run_cannot_say(case, run, reads):
    assert recovery_reads_job(run) is reads


def test_a_run_records_its_threshold_when_it_starts_and_whether_its_job_is_one_time():
    assert running(1).stuck_threshold_minutes == 30 and not queued().one_time
    once = new_job(id="once", kind="noop", schedule={"run_at": "2026-11-28T13:00:00+00:00"})
    assert runs.new_run(once, "once__x", T0, source="manual", now=T0,
                        settings=SETTINGS).one_time


def test_recovery_without_the_job_writes_its_last_fields_blind():
    retried = decide_recovery(running(1), None, NOW, SETTINGS, job_read=False)
    assert retried.verdict == RecoveryVerdict.STUCK_RETRIED
    # the hold is left; the running mark ends blind (a later run's mark would stay)
    assert set(retried.job_fields) == {"last_error", "updated_at", "refresh_ended_run_id"}
    assert "no heartbeat for 30 min" in retried.job_fields["last_error"]
    failed = decide_recovery(running(3), None, NOW, SETTINGS, job_read=False)
    assert failed.verdict == RecoveryVerdict.STUCK_FAILED
    assert failed.job_fields["last_run_status"] == LastRun.FAILED
    assert "status" not in failed.job_fields and "running_run_id" not in failed.job_fields


def test_the_threshold_a_run_started_under_is_the_one_recovery_reports():
    later = job(stuck_threshold_minutes=90)  # changed by an apply after the run started
    decision = decide_recovery(running(1), later, NOW, SETTINGS)
    assert "no heartbeat for 30 min" in decision.detail
    legacy = decide_recovery(running(1, stuck_threshold_minutes=None), later, T0 + 95 * MIN,
                             SETTINGS)
    assert "no heartbeat for 90 min" in legacy.detail


# -- retention --------------------------------------------------------------------------

KEPT = load_settings({"FRESHET_RUN_RETENTION_DAYS": "30"})


@pytest.mark.parametrize("ending", [
    lambda r, at: runs.succeeded(runs.started(r, 1, T0, 30 * MIN), at, {}),
    lambda r, at: runs.failed(runs.started(r, 1, T0, 30 * MIN), at, "boom"),
    lambda r, at: runs.skipped(r, at, "too late"),
    lambda r, at: runs.cancelled(r, at, "cancelled"),
], ids=["succeeded", "failed", "skipped", "cancelled"])
def test_a_run_expires_its_retention_after_it_ends(ending):
    made = runs.new_run(job(), "orders__x", T0, source="schedule", now=T0, settings=KEPT)
    assert made.keep_days == 30 and made.expire_at is None  # a run under way never expires
    ended = ending(made, T0 + 5 * MIN)
    assert ended.expire_at == T0 + 5 * MIN + timedelta(days=30)
    assert runs.retrying(runs.started(made, 1, T0, 30 * MIN), T0 + MIN, "503",
                         10 * MIN).expire_at is None


def test_a_slot_recorded_skipped_expires_from_when_it_was_recorded():
    skipped = runs.skipped_run(job(), T0, "catch-up: latest only", now=T0 + MIN, settings=KEPT)
    assert skipped.expire_at == T0 + MIN + timedelta(days=30)
    assert Run.from_doc(skipped.to_doc()).expire_at == skipped.expire_at


@pytest.mark.parametrize("value", ["0", "3651", "soon"])
def test_a_run_retention_out_of_range_is_named(value):
    with pytest.raises(ValidationError) as caught:
        load_settings({"FRESHET_RUN_RETENTION_DAYS": value})
    assert caught.value.field == "FRESHET_RUN_RETENTION_DAYS"
