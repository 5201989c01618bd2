"""Runs that wait on an engine (issue 21): how many external jobs duplicate deliveries
make, and how many polls a waiting run costs.

    python bench/run_all.py bench_engines

external_submit_duplicates_20_deliveries  BigQuery jobs beyond the first that one run's
                                          start made (must be 0), counted in the
                                          BigQuery emulator: 20 concurrent deliveries
                                          to run_task's step (the claim lets one
                                          through), then the kind's start called 20
                                          times at once as if every delivery got past
                                          the claim (the job id of run + attempt: 409,
                                          the job adopted)
external_polls_per_run_10min              polls of a run whose work takes 10 minutes,
                                          with the default backoff (10 s doubling to a
                                          2-minute cap): each is one task and one
                                          function call (freshet cost counts them)
external_poll_reads                       document reads of one poll that finds the work
                                          still running: the run, the kill switches
                                          (settings/control), the run again in the
                                          commit's transaction
external_poll_commit_writes               documents that poll's commit writes (the run)
"""

import logging
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402,F401  (import paths)

from freshet.core.external import EngineState, EngineStatus, external_job_id  # noqa: E402
from freshet.core.models import RunStatus, new_job  # noqa: E402
from freshet.core.settings import load_settings  # noqa: E402
from freshet.gcp.bigquery import BigQuery  # noqa: E402
from freshet.gcp.memory import MemoryStore  # noqa: E402
from freshet.loop import registry  # noqa: E402
from freshet.loop.engines import Engines  # noqa: E402
from freshet.loop.poll import poll_one  # noqa: E402
from freshet.loop.run import handle_one  # noqa: E402
from freshet.loop.syncs.base import Started, SyncContext  # noqa: E402
from freshet.loop.tick import tick_once  # noqa: E402
from freshet_local.recording_queue import RecordingQueue  # noqa: E402

NOW = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
PROJECT, REGION = "demo-freshet", "europe-west1"


def _job(store, job_id: str, kind: str, params: dict) -> None:
    job = new_job(id=job_id, kind=kind, schedule={"cron": "0 6 * * *", "timezone": "UTC"},
                  produces=[f"ds.{job_id}"], params=params)
    job.next_run_at = NOW
    store.put_job(job)
    store.lay_out(job.id, job.produces)  # as apply does


def duplicates() -> int:
    from freshet_local import emulators

    emu = emulators.bigquery_from_env(project=PROJECT) or emulators.start_bigquery(
        project=PROJECT)
    try:
        client = emulators.bigquery_client(emu.address, PROJECT)
        engines = Engines(PROJECT, REGION, bigquery=BigQuery(PROJECT, client=client))
        dataset = f"b_{uuid.uuid4().hex[:10]}"
        client.create_dataset(dataset)
        client.query(f"CREATE TABLE {dataset}.hits (n INT64)").result()
        store, settings = MemoryStore(), load_settings({}, auth_mode="local")
        queue = RecordingQueue(settings)
        params = {"query": f"INSERT INTO {dataset}.hits (n) VALUES (1)",
                  "maximum_bytes_billed": 100_000_000}
        _job(store, f"dup-{uuid.uuid4().hex[:8]}", "bigquery_query", params)
        run_id = tick_once(store, queue, now=NOW, settings=settings).created[0]
        with ThreadPoolExecutor(max_workers=20) as pool:
            list(pool.map(lambda _: handle_one(store, queue, run_id, 1, now=NOW,
                                               settings=settings, engines=engines),
                          range(20)))
            run = store.get_run(run_id)
            ctx = SyncContext(job_id=run.job_id, run_id=run_id, attempt=1, params=params,
                              produces=list(run.produces), deadline=NOW, heartbeat=lambda: None,
                              logger=logging.getLogger("bench"), slot=run.slot,
                              engines=engines)
            kind = registry.kind_for("bigquery_query")
            list(pool.map(lambda _: kind.run(ctx), range(20)))
        prefix = external_job_id(run_id, 0)[:-1]
        made = [j.job_id for j in client.list_jobs() if j.job_id.startswith(prefix)]
        return len(made) - 1
    finally:
        emu.stop()


class _TenMinutes(Engines):
    def __init__(self):
        super().__init__(PROJECT, REGION)
        self.now = NOW

    def poll(self, external):
        done = self.now >= NOW + timedelta(minutes=10)
        return EngineStatus(EngineState.SUCCEEDED if done else EngineState.RUNNING)


def polls_per_run() -> tuple[int, float, float]:
    """(polls until the end is recorded, reads and writes of a poll that waits on)."""
    registry.sync("bench_engine")(lambda ctx: Started("bigquery", f"freshet_{ctx.run_id}"))
    try:
        store, settings = MemoryStore(), load_settings({}, auth_mode="local")
        queue = RecordingQueue(settings)
        engine = _TenMinutes()
        _job(store, "ten-minutes", "bench_engine", {})
        run_id = tick_once(store, queue, now=NOW, settings=settings).created[0]
        handle_one(store, queue, run_id, 1, now=NOW, settings=settings, engines=engine,
                   clock=lambda: NOW)
        polls, counts = 0, []
        while store.get_run(run_id).status == RunStatus.WAITING:
            task = [t for t in queue.sent if t.poll is not None][-1]
            engine.now = task.schedule_time
            reads, writes = store.stats.reads, store.stats.writes
            poll_one(store, queue, run_id, 1, task.poll, now=task.schedule_time,
                     settings=settings, engines=engine, clock=lambda t=task: t.schedule_time)
            counts.append((store.stats.reads - reads, store.stats.writes - writes))
            polls += 1
        waiting = counts[:-1]  # the last poll commits the end, as run_task would
        return polls, *(round(sum(c[i] for c in waiting) / len(waiting), 2) for i in (0, 1))
    finally:
        registry.unregister("bench_engine")


def run() -> dict:
    polls, reads, writes = polls_per_run()
    return {"external_submit_duplicates_20_deliveries": duplicates(),
            "external_polls_per_run_10min": polls,
            "external_poll_reads": reads, "external_poll_commit_writes": writes}


if __name__ == "__main__":
    print(run())
