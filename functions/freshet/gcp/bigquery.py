"""The one module that talks to BigQuery: the jobs runs start and wait on, and the
table metadata (and opt-in SQL) that observations read.

Jobs get a fixed id (freshet.core.external.external_job_id: run + attempt). BigQuery
keeps a job id unique in its project, so a repeated submission (a redelivered task,
a crash between the insert and the commit that records it) answers 409 and the job
that exists is adopted: one run attempt, one job, whatever the deliveries.

Google's exceptions stop here: 429, 5xx, rate limits and connection errors become
TransientError (retry, poll again); the rest PermanentError (or NotFound). What the
rest of the code passes in and gets back is Freshet's own types. The client is created
on first use, once (BIGQUERY_EMULATOR_HOST points it at a local emulator).

References: jobs.insert https://cloud.google.com/bigquery/docs/reference/rest/v2/jobs/insert,
Job resource https://cloud.google.com/bigquery/docs/reference/rest/v2/Job,
jobs.cancel https://cloud.google.com/bigquery/docs/reference/rest/v2/jobs/cancel,
tables.get https://cloud.google.com/bigquery/docs/reference/rest/v2/tables/get,
error reasons https://cloud.google.com/bigquery/docs/error-messages.
"""

import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as gexc

from freshet.core.errors import PermanentError
from freshet.core.external import EngineStatus, judge_bigquery
from freshet.core.observe import TableRef, parse_table
from freshet.core.timeutil import to_utc
from freshet.gcp import calls

if TYPE_CHECKING:
    from google.cloud import bigquery


def _bigquery():
    """google.cloud.bigquery, imported on first use: it imports pyarrow and numpy (0.4 s),
    which every CLI command, deploy step and cold start that never asks BigQuery
    anything would pay (the config's sync kinds import this module)."""
    from google.cloud import bigquery

    return bigquery

EMULATOR_ENV = "BIGQUERY_EMULATOR_HOST"
WRITE_DISPOSITIONS = ("WRITE_TRUNCATE", "WRITE_APPEND", "WRITE_EMPTY")
LOAD_FORMATS = {"csv": "CSV", "json": "NEWLINE_DELIMITED_JSON", "parquet": "PARQUET",
                "avro": "AVRO", "orc": "ORC"}
# 403s that mean "slow down", not "you may not": https://cloud.google.com/bigquery/docs/error-messages
_TRANSIENT_REASONS = frozenset({"rateLimitExceeded", "backendError", "internalError",
                                "jobBackendError", "jobInternalError", "quotaExceeded"})
# Tables whose lastModifiedTime is not when their data changed.
_NOT_OBSERVABLE = {
    "VIEW": "a view's lastModifiedTime is when its definition changed, not its data: "
            "observe the tables it reads, or use bigquery_sql",
    "MATERIALIZED_VIEW": "a materialized view's lastModifiedTime is not its refresh "
                         "time: observe its base tables, or use bigquery_sql",
    "EXTERNAL": "an external table's data lives outside BigQuery: observe its files "
                "with gcs_prefix",
}
RESULT_TIMEOUT_S = 120  # an observation query's answer, at most
# One call, its retries included, at most this long (the client's default is 10 min):
# a poll that cannot get through says so and is polled again later.
CALL_DEADLINE_S = 30.0


@dataclass(frozen=True)
class Parameter:
    """A query parameter (`@slot`): never formatted into the SQL text."""

    name: str
    type: str  # TIMESTAMP, STRING, INT64, DATE ...
    value: Any


@dataclass(frozen=True)
class QueryJob:
    sql: str
    maximum_bytes_billed: int
    parameters: tuple[Parameter, ...] = ()
    destination: str = ""  # project.dataset.table
    write_disposition: str = ""  # WRITE_TRUNCATE | WRITE_APPEND | WRITE_EMPTY
    labels: dict[str, str] = field(default_factory=dict)
    timeout: timedelta | None = None  # jobTimeoutMs: BigQuery stops the job itself
    location: str = ""


