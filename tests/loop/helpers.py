"""Helpers for control-loop tests: a recording task queue and job factories."""

import time
from datetime import UTC, datetime, timedelta

from freshet.core.models import Job, new_job
from freshet.core.settings import Settings, load_settings
from freshet.gcp.store import Store
from freshet_local.recording_queue import RecordingQueue

__all__ = ["MIN", "T0", "Probe", "RecordingQueue", "add_job", "deliver_all", "loop_settings",
           "wait_for"]

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


def wait_for(predicate, timeout=30.0, interval=0.2, why=None):
    """The first truthy value of `predicate()` within `timeout` seconds; a timeout says
    `why()` too, when given (what was seen instead)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s" + (f": {why()}" if why else ""))


class Probe:
    """A sync that records what it was given (slot, interval, source, upstream versions)
    and how many of its kind ran at once; `fail` names slots whose runs fail for good."""

    def __init__(self, sleep: float = 0.0):
        import threading

        self.seen: list = []
        self.sleep = sleep
        self.fail: set = set()
        self.running = self.peak = 0
        self.by_source: dict[str, int] = {}  # running now, per trigger source
        self.peak_by_source: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, ctx):
        import time

        from freshet.core.errors import PermanentError

        source = str(ctx.trigger_source)
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.by_source[source] = self.by_source.get(source, 0) + 1
            self.peak_by_source[source] = max(self.peak_by_source.get(source, 0),
                                              self.by_source[source])
            self.seen.append(ctx)
        try:
            time.sleep(self.sleep)
            if ctx.slot in self.fail:
                raise PermanentError(f"no data for {ctx.slot:%Y-%m-%d %H:%M}")
            return {k: 1 for k in ctx.produces}
        finally:
            with self._lock:
                self.running -= 1
                self.by_source[source] -= 1

    @property
    def slots(self) -> list:
        return [c.slot for c in self.seen]


def deliver_all(store: Store, queue: RecordingQueue, settings: Settings, now, *,
                start: int = 0, limit: int = 1000) -> list:
    """Deliver every task the queue recorded (and those the deliveries send), in order,
    to run_task's step, at `now()` each. Returns the outcomes."""
    from freshet.loop.run import handle_one

    outcomes, index = [], start
    while index < len(queue.sent) and len(outcomes) < limit:
        task = queue.sent[index]
        index += 1
        outcomes.append(handle_one(store, queue, task.run_id, task.attempt, now=now(),
                                   settings=settings, clock=now))
    return outcomes
