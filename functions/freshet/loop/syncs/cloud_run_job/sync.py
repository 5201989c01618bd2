"""`cloud_run_job`'s runtime: run the existing job with the run's overrides, marked as
the run's attempt (a redelivery finds and adopts the execution), and return at once;
the run waits on the execution. Its end records the task counts."""

from freshet.core.external import EngineStatus
from freshet.gcp.cloudrun import job_path
from freshet.loop.engines import CLOUD_RUN
from freshet.loop.syncs.base import Started, SyncContext, SyncResult
from freshet.loop.syncs.cloud_run_job.params import check
from freshet.loop.syncs.cloud_run_job.submit import start_arguments


def run(ctx: SyncContext) -> Started:
    params = check(ctx.params)
    cloud_run = ctx.engines.cloud_run
    region = params.region or cloud_run.region
    earlier = ctx.engines.unrecorded_execution(
        job_path(cloud_run.project, region, params.job), ctx.run_id, ctx.unrecorded_attempts)
    if earlier is not None:
        name, status = earlier
        return Started(CLOUD_RUN, name, region, params.timeout, status.link, True)
    handle = cloud_run.start(params.job, **start_arguments(
        params, run_id=ctx.run_id, attempt=ctx.attempt, default_region=cloud_run.region))
    return Started(CLOUD_RUN, handle.name, region, params.timeout, handle.status.link,
                   handle.adopted)


def finish(params: dict, status: EngineStatus, produces: list[str], engines) -> SyncResult:
    """The tasks that succeeded, as each dataset's record count."""
    succeeded = dict(status.stats).get("succeeded")
    return SyncResult(records={} if succeeded is None else dict.fromkeys(produces, succeeded))
