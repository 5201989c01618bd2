"""The sync kinds, by name: the built-in packages (freshet/loop/syncs/<kind>/) and the
handlers a team's own modules register with `@sync`.

    @sync("my_kind")
    def my_kind(ctx: SyncContext) -> SyncResult:
        return SyncResult(records={"my.dataset": 0})

A handler gets a SyncContext and returns a SyncResult: records written per dataset
and, when it knows, the time each dataset's data is current to (its watermark, a
timezone-aware datetime): freshness is then judged on the data's age, not the sync's.
Raising PermanentError ends the run without retry; any other exception is transient.

The registry imports the built-in kinds; they import only freshet.loop.syncs.base
(no cycle). A custom module imports this one for `sync` (the registry imports it back
only by name, through freshet.loop.plugins).
"""

from collections.abc import Callable

from freshet.core.errors import PermanentError, ValidationError
from freshet.loop.syncs import bigquery_load, bigquery_query, cloud_run_job, http_fetch, noop
from freshet.loop.syncs.base import (
    Check,
    CheckContext,
    Handler,
    Kind,
    SyncContext,
    SyncResult,
    any_params,
    as_result,
)

__all__ = ["PermanentError", "SyncContext", "SyncResult", "CheckContext", "Kind", "sync",
           "handler_for", "known_kinds", "kind_for", "check_params", "as_result"]

BUILTIN: tuple[Kind, ...] = (http_fetch.KIND, noop.KIND, bigquery_query.KIND,
                             bigquery_load.KIND, cloud_run_job.KIND)
_KINDS: dict[str, Kind] = {k.name: k for k in BUILTIN}


def sync(kind: str, *, check: Check = any_params) -> Callable[[Handler], Handler]:
    """Register a handler (and, optionally, the check apply runs on its params)."""
    def register(fn: Handler) -> Handler:
        known = _KINDS.get(kind)
        if known is not None and known.run is not fn:
            raise ValueError(f"a sync for kind {kind!r} is already registered")
        _KINDS[kind] = Kind(kind, run=fn, check=check)
        return fn

    return register


def register(kind: Kind) -> None:
    """Register a whole kind package's KIND (a team's own, laid out like the built-ins)."""
    sync(kind.name, check=kind.check)(kind.run)


def unregister(kind: str) -> None:
    if kind not in {k.name for k in BUILTIN}:
        _KINDS.pop(kind, None)


def kind_for(kind: str) -> Kind | None:
    return _KINDS.get(kind)


def handler_for(kind: str) -> Handler | None:
    found = _KINDS.get(kind)
    return found.run if found else None


def known_kinds() -> list[str]:
    return sorted(_KINDS)


def check_params(kind: str, params: dict, context: CheckContext, where: str = "") -> None:
    """The kind's own check of a job's params; the error names `<where>.params.<field>`.
    An unknown kind is refused as `<where>.kind`."""
    found = _KINDS.get(kind)
    prefix = f"{where}." if where else ""
    if found is None:
        raise ValidationError(f"{prefix}kind", f"unknown kind {kind!r} (known: "
                              f"{', '.join(known_kinds())}; add yours with sync_modules)")
    try:
        found.check(params, context)
    except ValidationError as exc:
        raise ValidationError(f"{prefix}{exc.field}", exc.message) from None
