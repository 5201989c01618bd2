"""The one module that talks to Firestore.

Everything else works on typed models (freshet.core.models) and calls these methods.
`Store.transact(fn)` runs `fn(tx)` in a Firestore transaction; the client retries
it on contention, so `fn` must have no side effect beyond the `tx` calls it makes.
Every read, commit and document write is counted (freshet.gcp.stats) so benchmarks
and `freshet cost` can report what an operation costs (Firestore bills per document
read and per document written).

Every document written here, in a transaction, a batch or alone, carries `updated_at`
= Firestore's commit time (SERVER_TIMESTAMP), whatever the caller put there: the
status page asks each collection for what changed since the newest `updated_at` it has
seen, which is only sound if that field is the moment the change became visible. A
time taken from the writer's clock at the start of its request could commit after a
publish had already moved past it, and that change would never be read. Writes go
through `Tx._write` or `freshet.gcp.batch.Batch`, which stamp and count each one.

A create answers `Created` (new, or already there: ids are deterministic, so that is
the dedup); an update of a missing document raises freshet's NotFound; getters return
Freshet's types. Paged settings documents are freshet.gcp.paging's.
"""

import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import And, FieldFilter, Or

from freshet.core.alerts import RouteState
from freshet.core.backfill import Backfill, Lane
from freshet.core.created import Created
from freshet.core.deadlines import DeadlineRecord, Judgement
from freshet.core.docsize import value_size
from freshet.core.errors import NotFound, ValidationError
from freshet.core.incidents import Incident
from freshet.core.models import Dataset, Job, Run
from freshet.core.runs import SlotClaim
from freshet.gcp.batch import Batch, stamped
from freshet.gcp.errors import translated, translates
from freshet.gcp.grouped import Located, layout_of, listed
from freshet.gcp.paging import PagedSettings
from freshet.gcp.ports import DATASETS, JOBS, KEYS, RUNS, CommitWriter, TypedReads
from freshet.gcp.stats import Stats

__all__ = ["Changes", "Created", "Stats", "Store", "Tx", "firestore_client", "stamped"]

BULK_BYTES = 3_000_000  # a bulk load's batch, under the emulator's 4 MiB message
T = TypeVar("T")
M = TypeVar("M")

SETTINGS = "settings"
BACKFILLS, LANES = "backfills", "lanes"  # lanes: a subcollection of each backfill
DEADLINES = "deadlines"  # deadlines/{consumer id}: verdicts and cursors (core.deadlines)
INCIDENTS = "incidents"  # incidents/{id}: an incident and its notes (core.incidents)
ROUTES = "routes"  # routes/{id}: a notification route's state and backlog (core.alerts)
INCIDENTS_LISTED = 100  # open ones, and as many recently updated ones: the page's read
CONTROL_DOC = "control"  # settings/control: kill switches
ADHOC_FIELD = "adhoc_maintenance"  # settings/control: windows opened from the console
CATALOG_DOC = "catalog"  # settings/catalog: declared datasets and consumers
HEARTBEAT_DOC = "heartbeat"  # settings/heartbeat: last tick / sweep / publish
APPLIED_DOC = "applied"  # settings/applied: the job ids the last apply declared
STATUS_DOC = "status_state"  # settings/status_state: what the last publish saw
# settings/incidents: written (its commit time) with every incident written, so that
# one query of the settings collection tells a publish whether anything changed
INCIDENTS_STAMP_DOC = "incidents"
# settings/trigger_graph: {version, jobs}: bumped by every change to the trigger graph
# (a create compares and sets it in its transaction: ops.operations.create_job).
TRIGGER_GRAPH_DOC = "trigger_graph"
# settings/observations: what the observe pass last saw of each observed dataset
# (freshet.core.observe.Ledger), and when its next pass is due.
OBSERVATIONS_DOC = "observations"
# Settings documents whose lists grow with the pipeline: past PAGE_BYTES they are written
# as a head plus pages settings/<id>.<version>.p1, .p2, ... (freshet.core.docsize).
PAGED_LISTS = {
    STATUS_DOC: ("datasets", "consumers", "failed_jobs", "stuck_runs", "events", "pending"),
    CATALOG_DOC: ("datasets", "consumers"),
    APPLIED_DOC: ("job_ids",),
    OBSERVATIONS_DOC: ("datasets",),
}
# Written packed (gcp.paging.packed): read by every publish (the status memory, the
# catalog), each holds thousands of small entries; the lists above are how they were
# written before, and are still read.
PACKED_SETTINGS = (STATUS_DOC, CATALOG_DOC)
STATUS_MODEL = "status_model"  # the previous publish's inputs (freshet.status.snapshot)
MODEL_MANIFEST = "manifest"


@translated
def firestore_client(project: str | None) -> firestore.Client:
    """A client for the project ($FIRESTORE_EMULATOR_HOST sends it to the emulator). It
    connects on first use, so creating one at a cold start costs nothing."""
    return firestore.Client(project=project)


