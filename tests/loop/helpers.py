"""Helpers for control-loop tests: a recording task queue and job factories."""

import time
from datetime import UTC, datetime, timedelta

from freshet.core.models import Job, new_job
from freshet.core.settings import Settings, load_settings
from freshet.gcp.store import Store
from freshet_local.recording_queue import RecordingQueue

__all__ = ["MIN", "T0", "RecordingQueue", "add_job", "loop_settings", "wait_for"]

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def loop_settings(**overrides) -> Settings:
    return load_settings({}, auth_mode="local", **overrides)


def add_job(store: Store, job_id: str, *, cron="*/5 * * * *", next_run_at=T0, kind="noop",
            produces=("ds." + "x",), status="active", **kw) -> Job:
    schedule = kw.pop("schedule", {"cron": cron, "timezone": "UTC"})
    job = new_job(id=job_id, kind=kind, schedule=schedule, produces=list(produces),
                  status=status, **kw)
    job.next_run_at = next_run_at
    job.created_at = job.updated_at = T0 - timedelta(days=1)
    store.put_job(job)
    return job


def wait_for(predicate, timeout=30.0, interval=0.2):
    """The first truthy value of `predicate()` within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s")
