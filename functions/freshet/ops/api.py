"""The management API: one HTTP function, JSON in and out (described in openapi.yaml).

    GET  /jobs  /jobs/{job_id}        POST /jobs                (create)
    POST /jobs/{job_id}/run | pause | resume | archive
    POST /jobs/{job_id}/pause  {"reason": ..., "until": "2h" | a time}
    GET  /runs?job_id=&state=&since=&until=&limit=&cursor=  /runs/{run_id}
    POST /runs/{run_id}/cancel | retry      GET /overview?state=&pool=&owner=&kind=&q=
    GET  /maintenance   POST /maintenance  {"minutes": N, "note": ...}
    POST /maintenance/{window_id}/end       (ad-hoc windows; declared ones are the config's)
    GET  /datasets  /datasets/{key}   GET /consumers   GET /status   GET|PUT /control
    GET  /backfills  /backfills/{backfill_id}   POST /backfills (or dry run)
    POST /backfills/{backfill_id}/cancel
    GET  /incidents  /incidents/{id}  POST /incidents        (open)
    POST /incidents/{id}/notes | resolve

Every error is JSON `{"error": {"field": ..., "message": ...}}` with a 4xx status
whose message names the field; a rejected request changes nothing; no traceback
ever leaves the process (a bug answers 500 and the log has the details).
"""

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta

from werkzeug.exceptions import MethodNotAllowed
from werkzeug.exceptions import NotFound as NoRoute
from werkzeug.routing import Map, Rule

from freshet.core.backfill import check_max_parallel
from freshet.core.bookkeeping import with_running
from freshet.core.control import parse_control
from freshet.core.errors import NotFound, ValidationError
from freshet.core.incidents import parse_scope
from freshet.core.limits import check_job
from freshet.core.models import JOB_STATUSES, check_dataset_key, check_id, new_job
from freshet.core.timeutil import isoformat, parse_datetime
from freshet.core.values import check_bool
from freshet.loop import backfill as backfills
from freshet.loop.engines import process_engines
from freshet.loop.poll import cancel_work
from freshet.loop.registry import CheckContext, check_params
from freshet.ops import incidents as incident_ops
from freshet.ops import operations
from freshet.ops.config import JOB_KEYS
from freshet.ops.overview import Filters, overview
from freshet.ops.views import (
    all_datasets,
    backfill_json,
    consumers_json,
    dataset_json,
    job_json,
    maintenance_json,
    plan_json,
    run_json,
    status_summary,
    window_json,
)
from freshet.ops.web import Answer, Call, HttpError, json_body

MAX_LIMIT = 500


# -- routing ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Route:
    method: str
    pattern: str  # OpenAPI style: /jobs/{job_id}
    handler: Callable[[Call], Answer]


def route(call: Call) -> Answer:
    """The API's step (after authentication): match the route, call its handler."""
    path = call.request.path.rstrip("/") or "/"
    # Reached as https://REGION-PROJECT.cloudfunctions.net/api/jobs the path may keep /api.
    if path == "/api" or path.startswith("/api/"):
        path = path[4:] or "/"
    try:
        handler, params = _ROUTING.match(path, call.request.method)
    except MethodNotAllowed as exc:
        allowed = [m for m in exc.valid_methods or () if m in _METHODS]
        raise HttpError(405, "method", f"method {call.request.method} is not allowed on "
                        f"{path} (allowed: {', '.join(allowed)})",
                        {"Allow": ", ".join(allowed)}) from None
    except NoRoute:
        raise HttpError(404, "path", f"no such route: {path}") from None
    return handler(replace(call, params=params))


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
    return 200, {"job": job_json(job), "recent_runs": [run_json(r, call.deps.settings.project)
                                                     for r in runs]}


