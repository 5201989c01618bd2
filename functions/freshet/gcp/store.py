"""The one module that talks to Firestore.

Everything else works on typed models (freshet.core.models) and calls these methods.
`Store.transact(fn)` runs `fn(tx)` in a Firestore transaction; the client retries
it on contention, so `fn` must have no side effect beyond the `tx` calls it makes.
Reads, commits and document writes are counted so benchmarks can report what an
operation costs (Firestore bills per document read and per document written).

Every document written here carries `updated_at` = Firestore's commit time
(SERVER_TIMESTAMP), whatever the caller put there: the status page asks each
collection for what changed since the newest `updated_at` it has seen, which is
only sound if that field is the moment the change became visible. A time taken
from the writer's clock at the start of its request could commit after a publish
had already moved past it, and that change would never be read.
"""

import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from freshet.core.errors import Conflict, NotFound
from freshet.core.lifecycle import Decision
from freshet.core.models import Dataset, Job, Run
from freshet.core.runs import SlotClaim

T = TypeVar("T")
M = TypeVar("M")

JOBS, RUNS, DATASETS, SETTINGS = "jobs", "runs", "datasets", "settings"
CONTROL_DOC = "control"  # settings/control: kill switches
CATALOG_DOC = "catalog"  # settings/catalog: declared datasets and consumers
HEARTBEAT_DOC = "heartbeat"  # settings/heartbeat: last tick / sweep / publish
APPLIED_DOC = "applied"  # settings/applied: the job ids the last apply declared
STATUS_MODEL = "status_model"  # the previous publish's inputs (freshet.status.snapshot)
MODEL_MANIFEST = "manifest"

def firestore_client(project: str | None) -> firestore.Client:
    """A client for the project ($FIRESTORE_EMULATOR_HOST sends it to the emulator). It
    connects on first use, so creating one at a cold start costs nothing."""
    return firestore.Client(project=project)


