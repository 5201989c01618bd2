"""The observe pass: read every observed dataset that is due, in bulk, and judge what
was read (freshet.core.observe). Not yet wired into a deployed function: the caller
persists the datasets it returns (one write each, outside any transaction's reads).

    changed = observe_once(specs, datasets, now, EngineReader(project))

Table metadata is read in parallel on one client (tables.get is free), prefixes by
listing names and times, the opt-in SQL one query at a time with its byte cap. A read
that fails transiently changes nothing and is read again next pass; a permanent one is
recorded as a failure of the dataset.
"""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Protocol

from freshet.core.errors import FreshetError, TransientError
from freshet.core.models import Dataset
from freshet.core.observe import (
    Observation,
    ObservePlan,
    ObserveSpec,
    apply_observation,
    parse_gcs_prefix,
    plan_observations,
)

PARALLEL_READS = 16


class Reader(Protocol):
    def table_time(self, table: str) -> datetime: ...
    def prefix_time(self, bucket: str, prefix: str) -> datetime | None: ...
    def sql_time(self, spec: ObserveSpec) -> datetime | None: ...


class EngineReader:
    """Reads through Freshet's adapters (gcp.bigquery, gcp.storage), clients made once."""

    def __init__(self, project: str, bigquery=None, storage_client=None):
        from freshet.gcp.bigquery import BigQuery

        self.bigquery = bigquery or BigQuery(project)
        self.storage_client = storage_client

    def table_time(self, table: str) -> datetime:
        return self.bigquery.table_facts(table).modified

    def prefix_time(self, bucket: str, prefix: str) -> datetime | None:
        from freshet.gcp.storage import newest_update

        return newest_update(bucket, prefix, self.storage_client)

    def sql_time(self, spec: ObserveSpec) -> datetime | None:
        return self.bigquery.query_time(spec.target, spec.maximum_bytes_billed or 0,
                                        spec.location)


def _observe(key: str, read: Callable[[], datetime | None]) -> Observation:
    try:
        return Observation(key, read())
    except TransientError as exc:
        return Observation(key, error=str(exc), transient=True)
    except FreshetError as exc:
        return Observation(key, error=str(exc))


def read_plan(plan: ObservePlan, reader: Reader,
              parallel: int = PARALLEL_READS) -> list[Observation]:
    jobs = [(key, lambda t=table: reader.table_time(t)) for key, table in plan.tables]
    jobs += [(key, lambda u=uri: reader.prefix_time(*parse_gcs_prefix(u, "gcs_prefix")))
             for key, uri in plan.prefixes]
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(jobs) or 1))) as pool:
        found = list(pool.map(lambda job: _observe(*job), jobs))
    found += [_observe(key, lambda s=spec: reader.sql_time(s)) for key, spec in plan.sql]
    return found


def observe_once(specs: dict[str, ObserveSpec], datasets: dict[str, Dataset], now: datetime,
                 reader: Reader, limit: int = 10_000) -> dict[str, Dataset]:
    """The datasets this pass changed, by key (the caller writes them)."""
    plan = plan_observations(specs, datasets, now, limit)
    changed = {}
    for observation in read_plan(plan, reader):
        before = datasets.get(observation.dataset) or Dataset(key=observation.dataset)
        after = apply_observation(before, observation, now)
        if after != before:
            changed[observation.dataset] = after
    return changed
