"""Scheduling depth: what a backfill run and a triggered run cost, and a 48-slot backfill
paced at 4 through an in-process dispatcher (LocalDispatcher: Cloud Tasks' dispatch
with max_concurrent_dispatches honoured; a no-op sync that takes 50 ms).

    backfill_48x4_s               wall time of the whole backfill, start to last finish
    backfill_48x4_peak            the most of its runs running at once (the pacing: 4)
    backfill_reads_per_run        document reads per backfill run: plan, release, claim,
                                  finish (which also releases the lane's next slot), the
                                  kill-switch document (measured with one lane)
    backfill_commits_per_run      commits per backfill run (a scheduled run: 3)
    trigger_finish_extra_reads    reads a finish adds for one downstream job (`all`, two
                                  upstreams: the job, and the other upstream dataset's
                                  pointer and its job's group)
    tick_catchup_3d_hourly_s      a tick meeting a 3-day outage of an hourly job
                                  with `catchup: all` (a chain, 49 skipped records)
"""

import threading
import time
from datetime import timedelta

import common

from freshet.core.models import new_job
from freshet.core.settings import load_settings
from freshet.core.timeutil import utcnow
from freshet.gcp.store import Store
from freshet.loop import registry
from freshet.loop.backfill import start_backfill
from freshet.loop.run import handle_one
from freshet.loop.tick import tick_once
from freshet.ops.operations import register_triggers
from freshet_local.dispatcher import LocalDispatcher
from freshet_local.recording_queue import RecordingQueue

H = timedelta(hours=1)


class Busy:
    """A sync that takes 50 ms and counts how many of its runs overlap."""

    def __init__(self):
        self.running = self.peak = 0
        self.lock = threading.Lock()

    def __call__(self, ctx):
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        time.sleep(0.05)
        with self.lock:
            self.running -= 1
        return {k: 1 for k in ctx.produces}


def _one_backfill(store, settings, job_id: str, parallel: int) -> tuple[float, int]:
    """(seconds from start to the last finish, most runs at once) for 48 hourly slots."""
    busy = Busy()
    registry.sync("bench_busy")(busy)
    last = utcnow().replace(minute=0, second=0, microsecond=0)
    job = new_job(id=job_id, kind="bench_busy", schedule={"cron": "0 * * * *"},
                  produces=[f"bench.{job_id}"])
    job.next_run_at = last + H
    store.put_job(job)
    store.lay_out(job.id, job.produces)  # as apply does

    def deliver(run_id, attempt):
        return handle_one(store, dispatcher, run_id, attempt, now=utcnow(),
                          settings=settings).status

    dispatcher = LocalDispatcher(settings, deliver)
    store.stats.reset()
    started = time.perf_counter()
    start_backfill(store, dispatcher, job_id, last - 47 * H, last, now=utcnow(),
                   settings=settings, max_parallel=parallel)
    dispatcher.wait_idle(timeout=600, settle_s=0.2)
    took = time.perf_counter() - started - 0.2
    dispatcher.close()
    registry.unregister("bench_busy")
    return took, busy.peak


def _backfill(store, settings) -> dict:
    took, peak = _one_backfill(store, settings, "hourly", 4)
    # costs from a one-lane backfill: one delivery at a time, so Store.stats counts exactly
    _one_backfill(store, settings, "serial", 1)
    return {"backfill_48x4_s": round(took, 2), "backfill_48x4_peak": peak,
            "backfill_reads_per_run": round(store.stats.reads / 48, 1),
            "backfill_commits_per_run": round(store.stats.commits / 48, 2)}


def _trigger_cost(store, settings) -> dict:
    registry.sync("bench_busy")(Busy())
    later = utcnow() + timedelta(days=30)
    for job_id, key in (("orders", "b.orders"), ("rates", "b.rates"), ("plain", "b.plain")):
        job = new_job(id=job_id, kind="bench_busy", schedule={"cron": "0 * * * *"},
                      produces=[key])
        job.next_run_at = later
        store.put_job(job)
        store.lay_out(job.id, job.produces)  # as apply does
    rollup = new_job(id="rollup", kind="bench_busy", produces=["b.revenue"],
                     trigger={"after": ["b.orders", "b.rates"]})
    store.put_job(rollup)
    store.lay_out(rollup.id, rollup.produces)
    register_triggers(store, rollup)
    queue = RecordingQueue(settings)

    def finish_reads(job_id):
        now = utcnow()
        store.update_job(job_id, {"next_run_at": now})
        (run_id,) = tick_once(store, queue, now=now, settings=settings).created
        store.update_job(job_id, {"next_run_at": later})
        store.stats.reset()
        handle_one(store, queue, run_id, 1, now=now, settings=settings)
        return store.stats.reads

    finish_reads("rates")
    plain, triggering = finish_reads("plain"), finish_reads("orders")
    registry.unregister("bench_busy")
    return {"trigger_finish_extra_reads": triggering - plain}


def _catchup_tick(store, settings) -> dict:
    registry.sync("bench_busy")(Busy())
    now = utcnow()
    job = new_job(id="behind", kind="bench_busy", schedule={"cron": "0 * * * *"},
                  produces=["b.behind"], catchup="all")
    job.next_run_at = now - timedelta(days=3)
    store.put_job(job)
    started = time.perf_counter()
    result = tick_once(store, RecordingQueue(settings), now=now, settings=settings)
    took = time.perf_counter() - started
    registry.unregister("bench_busy")
    assert result.skipped_slots >= 48 and result.chains, result
    return {"tick_catchup_3d_hourly_s": round(took, 3)}


def run() -> dict:
    settings = load_settings({}, auth_mode="local")
    figures = {}
    for step in (_backfill, _trigger_cost, _catchup_tick):
        with common.firestore() as (_, client):
            figures.update(step(Store(client), settings))
    return figures


if __name__ == "__main__":
    print(run())
