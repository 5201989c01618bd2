"""`noop`: does nothing and succeeds. For wiring checks, benchmarks and placeholders: it
reads no params and keeps whatever params a job gives it."""

from freshet.loop.syncs.base import Kind, any_params
from freshet.loop.syncs.noop.sync import run

KIND = Kind("noop", run=run, check=any_params)
