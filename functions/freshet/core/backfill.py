"""Backfills (and catch-up chains): past slots run again, paced, with the tick's run ids.

A backfill is a document with its range and its progress, and `max_parallel` lanes.
Each lane owns every max_parallel-th slot of the plan and has at most one run in
flight: the commit that finishes a lane's run (run_task's finish, recovery's verdict,
a skip at claim) also creates the lane's next run. So at most `max_parallel` runs of a
backfill exist unfinished at once, each lane document is written by one run at a
time, and no counter is shared by concurrent finishes. Progress is the sum of the
lanes' counters.

Runs are named like scheduled runs: the run for a slot is `<job>__<slot>`, the id the
tick gives it, so a backfill racing the tick, or another backfill, never makes a slot
twice (creating the document is the dedup). A slot whose run ended without success
(failed, skipped, cancelled) is run again as the next *generation*,
`<job>__<slot>G1`, `G2`, ... deterministically, so racing backfills still agree.

`catchup: all` uses the same chain with one lane: the missed slots run oldest first.
Everything here is pure; freshet.loop.backfill reads and writes.
"""

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from freshet.core.errors import ValidationError
from freshet.core.models import (
    Job,
    JobStatus,
    Run,
    RunStatus,
    TriggerSource,
    _datetimes_to_utc,
    _known,
)
from freshet.core.runs import new_run, scheduled_run_id
from freshet.core.schedules import slots_between
from freshet.core.settings import Settings
from freshet.core.timeutil import to_utc
from freshet.core.values import check_int

MAX_SLOTS = 10_000  # per backfill: each lane document lists its slots (bounded size)
MAX_PARALLEL = 50
MAX_GENERATIONS = 50  # runs of one slot a backfill will look through
MAX_READS_PER_RELEASE = 60  # a lane that must skip more waits for recovery's sweep
# A backfill was asked for by an operator: it runs for a paused job too. A catch-up
# chain is the job's schedule: it stops when the job is paused.
BACKFILL_STATUSES = (JobStatus.ACTIVE, JobStatus.PAUSED)


class BackfillStatus(StrEnum):
    ACTIVE = "active"
    DONE = "done"
    CANCELLED = "cancelled"


class SlotState(StrEnum):
    """What a backfill finds at one generation of a slot's run."""

    FREE = "free"  # no run with this id: create it
    DONE = "done"  # it succeeded: nothing to do (unless --rerun)
    BUSY = "busy"  # it is queued or running (the tick's, or another backfill's)
    NEXT = "next"  # it ended without success (or --rerun): look at the next generation


def slot_state(run: Run | None, rerun: bool) -> SlotState:
    if run is None:
        return SlotState.FREE
    if not run.terminal:
        return SlotState.BUSY
    if run.status == RunStatus.SUCCEEDED and not rerun:
        return SlotState.DONE
    return SlotState.NEXT


def generation_run_id(job_id: str, slot: datetime, generation: int) -> str:
    """Generation 0 is the tick's own run id for the slot."""
    base = scheduled_run_id(job_id, slot)
    return base if generation == 0 else f"{base}G{generation}"


def backfill_id(job_id: str, start: datetime, end: datetime, rerun: bool,
                key: str) -> str:
    """Deterministic: the same request (same key, or same minute) is the same backfill."""
    digest = hashlib.sha256(f"{job_id}|{start}|{end}|{rerun}|{key}".encode()).hexdigest()
    return f"{job_id}--{start:%Y%m%dT%H%M}-{digest[:10]}"


def catchup_id(job_id: str, first_slot: datetime) -> str:
    return f"{job_id}--catchup-{first_slot:%Y%m%dT%H%M%S}"


@dataclass(frozen=True)
class SlotPlan:
    """What a backfill will do, slot by slot, as planned (the dry run shows it)."""

    slots: tuple[datetime, ...]  # every slot of the job in the range
    todo: tuple[datetime, ...]  # those it will run
    done: tuple[datetime, ...]  # already succeeded (skipped unless --rerun)
    busy: tuple[datetime, ...]  # a run is in flight for them now (left to it)


