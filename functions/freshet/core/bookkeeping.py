"""Dataset freshness bookkeeping: what each start, success and failure does to a dataset.

`apply_*` are pure: a dataset document and an event in, the new document out. They
enforce the invariants, whatever order events arrive in:
  - a failure never touches `last_success_at`;
  - `last_success_at` never moves backwards (two runs finishing out of order);
  - a start never marks anything successful;
  - a run's finish clears the running mark it set, whatever the clocks say;
  - `consecutive_failures` counts failures newer than the last success, and resets
    on a success newer than the last failure;
  - a run for a past slot (a backfill, a catch-up run) never makes the dataset look
    fresher than its slot: its success counts as of the slot, not as of when it
    finished, and an outcome for a slot older than the newest slot that succeeded
    (`last_success_slot`) is history, not news. Such runs do not mark the dataset as
    being refreshed and are not counted on the daily bar, which shows the live syncs.
The control loop calls them inside its own transactions, so a run's outcome and its
datasets commit together; freshet.loop.datasets runs one on its own.
"""

from dataclasses import replace
from datetime import datetime, timedelta

from freshet.core.models import Dataset
from freshet.core.runs import record_count
from freshet.core.text import MAX_ERROR_CHARS, shorten

HISTORY_DAYS = 90


def _newer(candidate: datetime, current: datetime | None) -> bool:
    return current is None or candidate >= current


def _with_day(dataset: Dataset, at: datetime, outcome: str) -> dict:
    day = at.date().isoformat()
    oldest = (at - timedelta(days=HISTORY_DAYS)).date().isoformat()
    daily = {d: dict(c) for d, c in dataset.daily.items() if d > oldest}
    counts = daily.setdefault(day, {"ok": 0, "fail": 0})
    counts[outcome] = counts.get(outcome, 0) + 1
    # Bounded by construction: days "from the future" (a skewed clock) are not pruned by
    # age, so only the newest HISTORY_DAYS + 1 days are ever kept.
    return {d: daily[d] for d in sorted(daily)[-(HISTORY_DAYS + 1):]}


def apply_start(dataset: Dataset, run_id: str, at: datetime) -> Dataset:
    if not _newer(at, dataset.last_started_at):
        return dataset
    return replace(dataset, last_started_at=at, last_started_run_id=run_id,
                   running_run_id=run_id, updated_at=at)


def _finished(dataset: Dataset, run_id: str) -> Dataset:
    """The run is over: if it was the one marked running, nothing is running now."""
    if dataset.running_run_id != run_id:
        return dataset
    return replace(dataset, running_run_id=None)


def _older_slot(dataset: Dataset, slot: datetime | None, past: bool) -> bool:
    """A past-slot run for a slot older than the newest slot that succeeded."""
    return (past and slot is not None and dataset.last_success_slot is not None
            and slot < dataset.last_success_slot)


def _newest(a: datetime | None, b: datetime | None) -> datetime | None:
    return max((t for t in (a, b) if t is not None), default=None)


def apply_success(dataset: Dataset, run_id: str, at: datetime,
                  records: int | None = None, *, slot: datetime | None = None,
                  past: bool = False) -> Dataset:
    """`at`: when the data is as of (the finish, or a past run's slot); `slot`: the
    run's slot; `past`: a run for a past slot (backfill, catch-up)."""
    records = record_count(records)  # a count Firestore cannot hold is no count
    daily = dataset.daily if past else _with_day(dataset, at, "ok")
    dataset = _finished(dataset, run_id)
    if _older_slot(dataset, slot, past):
        return replace(dataset, daily=daily)  # history: a newer slot succeeded already
    newest_slot = _newest(dataset.last_success_slot, slot)
    if not _newer(at, dataset.last_success_at):  # an older success arriving late
        return replace(dataset, daily=daily, last_success_slot=newest_slot)
    newest_outcome = _newer(at, dataset.last_failure_at)
    return replace(
        dataset,
        last_success_at=at,
        last_success_run_id=run_id,
        last_success_slot=newest_slot,
        last_run_id=run_id if newest_outcome else dataset.last_run_id,
        last_record_count=records if records is not None else dataset.last_record_count,
        consecutive_failures=0 if newest_outcome else dataset.consecutive_failures,
        last_error=None if newest_outcome else dataset.last_error,
        daily=daily,
        updated_at=at,
    )


def apply_failure(dataset: Dataset, run_id: str, at: datetime, error: str, *,
                  slot: datetime | None = None, past: bool = False) -> Dataset:
    daily = dataset.daily if past else _with_day(dataset, at, "fail")
    dataset = _finished(dataset, run_id)
    if _older_slot(dataset, slot, past):
        return replace(dataset, daily=daily)  # history: a newer slot succeeded already
    if dataset.last_success_at is not None and at < dataset.last_success_at:
        return replace(dataset, daily=daily)  # superseded by a newer success
    newest = _newer(at, dataset.last_failure_at)
    return replace(
        dataset,
        last_failure_at=at if newest else dataset.last_failure_at,
        last_failure_run_id=run_id if newest else dataset.last_failure_run_id,
        last_run_id=run_id if newest else dataset.last_run_id,
        last_error=shorten(error or "failed", MAX_ERROR_CHARS) if newest else dataset.last_error,
        consecutive_failures=dataset.consecutive_failures + 1,
        daily=daily,
        updated_at=at,
    )
