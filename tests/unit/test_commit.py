"""The whole commit of a run's ending as tables (core.commit, core.backfill.release):
what it reads, which datasets it writes, a lane's count and next run, triggered runs,
and the tasks to send after it lands. No emulator: everything here is pure."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from freshet.core import backfill as bf
from freshet.core import commit, runs
from freshet.core.backfill import Lane
from freshet.core.commit import Facts
from freshet.core.lifecycle import (
    ClaimVerdict,
    FinishVerdict,
    RecoveryVerdict,
    SyncOutcome,
    decide_finish,
    decide_recovery,
)
from freshet.core.models import Dataset, JobStatus, RunStatus, TriggerSource, new_job
from freshet.core.settings import load_settings

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
MIN = timedelta(minutes=1)
SETTINGS = load_settings({}, queued_grace_s=600, default_stuck_minutes=30)
JOB = new_job(id="orders", kind="noop", schedule={"cron": "0 * * * *"},
              produces=["sales.orders"])
OK = SyncOutcome(records={"sales.orders": 5})


def rollup(when="any", seen=None, status="active"):
    job = new_job(id="rollup", kind="noop", produces=["sales.revenue"], status=status,
                  trigger={"after": ["sales.orders", "fx.rates"], "when": when})
    return replace(job, trigger_versions=dict(seen or {}))


def running(job=JOB, slot=T0, source=TriggerSource.SCHEDULE, **kw):
    run = runs.new_run(job, runs.scheduled_run_id(job.id, slot), slot, source=source, now=slot,
                       settings=SETTINGS, **kw)
    return runs.started(run, 1, slot, 30 * MIN)


def finish(run, outcome=OK, job=JOB, at=T0 + MIN):
    return decide_finish(run, 1, job, outcome, at, SETTINGS)


def dataset(key="sales.orders", version=None, triggers=()):
    return Dataset(key=key, last_success_run_id=version, triggers=list(triggers),
                   last_success_at=T0 - H if version else None)


# -- a lane's release --------------------------------------------------------------------

def lane(slots=(T0 - 2 * H, T0 - H), source=TriggerSource.BACKFILL, **kw):
    return Lane(backfill_id="bf1", index=0, job_id=JOB.id, slots=list(slots), source=source,
                **kw)


def slot_run(slot, status, generation=0):
    made = running(slot=slot, source=TriggerSource.BACKFILL)
    return replace(made, id=bf.generation_run_id(JOB.id, slot, generation), status=status)


def gen_id(slot, generation=0):
    return bf.generation_run_id(JOB.id, slot, generation)


RELEASES = [
    # (case, lane, job, runs known, needs, run created, lane.next after)
    ("asks for the slot's run first", lane(), JOB, {}, gen_id(T0 - 2 * H), None, 0),
    ("a free slot becomes a run", lane(), JOB, {gen_id(T0 - 2 * H): None}, None,
     gen_id(T0 - 2 * H), 1),
    ("a slot done is passed over, the next asked for", lane(), JOB,
     {gen_id(T0 - 2 * H): slot_run(T0 - 2 * H, RunStatus.SUCCEEDED)}, gen_id(T0 - H), None,
     1),
    ("a slot in flight is passed over too", lane(), JOB,
     {gen_id(T0 - 2 * H): slot_run(T0 - 2 * H, RunStatus.QUEUED), gen_id(T0 - H): None},
     None, gen_id(T0 - H), 2),
    ("a failed slot runs again as the next generation", lane(), JOB,
     {gen_id(T0 - 2 * H): slot_run(T0 - 2 * H, RunStatus.FAILED),
      gen_id(T0 - 2 * H, 1): None}, None, gen_id(T0 - 2 * H, 1), 1),
    ("--rerun runs a succeeded slot again", lane(rerun=True), JOB,
     {gen_id(T0 - 2 * H): slot_run(T0 - 2 * H, RunStatus.SUCCEEDED),
      gen_id(T0 - 2 * H, 1): None}, None, gen_id(T0 - 2 * H, 1), 1),
    ("a backfill runs for a paused job", lane(), replace(JOB, status=JobStatus.PAUSED),
     {gen_id(T0 - 2 * H): None}, None, gen_id(T0 - 2 * H), 1),
    ("a catch-up chain stops when its job is paused", lane(source=TriggerSource.CATCHUP),
     replace(JOB, status=JobStatus.PAUSED), {}, None, None, 2),
    ("a lane whose job is gone stops", lane(), None, {}, None, None, 2),
    ("a stopped lane releases nothing", lane(stopped=True), JOB, {}, None, None, 0),
    ("every slot released: nothing more", lane(next=2), JOB, {}, None, None, 2),
]


@pytest.mark.parametrize(("case", "the_lane", "job", "known", "needs", "created", "next_"),
                         RELEASES, ids=[c[0] for c in RELEASES])
def test_a_lane_release_asks_for_each_candidate_then_decides(case, the_lane, job, known,
                                                              needs, created, next_):
    released = bf.release(the_lane, job, known, T0, SETTINGS)
    assert released.need == needs
    assert (released.run.id if released.run else None) == created
    assert released.lane.next == next_
    if created is not None:
        assert released.lane.current_run_id == created
        assert released.run.backfill_id == "bf1" and released.run.lane == 0


def test_a_release_that_must_look_too_far_waits_for_the_sweep():
    slots = [T0 - i * H for i in range(100, 0, -1)]
    known = {gen_id(s): slot_run(s, RunStatus.SUCCEEDED) for s in slots}
    released = bf.release(lane(slots), JOB, known, T0, SETTINGS)
    assert released.need is None and released.run is None
    assert released.lane.next == bf.MAX_READS_PER_RELEASE  # passed over so far, kept


# -- what an ending reads ----------------------------------------------------------------

def test_a_success_reads_its_datasets_and_no_lane():
    decision = finish(running())
    assert commit.dataset_keys(decision) == ["sales.orders"]
    assert commit.lane_key(decision) is None


def test_a_retry_reads_nothing():
    decision = finish(running(), SyncOutcome(error="HTTP 503"))
    assert decision.verdict == FinishVerdict.RETRYING
    assert commit.dataset_keys(decision) == [] and commit.lane_key(decision) is None
    assert commit.trigger_jobs(decision, Facts()) == []


def test_a_backfill_run_reads_its_lane_not_the_datasets():
    run = running(source=TriggerSource.BACKFILL, backfill_id="bf1", lane=0)
    decision = finish(run)
    assert commit.dataset_keys(decision) == []  # lanes keep their success, the sweep folds it
    assert commit.lane_key(decision) == ("bf1", 0)


def test_the_lane_asks_for_nothing_when_its_next_slot_waits():
    run = running(source=TriggerSource.BACKFILL, backfill_id="bf1", lane=0)
    the_lane = lane(current_run_id=run.id)
    decision = finish(run)
    assert commit.lane_need(decision, the_lane, JOB, {}, T0, SETTINGS) == gen_id(T0 - 2 * H)
    assert commit.lane_need(decision, the_lane, JOB, {}, T0, SETTINGS,
                            release_next=False) is None


def test_triggers_read_the_downstream_jobs_then_the_other_upstreams_for_all():
    decision = finish(running())
    facts = Facts(datasets={"sales.orders": dataset(version="o1", triggers=["rollup"])})
    assert commit.trigger_jobs(decision, facts) == ["rollup"]
    assert commit.trigger_upstreams(decision, replace(facts, jobs={"rollup": rollup("any")})
                                    ) == []
    assert commit.trigger_upstreams(decision, replace(facts, jobs={"rollup": rollup("all")})
                                    ) == ["fx.rates"]


# -- the commit --------------------------------------------------------------------------

def test_a_success_commits_the_run_the_job_and_the_changed_dataset():
    run = running()
    made = commit.ending(finish(run), JOB.id, JOB, Facts(datasets={}), T0 + MIN, SETTINGS)
    assert made.verdict == FinishVerdict.SUCCEEDED and made.run.status == RunStatus.SUCCEEDED
    assert made.job_id == JOB.id and made.job_fields["last_run_status"] == "succeeded"
    assert [d.key for d in made.datasets] == ["sales.orders"]  # a missing one is created
    assert made.datasets[0].last_success_run_id == run.id
    assert made.runs == () and made.lanes == () and made.tasks == ()


def test_a_dataset_the_decision_leaves_as_it_was_is_not_written():
    """A catch-up run of an old slot never makes a newer dataset older."""
    run = running(slot=T0 - 5 * H, source=TriggerSource.CATCHUP)
    newer = replace(dataset(version="newer"), last_success_at=T0, last_success_slot=T0)
    made = commit.ending(finish(run), JOB.id, JOB, Facts(datasets={"sales.orders": newer}),
                         T0 + MIN, SETTINGS)
    assert made.run.status == RunStatus.SUCCEEDED and made.datasets == ()


def test_a_lane_run_ending_counts_it_and_creates_the_next_with_its_task():
    run = running(slot=T0 - 3 * H, source=TriggerSource.BACKFILL, backfill_id="bf1", lane=0)
    facts = Facts(lane=lane(current_run_id=run.id), runs={gen_id(T0 - 2 * H): None})
    made = commit.ending(finish(run), JOB.id, JOB, facts, T0 + MIN, SETTINGS)
    (counted,) = made.lanes
    assert counted.done == 1 and counted.current_run_id == gen_id(T0 - 2 * H)
    assert [r.id for r in made.runs] == [gen_id(T0 - 2 * H)]
    assert [(t.run_id, t.send.attempt, t.send.at, t.job_id) for t in made.tasks] == [
        (gen_id(T0 - 2 * H), 1, None, None)]


def test_a_lane_whose_run_is_not_current_is_left_alone():
    run = running(source=TriggerSource.BACKFILL, backfill_id="bf1", lane=0)
    made = commit.ending(finish(run), JOB.id, JOB,
                         Facts(lane=lane(current_run_id="someone-else")), T0 + MIN, SETTINGS)
    assert made.lanes == () and made.runs == ()


def test_a_switched_off_kind_counts_the_lane_and_releases_nothing():
    run = running(source=TriggerSource.BACKFILL, backfill_id="bf1", lane=0)
    ended = finish(run, SyncOutcome(error="off", permanent=True))
    made = commit.ending(ended, JOB.id, JOB, Facts(lane=lane(current_run_id=run.id)),
                         T0 + MIN, SETTINGS, release_next=False)
    (counted,) = made.lanes
    assert counted.failed == 1 and counted.current_run_id is None and made.runs == ()


TRIGGERS = [
    # (case, downstream job, other upstream as read, a run is created)
    ("any: one fresh upstream is enough", rollup("any"), None, True),
    ("any: this version ran already", rollup("any", seen={"sales.orders": "RUN"}), None,
     False),
    ("all: the other upstream has a new version", rollup("all"), "r1", True),
    ("all: the other upstream never succeeded", rollup("all"), None, False),
    ("all: the other upstream's version was used", rollup("all", seen={"fx.rates": "r1"}),
     "r1", False),
    ("a paused downstream job does not run", rollup("any", status="paused"), None, False),
    ("a downstream job that is gone does not run", None, None, False),
]


@pytest.mark.parametrize(("case", "downstream", "other", "fires"), TRIGGERS,
                         ids=[c[0] for c in TRIGGERS])
def test_a_success_triggers_downstream_runs_in_the_same_commit(case, downstream, other,
                                                                fires):
    run = running()
    if downstream is not None and "RUN" in downstream.trigger_versions.values():
        downstream = replace(downstream, trigger_versions={"sales.orders": run.id})
    facts = Facts(datasets={"sales.orders": dataset(version="o0", triggers=["rollup"])},
                  jobs={"rollup": downstream},
                  upstreams={"fx.rates": dataset("fx.rates", version=other)})
    made = commit.ending(finish(run), JOB.id, JOB, facts, T0 + MIN, SETTINGS)
    assert bool(made.runs) == fires
    assert ("rollup" in made.jobs) == fires
    if fires:
        (fired,) = made.runs
        assert fired.trigger_source == TriggerSource.UPSTREAM
        assert fired.upstream_versions["sales.orders"] == run.id
        assert [t.run_id for t in made.tasks] == [fired.id]


@pytest.mark.parametrize(("depth", "graph_jobs", "created"), [
    (0, 2, True), (1, 2, True), (2, 2, False), (5, None, True), (1000, None, False)])
def test_a_triggered_run_past_the_depth_bound_is_not_created_but_recorded(depth, graph_jobs,
                                                                          created):
    """Issue 20 §1: the finishing run's depth + 1 against the number of jobs."""
    run = replace(running(), trigger_depth=depth)
    facts = Facts(datasets={"sales.orders": dataset(version="o0", triggers=["rollup"])},
                  jobs={"rollup": rollup("any")}, graph_jobs=graph_jobs)
    made = commit.ending(finish(run), JOB.id, JOB, facts, T0 + MIN, SETTINGS)
    assert "rollup" in made.jobs  # the versions are remembered either way
    if created:
        (fired,) = made.runs
        assert fired.trigger_depth == depth + 1 and "trigger_refused" not in made.jobs["rollup"]
    else:
        assert made.runs == () and made.tasks == ()
        refused = made.jobs["rollup"]["trigger_refused"]
        assert refused["depth"] == depth + 1 and refused["upstream_run_id"] == run.id


