"""Freshness: a pure function of one dataset document, one requirement and one `now`.

The age judged is the data's when its syncs report a watermark (`Dataset.data_as_of`,
basis `data`), else the last success's (basis `sync`): a green sync that loaded
yesterday's file is not fresh data. An observed dataset (freshet.core.observe: data
Freshet did not load, seen through table metadata, a bucket or SQL) is judged on the
data time the observer read (basis `observed`); it has no syncs, so it is never
`running`, and old data that reads fine is `stale_data`.

States `evaluate` decides, in the order it decides them:
  unknown     never synced;
  failing     never succeeded and the syncs fail, or the newest outcome is a failure
              while the data is still within its error threshold;
  running     never succeeded yet and a first sync is in progress, or a refresh is in
              progress for data that is past its warn threshold;
  stale_data  the syncs succeed (the last one within `error_after`), but the data they
              report is at least `error_after` old: "synced 2 min ago, but the data is
              as of yesterday 23:00 UTC". Not the same as failing;
  error       the data is at least `error_after` old ("needs < 26 h") and no sync
              succeeded within that time either;
  warn        the data is at least `warn_after` old;
  fresh       otherwise.
The status page adds `at_risk` (freshet.status.model: the dataset's own syncs are fine
but an upstream it is built from is stale, or a deadline is in danger) and
`maintenance` (a maintenance window excuses what would otherwise be bad: `excuse`).
SEVERITY orders all of them.
"""

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from freshet.core.errors import ValidationError
from freshet.core.models import Dataset, check_dataset_key
from freshet.core.timeutil import human_duration, parse_duration


class State(StrEnum):
    FRESH = "fresh"
    RUNNING = "running"
    MAINTENANCE = "maintenance"  # would be worse, but a maintenance window excuses it
    UNKNOWN = "unknown"
    AT_RISK = "at_risk"  # the data is on time, an upstream it is built from is not
    WARN = "warn"
    FAILING = "failing"
    STALE_DATA = "stale_data"  # the syncs succeed, the data they bring is too old
    ERROR = "error"


class Basis(StrEnum):
    """What the age is measured from (status.json `freshness_basis`)."""

    DATA = "data"  # the watermark the syncs report: when the data is current to
    SYNC = "sync"  # the last successful sync
    OBSERVED = "observed"  # the data time an observation read (core.observe)


# Best to worst: what a banner shows when several datasets disagree is the worst.
SEVERITY = {state: rank for rank, state in enumerate(State)}
# What `evaluate` can answer (at_risk needs the upstream graph and the deadlines,
# maintenance the windows: freshet.status.model).
STATES = tuple(s for s in State if s not in (State.AT_RISK, State.MAINTENANCE))
STALE_STATES = frozenset({State.UNKNOWN, State.AT_RISK, State.WARN, State.FAILING,
                          State.STALE_DATA, State.ERROR})
