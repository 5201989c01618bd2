"""`cloud_run_job` params, checked by apply:

  job         an existing Cloud Run job: its name, or projects/P/locations/R/jobs/J
              (Freshet never creates one: Cloud Run allows 1,000 per region)
  region      where it is (default: the pipeline's region)
  args        the container's arguments for this run (replacing the job's)
  env         extra environment variables for this run (merged with the job's)
  task_count  how many tasks the execution runs (default: the job's)
  timeout     each task's timeout (the Cloud Run override; at most 168 h), kept by
              Freshet too
"""

import re
from dataclasses import dataclass, field
from datetime import timedelta

from freshet.core.errors import ValidationError
from freshet.core.external import ATTEMPT_ENV, RUN_ENV
from freshet.loop.syncs import engine_params as p

KEYS = ("job", "region", "args", "env", "task_count", "timeout")
MAX_TIMEOUT = timedelta(hours=168)
MAX_TASKS = 10_000
MAX_ARGS = 1000
# https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.jobs (job ids)
_NAME = r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?"
_JOB = re.compile(rf"^(?:projects/[a-z][a-z0-9-]{{4,28}}[a-z0-9]/locations/"
                  rf"([a-z]+-[a-z]+[0-9]+)/jobs/)?({_NAME})$")
_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED_ENV = (RUN_ENV, ATTEMPT_ENV, "CLOUD_RUN_JOB", "CLOUD_RUN_EXECUTION",
                "CLOUD_RUN_TASK_INDEX", "CLOUD_RUN_TASK_ATTEMPT", "CLOUD_RUN_TASK_COUNT")


@dataclass(frozen=True)
class CloudRunJobParams:
    job: str
    region: str = ""
    args: tuple[str, ...] | None = None
    env: dict[str, str] = field(default_factory=dict)
    task_count: int | None = None
    timeout: timedelta | None = None


def check(params: object, where: str = "params") -> CloudRunJobParams:
    doc = p.params_of(params, where, KEYS, ("job",))
    match = _JOB.match(doc["job"]) if isinstance(doc["job"], str) else None
    if not match:
        raise ValidationError(f"{where}.job", "must name an existing Cloud Run job: 1-63 "
                              "lowercase letters, digits or '-', starting with a letter, or "
                              "projects/P/locations/R/jobs/J")
    region = doc.get("region", match.group(1) or "")
    if region and (not isinstance(region, str) or not _REGION.match(region)):
        raise ValidationError(f"{where}.region", "must be a region such as europe-west1")
    args = doc.get("args")
    if args is not None and (not isinstance(args, list) or len(args) > MAX_ARGS
                             or not all(isinstance(a, str) for a in args)):
        raise ValidationError(f"{where}.args", f"must be a list of at most {MAX_ARGS} strings")
    env = doc.get("env") or {}
    if not isinstance(env, dict):
        raise ValidationError(f"{where}.env", "must be a mapping NAME: value")
    for name, value in env.items():
        if not isinstance(name, str) or not _ENV_NAME.match(name) or name in RESERVED_ENV:
            raise ValidationError(f"{where}.env.{name}", "not a variable name this job may "
                                  f"set (reserved: {', '.join(RESERVED_ENV)})")
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValidationError(f"{where}.env.{name}", "must be a string")
    tasks = doc.get("task_count")
    if tasks is not None and (isinstance(tasks, bool) or not isinstance(tasks, int)
                              or not 1 <= tasks <= MAX_TASKS):
        raise ValidationError(f"{where}.task_count", f"must be between 1 and {MAX_TASKS:,}")
    return CloudRunJobParams(job=match.group(2) if not match.group(1) else doc["job"],
                             region=region, args=tuple(args) if args is not None else None,
                             env={k: str(v) for k, v in env.items()}, task_count=tasks,
                             timeout=p.timeout(doc, where, MAX_TIMEOUT))
