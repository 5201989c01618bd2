"""The observe pass (freshet.loop.observe): due reads only, in bulk, each judged; a
transient read changes nothing, a permanent one is a failure. The reader here is
Freshet's own Reader protocol over fixed answers; the adapters it wraps are tested on
the emulators (tests/emulator/test_bigquery_contract.py, test_storage_newest.py)."""

import threading
from datetime import UTC, datetime, timedelta

from freshet.core.errors import PermanentError, TransientError
from freshet.core.models import Dataset
from freshet.core.observe import ObserveKind, ObserveSpec
from freshet.loop.observe import observe_once

T0 = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
M = timedelta(minutes=1)


class Answers:
    def __init__(self, tables=None, prefixes=None, sql=None):
        self.tables, self.prefixes, self.sql = tables or {}, prefixes or {}, sql or {}
        self.calls = []
        self.lock = threading.Lock()

    def _answer(self, value):
        if isinstance(value, Exception):
            raise value
        return value

    def table_time(self, table):
        with self.lock:
            self.calls.append(("table", table))
        return self._answer(self.tables[table])

    def prefix_time(self, bucket, prefix):
        with self.lock:
            self.calls.append(("prefix", f"{bucket}/{prefix}"))
        return self._answer(self.prefixes[(bucket, prefix)])

    def sql_time(self, spec):
        with self.lock:
            self.calls.append(("sql", spec.target))
        return self._answer(self.sql[spec.target])


def spec(kind, target, billed=None):
    return ObserveSpec(kind, target, 5 * M, billed)


def test_a_pass_reads_each_due_dataset_once_and_records_its_data_time():
    specs = {f"v.t{i}": spec(ObserveKind.BIGQUERY_TABLE, f"p-roj1.d.t{i}") for i in range(50)}
    specs["v.files"] = spec(ObserveKind.GCS_PREFIX, "gs://bkt/drop/")
    specs["v.sql"] = spec(ObserveKind.BIGQUERY_SQL, "select max(ts) from x", 10**8)
    reader = Answers(tables={f"p-roj1.d.t{i}": T0 - i * M for i in range(50)},
                     prefixes={("bkt", "drop/"): T0 - 2 * M},
                     sql={"select max(ts) from x": T0 - 3 * M})
    changed = observe_once(specs, {}, T0, reader)
    assert len(reader.calls) == 52 and len(set(reader.calls)) == 52
    assert changed["v.t7"].data_as_of == T0 - 7 * M
    assert changed["v.files"].data_as_of == T0 - 2 * M
    assert changed["v.sql"].data_as_of == T0 - 3 * M
    # a minute later nothing is due: no reads, no writes
    reader.calls.clear()
    assert observe_once(specs, changed, T0 + M, reader) == {}
    assert reader.calls == []


def test_a_transient_read_changes_nothing_and_a_permanent_one_is_a_failure():
    specs = {"a": spec(ObserveKind.BIGQUERY_TABLE, "p-roj1.d.a"),
             "b": spec(ObserveKind.BIGQUERY_TABLE, "p-roj1.d.b")}
    known = {"a": Dataset(key="a", last_success_at=T0 - 10 * M, data_as_of=T0 - 10 * M),
             "b": Dataset(key="b", last_success_at=T0 - 10 * M, data_as_of=T0 - 10 * M)}
    reader = Answers(tables={"p-roj1.d.a": TransientError("503"),
                             "p-roj1.d.b": PermanentError("p-roj1.d.b is a view: ...")})
    changed = observe_once(specs, known, T0, reader)
    assert "a" not in changed
    assert changed["b"].failing and "is a view" in changed["b"].last_error
