"""Dataset bookkeeping on its own: one event, one transaction (for tools and tests; the
loop's steps apply the same rules inside their own transactions).

    record_start / record_success / record_failure   write one event
    get_freshness / check_is_fresh                   read one dataset against a requirement
"""

from datetime import datetime

from freshet.core.bookkeeping import apply_failure, apply_start, apply_success
from freshet.core.freshness import Freshness, Requirement, evaluate
from freshet.core.models import Dataset, check_dataset_key
from freshet.gcp.store import Store, Tx


def _record(store: Store, key: str, change) -> Dataset:
    check_dataset_key(key)

    def body(tx: Tx) -> Dataset:
        updated = change(tx.get_dataset(key) or Dataset(key=key))
        tx.set_dataset(updated)
        return updated

    return store.transact(body)


def record_start(store: Store, key: str, run_id: str, at: datetime) -> Dataset:
    return _record(store, key, lambda d: apply_start(d, run_id, at))


def record_success(store: Store, key: str, run_id: str, at: datetime,
                   records: int | None = None) -> Dataset:
    return _record(store, key, lambda d: apply_success(d, run_id, at, records))


def record_failure(store: Store, key: str, run_id: str, at: datetime, error: str) -> Dataset:
    return _record(store, key, lambda d: apply_failure(d, run_id, at, error))


def get_freshness(store: Store, requirement: Requirement, now: datetime) -> Freshness:
    return evaluate(store.get_dataset(requirement.dataset), requirement, now)


def check_is_fresh(store: Store, requirement: Requirement, now: datetime) -> bool:
    """True when a consumer can use the dataset: fresh, or being refreshed within SLA."""
    return get_freshness(store, requirement, now).state == "fresh"
