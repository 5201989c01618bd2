"""The control loop's costs and speed.

    python bench/bench_loop.py

tick_job_reads_20k_200due   documents one tick reads with 20,000 jobs, 200 due (target ≈ 200)
tick_time_ratio_20k_vs_2k   that tick's median time over the same tick with 2,000 jobs (≤ 1.3)
commits_per_run             Firestore commits per successful run, tick + run_task (≤ 4)
e2e_runs_per_s              no-op runs a second through the whole local stack
dispatch_lag_p50_s / _p95_s actual start minus the slot, jobs due within the lookahead
"""

import os
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/common.py, also when
# imported as bench.<module> (the tests do)
import common  # noqa: E402  (import paths, emulators)

ROUNDS = 7


def _job_docs(count: int, due: int, now, cron: str = "*/5 * * * *"):
    from freshet.core.models import new_job

    for i in range(count):
        job = new_job(id=f"job{i:05d}", kind="noop", schedule={"cron": cron},
                      produces=[f"ds.j{i % 500}"])
        job.next_run_at = now - timedelta(minutes=1) if i < due else now + timedelta(days=1)
        yield job.id, job.to_doc()


class _TickBench:
    """One emulator holding `total` jobs, `due` of which are made due again each round."""

    def __init__(self, total: int, due: int = 200):
        from google.cloud import firestore

        from freshet.core.settings import load_settings
        from freshet.core.timeutil import utcnow
        from freshet.gcp.store import Store
        from freshet_local import emulators

        self.emu = emulators.start_firestore()
        # The client picks its emulator from the environment when it is created.
        saved = os.environ.get("FIRESTORE_EMULATOR_HOST")
        os.environ["FIRESTORE_EMULATOR_HOST"] = self.emu.address
        self.store = Store(firestore.Client(project=self.emu.project))
        if saved is None:
            del os.environ["FIRESTORE_EMULATOR_HOST"]
        else:
            os.environ["FIRESTORE_EMULATOR_HOST"] = saved
        self.settings = load_settings({}, auth_mode="local")
        self.due, self.now = due, utcnow()
        self.store.put_many("jobs", _job_docs(total, due, self.now))

    def round(self) -> tuple[float, int]:
        from freshet.loop.tick import tick_once
        from freshet_local.recording_queue import RecordingQueue

        self.store.put_many("jobs", _job_docs(self.due, self.due, self.now))
        self.store.stats.reset()
        started = time.perf_counter()
        result = tick_once(self.store, RecordingQueue(self.settings), now=self.now,
                           settings=self.settings)
        elapsed = time.perf_counter() - started
        assert len(result.created) == self.due, result.to_dict()
        self.now += timedelta(minutes=5)  # a new slot each round, so new runs
        return elapsed, self.store.stats.reads


def tick_costs(rounds: int = ROUNDS) -> dict:
    """20k and 2k jobs in two emulators, ticked alternately so that machine noise
    falls on both alike; medians of each."""
    big, small = _TickBench(20_000), _TickBench(2_000)
    try:
        big_times, small_times, reads = [], [], 0
        for _ in range(rounds):
            elapsed, reads = big.round()
            big_times.append(elapsed)
            small_times.append(small.round()[0])
    finally:
        big.emu.stop()
        small.emu.stop()
    t20k, t2k = common.median(big_times), common.median(small_times)
    return {"tick_job_reads_20k_200due": reads, "tick_s_20k_200due": round(t20k, 3),
            "tick_s_2k_200due": round(t2k, 3),
            "tick_time_ratio_20k_vs_2k": round(t20k / t2k, 2)}


def commits_per_run(db, jobs: int = 50) -> float:
    from freshet.core.settings import load_settings
    from freshet.core.timeutil import utcnow
    from freshet.gcp.store import Store
    from freshet.loop.run import handle_one
    from freshet.loop.tick import tick_once
    from freshet_local.recording_queue import RecordingQueue

    store, settings = Store(db), load_settings({}, auth_mode="local")
    now = utcnow()
    store.put_many("jobs", _job_docs(jobs, jobs, now))
    store.stats.reset()
    queue = RecordingQueue(settings)
    created = tick_once(store, queue, now=now, settings=settings).created
    for run_id in created:
        assert handle_one(store, queue, run_id, 1, now=now, settings=settings).state == "succeeded"
    return store.stats.commits / len(created)


def through_the_stack(db, firestore_emu, tasks_emu, runs: int = 100,
                      lookahead_jobs: int = 40) -> dict:
    """Runs through gcloud-tasks-emulator and run_task served by functions-framework."""
    from freshet.core.settings import load_settings
    from freshet.core.timeutil import utcnow
    from freshet.gcp.store import Store
    from freshet.gcp.tasks import QueueSpec, TaskQueue
    from freshet.loop.tick import tick_once
    from freshet_local.functions_host import serve

    env = {**firestore_emu.env(), "FRESHET_AUTH": "local", "FRESHET_QUEUE": "bench-runs",
           "FRESHET_TASKS_EMULATOR_HOST": tasks_emu.address, "FRESHET_REGION": "europe-west1"}
    served = serve("run_task", env=env)
    try:
        settings = load_settings(env, run_task_url=served.url, lookahead_s=60)
        queue = TaskQueue(settings)
        queue.create_or_update_queue(QueueSpec("bench-runs"))
        store = Store(db)
        now = utcnow()
        # Yearly, so that their next slot stays out of the lag measurement below.
        store.put_many("jobs", _job_docs(runs, runs, now, cron="0 0 1 1 *"))
        started = time.perf_counter()
        created = tick_once(store, queue, now=now, settings=settings).created
        _wait_terminal(store, created)
        rate = len(created) / (time.perf_counter() - started)

        db_jobs = [(f"lag{i:03d}", i) for i in range(lookahead_jobs)]
        now = utcnow()
        for job_id, i in db_jobs:
            from freshet.core.models import new_job

            job = new_job(id=job_id, kind="noop", schedule={"cron": "* * * * *"})
            job.next_run_at = now + timedelta(seconds=5 + i % 40)
            store.put_job(job)
        created = tick_once(store, queue, now=now, settings=settings).created
        done = _wait_terminal(store, created)
        lags = [(r.started_at - r.scheduled_for).total_seconds() for r in done
                if r.job_id.startswith("lag")]
        assert len(lags) == lookahead_jobs
        return {"e2e_runs_per_s": round(rate, 1),
                "dispatch_lag_p50_s": round(common.percentile(lags, 0.5), 3),
                "dispatch_lag_p95_s": round(common.percentile(lags, 0.95), 3)}
    finally:
        served.stop()


def _wait_terminal(store, run_ids, timeout: float = 300.0):
    deadline = time.monotonic() + timeout
    pending, done = set(run_ids), []
    while pending and time.monotonic() < deadline:
        for run_id in list(pending):
            run = store.run(run_id)
            if run.terminal:
                pending.discard(run_id)
                done.append(run)
        time.sleep(0.2)
    if pending:
        raise RuntimeError(f"{len(pending)} runs did not finish in {timeout} s")
    return done


def run() -> dict:
    figures = tick_costs()
    with common.firestore() as (emu, db), common.tasks() as tasks_emu:
        figures["commits_per_run"] = round(commits_per_run(db), 2)
        emu.wipe()
        figures.update(through_the_stack(db, emu, tasks_emu))
    return figures


if __name__ == "__main__":
    for name, value in run().items():
        print(f"{name:32} {value}")