def test_a_success_that_advances_nothing_triggers_nothing():
    run = running()
    already = dataset(version=run.id, triggers=["rollup"])
    already = replace(already, last_success_at=T0 + MIN, last_success_slot=T0)
    facts = Facts(datasets={"sales.orders": already}, jobs={"rollup": rollup("any")})
    made = commit.ending(finish(run), JOB.id, JOB, facts, T0 + MIN, SETTINGS)
    assert made.runs == () and made.jobs == {}


def test_a_recovery_commit_sends_the_runs_next_attempt_and_keeps_its_version():
    run = replace(running(), lease_expires_at=T0 + 30 * MIN, heartbeat_at=T0)
    decision = decide_recovery(run, None, T0 + H, SETTINGS, job_read=False)
    assert decision.verdict == RecoveryVerdict.STUCK_RETRIED
    made = commit.ending(decision, JOB.id, None, Facts(), T0 + H, SETTINGS,
                         run_version=T0, what="recovered run")
    assert made.run_version == T0 and made.run.attempt_number == 2
    (task,) = made.tasks
    assert (task.run_id, task.send.attempt, task.job_id, task.what) == (
        run.id, 2, JOB.id, "recovered run")


def test_a_claim_that_finds_no_run_commits_nothing():
    from freshet.core.control import Control
    from freshet.core.lifecycle import decide_claim

    decision = decide_claim(None, None, None, 1, Control(), T0, SETTINGS)
    made = commit.ending(decision, None, None, Facts(), T0, SETTINGS)
    assert made.verdict == ClaimVerdict.ORPHAN
    assert (made.run, made.job_fields, made.datasets, made.runs, made.tasks) == (
        None, None, (), (), ())


