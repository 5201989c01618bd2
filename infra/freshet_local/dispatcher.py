"""Cloud Tasks' dispatch, in process, for tests that need what gcloud-tasks-emulator
lacks: it runs one task at a time per queue and ignores the queue's configuration.

`LocalDispatcher` is Freshet's own TaskQueue adapter with the Google call replaced by
an in-memory queue per Cloud Tasks queue, dispatched the way Cloud Tasks does:
  - at most `max_concurrent_dispatches` tasks of a queue are in flight (sent and not
    yet answered) at once; the limits are read from the queues `apply` created (in
    gcloud-tasks-emulator, which stores them faithfully even if it ignores them);
  - a task waits for its `schedule_time`;
  - a 5xx answer is retried after a short backoff, with the retry count the
    X-CloudTasks-TaskRetryCount header would carry (`attempt = body's + retries`);
  - a task name is refused while the same name is known (Cloud Tasks' dedup).
It records the peak number of tasks in flight per queue, for assertions.
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from freshet.core.runs import job_of_run, task_id
from freshet.core.settings import Settings
from freshet.gcp.tasks import TaskQueue

Deliver = Callable[[str, int], int]  # (run id, attempt) -> HTTP status


@dataclass(order=True)
class _Task:
    due: float
    name: str = field(compare=False)
    queue: str = field(compare=False)
    run_id: str = field(compare=False)
    attempt: int = field(compare=False)
    retries: int = field(default=0, compare=False)


class LocalDispatcher(TaskQueue):
    def __init__(self, settings: Settings, deliver: Deliver, *,
                 limits: dict[str, int] | None = None, default_limit: int = 1000,
                 retry_delay_s: float = 0.2, max_retries: int = 100):
        super().__init__(settings, client=object())
        self.deliver = deliver
        self.limits = dict(limits or {})
        self.default_limit = default_limit
        self.retry_delay_s = retry_delay_s
        self.max_retries = max_retries
        self.peak: dict[str, int] = {}
        self.dispatched: list[tuple[str, str, int]] = []  # (queue, run id, attempt)
        self.errors: list[BaseException] = []
        self._pending: list[_Task] = []
        self._in_flight: dict[str, int] = {}
        self._names: set[str] = set()
        self._cv = threading.Condition()
        self._stop = False
        self._loop = threading.Thread(target=self._run, name="local-dispatcher", daemon=True)
        self._loop.start()

    @classmethod
    def limits_from(cls, queue: TaskQueue) -> dict[str, int]:
        """Each queue's max_concurrent_dispatches, as the Cloud Tasks API reports it."""
        return {name: q.rate_limits.max_concurrent_dispatches
                for name, q in queue.queues().items()}

    # -- TaskQueue --------------------------------------------------------------------

    def enqueue(self, run_id, attempt, *, dispatch=0, schedule_time=None, queue=None,
                job_id=None):
        queue = self.run_queue(job_id or job_of_run(run_id), queue)
        name = f"{queue}/{task_id(run_id, attempt, dispatch)}"
        due = time.time() if schedule_time is None else schedule_time.timestamp()
        with self._cv:
            if name in self._names:
                return name  # Cloud Tasks answers ALREADY_EXISTS: Freshet treats it as sent
            self._names.add(name)
            self._pending.append(_Task(due, name, queue, run_id, attempt))
            self._cv.notify_all()
        return name

    # -- dispatching ------------------------------------------------------------------

    def _limit(self, queue: str) -> int:
        return self.limits.get(queue, self.default_limit)

    def _next_ready(self) -> _Task | None:
        now = time.time()
        ready = [t for t in self._pending
                 if t.due <= now and self._in_flight.get(t.queue, 0) < self._limit(t.queue)]
        if not ready:
            return None
        task = min(ready)
        self._pending.remove(task)
        return task

    def _run(self) -> None:
        with self._cv:
            while not self._stop:
                task = self._next_ready()
                if task is None:
                    self._cv.wait(0.05)
                    continue
                count = self._in_flight.get(task.queue, 0) + 1
                self._in_flight[task.queue] = count
                self.peak[task.queue] = max(self.peak.get(task.queue, 0), count)
                threading.Thread(target=self._dispatch, args=(task,), daemon=True).start()

    def _dispatch(self, task: _Task) -> None:
        attempt = task.attempt + task.retries
        status = 500
        try:
            self.dispatched.append((task.queue, task.run_id, attempt))
            status = self.deliver(task.run_id, attempt)
        except BaseException as exc:  # noqa: BLE001  (an unexpected error is a 500, as a function's is)
            self.errors.append(exc)
        with self._cv:
            self._in_flight[task.queue] -= 1
            if status >= 500 and task.retries < self.max_retries:
                task.retries += 1
                task.due = time.time() + self.retry_delay_s
                self._pending.append(task)
            self._cv.notify_all()

    def idle(self) -> bool:
        with self._cv:
            return not self._pending and not any(self._in_flight.values())

    def wait_idle(self, timeout: float = 60.0, settle_s: float = 0.3) -> None:
        """Until nothing is pending or in flight (for `settle_s` in a row)."""
        deadline = time.monotonic() + timeout
        quiet_since = None
        while time.monotonic() < deadline:
            if self.idle():
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= settle_s:
                    return
            else:
                quiet_since = None
            time.sleep(0.05)
        raise TimeoutError(f"dispatcher still busy after {timeout} s: "
                           f"{len(self._pending)} pending, in flight {self._in_flight}")

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._loop.join(5)
