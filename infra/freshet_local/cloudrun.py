"""A local stand-in for the Cloud Run Admin API v2, exactly the part Freshet calls, whose
executions run a local command. Google ships no emulator (googleapis/google-cloud-python
#12138 was closed), so this is driven through the official `google-cloud-run` client's
REST transport, and answers in the shapes of Google's REST reference:

  jobs.run            POST /v2/{name=projects/*/locations/*/jobs/*}:run
      https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.jobs/run
      -> a long-running Operation whose `metadata` is the Execution
  operations.get      GET /v2/{name=projects/*/locations/*/operations/*}
      https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.operations/get
  executions.get      GET /v2/{name=projects/*/locations/*/jobs/*/executions/*}
      https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.jobs.executions/get
  executions.list     GET /v2/{parent=projects/*/locations/*/jobs/*}/executions
      https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.jobs.executions/list
  executions.cancel   POST /v2/{name=projects/*/locations/*/jobs/*/executions/*}:cancel
      https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.jobs.executions/cancel
  jobs.getIamPolicy   GET /v2/{resource=projects/*/locations/*/jobs/*}:getIamPolicy
      https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.jobs/getIamPolicy
      -> a Policy (https://cloud.google.com/iam/docs/reference/rest/v1/Policy): the
      job's configured `bindings` {role: [members]}
  the Execution       https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.jobs.executions#Execution

The client asks for `$alt=json;enum-encoding=int`, so enums (a Condition's `state`) are
integers. Jobs exist only as configured (Freshet never creates one: Cloud Run allows
1,000 per region): `{"jobs": {"projects/P/locations/R/jobs/J": {"command": [...],
"task_count": 1, "timeout": "600s", "env": {...}}}}`. An execution runs `command +
args` once per task (CLOUD_RUN_TASK_INDEX, CLOUD_RUN_TASK_COUNT, CLOUD_RUN_EXECUTION,
CLOUD_RUN_JOB and the overrides' env set), each in its own process group; a task that
outlives the timeout is killed and fails; cancel kills the running ones.

    python -m freshet_local.cloudrun --config jobs.json [--host H] [--port N]

prints `READY host:port` and serves until SIGTERM or its stdin closes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

# google.cloud.run.v2.Condition.State
CONDITION_PENDING, CONDITION_RECONCILING, CONDITION_FAILED, CONDITION_SUCCEEDED = 1, 2, 3, 4
LAUNCH_STAGE_GA = 6  # google.api.LaunchStage.GA
EXECUTION_TYPE = "type.googleapis.com/google.cloud.run.v2.Execution"
_JOB = r"projects/[^/]+/locations/[^/]+/jobs/[^/:]+"
_ROUTES = [
    ("POST", re.compile(rf"^/v2/({_JOB}):run$"), "run"),
    ("GET", re.compile(r"^/v2/(projects/[^/]+/locations/[^/]+/operations/[^/]+)$"), "operation"),
    ("GET", re.compile(rf"^/v2/({_JOB}/executions/[^/:]+)$"), "get"),
    ("POST", re.compile(rf"^/v2/({_JOB}/executions/[^/:]+):cancel$"), "cancel"),
    ("GET", re.compile(rf"^/v2/({_JOB})/executions$"), "list"),
    ("GET", re.compile(rf"^/v2/({_JOB}):getIamPolicy$"), "policy"),
]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _seconds(text: str | None, default: float) -> float:
    if not text:
        return default
    match = re.fullmatch(r"(\d+(?:\.\d+)?)s", text.strip())
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    return float(match.group(1))


class ApiError(Exception):
    def __init__(self, code: int, status: str, message: str):
        super().__init__(message)
        self.code, self.status, self.message = code, status, message

    def body(self) -> dict:
        # https://cloud.google.com/apis/design/errors#http_mapping
        return {"error": {"code": self.code, "message": self.message, "status": self.status}}


@dataclass
class JobConfig:
    command: list[str]
    task_count: int = 1
    timeout_s: float = 600.0
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    image: str = "local"
    bindings: dict[str, list[str]] = field(default_factory=dict)  # role -> members


@dataclass
class Execution:
    name: str
    job: str
    uid: str
    task_count: int
    timeout_s: float
    args: list[str]
    env: dict[str, str]
    image: str
    create_time: str
    operation: str
    procs: list[subprocess.Popen] = field(default_factory=list)
    outcomes: dict[int, str] = field(default_factory=dict)  # task -> succeeded|failed|cancelled
    start_time: str = ""
    completion_time: str = ""
    cancelled: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def counts(self) -> dict[str, int]:
        done = list(self.outcomes.values())
        running = sum(1 for i, p in enumerate(self.procs)
                      if i not in self.outcomes and p.poll() is None)
        return {"runningCount": running, "succeededCount": done.count("succeeded"),
                "failedCount": done.count("failed"), "cancelledCount": done.count("cancelled")}

    def resource(self) -> dict:
        counts = {k: v for k, v in self.counts().items() if v}  # proto3 JSON omits zeros
        done = bool(self.completion_time)
        ok = done and self.counts()["succeededCount"] == self.task_count
        if not done:
            condition = {"type": "Completed", "state": CONDITION_RECONCILING,
                         "lastTransitionTime": self.start_time or self.create_time}
        elif ok:
            condition = {"type": "Completed", "state": CONDITION_SUCCEEDED,
                         "lastTransitionTime": self.completion_time}
        else:
            c = self.counts()
            why = ("The execution was cancelled." if self.cancelled else
                   f"Task(s) failed: {c['failedCount']} of {self.task_count}.")
            condition = {"type": "Completed", "state": CONDITION_FAILED,
                         "lastTransitionTime": self.completion_time, "message": why}
        project, _, region, _, job = self.job.split("/")[1:6]
        doc = {
            "name": self.name, "uid": self.uid, "generation": "1",
            "labels": {"run.googleapis.com/jobName": job},  # output only: the job's
            "createTime": self.create_time, "job": job,
            "launchStage": LAUNCH_STAGE_GA, "parallelism": self.task_count,
            "taskCount": self.task_count,
            # an Execution's template is a TaskTemplate (a Job's is an ExecutionTemplate)
            "template": {"containers": [{"image": self.image, "args": self.args,
                                         "env": [{"name": k, "value": v}
                                                 for k, v in self.env.items()]}],
                         "timeout": f"{self.timeout_s:g}s", "maxRetries": 0},
            "reconciling": not done, "conditions": [condition],
            "observedGeneration": "1",
            "logUri": (f"https://console.cloud.google.com/logs/viewer?project={project}"
                       f"&resource=cloud_run_job/location/{region}&execution={self.uid}"),
            "etag": f'"{self.uid[:8]}-{len(self.outcomes)}"',
            **counts,
        }
        if self.start_time:
            doc["startTime"] = self.start_time
        if done:
            doc["completionTime"] = self.completion_time
        return doc


class CloudRunStandIn:
    """The API's state: configured jobs, their executions, the operations."""

    def __init__(self, jobs: dict[str, JobConfig], log_dir: Path):
        self.jobs = jobs
        self.log_dir = log_dir
        self.executions: dict[str, Execution] = {}
        self.operations: dict[str, str] = {}  # operation name -> execution name
        self.lock = threading.Lock()
        self.run_requests: list[dict] = []  # for tests: what jobs.run received

    # -- jobs.run -------------------------------------------------------------------

    def run(self, job: str, body: dict) -> dict:
        config = self.jobs.get(job)
        if config is None:
            raise ApiError(404, "NOT_FOUND", f"Resource '{job.rsplit('/', 1)[-1]}' of kind "
                           f"'JOB' in region '{job.split('/')[3]}' in project "
                           f"'{job.split('/')[1]}' does not exist.")
        overrides = body.get("overrides") or {}
        containers = overrides.get("containerOverrides") or [{}]
        if len(containers) > 1:
            raise ApiError(400, "INVALID_ARGUMENT", "one container only in this stand-in")
        over = containers[0]
        args = list(config.args)
        if over.get("clearArgs"):
            args = []
        if over.get("args"):
            args = list(over["args"])
        env = {**config.env, **{e["name"]: e.get("value", "") for e in over.get("env", [])}}
        task_count = int(overrides.get("taskCount") or config.task_count)
        if not 1 <= task_count <= 10_000:
            raise ApiError(400, "INVALID_ARGUMENT", "taskCount must be between 1 and 10000")
        timeout_s = _seconds(overrides.get("timeout"), config.timeout_s)
        project, _, region = job.split("/")[1:4]
        short = job.rsplit("/", 1)[-1]
        name = f"{job}/executions/{short}-{secrets.token_hex(3)[:5]}"
        operation = f"projects/{project}/locations/{region}/operations/{uuid.uuid4()}"
        execution = Execution(name=name, job=job, uid=str(uuid.uuid4()), task_count=task_count,
                              timeout_s=timeout_s, args=args, env=env, image=config.image,
                              create_time=_now(), operation=operation)
        with self.lock:
            self.run_requests.append({"job": job, "body": body})
            self.executions[name] = execution
            self.operations[operation] = name
        self._start(execution, config)
        return self._operation(operation)

    def _start(self, execution: Execution, config: JobConfig) -> None:
        execution.start_time = _now()
        for index in range(execution.task_count):
            env = {**os.environ, **execution.env, "CLOUD_RUN_JOB": execution.job.rsplit("/")[-1],
                   "CLOUD_RUN_EXECUTION": execution.name.rsplit("/")[-1],
                   "CLOUD_RUN_TASK_INDEX": str(index),
                   "CLOUD_RUN_TASK_COUNT": str(execution.task_count),
                   "CLOUD_RUN_TASK_ATTEMPT": "0"}
            log = open(self.log_dir / f"{execution.uid}-{index}.log", "wb")  # noqa: SIM115
            proc = subprocess.Popen([*config.command, *execution.args], env=env,
                                    stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            log.close()
            execution.procs.append(proc)
            threading.Thread(target=self._watch, args=(execution, index, proc),
                             daemon=True).start()

    def _watch(self, execution: Execution, index: int, proc: subprocess.Popen) -> None:
        try:
            code = proc.wait(execution.timeout_s)
        except subprocess.TimeoutExpired:
            _kill(proc)
            code = None
        with execution.lock:
            if index not in execution.outcomes:
                execution.outcomes[index] = ("cancelled" if execution.cancelled else
                                             "succeeded" if code == 0 else "failed")
            if len(execution.outcomes) == execution.task_count and not execution.completion_time:
                execution.completion_time = _now()

    # -- the rest -------------------------------------------------------------------

    def _operation(self, name: str) -> dict:
        execution = self.executions[self.operations[name]]
        resource = {"@type": EXECUTION_TYPE, **execution.resource()}
        doc = {"name": name, "metadata": resource, "done": bool(execution.completion_time)}
        if doc["done"]:
            doc["response"] = resource
        return doc

    def operation(self, name: str) -> dict:
        if name not in self.operations:
            raise ApiError(404, "NOT_FOUND", f"Operation {name} not found.")
        return self._operation(name)

    def _execution(self, name: str) -> Execution:
        execution = self.executions.get(name)
        if execution is None:
            raise ApiError(404, "NOT_FOUND", f"Execution {name.rsplit('/', 1)[-1]} not found.")
        return execution

    def get(self, name: str) -> dict:
        return self._execution(name).resource()

    def cancel(self, name: str) -> dict:
        execution = self._execution(name)
        with execution.lock:
            if execution.completion_time:
                raise ApiError(400, "FAILED_PRECONDITION",
                               f"Execution {name.rsplit('/', 1)[-1]} has already completed.")
            execution.cancelled = True
            for index, proc in enumerate(execution.procs):
                if index not in execution.outcomes:
                    execution.outcomes[index] = "cancelled"
                    _kill(proc)
            execution.completion_time = _now()
        return self._operation(execution.operation)

    def list(self, job: str, query: dict[str, list[str]]) -> dict:
        if job not in self.jobs:
            raise ApiError(404, "NOT_FOUND", f"Job {job.rsplit('/', 1)[-1]} not found.")
        found = sorted((e for e in self.executions.values() if e.job == job),
                       key=lambda e: e.create_time, reverse=True)
        size = int((query.get("pageSize") or ["100"])[0]) or 100
        start = int((query.get("pageToken") or ["0"])[0] or 0)
        page = found[start:start + size]
        doc: dict = {"executions": [e.resource() for e in page]}
        if start + size < len(found):
            doc["nextPageToken"] = str(start + size)
        return doc

    def policy(self, job: str) -> dict:
        config = self.jobs.get(job)
        if config is None:
            raise ApiError(404, "NOT_FOUND", f"Job {job.rsplit('/', 1)[-1]} not found.")
        bindings = [{"role": role, "members": sorted(members)}
                    for role, members in sorted(config.bindings.items()) if members]
        return {"version": 1, "etag": "BwYAAAAAAAA=", **({"bindings": bindings}
                                                         if bindings else {})}

    def stop(self) -> None:
        for execution in list(self.executions.values()):
            for proc in execution.procs:
                _kill(proc)


def _kill(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def make_server(api: CloudRunStandIn, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self):
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}") if length else {}
                for method, pattern, action in _ROUTES:
                    match = pattern.match(url.path)
                    if method == self.command and match:
                        arg = match.group(1)
                        if action == "run":
                            result = api.run(arg, body)
                        elif action == "list":
                            result = api.list(arg, parse_qs(url.query))
                        else:
                            result = getattr(api, action)(arg)
                        return self._answer(200, result)
                raise ApiError(404, "NOT_FOUND", f"no route for {self.command} {url.path}")
            except ApiError as err:
                return self._answer(err.code, err.body())
            except (ValueError, KeyError, TypeError) as err:
                return self._answer(400, ApiError(400, "INVALID_ARGUMENT", str(err)).body())

        do_GET = do_POST = _serve  # noqa: N815

        def _answer(self, code: int, doc: dict) -> None:
            data = json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt, *args):
            sys.stderr.write("cloudrun: " + (fmt % args) + "\n")

    return ThreadingHTTPServer((host, port), Handler)


def load_jobs(path: Path) -> dict[str, JobConfig]:
    doc = json.loads(Path(path).read_text())
    jobs = {}
    for name, raw in (doc.get("jobs") or {}).items():
        if not re.fullmatch(_JOB, name):
            raise ValueError(f"{path}: jobs: {name!r} is not projects/P/locations/R/jobs/J")
        jobs[name] = JobConfig(command=list(raw["command"]),
                               task_count=int(raw.get("task_count", 1)),
                               timeout_s=_seconds(raw.get("timeout"), 600.0),
                               env=dict(raw.get("env") or {}), args=list(raw.get("args") or []),
                               image=raw.get("image", "local"),
                               bindings={str(k): list(v) for k, v
                                         in (raw.get("bindings") or {}).items()})
    return jobs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m freshet_local.cloudrun",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    api = CloudRunStandIn(load_jobs(args.config),
                          Path(tempfile.mkdtemp(prefix="freshet-cloudrun-logs-")))
    server = make_server(api, args.host, args.port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"READY {shown}:{server.server_address[1]}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    stop.wait()
    api.stop()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
