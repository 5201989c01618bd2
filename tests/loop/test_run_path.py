"""The shape of run_task's path, measured: a profiler follows deliveries through
handle_one (a scheduled run whose success triggers a downstream run, and a backfill
lane's run whose commit releases the lane's next) and lists the loop and decision
modules they pass through. The path stays read facts -> core decides the whole commit
-> persist -> send: two loop modules (run, followups) and two decision modules
(core.lifecycle, core.commit). A rule that grows back into another loop module, or a
second decision module, shows here."""

import sys

from freshet.core.models import TriggerSource
from freshet.loop.backfill import start_backfill
from freshet.loop.run import handle_one
from freshet.loop.tick import tick_once
from freshet.ops.operations import register_triggers
from tests.loop.helpers import MIN, T0, RecordingQueue, add_job, loop_settings

H = 60 * MIN
PATH = ("freshet.loop.", "freshet.core.lifecycle", "freshet.core.commit")


def traced(fn):
    seen: list[str] = []

    def profile(frame, event, arg):
        module = frame.f_globals.get("__name__", "")
        if event == "call" and module.startswith(PATH):
            name = f"{module}.{frame.f_code.co_name}"
            if name not in seen:
                seen.append(name)

    sys.setprofile(profile)
    try:
        result = fn()
    finally:
        sys.setprofile(None)
    return result, seen


def test_a_run_id_passes_through_two_loop_modules_and_two_decision_modules(memory_store,
                                                                           probe):
    store, settings = memory_store, loop_settings()
    add_job(store, "hourly", kind="slot_probe", cron="0 * * * *", produces=("ds.hourly",))
    rollup = add_job(store, "rollup", kind="slot_probe", produces=("ds.rollup",),
                     schedule=None, next_run_at=None,
                     trigger={"after": ["ds.hourly"], "when": "any"})
    register_triggers(store, rollup)
    queue = RecordingQueue(settings)
    scheduled = tick_once(store, queue, now=T0, settings=settings).created[0]
    backfill, _ = start_backfill(store, queue, "hourly", start=T0 - 3 * H, end=T0 - H,
                                 max_parallel=1, rerun=False, now=T0, settings=settings)
    lane_run = queue.sent[1].run_id

    def deliver(run_id):
        return handle_one(store, queue, run_id, 1, now=T0 + MIN, settings=settings,
                          clock=lambda: T0 + 2 * MIN)

    outcomes, seen = traced(lambda: [deliver(scheduled), deliver(lane_run)])
    assert [o.state for o in outcomes] == ["succeeded", "succeeded"]
    assert [r.trigger_source for r in store.recent_runs(job_id="rollup")] == [
        TriggerSource.UPSTREAM]  # the first commit created the triggered run ...
    assert store.lanes(backfill.id)[0].done == 1  # ... the second counted the lane
    assert len(queue.sent) == 4  # and each sent the run it created
    modules = {name.rsplit(".", 1)[0] for name in seen
               if not name.startswith(("freshet.loop.registry", "freshet.loop.syncs",
                                       "freshet.loop.plugins"))}
    assert modules == {"freshet.loop.run", "freshet.loop.followups",
                       "freshet.core.lifecycle", "freshet.core.commit"}, seen
    steps = [n.rsplit(".", 1)[1] for n in seen
             if n.startswith(("freshet.loop.run", "freshet.loop.followups"))
             and not n.endswith(">")]
    assert steps[:4] == ["handle_one", "_claim", "end", "send_tasks"], steps
