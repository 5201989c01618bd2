"""The management API: one HTTP function, JSON in and out (described in openapi.yaml).

    GET  /jobs  /jobs/{job_id}        POST /jobs                (create)
    POST /jobs/{job_id}/run | pause | resume | archive
    GET  /runs?job_id=&limit=  /runs/{run_id}
    GET  /datasets  /datasets/{key}   GET /status   GET|PUT /control

Every error is JSON `{"error": {"field": ..., "message": ...}}` with a 4xx status
whose message names the field; a rejected request changes nothing; no traceback
ever leaves the process (a bug answers 500 and the log has the details).
"""

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import flask

from freshet.core.catalog import Catalog
from freshet.core.control import Control, parse_control
from freshet.core.errors import NotFound, ValidationError
from freshet.core.models import (
    JOB_STATUSES,
    check_dataset_key,
    check_id,
    new_job,
)
from freshet.core.settings import Settings
from freshet.core.settings import settings as process_settings
from freshet.core.timeutil import isoformat, utcnow
from freshet.gcp.store import Store
from freshet.gcp.tasks import TaskQueue
from freshet.loop.registry import known_kinds
from freshet.ops import operations
from freshet.ops.auth import CertCache, authenticate
from freshet.ops.config import JOB_KEYS
from freshet.ops.views import (
    all_datasets,
    dataset_json,
    job_json,
    run_json,
    status_summary,
)
from freshet.ops.web import HttpError, error_for, json_body, json_response

log = logging.getLogger(__name__)

MAX_LIMIT = 500


@dataclass
class Deps:
    """What a request needs; the process builds one, tests build their own."""

    store: Store
    task_queue: TaskQueue
    settings: Settings
    certs: CertCache | None = None
    clock: Callable[[], datetime] = field(default=utcnow)


_deps: Deps | None = None


def default_deps() -> Deps:
    global _deps
    if _deps is None:
        cfg = process_settings()
        _deps = Deps(store=Store(), task_queue=TaskQueue(cfg), settings=cfg)
    return _deps


def api(request: flask.Request) -> flask.Response:
    """The Cloud Functions entry point (functions/main.py calls this)."""
    return handle(request, default_deps())


# -- routing -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Route:
    method: str
    pattern: str  # OpenAPI style: /jobs/{job_id}
    handler: Callable

    @property
    def regex(self) -> re.Pattern:
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.pattern) + "$")


@dataclass
class Call:
    request: flask.Request
    deps: Deps
    now: datetime
    caller: str
    params: dict[str, str]

    @property
    def store(self) -> Store:
        return self.deps.store


def handle(request: flask.Request, deps: Deps) -> flask.Response:
    try:
        route, params = _match(request)
        caller = authenticate(request, deps.settings, certs=deps.certs)
        status, body = route.handler(Call(request, deps, deps.clock(), caller, params))
        return json_response(status, body)
    except Exception as exc:
        return error_for(exc, f"api {request.method} {request.path}")


def _path(request: flask.Request) -> str:
    path = request.path.rstrip("/") or "/"
    # Reached as https://REGION-PROJECT.cloudfunctions.net/api/jobs the path may keep /api.
    if path == "/api" or path.startswith("/api/"):
        path = path[4:] or "/"
    return path


def _match(request: flask.Request) -> tuple[Route, dict[str, str]]:
    path, allowed = _path(request), []
    for route in ROUTES:
        found = route.regex.match(path)
        if found:
            if route.method == request.method:
                return route, found.groupdict()
            allowed.append(route.method)
    if allowed:
        raise HttpError(405, "method", f"method {request.method} is not allowed on {path} "
                        f"(allowed: {', '.join(allowed)})", {"Allow": ", ".join(allowed)})
    raise HttpError(404, "path", f"no such route: {path}")


# -- input -----------------------------------------------------------------------------

def query(call: Call, allowed: tuple[str, ...]) -> dict[str, str]:
    args = call.request.args
    for key in args:
        if key not in allowed:
            raise ValidationError(key, "unknown query parameter")
        if len(args.getlist(key)) > 1:
            raise ValidationError(key, "given more than once")
    return {k: args[k] for k in args}


def limit_param(value: str | None, default: int = 50) -> int:
    if value is None:
        return default
    if not re.fullmatch(r"[0-9]{1,4}", value) or not 1 <= int(value) <= MAX_LIMIT:
        raise ValidationError("limit", f"must be an integer from 1 to {MAX_LIMIT}")
    return int(value)


# -- handlers --------------------------------------------------------------------------

