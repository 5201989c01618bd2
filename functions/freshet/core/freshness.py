"""Freshness: a pure function of one dataset document, one requirement and one `now`.

States `evaluate` decides, in the order it decides them:
  unknown  never synced;
  failing  never succeeded and the syncs fail, or the newest outcome is a failure
           while the data is still within its error threshold;
  running  never succeeded yet and a first sync is in progress, or a refresh is in
           progress for data that is past its warn threshold;
  error    the last success is at least `error_after` old ("needs < 26 h");
  warn     the last success is at least `warn_after` old;
  fresh    otherwise.
The status page adds `at_risk` (freshet.status.model): the dataset's own syncs are
fine but an upstream it is built from is stale. SEVERITY orders all of them.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from freshet.core.errors import ValidationError
from freshet.core.models import Dataset, check_dataset_key
from freshet.core.timeutil import human_duration, parse_duration


class State(StrEnum):
    FRESH = "fresh"
    RUNNING = "running"
    UNKNOWN = "unknown"
    AT_RISK = "at_risk"  # the data is on time, an upstream it is built from is not
    WARN = "warn"
    FAILING = "failing"
    ERROR = "error"


# Best to worst: what a banner shows when several datasets disagree is the worst.
SEVERITY = {state: rank for rank, state in enumerate(State)}
# What `evaluate` can answer (at_risk needs the upstream graph: freshet.status.model).
STATES = tuple(s for s in State if s != State.AT_RISK)
STALE_STATES = frozenset({State.UNKNOWN, State.AT_RISK, State.WARN, State.FAILING,
                          State.ERROR})


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
    state: State
    reason: str
    age: timedelta | None = None


def evaluate(dataset: Dataset | None, requirement: Requirement, now: datetime) -> Freshness:
    if dataset is None or dataset.last_success_at is None:
        return _never_succeeded(dataset, now)
    age = max(now - dataset.last_success_at, timedelta(0))
    needs = f"needs < {human_duration(requirement.error_after)}"
    said = f"last success {human_duration(age)} ago"
    if age >= requirement.error_after:
        return Freshness(State.ERROR, f"{said}; {needs}{_failure_note(dataset)}", age)
    if dataset.failing:
        return Freshness(State.FAILING, f"{said} ({needs}){_failure_note(dataset)}", age)
    if age >= requirement.warn_after:
        if dataset.running:
            return Freshness(State.RUNNING, f"{said}; refresh in progress ({needs})", age)
        warn = human_duration(requirement.warn_after)
        return Freshness(State.WARN, f"{said}; expected every {warn} ({needs})", age)
    return Freshness(State.FRESH, f"{said} ({needs})", age)


def _never_succeeded(dataset: Dataset | None, now: datetime) -> Freshness:
    if dataset is not None and dataset.failing:
        return Freshness(State.FAILING, f"never synced successfully{_failure_note(dataset)}")
    if dataset is not None and dataset.running:
        ago = human_duration(now - dataset.last_started_at)
        return Freshness(State.RUNNING, f"first sync in progress (started {ago} ago)")
    return Freshness(State.UNKNOWN, "never synced")


def failure_note(dataset: Dataset | None, error: str | None) -> str:
    """"; the last 3 syncs failed: <error>" while the newest outcome is a failure. The
    caller passes the error as it may be shown (the page redacts and shortens it)."""
    if dataset is None or not dataset.failing:
        return ""
    count = dataset.consecutive_failures
    syncs = "the last sync" if count <= 1 else f"the last {count} syncs"
    return f"; {syncs} failed" + (f": {error}" if error else "")


def _failure_note(dataset: Dataset) -> str:
    return failure_note(dataset, dataset.last_error)


def worst(states: Iterable[str]) -> State:
    """The most severe of several states ('fresh' for none)."""
    return max((State(s) for s in states), key=SEVERITY.__getitem__, default=State.FRESH)
