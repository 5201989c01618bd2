"""`noop`: does nothing and succeeds. For wiring checks and benchmarks. No params."""

from freshet.loop.syncs.base import Kind
from freshet.loop.syncs.noop.sync import run

KIND = Kind("noop", run=run)