def range_slots(job: Job, start: datetime, end: datetime, now: datetime
                ) -> tuple[datetime, ...]:
    """The job's slots in [start, min(end, now)]: future slots belong to the tick."""
    if not job.schedule.recurring:
        raise ValidationError("job_id", f"job {job.id!r} has no cron schedule: "
                                        "there are no slots to backfill")
    if start > end:
        raise ValidationError("from", "must not be after 'to'")
    found = slots_between(job.schedule, start, min(end, now), limit=MAX_SLOTS + 1)
    if len(found) > MAX_SLOTS:
        raise ValidationError("to", f"the range holds more than {MAX_SLOTS} slots of "
                                    f"{job.id!r}; split it into smaller backfills")
    return tuple(found)


def plan_slots(slots: tuple[datetime, ...], states: dict[datetime, SlotState]
               ) -> SlotPlan:
    """`states`: each slot's state as found (its newest generation)."""
    pick = {s: states.get(s, SlotState.FREE) for s in slots}
    return SlotPlan(
        slots=slots,
        todo=tuple(s for s in slots if pick[s] in (SlotState.FREE, SlotState.NEXT)),
        done=tuple(s for s in slots if pick[s] == SlotState.DONE),
        busy=tuple(s for s in slots if pick[s] == SlotState.BUSY),
    )


@dataclass
class Lane:
    """One lane of a backfill: its slots, the next to release, its one run in flight."""

    backfill_id: str
    index: int
    job_id: str
    slots: list[datetime]
    source: TriggerSource = TriggerSource.BACKFILL
    rerun: bool = False
    next: int = 0  # index into slots of the next slot to release
    current_run_id: str | None = None
    done: int = 0  # its runs that succeeded
    failed: int = 0
    skipped: int = 0  # slots found done or busy when their turn came, or runs skipped
    cancelled: int = 0
    stopped: bool = False  # the backfill was cancelled: release nothing more
    # Its newest slot that succeeded (and the run): what freshness learns from the lane
    # when recovery's sweep folds it into the datasets.
    newest_success_slot: datetime | None = None
    newest_success_run_id: str | None = None
    updated_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.current_run_id is None and (self.stopped or self.next >= len(self.slots))

    @property
    def idle(self) -> bool:
        """Nothing in flight, yet slots remain: recovery's sweep releases the next."""
        return self.current_run_id is None and not self.finished

    @property
    def remaining(self) -> int:
        return len(self.slots) - self.next

    def to_doc(self) -> dict:
        return {"backfill_id": self.backfill_id, "index": self.index, "job_id": self.job_id,
                "slots": list(self.slots), "source": str(self.source), "rerun": self.rerun,
                "next": self.next, "current_run_id": self.current_run_id, "done": self.done,
                "failed": self.failed, "skipped": self.skipped, "cancelled": self.cancelled,
                "stopped": self.stopped, "newest_success_slot": self.newest_success_slot,
                "newest_success_run_id": self.newest_success_run_id,
                "updated_at": self.updated_at}

    @classmethod
    def from_doc(cls, data: dict) -> "Lane":
        data = _datetimes_to_utc(_known(cls, dict(data)),
                                 ("updated_at", "newest_success_slot"))
        data["slots"] = [to_utc(s) for s in data["slots"]]
        data["source"] = TriggerSource(data.get("source", TriggerSource.BACKFILL))
        return cls(**data)


def lanes_for(backfill: "Backfill", todo: tuple[datetime, ...]) -> list[Lane]:
    """Slot i goes to lane i % max_parallel: every lane starts with the oldest it has."""
    count = max(1, min(backfill.max_parallel, len(todo)))
    return [Lane(backfill_id=backfill.id, index=i, job_id=backfill.job_id,
                 slots=list(todo[i::count]), source=backfill.source, rerun=backfill.rerun,
                 updated_at=backfill.created_at)
            for i in range(count)]


def taken(lane: Lane, run_id: str, now: datetime) -> Lane:
    """The lane released its next slot as `run_id`."""
    return replace(lane, next=lane.next + 1, current_run_id=run_id, updated_at=now)


