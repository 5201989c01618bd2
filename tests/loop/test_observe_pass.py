"""The observe pass (freshet.loop.observe) on the in-memory store with a fake clock:
due reads only, in bulk; a dataset written only when its data time moves or its error
changes; a transient read changes nothing; new data triggers the jobs that wait for it,
once. The reader is Freshet's own Reader protocol over fixed answers; the adapters it
wraps are tested on the emulators (tests/emulator/test_bigquery_contract.py,
test_storage_newest.py)."""

import threading
from datetime import timedelta

import pytest

from freshet.core.catalog import Catalog, Consumer, DatasetSpec
from freshet.core.errors import PermanentError, TransientError
from freshet.core.freshness import State, make_requirement
from freshet.core.models import TriggerSource
from freshet.core.observe import Ledger, ObserveKind, ObserveSpec, observed_version
from freshet.core.triggers import triggered_run_id
from freshet.loop.datasets import get_freshness
from freshet.loop.observe import observe_once
from freshet.ops.operations import register_triggers
from tests.loop.helpers import MIN, T0, RecordingQueue, add_job, loop_settings

M = MIN


class Answers:
    """A Reader answering from dicts (a value, or an exception to raise)."""

    def __init__(self, tables=None, prefixes=None, sql=None):
        self.tables, self.prefixes, self.sql = tables or {}, prefixes or {}, sql or {}
        self.calls = []
        self.lock = threading.Lock()

    def _answer(self, kind, name, value):
        with self.lock:
            self.calls.append((kind, name))
        if isinstance(value, Exception):
            raise value
        return value

    def table_time(self, table):
        return self._answer("table", table, self.tables[table])

    def prefix_time(self, bucket, prefix):
        return self._answer("prefix", f"{bucket}/{prefix}", self.prefixes[(bucket, prefix)])

    def sql_time(self, spec):
        return self._answer("sql", spec.target, self.sql[spec.target])


def spec(kind, target, billed=None, every=5 * M):
    return ObserveSpec(kind, target, every, billed)


def declare(store, specs, consumers=()):
    store.put_catalog_doc(Catalog(
        datasets={k: DatasetSpec(key=k, observe=s) for k, s in specs.items()},
        consumers=tuple(consumers)).to_doc())


def observe(store, reader, now, **kw):
    settings = loop_settings()
    return observe_once(store, kw.pop("queue", None) or RecordingQueue(settings), now=now,
                        settings=settings, reader=reader, **kw)


def test_a_pass_reads_each_due_dataset_once_and_records_its_data_time(memory_store):
    store = memory_store
    specs = {f"v.t{i}": spec(ObserveKind.BIGQUERY_TABLE, f"p-roj1.d.t{i}") for i in range(50)}
    specs["v.files"] = spec(ObserveKind.GCS_PREFIX, "gs://bkt/drop/")
    specs["v.sql"] = spec(ObserveKind.BIGQUERY_SQL, "select max(ts) from x", 10**8)
    declare(store, specs)
    reader = Answers(tables={f"p-roj1.d.t{i}": T0 - i * M for i in range(50)},
                     prefixes={("bkt", "drop/"): T0 - 2 * M},
                     sql={"select max(ts) from x": T0 - 3 * M})
    result = observe(store, reader, T0)
    assert len(reader.calls) == 52 and len(set(reader.calls)) == 52
    assert result.read == 52 and len(result.changed) == 52
    ds = store.get_dataset("v.t7")
    assert (ds.data_as_of, ds.freshness_basis) == (T0 - 7 * M, "observed")
    assert store.get_dataset("v.files").data_as_of == T0 - 2 * M
    assert store.get_dataset("v.sql").data_as_of == T0 - 3 * M
    # A minute later nothing is due: the ledger alone is read, nothing is written.
    reader.calls.clear()
    reads, writes = store.stats.reads, store.stats.writes
    assert not observe(store, reader, T0 + M).ran
    assert reader.calls == []
    assert (store.stats.reads - reads, store.stats.writes - writes) == (1, 0)


def test_a_pass_writes_only_the_datasets_whose_data_time_moved(memory_store):
    store = memory_store
    specs = {f"v.t{i}": spec(ObserveKind.BIGQUERY_TABLE, f"p-roj1.d.t{i}") for i in range(20)}
    declare(store, specs)
    tables = {f"p-roj1.d.t{i}": T0 - M for i in range(20)}
    observe(store, Answers(tables=tables), T0)
    tables["p-roj1.d.t3"] = T0 + 4 * M  # one table changed
    writes = store.stats.writes
    result = observe(store, Answers(tables=tables), T0 + 5 * M)
    assert result.read == 20 and result.changed == ["v.t3"]
    assert store.stats.writes - writes == 2  # that dataset, and the ledger
    assert store.get_dataset("v.t3").data_as_of == T0 + 4 * M


