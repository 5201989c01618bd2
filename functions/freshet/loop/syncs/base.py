"""What a sync kind is made of, and what it gets: imported by every kind's package and
by the registry, importing neither (so no kind and the registry import each other).

A kind is one package under freshet/loop/syncs/ (docs/adding-a-kind.md):

    params.py    its params' schema: parse(params) -> a typed value, raising
                 ValidationError("params.<field>", ...) for what a run could never use
    sync.py      run(ctx) -> SyncResult: the runtime
    __init__.py  KIND = Kind("name", run=sync.run, check=params.check)

A kind whose work runs on an engine (BigQuery, Cloud Run Jobs) returns `Started`
instead: the run waits, freshet.loop.poll follows the engine, and the kind's `finish`
turns the engine's end into the SyncResult the run records.

`check` is what `apply` (and POST /jobs) runs on a job's params before anything is
stored, so a bad field is refused at its file:line rather than failing every run.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from freshet.core.egress import EgressPolicy
from freshet.core.errors import PermanentError, ValidationError


@dataclass
class SyncResult:
    records: dict[str, int] = field(default_factory=dict)
    note: str = ""
    # {dataset key: the time its data is current to}; timezone-aware.
    watermarks: dict[str, datetime] = field(default_factory=dict)


@dataclass(frozen=True)
class Started:
    """Work a sync started on an engine and did not wait for: the run waits on it.
    `engine` is "bigquery" (`external_id` the job id) or "cloud_run" (the execution's
    name); `timeout` the job's, which Freshet keeps besides the engine's own."""

    engine: str
    external_id: str
    location: str = ""
    timeout: timedelta | None = None
    link: str = ""
    adopted: bool = False  # an earlier delivery's work was found and adopted


@dataclass
class SyncContext:
    """What a sync gets. `slot` is the time the run stands for (its schedule slot; for a
    manual run, when it was asked for; for a triggered run, when its upstreams became
    fresh) and (`interval_start`, `slot`] its data interval: "the hour ending at 10:00",
    not "whatever now is". `interval_start` is None when there is no previous slot."""

    job_id: str
    run_id: str
    attempt: int
    params: dict
    produces: list[str]
    deadline: datetime
    heartbeat: Callable[[], None]
    logger: logging.Logger
    slot: datetime | None = None
    interval_start: datetime | None = None
    trigger_source: str = "schedule"  # schedule, manual, api, catchup, backfill, upstream
    # A triggered run: the upstream versions (dataset -> the run that made it fresh).
    upstream_versions: dict[str, str] = field(default_factory=dict)
    # Where a sync may keep what it fetched (http_fetch snapshots); set by run_task.
    snapshot: Callable[[str, bytes, str], None] | None = None
    # Where a sync may connect (the pipeline's `http_fetch:` section, applied to the
    # control document): handed in by run_task, never read from the environment.
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    # The engines' adapters (freshet.loop.engines.Engines), for kinds that start work there.
    engines: Any = None
    # Earlier attempts abandoned while running: work they started on an engine may
    # exist unrecorded, and is adopted rather than started again.
    unrecorded_attempts: tuple[int, ...] = ()

    @property
    def interval(self) -> tuple[datetime | None, datetime | None]:
        """The data interval (previous slot, this slot]."""
        return self.interval_start, self.slot


@dataclass(frozen=True)
class CheckContext:
    """What a kind's apply-time check may know of the pipeline besides the job."""

    egress: EgressPolicy = field(default_factory=EgressPolicy)


Handler = Callable[[SyncContext], "SyncResult | Started | dict | None"]
# An engine kind's end: (the job's params, the engine's final status, the run's
# datasets, the engines) -> what the run records (records, watermarks).
Finish = Callable[[dict, Any, list[str], Any], SyncResult]
Check = Callable[[dict, CheckContext], None]


def no_params(params: dict, context: CheckContext) -> None:
    """The check of a kind that takes no params."""
    if params:
        raise ValidationError(f"params.{sorted(params)[0]}", "this kind takes no params")


def any_params(params: dict, context: CheckContext) -> None:
    """The check of a kind that reads no params and keeps whatever it is given (noop, as
    a placeholder; a custom kind that registers no check of its own)."""


@dataclass(frozen=True)
class Kind:
    name: str
    run: Handler
    check: Check = no_params
    finish: Finish | None = None  # an engine kind's: see Started


def as_result(value: SyncResult | dict | None) -> SyncResult:
    """Handlers may return a SyncResult, a {dataset: records} dict, or nothing."""
    if value is None:
        return SyncResult()
    if isinstance(value, SyncResult):
        _check_watermarks(value.watermarks)
        return value
    if isinstance(value, dict):
        return SyncResult(records={str(k): int(v) for k, v in value.items()})
    raise TypeError(f"a sync must return SyncResult, dict or None, not {type(value).__name__}")


def _check_watermarks(watermarks: object) -> None:
    """A watermark the loop cannot compare is the sync's bug: retrying will not fix it."""
    if not isinstance(watermarks, dict):
        raise PermanentError("SyncResult.watermarks must be a dict of dataset key: datetime")
    for key, value in watermarks.items():
        if not isinstance(value, datetime) or value.utcoffset() is None:
            raise PermanentError(f"SyncResult.watermarks[{key!r}] must be a timezone-aware "
                                 f"datetime, not {value!r}")
