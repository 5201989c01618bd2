"""Freshness: a pure function of one dataset document, one requirement and one `now`.

States, in the order they are decided:
  unknown  never synced;
  failing  never succeeded and the syncs fail, or the newest outcome is a failure
           while the data is still within its error threshold;
  running  never succeeded yet and a first sync is in progress, or a refresh is in
           progress for data that is past its warn threshold;
  error    the last success is at least `error_after` old ("needs < 26 h");
  warn     the last success is at least `warn_after` old;
  fresh    otherwise.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from freshet.core.errors import ValidationError
from freshet.core.models import Dataset, check_dataset_key
from freshet.core.timeutil import human_duration, parse_duration

STATES = ("fresh", "warn", "error", "failing", "running", "unknown")
# Worst first: what a consumer banner shows when several datasets disagree.
SEVERITY = {"error": 5, "failing": 4, "warn": 3, "unknown": 2, "running": 1, "fresh": 0}


@dataclass(frozen=True)
class Requirement:
    dataset: str
    warn_after: timedelta
    error_after: timedelta

    def __post_init__(self):
        if self.warn_after > self.error_after:
            raise ValidationError("warn_after", "must not be longer than error_after")


def make_requirement(dataset: object, warn_after: object, error_after: object,
                     field: str = "requirement") -> Requirement:
    return Requirement(
        dataset=check_dataset_key(dataset, f"{field}.dataset"),
        warn_after=parse_duration(warn_after, f"{field}.warn_after"),
        error_after=parse_duration(error_after, f"{field}.error_after"),
    )


@dataclass(frozen=True)
class Freshness:
    state: str
    reason: str
    age: timedelta | None = None


def evaluate(dataset: Dataset | None, requirement: Requirement, now: datetime) -> Freshness:
    if dataset is None or dataset.last_success_at is None:
        return _never_succeeded(dataset, now)
    age = max(now - dataset.last_success_at, timedelta(0))
    needs = f"needs < {human_duration(requirement.error_after)}"
    said = f"last success {human_duration(age)} ago"
    if age >= requirement.error_after:
        return Freshness("error", f"{said}; {needs}{_failure_note(dataset)}", age)
    if dataset.failing:
        return Freshness("failing", f"{said} ({needs}){_failure_note(dataset)}", age)
    if age >= requirement.warn_after:
        if dataset.running:
            return Freshness("running", f"{said}; refresh in progress ({needs})", age)
        warn = human_duration(requirement.warn_after)
        return Freshness("warn", f"{said}; expected every {warn} ({needs})", age)
    return Freshness("fresh", f"{said} ({needs})", age)


def _never_succeeded(dataset: Dataset | None, now: datetime) -> Freshness:
    if dataset is not None and dataset.failing:
        return Freshness("failing", f"never synced successfully{_failure_note(dataset)}")
    if dataset is not None and dataset.running:
        ago = human_duration(now - dataset.last_started_at)
        return Freshness("running", f"first sync in progress (started {ago} ago)")
    return Freshness("unknown", "never synced")


def _failure_note(dataset: Dataset) -> str:
    if not dataset.failing:
        return ""
    count = dataset.consecutive_failures
    syncs = "the last sync" if count <= 1 else f"the last {count} syncs"
    error = f": {dataset.last_error}" if dataset.last_error else ""
    return f"; {syncs} failed{error}"


def worst(states) -> str:
    """The most severe of several states ('fresh' for none)."""
    return max(states, key=SEVERITY.__getitem__, default="fresh")