CONTENDED_TRIES = 5  # fresh transactions for a step whose transaction keeps losing
# Consumers whose deadlines one transaction judges: their records (each under 64 KiB,
# tests/integration/test_bounds.py) stay under 3.2 MB, far from a commit's 10 MiB; and
# 200 passed deadlines cost 4 commits (12 round trips), not 200 (600).
JUDGED_PER_COMMIT = 50


def _contended(exc: BaseException) -> bool:
    """ABORTED or ALREADY_EXISTS (a create() another writer won: decide again), or the
    client's 'Failed to commit transaction in N attempts' over one."""
    return isinstance(exc, gexc.Aborted | gexc.AlreadyExists) or (
        isinstance(exc, ValueError) and isinstance(exc.__cause__, gexc.Aborted))


@dataclass
class Changes(Generic[M]):
    """Documents of one collection read by `updated_at`, and the newest `updated_at` seen.

    `mark` is Firestore's own timestamp (nanoseconds kept): asking again for
    `updated_at > mark` returns exactly what committed after it."""

    items: list[M]
    mark: datetime | None
    complete: bool = True  # False: more changed than the limit asked for


def _newest(docs: list[dict], since: datetime | None) -> datetime | None:
    stamps = [d["updated_at"] for d in docs if isinstance(d.get("updated_at"), datetime)]
    return max(stamps + ([since] if since is not None else []), default=None)


class Tx(CommitWriter):
    """Reads and writes inside one transaction. All reads must come before writes."""

    def __init__(self, store: "Store", transaction: firestore.Transaction):
        self._store = store
        self._t = transaction
        self._loc = Located()
        self.writes = 0  # added to the store's stats when the transaction commits

    def _get(self, collection: str, doc_id: str) -> dict | None:
        snap = self._store._ref(collection, doc_id).get(transaction=self._t)
        self._store.stats.reads += 1
        return snap.to_dict() if snap.exists else None

    def _get_all(self, collection: str, ids: list[str]) -> dict[str, dict | None]:
        """Documents by id in one batched read (None: missing), each billed as a read."""
        if not ids:
            return {}
        refs = [self._store._ref(collection, i) for i in dict.fromkeys(ids)]
        found: dict[str, dict | None] = {ref.id: None for ref in refs}
        for snap in self._t.get_all(refs):
            self._store.stats.read()
            found[snap.id] = snap.to_dict() if snap.exists else None
        return found

    def get_jobs(self, job_ids: list[str]) -> dict[str, Job | None]:
        return {k: None if d is None else Job.from_doc(d)
                for k, d in self._get_all(JOBS, job_ids).items()}

    def _write(self, op: str, ref, doc: dict, **option) -> None:
        """Every write of a transaction: stamped with the commit time, counted (added to
        the store's stats when the transaction commits)."""
        getattr(self._t, op)(ref, stamped(doc, ref), **option)
        self.writes += 1

    def set_job(self, job: Job) -> None:
        self._write("set", self._store._ref(JOBS, job.id), job.to_doc())

    def update_job(self, job_id: str, fields: dict[str, Any]) -> None:
        self._write("update", self._store._ref(JOBS, job_id), fields)

    def create_run(self, run: Run) -> None:
        self._write("create", self._store._ref(RUNS, run.id), run.to_doc())

    def set_run(self, run: Run) -> None:
        self._write("set", self._store._ref(RUNS, run.id), run.to_doc())

    def get_control(self) -> dict:
        return self._get(SETTINGS, CONTROL_DOC) or {}

    def merge_control(self, fields: dict[str, Any]) -> None:
        self._write("set", self._store._ref(SETTINGS, CONTROL_DOC), fields, merge=True)

    def _put(self, collection: str, doc_id: str, doc: dict) -> None:
        self._write("set", self._store._ref(collection, doc_id), doc)

    def _remove(self, collection: str, doc_id: str) -> None:
        self._t.delete(self._store._ref(collection, doc_id))
        self.writes += 1

    def get_lane(self, backfill_id: str, index: int) -> Lane | None:
        snap = self._store._lane_ref(backfill_id, index).get(transaction=self._t)
        self._store.stats.reads += 1
        return Lane.from_doc(snap.to_dict()) if snap.exists else None

    def set_lane(self, lane: Lane) -> None:
        self._write("set", self._store._lane_ref(lane.backfill_id, lane.index), lane.to_doc())

    def get_backfill(self, backfill_id: str) -> Backfill | None:
        doc = self._get(BACKFILLS, backfill_id)
        return None if doc is None else Backfill.from_doc(doc)

    def set_backfill(self, backfill: Backfill) -> None:
        self._write("set", self._store._ref(BACKFILLS, backfill.id), backfill.to_doc())

    def get_deadline_records(self, consumer_ids: list[str]
                             ) -> dict[str, DeadlineRecord | None]:
        """Records by consumer id, in one batched read (None: none yet)."""
        return {c: None if d is None else DeadlineRecord.from_doc(d)
                for c, d in self._get_all(DEADLINES, consumer_ids).items()}

    def set_deadline_record(self, record: DeadlineRecord) -> None:
        self._write("set", self._store._ref(DEADLINES, record.consumer), record.to_doc())

    def get_incident(self, incident_id: str) -> Incident | None:
        doc = self._get(INCIDENTS, incident_id)
        return None if doc is None else Incident.from_doc(doc)

    def set_incident(self, incident: Incident) -> None:
        self._write("set", self._store._ref(INCIDENTS, incident.id), incident.to_doc())
        self._write("set", self._store._ref(SETTINGS, INCIDENTS_STAMP_DOC), {})

    def get_route_state(self, route_id: str) -> RouteState | None:
        doc = self._get(ROUTES, route_id)
        return None if doc is None else RouteState.from_doc(doc)

    def set_route_state(self, state: RouteState) -> None:
        self._write("set", self._store._ref(ROUTES, state.id), state.to_doc())

    def set_run_if_unchanged(self, run: Run, version: datetime) -> None:
        """Write the run only if its document is still at `version` (a compare-and-set
        without a read: the commit fails if another writer came first)."""
        self._write("update", self._store._ref(RUNS, run.id), run.to_doc(),
                    option=self._store.db.write_option(last_update_time=version))

    # -- the trigger graph (core.triggers): a create compares and sets its version ------

    def trigger_graph(self) -> dict:
        return self._get(SETTINGS, TRIGGER_GRAPH_DOC) or {}

    def set_trigger_graph(self, version: int, jobs: int) -> None:
        self._write("set", self._store._ref(SETTINGS, TRIGGER_GRAPH_DOC),
                    {"version": version, "jobs": jobs})


