"""`bigquery_query`'s runtime: submit the query as job `freshet_<run>_<attempt>` (a
repeated submission adopts it: 409) and return at once; the run waits on the job.
At its end, `finish` reads what the data is current to: `watermark_sql` if given,
else the destination's lastModifiedTime (free metadata)."""

import logging

from freshet.core.errors import PermanentError, TransientError
from freshet.core.external import EngineStatus
from freshet.loop.engines import BIGQUERY
from freshet.loop.syncs.base import Started, SyncContext, SyncResult
from freshet.loop.syncs.bigquery_query.params import check
from freshet.loop.syncs.bigquery_query.submit import query_job

log = logging.getLogger(__name__)


def run(ctx: SyncContext) -> Started:
    params = check(ctx.params)
    engines = ctx.engines
    earlier = engines.unrecorded_bigquery_job(ctx.run_id, ctx.unrecorded_attempts,
                                              params.location)
    if earlier is not None:
        job_id, status = earlier
        return Started(BIGQUERY, job_id, params.location, params.timeout, status.link, True)
    job_id, job = query_job(params, job=ctx.job_id, run_id=ctx.run_id, attempt=ctx.attempt,
                            slot=ctx.slot, interval_start=ctx.interval_start)
    handle = engines.bigquery.submit_query(job_id, job)
    return Started(BIGQUERY, handle.job_id, handle.location, params.timeout,
                   handle.status.link, handle.adopted)


def records_of(status: EngineStatus, produces: list[str]) -> dict[str, int]:
    """The rows the job wrote (DML affected, or loaded), for each dataset it produces."""
    stats = dict(status.stats)
    rows = stats.get("rows_affected", stats.get("rows_loaded"))
    return {} if rows is None else dict.fromkeys(produces, rows)


def table_watermark(engines, table: str, produces: list[str]) -> dict:
    """The destination's lastModifiedTime as every produced dataset's watermark; none
    when it cannot be read (the run's success stands: it is the data's time, not the
    run's outcome)."""
    try:
        modified = engines.bigquery.table_facts(table).modified
    except (PermanentError, TransientError) as exc:
        log.warning("no watermark from %s: %s", table, exc)
        return {}
    return dict.fromkeys(produces, modified)


def finish(params: dict, status: EngineStatus, produces: list[str], engines) -> SyncResult:
    typed = check(params)
    watermarks = {}
    if typed.watermark_sql:
        try:
            at = engines.bigquery.query_time(typed.watermark_sql, typed.maximum_bytes_billed,
                                             typed.location)
        except (PermanentError, TransientError) as exc:
            log.warning("watermark_sql failed: %s", exc)
            at = None
        watermarks = {} if at is None else dict.fromkeys(produces, at)
    elif typed.destination:
        watermarks = table_watermark(engines, typed.destination, produces)
    return SyncResult(records=records_of(status, produces), watermarks=watermarks)
