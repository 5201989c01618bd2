"""Cloud Functions entry points. Each one parses, authenticates, calls one step and
maps errors to status codes; everything else lives in the `freshet` package."""

import functions_framework

from freshet.core.settings import settings
from freshet.core.timeutil import isoformat, utcnow
from freshet.gcp.store import Store
from freshet.gcp.tasks import TaskQueue
from freshet.loop import plugins
from freshet.loop.recover import sweep_once
from freshet.loop.run import handle_one
from freshet.loop.tick import tick_once
from freshet.ops.web import control_entry, json_body, json_response

plugins.import_sync_modules(plugins.env_modules())

_queue: TaskQueue | None = None


def _task_queue() -> TaskQueue:
    global _queue
    if _queue is None:
        _queue = TaskQueue(settings())
    return _queue


@functions_framework.http
@control_entry
def scheduler_tick(request):
    now = utcnow()
    store = Store()
    result = tick_once(store, _task_queue(), now=now, settings=settings())
    store.put_heartbeat("tick", {"at": now, **result.to_dict()})
    return json_response(200, {"now": isoformat(now), **result.to_dict()})


@functions_framework.http
@control_entry
def run_task(request):
    from freshet.loop.delivery import parse_delivery

    run_id, attempt = parse_delivery(request.headers, json_body(request))
    outcome = handle_one(Store(), _task_queue(), run_id, attempt, now=utcnow(),
                         settings=settings())
    return json_response(outcome.status, {"run_id": run_id, "attempt": attempt,
                                          **outcome.to_dict()})


@functions_framework.http
@control_entry
def recover_stuck_runs(request):
    now = utcnow()
    store = Store()
    result = sweep_once(store, _task_queue(), now=now, settings=settings())
    store.put_heartbeat("recover", {"at": now, **result.to_dict()})
    return json_response(200, {"now": isoformat(now), **result.to_dict()})


@functions_framework.http
def publish_status(request):
    from freshet.status.publish import publish_status as publish

    return publish(request)


@functions_framework.http
def api(request):
    from freshet.ops.api import api as handle

    return handle(request)