# -- a backfill's cancel and end -------------------------------------------------------

def a_backfill(status=bf.BackfillStatus.ACTIVE):
    return bf.Backfill(id="bf1", job_id=JOB.id, start=T0 - 3 * H, end=T0, max_parallel=2,
                       lanes=2, status=status, created_at=T0 - H, updated_at=T0 - H)


def test_a_cancel_ends_queued_runs_leaves_running_ones_and_stops_every_lane():
    queued = replace(running(slot=T0 - 3 * H, source=TriggerSource.BACKFILL,
                             backfill_id="bf1", lane=0), status=RunStatus.QUEUED)
    busy = running(slot=T0 - 2 * H, source=TriggerSource.BACKFILL, backfill_id="bf1", lane=1)
    lanes = [replace(lane(slots=(T0 - 3 * H, T0 - H)), current_run_id=queued.id, next=1),
             replace(lane(slots=(T0 - 2 * H,)), index=1, current_run_id=busy.id, next=1)]
    made = commit.cancelling(a_backfill(), lanes, {queued.id: queued, busy.id: busy},
                             T0, who="ana")
    (ended,) = made.updated_runs
    assert ended.id == queued.id and ended.status == RunStatus.CANCELLED
    assert "cancelled by ana" in ended.error
    first, second = made.lanes
    assert first.stopped and first.current_run_id is None and first.cancelled == 2
    assert second.stopped and second.current_run_id == busy.id  # it finishes
    (marked,) = made.backfills
    assert marked.status == bf.BackfillStatus.CANCELLED and marked.cancelled_at == T0


