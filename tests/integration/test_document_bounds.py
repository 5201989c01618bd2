"""Every document Freshet writes stays under Firestore's 1 MiB, at its worst case.

Each growing document is built at its worst (every list at its cap, every text at its
limit in 4-byte characters, counts beyond what the caps allow) by the same functions the
loop uses, then written to Google's emulator, which refuses a document over 1 MiB as
production does; its size is also computed by Firestore's published rules.
"""

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from google.api_core import exceptions as gexc

from freshet.core import bookkeeping, runs
from freshet.core.catalog import Catalog, Consumer, DatasetSpec
from freshet.core.docsize import MAX_DOC_BYTES, PAGE_BYTES, doc_size
from freshet.core.freshness import Requirement
from freshet.core.groups import PER_GROUP, chunks
from freshet.core.models import (
    MAX_MAX_RETRIES,
    MAX_PARAMS_BYTES,
    MAX_PRODUCES,
    Dataset,
    Run,
    new_job,
)
from freshet.core.settings import Settings
from freshet.core.text import MAX_ERROR_CHARS
from freshet.core.triggers import MAX_DOWNSTREAM
from freshet.gcp.storage import LocalSink
from freshet.gcp.store import SETTINGS, STATUS_DOC, Store
from freshet.status.changes import MAX_EVENTS, MAX_STUCK_REMEMBERED, Event, Memory
from freshet.status.notify import DeliveryError
from freshet.status.publish import publish_once

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
WIDE = "\U0001d509"  # 𝔉: four bytes in UTF-8, the worst a character costs
TEN_MB = WIDE * (10 * 1024 * 1024 // 4)


def key(i: int, length: int = 200) -> str:
    """A dataset key at the 200-character limit."""
    return f"{i:06d}." + "k" * (length - 7)


def stored_size(db, collection: str, doc_id: str) -> int:
    snap = db.collection(collection).document(doc_id).get()
    assert snap.exists, doc_id
    return doc_size(f"{collection}/{doc_id}", snap.to_dict())


def settings_sizes(db) -> dict[str, int]:
    return {snap.id: doc_size(f"{SETTINGS}/{snap.id}", snap.to_dict())
            for snap in db.collection(SETTINGS).stream()}


def test_the_emulator_refuses_a_document_over_one_mebibyte(db):
    """The bound the other tests assert is a real one."""
    with pytest.raises(gexc.InvalidArgument):
        db.collection("x").document("big").set({"s": "a" * MAX_DOC_BYTES})


# -- runs: attempts and error texts ---------------------------------------------------


def worst_run() -> Run:
    job = new_job(id="j" * 100, kind="noop", schedule={"cron": "* * * * *"},
                  max_retries=MAX_MAX_RETRIES, produces=[key(i) for i in range(MAX_PRODUCES)])
    run_id = runs.manual_run_id(job.id, NOW, WIDE * runs.MAX_KEY_CHARS)
    run = runs.new_run(job, run_id, NOW, source="api", now=NOW, settings=Settings(),
                       idempotency_key=WIDE * runs.MAX_KEY_CHARS)
    for attempt in range(1, 3 * job.max_attempts):  # more deliveries than it may have
        run = runs.started(run, attempt, NOW, timedelta(minutes=30))
        run = runs.retrying(run, NOW, TEN_MB, timedelta(minutes=10))
    return run


def test_a_run_with_every_attempt_failing_with_a_huge_error_stays_bounded(db):
    run = runs.failed(worst_run(), NOW, TEN_MB)
    assert len(run.attempts) == MAX_MAX_RETRIES + 1
    assert all(len(a.error) <= MAX_ERROR_CHARS for a in run.attempts)
    assert doc_size(f"runs/{run.id}", run.to_doc()) < MAX_DOC_BYTES / 2
    Store(db).create_run(run)
    assert stored_size(db, "runs", run.id) < MAX_DOC_BYTES / 2


def test_a_sync_cannot_grow_a_run_with_records_or_break_it_with_numbers(db):
    run = worst_run()
    records = {**{k: 2**63 - 1 for k in run.produces}, **{f"x{i}": 1 for i in range(50_000)},
               run.produces[0]: 2**70}
    done = runs.succeeded(runs.started(run, 1, NOW, timedelta(minutes=30)), NOW, records)
    assert set(done.records) == set(run.produces[1:])  # 2**70 is no count Firestore holds
    Store(db).create_run(done)
    assert stored_size(db, "runs", done.id) < MAX_DOC_BYTES / 2


# -- datasets: history and error texts -----------------------------------------------


def test_a_dataset_failing_every_day_for_years_and_from_the_future_stays_bounded(db):
    dataset = Dataset(key=key(1))
    for day in range(-400, 400):  # and a clock that ran 400 days ahead
        at = NOW + timedelta(days=day)
        dataset = bookkeeping.apply_success(dataset, "r" * 142, at, records=2**80)
        assert dataset.last_record_count is None  # 2**80 cannot be stored: no count
        dataset = bookkeeping.apply_failure(dataset, "r" * 142, at + timedelta(hours=1),
                                            TEN_MB)
    assert len(dataset.daily) <= bookkeeping.HISTORY_DAYS + 1
    assert len(dataset.last_error) <= bookkeeping.MAX_ERROR_CHARS
    store = Store(db)
    store.transact(lambda tx: tx.set_dataset(dataset))
    assert stored_size(db, "datasets", dataset.key) < 64 * 1024


def worst_dataset(k: str) -> Dataset:
    """Every day for years a success with a watermark and a failure with a huge error,
    and as many downstream jobs as a dataset may trigger, each id at its limit."""
    dataset = Dataset(key=k, triggers=[f"{i:03d}" + "t" * 97 for i in range(MAX_DOWNSTREAM)])
    for day in range(-400, 400):
        at = NOW + timedelta(days=day)
        dataset = bookkeeping.apply_success(dataset, "r" * 142, at, records=2**62,
                                            watermark=at - timedelta(minutes=day % 50))
        dataset = bookkeeping.apply_failure(dataset, "r" * 142, at + timedelta(hours=1),
                                            TEN_MB)
    return dataset


def test_a_group_of_the_largest_datasets_the_largest_job_produces_stays_bounded(db):
    """A group holds PER_GROUP datasets of a job at MAX_PRODUCES: each at its worst, the
    group stays under half of Firestore's limit (core.groups)."""
    job_id, keys = "j" * 100, [key(i) for i in range(MAX_PRODUCES)]
    groups = chunks(job_id, keys)
    assert max(len(k) for k in groups.values()) == PER_GROUP
    gid, first = next(iter(groups.items()))
    worst = worst_dataset(first[0])
    store = Store(db)
    store.lay_out(job_id, keys)

    def body(tx):
        tx.get_datasets(list(first), (job_id, tuple(keys)))
        for k in first:
            tx.set_dataset(replace(worst, key=k))

    store.transact(body)
    assert stored_size(db, "datasets", gid) < MAX_DOC_BYTES / 2
    assert store.get_dataset(first[-1]).last_error == worst.last_error


# -- jobs: params, descriptions, errors -------------------------------------------------


def test_the_largest_job_a_user_may_define_stays_bounded(db):
    zeros = [0] * (MAX_PARAMS_BYTES // 2 - 8)  # JSON's cheapest value, 8 bytes stored
    job = new_job(id="j" * 100, kind="noop", schedule={"cron": "* * * * *"},
                  params={"z": zeros}, secret_params=[f"s{i}" for i in range(MAX_PRODUCES)],
                  produces=[key(i) for i in range(MAX_PRODUCES)],
                  description=WIDE * 2000)
    job.last_error = (WIDE * 10_000)[:MAX_ERROR_CHARS]  # as run.py stores it
    Store(db).put_job(job)
    assert stored_size(db, "jobs", job.id) < MAX_DOC_BYTES / 4


# -- the notification state ------------------------------------------------------------


def worst_event(i: int) -> Event:
    return Event(id=f"{i:020d}", at="2026-11-28T12:00:00Z", kind="dataset_recovered",
                 subject=key(i), title=WIDE * 300, summary=WIDE * 500, state="fresh",
                 previous="error")


def noise(i: int, length: int) -> str:
    """`length` hex characters no compressor shortens much (the memory is stored packed)."""
    text = ""
    while len(text) < length:
        text += hashlib.sha256(f"{i}/{len(text)}".encode()).hexdigest()
    return text[:length]


def worst_memory() -> Memory:
    return Memory(
        exists=True,
        datasets={noise(i, 200): "error" for i in range(5000)},
        consumers={noise(-i, 100): "error" for i in range(1000)},
        badges={f"badges/dataset/{noise(i, 200)}.svg": noise(i, 16) for i in range(5000)},
        # each consumer's page and JSON, keyed on its states and when they were written
        files={f"consumers/{noise(-i, 100)}-{'h' * 12}.{ext}": f"{noise(i, 16)}@1795780800"
               for i in range(1000) for ext in ("html", "json")},
        failed_jobs={noise(i + 10_000, 100) for i in range(5000)},
        stuck_runs=[noise(i + 20_000, 142) for i in range(3 * MAX_STUCK_REMEMBERED)],
        events=[worst_event(i) for i in range(5000)])


def test_the_worst_notification_state_is_paged_under_the_limit(db):
    """The page's memory of states and recent events (what a webhook down for hours
    waits with is in its route's own bounded document: tests/integration/test_bounds),
    packed, and over a page even so."""
    doc = worst_memory().to_doc(NOW)
    assert len(doc["events"]) == MAX_EVENTS
    store = Store(db)
    store.put_status_state(doc)
    sizes = settings_sizes(db)
    assert len(sizes) > 2, sizes  # written as a head and pages
    assert max(sizes.values()) < MAX_DOC_BYTES, sizes
    assert Memory.from_doc(Store(db).status_state()).to_doc(NOW) == doc
    store.put_status_state(Memory(exists=True, datasets={"d": "fresh"}).to_doc(NOW))
    assert list(settings_sizes(db)) == ["status_state"]  # the old version's pages deleted
    assert Memory.from_doc(Store(db).status_state()).datasets == {"d": "fresh"}


def written_before(db, doc_id: str, doc: dict) -> None:
    """As the version before packing wrote a settings document: its lists paged."""
    from freshet.gcp.paging import PagedSettings
    from freshet.gcp.stats import Stats
    from freshet.gcp.store import PAGED_LISTS

    PagedSettings(db, Stats(), PAGED_LISTS).put(doc_id, doc)


def test_a_memory_written_before_it_was_packed_is_read_and_then_replaced(db):
    """A publish after an upgrade reads the memory the previous version wrote (its
    lists paged as they were) and writes it packed, leaving none of the old pages."""
    doc = Memory(exists=True, datasets={key(i): "fresh" for i in range(5000)},
                 failed_jobs={f"job-{i}" for i in range(3)},
                 events=[worst_event(i) for i in range(MAX_EVENTS)]).to_doc(NOW)
    written_before(db, STATUS_DOC, doc)
    assert len(settings_sizes(db)) > 1
    before = Memory.from_doc(Store(db).status_state())
    assert before.to_doc(NOW) == doc
    store = Store(db)
    store.put_status_state(before.to_doc(NOW))
    assert list(settings_sizes(db)) == ["status_state"]
    assert Memory.from_doc(Store(db).status_state()) == before


@pytest.mark.slow
def test_three_thousand_simultaneous_changes_with_long_keys_publish_and_are_remembered(
        db, tmp_path):
    """The issue's computed case: 1.4 MiB, 4 MiB with long keys, in one document."""
    from freshet.core.models import Dataset as Ds

    def down(spec, message, model):
        raise DeliveryError("HTTP 503")

    store = Store(db)
    keys = [key(i) for i in range(3000)]
    fresh = [Ds(k, last_started_at=NOW - timedelta(hours=1),
                last_success_at=NOW - timedelta(hours=1)) for k in keys]
    store.put_many("datasets", [(d.key, d.to_doc()) for d in fresh])
    sink = LocalSink(tmp_path)
    cfg = Settings(site_url="https://status.example/", webhook_url="https://hooks.example/x")
    publish_once(store, sink, now=NOW, settings=cfg, send=down)
    # All 3,000 go stale at once, and the webhook is down.
    result = publish_once(store, sink, now=NOW + timedelta(hours=49), settings=cfg,
                          send=down)
    assert result.notifications_pending >= 1
    assert max(settings_sizes(db).values()) < MAX_DOC_BYTES
    memory = Memory.from_doc(Store(db).status_state())
    assert len(memory.datasets) == 3000 and set(memory.datasets.values()) == {"error"}


# -- the catalog and the applied job ids ------------------------------------------------


def test_a_catalog_larger_than_a_document_is_paged_and_read_back_whole(db):
    datasets = {key(i): DatasetSpec(key(i), title=WIDE * 200, description=WIDE * 2000,
                                    owner=WIDE * 200, upstream=tuple(key(j) for j in range(i)))
                for i in range(100)}
    consumers = tuple(Consumer(f"c{i}", WIDE * 200, requires=tuple(
        Requirement(k, timedelta(hours=1), timedelta(hours=2)) for k in datasets))
        for i in range(20))
    doc = Catalog(datasets=datasets, consumers=consumers).to_doc()
    assert doc_size("settings/catalog", doc) > 2 * MAX_DOC_BYTES
    store = Store(db)
    store.put_catalog_doc(doc)
    assert max(settings_sizes(db).values()) < MAX_DOC_BYTES
    assert Store(db).catalog_doc() == doc


def test_the_catalog_is_written_packed_and_one_written_before_is_read_as_it_was(db):
    from freshet.gcp.store import CATALOG_DOC

    doc = Catalog(datasets={key(i): DatasetSpec(key(i), title=f"T{i}") for i in range(6000)},
                  consumers=(Consumer("c", "C", requires=(Requirement(
                      key(1), timedelta(hours=1), timedelta(hours=2)),)),)).to_doc()
    written_before(db, CATALOG_DOC, doc)
    assert len(settings_sizes(db)) > 1  # a head and pages of lists
    assert Store(db).catalog_doc() == doc
    Store(db).put_catalog_doc(doc)
    assert list(settings_sizes(db)) == ["catalog"]  # packed: one document, pages deleted
    raw = db.collection(SETTINGS).document("catalog").get().to_dict()
    assert set(raw) == {"packed", "pages", "version", "updated_at"}
    assert Store(db).catalog_doc() == doc
    timed = {**doc, "note": NOW}  # a value JSON has no form for: kept as it is
    Store(db).put_catalog_doc(timed)
    assert Store(db).catalog_doc() == timed


def test_a_smaller_rewrite_leaves_no_stale_pages_behind(db):
    store = Store(db)
    store.put_applied_doc({"job_ids": ["j" * 100 + f"{i:06d}" for i in range(20_000)]})
    assert len(settings_sizes(db)) >= 3
    store.put_applied_doc({"job_ids": ["one"]})
    assert list(settings_sizes(db)) == ["applied"]
    assert Store(db).applied_doc()["job_ids"] == ["one"]


def test_pages_hold_at_most_a_page_of_entries():
    from freshet.core.docsize import paginate

    pages = paginate({"a": ["x" * 1000] * 2000, "b": ["y" * 100] * 10})
    assert len(pages) == 3 and sum(len(p.get("a", [])) for p in pages) == 2000
    assert all(doc_size("settings/s.v.p1", p) < PAGE_BYTES + 1000 for p in pages)
