"""Backfills on the loop: plan, start, pace, cancel and report them.

    plan_backfill   which of a job's slots in a range need a run (the dry run)
    start_backfill  the backfill document, its lanes, and each lane's first run
    release_lane    an idle lane's next slot becomes a run (core.backfill.release
                    decides; a run's ending does the same inside its commit:
                    core.commit.ending)
    cancel_backfill queued runs end cancelled, running ones finish, nothing more starts
    sweep_backfills recovery's backstop: idle lanes (a failed enqueue, a crash between
                    commits, a kill switch switched back on) get their next run

Pacing lives in the lanes (freshet.core.backfill): each lane has at most one run in
flight and the commit that ends it releases the next, so nothing polls and no counter
is shared by concurrent finishes.
"""

import logging
from dataclasses import dataclass
from datetime import datetime

from freshet.core import backfill as bf
from freshet.core import commit
from freshet.core.backfill import Backfill, BackfillStatus, Lane, Progress, SlotPlan, SlotState
from freshet.core.commit import Commit
from freshet.core.created import Created
from freshet.core.errors import Conflict, NotFound
from freshet.core.models import Job, Run
from freshet.core.settings import Settings
from freshet.gcp.store import Store, Tx
from freshet.gcp.tasks import TaskQueue
from freshet.loop.engines import Engines
from freshet.loop.followups import send_tasks
from freshet.loop.poll import cancel_work

log = logging.getLogger(__name__)




# -- planning ----------------------------------------------------------------------------

def slot_states(store: Store, job: Job, slots: tuple[datetime, ...], rerun: bool
                ) -> dict[datetime, SlotState]:
    """Each slot's state at its newest generation, read in batches (no transaction:
    a plan; the release transaction looks again)."""
    states: dict[datetime, SlotState] = {}
    pending = {slot: 0 for slot in slots}
    while pending:
        ids = {bf.generation_run_id(job.id, s, g): s for s, g in pending.items()}
        found = store.runs_by_id(list(ids))
        later: dict[datetime, int] = {}
        for run_id, slot in ids.items():
            state = bf.slot_state(found.get(run_id), rerun)
            if state == SlotState.NEXT and pending[slot] + 1 < bf.MAX_GENERATIONS:
                later[slot] = pending[slot] + 1
            else:  # generations exhausted: leave the slot alone
                states[slot] = SlotState.BUSY if state == SlotState.NEXT else state
        pending = later
    return states


def plan_backfill(store: Store, job_id: str, start: datetime, end: datetime, *,
                  now: datetime, rerun: bool = False) -> tuple[Job, SlotPlan]:
    job = store.job(job_id)
    if job.status not in bf.BACKFILL_STATUSES:
        raise Conflict(f"job {job_id!r} is {job.status}; only an active or paused job "
                       "can be backfilled")
    slots = bf.range_slots(job, start, end, now)
    return job, bf.plan_slots(slots, slot_states(store, job, slots, rerun))


# -- starting ----------------------------------------------------------------------------

def start_backfill(store: Store, queue: TaskQueue, job_id: str, start: datetime,
                   end: datetime, *, now: datetime, settings: Settings,
                   max_parallel: int = 1, rerun: bool = False, key: str | None = None,
                   requested_by: str | None = None) -> tuple[Backfill, bool]:
    """Returns (the backfill, whether this call created it). A repeated request (the
    same key, or the same range within the same minute) returns the first one."""
    job, plan = plan_backfill(store, job_id, start, end, now=now, rerun=rerun)
    backfill = bf.new_backfill(job, plan, start=start, end=end, max_parallel=max_parallel,
                               rerun=rerun, now=now, key=key, requested_by=requested_by)
    existing = store.get_backfill(backfill.id)
    if existing is not None:
        return existing, False
    lanes = bf.lanes_for(backfill, plan.todo) if plan.todo else []
    if store.create_backfill(backfill, lanes) is Created.EXISTS:
        return store.backfill(backfill.id), False
    for lane in lanes:
        try:
            release_lane(store, queue, backfill.id, lane.index, now=now, settings=settings)
        except Exception:  # the backfill is committed: recovery's sweep releases the lane
            log.exception("backfill %s lane %s: first release failed; recovery will",
                          backfill.id, lane.index)
    return backfill, True