def create_job(call: Call):
    query(call, ())
    body = json_body(call.request, JOB_KEYS)
    for key in ("id", "kind"):
        if key not in body:
            raise ValidationError(key, "is required")
    job = new_job(**body)  # a schedule, a trigger, or both
    egress = call.store.control().egress  # the applied http_fetch: policy
    check_params(job.kind, dict(job.params), CheckContext(egress=egress))  # as apply does
    settings = call.deps.settings  # a job must fit one Cloud Tasks delivery, as in apply
    check_job(stuck_threshold_minutes=job.stuck_threshold_minutes,
              expected_runtime_minutes=job.expected_runtime_minutes,
              default_stuck_minutes=settings.default_stuck_minutes,
              dispatch_deadline=timedelta(seconds=settings.dispatch_deadline_s))
    operations.check_new_job(call.store, job)
    created = operations.create_job(call.store, job, now=call.now)  # with its triggers
    return 201, {"job": job_json(created)}


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
    return (201 if created else 200), {"run": run_json(run, call.deps.settings.project),
                                       "created": created}


def _job_action(action):
    def handler(call: Call):
        query(call, ())
        json_body(call.request, ())
        return 200, {"job": job_json(action(call.store, _job_id(call), now=call.now))}

    handler.__name__ = action.__name__
    return handler


def pause_job(call: Call):
    query(call, ())
    body = json_body(call.request, ("reason", "until"))
    job = operations.pause_job(call.store, _job_id(call), reason=body.get("reason"),
                               until=body.get("until"), by=call.caller, now=call.now)
    return 200, {"job": job_json(job)}


def list_runs(call: Call):
    """Newest first, a page at a time: `next_cursor` asks for the next page."""
    q = query(call, ("job_id", "limit", "state", "since", "until", "cursor"))
    job_id = check_id(q["job_id"], "job_id") if "job_id" in q else None
    states = tuple(s for s in q.get("state", "").split(",") if s)
    if len(states) > 10:
        raise ValidationError("state", "names at most 10 states")
    runs, cursor = operations.runs_page(
        call.store, job_id=job_id, states=states,
        since=parse_datetime(q["since"], "since") if "since" in q else None,
        until=parse_datetime(q["until"], "until") if "until" in q else None,
        cursor=q.get("cursor"), limit=limit_param(q.get("limit")))
    return 200, {"runs": [run_json(r, call.deps.settings.project) for r in runs],
                 "next_cursor": cursor}


def _run_id(call: Call) -> str:
    run_id = call.params["run_id"]
    if len(run_id) > 500:
        raise ValidationError("run_id", "is longer than 500 characters")
    return run_id


def cancel_run(call: Call):
    query(call, ())
    json_body(call.request, ())
    run = operations.cancel_run(call.store, _run_id(call), by=call.caller, now=call.now)
    if run.external is not None and run.external.cancelled_at is None:
        # a waiting run's work: stopped now, not at its next poll (which asks again)
        cancel_work(run, _engines(call.deps))
    return 200, {"run": run_json(run, call.deps.settings.project)}


def _engines(deps):
    """The engines a cancel asks to stop waiting runs' work: the Deps', else the process's."""
    return getattr(deps, "engines", None) or process_engines(deps.settings)


def retry_run(call: Call):
    from freshet.loop.manual import retry_run as retry

    query(call, ())
    json_body(call.request, ())
    run, created = retry(call.store, call.deps.task_queue, _run_id(call), now=call.now,
                         settings=call.deps.settings)
    return (201 if created else 200), {"run": run_json(run, call.deps.settings.project),
                                       "created": created}


def get_overview(call: Call):
    q = query(call, ("state", "pool", "owner", "kind", "q", "limit", "cursor"))
    filters = Filters(**{k: q.get(k) or None for k in ("state", "pool", "owner", "kind", "q")})
    return 200, overview(call.store, call.now, filters, cursor=q.get("cursor"),
                         limit=limit_param(q.get("limit"), default=50))


def list_maintenance(call: Call):
    query(call, ())
    return 200, maintenance_json(call.store, call.now)


def open_window(call: Call):
    query(call, ())
    body = json_body(call.request, ("minutes", "note", "mode", "scope"))
    for key in ("minutes", "note"):
        if key not in body:
            raise ValidationError(key, "is required")
    scope = parse_scope(body.get("scope"))
    incident_ops.check_scope(call.store, scope)
    window = operations.open_window(call.store, minutes=body["minutes"], note=body["note"],
                                    by=call.caller, scope=scope, mode=body.get("mode", "skip"),
                                    now=call.now)
    return 201, {"window": window_json(window, adhoc=True, now=call.now)}