def _job_id(call: Call) -> str:
    return check_id(call.params["job_id"], "job_id")


def list_jobs(call: Call):
    q = query(call, ("status",))
    status = q.get("status")
    if status is not None and status not in JOB_STATUSES:
        raise ValidationError("status", f"must be one of {', '.join(JOB_STATUSES)}")
    jobs = sorted(call.store.list_jobs(status), key=lambda j: j.id)
    return 200, {"jobs": [job_json(j) for j in jobs]}


def get_job(call: Call):
    query(call, ())
    job = call.store.job(_job_id(call))
    runs = call.store.recent_runs(job_id=job.id, limit=10)
    return 200, {"job": job_json(job), "recent_runs": [run_json(r) for r in runs]}


def create_job(call: Call):
    query(call, ())
    body = json_body(call.request, JOB_KEYS)
    for key in ("id", "kind", "schedule"):
        if key not in body:
            raise ValidationError(key, "is required")
    job = new_job(**body)
    if job.kind not in known_kinds():
        raise ValidationError("kind", f"unknown kind {job.kind!r} (known: "
                              f"{', '.join(known_kinds())})")
    return 201, {"job": job_json(operations.create_job(call.store, job, now=call.now))}


def run_job(call: Call):
    from freshet.loop.manual import run_now

    query(call, ())
    job_id = _job_id(call)
    body = json_body(call.request, ("idempotency_key",))
    key = body.get("idempotency_key", call.request.headers.get("Idempotency-Key"))
    if key is not None and (not isinstance(key, str) or not key.strip()):
        raise ValidationError("idempotency_key", "must be a non-empty string")
    run, created = run_now(call.store, call.deps.task_queue, job_id, now=call.now,
                           settings=call.deps.settings, idempotency_key=key, source="api")
    return (201 if created else 200), {"run": run_json(run), "created": created}


def _job_action(action):
    def handler(call: Call):
        query(call, ())
        json_body(call.request, ())
        return 200, {"job": job_json(action(call.store, _job_id(call), now=call.now))}

    handler.__name__ = action.__name__
    return handler


def list_runs(call: Call):
    q = query(call, ("job_id", "limit"))
    job_id = check_id(q["job_id"], "job_id") if "job_id" in q else None
    runs = call.store.recent_runs(job_id=job_id, limit=limit_param(q.get("limit")))
    return 200, {"runs": [run_json(r) for r in runs]}


def get_run(call: Call):
    query(call, ())
    run_id = call.params["run_id"]
    if len(run_id) > 500:
        raise ValidationError("run_id", "is longer than 500 characters")
    return 200, {"run": run_json(call.store.run(run_id))}


def list_datasets(call: Call):
    query(call, ())
    return 200, {"now": isoformat(call.now), "datasets": all_datasets(call.store, call.now)}


def get_dataset(call: Call):
    query(call, ())
    key = check_dataset_key(call.params["key"], "key")
    catalog = Catalog.from_doc(call.store.catalog_doc())
    dataset = call.store.get_dataset(key)
    if dataset is None and key not in catalog.datasets:
        raise NotFound("dataset", key)
    return 200, {"dataset": dataset_json(key, dataset, catalog, call.now)}


def get_status(call: Call):
    query(call, ())
    return 200, status_summary(call.store, call.deps.settings, call.now)


def get_control(call: Call):
    query(call, ())
    return 200, {"control": Control.from_doc(call.store.control()).to_doc()}


def put_control(call: Call):
    query(call, ())
    control = parse_control(json_body(call.request))
    call.store.set_control({**control.to_doc(), "updated_by": call.caller,
                            "updated_at": call.now})
    return 200, {"control": control.to_doc()}


ROUTES = (
    Route("GET", "/jobs", list_jobs),
    Route("POST", "/jobs", create_job),
    Route("GET", "/jobs/{job_id}", get_job),
    Route("POST", "/jobs/{job_id}/run", run_job),
    Route("POST", "/jobs/{job_id}/pause", _job_action(operations.pause_job)),
    Route("POST", "/jobs/{job_id}/resume", _job_action(operations.resume_job)),
    Route("POST", "/jobs/{job_id}/archive", _job_action(operations.archive_job)),
    Route("GET", "/runs", list_runs),
    Route("GET", "/runs/{run_id}", get_run),
    Route("GET", "/datasets", list_datasets),
    Route("GET", "/datasets/{key}", get_dataset),
    Route("GET", "/status", get_status),
    Route("GET", "/control", get_control),
    Route("PUT", "/control", put_control),
)
