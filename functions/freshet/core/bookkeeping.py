"""Dataset freshness bookkeeping: what each start, success and failure does to a dataset.

`apply_*` are pure: a dataset document and an event in, the new document out. They
enforce the invariants, whatever order events arrive in:
  - a failure never touches `last_success_at`;
  - `last_success_at` never moves backwards (two runs finishing out of order);
  - a start never marks anything successful;
  - a run's finish clears the running mark it set, whatever the clocks say;
  - `consecutive_failures` counts failures newer than the last success, and resets
    on a success newer than the last failure.
The control loop calls them inside its own transactions, so a run's outcome and its
datasets commit together; freshet.loop.datasets runs one on its own.
"""

from dataclasses import replace
from datetime import datetime, timedelta

from freshet.core.models import Dataset
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
    return daily


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


def apply_success(dataset: Dataset, run_id: str, at: datetime,
                  records: int | None = None) -> Dataset:
    daily = _with_day(dataset, at, "ok")
    dataset = _finished(dataset, run_id)
    if not _newer(at, dataset.last_success_at):
        return replace(dataset, daily=daily)  # an older success arriving late
    newest_outcome = _newer(at, dataset.last_failure_at)
    return replace(
        dataset,
        last_success_at=at,
        last_success_run_id=run_id,
        last_run_id=run_id if newest_outcome else dataset.last_run_id,
        last_record_count=records if records is not None else dataset.last_record_count,
        consecutive_failures=0 if newest_outcome else dataset.consecutive_failures,
        last_error=None if newest_outcome else dataset.last_error,
        daily=daily,
        updated_at=at,
    )


def apply_failure(dataset: Dataset, run_id: str, at: datetime, error: str) -> Dataset:
    daily = _with_day(dataset, at, "fail")
    dataset = _finished(dataset, run_id)
    if dataset.last_success_at is not None and at <= dataset.last_success_at:
        # Superseded by a newer success, or one at the same instant: a success wins a
        # tie (as in apply_success and Dataset.failing), or the failure would count
        # while the dataset is not failing.
        return replace(dataset, daily=daily)
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
