"""Recovery at scale: one sweep with 10,000 running runs, of which 100 are stuck.

    python bench/bench_recovery.py

recovery_sweep_reads_10k_100stuck  document reads of that sweep (store.stats.reads);
                                   target <= 300: the sweep queries `lease_expires_at`
                                   (one index), so it reads the expired runs and what
                                   each verdict needs, never the 9,900 healthy runs:
                                   100 (the query) + 100 (each stuck run's dataset) + 1
                                   (the not-ticking query, empty). The run is not read
                                   again (its write is a compare-and-set on the version
                                   the query returned) and its job is not read (the run
                                   keeps the stuck threshold it started under).
recovery_sweep_query_reads         reads of the expired-runs query alone (~100)
recovery_sweep_s_10k_100stuck      its wall time against the emulator
recovery_sweep_recovered           runs it retried or failed (must be 100)
"""

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/common.py, also when
# imported as bench.<module> (the tests do)
import common  # noqa: E402  (import paths, emulators)

from freshet.core.models import Attempt, Run, new_job  # noqa: E402
from freshet.core.settings import load_settings  # noqa: E402
from freshet.gcp.store import Store  # noqa: E402
from freshet.gcp.tasks import TaskQueue  # noqa: E402
from freshet.loop.recover import sweep_once  # noqa: E402

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
RUNNING, STUCK, JOBS = 10_000, 100, 1_000


class CountingQueue(TaskQueue):
    """Freshet's adapter with Cloud Tasks replaced by a counter (reads are measured)."""

    def __init__(self, settings):
        super().__init__(settings, client=object())
        self.sent = 0

    def enqueue(self, run_id, attempt, *, dispatch=0, schedule_time=None, queue=None,
                job_id=None):
        self.sent += 1
        return run_id


def _jobs():
    for i in range(JOBS):
        job = new_job(id=f"job-{i:04d}", kind="noop", schedule={"cron": "*/5 * * * *"},
                      produces=[f"bench.ds{i:04d}"], stuck_threshold_minutes=30)
        job.next_run_at = NOW + timedelta(minutes=5)  # ticking: nothing is overdue
        yield job.id, job.to_doc()


def _runs():
    for i in range(RUNNING):
        stuck = i < STUCK
        started = NOW - timedelta(minutes=45 if stuck else 5)
        run = Run(id=f"run-{i:05d}", job_id=f"job-{i % JOBS:04d}", kind="noop",
                  scheduled_for=started, status="running", produces=[f"bench.ds{i % JOBS:04d}"],
                  created_at=started, enqueued_at=started, started_at=started,
                  heartbeat_at=started, lease_expires_at=started + timedelta(minutes=30),
                  attempts=[Attempt(number=1, started_at=started)],
                  stuck_threshold_minutes=30)  # as runs.started records it
        yield run.id, run.to_doc()


def run() -> dict:
    with common.firestore() as (_emu, db):
        return _measure(db)


def _measure(db) -> dict:
    store = Store(db)
    store.put_many("jobs", _jobs())
    common.put_datasets(store, ((f"job-{i:04d}", [f"bench.ds{i:04d}"]) for i in range(JOBS)))
    store.put_many("runs", _runs())
    settings = load_settings({}, auth_mode="local")
    queue = CountingQueue(settings)
    store.stats.reset()
    store.expired_runs(NOW)
    query_reads = store.stats.reads
    store.stats.reset()
    started = time.perf_counter()
    result = sweep_once(store, queue, now=NOW, settings=settings, budget_s=1e9)
    elapsed = time.perf_counter() - started
    return {
        "recovery_sweep_reads_10k_100stuck": store.stats.reads,
        "recovery_sweep_query_reads": query_reads,
        "recovery_sweep_s_10k_100stuck": round(elapsed, 2),
        "recovery_sweep_recovered": len(result.stuck_retried) + len(result.stuck_failed),
        "recovery_sweep_enqueued": queue.sent,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