def stamped(fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` with `updated_at` set to the commit time (see the module's docstring)."""
    return {**fields, "updated_at": firestore.SERVER_TIMESTAMP}


@dataclass
class Stats:
    reads: int = 0
    commits: int = 0
    writes: int = 0  # documents written (created, set, updated or deleted)

    def reset(self) -> None:
        self.reads = self.commits = self.writes = 0


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


class Tx:
    """Reads and writes inside one transaction. All reads must come before writes."""

    def __init__(self, store: "Store", transaction: firestore.Transaction):
        self._store = store
        self._t = transaction
        self.writes = 0  # added to the store's stats when the transaction commits

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
        self._t.set(self._store._ref(JOBS, job.id), stamped(job.to_doc()))
        self.writes += 1

    def update_job(self, job_id: str, fields: dict[str, Any]) -> None:
        self._t.update(self._store._ref(JOBS, job_id), stamped(fields))
        self.writes += 1

    def create_run(self, run: Run) -> None:
        self._t.create(self._store._ref(RUNS, run.id), stamped(run.to_doc()))
        self.writes += 1

    def set_run(self, run: Run) -> None:
        self._t.set(self._store._ref(RUNS, run.id), stamped(run.to_doc()))
        self.writes += 1

    def set_dataset(self, dataset: Dataset) -> None:
        self._t.set(self._store._ref(DATASETS, dataset.key), stamped(dataset.to_doc()))
        self.writes += 1

    def set_run_if_unchanged(self, run: Run, version: datetime) -> None:
        """Write the run only if its document is still at `version` (a compare-and-set
        without a read: the commit fails if another writer came first)."""
        self._t.update(self._store._ref(RUNS, run.id), stamped(run.to_doc()),
                       option=self._store.db.write_option(last_update_time=version))
        self.writes += 1

    def write(self, decision: Decision, job_id: str, *,
              run_version: datetime | None = None) -> None:
        """Carry out a lifecycle decision: read the datasets it changes (reads come
        first in a transaction), then write the run (only if still at `run_version`,
        when given), the job's fields and the datasets."""
        change, run = decision.datasets, decision.run
        keys = run.produces if change is not None and run is not None else []
        datasets = [self.get_dataset(k) or Dataset(key=k) for k in keys]
        if run is not None and run_version is not None:
            self.set_run_if_unchanged(run, run_version)
        elif run is not None:
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
            last: list[Tx] = []  # the attempt that committed is the last one made

            def body(t: firestore.Transaction, last=last) -> T:
                last.append(Tx(self, t))
                return fn(last[-1])

            try:
                result = firestore.transactional(body)(transaction)
            except gexc.Aborted:
                if attempt == max_attempts:
                    raise
                time.sleep(min(0.05 * 2 ** attempt, 2.0) * (0.5 + random.random()))
                continue
            self.stats.commits += 1
            self.stats.writes += last[-1].writes
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
        self.stats.reads += max(1, len(found))  # an empty query is billed as one read
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
                   run: Run | None) -> SlotClaim:
        """Compare-and-set a job (unchanged since `version`) and create its run, atomically.

        One batched commit, no transaction: the update's precondition is the compare,
        the run's create() is the dedup.
        """
        batch = self.db.batch()
        batch.update(self._ref(JOBS, job_id), stamped(job_fields),
                     option=self.db.write_option(last_update_time=version))
        if run is not None:
            batch.create(self._ref(RUNS, run.id), stamped(run.to_doc()))
        self.stats.commits += 1
        try:
            batch.commit()
        except (gexc.FailedPrecondition, gexc.Aborted, gexc.NotFound):
            return SlotClaim.LOST
        except (gexc.AlreadyExists, gexc.Conflict):
            return SlotClaim.EXISTS
        self.stats.writes += 1 if run is None else 2
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

    def completed_jobs_before(self, cutoff: datetime, limit: int = 100) -> list[Job]:
        query = (self.db.collection(JOBS)
                 .where(filter=FieldFilter("status", "==", "completed"))
                 .where(filter=FieldFilter("completed_at", "<=", cutoff))
                 .order_by("completed_at")
                 .limit(limit))
        return [Job.from_doc(d) for d in self._stream(query)]

    def applied_doc(self) -> dict:
        return self._setting(APPLIED_DOC)

    def put_applied_doc(self, doc: dict) -> None:
        self._set(SETTINGS, APPLIED_DOC, doc)

    def heartbeats(self) -> dict:
        """settings/heartbeat: when tick, recovery and publish last ran, and what they did."""
        return self._setting(HEARTBEAT_DOC)

    def put_heartbeat(self, name: str, data: dict) -> None:
        self._set(SETTINGS, HEARTBEAT_DOC, {name: data}, merge=True)

    def control(self) -> dict:
        return self._setting(CONTROL_DOC)

    def catalog_doc(self) -> dict:
        return self._setting(CATALOG_DOC)

    def put_catalog_doc(self, doc: dict) -> None:
        self._set(SETTINGS, CATALOG_DOC, doc)

    # -- plain writes ---------------------------------------------------------

    def _set(self, collection: str, doc_id: str, doc: dict, *, merge: bool = False) -> None:
        self._ref(collection, doc_id).set(stamped(doc), merge=merge)
        self.stats.commits += 1
        self.stats.writes += 1

    def create_job(self, job: Job) -> None:
        try:
            self._ref(JOBS, job.id).create(stamped(job.to_doc()))
        except gexc.AlreadyExists:
            raise Conflict(f"job {job.id!r} already exists") from None
        self.stats.commits += 1
        self.stats.writes += 1

    def create_run(self, run: Run) -> bool:
        """Create the run document; False if one with its id exists (the dedup)."""
        self.stats.commits += 1
        try:
            self._ref(RUNS, run.id).create(stamped(run.to_doc()))
        except (gexc.AlreadyExists, gexc.Conflict):
            return False
        self.stats.writes += 1
        return True

    def put_job(self, job: Job) -> None:
        self._set(JOBS, job.id, job.to_doc())

    def update_job(self, job_id: str, fields: dict[str, Any]) -> None:
        try:
            self._ref(JOBS, job_id).update(stamped(fields))
        except gexc.NotFound:
            raise NotFound("job", job_id) from None
        self.stats.commits += 1
        self.stats.writes += 1

    def update_run(self, run_id: str, fields: dict[str, Any]) -> None:
        self._ref(RUNS, run_id).update(stamped(fields))
        self.stats.commits += 1
        self.stats.writes += 1

    def set_control(self, fields: dict[str, Any]) -> None:
        self._set(SETTINGS, CONTROL_DOC, fields, merge=True)

    def put_many(self, collection: str, docs: Iterable[tuple[str, dict]]) -> int:
        """Bulk load (benchmarks, demo seeding): batches of 500, the Firestore maximum."""
        count, batch = 0, self.db.batch()
        for doc_id, doc in docs:
            batch.set(self._ref(collection, doc_id), stamped(doc))
            count += 1
            if count % 500 == 0:
                batch.commit()
                self.stats.commits += 1
                batch = self.db.batch()
        if count % 500:
            batch.commit()
            self.stats.commits += 1
        self.stats.writes += count
        return count

    # -- status page (publish_status)

    def status_state(self) -> dict:
        """settings/status_state: what the previous publish saw (freshet.status.changes)."""
        return self._setting("status_state")

    def put_status_state(self, doc: dict) -> None:
        self._set(SETTINGS, "status_state", doc)

    def _changes(self, query, since: datetime | None, convert: Callable[[dict], M],
                 limit: int | None = None) -> Changes[M]:
        if since is not None:
            query = query.where(filter=FieldFilter("updated_at", ">", since)).order_by(
                "updated_at")
        if limit is not None:
            query = query.limit(limit + 1)
        docs = list(self._stream(query))
        complete = limit is None or len(docs) <= limit
        docs = docs[:limit] if limit is not None else docs
        return Changes([convert(d) for d in docs], _newest(docs, since), complete)

    def jobs_changed_since(self, since: datetime | None) -> Changes[Job]:
        """Jobs written after `since` (every job when None), with the newest updated_at."""
        return self._changes(self.db.collection(JOBS), since, Job.from_doc)

    def datasets_changed_since(self, since: datetime | None) -> Changes[Dataset]:
        return self._changes(self.db.collection(DATASETS), since, Dataset.from_doc)

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
