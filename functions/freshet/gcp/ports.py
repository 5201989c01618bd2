"""The Protocols the loop needs of a store and a task queue. Two stores implement the
store's: the Firestore adapter (freshet.gcp.store) and the in-memory one
(freshet.gcp.memory); tests/integration/test_store_contract.py holds both to one suite.
Two queues implement the queue's: the Cloud Tasks adapter (freshet.gcp.tasks) and
freshet_local's RecordingQueue (the adapter with the Google call replaced by a record).
`TypedReads` is what both stores share above their own reads (a document that must be
there, the settings as Freshet's types); `CommitWriter` is the part both stores'
transactions share: reading a round of Facts and
persisting a Commit, in terms of their own get_* and set_* methods.
"""

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol, TypeVar, runtime_checkable

from freshet.core.backfill import Backfill, Lane
from freshet.core.catalog import Catalog
from freshet.core.commit import Commit, Facts, Reads
from freshet.core.control import Control
from freshet.core.created import Created
from freshet.core.errors import NotFound
from freshet.core.herd import ShardTask
from freshet.core.models import Dataset, Job, Run
from freshet.core.runs import SlotClaim
from freshet.gcp.grouped import DATASETS, GROUPS, KEYS, GroupedReads, GroupedTx
from freshet.gcp.stats import Stats

# The collections both stores keep their documents in (datasets: freshet.gcp.grouped).
JOBS, RUNS = "jobs", "runs"
__all__ = ["DATASETS", "GROUPS", "JOBS", "KEYS", "RUNS", "CommitWriter", "TypedReads"]

# The composite indexes the store's queries need, as (collection, ((field, order), ...)):
# infra/firestore.indexes.json declares the same (tests/ops/test_deploy.py checks), deploy
# creates them and `freshet doctor` checks that each is READY.
_ASC, _DESC = "ASCENDING", "DESCENDING"
COMPOSITE_INDEXES: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    (JOBS, (("status", _ASC), ("next_run_at", _ASC))),
    (JOBS, (("status", _ASC), ("claim_shard", _ASC), ("next_run_at", _ASC))),
    (JOBS, (("status", _ASC), ("completed_at", _ASC))),
    (RUNS, (("job_id", _ASC), ("created_at", _DESC))),
    (RUNS, (("queue", _ASC), ("status", _ASC))),
    ("backfills", (("job_id", _ASC), ("created_at", _DESC))),
    (JOBS, (("status", _ASC), ("paused_until", _ASC))),
    (RUNS, (("status", _ASC), ("created_at", _DESC))),
    (RUNS, (("job_id", _ASC), ("status", _ASC), ("created_at", _DESC))),
    ("incidents", (("status", _ASC), ("updated_at", _DESC))),
)

# Run fields no query filters or orders on: exempt from Firestore's automatic
# single-field indexes (infra/firestore.indexes.json's fieldOverrides), whose entries
# were most of a stored run (freshet.ops.cost.stored_bytes counts what is left).
# tests/ops/test_deploy.py holds every query the store makes off these.
UNINDEXED = {RUNS: (
    "id", "kind", "trigger_source", "attempt_number", "max_attempts", "produces",
    "task_name", "dispatches", "idempotency_key", "stuck", "interval_start", "backfill_id",
    "lane", "upstream_versions", "trigger_depth", "enqueued_at",
    "started_at", "heartbeat_at", "finished_at", "error", "records", "watermarks",
    "attempts", "stuck_threshold_minutes", "one_time", "keep_days"),
    # A dataset group's fields (freshet.gcp.grouped): its map of datasets' states would
    # otherwise index every field of every entry; `updated_at` stays, for the publish.
    DATASETS: ("group", "job_id", "keys", "datasets"),
    KEYS: ("key", "group")}

T = TypeVar("T")


