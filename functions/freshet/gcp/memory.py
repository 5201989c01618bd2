"""An in-memory Store behind the same Protocol as the Firestore adapter (freshet.gcp.ports),
the way Dagster keeps an InMemoryRunStorage beside its SQL storage.

For tests of the loop's logic (and the local tools): it keeps documents as the Firestore
adapter writes them (`to_doc`) and reads them back through `from_doc`, stamps every
write with a strictly increasing commit time in `updated_at`, answers creates with
`Created`, refuses a compare-and-set whose version moved, raises NotFound for an
update of a missing document, and counts reads, commits and writes as Firestore
bills them. Transactions are serialised by one lock (Firestore serialises conflicting
ones by retrying), so a body sees no other writer between its reads and its commit.
tests/integration/test_store_contract.py runs one suite against both stores; what
only Firestore can prove (contention, indexes, document limits) stays on the emulator.
"""

import copy
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from freshet.core.backfill import Backfill, Lane
from freshet.core.created import Created
from freshet.core.errors import NotFound
from freshet.core.models import Dataset, Job, Run
from freshet.core.runs import SlotClaim
from freshet.gcp.grouped import Located, layout_of, listed
from freshet.gcp.ports import DATASETS, JOBS, KEYS, RUNS, CommitWriter, TypedReads
from freshet.gcp.stats import Stats

T = TypeVar("T")

SETTINGS, BACKFILLS = "settings", "backfills"
CONTROL_DOC, CATALOG_DOC, HEARTBEAT_DOC = "control", "catalog", "heartbeat"
TRIGGER_GRAPH_DOC = "trigger_graph"  # as freshet.gcp.store
OBSERVATIONS_DOC = "observations"  # as freshet.gcp.store
TRIES = 5  # a transaction whose create found its document is decided again, like Firestore's


class _Exists(Exception):
    pass


class _Stale(Exception):
    """A compare-and-set found its document changed (or gone)."""


def _lanes(backfill_id: str) -> str:
    return f"{BACKFILLS}/{backfill_id}/lanes"


def _lane_id(index: int) -> str:
    return f"{index:03d}"


class MemoryTx(CommitWriter):
    """Reads and buffered writes of one transaction; the writes land at its commit."""

    def __init__(self, store: "MemoryStore"):
        self._store = store
        self._ops: list[tuple] = []
        self._loc = Located()
        self.writes = 0

    # -- reads
    def _get(self, collection: str, doc_id: str) -> dict | None:
        self._store.stats.read()
        return self._store._doc(collection, doc_id)

    def _get_all(self, collection: str, ids: list[str]) -> dict[str, dict | None]:
        return {i: self._get(collection, i) for i in dict.fromkeys(ids)}

    def get_jobs(self, job_ids: list[str]) -> dict[str, Job | None]:
        return {k: self.get_job(k) for k in dict.fromkeys(job_ids)}

    def get_lane(self, backfill_id: str, index: int) -> Lane | None:
        doc = self._get(_lanes(backfill_id), _lane_id(index))
        return None if doc is None else Lane.from_doc(doc)

    def get_backfill(self, backfill_id: str) -> Backfill | None:
        doc = self._get(BACKFILLS, backfill_id)
        return None if doc is None else Backfill.from_doc(doc)

    # -- writes
    def _write(self, op: str, collection: str, doc_id: str, doc: dict,
               version: datetime | None = None) -> None:
        self._ops.append((op, collection, doc_id, doc, version))
        self.writes += 1

    def set_job(self, job: Job) -> None:
        self._write("set", JOBS, job.id, job.to_doc())

    def update_job(self, job_id: str, fields: dict[str, Any]) -> None:
        self._write("update", JOBS, job_id, fields)

    def create_run(self, run: Run) -> None:
        self._write("create", RUNS, run.id, run.to_doc())

    def set_run(self, run: Run) -> None:
        self._write("set", RUNS, run.id, run.to_doc())

    def set_run_if_unchanged(self, run: Run, version: datetime) -> None:
        self._write("update", RUNS, run.id, run.to_doc(), version)

    def _put(self, collection: str, doc_id: str, doc: dict) -> None:
        self._write("set", collection, doc_id, doc)

    def _remove(self, collection: str, doc_id: str) -> None:
        self._write("delete", collection, doc_id, {})

    def set_lane(self, lane: Lane) -> None:
        self._write("set", _lanes(lane.backfill_id), _lane_id(lane.index), lane.to_doc())

    def set_backfill(self, backfill: Backfill) -> None:
        self._write("set", BACKFILLS, backfill.id, backfill.to_doc())

    # -- the trigger graph (as freshet.gcp.store.Tx)
    def trigger_graph(self) -> dict:
        return self._get(SETTINGS, TRIGGER_GRAPH_DOC) or {}

    def set_trigger_graph(self, version: int, jobs: int) -> None:
        self._write("set", SETTINGS, TRIGGER_GRAPH_DOC, {"version": version, "jobs": jobs})


