"""Incremental publishing against the emulator: a steady-state publish reads what changed
(plus a fixed few documents), and what it builds is what a full read builds."""

import json
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from freshet.core.catalog import Catalog, Consumer, DatasetSpec
from freshet.core.models import Dataset, Run
from freshet.core.settings import Settings
from freshet.gcp.storage import LocalSink
from freshet.gcp.store import MODEL_MANIFEST, STATUS_MODEL, Store
from freshet.status import incremental, snapshot
from freshet.status.publish import publish_once, read_model
from freshet.status.render import render_site

from .builders import MIN, NOW, H, job, requirement, run
from .seed import seed_pipeline

# A steady-state publish that rebuilds: manifest + one chunk per section (jobs,
# datasets, runs, deadline records) + one query per collection (1 read when it finds
# nothing) + catalog, control, status memory, heartbeat + incidents and routes + the
# settings' newest commit time before it reads them and after it wrote its memory.
FIXED_READS = 1 + 4 + 4 + 4 + 2 + 2
# An idle one: the manifest, and one read each for jobs, datasets, runs and settings.
IDLE_READS = 5


def cfg(**kw) -> Settings:
    return Settings(site_url="https://status.example/", **kw)


def test_a_steady_publish_reads_only_what_changed(db, tmp_path):
    store = Store(db)
    seed_pipeline(store)
    sink = LocalSink(tmp_path)
    first = publish_once(store, sink, now=NOW, settings=cfg())
    assert first.mode == "full"

    idle = publish_once(store, sink, now=NOW + 5 * MIN, settings=cfg())
    assert (idle.mode, idle.changed_documents, idle.reads) == ("idle", 0, IDLE_READS)
    assert idle.writes == 0  # nothing changed: neither the stored model nor the memory

    store.set_control({})  # a setting written: the publish rebuilds, and finds the same
    steady = publish_once(store, sink, now=NOW + 6 * MIN, settings=cfg())
    # the idle check's manifest is reused; its four queries found only the write
    assert (steady.mode, steady.changed_documents) == ("incremental", 0)
    assert steady.reads == FIXED_READS + 4
    assert steady.writes == 1  # its quiet mark moved: the manifest

    store.put_many("datasets", [("crm.accounts", Dataset(
        "crm.accounts", last_success_at=NOW + 6 * MIN).to_doc()), ("new.table", Dataset(
            "new.table", last_success_at=NOW).to_doc())])
    store.update_job("crm_sync", {"last_run_status": "failed", "last_error": "boom"})
    store.create_run(run("crm-10", "crm_sync", ago=-6 * MIN, status="failed", error="boom"))
    changed = publish_once(store, sink, now=NOW + 10 * MIN, settings=cfg())
    assert changed.mode == "incremental"
    assert changed.changed_documents == 4
    # no query came back empty: 4 documents; the idle check stopped at the datasets (+1)
    assert changed.reads == FIXED_READS - 3 + 4 + 1
    assert changed.writes == 2 + 3  # each section's one chunk changed

    inc, _, _ = read_model(store, now=NOW + 10 * MIN, settings=cfg())
    full, _, _ = read_model(store, now=NOW + 10 * MIN, settings=cfg(), full=True)
    assert inc == full
    assert inc.dataset("new.table").last_success_at == NOW
    assert inc.job("crm_sync").health == "failed"
    assert inc.runs[0].id == "crm-10"


def test_a_change_committed_while_a_publish_runs_is_read_by_the_next_one(db):
    """The mark is the newest commit time the publish saw, not the publish's clock: a
    write that lands between its queries and its save is newer than the mark."""
    store = Store(db)
    seed_pipeline(store)
    incremental.save(store, incremental.load(store, now=NOW, settings=cfg(), recent=200))
    loaded = incremental.load(store, now=NOW, settings=cfg(), recent=200)
    store.update_job("meta_sync", {"last_run_status": "succeeded", "last_error": None})
    incremental.save(store, loaded)

    again = incremental.load(store, now=NOW, settings=cfg(), recent=200)
    assert again.mode == "incremental" and again.changed == 1
    assert again.inputs.jobs["meta_sync"].last_run_status == "succeeded"