def test_an_observed_table_that_stops_changing_turns_its_consumer_stale(memory_store):
    store = memory_store
    declare(store, {"vendor.orders": spec(ObserveKind.BIGQUERY_TABLE, "vendor-p.s.orders")},
            [Consumer("finance", "Finance", requires=(
                make_requirement("vendor.orders", "30m", "1h"),))])
    requirement = store.catalog().requirement_for("vendor.orders")
    table = {"vendor-p.s.orders": T0}
    states = {}
    for minute in range(0, 121, 5):  # a pass every 5 minutes; the vendor loads until 0:20
        now = T0 + minute * M
        if minute <= 20:
            table["vendor-p.s.orders"] = now - M
        observe(store, Answers(tables=table), now)
        states[minute] = get_freshness(store, requirement, now).state
    assert states[20] == states[45] == State.FRESH
    assert states[50] == State.WARN  # data 31 minutes old
    assert states[80] == states[120] == State.STALE_DATA
    fresh = get_freshness(store, requirement, T0 + 120 * M)
    assert fresh.basis == "observed" and "has not changed since" in fresh.reason


def test_a_transient_read_keeps_the_last_data_time_and_the_state(memory_store):
    store = memory_store
    declare(store, {"v.a": spec(ObserveKind.BIGQUERY_TABLE, "p-roj1.d.a")})
    observe(store, Answers(tables={"p-roj1.d.a": T0 - M}), T0)
    before = store.get_dataset("v.a")
    requirement = make_requirement("v.a", "30m", "1h")
    writes = store.stats.writes
    result = observe(store, Answers(tables={"p-roj1.d.a": TransientError("503")}), T0 + 5 * M)
    assert (result.read, result.transient, result.changed) == (1, 1, [])
    assert store.get_dataset("v.a") == before
    assert store.stats.writes - writes == 1  # the ledger only
    assert get_freshness(store, requirement, T0 + 5 * M).state == State.FRESH
    # still due: the next pass reads it again
    calls = Answers(tables={"p-roj1.d.a": T0 - M})
    observe(store, calls, T0 + 6 * M)
    assert calls.calls == [("table", "p-roj1.d.a")]


def test_a_permanent_read_error_is_a_failure_written_once(memory_store):
    store = memory_store
    declare(store, {"v.a": spec(ObserveKind.BIGQUERY_TABLE, "p-roj1.d.a")})
    observe(store, Answers(tables={"p-roj1.d.a": T0 - M}), T0)
    view = Answers(tables={"p-roj1.d.a": PermanentError("p-roj1.d.a is a view: ...")})
    result = observe(store, view, T0 + 5 * M)
    assert result.failed == 1 and result.changed == ["v.a"]
    failed = store.get_dataset("v.a")
    assert failed.failing and "is a view" in failed.last_error
    assert failed.data_as_of == T0 - M and failed.last_success_at == T0
    writes = store.stats.writes
    assert observe(store, view, T0 + 10 * M).changed == []  # the same error: no write
    assert store.stats.writes - writes == 1
    observe(store, Answers(tables={"p-roj1.d.a": T0 - M}), T0 + 15 * M)
    assert not store.get_dataset("v.a").failing  # read again: healed


@pytest.fixture(params=["memory", "firestore"])
def either_store(request):
    if request.param == "memory":
        return request.getfixturevalue("memory_store")
    from freshet.gcp.store import Store

    return Store(request.getfixturevalue("db"))


def test_new_observed_data_triggers_the_job_waiting_for_it_once_per_data_time(either_store):
    store, settings = either_store, loop_settings()
    declare(store, {"vendor.orders": spec(ObserveKind.BIGQUERY_TABLE, "vendor-p.s.orders")})
    rollup = add_job(store, "rollup", produces=("sales.rollup",), schedule=None,
                     next_run_at=None, trigger={"after": ["vendor.orders"]})
    register_triggers(store, rollup)
    queue = RecordingQueue(settings)
    table = {"vendor-p.s.orders": T0 - M}
    first = observe(store, Answers(tables=table), T0, queue=queue)
    version = observed_version(T0 - M)
    expected = triggered_run_id("rollup", {"vendor.orders": version})
    assert first.runs == [expected]
    run = store.run(expected)
    assert run.trigger_source == TriggerSource.UPSTREAM
    assert run.upstream_versions == {"vendor.orders": version}
    assert [t.run_id for t in queue.sent] == [expected]
    # The same data again triggers nothing; new data triggers one more run.
    assert observe(store, Answers(tables=table), T0 + 5 * M, queue=queue).runs == []
    table["vendor-p.s.orders"] = T0 + 8 * M
    assert len(observe(store, Answers(tables=table), T0 + 10 * M, queue=queue).runs) == 1
    assert len(store.recent_runs(job_id="rollup")) == 2


