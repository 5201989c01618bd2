"""Sync handlers, registered by job kind.

    @sync("noop")
    def noop(ctx: SyncContext) -> SyncResult:
        return SyncResult(records={"my.dataset": 0})

A handler gets a SyncContext and returns a SyncResult: records written per dataset
and, when it knows, the time each dataset's data is current to (its watermark, a
timezone-aware datetime): freshness is then judged on the data's age, not the sync's.
Raising PermanentError ends the run without retry; any other exception is transient.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from freshet.core.errors import PermanentError

__all__ = ["PermanentError", "SyncContext", "SyncResult", "sync", "handler_for", "known_kinds"]


@dataclass
class SyncResult:
    records: dict[str, int] = field(default_factory=dict)
    note: str = ""
    # {dataset key: the time its data is current to}; timezone-aware.
    watermarks: dict[str, datetime] = field(default_factory=dict)


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

    @property
    def interval(self) -> tuple[datetime | None, datetime | None]:
        """The data interval (previous slot, this slot]."""
        return self.interval_start, self.slot


Handler = Callable[[SyncContext], SyncResult | dict | None]
_HANDLERS: dict[str, Handler] = {}


def sync(kind: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        if kind in _HANDLERS and _HANDLERS[kind] is not fn:
            raise ValueError(f"a sync for kind {kind!r} is already registered")
        _HANDLERS[kind] = fn
        return fn

    return register


def unregister(kind: str) -> None:
    _HANDLERS.pop(kind, None)


def handler_for(kind: str) -> Handler | None:
    _load_builtins()
    return _HANDLERS.get(kind)


def known_kinds() -> list[str]:
    _load_builtins()
    return sorted(_HANDLERS)


def _load_builtins() -> None:
    import freshet.loop.syncs  # noqa: F401  (registers the built-in kinds on import)


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