@pytest.mark.parametrize("status", [bf.BackfillStatus.DONE, bf.BackfillStatus.CANCELLED])
def test_a_backfill_no_longer_active_is_neither_cancelled_nor_finished_again(status):
    assert commit.cancelling(a_backfill(status), [], {}, T0) == commit.Commit(
        verdict=None, detail="not active")
    assert commit.finishing(a_backfill(status), T0).backfills == ()


def test_an_active_backfill_whose_lanes_finished_is_done():
    (done,) = commit.finishing(a_backfill(), T0).backfills
    assert done.status == bf.BackfillStatus.DONE and done.finished_at == T0


def test_an_ending_reads_in_rounds_until_it_knows_enough():
    """The run's datasets and lane; the lane's next candidate; the downstream jobs; the
    `all` job's other upstream; then nothing more."""
    run = running(source=TriggerSource.SCHEDULE)
    decision = finish(run)
    first = commit.next_reads(decision, JOB, None, T0, SETTINGS)
    assert first == commit.Reads(datasets=("sales.orders",),  # in the run's job's group
                                 owner=(run.job_id, ("sales.orders",)))
    facts = Facts(datasets={"sales.orders": dataset(version="o0", triggers=["rollup"])})
    assert commit.next_reads(decision, JOB, facts, T0, SETTINGS) == commit.Reads(
        jobs=("rollup",), graph=True)  # and the trigger graph's number of jobs (the bound)
    facts = replace(facts, jobs={"rollup": rollup("all")})
    assert commit.next_reads(decision, JOB, facts, T0, SETTINGS) == commit.Reads(
        upstreams=("fx.rates",))
    facts = replace(facts, upstreams={"fx.rates": None})
    assert commit.next_reads(decision, JOB, facts, T0, SETTINGS) is None