def test_every_write_carries_firestore_commit_time_whatever_the_caller_says(db):
    store = Store(db)
    before = datetime.now(UTC) - timedelta(seconds=5)
    made = job("j1", updated_at=datetime(2000, 1, 1, tzinfo=UTC))
    store.put_job(made)
    store.update_job("j1", {"updated_at": datetime(2000, 1, 1, tzinfo=UTC)})
    store.transact(lambda tx: tx.set_dataset(Dataset("d1", updated_at=NOW - 100 * H)))
    store.put_many("runs", [("r1", run("r1").to_doc())])
    store.put_catalog_doc({"datasets": [], "consumers": []})
    for collection, doc_id in (("jobs", "j1"), ("datasets", "d1"), ("runs", "r1"),
                               ("settings", "catalog")):
        stamp = db.collection(collection).document(doc_id).get().to_dict()["updated_at"]
        assert stamp > before, (collection, stamp)


def test_writes_are_counted_per_document(db):
    store = Store(db)
    store.put_many("datasets", [(f"d{i}", Dataset(f"d{i}").to_doc()) for i in range(3)])

    def touch(tx):
        for i in range(3):
            tx.set_dataset(Dataset(f"d{i}", last_success_at=NOW))

    store.transact(touch)
    store.put_job(job("j1"))
    assert (store.stats.writes, store.stats.commits) == (3 + 3 + 1, 1 + 1 + 1)


@pytest.mark.parametrize("damage", ["schema", "chunk_missing", "chunk_rewritten"])
def test_a_stored_model_that_does_not_fit_is_not_used(db, damage):
    store = Store(db)
    seed_pipeline(store)
    incremental.save(store, incremental.load(store, now=NOW, settings=cfg(), recent=200))
    manifest = db.collection(STATUS_MODEL).document(MODEL_MANIFEST)
    chunk = db.collection(STATUS_MODEL).document(snapshot.chunk_id("datasets", 0))
    if damage == "schema":
        manifest.update({"schema": "from-an-older-release"})
    elif damage == "chunk_missing":
        chunk.delete()
    else:  # another publish wrote this chunk after the manifest was written
        doc = chunk.get().to_dict()
        part = snapshot.split("datasets", {"x": Dataset("x").to_doc()}, 1)[0]
        chunk.set({**doc, "data": part.data})
    loaded = incremental.load(store, now=NOW, settings=cfg(), recent=200)
    assert loaded.mode == "full"
    assert loaded.reason == {"schema": "the model's schema changed"}.get(
        damage, "the stored model is incomplete")
    assert set(loaded.inputs.datasets) == {"meta.ads", "ads.daily", "crm.accounts"}


def test_a_full_read_comes_back_once_the_last_one_is_old_enough(db):
    store = Store(db)
    seed_pipeline(store)
    settings = cfg(publish_rebuild_after_s=3600)
    incremental.save(store, incremental.load(store, now=NOW, settings=settings, recent=200))
    soon = incremental.load(store, now=NOW + 59 * MIN, settings=settings, recent=200)
    late = incremental.load(store, now=NOW + 60 * MIN, settings=settings, recent=200)
    assert (soon.mode, late.mode) == ("incremental", "full")
    assert "3600 s" in late.reason
    never = incremental.load(store, now=NOW, settings=cfg(publish_rebuild_after_s=0),
                             recent=200)
    assert never.mode == "full"


def test_more_changed_runs_than_the_page_shows_reads_the_newest_instead(db):
    store = Store(db)
    seed_pipeline(store)
    incremental.save(store, incremental.load(store, now=NOW, settings=cfg(), recent=3))
    store.put_many("runs", [(f"burst-{i}", run(f"burst-{i}", "crm_sync",
                                               ago=-i * MIN).to_doc()) for i in range(10)])
    store.stats.reset()
    loaded = incremental.load(store, now=NOW, settings=cfg(), recent=3)
    assert loaded.mode == "incremental"
    assert list(loaded.inputs.runs) == ["burst-9", "burst-8", "burst-7"]
    # manifest, 4 chunks, jobs, datasets and deadline records (nothing: 1 each), 4
    # changed runs (the limit + 1 says "more"), then the newest updated_at and the 3
    # newest runs
    assert store.stats.reads == 1 + 4 + 3 + 4 + 1 + 3
    incremental.save(store, loaded)
    again = incremental.load(store, now=NOW, settings=cfg(), recent=3)
    assert (again.changed, list(again.inputs.runs)) == (0, ["burst-9", "burst-8", "burst-7"])