# What a maintenance window excuses: everything that says the data cannot be trusted.
EXCUSABLE = frozenset({State.UNKNOWN, State.WARN, State.FAILING, State.STALE_DATA,
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


@dataclass(frozen=True, slots=True)
class Freshness:
    state: State
    reason: str
    age: timedelta | None = None  # of the data (basis data) or of the last success
    basis: Basis = Basis.SYNC
    data_as_of: datetime | None = None
    synced_age: timedelta | None = None  # since the last success, whatever the basis
    excused_state: State | None = None  # the state a maintenance window excused
    excused_by: str | None = None  # that window's id


def evaluate(dataset: Dataset | None, requirement: Requirement, now: datetime) -> Freshness:
    if dataset is None or dataset.last_success_at is None:
        return _never_succeeded(dataset, now)
    observed = dataset.freshness_basis == Basis.OBSERVED
    if observed and dataset.data_as_of is None:
        return Freshness(State.UNKNOWN, "observed, but there is no data there yet"
                         + _failure_note(dataset), basis=Basis.OBSERVED)
    synced = max(now - dataset.last_success_at, timedelta(0))
    as_of = dataset.data_as_of
    basis = Basis.OBSERVED if observed else Basis.SYNC if as_of is None else Basis.DATA
    age = synced if as_of is None else max(now - as_of, timedelta(0))
    needs = f"needs < {human_duration(requirement.error_after)}"
    said = (f"last success {human_duration(synced)} ago" if as_of is None else
            f"data as of {as_of_words(as_of, now)} ({human_duration(age)} old), observed"
            if observed else
            f"data as of {as_of_words(as_of, now)} ({human_duration(age)} old), "
            f"synced {human_duration(synced)} ago")
    if age >= requirement.error_after:
        if observed and not dataset.failing:
            state, reason = State.STALE_DATA, (f"observed: the data is as of "
                                               f"{as_of_words(as_of, now)} and has not "
                                               f"changed since ({needs})")
        elif as_of is not None and synced < requirement.error_after and not dataset.failing:
            state, reason = State.STALE_DATA, (f"synced {human_duration(synced)} ago, but the "
                                               f"data is as of {as_of_words(as_of, now)} "
                                               f"({needs})")
        else:
            state, reason = State.ERROR, f"{said}; {needs}"
    elif dataset.failing:
        state, reason = State.FAILING, f"{said} ({needs})"
    elif age >= requirement.warn_after and dataset.running:
        state, reason = State.RUNNING, f"{said}; refresh in progress ({needs})"
    elif age >= requirement.warn_after:
        warn = human_duration(requirement.warn_after)
        state, reason = State.WARN, f"{said}; expected every {warn} ({needs})"
    else:
        state, reason = State.FRESH, f"{said} ({needs})"
    reason += _failure_note(dataset) + watermark_note(dataset)
    return Freshness(state, reason, age, basis, as_of, synced)


def excuse(freshness: Freshness, why: str, window: str | None = None) -> Freshness:
    """What a maintenance window does to a bad state: excused, not failed. `why` names
    the window ("maintenance 'warehouse-vacuum' until 02:30 UTC")."""
    if freshness.state not in EXCUSABLE:
        return freshness
    return replace(freshness, state=State.MAINTENANCE, excused_state=freshness.state,
                   excused_by=window, reason=f"{freshness.reason}; excused: {why}")


def as_of_words(when: datetime, now: datetime) -> str:
    """'today 09:00 UTC', 'yesterday 23:00 UTC', '2026-11-25 23:00 UTC' (UTC days)."""
    when = when.astimezone(UTC)
    days = (now.astimezone(UTC).date() - when.date()).days
    # the fields themselves, not strftime (thousands of reasons a page build)
    day = ("today" if days == 0 else "yesterday" if days == 1
           else when.date().isoformat() if when.year >= 1000 else f"{when:%Y-%m-%d}")
    return f"{day} {when.hour:02d}:{when.minute:02d} UTC"


def watermark_note(dataset: Dataset) -> str:
    """"; watermark rejected: ..." while the last reported watermark was not trusted."""
    if dataset.watermark_issue is None or dataset.rejected_watermark is None:
        return ""
    reported = f"{dataset.rejected_watermark.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    match dataset.watermark_issue:
        case "future":
            return f"; watermark rejected: {reported} lies in the future"
        case _:
            return f"; watermark rejected: {reported} is older than the data already had"


def _never_succeeded(dataset: Dataset | None, now: datetime) -> Freshness:
    if dataset is not None and dataset.failing:
        verb = "read" if dataset.freshness_basis == Basis.OBSERVED else "synced"
        return Freshness(State.FAILING, f"never {verb} successfully{_failure_note(dataset)}")
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
    what = "read" if dataset.freshness_basis == Basis.OBSERVED else "sync"
    syncs = f"the last {what}" if count <= 1 else f"the last {count} {what}s"
    return f"; {syncs} failed" + (f": {error}" if error else "")


def _failure_note(dataset: Dataset) -> str:
    return failure_note(dataset, dataset.last_error)


def worst(states: Iterable[str]) -> State:
    """The most severe of several states ('fresh' for none)."""
    return max((State(s) for s in states), key=SEVERITY.__getitem__, default=State.FRESH)
