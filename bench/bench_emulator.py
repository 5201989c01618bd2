"""What Google's Firestore emulator costs the suite and the benchmarks.

    PYTHONPATH=infra:functions python bench/bench_emulator.py [--docs 10000] [--batch 500]

Starts the emulator (firebase-tools running the Cloud SDK's jar) and reports its start
time; loads N documents into one collection with batched commits (as a seed script or
a backfill would): the time spent in ``commit()`` (the server's share plus the client's
marshalling), the total wall time, and the first and last batch times, which show
whether writes slow down as the collection grows. Then two threads x 5 transactional
increments of one counter: the emulator settles each lock conflict by a ~2 s lock
timeout, which is why Freshet's steps keep queries out of transactions.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "infra"), str(ROOT / "functions")]

from google.cloud import firestore  # noqa: E402

from freshet_local import emulators  # noqa: E402


def client_for(emu: emulators.FirestoreEmulator) -> firestore.Client:
    with mock.patch.dict(os.environ, {"FIRESTORE_EMULATOR_HOST": emu.address}):
        return firestore.Client(project=emu.project)


def bulk_load(emu, docs: int, batch_size: int, budget: float) -> dict:
    db = client_for(emu)
    col = db.collection(f"bench-{uuid.uuid4().hex[:8]}")
    batches: list[float] = []
    loaded = 0
    t_start = time.perf_counter()
    for start in range(0, docs, batch_size):
        batch = db.batch()
        for i in range(start, min(docs, start + batch_size)):
            batch.set(col.document(f"d{i:06d}"), {"i": i, "name": f"doc {i}", "tags": ["a", "b"]})
        t0 = time.perf_counter()
        batch.commit()
        batches.append(time.perf_counter() - t0)
        loaded = min(docs, start + batch_size)
        if sum(batches) > budget:
            break
    wall = time.perf_counter() - t_start
    db.close()
    return {"loaded": loaded, "commit": sum(batches), "wall": wall, "batches": batches}


def increments(emu, threads: int = 2, per_thread: int = 5) -> tuple[int, float]:
    setup = client_for(emu)
    path = f"bench-{uuid.uuid4().hex[:8]}/counter"
    setup.document(path).set({"n": 0})

    def worker():
        db = client_for(emu)
        ref = db.document(path)

        @firestore.transactional
        def inc(tx):
            tx.update(ref, {"n": ref.get(transaction=tx).get("n") + 1})

        try:
            for _ in range(per_thread):
                inc(db.transaction())
        except Exception as exc:  # reported, and the count comes out short
            print(f"  worker error: {type(exc).__name__}: {exc}", file=sys.stderr)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return setup.document(path).get().get("n"), time.perf_counter() - t0


def run() -> dict:
    """For bench/run_all.py."""
    started = time.perf_counter()
    with emulators.start_firestore() as emu:
        start_s = time.perf_counter() - started
        load = bulk_load(emu, 10_000, 500, float("inf"))
        count, seconds = increments(emu)
    return {"emulator_start_s": round(start_s, 2),
            "emulator_load_10k_commit_s": round(load["commit"], 2),
            "emulator_load_10k_wall_s": round(load["wall"], 2),
            "emulator_2x5_increments": count,
            "emulator_2x5_increments_s": round(seconds, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    started = time.perf_counter()
    with emulators.start_firestore() as emu:
        print(f"started in {time.perf_counter() - started:.2f}s: {emu}")
        r = bulk_load(emu, args.docs, args.batch, float("inf"))
        b = r["batches"]
        print(f"{r['loaded']}/{args.docs} docs in batches of {args.batch}: "
              f"{r['commit']:.2f}s in commit(), {r['wall']:.2f}s wall; "
              f"first batch {b[0] * 1000:.0f} ms, last batch {b[-1] * 1000:.0f} ms")
        n, secs = increments(emu)
        print(f"2 threads x 5 transactional increments -> {n} ({secs:.2f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
