"""What the runtime account must be granted on the engines a pipeline's jobs use, at the
narrowest scope Google offers: deploy grants it, `freshet doctor` checks it.

    cloud_run_job   on each named job (Freshet never creates one):
                    roles/run.jobsExecutorWithOverrides  jobs.run with overrides, and
                                                         executions.cancel
                    roles/run.viewer                     executions.get and .list: follow
                                                         the execution, find a redelivered
                                                         start's own
    bigquery_query, bigquery_load, and observed `bigquery_sql` datasets:
                    roles/bigquery.jobUser on the project (jobs.create is granted there
                    only); reading the source and writing the destination tables is a
                    grant on those datasets, which the team that owns them makes.

References: https://cloud.google.com/run/docs/execute/jobs#required-roles ("to override
job configurations, or to cancel job executions"),
https://cloud.google.com/iam/docs/roles-permissions/run (the roles' permissions),
https://cloud.google.com/bigquery/docs/access-control#bigquery.jobUser.
"""

from dataclasses import dataclass

from freshet.core.errors import ValidationError
from freshet.core.observe import ObserveKind
from freshet.loop.syncs.cloud_run_job import params as cloud_run_params
from freshet.ops.config import PipelineConfig

RUN_JOB_ROLES = (
    ("roles/run.jobsExecutorWithOverrides", "start it with this run's args, env, task count "
                                            "and timeout, and cancel it"),
    ("roles/run.viewer", "follow its executions (executions.get and .list)"),
)
# Broader roles that include each need (on the job or the project), so a runtime account
# already holding one is not told to get the narrow one
# (https://cloud.google.com/iam/docs/roles-permissions/run).
BROADER = {
    "roles/run.jobsExecutorWithOverrides": ("roles/run.developer", "roles/run.admin",
                                            "roles/editor", "roles/owner"),
    "roles/run.viewer": ("roles/run.developer", "roles/run.admin", "roles/viewer",
                         "roles/editor", "roles/owner"),
}
BIGQUERY_JOB_ROLE = "roles/bigquery.jobUser"
BIGQUERY_KINDS = frozenset({"bigquery_query", "bigquery_load"})


@dataclass(frozen=True, order=True)
class CloudRunJob:
    """A Cloud Run job a pipeline's `cloud_run_job` runs: where it is, and who names it."""

    project: str
    region: str
    name: str
    used_by: tuple[str, ...] = ()  # the Freshet jobs that run it

    @property
    def path(self) -> str:
        return f"projects/{self.project}/locations/{self.region}/jobs/{self.name}"


def cloud_run_jobs(config: PipelineConfig) -> list[CloudRunJob]:
    """Each Cloud Run job the config's `cloud_run_job` jobs name, once, in order."""
    found: dict[tuple[str, str, str], list[str]] = {}
    for job in config.jobs:
        if job.kind != "cloud_run_job":
            continue
        try:
            parsed = cloud_run_params.check(job.params)
        except ValidationError:
            continue  # apply refuses it, with its line; nothing to grant
        project, region, name = config.project, parsed.region or config.region, parsed.job
        if name.startswith("projects/"):
            _, project, _, region, _, name = name.split("/")
        found.setdefault((project, region, name), []).append(job.id)
    return [CloudRunJob(p, r, n, tuple(ids)) for (p, r, n), ids in found.items()]


def needs_bigquery_jobs(config: PipelineConfig) -> bool:
    """Whether any job or observation creates BigQuery jobs (tables.get does not)."""
    return (any(job.kind in BIGQUERY_KINDS for job in config.jobs)
            or any(spec.kind == ObserveKind.BIGQUERY_SQL for _, spec in config.observed))


def missing_job_roles(held: set[str]) -> list[tuple[str, str]]:
    """The (role, what it is for) pairs not covered by the roles `held` on a job (its
    own policy's and the project's)."""
    return [(role, why) for role, why in RUN_JOB_ROLES
            if role not in held and not held & set(BROADER[role])]