@dataclass(frozen=True)
class LoadJob:
    source_uris: tuple[str, ...]
    destination: str
    format: str = "csv"  # a key of LOAD_FORMATS
    schema: tuple[tuple[str, str, str], ...] = ()  # (name, type, mode); empty: autodetect
    autodetect: bool = False
    write_disposition: str = "WRITE_APPEND"
    labels: dict[str, str] = field(default_factory=dict)
    timeout: timedelta | None = None
    location: str = ""


@dataclass(frozen=True)
class JobHandle:
    """A submitted job: what the run stores to poll it."""

    job_id: str
    location: str
    adopted: bool  # the id existed: a repeated submission found the first one's job
    status: EngineStatus


@dataclass(frozen=True)
class TableFacts:
    table: str
    modified: datetime  # lastModifiedTime
    table_type: str
    num_rows: int | None


def is_transient(exc: BaseException) -> bool:
    """Whether a BigQuery call that raised `exc` may pass if made again."""
    return calls.is_transient(exc, _TRANSIENT_REASONS)


def calling(what: str):
    return calls.calling(what, _TRANSIENT_REASONS)


def console_link(project: str, location: str, job_id: str) -> str:
    return (f"https://console.cloud.google.com/bigquery?project={project}"
            f"&j=bq:{location}:{job_id}&page=queryresults")


def _stats(job: Any) -> tuple[tuple[str, int], ...]:
    found = []
    for name, attr in (("bytes_processed", "total_bytes_processed"),
                       ("bytes_billed", "total_bytes_billed"),
                       ("rows_affected", "num_dml_affected_rows"),
                       ("rows_loaded", "output_rows")):
        value = getattr(job, attr, None)
        if isinstance(value, int):
            found.append((name, value))
    return tuple(found)


def status_of(job: Any, project: str) -> EngineStatus:
    """A client job object as Freshet's EngineStatus."""
    error = job.error_result or {}
    return judge_bigquery(job.state or "", error.get("reason", ""), error.get("message", ""),
                          _stats(job), console_link(project, job.location or "", job.job_id))


def _param(p: Parameter):
    value = p.value
    if isinstance(value, datetime):
        value = to_utc(value)
    return _bigquery().ScalarQueryParameter(p.name, p.type, value)


def _timeout_ms(timeout: timedelta | None) -> int | None:
    return None if timeout is None else int(timeout.total_seconds() * 1000)