@translates
class Store(TypedReads):
    def __init__(self, db: firestore.Client):
        self.db = db
        self.stats = Stats()
        self.paged = PagedSettings(db, self.stats, PAGED_LISTS, PACKED_SETTINGS)

    def _batch(self) -> Batch:
        return Batch(self.db, self.stats)

    def _ref(self, collection: str, doc_id: str):
        return self.db.collection(collection).document(doc_id)

    def _lane_ref(self, backfill_id: str, index: int):
        return self._ref(BACKFILLS, backfill_id).collection(LANES).document(f"{index:03d}")

    # -- transactions ---------------------------------------------------------

    def transact(self, fn: Callable[[Tx], T], max_attempts: int = 10) -> T:
        """Run `fn` in a transaction. The client retries a commit that lost a conflict
        (keeping its place in line); a read that lost one (ABORTED: "lock timeout",
        "too much contention"), or a commit that lost every time, is retried here with
        a fresh transaction after a backoff, so contention delays a step, never fails it
        into a 5xx that Cloud Tasks would count as an attempt. So is a commit whose
        create() found the document made meanwhile (ALREADY_EXISTS: a run the tick or
        another backfill created first): read again, decide again."""
        for attempt in range(1, CONTENDED_TRIES + 1):
            transaction = self.db.transaction(max_attempts=max_attempts)
            last: list[Tx] = []  # the attempt that committed is the last one made

            def body(t: firestore.Transaction, last=last) -> T:
                last.append(Tx(self, t))
                result = fn(last[-1])
                last[-1].flush()  # the datasets' groups: one write each
                return result

            try:
                result = firestore.transactional(body)(transaction)
            except (gexc.Aborted, gexc.AlreadyExists, ValueError) as exc:
                if not _contended(exc) or attempt == CONTENDED_TRIES:
                    raise
                time.sleep(min(0.1 * 2 ** attempt, 3.0) * (0.5 + random.random()))
                continue
            self.stats.committed(last[-1].writes)
            return result
        raise AssertionError("unreachable")

    def transact_if_current(self, fn: Callable[[Tx], T]) -> T | None:
        """`transact`, or None when the commit is refused because a compare-and-set found
        its document changed (set_run_if_unchanged) or a blind update found no document:
        the caller then decides again on what it reads."""
        try:
            return self.transact(fn)
        except (gexc.FailedPrecondition, gexc.NotFound):
            return None

    # -- plain reads ----------------------------------------------------------

    def _get(self, collection: str, doc_id: str) -> dict | None:
        snap = self._ref(collection, doc_id).get()
        self.stats.reads += 1
        return snap.to_dict() if snap.exists else None

    def _setting(self, doc_id: str) -> dict:
        """A settings document as its writer wrote it: without the commit-time stamp."""
        doc = self._get(SETTINGS, doc_id) or {}
        doc.pop("updated_at", None)
        return doc

    def _stream_versioned(self, query) -> list[tuple[dict, datetime]]:
        found = [(snap.to_dict(), snap.update_time) for snap in query.stream()]
        self.stats.read(len(found))  # an empty query is billed as one read
        return found

    def _stream(self, query) -> Iterator[dict]:
        found = False
        for snap in query.stream():
            found = True
            self.stats.reads += 1
            yield snap.to_dict()
        if not found:
            self.stats.reads += 1  # Firestore bills an empty query as one read

    def get_job(self, job_id: str) -> Job | None:
        doc = self._get(JOBS, job_id)
        return None if doc is None else Job.from_doc(doc)

    def get_job_versioned(self, job_id: str) -> tuple[Job, datetime] | None:
        """The job and its update time, for a compare-and-set."""
        snap = self._ref(JOBS, job_id).get()
        self.stats.reads += 1
        return (Job.from_doc(snap.to_dict()), snap.update_time) if snap.exists else None

    def get_run(self, run_id: str) -> Run | None:
        doc = self._get(RUNS, run_id)
        return None if doc is None else Run.from_doc(doc)

    def list_jobs(self, status: str | None = None) -> list[Job]:
        query = self.db.collection(JOBS)
        if status is not None:
            query = query.where(filter=FieldFilter("status", "==", status))
        return [Job.from_doc(d) for d in self._stream(query)]

    def list_datasets(self) -> list[Dataset]:
        """Every dataset with state: its group's entry, or its own document."""
        return listed(self._stream(self.db.collection(DATASETS)))

    def dataset_layout(self) -> tuple[dict[str, str], dict[str, list[str]], list[str]]:
        """(each pointer's group, each group's keys, the produced-looking datasets with a
        document of their own): what apply compares its layout with."""
        pointers = {d["key"]: d["group"] for d in self._stream(self.db.collection(KEYS))}
        return pointers, *layout_of(self._stream(self.db.collection(DATASETS)))

    def _due_query(self, until: datetime, limit: int):
        return (self.db.collection(JOBS)
                .where(filter=FieldFilter("status", "==", "active"))
                .where(filter=FieldFilter("next_run_at", "<=", until))
                .order_by("next_run_at")
                .limit(limit))

    def due_jobs(self, until: datetime, limit: int) -> list[Job]:
        """Active jobs whose next slot is at or before `until` (composite index)."""
        return [Job.from_doc(d) for d in self._stream(self._due_query(until, limit))]

    def due_jobs_versioned(self, until: datetime, limit: int) -> list[tuple[Job, datetime]]:
        """Like due_jobs, with each document's update time for a compare-and-set."""
        found = [(Job.from_doc(snap.to_dict()), snap.update_time)
                 for snap in self._due_query(until, limit).stream()]
        self.stats.read(len(found))  # an empty query is billed as one read
        return found

    def due_jobs_in_shard_versioned(self, shard: int, until: datetime,
                                    limit: int) -> list[tuple[Job, datetime]]:
        """due_jobs_versioned for one claim shard (composite index status, claim_shard,
        next_run_at): what a claim handler reads."""
        query = (self.db.collection(JOBS)
                 .where(filter=FieldFilter("status", "==", "active"))
                 .where(filter=FieldFilter("claim_shard", "==", shard))
                 .where(filter=FieldFilter("next_run_at", "<=", until))
                 .order_by("next_run_at")
                 .limit(limit))
        return [(Job.from_doc(d), version) for d, version in self._stream_versioned(query)]

    def claim_slot(self, job_id: str, version: datetime, job_fields: dict[str, Any],
                   run: Run | None, chain: tuple[Backfill, Lane] | None = None) -> SlotClaim:
        """Compare-and-set a job (unchanged since `version`) and create its run, atomically.

        One batched commit, no transaction: the update's precondition is the compare,
        the run's create() is the dedup. `chain`: a catch-up chain (its backfill
        document and lane) created in the same commit instead of a run.
        """
        batch = self._batch()
        batch.update(self._ref(JOBS, job_id), job_fields,
                     option=self.db.write_option(last_update_time=version))
        if run is not None:
            batch.create(self._ref(RUNS, run.id), run.to_doc())
        if chain is not None:
            backfill, lane = chain
            batch.create(self._ref(BACKFILLS, backfill.id), backfill.to_doc())
            batch.create(self._lane_ref(backfill.id, lane.index), lane.to_doc())
        try:
            batch.commit()
        except (gexc.FailedPrecondition, gexc.Aborted, gexc.NotFound):
            return SlotClaim.LOST
        except (gexc.AlreadyExists, gexc.Conflict):
            return SlotClaim.EXISTS
        return SlotClaim.CLAIMED

    def _recent_query(self, job_id: str | None, limit: int):
        query = self.db.collection(RUNS)
        if job_id is not None:
            query = query.where(filter=FieldFilter("job_id", "==", job_id))
        return query.order_by("created_at", direction=firestore.Query.DESCENDING).limit(limit)

    def recent_runs(self, *, job_id: str | None = None, limit: int = 50) -> list[Run]:
        return [Run.from_doc(d) for d in self._stream(self._recent_query(job_id, limit))]

    def _expired_query(self, now: datetime, limit: int):
        return (self.db.collection(RUNS)
                .where(filter=FieldFilter("lease_expires_at", "<=", now))
                .order_by("lease_expires_at")
                .limit(limit))

    def expired_runs(self, now: datetime, limit: int = 500) -> list[Run]:
        """Unfinished runs whose lease ran out (finished runs have no lease: not indexed)."""
        return [Run.from_doc(d) for d in self._stream(self._expired_query(now, limit))]

    def expired_runs_versioned(self, now: datetime,
                               limit: int = 500) -> list[tuple[Run, datetime]]:
        """Like expired_runs, with each document's update time for a compare-and-set."""
        return [(Run.from_doc(d), version)
                for d, version in self._stream_versioned(self._expired_query(now, limit))]

    def count_runs(self, *, queue: str, statuses: tuple[str, ...]) -> int:
        """How many runs of one queue are in these states (a count aggregation: billed
        by index entries read, not by documents)."""
        query = (self.db.collection(RUNS)
                 .where(filter=FieldFilter("queue", "==", queue))
                 .where(filter=FieldFilter("status", "in", list(statuses))))
        return self._count(query)

    def _count(self, query) -> int:
        self.stats.read()
        return int(query.count().get()[0][0].value)

    # -- backfills --------------------------------------------------------------

    def create_backfill(self, backfill: Backfill, lanes: list[Lane]) -> Created:
        """The backfill and its lanes in one commit; EXISTS if the backfill does (a
        repeated request: its id is derived from it)."""
        batch = self._batch()
        batch.create(self._ref(BACKFILLS, backfill.id), backfill.to_doc())
        for lane in lanes:
            batch.create(self._lane_ref(backfill.id, lane.index), lane.to_doc())
        return _created(batch)

    def get_backfill(self, backfill_id: str) -> Backfill | None:
        doc = self._get(BACKFILLS, backfill_id)
        return None if doc is None else Backfill.from_doc(doc)

    def lanes(self, backfill_id: str) -> list[Lane]:
        query = self._ref(BACKFILLS, backfill_id).collection(LANES)
        return sorted((Lane.from_doc(d) for d in self._stream(query)), key=lambda x: x.index)

    def active_backfills(self, limit: int = 100) -> list[Backfill]:
        query = (self.db.collection(BACKFILLS)
                 .where(filter=FieldFilter("status", "==", "active")).limit(limit))
        return [Backfill.from_doc(d) for d in self._stream(query)]

    def recent_backfills(self, *, job_id: str | None = None, limit: int = 20
                         ) -> list[Backfill]:
        query = self.db.collection(BACKFILLS)
        if job_id is not None:
            query = query.where(filter=FieldFilter("job_id", "==", job_id))
        query = query.order_by("created_at", direction=firestore.Query.DESCENDING).limit(limit)
        return [Backfill.from_doc(d) for d in self._stream(query)]

    def runs_by_id(self, run_ids: list[str]) -> dict[str, Run]:
        """Many runs by id in batched reads (get_all); missing ones are left out."""
        found: dict[str, Run] = {}
        for start in range(0, len(run_ids), 300):
            refs = [self._ref(RUNS, i) for i in run_ids[start:start + 300]]
            for snap in self.db.get_all(refs):
                self.stats.reads += 1
                if snap.exists:
                    run = Run.from_doc(snap.to_dict())
                    found[run.id] = run
        return found

    # -- trigger lists (apply) ----------------------------------------------------

    def trigger_graph(self) -> dict:
        return self._get(SETTINGS, TRIGGER_GRAPH_DOC) or {}

    def put_trigger_graph(self, jobs: int) -> None:
        """After apply rewrote the trigger lists: a new version, and the number of jobs
        (the run-time depth bound, core.triggers.depth_limit)."""
        self._set(SETTINGS, TRIGGER_GRAPH_DOC, {"version": firestore.Increment(1),
                                                "jobs": jobs}, merge=True)

    def completed_jobs_before(self, cutoff: datetime, limit: int = 100) -> list[Job]:
        query = (self.db.collection(JOBS)
                 .where(filter=FieldFilter("status", "==", "completed"))
                 .where(filter=FieldFilter("completed_at", "<=", cutoff))
                 .order_by("completed_at")
                 .limit(limit))
        return [Job.from_doc(d) for d in self._stream(query)]

    def applied_doc(self) -> dict:
        return self.paged.get(APPLIED_DOC)

    def put_applied_doc(self, doc: dict) -> None:
        self.paged.put(APPLIED_DOC, doc)

    def heartbeats(self) -> dict:
        """settings/heartbeat: when tick, recovery and publish last ran, and what they did."""
        return self._setting(HEARTBEAT_DOC)

    def put_heartbeat(self, name: str, data: dict) -> None:
        self._set(SETTINGS, HEARTBEAT_DOC, {name: data}, merge=True)

    def control_doc(self) -> dict:
        """settings/control as apply wrote it (apply compares its config with it)."""
        return self._setting(CONTROL_DOC)

    def catalog_doc(self) -> dict:
        """settings/catalog as apply wrote it (apply compares its config with it)."""
        return self.paged.get(CATALOG_DOC)

    def put_catalog_doc(self, doc: dict) -> None:
        self.paged.put(CATALOG_DOC, doc)

    def observations_doc(self) -> dict:
        """settings/observations: the observe pass's ledger (core.observe.Ledger)."""
        return self.paged.get(OBSERVATIONS_DOC)

    def put_observations_doc(self, doc: dict) -> None:
        self.paged.put(OBSERVATIONS_DOC, doc)

    # -- plain writes ---------------------------------------------------------

    def _set(self, collection: str, doc_id: str, doc: dict, *, merge: bool = False) -> None:
        batch = self._batch()
        batch.set(self._ref(collection, doc_id), doc, merge=merge)
        batch.commit()

    def _create(self, collection: str, doc_id: str, doc: dict) -> Created:
        batch = self._batch()
        batch.create(self._ref(collection, doc_id), doc)
        return _created(batch)

    def _update(self, collection: str, doc_id: str, fields: dict[str, Any], what: str) -> None:
        batch = self._batch()
        batch.update(self._ref(collection, doc_id), fields)
        try:
            batch.commit()
        except gexc.NotFound:
            raise NotFound(what, doc_id) from None

    def create_job(self, job: Job) -> Created:
        return self._create(JOBS, job.id, job.to_doc())

    def create_run(self, run: Run) -> Created:
        """Create the run document; EXISTS if one with its id does (the dedup)."""
        return self._create(RUNS, run.id, run.to_doc())

    def create_runs(self, runs: list[Run]) -> dict[str, Created]:
        """Create many run documents, keeping those that exist: one batch when none
        does, one commit each otherwise. Returns each run id's answer."""
        if not runs:
            return {}
        batch = self._batch()
        for run in runs:
            batch.create(self._ref(RUNS, run.id), run.to_doc())
        if _created(batch) is Created.NEW:
            return {run.id: Created.NEW for run in runs}
        return {run.id: self.create_run(run) for run in runs}

    def put_job(self, job: Job) -> None:
        self._set(JOBS, job.id, job.to_doc())

    def update_job(self, job_id: str, fields: dict[str, Any]) -> None:
        self._update(JOBS, job_id, fields, "job")

    def update_run(self, run_id: str, fields: dict[str, Any]) -> None:
        self._update(RUNS, run_id, fields, "run")

    def set_control(self, fields: dict[str, Any]) -> None:
        self._set(SETTINGS, CONTROL_DOC, fields, merge=True)

    def put_many(self, collection: str, docs: Iterable[tuple[str, dict]]) -> int:
        """Bulk load (benchmarks, demo seeding): batches of at most 500 documents (the
        Firestore maximum) and BULK_BYTES (a request is at most 10 MiB, and the
        emulator's gRPC messages 4 MiB: 500 dataset groups are 15 MB)."""
        count, batch, size = 0, self._batch(), 0
        for doc_id, doc in docs:
            grows = value_size(doc)
            if batch.size and (batch.size == 500 or size + grows > BULK_BYTES):
                batch.commit()
                batch, size = self._batch(), 0
            batch.set(self._ref(collection, doc_id), doc)
            count += 1
            size += grows
        if batch.size:
            batch.commit()
        return count

    # -- incidents

    def create_incident(self, incident: Incident) -> Created:
        """EXISTS if an incident with its id does (the same open, repeated)."""
        batch = self._batch()
        batch.create(self._ref(INCIDENTS, incident.id), incident.to_doc())
        batch.set(self._ref(SETTINGS, INCIDENTS_STAMP_DOC), {})
        return _created(batch)

    def get_incident(self, incident_id: str) -> Incident | None:
        doc = self._get(INCIDENTS, incident_id)
        return None if doc is None else Incident.from_doc(doc)

    def change_incident(self, incident_id: str, change: Callable[[Incident], Incident]
                        ) -> Incident:
        def body(tx: Tx) -> Incident:
            current = tx.get_incident(incident_id)
            if current is None:
                raise NotFound("incident", incident_id)
            changed = change(current)
            if changed != current:
                tx.set_incident(changed)
            return changed

        return self.transact(body)

    def incidents(self, since: datetime, limit: int = INCIDENTS_LISTED) -> list[Incident]:
        """Every open incident (up to `limit`), and up to `limit` resolved ones updated
        since `since`, newest first: one query (open, or resolved and recent: the two
        never overlap, so each incident is read once), served by the composite index
        (status, updated_at DESC)."""
        query = (self.db.collection(INCIDENTS)
                 .where(filter=Or([FieldFilter("status", "==", "open"),
                                   And([FieldFilter("status", "==", "resolved"),
                                        FieldFilter("updated_at", ">=", since)])]))
                 .order_by("updated_at", direction=firestore.Query.DESCENDING)
                 .limit(2 * limit))
        found = [Incident.from_doc(d) for d in self._stream(query)]
        listed = ([i for i in found if i.open][:limit]
                  + [i for i in found if not i.open][:limit])
        return sorted(listed, key=lambda i: (not i.open, -i.updated_at.timestamp(), i.id))

    # -- notification routes

    def route_states(self) -> dict[str, RouteState]:
        return {d["id"]: RouteState.from_doc(d) for d in self._stream(self.db.collection(ROUTES))}

    def change_route(self, route_id: str, change: Callable[[RouteState], tuple[RouteState, T]]
                     ) -> tuple[RouteState, T]:
        """Read the route's state, change it, write it back, in one transaction."""
        def body(tx: Tx) -> tuple[RouteState, T]:
            state, extra = change(tx.get_route_state(route_id) or RouteState(route_id))
            tx.set_route_state(state)
            return state, extra

        return self.transact(body)

    # -- status page (publish_status)

    def deadline_records(self) -> dict[str, DeadlineRecord]:
        """Every consumer's deadline record (one bounded document each)."""
        return {d["consumer"]: DeadlineRecord.from_doc(d)
                for d in self._stream(self.db.collection(DEADLINES))}

    def judge_deadlines(self, consumer_ids: Iterable[str], decide: Callable[
            [str, DeadlineRecord | None], tuple[DeadlineRecord, list[Judgement]]]
                        ) -> dict[str, tuple[DeadlineRecord, list[Judgement]]]:
        """Read the consumers' records, decide each (`decide(consumer id, record)`), write
        those that changed: JUDGED_PER_COMMIT consumers to a transaction, so that two
        publishes at once judge each deadline once (the second finds the cursors moved)."""
        ids = list(dict.fromkeys(consumer_ids))
        done: dict[str, tuple[DeadlineRecord, list[Judgement]]] = {}
        for start in range(0, len(ids), JUDGED_PER_COMMIT):
            part = ids[start:start + JUDGED_PER_COMMIT]

            def body(tx: Tx, part=part) -> dict[str, tuple[DeadlineRecord, list[Judgement]]]:
                current = tx.get_deadline_records(part)
                decided = {c: decide(c, current[c]) for c in part}
                for c, (record, _) in decided.items():
                    if record != current[c]:
                        tx.set_deadline_record(record)
                return decided

            done.update(self.transact(body))
        return done

    def status_state(self) -> dict:
        """settings/status_state: what the previous publish saw (freshet.status.changes),
        as put_status_state was given it (without `updated_at`)."""
        return self.paged.get(STATUS_DOC)

    def put_status_state(self, doc: dict) -> None:
        self.paged.put(STATUS_DOC, doc)  # packed (PACKED_SETTINGS)

    @staticmethod
    def _since(query, since: datetime | None):
        if since is None:
            return query
        return query.where(filter=FieldFilter("updated_at", ">", since)).order_by("updated_at")

    def _changes(self, query, since: datetime | None, convert: Callable[[dict], M],
                 limit: int | None = None) -> Changes[M]:
        query = self._since(query, since)
        if limit is not None:
            query = query.limit(limit + 1)
        docs = list(self._stream(query))
        complete = limit is None or len(docs) <= limit
        docs = docs[:limit] if limit is not None else docs
        return Changes([convert(d) for d in docs], _newest(docs, since), complete)

    def jobs_changed_since(self, since: datetime | None) -> Changes[Job]:
        """Jobs written after `since` (every job when None), with the newest updated_at."""
        return self._changes(self.db.collection(JOBS), since, Job.from_doc)

    def deadlines_changed_since(self, since: datetime | None) -> Changes[DeadlineRecord]:
        """Deadline records written after `since` (every one when None)."""
        return self._changes(self.db.collection(DEADLINES), since, DeadlineRecord.from_doc)

    def datasets_changed_since(self, since: datetime | None) -> Changes[Dataset]:
        """Datasets written after `since`: every entry of each group written (a group is
        one document of the collection), and the documents of their own."""
        docs = list(self._stream(self._since(self.db.collection(DATASETS), since)))
        return Changes(listed(docs), _newest(docs, since))

    def runs_changed_since(self, since: datetime, limit: int) -> Changes[Run]:
        """Runs written after `since`, oldest change first, at most `limit`. A run without
        `created_at` is left out: recent_runs (ordered by it) never returns one either."""
        found = self._changes(self.db.collection(RUNS), since, lambda d: d, limit)
        runs = [Run.from_doc(d) for d in found.items if "created_at" in d]
        return Changes(runs, found.mark, found.complete)

    def recent_runs_marked(self, limit: int) -> Changes[Run]:
        """recent_runs, marked with the newest updated_at of the whole collection (read
        first, so that every run written up to it is in what follows): a run written
        after the mark is asked for next time, and one written before it and not among
        the newest now never will be."""
        query = (self.db.collection(RUNS)
                 .order_by("updated_at", direction=firestore.Query.DESCENDING).limit(1))
        newest = _newest(list(self._stream(query)), None)
        docs = list(self._stream(self._recent_query(None, limit)))
        return Changes([Run.from_doc(d) for d in docs], _newest(docs, newest))

    def changed_since(self, collection: str, since: datetime | None) -> bool:
        """Whether any document of `collection` was written after `since` (one read:
        at most one document is asked for); True when there is no `since`."""
        if since is None:
            return True
        query = (self.db.collection(collection)
                 .where(filter=FieldFilter("updated_at", ">", since)).limit(1))
        return bool(list(self._stream(query)))

    def settings_newest(self) -> datetime | None:
        """The newest commit time in the settings collection (one read)."""
        query = (self.db.collection(SETTINGS)
                 .order_by("updated_at", direction=firestore.Query.DESCENDING).limit(1))
        return _newest(list(self._stream(query)), None)

    def settings_written_since(self, since: datetime | None, limit: int = 50
                               ) -> list[tuple[str, datetime]]:
        """(id, commit time) of the settings documents written after `since`, oldest
        first, at most `limit` (every one when `since` is None)."""
        query = self.db.collection(SETTINGS)
        if since is not None:
            query = query.where(filter=FieldFilter("updated_at", ">", since))
        query = query.order_by("updated_at").limit(limit)
        found = self._stream_snapshots(query)
        return [(snap.id, snap.get("updated_at")) for snap in found]

    def _stream_snapshots(self, query) -> list:
        found = list(query.stream())
        self.stats.read(len(found))  # an empty query is billed as one read
        return found

    def status_model_docs(self, doc_ids: list[str]) -> dict[str, dict]:
        """Documents of the status_model collection by id, in one batched read."""
        refs = [self._ref(STATUS_MODEL, i) for i in doc_ids]
        found = {}
        for snap in self.db.get_all(refs):
            self.stats.reads += 1
            if snap.exists:
                found[snap.id] = snap.to_dict()
        return found

    def put_status_model_doc(self, doc_id: str, doc: dict) -> None:
        self._set(STATUS_MODEL, doc_id, doc)

    # -- the operator console ---------------------------------------------------

    def change_adhoc_windows(self, change: Callable[[list[dict]], list[dict]]) -> list[dict]:
        """settings/control's ad-hoc windows (field ADHOC_FIELD), read and rewritten in
        one transaction: two operators opening windows at once lose neither. `apply`
        writes only the declared ones (field `maintenance`)."""

        def body(tx: Tx) -> list[dict]:
            windows = change(list(tx.get_control().get(ADHOC_FIELD) or ()))
            tx.merge_control({ADHOC_FIELD: windows})
            return windows

        return self.transact(body)

    def paused_until_due(self, now: datetime, limit: int = 100) -> list[Job]:
        """Paused jobs whose pause ends by `now` (composite index status, paused_until)."""
        query = (self.db.collection(JOBS)
                 .where(filter=FieldFilter("status", "==", "paused"))
                 .where(filter=FieldFilter("paused_until", "<=", now))
                 .order_by("paused_until")
                 .limit(limit))
        return [Job.from_doc(d) for d in self._stream(query)]

    def runs_page(self, *, job_id: str | None = None, statuses: tuple[str, ...] = (),
                  since: datetime | None = None, until: datetime | None = None,
                  after: str | None = None, limit: int = 50) -> tuple[list[Run], str | None]:
        """Runs newest first (created_at), filtered, `limit` at a time: (the page, the id
        of its last run when more follow). `after`: the previous page's last run id.
        Composite indexes: (status, created_at), (job_id, status, created_at)."""
        query = self.db.collection(RUNS)
        if job_id is not None:
            query = query.where(filter=FieldFilter("job_id", "==", job_id))
        if statuses:
            query = query.where(filter=FieldFilter("status", "in", list(statuses)))
        if since is not None:
            query = query.where(filter=FieldFilter("created_at", ">=", since))
        if until is not None:
            query = query.where(filter=FieldFilter("created_at", "<", until))
        query = query.order_by("created_at", direction=firestore.Query.DESCENDING)
        if after is not None:
            snap = self._ref(RUNS, after).get()
            self.stats.read()
            if not snap.exists:
                raise ValidationError("cursor", "names no run (the page it came from is gone)")
            query = query.start_after(snap)
        docs = list(self._stream(query.limit(limit + 1)))
        page = [Run.from_doc(d) for d in docs[:limit]]
        return page, page[-1].id if len(docs) > limit and page else None


def _created(batch: Batch) -> Created:
    """Commit a batch of creates: NEW, or EXISTS when one of its documents was there
    (then nothing of the batch was written)."""
    try:
        batch.commit()
    except (gexc.AlreadyExists, gexc.Conflict):
        return Created.EXISTS
    return Created.NEW
