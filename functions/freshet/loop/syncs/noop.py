"""`noop`: does nothing and succeeds. For wiring checks and benchmarks."""

from freshet.loop.registry import SyncContext, SyncResult, sync


@sync("noop")
def noop(ctx: SyncContext) -> SyncResult:
    return SyncResult(records={key: 0 for key in ctx.produces})