def test_old_runs_written_after_the_newest_ones_do_not_make_every_publish_reread(db):
    """The newest runs by created_at were written first, older ones after (a backfill):
    the mark is the collection's newest updated_at, not the newest among those shown,
    so the next publish finds nothing changed instead of overflowing again."""
    store = Store(db)
    store.put_many("runs", [(f"new-{i}", run(f"new-{i}", ago=i * MIN).to_doc())
                            for i in range(3)])
    for batch in range(3):  # three commits of older runs, each after the newest
        store.put_many("runs", [(f"old-{batch}-{i}", run(f"old-{batch}-{i}",
                                                         ago=H + i * MIN).to_doc())
                                for i in range(5)])
    incremental.save(store, incremental.load(store, now=NOW, settings=cfg(), recent=3))
    again = incremental.load(store, now=NOW, settings=cfg(), recent=3)
    assert (again.mode, again.changed) == ("incremental", 0)
    assert list(again.inputs.runs) == ["new-0", "new-1", "new-2"]


def test_a_large_model_is_kept_in_chunks_under_the_document_limit(db):
    """Incompressible text in every dataset: the emulator refuses any document over
    1 MiB, so storing this at all proves the chunks stay under it."""
    import os

    store = Store(db)
    datasets = [Dataset(f"big.{i:04d}", last_error=os.urandom(1500).hex(),
                        last_success_at=NOW - i * MIN) for i in range(800)]
    store.put_many("datasets", [(d.key, d.to_doc()) for d in datasets])
    loaded = incremental.load(store, now=NOW, settings=cfg(), recent=200)
    written = incremental.save(store, loaded)
    manifest = snapshot.Manifest.from_doc(
        db.collection(STATUS_MODEL).document(MODEL_MANIFEST).get().to_dict())
    # the datasets' chunks and one each for jobs, runs and deadline records
    assert manifest.count("datasets") >= 4 and written == manifest.count("datasets") + 3
    again = incremental.load(store, now=NOW, settings=cfg(), recent=200)
    assert again.mode == "incremental" and again.inputs.datasets == loaded.inputs.datasets


@settings(max_examples=60, deadline=None)
@given(count=st.sampled_from([1, 2, 4, 8]), touched=st.sets(st.integers(0, 59), max_size=8),
       added=st.integers(0, 3))
def test_repacking_the_touched_chunks_gives_what_packing_everything_gives(count, touched,
                                                                        added):
    before = snapshot.Inputs(datasets={f"ds.{i:02d}": Dataset(
        f"ds.{i:02d}", last_success_at=NOW - i * MIN) for i in range(60)})
    stored = snapshot.split("datasets", snapshot.section_docs(before, "datasets"), count)
    changed = {**before.datasets, **{f"ds.{i:02d}": Dataset(
        f"ds.{i:02d}", last_error="boom", consecutive_failures=i) for i in touched}}
    changed |= {f"new.{i}": Dataset(f"new.{i}", last_success_at=NOW) for i in range(added)}
    after = snapshot.Inputs(datasets=changed)
    keys = {f"ds.{i:02d}" for i in touched} | {f"new.{i}" for i in range(added)}
    spans = snapshot.items_and_spans(stored)[1]
    repacked = snapshot.repack("datasets", after, stored, keys, spans)
    packed = snapshot.pack("datasets", snapshot.section_docs(after, "datasets"), count)
    assert [(c.index, c.count, c.text) for c in repacked] == \
        [(c.index, c.count, c.text) for c in packed]
    untouched = set(range(count)) - {snapshot.chunk_of(k, count) for k in keys}
    assert all(repacked[i] is stored[i] for i in untouched if count > 1)  # not re-encoded


TAGGY = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8),
              st.sampled_from(["dt", "map", "bytes", "$", "2026-11-28T12:00:00+00:00"]),
              st.just(NOW), st.binary(max_size=4)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["$", "v", "a", "map"]), inner, max_size=3)),
    max_leaves=8)


@settings(max_examples=100, deadline=None)
@given(params=st.dictionaries(st.sampled_from(["$", "v", "q"]), TAGGY, max_size=3),
       error=st.sampled_from([None, '{"$":"map","v":1}', "plain"]))
def test_a_stored_chunk_gives_back_the_documents_it_was_made_of(params, error):
    """Whatever a job's params hold (maps keyed "$", values that look like the chunk's
    own tags), and whether or not a chunk holds a wrapped map (it is decoded faster
    without one), the stored model reads back what was stored."""
    jobs = {"a": job("a", last_error=error), "b": job("b", last_run_at=NOW)}
    jobs["a"].params = params  # as a stored document may hold them (datetimes, bytes)
    docs = snapshot.section_docs(snapshot.Inputs(jobs=jobs), "jobs")
    items = snapshot.items_of(snapshot.pack("jobs", docs))
    assert {k: v.to_doc() for k, v in items.items()} == docs


AWARE = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1),
                     timezones=st.sampled_from([UTC, timezone(timedelta(hours=2))]))
