"""The observe pass: read every observed dataset that is due, in bulk, judge what was
read (freshet.core.observe), and commit only what moved.

    result = observe_once(store, queue, now=now, settings=settings, reader=reader)

scheduler_tick runs it after its own work (freshet.ops.entries): the tick is called
every minute anyway, so observing costs no extra invocation and no extra Cloud
Scheduler job (docs/engines.md says why). A tick with nothing due reads one document,
the ledger (settings/observations), and stops. A pass reads the catalog for the specs,
reads the engines (tables.get in parallel on one client, prefixes by listing names and
times, then the opt-in SQL one query at a time with its byte cap), writes a dataset only
when its data time moved or its error changed (one transaction each, which also creates
the runs that data triggers: core.commit.observing), and writes the ledger once. A
read that fails transiently changes nothing and is read again next pass. Reads not
made within the time budget stay due: the next tick reads them first.
"""

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from freshet.core import commit as core
from freshet.core.commit import Commit, Facts
from freshet.core.errors import FreshetError, TransientError
from freshet.core.observe import (
    Ledger,
    Observation,
    ObservePlan,
    ObserveSpec,
    next_pass,
    parse_gcs_prefix,
    plan_observations,
    recorded,
)
from freshet.core.settings import Settings
from freshet.gcp.store import Store, Tx
from freshet.gcp.tasks import TaskQueue
from freshet.loop.followups import send_tasks

log = logging.getLogger(__name__)

PARALLEL_READS = 16
BUDGET_S = 20.0  # of a tick's time: the tick's own work comes first
MAX_READS_PER_PASS = 5_000
SQL_TIMEOUT_S = 20.0  # an observation query's answer, at most, inside a tick


class Reader(Protocol):
    def table_time(self, table: str) -> datetime: ...
    def prefix_time(self, bucket: str, prefix: str) -> datetime | None: ...
    def sql_time(self, spec: ObserveSpec) -> datetime | None: ...


class EngineReader:
    """Reads through Freshet's adapters (gcp.bigquery, gcp.storage), clients made once,
    on first use (BigQuery's library is imported only by a pass that reads a table)."""

    def __init__(self, project: str, bigquery=None, storage=None):
        from freshet.gcp.storage import StorageClient

        self.project = project
        self._bigquery = bigquery
        self.storage = storage or StorageClient()
        self._lock = threading.Lock()

    @property
    def bigquery(self):
        with self._lock:
            if self._bigquery is None:
                from freshet.gcp.bigquery import BigQuery

                self._bigquery = BigQuery(self.project)
            return self._bigquery

    def table_time(self, table: str) -> datetime:
        return self.bigquery.table_facts(table).modified

    def prefix_time(self, bucket: str, prefix: str) -> datetime | None:
        from freshet.gcp.storage import newest_update

        return newest_update(bucket, prefix, self.storage.client)

    def sql_time(self, spec: ObserveSpec) -> datetime | None:
        # Within the tick's time: a query slower than this is read again next pass.
        return self.bigquery.query_time(spec.target, spec.maximum_bytes_billed or 0,
                                        spec.location, result_timeout_s=SQL_TIMEOUT_S)


def _observe(key: str, read: Callable[[], datetime | None]) -> Observation:
    try:
        return Observation(key, read())
    except TransientError as exc:
        return Observation(key, error=str(exc), transient=True)
    except FreshetError as exc:
        return Observation(key, error=str(exc))
    except Exception as exc:  # not Freshet's (a bug, a library's): keep the state, say so
        log.exception("observing %s failed", key)
        return Observation(key, error=f"{type(exc).__name__}: {exc}", transient=True)


def read_plan(plan: ObservePlan, reader: Reader, parallel: int = PARALLEL_READS,
              deadline: float | None = None) -> list[Observation]:
    """Every read of the plan: metadata in parallel, then the SQL one by one while the
    monotonic `deadline` allows (the ones left out are not read: still due)."""
    jobs = [(key, lambda t=table: reader.table_time(t)) for key, table in plan.tables]
    jobs += [(key, lambda u=uri: reader.prefix_time(*parse_gcs_prefix(u, "gcs_prefix")))
             for key, uri in plan.prefixes]
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(jobs) or 1))) as pool:
        found = list(pool.map(lambda job: _observe(*job), jobs))
    for key, spec in plan.sql:
        if deadline is not None and time.monotonic() >= deadline:
            break
        found.append(_observe(key, lambda s=spec: reader.sql_time(s)))
    return found


@dataclass
class ObserveResult:
    ran: bool = False  # a pass was due
    read: int = 0  # reads answered (transient failures included)
    changed: list[str] = field(default_factory=list)  # datasets written
    failed: int = 0  # reads that failed for good
    transient: int = 0  # reads to make again next pass
    deferred: int = 0  # due, not read: the budget ran out
    runs: list[str] = field(default_factory=list)  # triggered runs created
    enqueue_failed: list[str] = field(default_factory=list)
    next_at: datetime | None = None

    def to_dict(self) -> dict:
        return {"ran": self.ran, "read": self.read, "changed": len(self.changed),
                "failed": self.failed, "transient": self.transient,
                "deferred": self.deferred, "runs": self.runs[:50],
                "enqueue_failed": len(self.enqueue_failed),
                "datasets": self.changed[:50]}


def observe_once(store: Store, queue: TaskQueue, *, now: datetime, settings: Settings,
                 reader: Reader, budget_s: float = BUDGET_S,
                 limit: int = MAX_READS_PER_PASS) -> ObserveResult:
    """One pass, if one is due (see the module's docstring)."""
    deadline = time.monotonic() + budget_s
    result = ObserveResult()
    ledger = Ledger.from_doc(store.observations_doc())
    if not ledger.due(now):
        return result
    result.ran = True
    specs = store.catalog().observed
    plan = plan_observations(specs, ledger.seen, now, limit)
    found = read_plan(plan, reader, deadline=deadline)
    seen = {k: s for k, s in ledger.seen.items() if k in specs}  # undeclared: dropped
    for observation in found:
        entry, commit = recorded(seen.get(observation.dataset), observation, now)
        result.read += 1
        result.transient += observation.transient
        result.failed += bool(observation.error) and not observation.transient
        if commit and not _commit(store, queue, observation, now, settings, result):
            continue  # its entry stays as it was: the next pass commits it again
        if entry is not None:
            seen[observation.dataset] = entry
    result.deferred = plan.reads - len(found)
    result.next_at = now if result.deferred else next_pass(specs, seen, now)
    store.put_observations_doc(Ledger(seen, result.next_at).to_doc())
    return result


def _commit(store: Store, queue: TaskQueue, observation: Observation, now: datetime,
            settings: Settings, result: ObserveResult) -> bool:
    key = observation.dataset
    try:
        made = store.transact(lambda tx: _observed(tx, key, observation, now, settings))
    except Exception:
        log.exception("could not record the observation of %s", key)
        return False
    if made.datasets:
        result.changed.append(key)
    result.runs += made.created
    result.enqueue_failed += send_tasks(queue, made.tasks)
    return True


def _observed(tx: Tx, key: str, observation: Observation, now: datetime,
              settings: Settings) -> Commit:
    """Read what core.commit asks for, round by round; build the commit; persist it."""
    facts = None
    while (reads := core.observed_reads(key, observation, facts, now)) is not None:
        facts = tx.read(reads, facts or Facts())
    made = core.observing(key, observation, facts or Facts(), now, settings)
    tx.persist(made)
    return made
