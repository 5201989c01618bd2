"""`bigquery_query` params, checked by apply:

  query                SQL (standard); the run's slot and interval reach it as query
                       parameters @slot and @interval_start, never formatted into it
  destination          project.dataset.table (optional: DDL/DML queries write themselves)
  write_disposition    WRITE_TRUNCATE (default with a destination) | WRITE_APPEND | WRITE_EMPTY
  maximum_bytes_billed required: the most the query may bill (BigQuery fails it beyond)
  labels               BigQuery job labels (Freshet adds freshet-job/-run/-attempt)
  location             the job's location (EU, US, europe-west1 ...)
  timeout              sent as jobTimeoutMs (BigQuery stops the job) and kept by Freshet
  watermark_sql        SQL returning the time the destination's data is current to
                       (default: the destination's lastModifiedTime)
"""

from dataclasses import dataclass, field
from datetime import timedelta

from freshet.core.errors import ValidationError
from freshet.core.observe import check_bytes_billed
from freshet.loop.syncs import engine_params as p

KEYS = ("query", "destination", "write_disposition", "maximum_bytes_billed", "labels",
        "location", "timeout", "watermark_sql")
MAX_TIMEOUT = timedelta(days=7)
MAX_SQL = 1_000_000  # BigQuery's limit on a query's length (characters)


@dataclass(frozen=True)
class QueryParams:
    query: str
    maximum_bytes_billed: int
    destination: str = ""
    write_disposition: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    location: str = ""
    timeout: timedelta | None = None
    watermark_sql: str = ""


def check(params: object, where: str = "params") -> QueryParams:
    doc = p.params_of(params, where, KEYS, ("query", "maximum_bytes_billed"))
    destination = p.table(doc, "destination", where) if "destination" in doc else ""
    if "write_disposition" in doc and not destination:
        raise ValidationError(f"{where}.write_disposition", "needs a destination")
    return QueryParams(
        query=p.text(doc, "query", where, MAX_SQL),
        maximum_bytes_billed=check_bytes_billed(doc["maximum_bytes_billed"],
                                                f"{where}.maximum_bytes_billed"),
        destination=destination,
        write_disposition=p.disposition(doc, where, "WRITE_TRUNCATE") if destination else "",
        labels=p.labels(doc, where), location=p.location(doc, where),
        timeout=p.timeout(doc, where, MAX_TIMEOUT),
        watermark_sql=p.text(doc, "watermark_sql", where, MAX_SQL)
        if "watermark_sql" in doc else "")
