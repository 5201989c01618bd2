"""What each HTTP entry point does once the caller is authenticated: parse the request,
call one step of the loop (or publish, or the API), and say what happened as JSON.

functions/main.py wires each of these to a Cloud Function through freshet.ops.web.serve.
"""

import logging
import time

from freshet.core import logcontext
from freshet.core.errors import ValidationError
from freshet.core.herd import ShardTask
from freshet.core.runs import job_of_run
from freshet.core.timeutil import isoformat
from freshet.core.values import check_bool
from freshet.loop.delivery import parse_delivery, parse_poll
from freshet.loop.observe import BUDGET_S as OBSERVE_BUDGET_S
from freshet.loop.observe import observe_once
from freshet.loop.poll import poll_one
from freshet.loop.recover import sweep_once
from freshet.loop.run import handle_one
from freshet.loop.tick import claim_shard_once, tick_once
from freshet.ops import api as api_routes
from freshet.ops.web import Answer, Call, json_body
from freshet.status.publish import publish_once

log = logging.getLogger(__name__)

SCHEDULER_KEYS = ("schedule", "target")  # what a Cloud Scheduler job's body says of itself


def scheduler_tick(call: Call) -> Answer:
    """Every minute from Cloud Scheduler; and the claim handler: a body with
    `claim_shard` is a claim shard the tick fanned out through Cloud Tasks. After its
    own work the tick runs the observe pass when one is due (one document read when
    none is: freshet.loop.observe)."""
    started = time.monotonic()
    body = json_body(call.request)
    if "claim_shard" in body:
        return _claim_shard(call, ShardTask.from_json(body))
    status, answer = _loop_step(call, "tick", tick_once)
    left = call.deps.settings.tick_budget_s - (time.monotonic() - started)
    return status, {**answer, "observe": _observe(call, min(OBSERVE_BUDGET_S, left))}


def _observe(call: Call, budget_s: float) -> dict:
    """The observe pass; its failure is logged and said, never the tick's (the runs
    the tick created stand, and the next tick observes again)."""
    deps = call.deps
    try:
        return observe_once(deps.store, deps.task_queue, now=call.now,
                            settings=deps.settings, reader=deps.observer,
                            budget_s=max(0.0, budget_s)).to_dict()
    except Exception as exc:
        log.exception("the observe pass failed")
        return {"ran": True, "error": type(exc).__name__}


def _claim_shard(call: Call, task: ShardTask) -> Answer:
    deps = call.deps
    result = claim_shard_once(deps.store, deps.task_queue, task, now=call.now,
                              settings=deps.settings)
    return 200, {"now": isoformat(call.now), "claim_shard": task.shard, "seq": task.seq,
                 **result.to_dict()}


def run_task(call: Call) -> Answer:
    deps = call.deps
    body = json_body(call.request)
    if "poll" in body:
        return _poll(call, body)
    run_id, attempt = parse_delivery(call.request.headers, body)
    # Every line logged for this delivery carries the run, its job and the attempt.
    with logcontext.labels(run_id=run_id, job_id=job_of_run(run_id), attempt=attempt):
        outcome = handle_one(deps.store, deps.task_queue, run_id, attempt, now=call.now,
                             settings=deps.settings, clock=deps.clock,
                             snapshots=deps.snapshots, engines=deps.engines)
    return outcome.status, {"run_id": run_id, "attempt": attempt, **outcome.to_dict()}


def _poll(call: Call, body: dict) -> Answer:
    """A follow-up task polling a waiting run's engine."""
    deps = call.deps
    run_id, attempt, poll = parse_poll(body)
    with logcontext.labels(run_id=run_id, job_id=job_of_run(run_id), attempt=attempt):
        polled = poll_one(deps.store, deps.task_queue, run_id, attempt, poll, now=call.now,
                          settings=deps.settings, clock=deps.clock, engines=deps.engines)
    return polled.status, {"run_id": run_id, "attempt": attempt, "poll": poll,
                           **polled.to_dict()}


def recover_stuck_runs(call: Call) -> Answer:
    return _loop_step(call, "recover", sweep_once)


def publish_status(call: Call) -> Answer:
    """Every 5 minutes from Cloud Scheduler; `full` (query or body) reads everything and
    rewrites every file."""
    deps = call.deps
    full = _full_option(call)
    result = publish_once(deps.store, deps.site_sink, now=call.now,
                          settings=deps.settings, full=full)
    return 200, result.to_json()


def api(call: Call) -> Answer:
    return api_routes.route(call)


def _loop_step(call: Call, heartbeat: str, step) -> Answer:
    """A step of the loop, then its heartbeat (the page shows whether the loop is alive)."""
    deps = call.deps
    result = step(deps.store, deps.task_queue, now=call.now, settings=deps.settings)
    deps.store.put_heartbeat(heartbeat, {"at": call.now, **result.to_dict()})
    return 200, {"now": isoformat(call.now), **result.to_dict()}


def _full_option(call: Call) -> bool:
    options = {**call.request.args.to_dict(), **json_body(call.request)}
    for key in SCHEDULER_KEYS:
        options.pop(key, None)
    unknown = set(options) - {"full"}
    if unknown:
        raise ValidationError(sorted(unknown)[0], "unknown option (known: full)")
    full = options.get("full", False)
    if isinstance(full, str):
        if full.lower() not in ("1", "true", "0", "false", ""):
            raise ValidationError("full", "must be true or false")
        full = full.lower() in ("1", "true")
    return check_bool(full, "full")