def passed_over(lane: Lane, now: datetime) -> Lane:
    """Its next slot needs no run (done or busy already)."""
    return replace(lane, next=lane.next + 1, skipped=lane.skipped + 1, updated_at=now)


def settled(lane: Lane, run: Run, now: datetime) -> Lane:
    """The lane's run in flight ended: count it, free the lane."""
    if lane.current_run_id != run.id or not run.terminal:
        return lane
    counter = {RunStatus.SUCCEEDED: "done", RunStatus.FAILED: "failed",
               RunStatus.SKIPPED: "skipped", RunStatus.CANCELLED: "cancelled"}[run.status]
    lane = replace(lane, current_run_id=None, updated_at=now,
                   **{counter: getattr(lane, counter) + 1})
    if run.status == RunStatus.SUCCEEDED and (lane.newest_success_slot is None
                                              or run.scheduled_for > lane.newest_success_slot):
        lane = replace(lane, newest_success_slot=run.scheduled_for,
                       newest_success_run_id=run.id)
    return lane


@dataclass(frozen=True)
class Released:
    """What a lane's release decided: the lane after it, the run to create (if any), or
    `need`: the run id it must know about first (read it and ask again)."""

    lane: Lane
    run: Run | None = None
    need: str | None = None


def release(lane: Lane, job: Job | None, known: Mapping[str, Run | None], now: datetime,
            settings: Settings) -> Released:
    """The lane's next slot that needs a run becomes one. Slots are looked at in order,
    each through its generations (`known`: the runs read so far by id, None: no such
    run): a slot done or in flight is passed over, never run twice. The ids are
    deterministic, so the caller reads exactly the ones asked for, one at a time; past
    MAX_READS_PER_RELEASE the lane waits for recovery's sweep."""
    reads = 0
    allowed = BACKFILL_STATUSES if lane.source == TriggerSource.BACKFILL else (JobStatus.ACTIVE,)
    while not lane.stopped and lane.next < len(lane.slots):
        if job is None or job.status not in allowed:
            return Released(stopped(lane, now))  # its job is gone: nothing more to run
        slot = lane.slots[lane.next]
        state, generation = SlotState.NEXT, -1
        while state == SlotState.NEXT and generation + 1 < MAX_GENERATIONS:
            if reads >= MAX_READS_PER_RELEASE:
                return Released(lane)  # recovery's sweep carries on from here
            generation += 1
            run_id = generation_run_id(job.id, slot, generation)
            if run_id not in known:
                return Released(lane, need=run_id)
            state = slot_state(known[run_id], lane.rerun)
            reads += 1
        if state == SlotState.FREE:
            run = new_run(job, generation_run_id(job.id, slot, generation), slot,
                          source=lane.source, now=now, settings=settings,
                          backfill_id=lane.backfill_id, lane=lane.index)
            return Released(taken(lane, run.id, now), run)
        lane = passed_over(lane, now)  # done or in flight already: not run twice
    return Released(lane)


def newest_success(lanes: list[Lane]) -> tuple[datetime, str] | None:
    """(slot, run id) of the newest slot any lane ran with success."""
    found = [(x.newest_success_slot, x.newest_success_run_id) for x in lanes
             if x.newest_success_slot is not None]
    return max(found, default=None)


def stopped(lane: Lane, now: datetime) -> Lane:
    """Cancelled: nothing more is released; the slots never released count as cancelled."""
    if lane.stopped:
        return lane
    return replace(lane, stopped=True, cancelled=lane.cancelled + lane.remaining,
                   next=len(lane.slots), updated_at=now)


