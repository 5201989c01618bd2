"""Sync kinds for the local demo and the tests: they exercise the failure paths.

Named in the demo config's `sync_modules`, so run_task imports them; a real
deployment never does.
"""

import random
import time
from datetime import UTC, datetime, timedelta

from freshet.core.errors import PermanentError
from freshet.loop.registry import SyncContext, SyncResult, sync


class UpstreamUnavailable(Exception):
    """A transient failure, as a flaky upstream API would cause."""


@sync("demo_flaky")
def flaky(ctx: SyncContext) -> SyncResult:
    """Fails (transiently) until attempt `succeed_on_attempt` (default 3), then succeeds."""
    succeed_on = int(ctx.params.get("succeed_on_attempt", 3))
    if ctx.attempt < succeed_on:
        raise UpstreamUnavailable(f"upstream answered 503 (attempt {ctx.attempt})")
    return SyncResult(records={k: int(ctx.params.get("records", 100)) for k in ctx.produces})


@sync("demo_slow")
def slow(ctx: SyncContext) -> SyncResult:
    """Takes `seconds` (default 5), sending heartbeats as a well-behaved sync does."""
    deadline = time.monotonic() + float(ctx.params.get("seconds", 5))
    while time.monotonic() < deadline:
        ctx.heartbeat()
        time.sleep(0.2)
    return SyncResult(records={k: int(ctx.params.get("records", 10)) for k in ctx.produces})


@sync("demo_hangs")
def hangs(ctx: SyncContext) -> SyncResult:
    """Hangs without heartbeats on its first `hang_attempts` attempts (default 1): the
    function's timeout kills it, the lease expires, recovery retries it."""
    if ctx.attempt <= int(ctx.params.get("hang_attempts", 1)):
        time.sleep(float(ctx.params.get("hang_seconds", 3600)))
    return SyncResult(records={k: 1 for k in ctx.produces})


@sync("demo_broken")
def broken(ctx: SyncContext) -> SyncResult:
    """Always fails permanently, with an error text that contains markup."""
    raise PermanentError(ctx.params.get("error", "upstream returned <b>401 Unauthorized</b>"))


@sync("demo_lagging")
def lagging(ctx: SyncContext) -> SyncResult:
    """Succeeds every time, but the data it loads is `lag_minutes` old (default 50): a
    feed that is always behind. Freshness is judged on that, not on the sync."""
    as_of = datetime.now(UTC) - timedelta(minutes=float(ctx.params.get("lag_minutes", 50)))
    return SyncResult(records={k: int(ctx.params.get("records", 100)) for k in ctx.produces},
                      watermarks={k: as_of for k in ctx.produces})


@sync("demo_chaos")
def chaos(ctx: SyncContext) -> SyncResult:
    """Fails with probability `fail_rate`, hangs with probability `hang_rate` (soak)."""
    roll = random.random()
    if roll < float(ctx.params.get("hang_rate", 0.0)):
        time.sleep(float(ctx.params.get("hang_seconds", 3600)))
    elif roll < float(ctx.params.get("hang_rate", 0.0)) + float(ctx.params.get("fail_rate", 0)):
        raise UpstreamUnavailable("random failure")
    return SyncResult(records={k: 1 for k in ctx.produces})