DAY_KEYS = st.one_of(
    st.dates(min_value=date(2026, 1, 1), max_value=date(2027, 6, 1)).map(date.isoformat),
    st.sampled_from(["20261128", "2026-11-28T00:00", "x", ""]))
COUNTS = st.one_of(
    st.fixed_dictionaries({"ok": st.integers(0, 5), "fail": st.integers(0, 5)}),
    st.fixed_dictionaries({"ok": st.integers(-2, 2), "fail": st.booleans()}),
    st.fixed_dictionaries({"ok": st.integers(0, 2)}), st.integers(0, 3))
POINTS = st.lists(st.fixed_dictionaries({"at": AWARE, "as_of": st.none() | AWARE}),
                  max_size=4)


@settings(max_examples=150, deadline=None)
@given(days=st.lists(st.dictionaries(DAY_KEYS, COUNTS, max_size=5), min_size=1, max_size=3),
       points=st.lists(POINTS, min_size=1, max_size=3))
def test_datasets_days_and_data_points_read_back_whatever_their_shape(days, points):
    """A dataset's days and data points are stored compact when they have their usual
    shape (ISO days within MAX_DAYS_SPAN, non-negative counts; aware times), and as they
    are otherwise: either way, what is read back is what was stored."""
    datasets = {f"ds.{i}": Dataset(f"ds.{i}", daily=d, data_points=p)
                for i, (d, p) in enumerate(zip(days, points, strict=False))}
    chunks = snapshot.pack("datasets", snapshot.section_docs(
        snapshot.Inputs(datasets=datasets), "datasets"))
    assert snapshot.items_of(chunks) == datasets


def test_usual_days_and_data_points_are_stored_as_one_text_each():
    daily = {(NOW.date() - timedelta(days=d)).isoformat(): {"ok": d % 3, "fail": d % 2}
             for d in range(90) if d != 5}
    points = [{"at": NOW - i * MIN, "as_of": None if i % 2 else NOW - H} for i in range(48)]
    dataset = Dataset("d", daily=daily, data_points=points)
    [chunk] = snapshot.pack("datasets", {"d": dataset.to_doc()})
    text = chunk.text.decode()
    assert text.count('"$":"days"') == 1 and text.count('"$":"points"') == 1
    assert '"ok"' not in text and "+00:00/-" in text and " _ " in text  # day 5: none
    assert snapshot.items_of([chunk]) == {"d": dataset}
    as_maps = json.dumps(snapshot.encode(dataset.to_doc()), separators=(",", ":"))
    assert len(as_maps) > 2.5 * len(text)


# -- the property: incremental == full, after any sequence of changes ----------------

RECENT = 4  # small, so runs fall off the page and bursts overflow the changed query
TIMES = [NOW - m * MIN for m in (0, 3, 30, 90, 600, 1500, 3000)] + [None]
KEYS = [f"ds.{i}" for i in range(6)]

jobs_op = st.tuples(st.just("job"), st.integers(0, 4),
                    st.sampled_from(["succeeded", "failed", None]),
                    st.sampled_from(["active", "paused", "archived"]),
                    st.sampled_from(["put", "update", "tx"]), st.booleans())
dataset_op = st.tuples(st.just("dataset"), st.sampled_from(KEYS), st.sampled_from(TIMES),
                       st.sampled_from(TIMES), st.booleans(),
                       st.sampled_from(["batch", "tx", "group"]))
run_op = st.tuples(st.just("run"), st.integers(0, 3), st.sampled_from(TIMES[:3] + [None]),
                   st.sampled_from(["queued", "running", "succeeded", "failed"]),
                   st.booleans(), st.sampled_from(["create", "update", "tx"]))
burst_op = st.tuples(st.just("burst"), st.integers(1, 6), st.sampled_from(TIMES[:3]))
catalog_op = st.tuples(st.just("catalog"), st.integers(0, 3))
publish_op = st.tuples(st.just("publish"), st.sampled_from([0, 5, 60, 1500]))
# Changes to documents a publish has already seen are what the merge must get right,
# so runs, jobs and datasets are changed more often than anything else.
KINDS = {"job": jobs_op, "dataset": dataset_op, "run": run_op, "burst": burst_op,
         "catalog": catalog_op, "publish": publish_op}
WEIGHTED = ["job"] * 3 + ["dataset"] * 3 + ["run"] * 4 + ["burst", "catalog", "publish"]
operations = st.lists(st.sampled_from(WEIGHTED).flatmap(KINDS.__getitem__),
                      min_size=4, max_size=16)