@dataclass
class Backfill:
    id: str
    job_id: str
    start: datetime
    end: datetime
    max_parallel: int
    source: TriggerSource = TriggerSource.BACKFILL
    rerun: bool = False
    status: BackfillStatus = BackfillStatus.ACTIVE
    slots: int = 0  # the job's slots in the range
    planned: int = 0  # of them, those the plan found without a success (or all: --rerun)
    already_done: int = 0  # found succeeded when planned (not run again)
    busy_at_plan: int = 0  # found in flight when planned (left to that run)
    lanes: int = 1
    note: str = ""  # catch-up: why it exists
    requested_by: str | None = None
    idempotency_key: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    finished_at: datetime | None = None
    cancelled_at: datetime | None = None

    _TIMES = ("start", "end", "created_at", "updated_at", "finished_at", "cancelled_at")

    def to_doc(self) -> dict:
        doc = {f: getattr(self, f) for f in self.__dataclass_fields__}
        doc["source"], doc["status"] = str(self.source), str(self.status)
        return doc

    @classmethod
    def from_doc(cls, data: dict) -> "Backfill":
        data = _datetimes_to_utc(_known(cls, dict(data)), cls._TIMES)
        data["source"] = TriggerSource(data.get("source", TriggerSource.BACKFILL))
        data["status"] = BackfillStatus(data.get("status", BackfillStatus.ACTIVE))
        return cls(**data)


def check_max_parallel(value: object) -> int:
    return check_int(value, "max_parallel", 1, MAX_PARALLEL)


def new_backfill(job: Job, plan: SlotPlan, *, start: datetime, end: datetime,
                 max_parallel: int, rerun: bool, now: datetime, key: str | None = None,
                 requested_by: str | None = None) -> Backfill:
    max_parallel = check_max_parallel(max_parallel)
    ident = backfill_id(job.id, start, end, rerun, key or f"{now:%Y%m%dT%H%M}")
    return Backfill(
        id=ident, job_id=job.id, start=start, end=end, max_parallel=max_parallel,
        rerun=rerun, slots=len(plan.slots), planned=len(plan.todo),
        already_done=len(plan.done), busy_at_plan=len(plan.busy),
        lanes=max(1, min(max_parallel, len(plan.todo))), requested_by=requested_by,
        idempotency_key=key, created_at=now, updated_at=now,
        status=BackfillStatus.ACTIVE if plan.todo else BackfillStatus.DONE,
        finished_at=None if plan.todo else now,
    )


def new_catchup(job: Job, slots: tuple[datetime, ...], now: datetime, note: str) -> Backfill:
    return Backfill(
        id=catchup_id(job.id, slots[0]), job_id=job.id, start=slots[0], end=slots[-1],
        max_parallel=1, source=TriggerSource.CATCHUP, slots=len(slots), planned=len(slots),
        lanes=1, note=note, created_at=now, updated_at=now,
    )


@dataclass(frozen=True)
class Progress:
    """A backfill's progress: the sum of its lanes' counters."""

    planned: int
    done: int = 0
    failed: int = 0
    skipped: int = 0
    cancelled: int = 0
    running: int = 0  # lanes with a run in flight
    waiting: int = 0  # slots not released yet
    status: BackfillStatus = BackfillStatus.ACTIVE
    current_runs: tuple[str, ...] = field(default_factory=tuple)

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.skipped + self.cancelled

    @property
    def fraction(self) -> float:
        return 1.0 if not self.planned else min(1.0, self.finished / self.planned)


def progress(backfill: Backfill, lanes: list[Lane]) -> Progress:
    status = backfill.status
    if status == BackfillStatus.ACTIVE and lanes and all(lane.finished for lane in lanes):
        status = BackfillStatus.DONE  # recovery's sweep writes it; readers need not wait
    return Progress(
        planned=backfill.planned, done=sum(x.done for x in lanes),
        failed=sum(x.failed for x in lanes), skipped=sum(x.skipped for x in lanes),
        cancelled=sum(x.cancelled for x in lanes),
        running=sum(x.current_run_id is not None for x in lanes),
        waiting=sum(x.remaining for x in lanes if not x.stopped), status=status,
        current_runs=tuple(x.current_run_id for x in lanes if x.current_run_id),
    )


def progress_bar(p: Progress, width: int = 30) -> str:
    """`[#########.....!...] 31/48`: '#' done, '!' failed, 's' skipped or cancelled."""
    if not p.planned:
        return "[" + "#" * width + "] 0/0"
    marks = ("#" * round(width * p.done / p.planned)
             + "!" * round(width * p.failed / p.planned)
             + "s" * round(width * (p.skipped + p.cancelled) / p.planned))[:width]
    return f"[{marks.ljust(width, '.')}] {p.finished}/{p.planned}"
