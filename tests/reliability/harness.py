"""Driving the loop under faults: a Cloud Tasks stand-in that delivers and retries,
deliveries in-process or over HTTP, and `settle`, which moves time past every lease
and sweeps until every run is finished (the recovery window)."""

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import requests

from freshet.core.settings import Settings
from freshet.gcp.grouped import KEYS
from freshet.gcp.store import DATASETS, JOBS, RUNS, SETTINGS, Store
from freshet.loop.delivery import RETRY_COUNT_HEADER
from freshet.loop.recover import sweep_once
from freshet.loop.run import handle_one
from tests.loop.helpers import RecordingQueue

# deliver(run_id, attempt, retry_count, now) -> HTTP status (0: the connection broke)
Deliver = Callable[[str, int, int, datetime], int]


class CloudTasks(RecordingQueue):
    """Records tasks; `drain` delivers them as Cloud Tasks would, retrying a 5xx or a
    broken connection with X-CloudTasks-TaskRetryCount + 1 (up to `max_retries`)."""

    def __init__(self, settings: Settings, *, max_retries: int = 10):
        super().__init__(settings)
        self.max_retries = max_retries
        self.delivered = 0

    def drain(self, deliver: Deliver, now: datetime) -> list[int]:
        statuses = []
        while True:
            with self._lock:
                pending, self.sent = self.sent, []
            if not pending:
                return statuses
            for task in pending:
                for retries in range(self.max_retries + 1):
                    status = deliver(task.run_id, task.attempt, retries, now)
                    self.delivered += 1
                    statuses.append(status)
                    if 200 <= status < 500:
                        break
                    if status == 0:
                        time.sleep(0.3)  # the platform restarts the killed instance


def in_process(store: Store, queue, settings: Settings, *,
               clock_skew: timedelta = timedelta(0)) -> Deliver:
    def deliver(run_id, attempt, retries, now):
        at = now + clock_skew
        return handle_one(store, queue, run_id, attempt + retries, now=at, settings=settings,
                          clock=lambda: at + timedelta(seconds=1)).status
    return deliver


def over_http(url: str, timeout: float = 30.0) -> Deliver:
    def deliver(run_id, attempt, retries, now):
        try:
            return requests.post(url, json={"run_id": run_id, "attempt": attempt},
                                 headers={RETRY_COUNT_HEADER: str(retries)},
                                 timeout=timeout).status_code
        except requests.ConnectionError:
            return 0  # the worker died mid-request (os._exit, the platform's timeout)
    return deliver


def unfinished(store: Store) -> list:
    return [s.to_dict() for s in store.db.collection(RUNS).stream()
            if s.to_dict()["status"] not in ("succeeded", "failed")]


def settle(store: Store, queue: CloudTasks, settings: Settings, deliver: Deliver,
           now: datetime, *, rounds: int = 8) -> datetime:
    """Deliver what is queued; then, while runs are unfinished, jump past the latest
    lease and sweep. Returns the time it ended at; fails if runs never finish."""
    queue.drain(deliver, now)
    for _ in range(rounds):
        open_runs = unfinished(store)
        if not open_runs:
            return now
        now = max(now, *(r["lease_expires_at"] for r in open_runs)) + timedelta(seconds=1)
        sweep_once(store, queue, now=now, settings=settings)
        queue.drain(deliver, now)
    raise AssertionError(f"runs still unfinished after {rounds} recovery sweeps: "
                         f"{[r['id'] for r in unfinished(store)]}")


# -- Firestore state, for 'durable storage' after an in-memory emulator restarts -----

COLLECTIONS = (JOBS, RUNS, DATASETS, KEYS, SETTINGS)


def dump(db) -> dict[str, list[tuple[str, dict]]]:
    return {name: [(s.id, s.to_dict()) for s in db.collection(name).stream()]
            for name in COLLECTIONS}


def restore(db, state: dict[str, list[tuple[str, dict]]]) -> None:
    store = Store(db)
    for name, docs in state.items():
        store.put_many(name, docs)


def concurrently(*fns: Callable[[], object]) -> list:
    """Run callables at the same moment (a barrier) and return their results in order."""
    barrier = threading.Barrier(len(fns))
    results: list = [None] * len(fns)
    errors: list = []

    def go(i, fn):
        barrier.wait()
        try:
            results[i] = fn()
        except BaseException as exc:  # re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise errors[0]
    return results
