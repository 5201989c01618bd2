"""A TaskQueue that records instead of calling Cloud Tasks, for tests and benchmarks
that exercise the loop's logic rather than the queue (the end-to-end tests and
benchmarks use gcloud-tasks-emulator)."""

import threading
from dataclasses import dataclass
from datetime import datetime

from freshet.core.herd import ShardTask
from freshet.core.runs import job_of_run
from freshet.core.settings import Settings
from freshet.gcp.tasks import TaskQueue


@dataclass
class Enqueued:
    run_id: str
    attempt: int
    dispatch: int
    schedule_time: datetime | None
    queue: str = ""  # the queue it would go to (its pool's, or its job's dispatch shard)
    poll: int | None = None  # a poll of a waiting run (its number), not a delivery


class RecordingQueue(TaskQueue):
    """Freshet's own adapter with the Google call replaced by a record (and, on
    demand, a failure, as when Cloud Tasks is unreachable)."""

    def __init__(self, settings: Settings, *, fail: bool = False):
        super().__init__(settings, client=object())
        self.sent: list[Enqueued] = []
        self.claims: list[ShardTask] = []
        self.fail = fail
        self._record_lock = threading.Lock()

    def enqueue(self, run_id, attempt, *, dispatch=0, schedule_time=None, queue=None,
                job_id=None):
        if self.fail:
            raise ConnectionError("task queue unavailable")
        with self._record_lock:
            self.sent.append(Enqueued(run_id, attempt, dispatch, schedule_time,
                                      self.run_queue(job_id or job_of_run(run_id), queue)))
        return run_id

    def enqueue_poll(self, run_id, attempt, poll, *, schedule_time=None, queue=None,
                     job_id=None):
        if self.fail:
            raise ConnectionError("task queue unavailable")
        with self._record_lock:
            self.sent.append(Enqueued(run_id, attempt, 0, schedule_time,
                                      self.run_queue(job_id or job_of_run(run_id), queue), poll))
        return run_id

    def enqueue_claim(self, shard: ShardTask) -> str:
        if self.fail:
            raise ConnectionError("task queue unavailable")
        with self._record_lock:
            self.claims.append(shard)
        return shard.task_id()
