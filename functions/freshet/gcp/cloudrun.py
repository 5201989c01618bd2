"""The one module that talks to Cloud Run Jobs (Admin API v2, REST transport).

Freshet runs an EXISTING job with overrides (args, env, task count, timeout), never
creates one per run (Cloud Run allows 1,000 jobs per region: prefect#16007). jobs.run
takes no labels and an Execution's labels are its job's, so the execution is marked as
the run's by env overrides (freshet.core.external.run_marker: FRESHET_RUN_ID,
FRESHET_RUN_ATTEMPT), which its `template` shows. Before starting, a redelivered start
looks for an execution so marked among the job's newest and adopts it: a crash between
jobs.run and the commit that records it starts nothing twice. (Two deliveries at once
cannot both get here: the run's claim lets one through.)

Google's exceptions stop here (freshet.gcp.calls); the clients are made on first use,
once (FRESHET_CLOUD_RUN_EMULATOR_HOST points them at freshet_local's stand-in).

References: jobs.run https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.jobs/run,
Execution https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.jobs.executions,
executions.list, .get, .cancel (same page's methods).
"""

import os
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry, if_transient_error

from freshet.core.external import EngineStatus, is_marked, judge_cloud_run, run_marker
from freshet.gcp import calls

if TYPE_CHECKING:
    from google.cloud import run_v2


def _run_v2():
    """google.cloud.run_v2, imported on first use (0.3 s of imports that every CLI
    command, deploy step and cold start that never runs a Cloud Run job would pay)."""
    from google.cloud import run_v2

    return run_v2

EMULATOR_ENV = "FRESHET_CLOUD_RUN_EMULATOR_HOST"
CALL_DEADLINE_S = 30.0
# How far back a redelivery looks for its execution (newest first): a start is
# redelivered within minutes, so the run's execution is among the job's newest.
LOOKUP_EXECUTIONS = 100
PERMISSION_HINT = ("the runtime account needs run.jobs.runWithOverrides on the job: "
                   "roles/run.jobsExecutorWithOverrides or roles/run.developer")
MAX_TASK_TIMEOUT = timedelta(hours=168)  # Cloud Run Jobs: a task may run up to 7 days


@dataclass(frozen=True)
class ExecutionHandle:
    name: str  # projects/P/locations/R/jobs/J/executions/E: what the run stores
    adopted: bool  # a redelivery found the execution an earlier delivery started
    status: EngineStatus


def job_path(project: str, region: str, job: str) -> str:
    return job if job.startswith("projects/") else _run_v2().JobsClient.job_path(project, region,
                                                                              job)


def status_of(execution: "run_v2.Execution") -> EngineStatus:
    """An Execution as Freshet's EngineStatus (freshet.core.external.judge_cloud_run)."""
    message = next((c.message for c in execution.conditions
                    if c.type_ == "Completed" and c.message), "")
    return judge_cloud_run(task_count=execution.task_count,
                           succeeded=execution.succeeded_count, failed=execution.failed_count,
                           cancelled=execution.cancelled_count,
                           running=execution.running_count,
                           completed="completion_time" in execution,
                           error=message, link=execution.log_uri)


def execution_env(execution: "run_v2.Execution") -> dict[str, str]:
    containers = execution.template.containers if execution.template else ()
    return {e.name: e.value for c in containers for e in c.env}