def end_window(call: Call):
    query(call, ())
    json_body(call.request, ())
    window_id = check_id(call.params["window_id"], "window_id")
    operations.end_window(call.store, window_id, now=call.now)
    return 200, maintenance_json(call.store, call.now)


def get_run(call: Call):
    query(call, ())
    return 200, {"run": run_json(call.store.run(_run_id(call)), call.deps.settings.project)}


def list_datasets(call: Call):
    query(call, ())
    return 200, {"now": isoformat(call.now), "datasets": all_datasets(call.store, call.now)}


def list_consumers(call: Call):
    query(call, ())
    return 200, {"now": isoformat(call.now), "consumers": consumers_json(call.store, call.now)}


def get_dataset(call: Call):
    query(call, ())
    key = check_dataset_key(call.params["key"], "key")
    catalog = call.store.catalog()
    jobs = [j for j in call.store.list_jobs() if key in j.produces]
    stored = call.store.get_dataset(key)
    # as shown: running from its jobs (a first refresh under way, before any document)
    dataset = next(iter(with_running([stored] if stored else [], jobs)), None)
    if dataset is None and key not in catalog.datasets:
        raise NotFound("dataset", key)
    control = call.store.control()
    producers = tuple(j.id for j in jobs)
    return 200, {"dataset": dataset_json(key, dataset, catalog, call.now, control.maintenance,
                                         producers)}


def get_status(call: Call):
    query(call, ())
    return 200, status_summary(call.store, call.deps.settings, call.now)


def list_backfills(call: Call):
    q = query(call, ("job_id", "limit"))
    job_id = check_id(q["job_id"], "job_id") if "job_id" in q else None
    views = backfills.recent_views(call.store, job_id=job_id,
                                   limit=limit_param(q.get("limit"), default=20))
    return 200, {"backfills": [backfill_json(v.backfill, v.progress) for v in views]}


BACKFILL_KEYS = ("job_id", "from", "to", "max_parallel", "rerun", "dry_run", "idempotency_key")


def create_backfill(call: Call):
    query(call, ())
    body = json_body(call.request, BACKFILL_KEYS)
    for key in ("job_id", "from", "to"):
        if key not in body:
            raise ValidationError(key, "is required")
    job_id = check_id(body["job_id"], "job_id")
    start, end = parse_datetime(body["from"], "from"), parse_datetime(body["to"], "to")
    flags = {k: body.get(k, False) for k in ("rerun", "dry_run")}
    for name, value in flags.items():
        check_bool(value, name)
    parallel = check_max_parallel(body.get("max_parallel", 1))
    key = body.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= 200):
        raise ValidationError("idempotency_key", "must be a string of 1-200 characters")
    if flags["dry_run"]:
        _, plan = backfills.plan_backfill(call.store, job_id, start, end, now=call.now,
                                          rerun=flags["rerun"])
        return 200, plan_json(job_id, start, end, flags["rerun"], parallel, plan)
    made, created = backfills.start_backfill(
        call.store, call.deps.task_queue, job_id, start, end, now=call.now,
        settings=call.deps.settings, max_parallel=parallel, rerun=flags["rerun"], key=key,
        requested_by=call.caller)
    view = backfills.backfill_view(call.store, made.id)
    return (201 if created else 200), {"backfill": backfill_json(view.backfill, view.progress),
                                       "created": created}


def _backfill_id(call: Call) -> str:
    ident = call.params["backfill_id"]
    if len(ident) > 300:
        raise ValidationError("backfill_id", "is longer than 300 characters")
    return ident


def get_backfill(call: Call):
    query(call, ())
    view = backfills.backfill_view(call.store, _backfill_id(call))
    return 200, {"backfill": backfill_json(view.backfill, view.progress)}


def cancel_backfill(call: Call):
    query(call, ())
    json_body(call.request, ())
    ident = _backfill_id(call)
    backfills.cancel_backfill(call.store, ident, now=call.now, who=call.caller,
                              engines=_engines(call.deps))
    view = backfills.backfill_view(call.store, ident)
    return 200, {"backfill": backfill_json(view.backfill, view.progress)}


def get_control(call: Call):
    query(call, ())
    return 200, {"control": call.store.control().to_doc()}