def test_a_lane_run_ending_reads_the_lane_then_each_candidate_it_needs():
    run = running(slot=T0 - 3 * H, source=TriggerSource.BACKFILL, backfill_id="bf1", lane=0)
    decision = finish(run)
    assert commit.next_reads(decision, JOB, None, T0, SETTINGS) == commit.Reads(
        lane=("bf1", 0))
    facts = Facts(lane=lane(current_run_id=run.id))
    assert commit.next_reads(decision, JOB, facts, T0, SETTINGS) == commit.Reads(
        runs=(gen_id(T0 - 2 * H),))
    facts = replace(facts, runs={gen_id(T0 - 2 * H): None})
    assert commit.next_reads(decision, JOB, facts, T0, SETTINGS) is None


# -- a heartbeat, and a backfill's success folded into a dataset --------------------------

def test_a_heartbeat_renews_the_lease_of_the_attempt_running_only():
    run = running()
    renewed = runs.renewed(run, 1, T0 + 5 * MIN, 30 * MIN)
    assert renewed.heartbeat_at == T0 + 5 * MIN and renewed.lease_expires_at == T0 + 35 * MIN
    assert runs.renewed(run, 2, T0 + 5 * MIN, 30 * MIN) is None  # recovery took it over
    assert runs.renewed(replace(run, status=RunStatus.SUCCEEDED), 1, T0, 30 * MIN) is None
    assert runs.renewed(None, 1, T0, 30 * MIN) is None


def test_a_backfill_success_folds_into_a_dataset_only_when_it_is_newer():
    made = commit.folding(None, "sales.orders", T0 - H, "orders__old")
    (folded,) = made.datasets
    assert folded.last_success_slot == T0 - H and folded.last_success_at == T0 - H
    assert commit.folding(folded, "sales.orders", T0 - 2 * H, "orders__older").datasets == ()
    assert commit.folding(folded, "sales.orders", T0 - H, "orders__old").datasets == ()