def _apply(store: Store, op: tuple, bursts: list[int]) -> None:
    kind = op[0]
    if kind == "job":
        _, i, last, status, how, marked = op
        # marked: a run of it is refreshing its datasets (they show running)
        mark = {"refresh_run_id": f"run-{i}" if marked else None,
                "refresh_started_at": NOW - 4 * MIN if marked else None}
        made = job(f"job-{i}", produces=[KEYS[i], KEYS[i + 1]], last_run_status=last,
                   status=status, last_error="broke" if last == "failed" else None,
                   next_run_at=NOW + i * MIN, **mark)
        if how == "put":
            store.put_job(made)
        elif how == "tx":
            store.transact(lambda tx: tx.set_job(made))
        elif store.get_job(made.id) is None:
            store.put_job(made)
        else:
            store.update_job(made.id, {"last_run_status": last, "status": status, **mark})
    elif kind == "dataset":
        _, key, ok, bad, running, how = op
        made = Dataset(key, last_success_at=ok, last_failure_at=bad,
                       last_started_at=NOW - 5 * MIN if running else None,
                       last_error="failed upstream" if bad else None,
                       consecutive_failures=1 if bad else 0,
                       running_run_id="r" if running else None,
                       daily={(NOW.date() - timedelta(days=d)).isoformat(): {"ok": d, "fail": 1}
                              for d in range(3)})
        # group: as a run's finish writes it, in its job's group (core.groups: job-i
        # produces ds.i and ds.i+1); tx: read first, then written where it is (a group
        # once one holds it); batch: a document of its own, while no group holds it
        owner = min(KEYS.index(key), 4)
        produces = (f"job-{owner}", (KEYS[owner], KEYS[owner + 1]))
        if how == "batch" and key not in store.dataset_layout()[0]:
            store.put_many("datasets", [(key, made.to_doc())])
        else:
            def body(tx):
                tx.get_datasets([key], produces if how == "group" else None)
                tx.set_dataset(made)

            store.transact(body)
    elif kind == "run":
        _, i, created, status, stuck, how = op
        made = Run(id=f"run-{i}", job_id=f"job-{i % 5}", kind="noop",
                   scheduled_for=created or NOW, created_at=created, status=status,
                   stuck=stuck, error="stuck" if stuck else None)
        if how == "create":
            store.create_run(made)
        elif how == "tx":
            store.transact(lambda tx: tx.set_run(made))
        elif store.get_run(made.id) is not None:
            store.update_run(made.id, {"status": status, "stuck": stuck})
    elif kind == "burst":  # one commit: every run in it has the same updated_at
        _, count, created = op
        bursts.append(len(bursts))
        store.put_many("runs", [(f"burst-{len(bursts)}-{n}", Run(
            id=f"burst-{len(bursts)}-{n}", job_id="job-0", kind="noop",
            scheduled_for=created, created_at=created, status="succeeded").to_doc())
            for n in range(count)])
    elif kind == "catalog":
        _, variant = op
        store.put_catalog_doc(Catalog(
            datasets={k: DatasetSpec(k, k.upper(), upstream=(KEYS[0],) if k != KEYS[0]
                                     and variant % 2 else ()) for k in KEYS[:variant + 2]},
            consumers=(Consumer("team", "Team", requires=tuple(
                requirement(k, 1, 2 + variant) for k in KEYS[:variant + 1])),),
        ).to_doc())


@settings(max_examples=20, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(ops=operations)
def test_an_incremental_publish_builds_what_a_full_read_builds(firestore_emulator, ops):
    """After every change, an incremental read is compared with a full one, then stored
    as the next publish's starting point (time moves on at the "publish" steps)."""
    from google.cloud import firestore

    firestore_emulator.wipe()
    store = Store(firestore.Client(project=firestore_emulator.project))
    settings_ = cfg()
    now, bursts = NOW, []
    for op in ops:
        if op[0] == "publish":
            now += op[1] * MIN
        else:
            _apply(store, op, bursts)
        inc, _, loaded = read_model(store, now=now, settings=settings_, recent=RECENT)
        full, _, whole = read_model(store, now=now, settings=settings_, recent=RECENT,
                                    full=True)
        assert (loaded.inputs.jobs, loaded.inputs.datasets, loaded.inputs.runs) == (
            whole.inputs.jobs, whole.inputs.datasets, whole.inputs.runs)
        assert inc == full
        incremental.save(store, loaded)
    files = {p: o.data for p, o in render_site(inc, []).items()}
    assert files == {p: o.data for p, o in render_site(full, []).items()}