def put_control(call: Call):
    query(call, ())
    control = parse_control(json_body(call.request))
    call.store.set_control({**control.to_doc(), "updated_by": call.caller,
                            "updated_at": call.now})
    return 200, {"control": control.to_doc()}


# -- incidents -------------------------------------------------------------------------

_INCIDENT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")
INCIDENT_KEYS = ("title", "note", "scope", "eta")


def _incident_id(call: Call) -> str:
    value = call.params["incident_id"]
    if not _INCIDENT_ID.match(value):
        raise ValidationError("incident_id", "is not an incident id")
    return value


def list_incidents(call: Call):
    query(call, ())
    return 200, {"incidents": [i.to_json() for i in incident_ops.recent(call.store, call.now)]}


def get_incident(call: Call):
    query(call, ())
    incident_id = _incident_id(call)
    incident = call.store.get_incident(incident_id)
    if incident is None:
        raise NotFound("incident", incident_id)
    return 200, {"incident": incident.to_json()}


def open_incident(call: Call):
    query(call, ())
    body = json_body(call.request, INCIDENT_KEYS)
    if "title" not in body:
        raise ValidationError("title", "is required")
    incident, created = incident_ops.open_incident(
        call.store, title=body["title"], note=body.get("note"),
        scope=parse_scope(body.get("scope")), eta=body.get("eta"), author=call.caller,
        now=call.now)
    return (201 if created else 200), {"incident": incident.to_json(), "created": created}


def note_incident(call: Call):
    query(call, ())
    body = json_body(call.request, ("text", "eta"))
    if "text" not in body:
        raise ValidationError("text", "is required")
    incident = incident_ops.add_note(call.store, _incident_id(call), text=body["text"],
                                     eta=body.get("eta"), author=call.caller, now=call.now)
    return 200, {"incident": incident.to_json()}


def resolve_incident(call: Call):
    query(call, ())
    body = json_body(call.request, ("text",))
    incident = incident_ops.resolve(call.store, _incident_id(call), text=body.get("text"),
                                    author=call.caller, now=call.now)
    return 200, {"incident": incident.to_json()}


ROUTES = (  # the spec (openapi.yaml) is checked against this table both ways
    Route("GET", "/jobs", list_jobs),
    Route("POST", "/jobs", create_job),
    Route("GET", "/jobs/{job_id}", get_job),
    Route("POST", "/jobs/{job_id}/run", run_job),
    Route("POST", "/jobs/{job_id}/pause", pause_job),
    Route("POST", "/jobs/{job_id}/resume", _job_action(operations.resume_job)),
    Route("POST", "/jobs/{job_id}/archive", _job_action(operations.archive_job)),
    Route("GET", "/runs", list_runs),
    Route("GET", "/runs/{run_id}", get_run),
    Route("POST", "/runs/{run_id}/cancel", cancel_run),
    Route("POST", "/runs/{run_id}/retry", retry_run),
    Route("GET", "/overview", get_overview),
    Route("GET", "/maintenance", list_maintenance),
    Route("POST", "/maintenance", open_window),
    Route("POST", "/maintenance/{window_id}/end", end_window),
    Route("GET", "/datasets", list_datasets),
    Route("GET", "/datasets/{key}", get_dataset),
    Route("GET", "/consumers", list_consumers),
    Route("GET", "/status", get_status),
    Route("GET", "/backfills", list_backfills),
    Route("POST", "/backfills", create_backfill),
    Route("GET", "/backfills/{backfill_id}", get_backfill),
    Route("POST", "/backfills/{backfill_id}/cancel", cancel_backfill),
    Route("GET", "/control", get_control),
    Route("PUT", "/control", put_control),
    Route("GET", "/incidents", list_incidents),
    Route("POST", "/incidents", open_incident),
    Route("GET", "/incidents/{incident_id}", get_incident),
    Route("POST", "/incidents/{incident_id}/notes", note_incident),
    Route("POST", "/incidents/{incident_id}/resolve", resolve_incident),
)
_METHODS = {r.method for r in ROUTES}
_ROUTING = Map([Rule(re.sub(r"\{(\w+)\}", r"<\1>", r.pattern), methods=[r.method],
                     endpoint=r.handler) for r in ROUTES],
               strict_slashes=False).bind("api")
