"""Sync kinds for the reliability tests, importable by a functions-framework process
(FRESHET_SYNC_MODULES=tests.reliability.syncs).

`rel_probe` appends "run_id attempt" to the file named by params["log"] as it starts
(so a test counts executions across processes), then misbehaves on attempts up to
params["upto"] (default 1) as params["mode"] says:
  ok | raise (transient) | permanent | hang (sleeps params["seconds"]) | exit (os._exit)
In-process tests may also name a callable in HOOKS with params["hook"]; it runs first.
"""

import os
import time
from collections.abc import Callable
from pathlib import Path

from freshet.core.errors import PermanentError
from freshet.loop.registry import SyncContext, sync

HOOKS: dict[str, Callable[[SyncContext], None]] = {}


class UpstreamDown(Exception):
    pass


@sync("rel_probe")
def probe(ctx: SyncContext) -> dict:
    if ctx.params.get("log"):
        with open(ctx.params["log"], "a") as log:
            log.write(f"{ctx.run_id} {ctx.attempt}\n")
    if ctx.params.get("hook"):
        HOOKS[ctx.params["hook"]](ctx)
    if ctx.attempt <= int(ctx.params.get("upto", 1)):
        mode = ctx.params.get("mode", "ok")
        if mode == "raise":
            raise UpstreamDown(f"upstream answered 503 on attempt {ctx.attempt}")
        if mode == "permanent":
            raise PermanentError("upstream answered 404: no such table")
        if mode == "hang":
            time.sleep(float(ctx.params.get("seconds", 3600)))
        if mode == "exit":
            os._exit(1)  # not 3 or 4: gunicorn reads those as boot errors and gives up
    time.sleep(float(ctx.params.get("sleep", 0)))
    return {k: 1 for k in ctx.produces}


def executions(log: Path) -> list[tuple[str, int]]:
    if not Path(log).exists():
        return []
    rows = [line.split() for line in Path(log).read_text().splitlines() if line.strip()]
    return [(run_id, int(attempt)) for run_id, attempt in rows]
