"""`bigquery_load`'s runtime: submit the load of the run's URIs as job
`freshet_<run>_<attempt>` (a repeated submission adopts it) and return at once; at its
end, the rows loaded and the destination's lastModifiedTime are recorded."""

from freshet.core.external import EngineStatus
from freshet.loop.engines import BIGQUERY
from freshet.loop.syncs.base import Started, SyncContext, SyncResult
from freshet.loop.syncs.bigquery_load.params import check
from freshet.loop.syncs.bigquery_load.submit import load_job
from freshet.loop.syncs.bigquery_query.sync import records_of, table_watermark


def run(ctx: SyncContext) -> Started:
    params = check(ctx.params)
    engines = ctx.engines
    earlier = engines.unrecorded_bigquery_job(ctx.run_id, ctx.unrecorded_attempts)
    if earlier is not None:
        job_id, status = earlier
        return Started(BIGQUERY, job_id, "", params.timeout, status.link, True)
    job_id, job = load_job(params, job=ctx.job_id, run_id=ctx.run_id, attempt=ctx.attempt,
                           slot=ctx.slot, interval_start=ctx.interval_start)
    handle = engines.bigquery.submit_load(job_id, job)
    return Started(BIGQUERY, handle.job_id, handle.location, params.timeout,
                   handle.status.link, handle.adopted)


def finish(params: dict, status: EngineStatus, produces: list[str], engines) -> SyncResult:
    typed = check(params)
    return SyncResult(records=records_of(status, produces),
                      watermarks=table_watermark(engines, typed.destination, produces))
