"""Bulk-load benchmark of the Firestore emulator: patched launcher vs the package as published.

    PYTHONPATH=infra:functions python bench/bench_emulator.py [--docs 10000] [--batch 500]
                                                              [--unpatched-budget 60]

Loads N documents into one collection with batched commits (as a seed script or
a backfill would) and prints, per server, the time spent in ``commit()`` (the
server's share plus the client's request marshalling), the total wall time
(including the Python client building the writes), and the first and last
batch times, which show whether writes slow down as the collection grows.
Also runs two threads x 50 transactional increments of one counter.
The unpatched server gets a time budget: it is far too slow to finish 10k.
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


def increments(emu, threads: int = 2, per_thread: int = 50) -> tuple[int, float]:
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
        except Exception as exc:  # the unpatched server may fail some
            print(f"  worker error: {type(exc).__name__}: {exc}", file=sys.stderr)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return setup.document(path).get().get("n"), time.perf_counter() - t0


def run() -> dict:
    """For bench/run_all.py: the patched emulator's figures (the unpatched one is slow)."""
    with emulators.start_firestore() as emu:
        load = bulk_load(emu, 10_000, 500, float("inf"))
        count, seconds = increments(emu)
    return {"emulator_load_10k_commit_s": round(load["commit"], 2),
            "emulator_load_10k_wall_s": round(load["wall"], 2),
            "emulator_2x50_increments": count,
            "emulator_2x50_increments_s": round(seconds, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--unpatched-budget", type=float, default=60.0,
                        help="seconds of commit time after which the unpatched load stops")
    parser.add_argument("--skip-unpatched", action="store_true")
    args = parser.parse_args()

    kinds = [("patched", False)] + ([] if args.skip_unpatched else [("unpatched", True)])
    for label, unpatched in kinds:
        with emulators.start_firestore(unpatched=unpatched) as emu:
            budget = args.unpatched_budget if unpatched else float("inf")
            r = bulk_load(emu, args.docs, args.batch, budget)
            b = r["batches"]
            done = "" if r["loaded"] == args.docs else f" (stopped: budget {budget:.0f}s)"
            print(f"{label:>9}: {r['loaded']}/{args.docs} docs in batches of {args.batch}: "
                  f"{r['commit']:.2f}s in commit(), {r['wall']:.2f}s wall{done}; "
                  f"first batch {b[0] * 1000:.0f} ms, last batch {b[-1] * 1000:.0f} ms")
            n, secs = increments(emu)
            print(f"{label:>9}: 2 threads x 50 transactional increments -> {n} ({secs:.2f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
