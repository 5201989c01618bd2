"""Dataset bookkeeping against the emulator:
the invariants hold in transactions, whatever order or concurrency events arrive in."""

import random
import threading
from datetime import UTC, datetime, timedelta

from freshet.core.freshness import Requirement
from freshet.gcp.store import Store
from freshet.loop.datasets import (
    check_is_fresh,
    get_freshness,
    record_failure,
    record_start,
    record_success,
)

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
M = timedelta(minutes=1)
REQ = Requirement("sales.orders", timedelta(hours=24), timedelta(hours=26))


def test_start_then_success_makes_the_dataset_fresh(db):
    store = Store(db)
    record_start(store, "sales.orders", "r1", T0)
    assert get_freshness(store, REQ, T0 + M).state == "running"
    assert not check_is_fresh(store, REQ, T0 + M)
    record_success(store, "sales.orders", "r1", T0 + M, records=42)
    assert check_is_fresh(store, REQ, T0 + 2 * M)
    assert store.get_dataset("sales.orders").last_record_count == 42


def test_two_runs_finishing_out_of_order_never_move_last_success_back(db):
    store = Store(db)
    record_start(store, "sales.orders", "early", T0)
    record_start(store, "sales.orders", "late", T0 + M)
    record_success(store, "sales.orders", "late", T0 + 3 * M)
    record_success(store, "sales.orders", "early", T0 + 2 * M)  # finishes last, stamped earlier
    ds = store.get_dataset("sales.orders")
    assert ds.last_success_at == T0 + 3 * M and ds.last_success_run_id == "late"
    assert not ds.running


def test_failure_keeps_last_success_and_counts_until_a_success(db):
    store = Store(db)
    record_success(store, "sales.orders", "ok", T0)
    for i in range(1, 4):
        record_failure(store, "sales.orders", f"f{i}", T0 + i * M, f"HTTP 50{i}")
    ds = store.get_dataset("sales.orders")
    assert ds.last_success_at == T0 and ds.consecutive_failures == 3
    assert ds.last_error == "HTTP 503"
    record_success(store, "sales.orders", "ok2", T0 + 10 * M)
    ds = store.get_dataset("sales.orders")
    assert ds.consecutive_failures == 0 and ds.last_error is None


def test_successes_and_failures_racing_from_threads_keep_every_invariant(db):
    # Sized for the emulator, which settles each lock conflict by a ~2 s timeout.
    store = Store(db)
    events = [("ok", T0 + i * M) for i in range(0, 8, 2)] + \
             [("fail", T0 + i * M) for i in range(1, 8, 2)]
    random.Random(3).shuffle(events)
    halves = [events[::2], events[1::2]]

    def worker(batch):
        own = Store(db)
        for outcome, at in batch:
            run_id = f"r{at:%H%M}"
            if outcome == "ok":
                record_success(own, "sales.orders", run_id, at)
            else:
                record_failure(own, "sales.orders", run_id, at, "boom")

    threads = [threading.Thread(target=worker, args=(b,)) for b in halves]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ds = store.get_dataset("sales.orders")
    newest_ok, newest_fail = T0 + 6 * M, T0 + 7 * M
    assert ds.last_success_at == newest_ok  # the newest success, never an older one
    assert ds.last_failure_at == newest_fail
    assert ds.failing and ds.last_error == "boom"
    # every event was counted once: no update was lost to the race
    day = T0.date().isoformat()
    assert ds.daily[day] == {"ok": 4, "fail": 4}
