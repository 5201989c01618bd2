"""The one module that talks to Firestore.

Everything else works on typed models (freshet.core.models) and calls these methods.
`Store.transact(fn)` runs `fn(tx)` in a Firestore transaction; the client retries
it on contention, so `fn` must have no side effect beyond the `tx` calls it makes.
Reads and commits are counted so benchmarks can report what an operation costs.
"""

import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from freshet.core.alerts import RouteState
from freshet.core.deadlines import DeadlineRecord, Judgement
from freshet.core.errors import Conflict, NotFound
from freshet.core.incidents import Incident
from freshet.core.lifecycle import Decision
from freshet.core.models import Dataset, Job, Run
from freshet.core.runs import SlotClaim

T = TypeVar("T")

JOBS, RUNS, DATASETS, SETTINGS = "jobs", "runs", "datasets", "settings"
DEADLINES = "deadlines"  # deadlines/{consumer id}: verdicts and cursors (core.deadlines)
INCIDENTS = "incidents"  # incidents/{id}: an incident and its notes (core.incidents)
ROUTES = "routes"  # routes/{id}: a notification route's state and backlog (core.alerts)
INCIDENTS_LISTED = 100  # open ones, and as many recently updated ones: the page's read
CONTROL_DOC = "control"  # settings/control: kill switches
CATALOG_DOC = "catalog"  # settings/catalog: declared datasets and consumers
HEARTBEAT_DOC = "heartbeat"  # settings/heartbeat: last tick / sweep / publish
APPLIED_DOC = "applied"  # settings/applied: the job ids the last apply declared

def firestore_client(project: str | None) -> firestore.Client:
    """A client for the project ($FIRESTORE_EMULATOR_HOST sends it to the emulator). It
    connects on first use, so creating one at a cold start costs nothing."""
    return firestore.Client(project=project)


@dataclass
class Stats:
    reads: int = 0
    commits: int = 0

    def reset(self) -> None:
        self.reads = self.commits = 0


class Tx:
    """Reads and writes inside one transaction. All reads must come before writes."""

    def __init__(self, store: "Store", transaction: firestore.Transaction):
        self._store = store
        self._t = transaction

    def _get(self, collection: str, doc_id: str) -> dict | None:
        snap = self._store._ref(collection, doc_id).get(transaction=self._t)
        self._store.stats.reads += 1
        return snap.to_dict() if snap.exists else None

    def get_job(self, job_id: str) -> Job | None:
        doc = self._get(JOBS, job_id)
        return None if doc is None else Job.from_doc(doc)

    def get_run(self, run_id: str) -> Run | None:
        doc = self._get(RUNS, run_id)
        return None if doc is None else Run.from_doc(doc)

    def get_dataset(self, key: str) -> Dataset | None:
        doc = self._get(DATASETS, key)
        return None if doc is None else Dataset.from_doc(doc)

    def set_job(self, job: Job) -> None:
        self._t.set(self._store._ref(JOBS, job.id), job.to_doc())

    def update_job(self, job_id: str, fields: dict[str, Any]) -> None:
        self._t.update(self._store._ref(JOBS, job_id), fields)

    def create_run(self, run: Run) -> None:
        self._t.create(self._store._ref(RUNS, run.id), run.to_doc())

    def set_run(self, run: Run) -> None:
        self._t.set(self._store._ref(RUNS, run.id), run.to_doc())

    def set_dataset(self, dataset: Dataset) -> None:
        self._t.set(self._store._ref(DATASETS, dataset.key), dataset.to_doc())

    def get_deadline_record(self, consumer_id: str) -> DeadlineRecord | None:
        doc = self._get(DEADLINES, consumer_id)
        return None if doc is None else DeadlineRecord.from_doc(doc)

    def set_deadline_record(self, record: DeadlineRecord) -> None:
        self._t.set(self._store._ref(DEADLINES, record.consumer), record.to_doc())

    def get_incident(self, incident_id: str) -> Incident | None:
        doc = self._get(INCIDENTS, incident_id)
        return None if doc is None else Incident.from_doc(doc)

    def set_incident(self, incident: Incident) -> None:
        self._t.set(self._store._ref(INCIDENTS, incident.id), incident.to_doc())

    def get_route_state(self, route_id: str) -> RouteState | None:
        doc = self._get(ROUTES, route_id)
        return None if doc is None else RouteState.from_doc(doc)

    def set_route_state(self, state: RouteState) -> None:
        self._t.set(self._store._ref(ROUTES, state.id), state.to_doc())

    def write(self, decision: Decision, job_id: str) -> None:
        """Carry out a lifecycle decision: read the datasets it changes (reads come
        first in a transaction), then write the run, the job's fields and the datasets."""
        change, run = decision.datasets, decision.run
        keys = run.produces if change is not None and run is not None else []
        datasets = [self.get_dataset(k) or Dataset(key=k) for k in keys]
        if run is not None:
            self.set_run(run)
        if decision.job_fields:
            self.update_job(job_id, decision.job_fields)
        for dataset in datasets:
            self.set_dataset(change.apply(dataset))