class CloudRun:
    """Cloud Run Jobs in one project, through clients made on first use."""

    def __init__(self, project: str, region: str, *, jobs_client=None, executions_client=None,
                 deadline_s: float = CALL_DEADLINE_S):
        self.project = project
        self.region = region
        self._jobs = jobs_client
        self._executions = executions_client
        self._lock = threading.Lock()
        self.retry = Retry(predicate=if_transient_error, timeout=deadline_s)
        self.timeout = deadline_s

    def _clients(self):
        with self._lock:
            if self._jobs is None:
                self._jobs = make_client(_run_v2().JobsClient)
            if self._executions is None:
                self._executions = make_client(_run_v2().ExecutionsClient)
            return self._jobs, self._executions

    def _calling(self, what: str):
        return calls.calling(what, hint=PERMISSION_HINT)

    def start(self, job: str, *, run_id: str, attempt: int, args: tuple[str, ...] | None = None,
              env: dict[str, str] | None = None, task_count: int | None = None,
              timeout: timedelta | None = None, region: str = "") -> ExecutionHandle:
        """Runs `job` for run + attempt, or adopts the execution an earlier delivery of
        the same start began."""
        name = job_path(self.project, region or self.region, job)
        found = self.find(name, run_id, attempt)
        if found is not None:
            return ExecutionHandle(found.name, True, status_of(found))
        run_v2 = _run_v2()
        override = run_v2.RunJobRequest.Overrides.ContainerOverride(
            env=[run_v2.EnvVar(name=k, value=v)
                 for k, v in {**(env or {}), **run_marker(run_id, attempt)}.items()])
        if args is not None:
            override.args = list(args)
            override.clear_args = not args
        overrides = run_v2.RunJobRequest.Overrides(container_overrides=[override])
        if task_count is not None:
            overrides.task_count = task_count
        if timeout is not None:
            from google.protobuf import duration_pb2

            overrides.timeout = duration_pb2.Duration(seconds=int(timeout.total_seconds()))
        jobs, _ = self._clients()
        with self._calling(f"running Cloud Run job {name}"):
            operation = jobs.run_job(request=run_v2.RunJobRequest(name=name, overrides=overrides),
                                     retry=None, timeout=self.timeout)
            execution = operation.metadata
        return ExecutionHandle(execution.name, False, status_of(execution))

    def find(self, job: str, run_id: str, attempt: int) -> "run_v2.Execution | None":
        """The job's execution marked as run + attempt's, among its newest."""
        _, executions = self._clients()
        name = job_path(self.project, self.region, job)
        with self._calling(f"listing the executions of {name}"):
            pager = executions.list_executions(
                request=_run_v2().ListExecutionsRequest(parent=name, page_size=50),
                retry=self.retry, timeout=self.timeout)
            for seen, execution in enumerate(pager):
                if seen >= LOOKUP_EXECUTIONS:
                    return None
                if is_marked(execution_env(execution), run_id, attempt):
                    return execution
        return None

    def poll(self, execution: str) -> EngineStatus:
        """The execution's state now. TransientError when the poll may pass next time."""
        _, executions = self._clients()
        with self._calling(f"reading execution {execution}"):
            found = executions.get_execution(name=execution, retry=self.retry,
                                             timeout=self.timeout)
        return status_of(found)

    def cancel(self, execution: str) -> None:
        """Cancels the execution; one that has already ended stays as it ended."""
        _, executions = self._clients()
        try:
            with self._calling(f"cancelling execution {execution}"):
                executions.cancel_execution(name=execution, retry=self.retry,
                                            timeout=self.timeout)
        except Exception as exc:
            # Refused as already over (FAILED_PRECONDITION, a 400 on REST): fine if so.
            if not isinstance(exc.__cause__, gexc.FailedPrecondition | gexc.BadRequest):
                raise
            if not self.poll(execution).finished:
                raise

    def job_policy(self, job: str) -> dict[str, set[str]]:
        """Who holds which role on the job: {role: members} (jobs.getIamPolicy).
        NotFound (freshet.gcp.calls) when there is no such job."""
        jobs, _ = self._clients()
        name = job_path(self.project, self.region, job)
        with self._calling(f"reading the IAM policy of {name}"):
            policy = jobs.get_iam_policy(request={"resource": name}, retry=self.retry,
                                         timeout=self.timeout)
        return {b.role: set(b.members) for b in policy.bindings}


def make_client(cls):
    """A run_v2 client on the REST transport; with FRESHET_CLOUD_RUN_EMULATOR_HOST set,
    the local stand-in's, anonymously."""
    address = os.environ.get(EMULATOR_ENV)
    if not address:
        return cls(transport="rest")
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials

    endpoint = address if "://" in address else f"http://{address}"
    return cls(transport="rest", credentials=AnonymousCredentials(),
               client_options=ClientOptions(api_endpoint=endpoint))
