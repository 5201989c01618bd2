"""Conformance of the offline Firestore emulator, as seen through the Python client.

Each `check_*` function states one behaviour of real Firestore.  The numbered
tests run it against BOTH servers started by `infra/emulators/firestore/launcher.js`:

* ``unpatched`` -- @firestore-emulator/server 0.3.15 as published: the check must
  FAIL there, which proves the defect is real and the test can see it;
* ``patched`` -- the launcher's server: the check must pass.

The remaining tests cover behaviour Freshet relies on beyond the listed defects
and run against the patched server only.  Every check works in its own,
uniquely named collections, so no wipe is needed between them (the unpatched
server cannot wipe).
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from unittest import mock

import grpc
import pytest
from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import And, FieldFilter, Or

from freshet_local import emulators

PROJECT = "demo-freshet"
UTC = dt.UTC

# What "the check fails" may look like on the unpatched server.
DEFECT = (AssertionError, gexc.GoogleAPICallError, gexc.RetryError, grpc.RpcError)


# ---------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture(scope="module")
def servers():
    patched = emulators.start_firestore(project=PROJECT)
    unpatched = emulators.start_firestore(project=PROJECT, unpatched=True)
    yield {"patched": patched, "unpatched": unpatched}
    patched.stop()
    unpatched.stop()


def client_for(emu: emulators.FirestoreEmulator) -> firestore.Client:
    # The client reads FIRESTORE_EMULATOR_HOST once, in its constructor.
    with mock.patch.dict(os.environ, {"FIRESTORE_EMULATOR_HOST": emu.address}):
        return firestore.Client(project=emu.project)


@pytest.fixture(scope="module")
def clients(servers):
    made = {name: client_for(emu) for name, emu in servers.items()}
    yield made
    for c in made.values():
        c.close()


@pytest.fixture
def patched_db(clients):
    return clients["patched"]


def col(db: firestore.Client, name: str = "c"):
    return db.collection(f"{name}-{uuid.uuid4().hex[:10]}")


def verify(server: str, check: Callable[..., None], *args) -> None:
    """The check must pass on the patched server and fail on the unpatched one."""
    if server == "patched":
        check(*args)
    else:
        with pytest.raises(DEFECT):
            check(*args)


def expect_error(exc_type, fn, *args, **kwargs):
    """Like pytest.raises, but a missing error is an AssertionError (a failed check)."""
    try:
        fn(*args, **kwargs)
    except exc_type:
        return
    raise AssertionError(f"{getattr(fn, '__name__', fn)} did not raise {exc_type.__name__}")


both = pytest.mark.parametrize("server", ["patched", "unpatched"])


# ---------------------------------------------------------------------------
# 1. set() semantics


def check_set_replaces_document(db):
    ref = col(db).document("d")
    ref.set({"a": 1, "b": 2})
    ref.set({"c": 3})
    assert ref.get().to_dict() == {"c": 3}


def check_delete_field(db):
    ref = col(db).document("d")
    ref.set({"a": 1, "b": 2, "c": 3})
    ref.set({"b": firestore.DELETE_FIELD}, merge=True)
    ref.update({"c": firestore.DELETE_FIELD})
    assert ref.get().to_dict() == {"a": 1}


@both
def test_1_set_without_merge_replaces_the_document(clients, server):
    verify(server, check_set_replaces_document, clients[server])


@both
def test_1_delete_field_removes_the_field(clients, server):
    verify(server, check_delete_field, clients[server])


# ---------------------------------------------------------------------------
# 2. transforms and nested field paths
# (the client sends field transforms sorted by field path: "a_*" runs before "b_*")


def check_transform_after_array_union(db):
    ref = col(db).document("d")
    ref.set({"a_tags": ["x"], "b_n": 1})
    ref.update({"a_tags": firestore.ArrayUnion(["y"]), "b_n": firestore.Increment(2)})
    ref.update({"a_ts": firestore.SERVER_TIMESTAMP, "b_n": firestore.Increment(3)})
    ref.update({"a_tags": firestore.ArrayRemove(["x"]), "b_n": firestore.Increment(4)})
    got = ref.get().to_dict()
    assert got["a_tags"] == ["y"]
    assert isinstance(got["a_ts"], dt.datetime)
    assert got["b_n"] == 10


def check_array_union_on_missing_field(db):
    ref = col(db).document("d")
    ref.set({"x": 1})
    ref.update({"tags": firestore.ArrayUnion(["a", "b", "a"])})
    ref.set({"gone": firestore.ArrayRemove(["a"])}, merge=True)
    assert ref.get().to_dict() == {"x": 1, "tags": ["a", "b"], "gone": []}


def check_nested_field_paths(db):
    ref = col(db).document("d")
    ref.set({"a": {"b": 0, "keep": 1}})
    ref.update({"a.b": 5, "a.new": "n"})
    ref.update({"a.count": firestore.Increment(2), "a.when": firestore.SERVER_TIMESTAMP})
    got = ref.get().to_dict()
    assert got["a"]["b"] == 5 and got["a"]["keep"] == 1 and got["a"]["new"] == "n"
    assert got["a"]["count"] == 2 and isinstance(got["a"]["when"], dt.datetime)
    assert ref.get(["a.b"]).to_dict() == {"a": {"b": 5}}


@both
def test_2_transform_after_array_and_server_timestamp_transforms(clients, server):
    verify(server, check_transform_after_array_union, clients[server])


@both
def test_2_array_union_on_a_missing_field(clients, server):
    verify(server, check_array_union_on_missing_field, clients[server])


@both
def test_2_nested_field_paths(clients, server):
    verify(server, check_nested_field_paths, clients[server])


# ---------------------------------------------------------------------------
# 3. collection-group queries


def check_collection_group(db):
    group = f"items-{uuid.uuid4().hex[:8]}"
    db.collection(group).document("top").set({"n": 1})
    col(db, "p").document("x").collection(group).document("i1").set({"n": 2})
    col(db, "q").document("y").collection("mid").document("z").collection(group).document(
        "i2").set({"n": 3})
    db.collection(f"{group}x").document("other").set({"n": 4})  # a different id
    got = sorted(d.get("n") for d in db.collection_group(group).stream())
    assert got == [1, 2, 3]
    ge2 = db.collection_group(group).where(filter=FieldFilter("n", ">=", 2))
    got = [d.get("n") for d in ge2.stream()]
    assert sorted(got) == [2, 3]


@both
def test_3_collection_group_queries_see_nested_collections(clients, server):
    verify(server, check_collection_group, clients[server])


# ---------------------------------------------------------------------------
# 4. cursors, offset, select


def _numbers(db, n=10):
    c = col(db, "num")
    batch = db.batch()
    for i in range(n):
        tag = "even" if i % 2 == 0 else "odd"
        batch.set(c.document(f"d{i}"), {"n": i, "sq": i * i, "tag": tag})
    batch.commit()
    return c


def check_cursors(db):
    c = _numbers(db)
    q = c.order_by("n")
    assert [d.get("n") for d in q.start_at({"n": 3}).end_before({"n": 6}).stream()] == [3, 4, 5]
    assert [d.get("n") for d in q.start_after({"n": 7}).stream()] == [8, 9]
    assert [d.get("n") for d in q.end_at({"n": 1}).stream()] == [0, 1]
    snap = c.document("d4").get()
    assert [d.get("n") for d in q.start_after(snap).limit(2).stream()] == [5, 6]
    desc = c.order_by("n", direction=firestore.Query.DESCENDING)
    assert [d.get("n") for d in desc.start_at({"n": 2}).stream()] == [2, 1, 0]


def check_offset(db):
    c = _numbers(db)
    assert [d.get("n") for d in c.order_by("n").offset(7).stream()] == [7, 8, 9]
    assert [d.get("n") for d in c.order_by("n").offset(2).limit(2).stream()] == [2, 3]


def check_select(db):
    c = _numbers(db, 3)
    got = [d.to_dict() for d in c.order_by("n").select(["sq"]).stream()]
    assert got == [{"sq": 0}, {"sq": 1}, {"sq": 4}]
    assert [d.to_dict() for d in c.select([]).stream()] == [{}, {}, {}]


@both
def test_4_cursors(clients, server):
    verify(server, check_cursors, clients[server])


@both
def test_4_offset(clients, server):
    verify(server, check_offset, clients[server])


@both
def test_4_select(clients, server):
    verify(server, check_select, clients[server])


# ---------------------------------------------------------------------------
# 5. equality with None


def check_where_none(db):
    c = col(db)
    c.document("null").set({"x": None})
    c.document("one").set({"x": 1})
    c.document("missing").set({"y": 1})
    assert [d.id for d in c.where(filter=FieldFilter("x", "==", None)).stream()] == ["null"]
    assert [d.id for d in c.where(filter=FieldFilter("x", "!=", None)).stream()] == ["one"]


@both
def test_5_where_equals_none_matches_only_nulls(clients, server):
    verify(server, check_where_none, clients[server])


# ---------------------------------------------------------------------------
# 6. ListDocuments, ListCollectionIds, BatchWrite


def check_list_documents(db):
    c = col(db)
    c.document("a").set({"n": 1})
    c.document("b").set({"n": 2})
    c.document("ghost").collection("sub").document("s").set({"n": 3})  # "ghost" has no data
    assert sorted(r.id for r in c.list_documents()) == ["a", "b", "ghost"]
    assert sorted(r.id for r in c.list_documents(page_size=1)) == ["a", "b", "ghost"]


def check_list_collection_ids(db):
    c = col(db)
    ref = c.document("a")
    ref.set({"n": 1})
    ref.collection("x").document("1").set({})
    ref.collection("y").document("1").collection("deep").document("2").set({})
    assert sorted(cc.id for cc in ref.collections()) == ["x", "y"]
    assert c.id in {cc.id for cc in db.collections()}


def check_bulk_writer(db):
    c = col(db)
    bw = db.bulk_writer()
    bw.on_write_error(lambda error: False)  # fail fast instead of retrying with backoff
    for i in range(50):
        bw.set(c.document(f"d{i}"), {"i": i})
    bw.close()
    assert c.count().get()[0][0].value == 50


@both
def test_6_list_documents(clients, server):
    verify(server, check_list_documents, clients[server])


@both
def test_6_list_collection_ids(clients, server):
    verify(server, check_list_collection_ids, clients[server])


@both
def test_6_batch_write_bulk_writer(clients, server):
    verify(server, check_bulk_writer, clients[server])


# ---------------------------------------------------------------------------
# 7. transaction isolation


def run_concurrent_increments(emu, threads=2, per_thread=50) -> int:
    ref_path = f"{col(client_for(emu)).id}/counter"
    setup = client_for(emu)
    setup.document(ref_path).set({"n": 0})
    errors = []

    def worker():
        db = client_for(emu)  # one client per thread, like separate function instances
        ref = db.document(ref_path)

        @firestore.transactional  # one per thread: it carries the retry state
        def increment(tx):
            snap = ref.get(transaction=tx)
            tx.update(ref, {"n": snap.get("n") + 1})

        try:
            for _ in range(per_thread):
                increment(db.transaction())
        except Exception as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    result = setup.document(ref_path).get().get("n")
    print(f"{emu!r}: {threads} threads x {per_thread} increments -> {result} "
          f"({len(errors)} thread errors)")
    return result


def check_transactions_serialisable(emu):
    assert run_concurrent_increments(emu) == 100


@both
def test_7_transactions_are_isolated(servers, server):
    verify(server, check_transactions_serialisable, servers[server])


# ---------------------------------------------------------------------------
# 8. last_update_time preconditions


def check_update_time_precondition_on_update(db):
    ref = col(db).document("d")
    ref.set({"v": 1})
    stale = ref.get().update_time
    ref.update({"v": 2})
    fresh = ref.get().update_time
    expect_error(gexc.FailedPrecondition, ref.update, {"v": 3},
                 option=db.write_option(last_update_time=stale))
    assert ref.get().get("v") == 2
    ref.update({"v": 4}, option=db.write_option(last_update_time=fresh))
    assert ref.get().get("v") == 4


def check_update_time_precondition_on_delete(db):
    ref = col(db).document("d")
    ref.set({"v": 1})
    stale = ref.get().update_time
    ref.set({"v": 2})
    expect_error(gexc.FailedPrecondition, ref.delete,
                 option=db.write_option(last_update_time=stale))
    assert ref.get().exists
    ref.delete(option=db.write_option(last_update_time=ref.get().update_time))
    assert not ref.get().exists


@both
def test_8_stale_last_update_time_is_refused_on_update(clients, server):
    verify(server, check_update_time_precondition_on_update, clients[server])


@both
def test_8_stale_last_update_time_is_refused_on_delete(clients, server):
    verify(server, check_update_time_precondition_on_delete, clients[server])


# ---------------------------------------------------------------------------
# 9. wipe endpoint


def check_wipe(emu):
    db = client_for(emu)
    c = col(db)
    c.document("a").set({"n": 1})
    c.document("a").collection("sub").document("b").set({"n": 2})
    try:
        emu.wipe()
    except emulators.EmulatorError as exc:
        raise AssertionError(f"no wipe endpoint: {exc}") from exc
    assert list(c.stream()) == []
    assert list(db.collection_group("sub").stream()) == []
    assert list(db.collections()) == []


@both
def test_9_wipe_endpoint_empties_the_database(servers, server):
    verify(server, check_wipe, servers[server])


def test_9_health_endpoint_on_the_grpc_port(servers):
    with urllib.request.urlopen(f"http://{servers['patched'].address}/", timeout=5) as resp:
        assert resp.status == 200 and resp.read().strip() == b"Ok"


def test_9_wipe_only_touches_its_project(servers):
    emu = servers["patched"]
    with mock.patch.dict(os.environ, {"FIRESTORE_EMULATOR_HOST": emu.address}):
        other = firestore.Client(project="other-project")
    other.collection("keep").document("k").set({"n": 1})
    emu.wipe()
    assert other.collection("keep").document("k").get().exists


# ---------------------------------------------------------------------------
# 10. bulk load speed (defect 10 is last: it leaves the unpatched server slow)


def load_documents(db, n=10_000, batch_size=500, budget_s=5.0) -> float:
    """Loads n documents with batched commits; gives up once over budget."""
    c = col(db, "load")
    in_commit = 0.0
    for start in range(0, n, batch_size):
        batch = db.batch()
        for i in range(start, min(n, start + batch_size)):
            batch.set(c.document(f"d{i:05d}"), {"i": i, "name": f"doc {i}", "tags": ["a", "b"]})
        t0 = time.perf_counter()
        batch.commit()
        in_commit += time.perf_counter() - t0
        if in_commit > budget_s:
            raise AssertionError(f"only {start + batch_size} of {n} documents loaded in "
                                 f"{in_commit:.1f}s (budget {budget_s}s)")
    print(f"loaded {n} documents in batches of {batch_size}: {in_commit:.2f}s in commit()")
    assert c.count().get()[0][0].value == n
    return in_commit


def check_bulk_load(db):
    # The patched server takes well under 1 s; the bound is generous for slow CI
    # machines.  bench/bench_emulator.py reports the real figures.
    load_documents(db, budget_s=5.0)


@both
def test_10_ten_thousand_documents_load_quickly(clients, server):
    verify(server, check_bulk_load, clients[server])


# ---------------------------------------------------------------------------
# Beyond the listed defects (patched server only)


def test_create_on_existing_document_fails_and_update_on_missing_fails(patched_db):
    c = col(patched_db)
    c.document("d").create({"n": 1})
    with pytest.raises(gexc.Conflict):  # ALREADY_EXISTS
        c.document("d").create({"n": 2})
    with pytest.raises(gexc.NotFound):
        c.document("nope").update({"n": 1})
    assert c.document("d").get().to_dict() == {"n": 1}


def test_commit_is_atomic(patched_db):
    c = col(patched_db)
    c.document("exists").set({"n": 1})
    batch = patched_db.batch()
    batch.set(c.document("new"), {"n": 1})
    batch.create(c.document("exists"), {"n": 2})  # fails: the whole batch must not apply
    with pytest.raises(gexc.Conflict):
        batch.commit()
    assert not c.document("new").get().exists


def test_timestamps_round_trip_with_microseconds_and_range_queries(patched_db):
    c = col(patched_db)
    now = dt.datetime.now(UTC)
    past = now - dt.timedelta(microseconds=1)
    future = now + dt.timedelta(microseconds=1)
    c.document("past").set({"next_run_at": past})
    c.document("now").set({"next_run_at": now})
    c.document("future").set({"next_run_at": future})
    assert c.document("past").get().get("next_run_at") == past
    due = c.where(filter=FieldFilter("next_run_at", "<=", now)).order_by("next_run_at")
    assert [d.id for d in due.stream()] == ["past", "now"]


def test_filters_order_by_and_limit(patched_db):
    c = _numbers(patched_db)
    n = lambda q: [d.get("n") for d in q.stream()]  # noqa: E731
    q = c.order_by("n")
    assert n(q.where(filter=FieldFilter("n", "<", 3))) == [0, 1, 2]
    assert n(q.where(filter=FieldFilter("n", "<=", 2))) == [0, 1, 2]
    assert n(q.where(filter=FieldFilter("n", ">", 7))) == [8, 9]
    assert n(q.where(filter=FieldFilter("n", ">=", 8))) == [8, 9]
    assert n(q.where(filter=FieldFilter("n", "!=", 5)).limit(6)) == [0, 1, 2, 3, 4, 6]
    assert n(q.where(filter=FieldFilter("n", "in", [1, 4, 42]))) == [1, 4]
    assert n(q.where(filter=FieldFilter("n", "not-in", [0, 1, 2, 3, 4, 5, 6]))) == [7, 8, 9]
    assert n(c.order_by("n", direction="DESCENDING").limit(3)) == [9, 8, 7]
    both_ = And([FieldFilter("n", ">", 2), FieldFilter("tag", "==", "even")])
    assert n(q.where(filter=both_)) == [4, 6, 8]
    either = Or([FieldFilter("n", "==", 1), FieldFilter("sq", "==", 81)])
    assert n(q.where(filter=either)) == [1, 9]
    nested = Or([And([FieldFilter("n", ">=", 8), FieldFilter("tag", "==", "odd")]),
                 FieldFilter("n", "==", 0)])
    assert n(q.where(filter=nested)) == [0, 9]
    # Last: the client flips the order protos it shares with `q` in place for limit_to_last.
    assert [d.get("n") for d in c.order_by("n").limit_to_last(2).get()] == [8, 9]


def test_array_filters(patched_db):
    c = col(patched_db)
    c.document("a").set({"tags": ["x", "y"]})
    c.document("b").set({"tags": ["z"]})
    c.document("c").set({"tags": "x"})  # not an array
    ids = lambda q: sorted(d.id for d in q.stream())  # noqa: E731
    assert ids(c.where(filter=FieldFilter("tags", "array_contains", "x"))) == ["a"]
    assert ids(c.where(filter=FieldFilter("tags", "array_contains_any", ["y", "z"]))) == ["a", "b"]


def test_type_ordering_follows_firestore(patched_db):
    c = col(patched_db)
    values = {
        "null": None, "false": False, "true": True, "nan": float("nan"), "neg": -1.5,
        "int": 1, "float": 2.5, "time": dt.datetime(2020, 1, 1, tzinfo=UTC), "str_a": "a",
        "str_b": "b", "bytes": b"\x00", "ref": c.document("r"), "geo": firestore.GeoPoint(1, 2),
        "arr": [1], "map": {"k": 1},
    }
    for key, value in values.items():
        c.document(key).set({"v": value})
    order = [d.id for d in c.order_by("v").stream()]
    assert order == list(values)
    # Range filters only match values of the same type.
    assert [d.id for d in c.where(filter=FieldFilter("v", ">", 0)).stream()] == ["int", "float"]
    assert c.where(filter=FieldFilter("v", "==", 1.0)).get()[0].id == "int"


def test_count_aggregation(patched_db):
    c = _numbers(patched_db)
    assert c.count().get()[0][0].value == 10
    assert c.where(filter=FieldFilter("tag", "==", "odd")).count().get()[0][0].value == 5
    assert c.order_by("n").limit(3).count().get()[0][0].value == 3
    assert c.sum("n").get()[0][0].value == 45


def test_transaction_reads_by_query_are_tracked(patched_db):
    """A query read inside a transaction conflicts with a concurrent insert (phantom)."""
    c = col(patched_db)
    c.document("a").set({"open": True})
    attempts = []

    @firestore.transactional
    def count_open(tx):
        attempts.append(1)
        found = list(c.where(filter=FieldFilter("open", "==", True)).stream(transaction=tx))
        if len(attempts) == 1:
            c.document("b").set({"open": True})  # concurrent write after our read
        tx.set(c.document("summary"), {"open": len(found)})

    count_open(patched_db.transaction())
    assert len(attempts) == 2
    assert c.document("summary").get().get("open") == 2


def test_transaction_sees_get_or_create_conflict_as_retryable(patched_db):
    c = col(patched_db)
    ref = c.document("x")
    attempts = []

    @firestore.transactional
    def get_or_create(tx):
        attempts.append(1)
        snap = ref.get(transaction=tx)
        if len(attempts) == 1:
            ref.set({"by": "other"})
        if not snap.exists:
            tx.create(ref, {"by": "tx"})

    get_or_create(patched_db.transaction())  # the retry sees the document and does nothing
    assert len(attempts) == 2 and ref.get().get("by") == "other"


def test_raw_document_rpcs(patched_db):
    """GetDocument / CreateDocument / UpdateDocument / DeleteDocument over the GAPIC layer."""
    api = patched_db._firestore_api
    c = col(patched_db)
    parent = f"projects/{PROJECT}/databases/(default)/documents"
    doc = api.create_document(request={"parent": parent, "collection_id": c.id,
                                       "document_id": "d",
                                       "document": {"fields": {"a": {"integer_value": 1}}}})
    assert doc.name.endswith(f"{c.id}/d")
    with pytest.raises(gexc.Conflict):
        api.create_document(request={"parent": parent, "collection_id": c.id,
                                     "document_id": "d", "document": {}})
    api.update_document(request={"document": {"name": doc.name,
                                              "fields": {"b": {"string_value": "x"}}},
                                 "update_mask": {"field_paths": ["b"]}})
    got = api.get_document(request={"name": doc.name})
    assert got.fields["a"].integer_value == 1 and got.fields["b"].string_value == "x"
    api.delete_document(request={"name": doc.name})
    with pytest.raises(gexc.NotFound):
        api.get_document(request={"name": doc.name})


def test_on_snapshot_listener(patched_db):
    c = col(patched_db)
    c.document("a").set({"n": 1})
    seen = []
    got_two = threading.Event()

    def on_snapshot(snaps, changes, read_time):
        seen.append(sorted(d.id for d in snaps))
        if len(snaps) == 2:
            got_two.set()

    watch = c.on_snapshot(on_snapshot)
    try:
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            time.sleep(0.02)
        c.document("b").set({"n": 2})
        assert got_two.wait(10), seen
    finally:
        watch.unsubscribe()
    assert seen[0] == ["a"] and seen[-1] == ["a", "b"]


def test_no_process_left_after_stop():
    emu = emulators.start_firestore(project=PROJECT)
    pid = emu.pid
    os.kill(pid, 0)  # running
    emu.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_launcher_exits_when_its_parent_goes_away():
    """Closing the launcher's stdin (what a dying parent does) makes it exit."""
    emu = emulators.start_firestore(project=PROJECT)
    proc = emu._process.popen
    proc.stdin.close()
    try:
        assert proc.wait(10) == 0
    finally:
        emu.stop()
