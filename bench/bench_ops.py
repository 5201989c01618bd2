"""What one run, one idle tick and one idle sweep cost, measured through the real loop
against the emulator: the per-operation counts `freshet cost` multiplies out.

    python bench/bench_ops.py

ops_run_reads_{1,5}ds / ops_run_writes_{1,5}ds
    Firestore document reads and writes of one successful run (the tick's claim and
    run_task's claim and finish), for a job producing 1 and 5 datasets
ops_run_tasks          Cloud Tasks tasks created per run (the tick's)
ops_retry_reads / ops_retry_writes / ops_retry_tasks
    what one transient failure adds (the failed attempt; Cloud Tasks redelivers it
    without a new task)
ops_run_s              run_task's own time per no-op attempt (claim, sync, finish), the
                       median of 3 rounds
ops_tick_idle_*        a tick with nothing due, and its heartbeat (as main.py writes it)
ops_sweep_idle_*       a recovery sweep with nothing expired, and its heartbeat
ops_bytes_run_{1,5}ds / ops_bytes_job / ops_bytes_dataset_90d
    Firestore storage of a finished run, a job and a dataset with 90 days of history,
    documents and their automatic single-field index entries, by Google's formula
    (freshet.ops.cost.stored_bytes) applied to the documents as stored; a dataset's is
    its share of its 5-dataset group (core.groups) and its pointer

The jobs are laid out as apply lays them out (their datasets' groups and pointers)
before anything is counted.
"""

import json
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/common.py, also when
# imported as bench.<module> (the tests do)
import common  # noqa: E402  (import paths, emulators)

RUNS = 20
ROUNDS = 3  # of RUNS runs each, for ops_run_s


def _settings():
    from freshet.core.settings import load_settings

    return load_settings({}, auth_mode="local")


def _jobs(store, now, prefix: str, datasets: int, kind: str) -> None:
    from freshet.core.models import new_job

    docs = []
    for i in range(RUNS):
        job = new_job(id=f"{prefix}-{i:03d}", kind=kind, schedule={"cron": "0 * * * *"},
                      produces=[f"{prefix}.d{i:03d}.{k}" for k in range(datasets)])
        job.next_run_at = now
        docs.append((job.id, job.to_doc()))
    store.put_many("jobs", docs)
    for job_id, doc in docs:
        store.lay_out(job_id, doc["produces"])  # as apply does


def _runs(store, queue, now, settings, attempts: int) -> tuple[int, int, float]:
    """Tick, then every attempt of every run; (reads, writes, run_task seconds)."""
    from freshet.loop.run import handle_one
    from freshet.loop.tick import tick_once

    store.stats.reset()
    created = tick_once(store, queue, now=now, settings=settings).created
    assert len(created) == RUNS, created
    seconds = 0.0
    for run_id in created:
        for attempt in range(1, attempts + 1):
            started = time.perf_counter()
            outcome = handle_one(store, queue, run_id, attempt, now=now, settings=settings)
            seconds += time.perf_counter() - started
        assert outcome.state == "succeeded", outcome
    return store.stats.reads, store.stats.writes, seconds


def _round_s(store, queue, now, settings, prefix: str) -> float:
    _jobs(store, now, prefix, 1, "noop")
    return _runs(store, queue, now, settings, attempts=1)[2]


def _idle(store, step, name, **kw) -> tuple[int, int, float]:
    store.stats.reset()
    started = time.perf_counter()
    result = step(store, **kw)
    store.put_heartbeat(name, {"at": kw["now"], **result.to_dict()})
    return store.stats.reads, store.stats.writes, time.perf_counter() - started


def run() -> dict:
    with common.firestore() as (_emu, db):
        return _measure(db)


