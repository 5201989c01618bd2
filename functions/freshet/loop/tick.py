"""scheduler_tick's step: turn due job slots into runs, exactly once each.

For each due job, one transaction compares-and-sets `next_run_at`, creates the run
document (its id is the job + slot, so creating it is the dedup) and advances the
schedule. The Cloud Task is created after the commit, never inside the transaction
(a transaction may run more than once). If task creation fails the run stays queued
with a lease; recovery sends it again. Nothing is lost.

Which due slots run is the job's catch-up policy (freshet.core.catchup): one slot
(the usual case), none, or several oldest first, which become a catch-up chain (a
one-lane backfill created in the same commit: each run's finish starts the next).
Skipped slots are recorded as skipped runs after the commit.
A herd (more than `claim_fanout_above` jobs due within the lookahead) is not claimed
by the tick: it sends one named task per claim shard (freshet.core.herd) and each
shard's jobs are claimed by `claim_shard_once` in its own function instance, with the
same compare-and-set, ahead of the slot (the run's task is scheduled for the slot).
The tick reads at most `claim_fanout_above` + 1 jobs and sends CLAIM_SHARDS tasks,
whatever the herd's size.
"""

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import assert_never

from freshet.core import backfill as bf
from freshet.core import herd
from freshet.core.catchup import CatchupPlan, plan_catchup
from freshet.core.commit import new_run_task
from freshet.core.control import Control
from freshet.core.created import Created
from freshet.core.herd import ShardTask
from freshet.core.interventions import due_to_resume, resumed
from freshet.core.models import Job, JobStatus, LastRun, TriggerSource
from freshet.core.runs import SlotClaim, new_run, scheduled_run_id, skipped_run
from freshet.core.schedules import next_after
from freshet.core.settings import Settings
from freshet.gcp.store import Store
from freshet.gcp.tasks import TaskQueue
from freshet.loop.backfill import release_lane
from freshet.loop.followups import send_tasks

log = logging.getLogger(__name__)

CLAIM_TRIES = 3  # a claim lost to run_task's write of the job document is tried again


@dataclass
class TickResult:
    due: int = 0
    created: list[str] = field(default_factory=list)
    lost_race: int = 0
    skipped_disabled: list[str] = field(default_factory=list)
    skipped_maintenance: list[str] = field(default_factory=list)
    enqueue_failed: list[str] = field(default_factory=list)
    archived: list[str] = field(default_factory=list)
    skipped_slots: int = 0  # recorded as skipped by the catch-up policy or max_lateness
    chains: list[str] = field(default_factory=list)  # catch-up chains started
    deferred: int = 0  # left for the next tick: the time budget ran out
    shards_sent: int = 0  # claim shards fanned out (a herd)
    shard_failed: int = 0  # claim shards whose task could not be created
    continued: bool = False  # a claim handler sent the rest of its shard on
    resumed: list[str] = field(default_factory=list)  # pauses whose `until` came

    def to_dict(self) -> dict:
        return {
            "due": self.due, "created": len(self.created), "lost_race": self.lost_race,
            "skipped_disabled": len(self.skipped_disabled),
            "skipped_maintenance": len(self.skipped_maintenance),
            "enqueue_failed": len(self.enqueue_failed), "archived": len(self.archived),
            "skipped_slots": self.skipped_slots, "catchup_chains": self.chains[:50],
            "deferred": self.deferred, "shards_sent": self.shards_sent,
            "shard_failed": self.shard_failed, "continued": self.continued,
            "resumed": self.resumed[:50],
            "runs": self.created[:50],
        }


def tick_once(store: Store, queue: TaskQueue, *, now: datetime, settings: Settings,
              budget_s: float | None = None) -> TickResult:
    started = time.monotonic()
    budget = settings.tick_budget_s if budget_s is None else budget_s
    result = TickResult()
    control = store.control()
    until = now + timedelta(seconds=settings.lookahead_s)
    sample = settings.claim_fanout_above + 1 if queue.fans_out else settings.tick_batch
    due = store.due_jobs_versioned(until, sample)
    result.due = len(due)
    if queue.fans_out and herd.fan_out(len(due), settings.claim_fanout_above):
        # A herd: the shards claim it. Jobs stored before shards existed are in no
        # shard's query, so the tick claims those it sampled (and writes their shard).
        due = [(job, version) for job, version in due if job.claim_shard is None]
        _send_shards(queue, until, result)
    _claim_all(store, queue, due, now, settings, control, result, started, budget)
    _archive_completed(store, now, settings, result)
    _resume_paused(store, now, result)
    return result