class Store:
    def __init__(self, db: firestore.Client):
        self.db = db
        self.stats = Stats()

    def _ref(self, collection: str, doc_id: str):
        return self.db.collection(collection).document(doc_id)

    # -- transactions ---------------------------------------------------------

    def transact(self, fn: Callable[[Tx], T], max_attempts: int = 10) -> T:
        """Run `fn` in a transaction. The client retries a commit that lost a conflict;
        a read that lost one (ABORTED, "lock timeout" / "too much contention") is
        retried here the same way, with a fresh transaction after a short backoff."""
        for attempt in range(1, max_attempts + 1):
            transaction = self.db.transaction(max_attempts=max_attempts)
            try:
                result = firestore.transactional(lambda t: fn(Tx(self, t)))(transaction)
            except gexc.Aborted:
                if attempt == max_attempts:
                    raise
                time.sleep(min(0.05 * 2 ** attempt, 2.0) * (0.5 + random.random()))
                continue
            self.stats.commits += 1
            return result
        raise AssertionError("unreachable")

    # -- plain reads ----------------------------------------------------------

    def _get(self, collection: str, doc_id: str) -> dict | None:
        snap = self._ref(collection, doc_id).get()
        self.stats.reads += 1
        return snap.to_dict() if snap.exists else None

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

    def job(self, job_id: str) -> Job:
        job = self.get_job(job_id)
        if job is None:
            raise NotFound("job", job_id)
        return job

    def get_run(self, run_id: str) -> Run | None:
        doc = self._get(RUNS, run_id)
        return None if doc is None else Run.from_doc(doc)

    def run(self, run_id: str) -> Run:
        run = self.get_run(run_id)
        if run is None:
            raise NotFound("run", run_id)
        return run

    def get_dataset(self, key: str) -> Dataset | None:
        doc = self._get(DATASETS, key)
        return None if doc is None else Dataset.from_doc(doc)

    def list_jobs(self, status: str | None = None) -> list[Job]:
        query = self.db.collection(JOBS)
        if status is not None:
            query = query.where(filter=FieldFilter("status", "==", status))
        return [Job.from_doc(d) for d in self._stream(query)]

    def list_datasets(self) -> list[Dataset]:
        return [Dataset.from_doc(d) for d in self._stream(self.db.collection(DATASETS))]

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
        found = []
        for snap in self._due_query(until, limit).stream():
            found.append((Job.from_doc(snap.to_dict()), snap.update_time))
        self.stats.reads += max(1, len(found))
        return found

    def claim_slot(self, job_id: str, version: datetime, job_fields: dict[str, Any],
                   run: Run | None) -> SlotClaim:
        """Compare-and-set a job (unchanged since `version`) and create its run, atomically.

        One batched commit, no transaction: the update's precondition is the compare,
        the run's create() is the dedup.
        """
        batch = self.db.batch()
        batch.update(self._ref(JOBS, job_id), job_fields,
                     option=self.db.write_option(last_update_time=version))
        if run is not None:
            batch.create(self._ref(RUNS, run.id), run.to_doc())
        self.stats.commits += 1
        try:
            batch.commit()
        except (gexc.FailedPrecondition, gexc.Aborted, gexc.NotFound):
            return SlotClaim.LOST
        except (gexc.AlreadyExists, gexc.Conflict):
            return SlotClaim.EXISTS
        return SlotClaim.CLAIMED

    def recent_runs(self, *, job_id: str | None = None, limit: int = 50) -> list[Run]:
        query = self.db.collection(RUNS)
        if job_id is not None:
            query = query.where(filter=FieldFilter("job_id", "==", job_id))
        query = query.order_by("created_at", direction=firestore.Query.DESCENDING).limit(limit)
        return [Run.from_doc(d) for d in self._stream(query)]

    def expired_runs(self, now: datetime, limit: int = 500) -> list[Run]:
        """Unfinished runs whose lease ran out (finished runs have no lease: not indexed)."""
        query = (self.db.collection(RUNS)
                 .where(filter=FieldFilter("lease_expires_at", "<=", now))
                 .order_by("lease_expires_at")
                 .limit(limit))
        return [Run.from_doc(d) for d in self._stream(query)]

    def completed_jobs_before(self, cutoff: datetime, limit: int = 100) -> list[Job]:
        query = (self.db.collection(JOBS)
                 .where(filter=FieldFilter("status", "==", "completed"))
                 .where(filter=FieldFilter("completed_at", "<=", cutoff))
                 .order_by("completed_at")
                 .limit(limit))
        return [Job.from_doc(d) for d in self._stream(query)]

    def applied_doc(self) -> dict:
        return self._get(SETTINGS, APPLIED_DOC) or {}

    def put_applied_doc(self, doc: dict) -> None:
        self._ref(SETTINGS, APPLIED_DOC).set(doc)
        self.stats.commits += 1

    def heartbeats(self) -> dict:
        """settings/heartbeat: when tick, recovery and publish last ran, and what they did."""
        return self._get(SETTINGS, HEARTBEAT_DOC) or {}

    def put_heartbeat(self, name: str, data: dict) -> None:
        self._ref(SETTINGS, HEARTBEAT_DOC).set({name: data}, merge=True)
        self.stats.commits += 1

    def control(self) -> dict:
        return self._get(SETTINGS, CONTROL_DOC) or {}

    def catalog_doc(self) -> dict:
        return self._get(SETTINGS, CATALOG_DOC) or {}

    def put_catalog_doc(self, doc: dict) -> None:
        self._ref(SETTINGS, CATALOG_DOC).set(doc)
        self.stats.commits += 1

    # -- plain writes ---------------------------------------------------------

    def create_job(self, job: Job) -> None:
        try:
            self._ref(JOBS, job.id).create(job.to_doc())
        except gexc.AlreadyExists:
            raise Conflict(f"job {job.id!r} already exists") from None
        self.stats.commits += 1

    def create_run(self, run: Run) -> bool:
        """Create the run document; False if one with its id exists (the dedup)."""
        self.stats.commits += 1
        try:
            self._ref(RUNS, run.id).create(run.to_doc())
        except (gexc.AlreadyExists, gexc.Conflict):
            return False
        return True

    def put_job(self, job: Job) -> None:
        self._ref(JOBS, job.id).set(job.to_doc())
        self.stats.commits += 1

    def update_job(self, job_id: str, fields: dict[str, Any]) -> None:
        try:
            self._ref(JOBS, job_id).update(fields)
        except gexc.NotFound:
            raise NotFound("job", job_id) from None
        self.stats.commits += 1

    def update_run(self, run_id: str, fields: dict[str, Any]) -> None:
        self._ref(RUNS, run_id).update(fields)
        self.stats.commits += 1

    def set_control(self, fields: dict[str, Any]) -> None:
        self._ref(SETTINGS, CONTROL_DOC).set(fields, merge=True)
        self.stats.commits += 1

    def put_many(self, collection: str, docs: Iterable[tuple[str, dict]]) -> int:
        """Bulk load (benchmarks, demo seeding): batches of 500, the Firestore maximum."""
        count, batch = 0, self.db.batch()
        for doc_id, doc in docs:
            batch.set(self._ref(collection, doc_id), doc)
            count += 1
            if count % 500 == 0:
                batch.commit()
                self.stats.commits += 1
                batch = self.db.batch()
        if count % 500:
            batch.commit()
            self.stats.commits += 1
        return count

    # -- incidents

    def create_incident(self, incident: Incident) -> bool:
        """False if an incident with its id exists (the same open, repeated)."""
        self.stats.commits += 1
        try:
            self._ref(INCIDENTS, incident.id).create(incident.to_doc())
        except (gexc.AlreadyExists, gexc.Conflict):
            return False
        return True

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
        """Every open incident (up to `limit`), and those updated since `since`, newest
        first: two single-field queries, no composite index."""
        found: dict[str, Incident] = {}
        open_ones = (self.db.collection(INCIDENTS)
                     .where(filter=FieldFilter("status", "==", "open")).limit(limit))
        recent = (self.db.collection(INCIDENTS)
                  .where(filter=FieldFilter("updated_at", ">=", since))
                  .order_by("updated_at", direction=firestore.Query.DESCENDING).limit(limit))
        for query in (open_ones, recent):
            for doc in self._stream(query):
                found.setdefault(doc["id"], Incident.from_doc(doc))
        return sorted(found.values(), key=lambda i: (not i.open, -i.updated_at.timestamp(),
                                                     i.id))

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

    def judge_deadlines(self, consumer_id: str, decide: Callable[
            [DeadlineRecord | None], tuple[DeadlineRecord, list[Judgement]]]
                        ) -> tuple[DeadlineRecord, list[Judgement]]:
        """Read the consumer's record, decide, write: in one transaction, so that two
        publishes at once judge each deadline once (the second finds the cursor moved)."""
        def body(tx: Tx) -> tuple[DeadlineRecord, list[Judgement]]:
            record, judged = decide(tx.get_deadline_record(consumer_id))
            tx.set_deadline_record(record)
            return record, judged

        return self.transact(body)

    def status_state(self) -> dict:
        """settings/status_state: what the previous publish saw (freshet.status.changes)."""
        return self._get(SETTINGS, "status_state") or {}

    def put_status_state(self, doc: dict) -> None:
        self._ref(SETTINGS, "status_state").set(doc)
        self.stats.commits += 1
