"""What a `bigquery_query` run submits: its params and the run in, the job id and the
QueryJob out. The run's slot and interval reach the SQL as query parameters (@slot,
@interval_start), never formatted into it; only the ones the SQL names are sent."""

import re
from datetime import datetime

from freshet.core.external import external_job_id, run_labels
from freshet.gcp.bigquery import Parameter, QueryJob
from freshet.loop.syncs.bigquery_query.params import QueryParams

_NAMED = re.compile(r"@(slot|interval_start)\b")


def run_parameters(sql: str, slot: datetime | None,
                   interval_start: datetime | None) -> tuple[Parameter, ...]:
    values = {"slot": slot, "interval_start": interval_start}
    named = dict.fromkeys(_NAMED.findall(sql))
    return tuple(Parameter(name, "TIMESTAMP", values[name]) for name in named)


def query_job(params: QueryParams, *, job: str, run_id: str, attempt: int,
              slot: datetime | None, interval_start: datetime | None) -> tuple[str, QueryJob]:
    return external_job_id(run_id, attempt), QueryJob(
        sql=params.query, maximum_bytes_billed=params.maximum_bytes_billed,
        parameters=run_parameters(params.query, slot, interval_start),
        destination=params.destination, write_disposition=params.write_disposition,
        labels={**params.labels, **run_labels(run_id, attempt, job)},
        timeout=params.timeout, location=params.location)