def _measure(db) -> dict:
    from freshet.core.compact import days_text
    from freshet.core.timeutil import utcnow
    from freshet.gcp.store import Store
    from freshet.loop import registry
    from freshet.loop.recover import sweep_once
    from freshet.loop.tick import tick_once
    from freshet.ops.cost import stored_bytes
    from freshet_local.recording_queue import RecordingQueue

    store, settings = Store(db), _settings()
    queue = RecordingQueue(settings)
    now = utcnow().replace(second=0, microsecond=0) + timedelta(minutes=1)
    failed_once: set[str] = set()

    @registry.sync("bench_flaky")
    def flaky(ctx):  # the first attempt of each run fails transiently
        if ctx.run_id not in failed_once:
            failed_once.add(ctx.run_id)
            raise ConnectionError("upstream timed out")
        return {k: 1 for k in ctx.produces}

    try:
        figures = {}
        for k in (1, 5):
            _jobs(store, now, f"ok{k}", k, "noop")
            reads, writes, seconds = _runs(store, queue, now, settings, attempts=1)
            figures[f"ops_run_reads_{k}ds"] = round(reads / RUNS, 2)
            figures[f"ops_run_writes_{k}ds"] = round(writes / RUNS, 2)
            if k == 1:
                # The time is the median of ROUNDS rounds (the machine is shared).
                times = [seconds] + [_round_s(store, queue, now, settings, f"time{r}")
                                     for r in range(ROUNDS - 1)]
                figures["ops_run_s"] = round(common.median(times) / RUNS, 3)
                sent_before = len(queue.sent)
        figures["ops_run_tasks"] = round((len(queue.sent) - sent_before) / RUNS, 2)
        _jobs(store, now, "flaky", 1, "bench_flaky")
        sent_before = len(queue.sent)
        reads, writes, _ = _runs(store, queue, now, settings, attempts=2)
        figures["ops_retry_reads"] = round(reads / RUNS - figures["ops_run_reads_1ds"], 2)
        figures["ops_retry_writes"] = round(writes / RUNS - figures["ops_run_writes_1ds"], 2)
        figures["ops_retry_tasks"] = round((len(queue.sent) - sent_before) / RUNS
                                           - figures["ops_run_tasks"], 2)
    finally:
        registry.unregister("bench_flaky")

    later = now + timedelta(minutes=2)
    tick = _idle(store, tick_once, "tick", queue=queue, now=later, settings=settings)
    sweep = _idle(store, sweep_once, "recover", queue=queue, now=later, settings=settings)
    for name, (reads, writes, seconds) in (("tick", tick), ("sweep", sweep)):
        figures[f"ops_{name}_idle_reads"] = reads
        figures[f"ops_{name}_idle_writes"] = writes
        figures[f"ops_{name}_idle_s"] = round(seconds, 3)

    runs = {k: db.collection("runs").document(f"ok{k}-000__{now:%Y%m%dT%H%M%S}Z")
            for k in (1, 5)}
    figures["ops_bytes_run_1ds"] = stored_bytes("runs", runs[1].id, runs[1].get().to_dict())
    figures["ops_bytes_run_5ds"] = stored_bytes("runs", runs[5].id, runs[5].get().to_dict())
    job = db.collection("jobs").document("ok5-000")
    figures["ops_bytes_job"] = stored_bytes("jobs", job.id, job.get().to_dict())
    days = [(now.date() - timedelta(days=d)).isoformat() for d in range(90)]
    group = db.collection("datasets").document("ok5-000~0").get().to_dict()
    daily = days_text({d: {"ok": 3, "fail": 1} for d in days})  # as an entry keeps them
    group["datasets"] = {k: {**{f: v for f, v in e.items() if f != "daily"},
                             "daily_text": daily} for k, e in group["datasets"].items()}
    pointer = db.collection("dataset_keys").document("ok5.d000.0").get().to_dict()
    figures["ops_bytes_dataset_90d"] = round(
        stored_bytes("datasets", "ok5-000~0", group) / len(group["keys"])
        + stored_bytes("dataset_keys", "ok5.d000.0", pointer))
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    run()
