"""Helpers for control-loop tests: a recording task queue and job factories."""

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from freshet.models import Job, new_job
from freshet.settings import Settings, load_settings
from freshet.store import Store
from freshet.tasks import TaskQueue

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


@dataclass
class Enqueued:
    run_id: str
    attempt: int
    dispatch: int
    schedule_time: datetime | None


class RecordingQueue(TaskQueue):
    """Freshet's own adapter with the Google call replaced by a record (and, on
    demand, a failure): the loop's logic is under test here, not Cloud Tasks."""

    def __init__(self, settings: Settings, *, fail: bool = False):
        super().__init__(settings, client=object())
        self.sent: list[Enqueued] = []
        self.fail = fail
        self._lock = threading.Lock()

    def enqueue(self, run_id, attempt, *, dispatch=0, schedule_time=None):
        if self.fail:
            raise ConnectionError("task queue unavailable")
        with self._lock:
            self.sent.append(Enqueued(run_id, attempt, dispatch, schedule_time))
        return run_id


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