@runtime_checkable
class Transaction(Protocol):
    """Reads (all before any write), then writes that land at the commit."""

    writes: int

    def get_job(self, job_id: str) -> Job | None: ...
    def get_run(self, run_id: str) -> Run | None: ...
    def get_dataset(self, key: str) -> Dataset | None: ...
    def get_datasets(self, keys: list[str], owner: tuple[str, tuple[str, ...]] | None = None,
                     *, observed: bool = False) -> dict[str, Dataset | None]: ...
    def get_jobs(self, job_ids: list[str]) -> dict[str, Job | None]: ...
    def get_lane(self, backfill_id: str, index: int) -> Lane | None: ...
    def get_backfill(self, backfill_id: str) -> Backfill | None: ...
    def set_job(self, job: Job) -> None: ...
    def update_job(self, job_id: str, fields: dict[str, Any]) -> None: ...
    def create_run(self, run: Run) -> None: ...
    def set_run(self, run: Run) -> None: ...
    def set_run_if_unchanged(self, run: Run, version: datetime) -> None: ...
    def set_dataset(self, dataset: Dataset) -> None: ...
    def set_lane(self, lane: Lane) -> None: ...
    def set_backfill(self, backfill: Backfill) -> None: ...
    def trigger_graph(self) -> dict: ...
    def add_dataset_trigger(self, key: str, job_id: str) -> None: ...
    def read(self, reads: Reads, facts: Facts) -> Facts: ...
    def persist(self, commit: Commit) -> None: ...
    def flush(self) -> None: ...


@runtime_checkable
class RunStore(Protocol):
    """What the loop (tick, run, recover, manual, backfill) asks of a store."""

    stats: Stats

    def transact(self, fn: Callable[[Any], T], max_attempts: int = 10) -> T: ...
    def transact_if_current(self, fn: Callable[[Any], T]) -> T | None: ...
    def get_job(self, job_id: str) -> Job | None: ...
    def get_job_versioned(self, job_id: str) -> tuple[Job, datetime] | None: ...
    def job(self, job_id: str) -> Job: ...
    def get_run(self, run_id: str) -> Run | None: ...
    def run(self, run_id: str) -> Run: ...
    def runs_by_id(self, run_ids: list[str]) -> dict[str, Run]: ...
    def get_dataset(self, key: str) -> Dataset | None: ...
    def list_jobs(self, status: str | None = None) -> list[Job]: ...
    def list_datasets(self) -> list[Dataset]: ...
    def due_jobs(self, until: datetime, limit: int) -> list[Job]: ...
    def due_jobs_versioned(self, until: datetime, limit: int
                           ) -> list[tuple[Job, datetime]]: ...
    def due_jobs_in_shard_versioned(self, shard: int, until: datetime, limit: int
                                    ) -> list[tuple[Job, datetime]]: ...
    def completed_jobs_before(self, cutoff: datetime, limit: int = 100) -> list[Job]: ...
    def paused_until_due(self, now: datetime, limit: int = 100) -> list[Job]: ...
    def recent_runs(self, *, job_id: str | None = None, limit: int = 50) -> list[Run]: ...
    def expired_runs(self, now: datetime, limit: int = 500) -> list[Run]: ...
    def expired_runs_versioned(self, now: datetime, limit: int = 500
                               ) -> list[tuple[Run, datetime]]: ...
    def count_runs(self, *, queue: str, statuses: tuple[str, ...]) -> int: ...
    def get_backfill(self, backfill_id: str) -> Backfill | None: ...
    def backfill(self, backfill_id: str) -> Backfill: ...
    def lanes(self, backfill_id: str) -> list[Lane]: ...
    def active_backfills(self, limit: int = 100) -> list[Backfill]: ...
    def recent_backfills(self, *, job_id: str | None = None, limit: int = 20
                         ) -> list[Backfill]: ...
    def create_backfill(self, backfill: Backfill, lanes: list[Lane]) -> Created: ...
    def create_job(self, job: Job) -> Created: ...
    def create_run(self, run: Run) -> Created: ...
    def create_runs(self, runs: list[Run]) -> dict[str, Created]: ...
    def claim_slot(self, job_id: str, version: datetime, job_fields: dict[str, Any],
                   run: Run | None, chain: tuple[Backfill, Lane] | None = None
                   ) -> SlotClaim: ...
    def put_job(self, job: Job) -> None: ...
    def update_job(self, job_id: str, fields: dict[str, Any]) -> None: ...
    def update_run(self, run_id: str, fields: dict[str, Any]) -> None: ...
    def put_many(self, collection: str, docs: Any) -> int: ...
    def add_dataset_trigger(self, key: str, job_id: str) -> None: ...
    def set_dataset_triggers(self, key: str, job_ids: list[str]) -> None: ...
    def regroup(self, gid: str, keys: list[str]) -> None: ...
    def lay_out(self, job_id: str, produces: list[str]) -> None: ...
    def dataset_layout(self) -> tuple[dict[str, str], dict[str, list[str]], list[str]]: ...
    def control(self) -> Control: ...
    def control_doc(self) -> dict: ...
    def set_control(self, fields: dict[str, Any]) -> None: ...
    def catalog(self) -> Catalog: ...
    def catalog_doc(self) -> dict: ...
    def put_catalog_doc(self, doc: dict) -> None: ...
    def observations_doc(self) -> dict: ...
    def put_observations_doc(self, doc: dict) -> None: ...
    def heartbeats(self) -> dict: ...
    def put_heartbeat(self, name: str, data: dict) -> None: ...


