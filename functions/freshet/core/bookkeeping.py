"""Dataset freshness bookkeeping: what each start, success and failure does to a dataset.

`apply_*` are pure: a dataset document and an event in, the new document out. They
enforce the invariants, whatever order events arrive in:
  - a failure never touches `last_success_at`;
  - `last_success_at` never moves backwards (two runs finishing out of order);
  - a start never marks anything successful;
  - the loop's runs mark their start on their job, not here (with_running shows it on
    the datasets) and record it here when they end (apply_started);
  - a run's finish clears the running mark it set, whatever the clocks say;
  - `consecutive_failures` counts failures newer than the last success, and resets
    on a success newer than the last failure;
  - a run for a past slot (a backfill, a catch-up run) never makes the dataset look
    fresher than its slot: its success counts as of the slot, not as of when it
    finished, and an outcome for a slot older than the newest slot that succeeded
    (`last_success_slot`) is history, not news. Such runs do not mark the dataset as
    being refreshed and are not counted on the daily bar, which shows the live syncs.
  - a watermark (the time the data is current to) is trusted only when it neither goes
    backwards nor lies in the future: such a one is recorded (`watermark_issue`,
    `rejected_watermark`) and shown, and `data_as_of` keeps its trusted value.
The control loop calls them inside its own transactions, so a run's outcome and its
datasets commit together; freshet.loop.datasets runs one on its own.
"""

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from enum import StrEnum

from freshet.core.models import Dataset, Job
from freshet.core.runs import record_count
from freshet.core.text import MAX_ERROR_CHARS, shorten

HISTORY_DAYS = 90
# A watermark this far past the sync's own clock is in the future (clocks disagree
# by seconds, not minutes); closer ones count as "now".
FUTURE_TOLERANCE = timedelta(minutes=5)
# Data points kept for judging deadlines: the publish every 5 minutes judges them,
# so this covers a sync every 6 s; older points leave their newest as the floor.
MAX_DATA_POINTS = 48


class WatermarkIssue(StrEnum):
    BACKWARDS = "backwards"
    FUTURE = "future"


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


def apply_started(dataset: Dataset, run_id: str, at: datetime) -> Dataset:
    """A run's start, recorded when it ends (the loop marks the start on the job): the
    newest start, without a running mark."""
    if not _newer(at, dataset.last_started_at):
        return dataset
    return replace(dataset, last_started_at=at, last_started_run_id=run_id)


def with_running(datasets: Iterable[Dataset], jobs: Iterable[Job]) -> list[Dataset]:
    """The datasets as they are shown: each produced by a job whose run is refreshing
    it now carries that run's running mark and start (the newest such start wins; one
    older than the dataset's last recorded start is over, as when it was marked on the
    dataset). A dataset no run ever ended yet appears with its first refresh."""
    marks: dict[str, tuple[datetime, str]] = {}
    for job in jobs:
        if not job.refreshing or job.refresh_started_at is None:
            continue
        mark = (job.refresh_started_at, job.refresh_run_id)
        for key in job.produces:
            if key not in marks or mark[0] > marks[key][0]:
                marks[key] = mark
    shown = {d.key: d for d in datasets}
    for key, (at, run_id) in marks.items():
        dataset = shown.get(key) or Dataset(key=key)
        if _newer(at, dataset.last_started_at):
            shown[key] = replace(dataset, last_started_at=at, last_started_run_id=run_id,
                                 running_run_id=run_id)
    return list(shown.values())


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


def judge_watermark(current: datetime | None, reported: datetime | None, at: datetime
                    ) -> tuple[datetime | None, WatermarkIssue | None]:
    """(the trusted data time, the issue with `reported` if it is not trusted)."""
    if reported is None:
        return current, None
    if reported > at + FUTURE_TOLERANCE:
        return current, WatermarkIssue.FUTURE
    if current is not None and reported < current:
        return current, WatermarkIssue.BACKWARDS
    return min(reported, at), None


def _with_watermark(dataset: Dataset, reported: datetime | None, at: datetime) -> dict:
    trusted, issue = judge_watermark(dataset.data_as_of, reported, at)
    if reported is None:  # nothing new said about the data: what was known stays
        return {}
    if issue is not None:
        return {"watermark_issue": str(issue), "rejected_watermark": reported}
    return {"data_as_of": trusted, "watermark_issue": None, "rejected_watermark": None}


def _with_point(dataset: Dataset, at: datetime, as_of: datetime | None) -> dict:
    if dataset.data_points and dataset.data_points[-1] == {"at": at, "as_of": as_of}:
        return {}  # the same success recorded again (a repeated fold): nothing new
    floor = dataset.data_floor
    if floor is None and not dataset.data_points and dataset.last_success_at is not None:
        # A success from before points were kept: it is where the history starts.
        floor = {"at": dataset.last_success_at, "as_of": dataset.data_as_of}
    points = [*dataset.data_points, {"at": at, "as_of": as_of}]
    if len(points) > MAX_DATA_POINTS:
        floor, points = points[-MAX_DATA_POINTS - 1], points[-MAX_DATA_POINTS:]
    return {"data_points": points, "data_floor": floor}


def apply_success(dataset: Dataset, run_id: str, at: datetime,
                  records: int | None = None, watermark: datetime | None = None, *,
                  slot: datetime | None = None, past: bool = False) -> Dataset:
    """`at`: when the data is as of (the finish, or a past run's slot); `watermark`: the
    time the sync says its data is current to; `slot`: the run's slot; `past`: a run
    for a past slot (backfill, catch-up)."""
    records = record_count(records)  # a count Firestore cannot hold is no count
    daily = dataset.daily if past else _with_day(dataset, at, "ok")
    dataset = _finished(dataset, run_id)
    if _older_slot(dataset, slot, past):
        return replace(dataset, daily=daily)  # history: a newer slot succeeded already
    newest_slot = _newest(dataset.last_success_slot, slot)
    if not _newer(at, dataset.last_success_at):  # an older success arriving late
        return replace(dataset, daily=daily, last_success_slot=newest_slot)
    newest_outcome = _newer(at, dataset.last_failure_at)
    data = _with_watermark(dataset, watermark, at)
    as_of = data.get("data_as_of", dataset.data_as_of)
    return replace(
        dataset,
        **data,
        **_with_point(dataset, at, as_of),
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
