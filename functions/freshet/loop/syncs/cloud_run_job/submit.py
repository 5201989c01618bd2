"""What a `cloud_run_job` run starts: the adapter's keyword arguments for run +
attempt (freshet.gcp.cloudrun.CloudRun.start adds the run's marker to the env)."""

from freshet.loop.syncs.cloud_run_job.params import CloudRunJobParams


def start_arguments(params: CloudRunJobParams, *, run_id: str, attempt: int,
                    default_region: str) -> dict:
    return {"run_id": run_id, "attempt": attempt, "args": params.args,
            "env": dict(params.env), "task_count": params.task_count,
            "timeout": params.timeout, "region": params.region or default_region}