@runtime_checkable
class RunQueue(Protocol):
    """What the loop asks of a task queue."""

    def enqueue(self, run_id: str, attempt: int, *, dispatch: int = 0,
                schedule_time: datetime | None = None, queue: str | None = None,
                job_id: str | None = None) -> str: ...
    def enqueue_poll(self, run_id: str, attempt: int, poll: int, *,
                     schedule_time: datetime | None = None, queue: str | None = None,
                     job_id: str | None = None) -> str: ...
    def enqueue_claim(self, shard: ShardTask) -> str: ...
    def run_queue(self, job_id: str | None, queue: str | None = None) -> str: ...


class CommitWriter(GroupedTx):
    """What both stores' transactions share, built on their own reads and writes: one
    round of reads into Facts, the typed reads on their own `_get`, the datasets in
    their groups (freshet.gcp.grouped), and a Commit persisted as it is."""

    def _get(self, collection: str, doc_id: str) -> dict | None:
        raise NotImplementedError

    def get_job(self, job_id: str) -> Job | None:
        doc = self._get(JOBS, job_id)
        return None if doc is None else Job.from_doc(doc)

    def get_run(self, run_id: str) -> Run | None:
        doc = self._get(RUNS, run_id)
        return None if doc is None else Run.from_doc(doc)

    def read(self, reads: Reads, facts: Facts) -> Facts:
        """One round of core.commit.next_reads, added to what was read before."""
        lane = self.get_lane(*reads.lane) if reads.lane is not None else facts.lane
        return replace(
            facts, datasets={**facts.datasets, **self.get_datasets(
                list(reads.datasets), reads.owner, observed=reads.observed)},
            lane=lane, runs={**facts.runs, **{i: self.get_run(i) for i in reads.runs}},
            jobs={**facts.jobs, **self.get_jobs(list(reads.jobs))},
            upstreams={**facts.upstreams, **self.get_datasets(list(reads.upstreams))},
            graph_jobs=self.trigger_graph().get("jobs") if reads.graph else facts.graph_jobs)

    def persist(self, commit: Commit) -> None:
        """Write a commit as it is (core.commit built it whole): the run (only if still
        at `run_version`, when given: a compare-and-set without a read), the job's
        fields, the datasets it changes, the runs it creates, other jobs' fields, other
        runs, the lanes and backfills. Nothing here decides."""
        if commit.run is not None and commit.run_version is not None:
            self.set_run_if_unchanged(commit.run, commit.run_version)
        elif commit.run is not None:
            self.set_run(commit.run)
        if commit.job_fields and commit.job_id is not None:
            self.update_job(commit.job_id, commit.job_fields)
        for dataset in commit.datasets:
            self.set_dataset(dataset)
        for run in commit.runs:
            self.create_run(run)
        for job_id, fields in commit.jobs.items():
            self.update_job(job_id, fields)
        for run in commit.updated_runs:
            self.set_run(run)
        for lane in commit.lanes:
            self.set_lane(lane)
        for backfill in commit.backfills:
            self.set_backfill(backfill)


class TypedReads(GroupedReads):
    """Reads both stores build on their get_* and *_doc methods (and their datasets'
    reads and trigger writes: freshet.gcp.grouped)."""

    def job(self, job_id: str) -> Job:
        return _found(self.get_job(job_id), "job", job_id)

    def run(self, run_id: str) -> Run:
        return _found(self.get_run(run_id), "run", run_id)

    def backfill(self, backfill_id: str) -> Backfill:
        return _found(self.get_backfill(backfill_id), "backfill", backfill_id)

    def control(self) -> Control:
        """The kill switches and maintenance windows in force."""
        return Control.from_doc(self.control_doc())

    def catalog(self) -> Catalog:
        """The declared datasets, consumers and pools."""
        return Catalog.from_doc(self.catalog_doc())


def _found(value: T | None, what: str, ident: str) -> T:
    if value is None:
        raise NotFound(what, ident)
    return value