class BigQuery:
    """BigQuery for one project, through one client made on first use."""

    def __init__(self, project: str, client: "bigquery.Client | None" = None,
                 deadline_s: float = CALL_DEADLINE_S):
        self.project = project
        self._client = client
        self._lock = threading.Lock()
        from google.cloud.bigquery.retry import DEFAULT_RETRY

        self.retry = DEFAULT_RETRY.with_timeout(deadline_s)
        self.timeout = deadline_s

    @property
    def client(self) -> "bigquery.Client":
        with self._lock:
            if self._client is None:
                self._client = make_client(self.project)
            return self._client

    # -- jobs ---------------------------------------------------------------------------

    def submit_query(self, job_id: str, job: QueryJob) -> JobHandle:
        config = _bigquery().QueryJobConfig(
            query_parameters=[_param(p) for p in job.parameters],
            maximum_bytes_billed=job.maximum_bytes_billed,
            labels=dict(job.labels),
            use_legacy_sql=False,
        )
        if job.timeout is not None:
            config.job_timeout_ms = _timeout_ms(job.timeout)
        if job.destination:
            config.destination = str(parse_table(job.destination, "destination",
                                                 self.project))
            config.write_disposition = job.write_disposition or "WRITE_TRUNCATE"
        return self._submit(job_id, job.location, lambda: self.client.query(
            job.sql, job_config=config, job_id=job_id, location=job.location or None,
            job_retry=None, retry=self.retry, timeout=self.timeout))

    def submit_load(self, job_id: str, job: LoadJob) -> JobHandle:
        config = _bigquery().LoadJobConfig(
            source_format=LOAD_FORMATS[job.format],
            write_disposition=job.write_disposition,
            labels=dict(job.labels),
        )
        if job.schema:
            config.schema = [_bigquery().SchemaField(n, t, mode=m) for n, t, m in job.schema]
        else:
            config.autodetect = True
        if job.timeout is not None:
            config.job_timeout_ms = _timeout_ms(job.timeout)
        table = str(parse_table(job.destination, "destination", self.project))
        return self._submit(job_id, job.location, lambda: self.client.load_table_from_uri(
            list(job.source_uris), table, job_id=job_id, job_config=config,
            location=job.location or None, retry=self.retry, timeout=self.timeout))

    def _submit(self, job_id: str, location: str, insert) -> JobHandle:
        try:
            with calling(f"submitting BigQuery job {job_id}"):
                job, adopted = insert(), False
        except PermanentError as exc:
            if not isinstance(exc.__cause__, gexc.Conflict):
                raise
            # The id exists: an earlier delivery submitted it. Adopt that job.
            job, adopted = self._get(job_id, location), True
        return JobHandle(job.job_id, job.location or location, adopted,
                         status_of(job, self.project))

    def _get(self, job_id: str, location: str):
        with calling(f"reading BigQuery job {job_id}"):
            return self.client.get_job(job_id, location=location or None, retry=self.retry,
                                       timeout=self.timeout)

    def poll(self, job_id: str, location: str = "") -> EngineStatus:
        """The job's state now. Raises TransientError when the poll may pass next time."""
        return status_of(self._get(job_id, location), self.project)

    def cancel(self, job_id: str, location: str = "") -> None:
        """Asks BigQuery to stop the job (a finished job stays as it ended)."""
        with calling(f"cancelling BigQuery job {job_id}"):
            self.client.cancel_job(job_id, location=location or None, retry=self.retry,
                                   timeout=self.timeout)

    # -- observations -------------------------------------------------------------------

    def table_facts(self, table: str | TableRef) -> TableFacts:
        """tables.get (free metadata): when the table last changed. Views, materialized
        views and external tables are refused, saying why."""
        ref = table if isinstance(table, TableRef) else parse_table(table, "table",
                                                                       self.project)
        with calling(f"reading table {ref}"):
            found = self.client.get_table(str(ref), retry=self.retry, timeout=self.timeout)
        kind = found.table_type or "TABLE"
        if kind in _NOT_OBSERVABLE:
            raise PermanentError(f"{ref} is a {kind.lower().replace('_', ' ')}: "
                                 f"{_NOT_OBSERVABLE[kind]}")
        if found.modified is None:
            raise PermanentError(f"{ref} has no lastModifiedTime")
        return TableFacts(str(ref), to_utc(found.modified), kind, found.num_rows)

    def query_time(self, sql: str, maximum_bytes_billed: int, location: str = "",
                   parameters: tuple[Parameter, ...] = (),
                   result_timeout_s: float = RESULT_TIMEOUT_S) -> datetime | None:
        """An observation's SQL (billed, capped): the first column of its first row as a
        UTC time (a DATE counts as its midnight UTC); None when it returns NULL or no row."""
        config = _bigquery().QueryJobConfig(
            maximum_bytes_billed=maximum_bytes_billed, use_legacy_sql=False,
            query_parameters=[_param(p) for p in parameters],
            labels={"freshet-use": "observe"})
        with calling("running the observation SQL"):
            rows = list(self.client.query(sql, job_config=config, location=location or None,
                                          retry=self.retry, timeout=self.timeout).result(
                timeout=result_timeout_s, max_results=1))
        if not rows or rows[0][0] is None:
            return None
        value = rows[0][0]
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise PermanentError("the observation SQL returned a DATETIME without a "
                                     "time zone: return a TIMESTAMP")
            return to_utc(value)
        if isinstance(value, date):
            return datetime.combine(value, time(0), tzinfo=UTC)
        raise PermanentError(f"the observation SQL must return one TIMESTAMP, not "
                             f"{type(value).__name__} {value!r}")


def make_client(project: str) -> "bigquery.Client":
    """The client for `project`; with BIGQUERY_EMULATOR_HOST set, the local emulator's,
    anonymously (as the Firestore and Storage clients do with their emulator variables)."""
    bigquery = _bigquery()
    address = os.environ.get(EMULATOR_ENV)
    if not address:
        return bigquery.Client(project=project)
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials

    endpoint = address if "://" in address else f"http://{address}"
    return bigquery.Client(project=project, credentials=AnonymousCredentials(),
                           client_options=ClientOptions(api_endpoint=endpoint))