class MemoryStore(TypedReads):
    """The Store Protocol over dictionaries (see the module's docstring)."""

    def __init__(self):
        self.stats = Stats()
        self._docs: dict[str, dict[str, tuple[dict, datetime]]] = {}
        self._lock = threading.RLock()
        self._last = datetime.now(UTC)

    # -- the documents
    def _doc(self, collection: str, doc_id: str) -> dict | None:
        found = self._docs.get(collection, {}).get(doc_id)
        return None if found is None else copy.deepcopy(found[0])

    def _version(self, collection: str, doc_id: str) -> datetime | None:
        found = self._docs.get(collection, {}).get(doc_id)
        return None if found is None else found[1]

    def _tick(self) -> datetime:
        """A commit time: now, and always later than the previous one."""
        self._last = max(datetime.now(UTC), self._last + timedelta(microseconds=1))
        return self._last

    def _apply(self, ops: list[tuple]) -> None:
        """Check every write, then make them all, at one commit time (atomic)."""
        docs = self._docs
        for op, collection, doc_id, _, version in ops:
            there = doc_id in docs.get(collection, {})
            if op == "create" and there:
                raise _Exists(f"{collection}/{doc_id}")
            if op == "update" and not there:
                raise NotFound(collection.rstrip("s"), doc_id)
            if version is not None and self._version(collection, doc_id) != version:
                raise _Stale(f"{collection}/{doc_id}")
        at = self._tick()
        for op, collection, doc_id, doc, _ in ops:
            if op == "delete":
                docs.get(collection, {}).pop(doc_id, None)
                continue
            current = docs.get(collection, {}).get(doc_id)
            base = dict(current[0]) if op == "update" and current is not None else {}
            if op == "merge" and current is not None:
                base = dict(current[0])
            base.update(copy.deepcopy(doc))
            base["updated_at"] = at
            docs.setdefault(collection, {})[doc_id] = (base, at)

    def _commit(self, ops: list[tuple]) -> None:
        """One commit outside a transaction (a batch): counted as Firestore bills it."""
        with self._lock:
            try:
                self._apply(ops)
            except Exception:
                self.stats.refused()
                raise
            self.stats.committed(len(ops))

    def _query(self, collection: str, keep: Callable[[dict], bool],
               order: Callable[[dict], Any] | None = None, *, reverse: bool = False,
               limit: int | None = None) -> list[tuple[dict, datetime]]:
        with self._lock:
            found = [(copy.deepcopy(d), v) for d, v in self._docs.get(collection, {}).values()
                     if keep(d)]
        if order is not None:
            found.sort(key=lambda dv: order(dv[0]), reverse=reverse)
        found = found[:limit] if limit is not None else found
        self.stats.read(len(found))  # an empty query is billed as one read
        return found

    # -- transactions
    def transact(self, fn: Callable[[MemoryTx], T], max_attempts: int = 10) -> T:
        for attempt in range(1, TRIES + 1):
            with self._lock:
                tx = MemoryTx(self)
                result = fn(tx)
                tx.flush()  # the datasets' groups: one write each
                try:
                    self._apply(tx._ops)
                except _Exists:
                    if attempt == TRIES:
                        raise
                    continue  # another writer made it first: read again, decide again
                self.stats.committed(tx.writes)
                return result
        raise AssertionError("unreachable")

    def transact_if_current(self, fn: Callable[[MemoryTx], T]) -> T | None:
        try:
            return self.transact(fn)
        except (_Stale, NotFound):
            return None

    # -- plain reads
    def _get(self, collection: str, doc_id: str) -> dict | None:
        self.stats.read()
        with self._lock:
            return self._doc(collection, doc_id)

    def get_job(self, job_id: str) -> Job | None:
        doc = self._get(JOBS, job_id)
        return None if doc is None else Job.from_doc(doc)

    def get_job_versioned(self, job_id: str) -> tuple[Job, datetime] | None:
        self.stats.read()
        with self._lock:
            doc, version = self._doc(JOBS, job_id), self._version(JOBS, job_id)
        return None if doc is None else (Job.from_doc(doc), version)

    def get_run(self, run_id: str) -> Run | None:
        doc = self._get(RUNS, run_id)
        return None if doc is None else Run.from_doc(doc)

    def runs_by_id(self, run_ids: list[str]) -> dict[str, Run]:
        found = {}
        for run_id in run_ids:
            run = self.get_run(run_id)
            if run is not None:
                found[run.id] = run
        return found

    def list_jobs(self, status: str | None = None) -> list[Job]:
        return [Job.from_doc(d) for d, _ in self._query(
            JOBS, lambda d: status is None or d.get("status") == status)]

    def list_datasets(self) -> list[Dataset]:
        return listed(d for d, _ in self._query(DATASETS, lambda d: True))

    def dataset_layout(self) -> tuple[dict[str, str], dict[str, list[str]], list[str]]:
        pointers = {d["key"]: d["group"] for d, _ in self._query(KEYS, lambda d: True)}
        return pointers, *layout_of(d for d, _ in self._query(DATASETS, lambda d: True))

    def _due(self, until: datetime, limit: int, shard: int | None = None
             ) -> list[tuple[dict, datetime]]:
        def keep(d: dict) -> bool:
            return (d.get("status") == "active" and d.get("next_run_at") is not None
                    and d["next_run_at"] <= until
                    and (shard is None or d.get("claim_shard") == shard))

        return self._query(JOBS, keep, lambda d: d["next_run_at"], limit=limit)

    def due_jobs(self, until: datetime, limit: int) -> list[Job]:
        return [Job.from_doc(d) for d, _ in self._due(until, limit)]

    def due_jobs_versioned(self, until: datetime, limit: int) -> list[tuple[Job, datetime]]:
        return [(Job.from_doc(d), v) for d, v in self._due(until, limit)]

    def due_jobs_in_shard_versioned(self, shard: int, until: datetime,
                                    limit: int) -> list[tuple[Job, datetime]]:
        return [(Job.from_doc(d), v) for d, v in self._due(until, limit, shard)]

    def completed_jobs_before(self, cutoff: datetime, limit: int = 100) -> list[Job]:
        def keep(d: dict) -> bool:
            return d.get("status") == "completed" and d.get("completed_at") is not None \
                and d["completed_at"] <= cutoff

        return [Job.from_doc(d) for d, _ in self._query(
            JOBS, keep, lambda d: d["completed_at"], limit=limit)]

    def paused_until_due(self, now: datetime, limit: int = 100) -> list[Job]:
        def keep(d: dict) -> bool:
            return d.get("status") == "paused" and d.get("paused_until") is not None \
                and d["paused_until"] <= now

        return [Job.from_doc(d) for d, _ in self._query(
            JOBS, keep, lambda d: d["paused_until"], limit=limit)]

    def recent_runs(self, *, job_id: str | None = None, limit: int = 50) -> list[Run]:
        def keep(d: dict) -> bool:
            return d.get("created_at") is not None and (job_id is None
                                                         or d.get("job_id") == job_id)

        return [Run.from_doc(d) for d, _ in self._query(
            RUNS, keep, lambda d: d["created_at"], reverse=True, limit=limit)]

    def _expired(self, now: datetime, limit: int) -> list[tuple[dict, datetime]]:
        def keep(d: dict) -> bool:
            return d.get("lease_expires_at") is not None and d["lease_expires_at"] <= now

        return self._query(RUNS, keep, lambda d: d["lease_expires_at"], limit=limit)

    def expired_runs(self, now: datetime, limit: int = 500) -> list[Run]:
        return [Run.from_doc(d) for d, _ in self._expired(now, limit)]

    def expired_runs_versioned(self, now: datetime,
                               limit: int = 500) -> list[tuple[Run, datetime]]:
        return [(Run.from_doc(d), v) for d, v in self._expired(now, limit)]

    def count_runs(self, *, queue: str, statuses: tuple[str, ...]) -> int:
        with self._lock:
            docs = list(self._docs.get(RUNS, {}).values())
        self.stats.read()
        return sum(d.get("queue") == queue and d.get("status") in statuses for d, _ in docs)

    # -- backfills
    def get_backfill(self, backfill_id: str) -> Backfill | None:
        doc = self._get(BACKFILLS, backfill_id)
        return None if doc is None else Backfill.from_doc(doc)

    def lanes(self, backfill_id: str) -> list[Lane]:
        return sorted((Lane.from_doc(d) for d, _ in self._query(_lanes(backfill_id),
                                                                 lambda d: True)),
                      key=lambda x: x.index)

    def active_backfills(self, limit: int = 100) -> list[Backfill]:
        return [Backfill.from_doc(d) for d, _ in self._query(
            BACKFILLS, lambda d: d.get("status") == "active", limit=limit)]

    def recent_backfills(self, *, job_id: str | None = None, limit: int = 20
                         ) -> list[Backfill]:
        return [Backfill.from_doc(d) for d, _ in self._query(
            BACKFILLS, lambda d: job_id is None or d.get("job_id") == job_id,
            lambda d: d["created_at"], reverse=True, limit=limit)]

    def create_backfill(self, backfill: Backfill, lanes: list[Lane]) -> Created:
        ops = [("create", BACKFILLS, backfill.id, backfill.to_doc(), None)]
        ops += [("create", _lanes(backfill.id), _lane_id(x.index), x.to_doc(), None)
                for x in lanes]
        return self._created(ops)

    # -- writes
    def _created(self, ops: list[tuple]) -> Created:
        try:
            self._commit(ops)
        except _Exists:
            return Created.EXISTS
        return Created.NEW

    def create_job(self, job: Job) -> Created:
        return self._created([("create", JOBS, job.id, job.to_doc(), None)])

    def create_run(self, run: Run) -> Created:
        return self._created([("create", RUNS, run.id, run.to_doc(), None)])

    def create_runs(self, runs: list[Run]) -> dict[str, Created]:
        if not runs:
            return {}
        if self._created([("create", RUNS, r.id, r.to_doc(), None) for r in runs]) \
                is Created.NEW:
            return {r.id: Created.NEW for r in runs}
        return {r.id: self.create_run(r) for r in runs}

    def claim_slot(self, job_id: str, version: datetime, job_fields: dict[str, Any],
                   run: Run | None, chain: tuple[Backfill, Lane] | None = None) -> SlotClaim:
        ops = [("update", JOBS, job_id, job_fields, version)]
        if run is not None:
            ops.append(("create", RUNS, run.id, run.to_doc(), None))
        if chain is not None:
            backfill, lane = chain
            ops.append(("create", BACKFILLS, backfill.id, backfill.to_doc(), None))
            ops.append(("create", _lanes(backfill.id), _lane_id(lane.index), lane.to_doc(),
                        None))
        try:
            self._commit(ops)
        except (_Stale, NotFound):
            return SlotClaim.LOST
        except _Exists:
            return SlotClaim.EXISTS
        return SlotClaim.CLAIMED

    def put_job(self, job: Job) -> None:
        self._commit([("set", JOBS, job.id, job.to_doc(), None)])

    def update_job(self, job_id: str, fields: dict[str, Any]) -> None:
        self._commit([("update", JOBS, job_id, fields, None)])

    def update_run(self, run_id: str, fields: dict[str, Any]) -> None:
        self._commit([("update", RUNS, run_id, fields, None)])

    def put_many(self, collection: str, docs: Iterable[tuple[str, dict]]) -> int:
        ops = [("set", collection, doc_id, doc, None) for doc_id, doc in docs]
        for start in range(0, len(ops), 500):
            self._commit(ops[start:start + 500])
        return len(ops)

    def trigger_graph(self) -> dict:
        return self._get(SETTINGS, TRIGGER_GRAPH_DOC) or {}

    def put_trigger_graph(self, jobs: int) -> None:
        with self._lock:
            version = int((self._doc(SETTINGS, TRIGGER_GRAPH_DOC) or {}).get("version") or 0)
            self._commit([("set", SETTINGS, TRIGGER_GRAPH_DOC,
                           {"version": version + 1, "jobs": jobs}, None)])

    # -- settings
    def _setting(self, doc_id: str) -> dict:
        doc = self._get(SETTINGS, doc_id) or {}
        doc.pop("updated_at", None)
        return doc

    def control_doc(self) -> dict:
        return self._setting(CONTROL_DOC)

    def set_control(self, fields: dict[str, Any]) -> None:
        self._commit([("merge", SETTINGS, CONTROL_DOC, fields, None)])

    def catalog_doc(self) -> dict:
        return self._setting(CATALOG_DOC)

    def put_catalog_doc(self, doc: dict) -> None:
        self._commit([("set", SETTINGS, CATALOG_DOC, doc, None)])

    def observations_doc(self) -> dict:
        return self._setting(OBSERVATIONS_DOC)

    def put_observations_doc(self, doc: dict) -> None:
        self._commit([("set", SETTINGS, OBSERVATIONS_DOC, doc, None)])

    def heartbeats(self) -> dict:
        return self._setting(HEARTBEAT_DOC)

    def put_heartbeat(self, name: str, data: dict) -> None:
        self._commit([("merge", SETTINGS, HEARTBEAT_DOC, {name: data}, None)])
