"""The top-of-the-hour herd: 10,000 jobs due in the same minute, claimed against the emulator.

    python bench/bench_herd.py

herd_10k_claim_s_sequential  the tick claiming all 10,000 itself, one after the other
                             (no claim handler; tick_batch and budget raised so one tick
                             does it all)
herd_10k_claim_s_fanout      the tick fanning the herd out to CLAIM_SHARDS shard tasks
                             and 8 handler processes claiming them in parallel (each with
                             its own Firestore client, as separate function instances
                             would), from the tick's start to the last claim
herd_fanout_speedup          sequential / fan-out, measured in the same run
herd_10k_runs_created        run documents for the fan-out's slot (must be 10,000)
herd_10k_duplicates          claims reported twice for one run, and runs beyond one per
                             job and slot (must be 0)
herd_10k_tick_s_fanout /     the fanning tick's own time and document reads: a sample of
herd_10k_tick_reads_fanout   claim_fanout_above + 1 jobs, whatever the herd's size

Cloud Tasks is replaced by a recorder (RecordingQueue): the run tasks are not created,
here or in the sequential baseline, so both measure the Firestore side of claiming.
docs/scale.md adds the cloud's per-operation latencies and limits.
"""

import json
import multiprocessing
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/common.py, also when
# imported as bench.<module> (the tests do)
import common  # noqa: E402  (import paths, emulators)

HERD, HANDLERS = 10_000, 8
_worker: dict = {}


def _jobs(slot):
    from freshet.core.models import new_job

    for i in range(HERD):
        job = new_job(id=f"hourly-{i:05d}", kind="noop", schedule={"cron": "0 * * * *"},
                      produces=[f"ds.h{i:05d}"])
        job.next_run_at = slot
        yield job.id, job.to_doc()


def _settings(**kw):
    from freshet.core.settings import load_settings

    return load_settings({}, auth_mode="local", lookahead_s=120, tick_budget_s=1e9, **kw)


def _fanout_settings():
    return _settings(claim_url="http://claims.local/scheduler_tick")


def _init_worker(project: str) -> None:
    """A handler process: its own client, as a separate function instance has."""
    from google.cloud import firestore

    from freshet.gcp.store import Store
    from freshet_local.recording_queue import RecordingQueue

    _worker["store"] = Store(firestore.Client(project=project))
    _worker["queue"] = RecordingQueue(_fanout_settings())
    _worker["store"].control()  # connect now, not inside the measurement


def _handle(args: tuple[dict, str]) -> tuple[list[str], list[dict]]:
    """One shard task, as the claim handler gets it: claims made, continuations sent."""
    from datetime import datetime

    from freshet.core.herd import ShardTask
    from freshet.loop.tick import claim_shard_once

    body, now = args
    queue = _worker["queue"]
    before = len(queue.claims)
    result = claim_shard_once(_worker["store"], queue, ShardTask.from_json(body),
                              now=datetime.fromisoformat(now), settings=_fanout_settings())
    return result.created, [t.to_json() for t in queue.claims[before:]]


def _ping(_: int) -> bool:
    return "store" in _worker


def run() -> dict:
    with common.firestore() as (emu, db):
        return _measure(emu, db)


def _measure(emu, db) -> dict:
    from google.cloud.firestore_v1.base_query import FieldFilter

    from freshet.core.timeutil import utcnow
    from freshet.gcp.store import Store
    from freshet.loop.tick import tick_once
    from freshet_local.recording_queue import RecordingQueue

    store = Store(db)
    now = utcnow().replace(second=0, microsecond=0)
    first, second = now + timedelta(minutes=1), now + timedelta(minutes=61)

    store.put_many("jobs", _jobs(first))
    started = time.perf_counter()
    sequential = tick_once(store, RecordingQueue(_settings(tick_batch=HERD)), now=now,
                           settings=_settings(tick_batch=HERD))
    sequential_s = time.perf_counter() - started
    assert len(sequential.created) == HERD, sequential.to_dict()

    store.put_many("jobs", _jobs(second))
    later = second - timedelta(seconds=60)
    with multiprocessing.get_context("spawn").Pool(
            HANDLERS, initializer=_init_worker, initargs=(emu.project,)) as pool:
        assert all(pool.map(_ping, range(HANDLERS * 2)))  # every handler warm
        store.stats.reset()
        queue = RecordingQueue(_fanout_settings())
        started = time.perf_counter()
        tick = tick_once(store, queue, now=later, settings=_fanout_settings())
        tick_s, tick_reads = time.perf_counter() - started, store.stats.reads
        assert tick.shards_sent == len(queue.claims) and not tick.created, tick.to_dict()
        claims, pending = [], [(t.to_json(), later.isoformat()) for t in queue.claims]
        while pending:
            results = pool.map(_handle, pending)
            claims += [run_id for created, _ in results for run_id in created]
            pending = [(c, later.isoformat()) for _, sent in results for c in sent]
        fanout_s = time.perf_counter() - started

    stored = (db.collection("runs").where(filter=FieldFilter("scheduled_for", "==", second))
              .count().get())
    runs_created = stored[0][0].value
    per_job = Counter(run_id.split("__")[0] for run_id in set(claims))
    duplicates = (len(claims) - len(set(claims))) + sum(n - 1 for n in per_job.values())
    figures = {
        "herd_10k_claim_s_sequential": round(sequential_s, 1),
        "herd_10k_claim_s_fanout": round(fanout_s, 1),
        "herd_fanout_speedup": round(sequential_s / fanout_s, 2),
        "herd_10k_runs_created": runs_created,
        "herd_10k_duplicates": duplicates,
        "herd_10k_tick_s_fanout": round(tick_s, 3),
        "herd_10k_tick_reads_fanout": tick_reads,
        "herd_fanout_handlers": HANDLERS,
        "herd_claim_shards": len(queue.claims),
    }
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    run()
