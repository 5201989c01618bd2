"""The one module that talks to Cloud Scheduler.

`build_jobs` turns the config's control schedules into typed `scheduler_v1.Job`s: an
HTTP target (uri, method, headers, JSON body) signed with an OIDC token of the invoker
service account, audience = the uri. The local demo's scheduler loop fires the same
objects on their cron, so they carry everything a call needs.

Jobs Freshet manages are marked in their description; `SchedulerAdmin` creates,
updates and deletes only those, so hand-made jobs in the same location are left alone.
"""

import json
import threading
from dataclasses import dataclass, field

from google.cloud import scheduler_v1
from google.protobuf import duration_pb2, field_mask_pb2

from freshet.core.specs import ControlSchedule
from freshet.gcp.errors import translates

MANAGED_MARK = "[managed by freshet]"
# The fields Freshet sets; everything else on a Job is Cloud Scheduler's own state.
MANAGED_FIELDS = ("description", "schedule", "time_zone", "http_target", "attempt_deadline")


def location_path(project: str, region: str) -> str:
    return f"projects/{project}/locations/{region}"


def build_job(project: str, region: str, spec: ControlSchedule, *, base_url: str,
              invoker_email: str | None) -> scheduler_v1.Job:
    uri = f"{base_url.rstrip('/')}/{spec.target}"
    target = scheduler_v1.HttpTarget(
        uri=uri,
        http_method=scheduler_v1.HttpMethod[spec.method],
        headers={"Content-Type": "application/json", "X-Freshet-Schedule": spec.name},
        body=json.dumps({"schedule": spec.name, "target": spec.target}).encode(),
    )
    if invoker_email:
        target.oidc_token = scheduler_v1.OidcToken(service_account_email=invoker_email,
                                                   audience=uri)
    deadline = duration_pb2.Duration()
    deadline.FromTimedelta(spec.deadline)
    description = f"{spec.description} {MANAGED_MARK}".strip()
    return scheduler_v1.Job(
        name=f"{location_path(project, region)}/jobs/{spec.name}",
        description=description,
        schedule=spec.cron,
        time_zone=spec.timezone,
        http_target=target,
        attempt_deadline=deadline,
    )


def job_summary(job: scheduler_v1.Job) -> dict:
    """For `freshet doctor`: the job's state and how its last attempt went."""
    last = job.last_attempt_time
    return {"state": scheduler_v1.Job.State(job.state).name,
            "last_attempt_time": last if last and last.timestamp() > 0 else None,
            "code": job.status.code, "message": job.status.message}


def build_jobs(project: str, region: str, specs: tuple[ControlSchedule, ...], *,
               base_url: str, invoker_email: str | None) -> list[scheduler_v1.Job]:
    """One Cloud Scheduler job per control schedule."""
    return [build_job(project, region, s, base_url=base_url, invoker_email=invoker_email)
            for s in specs]


# Headers Cloud Scheduler sets or replaces itself, and may echo back on a read.
GOOGLE_HEADERS = ("user-agent", "content-length", "host")
GOOGLE_HEADER_PREFIXES = ("x-google-", "x-appengine-", "x-cloudscheduler")


def _headers(target: scheduler_v1.HttpTarget) -> dict[str, str]:
    return {k.lower(): v for k, v in target.headers.items()
            if k.lower() not in GOOGLE_HEADERS and not k.lower().startswith(
                GOOGLE_HEADER_PREFIXES)}


def _comparable(job: scheduler_v1.Job, name: str) -> object:
    """A managed field as Freshet sets it: what Google adds on its own is left out."""
    if name != "http_target":
        return getattr(job, name)
    target = job.http_target
    token = target.oidc_token
    return (target.uri, target.http_method, _headers(target), bytes(target.body),
            token.service_account_email, token.audience or (target.uri if
                                                            token.service_account_email
                                                            else ""))


def changed_fields(current: scheduler_v1.Job, wanted: scheduler_v1.Job) -> list[str]:
    """Pure: the managed fields that differ. Output-only fields (state, user_update_time,
    retry_config's defaults) and headers Google adds (User-Agent) never count."""
    return [name for name in MANAGED_FIELDS
            if _comparable(current, name) != _comparable(wanted, name)]


@dataclass
class SchedulerDiff:
    create: list[scheduler_v1.Job] = field(default_factory=list)
    update: list[tuple[scheduler_v1.Job, list[str]]] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)  # full job names

    @property
    def empty(self) -> bool:
        return not (self.create or self.update or self.delete)


def diff_jobs(wanted: list[scheduler_v1.Job],
              current: dict[str, scheduler_v1.Job]) -> SchedulerDiff:
    """Pure: what to change so that the managed jobs in `current` become `wanted`."""
    result = SchedulerDiff()
    names = set()
    for job in wanted:
        names.add(job.name)
        existing = current.get(job.name)
        if existing is None:
            result.create.append(job)
        else:
            changes = changed_fields(existing, job)
            if changes:
                result.update.append((job, changes))
    result.delete = sorted(name for name, job in current.items()
                           if name not in names and MANAGED_MARK in job.description)
    return result


def requests_for(diff: SchedulerDiff, parent: str) -> list:
    """The typed requests that carry out a diff, in order."""
    reqs: list = [scheduler_v1.CreateJobRequest(parent=parent, job=job) for job in diff.create]
    reqs += [scheduler_v1.UpdateJobRequest(job=job,
                                           update_mask=field_mask_pb2.FieldMask(paths=changes))
             for job, changes in diff.update]
    reqs += [scheduler_v1.DeleteJobRequest(name=name) for name in diff.delete]
    return reqs


@translates
class SchedulerAdmin:
    """Reads and changes the Cloud Scheduler jobs of one location."""

    def __init__(self, project: str, region: str,
                 client: scheduler_v1.CloudSchedulerClient | None = None):
        self.parent = location_path(project, region)
        self._client = client
        self._lock = threading.Lock()

    @property
    def client(self) -> scheduler_v1.CloudSchedulerClient:
        with self._lock:
            if self._client is None:
                self._client = scheduler_v1.CloudSchedulerClient()
            return self._client

    def current_jobs(self) -> dict[str, scheduler_v1.Job]:
        request = scheduler_v1.ListJobsRequest(parent=self.parent)
        return {job.name: job for job in self.client.list_jobs(request=request)}

    def diff(self, wanted: list[scheduler_v1.Job]) -> SchedulerDiff:
        return diff_jobs(wanted, self.current_jobs())

    def execute(self, diff: SchedulerDiff) -> int:
        count = 0
        for request in requests_for(diff, self.parent):
            if isinstance(request, scheduler_v1.CreateJobRequest):
                self.client.create_job(request=request)
            elif isinstance(request, scheduler_v1.UpdateJobRequest):
                self.client.update_job(request=request)
            else:
                self.client.delete_job(request=request)
            count += 1
        return count