def test_a_ledger_lost_between_the_commit_and_its_write_triggers_nothing_twice(memory_store):
    store = memory_store
    declare(store, {"vendor.orders": spec(ObserveKind.BIGQUERY_TABLE, "vendor-p.s.orders")})
    rollup = add_job(store, "rollup", produces=("sales.rollup",), schedule=None,
                     next_run_at=None, trigger={"after": ["vendor.orders"]})
    register_triggers(store, rollup)
    table = {"vendor-p.s.orders": T0 - M}
    assert len(observe(store, Answers(tables=table), T0).runs) == 1
    store.put_observations_doc({})  # as if the pass died before writing its ledger
    again = observe(store, Answers(tables=table), T0 + M)
    assert again.runs == [] and again.changed == []
    assert len(store.recent_runs(job_id="rollup")) == 1


def test_a_pass_out_of_time_leaves_the_rest_due_for_the_next(memory_store):
    store = memory_store
    declare(store, {"v.s1": spec(ObserveKind.BIGQUERY_SQL, "select 1", 10**8),
                    "v.s2": spec(ObserveKind.BIGQUERY_SQL, "select 2", 10**8)})
    reader = Answers(sql={"select 1": T0 - M, "select 2": T0 - M})
    result = observe(store, reader, T0, budget_s=0)
    assert result.deferred == 2 and result.read == 0
    assert Ledger.from_doc(store.observations_doc()).next_at == T0
    assert observe(store, reader, T0 + M).read == 2


def test_a_dataset_no_longer_observed_leaves_the_ledger(memory_store):
    store = memory_store
    declare(store, {"v.a": spec(ObserveKind.BIGQUERY_TABLE, "p-roj1.d.a"),
                    "v.b": spec(ObserveKind.BIGQUERY_TABLE, "p-roj1.d.b")})
    tables = {"p-roj1.d.a": T0 - M, "p-roj1.d.b": T0 - M}
    observe(store, Answers(tables=tables), T0)
    declare(store, {"v.a": spec(ObserveKind.BIGQUERY_TABLE, "p-roj1.d.a")})
    observe(store, Answers(tables=tables), T0 + 10 * M)
    assert set(Ledger.from_doc(store.observations_doc()).seen) == {"v.a"}


def test_the_next_pass_is_due_when_the_earliest_dataset_is(memory_store):
    store = memory_store
    hourly = spec(ObserveKind.BIGQUERY_TABLE, "p-roj1.d.b", every=timedelta(hours=1))
    declare(store, {"v.a": spec(ObserveKind.BIGQUERY_TABLE, "p-roj1.d.a", every=2 * M),
                    "v.b": hourly})
    tables = {"p-roj1.d.a": T0 - M, "p-roj1.d.b": T0 - M}
    result = observe(store, Answers(tables=tables), T0)
    assert result.next_at == T0 + 2 * M - timedelta(seconds=10)
    reader = Answers(tables=tables)
    observe(store, reader, T0 + 2 * M)
    assert reader.calls == [("table", "p-roj1.d.a")]


def test_the_tick_entry_point_runs_a_due_pass_and_a_broken_one_fails_not_the_tick(
        memory_store):
    import json

    import flask

    from freshet.ops import entries
    from freshet.ops.deps import Deps
    from freshet.ops.web import serve

    store, settings = memory_store, loop_settings()
    declare(store, {"v.a": spec(ObserveKind.BIGQUERY_TABLE, "p-roj1.d.a")})

    def tick(reader):
        deps = Deps(settings=settings, store=store, task_queue=RecordingQueue(settings),
                    certs=None, clock=lambda: T0, observer=reader)
        with flask.Flask(__name__).test_request_context(
                "/scheduler_tick", method="POST", data="{}", content_type="application/json"):
            response = serve(flask.request, entries.scheduler_tick, deps)
        return response.status_code, json.loads(response.data)

    status, body = tick(Answers(tables={"p-roj1.d.a": T0 - M}))
    assert status == 200 and body["observe"]["changed"] == 1
    assert store.get_dataset("v.a").data_as_of == T0 - M

    class Broken:
        def table_time(self, table):
            raise RuntimeError("a bug")

    store.put_observations_doc({})  # due again: a read that raises what is not Freshet's
    status, body = tick(Broken())  # is kept as transient, the others read on
    assert status == 200 and body["observe"]["transient"] == 1
    assert store.get_dataset("v.a").data_as_of == T0 - M
    store.put_catalog_doc({"datasets": [{"key": "v.a", "observe": {"every": "5m"}}]})
    store.put_observations_doc({})
    status, body = tick(Broken())  # a pass that cannot even plan: said, not the tick's
    assert status == 200 and body["observe"]["error"] and body["created"] == 0