def claim_shard_once(store: Store, queue: TaskQueue, task: ShardTask, *, now: datetime,
                     settings: Settings, budget_s: float | None = None) -> TickResult:
    """The claim handler's step: claim the jobs of one shard due by the tick's `until`,
    up to `claim_batch` of them within the time budget, then send the rest on."""
    started = time.monotonic()
    budget = settings.tick_budget_s if budget_s is None else budget_s
    result = TickResult()
    control = store.control()
    due = store.due_jobs_in_shard_versioned(task.shard, task.until, settings.claim_batch)
    result.due = len(due)
    _claim_all(store, queue, due, now, settings, control, result, started, budget)
    if result.deferred or len(due) == settings.claim_batch:
        try:
            queue.enqueue_claim(task.next())
            result.continued = True
        except Exception:  # the next tick's sample still sees them due: nothing is lost
            log.exception("could not send the rest of claim shard %s", task.shard)
    return result


def _send_shards(queue: TaskQueue, until: datetime, result: TickResult) -> None:
    for task in herd.shard_tasks(until):
        try:
            queue.enqueue_claim(task)
            result.shards_sent += 1
        except Exception:  # that shard's jobs stay due: the next tick fans out again
            log.exception("could not send claim shard %s", task.shard)
            result.shard_failed += 1


def _claim_all(store: Store, queue: TaskQueue, due: list[tuple[Job, datetime]], now: datetime,
               settings: Settings, control: Control, result: TickResult, started: float,
               budget: float) -> None:
    for index, (job, version) in enumerate(due):
        if time.monotonic() - started > budget:
            result.deferred = len(due) - index
            return
        _tick_job(store, queue, job, version, now, settings, control, result)


def _tick_job(store: Store, queue: TaskQueue, job: Job, version: datetime, now: datetime,
              settings: Settings, control: Control, result: TickResult) -> None:
    for _ in range(CLAIM_TRIES):
        match _claim_job(store, queue, job, version, now, settings, control, result):
            case SlotClaim.CLAIMED | SlotClaim.EXISTS:
                return
            case SlotClaim.LOST:
                pass
            case other:
                assert_never(other)
        # The job changed since the query: another tick (next_run_at moved: it won),
        # or run_task recording a run (next_run_at unchanged: claim again).
        fresh = store.get_job_versioned(job.id)
        if fresh is None or fresh[0].status != JobStatus.ACTIVE or \
                fresh[0].next_run_at != job.next_run_at:
            break
        job, version = fresh
    result.lost_race += 1


def _claim_job(store: Store, queue: TaskQueue, job: Job, version: datetime, now: datetime,
               settings: Settings, control: Control, result: TickResult) -> SlotClaim:
    if not control.kind_enabled(job.kind):
        # Advance past the slot without a run, or a switched-off kind would fill
        # every tick's batch; when switched back on, the job runs at its next slot.
        fields = {"next_run_at": next_after(job.schedule, now), "updated_at": now,
                  "last_run_status": LastRun.SKIPPED, **_shard_field(job)}
        outcome = store.claim_slot(job.id, version, fields, None)
        if outcome == SlotClaim.CLAIMED:
            result.skipped_disabled.append(job.id)
        return outcome
    plan = plan_catchup(job, now)
    if plan.run:
        moment = max(plan.run[-1], now)
        window = control.maintenance.blocking_job(job.id, job.produces, moment)
        if window is not None:
            return _skip_for_maintenance(store, job, version, moment, window.end, now, result)
    fields = {"next_run_at": plan.next_run_at, "updated_at": now, **_shard_field(job)}
    if not plan.run and plan.skipped:
        fields["last_run_status"] = LastRun.SKIPPED
    if plan.chain:
        return _claim_chain(store, queue, job, version, plan, fields, now, settings, result)
    slot = plan.run[0] if plan.run else None
    run = None if slot is None else new_run(
        job, scheduled_run_id(job.id, slot), slot, source=TriggerSource.SCHEDULE, now=now,
        settings=settings)
    outcome = store.claim_slot(job.id, version, fields, run)
    if outcome == SlotClaim.EXISTS:  # advance only
        store.claim_slot(job.id, version, fields, None)
    if outcome == SlotClaim.LOST:
        return outcome
    _record_skipped(store, job, plan, now, settings, result)
    if outcome == SlotClaim.EXISTS or run is None:
        return outcome
    result.created.append(run.id)
    # a failed enqueue leaves the run queued with a lease: recovery enqueues it again
    result.enqueue_failed += send_tasks(queue, [new_run_task(
        run, at=slot if slot > now else None, job_id=job.id, what="run")])
    return outcome