def release_lane(store: Store, queue: TaskQueue, backfill_id: str, index: int, *,
                 now: datetime, settings: Settings) -> Run | None:
    """Give an idle lane its next run, in a transaction; send its task after it."""

    def body(tx: Tx) -> Commit | None:
        lane = tx.get_lane(backfill_id, index)
        if lane is None or not lane.idle:
            return None
        job = tx.get_job(lane.job_id)
        known: dict[str, Run | None] = {}
        while (released := bf.release(lane, job, known, now, settings)).need is not None:
            known[released.need] = tx.get_run(released.need)
        made = commit.released(released.lane, released.run)
        tx.persist(made)
        return made

    made = store.transact(body)
    if made is None:
        return None
    send_tasks(queue, made.tasks)
    return made.runs[0] if made.runs else None


# -- cancelling --------------------------------------------------------------------------

def cancel_backfill(store: Store, backfill_id: str, *, now: datetime,
                    who: str | None = None, engines: Engines | None = None) -> Backfill:
    """Nothing more starts; queued runs end cancelled; running ones finish; waiting
    ones end cancelled and, given `engines`, their work is asked to stop at once (else,
    and again in any case, at their next poll)."""

    def body(tx: Tx) -> tuple[Backfill, list[Run]]:
        backfill = tx.get_backfill(backfill_id)
        if backfill is None:
            raise NotFound("backfill", backfill_id)
        lanes = [tx.get_lane(backfill_id, i) for i in range(backfill.lanes)] \
            if backfill.status == BackfillStatus.ACTIVE else []
        current = {x.current_run_id: tx.get_run(x.current_run_id) for x in lanes
                   if x is not None and x.current_run_id}
        made = commit.cancelling(backfill, lanes, current, now, who)
        tx.persist(made)
        return made.backfills[0] if made.backfills else backfill, list(made.updated_runs)

    done, ended = store.transact(body)
    if engines is not None:
        for run in ended:
            if run.external is not None and run.external.cancelled_at is None:
                cancel_work(run, engines)  # best effort: the next poll asks again
    fold_successes(store, done.job_id, store.lanes(backfill_id), now)  # what did succeed
    return done


# -- reporting and the backstop ----------------------------------------------------------

@dataclass(frozen=True)
class BackfillView:
    backfill: Backfill
    progress: Progress


def backfill_view(store: Store, backfill_id: str) -> BackfillView:
    backfill = store.backfill(backfill_id)
    return BackfillView(backfill, bf.progress(backfill, store.lanes(backfill_id)))


def recent_views(store: Store, *, job_id: str | None = None, limit: int = 20
                 ) -> list[BackfillView]:
    return [BackfillView(b, bf.progress(b, store.lanes(b.id)))
            for b in store.recent_backfills(job_id=job_id, limit=limit)]


def sweep_backfills(store: Store, queue: TaskQueue, *, now: datetime,
                    settings: Settings) -> list[str]:
    """Release idle lanes of active backfills; mark finished ones done. Returns the
    runs it created. One query when there is none; O(active backfills × lanes) reads
    otherwise (backfills are few)."""
    created, control = [], None
    for backfill in store.active_backfills():
        lanes = store.lanes(backfill.id)
        fold_successes(store, backfill.job_id, lanes, now)
        if all(lane.finished for lane in lanes):
            _mark_done(store, backfill.id, now)
            continue
        if not any(lane.idle for lane in lanes):
            continue
        control = control or store.control()
        job = store.get_job(backfill.job_id)
        if job is not None and not control.kind_enabled(job.kind):
            continue  # switched off: the lanes wait for the switch
        for lane in lanes:
            if lane.idle:
                run = release_lane(store, queue, backfill.id, lane.index, now=now,
                                   settings=settings)
                if run is not None:
                    created.append(run.id)
    return created


def fold_successes(store: Store, job_id: str, lanes: list[Lane], now: datetime) -> list[str]:
    """Record the backfill's newest succeeded slot on the job's datasets, as of that slot
    (core.bookkeeping's rule for past slots: never fresher, never backwards). One
    transaction per dataset, and only when it changes something. Returns those changed."""
    newest = bf.newest_success(lanes)
    job = store.get_job(job_id) if newest is not None else None
    if job is None:
        return []
    slot, run_id = newest
    changed = []
    for key in job.produces:
        def body(tx: Tx, key=key) -> bool:
            found = tx.get_datasets([key], (job.id, tuple(job.produces)))[key]
            made = commit.folding(found, key, slot, run_id)
            tx.persist(made)
            return bool(made.datasets)

        if store.transact(body):
            changed.append(key)
    return changed


def _mark_done(store: Store, backfill_id: str, now: datetime) -> None:
    store.transact(lambda tx: tx.persist(commit.finishing(tx.get_backfill(backfill_id), now)))
