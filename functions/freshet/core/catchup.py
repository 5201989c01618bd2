"""Catch-up policy: what the tick does with the slots of a job that are already due.

Pure: a job's schedule and policy, its first unclaimed slot (`next_run_at`) and one
`now` in; the slots to run, the slots to record as skipped and the next slot out.

    latest  (the default) the latest due slot runs; older ones are coalesced into it.
    all     every due slot runs, oldest first, at most `max_catchup` (the newest ones);
            older ones are recorded as skipped.
    skip    a slot the tick reaches late is recorded as skipped; only an on-time slot
            runs, so after an outage the job waits for its next slot.
  max_lateness (any policy) a slot more than this late is skipped and recorded, never
            run late; run_task applies it again when the run finally starts.

A slot is on time for `skip` when the tick sees it within ON_TIME of its time (the
tick runs every minute and claims up to a minute ahead), or within max_lateness.
Skipped slots are recorded one run document each, the newest MAX_SKIP_RECORDS of them;
the oldest record's reason counts the rest, so a minutely job three days behind
writes a bounded number of documents.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from freshet.core.models import Catchup, Job
from freshet.core.schedules import latest_due, newest_due, next_after
from freshet.core.timeutil import format_duration

ON_TIME = timedelta(minutes=2)
MAX_SKIP_RECORDS = 100


@dataclass(frozen=True)
class SkippedSlot:
    slot: datetime
    reason: str


@dataclass(frozen=True)
class CatchupPlan:
    run: tuple[datetime, ...]  # oldest first; more than one: a catch-up chain
    skipped: tuple[SkippedSlot, ...]  # to record, oldest first
    next_run_at: datetime | None

    @property
    def chain(self) -> bool:
        """Several slots to run one after another, oldest first."""
        return len(self.run) > 1


def plan_catchup(job: Job, now: datetime) -> CatchupPlan:
    """The slots of `job` to run and to skip, given it is due (next_run_at is set)."""
    first = job.next_run_at
    if job.schedule.none:  # runs only when triggered: nothing for the tick
        return CatchupPlan(run=(), skipped=(), next_run_at=None)
    if first > now or not job.schedule.recurring:  # claimed ahead of its slot, or one time
        return _plan(job, [first] if _in_time(job, first, now) else [],
                     [] if _in_time(job, first, now) else [_late(job, first)], now)
    match job.catchup:
        case Catchup.LATEST:
            return _latest(job, first, now)
        case Catchup.ALL:
            return _all(job, first, now)
        case Catchup.SKIP:
            return _skip(job, first, now)
    raise AssertionError(f"unknown catch-up policy {job.catchup!r}")


def _latest(job: Job, first: datetime, now: datetime) -> CatchupPlan:
    slot = latest_due(job.schedule, first, now)
    if _in_time(job, slot, now):
        return _plan(job, [slot], [], now)
    return _plan(job, [], [_late(job, slot)], now)


def _all(job: Job, first: datetime, now: datetime) -> CatchupPlan:
    due, older = newest_due(job.schedule, first, now, job.max_catchup + MAX_SKIP_RECORDS)
    late = [s for s in due if not _in_time(job, s, now)]
    timely = [s for s in due if _in_time(job, s, now)]
    run, beyond = timely[-job.max_catchup:], timely[:-job.max_catchup]
    n = job.max_catchup
    skipped = [_late(job, s) for s in late] + [
        SkippedSlot(s, f"skipped: more than max_catchup ({n}) slots were missed; "
                       f"the newest {n} ran") for s in beyond]
    return _plan(job, run, _bounded(skipped, first, older), now)


def _skip(job: Job, first: datetime, now: datetime) -> CatchupPlan:
    due, older = newest_due(job.schedule, first, now, MAX_SKIP_RECORDS + 1)
    window = job.max_lateness or ON_TIME
    timely = [s for s in due if now - s <= window]
    run = timely[-1:]
    reason = (f"skipped: missed by more than {format_duration(window)} "
              "(catchup: skip runs only slots on time)")
    skipped = [SkippedSlot(s, reason) for s in due if s not in run]
    return _plan(job, run, _bounded(skipped, first, older), now)


def _in_time(job: Job, slot: datetime, now: datetime) -> bool:
    lateness = job.max_lateness
    return lateness is None or now - slot <= lateness


def _late(job: Job, slot: datetime) -> SkippedSlot:
    return SkippedSlot(slot, lateness_reason(job))


def lateness_reason(job: Job) -> str:
    return (f"skipped: could not start within max_lateness "
            f"({format_duration(job.max_lateness)}) of its slot")


def _bounded(skipped: list[SkippedSlot], first: datetime, older: bool
             ) -> list[SkippedSlot]:
    """The newest MAX_SKIP_RECORDS, oldest first; the oldest one counts the rest."""
    skipped = sorted(skipped, key=lambda s: s.slot)
    kept, dropped = skipped[-MAX_SKIP_RECORDS:], len(skipped) - MAX_SKIP_RECORDS
    if not kept or (dropped <= 0 and not older):
        return kept
    count = "" if older else f"{dropped} "
    note = f"; {count}older slots back to {first:%Y-%m-%d %H:%M} UTC were skipped too"
    return [SkippedSlot(kept[0].slot, kept[0].reason + note), *kept[1:]]


def _plan(job: Job, run: list[datetime], skipped: list[SkippedSlot],
          now: datetime) -> CatchupPlan:
    newest = max([*run, *(s.slot for s in skipped)], default=job.next_run_at)
    return CatchupPlan(run=tuple(sorted(run)), skipped=tuple(skipped),
                       next_run_at=next_after(job.schedule, max(newest, now)))