def _claim_chain(store: Store, queue: TaskQueue, job: Job, version: datetime,
                 plan: CatchupPlan, fields: dict, now: datetime, settings: Settings,
                 result: TickResult) -> SlotClaim:
    """catchup: all with several missed slots: a one-lane backfill in the claim's
    commit; its first run is released right after (else by recovery's sweep)."""
    chain = bf.new_catchup(job, plan.run, now, f"catch-up of {len(plan.run)} missed slots")
    lane = bf.lanes_for(chain, plan.run)[0]
    outcome = store.claim_slot(job.id, version, fields, None, chain=(chain, lane))
    if outcome == SlotClaim.EXISTS:
        store.claim_slot(job.id, version, fields, None)
    if outcome == SlotClaim.LOST:
        return outcome
    _record_skipped(store, job, plan, now, settings, result)
    if outcome == SlotClaim.CLAIMED:
        result.chains.append(chain.id)
        try:
            first = release_lane(store, queue, chain.id, lane.index, now=now, settings=settings)
        except Exception:  # the chain is committed: recovery's sweep releases its lane
            log.exception("catch-up chain %s: first release failed; recovery will", chain.id)
            return outcome
        if first is not None:
            result.created.append(first.id)
    return outcome


def _record_skipped(store: Store, job: Job, plan: CatchupPlan, now: datetime,
                    settings: Settings, result: TickResult) -> None:
    """One skipped run per passed-over slot (a bounded number: core.catchup). After the
    claim's commit: a slot whose run exists already (a backfill's) keeps it."""
    records = [skipped_run(job, s.slot, s.reason, now=now, settings=settings)
               for s in plan.skipped]
    created = store.create_runs(records)
    result.skipped_slots += sum(c is Created.NEW for c in created.values())


def _skip_for_maintenance(store: Store, job: Job, version: datetime, slot: datetime,
                          window_end: datetime, now: datetime, result: TickResult) -> SlotClaim:
    """A slot inside a maintenance window passes unrun: a recurring job moves to its next
    slot (skipped again while the window lasts), a one-time job to the window's end."""
    later = next_after(job.schedule, slot) if job.schedule.recurring else window_end
    fields = {"next_run_at": later, "updated_at": now, "last_run_status": LastRun.SKIPPED,
              **_shard_field(job)}
    outcome = store.claim_slot(job.id, version, fields, None)
    if outcome == SlotClaim.CLAIMED:
        result.skipped_maintenance.append(job.id)
    return outcome


def _shard_field(job: Job) -> dict:
    """A job stored before claim shards existed gets its shard with its next claim."""
    return {"claim_shard": job.shard} if job.claim_shard is None else {}


def _resume_paused(store: Store, now: datetime, result: TickResult) -> None:
    """A pause given an end (`until`) ends by itself: the job is scheduled again from
    `now` on, as a resume by hand would (one query; an empty one is one read)."""
    for job in store.paused_until_due(now):
        def body(tx, job_id: str = job.id) -> bool:
            fresh = tx.get_job(job_id)
            if not due_to_resume(fresh, now):  # resumed or paused again meanwhile
                return False
            tx.set_job(resumed(fresh, now))
            return True

        if store.transact(body):
            result.resumed.append(job.id)


def _archive_completed(store: Store, now: datetime, settings: Settings,
                       result: TickResult) -> None:
    """Finished one-time jobs leave the active lists once their retention period ends."""
    cutoff = now - timedelta(days=settings.completed_retention_days)
    for job in store.completed_jobs_before(cutoff):
        store.update_job(job.id, {"status": JobStatus.ARCHIVED, "archived_at": now,
                                  "updated_at": now})
        result.archived.append(job.id)
