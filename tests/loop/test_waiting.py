"""A run whose work runs on an engine waits without holding a function: run_task
answers at once, named follow-up polls (freshet.loop.poll) follow the engine with
backoff, and the commit that sees the end finishes the run as run_task would. These
drive the loop with the in-memory store, a fake clock and an engine of Freshet's own
interface (freshet.loop.engines) whose work ends when the test says; the Google
clients' side is tests/emulator/test_engine_runs.py."""

from datetime import timedelta

import pytest

from freshet.core.bookkeeping import with_running
from freshet.core.errors import TransientError
from freshet.core.external import EngineState, EngineStatus
from freshet.core.models import Dataset, RunStatus
from freshet.loop import registry
from freshet.loop.engines import Engines
from freshet.loop.poll import poll_one
from freshet.loop.recover import sweep_once
from freshet.loop.run import handle_one
from freshet.loop.syncs.base import Started
from freshet.loop.tick import tick_once
from freshet.ops.operations import cancel_run
from tests.loop.helpers import MIN, T0, RecordingQueue, add_job, loop_settings

H = 60 * MIN


class FakeEngine(Engines):
    """An engine whose work runs until `ends_at` (then `state`), or until cancelled;
    `fail_polls` polls answer 503 first."""

    def __init__(self):
        super().__init__("demo-freshet", "europe-west1")
        self.ends_at = None
        self.state = EngineState.SUCCEEDED
        self.now = T0
        self.polls = 0
        self.cancels: list[str] = []
        self.fail_polls = 0

    def poll(self, external):
        self.polls += 1
        if self.fail_polls:
            self.fail_polls -= 1
            raise TransientError("reading job: 503 Service Unavailable")
        if self.cancels:
            return EngineStatus(EngineState.CANCELLED, "cancelled: stopped")
        if self.ends_at is not None and self.now >= self.ends_at:
            return EngineStatus(self.state, "" if self.state == EngineState.SUCCEEDED
                                else "query failed", (("rows_affected", 42),))
        return EngineStatus(EngineState.RUNNING)

    def cancel(self, external):
        self.cancels.append(external.external_id)


@pytest.fixture
def engine():
    made = FakeEngine()
    starts: list[str] = []

    def start(ctx):
        starts.append(ctx.run_id)
        timeout = ctx.params.get("timeout_min")
        return Started("bigquery", f"freshet_{ctx.run_id}_{ctx.attempt}",
                       timeout=None if timeout is None else timedelta(minutes=timeout))

    registry.sync("engine_probe")(start)
    made.starts = starts
    yield made
    registry.unregister("engine_probe")


def _started(store, engine, *, params=None, max_retries=0, now=T0):
    settings = loop_settings()
    queue = RecordingQueue(settings)
    add_job(store, "rollup", kind="engine_probe", cron="0 12 28 11 *", produces=("ds.rollup",),
            params=params or {}, max_retries=max_retries)
    run_id = tick_once(store, queue, now=now, settings=settings).created[0]
    outcome = handle_one(store, queue, run_id, 1, now=now, settings=settings,
                         clock=lambda: now, engines=engine)
    return settings, queue, run_id, outcome


def _polls(queue):
    return [t for t in queue.sent if t.poll is not None]


def _deliver_next(store, queue, engine, settings, *, twice=False):
    """The latest poll task, delivered when it is due (and, `twice`, once more)."""
    task = _polls(queue)[-1]
    engine.now = task.schedule_time
    answers = [poll_one(store, queue, task.run_id, task.attempt, task.poll,
                        now=task.schedule_time, settings=settings, engines=engine,
                        clock=lambda: task.schedule_time) for _ in range(2 if twice else 1)]
    return task, answers


def test_run_task_answers_at_once_and_the_run_waits_holding_the_engine_handle(
        memory_store, engine):
    settings, queue, run_id, outcome = _started(memory_store, engine)
    assert (outcome.status, outcome.state) == (200, "waiting")
    run = memory_store.get_run(run_id)
    assert run.status == RunStatus.WAITING
    assert run.external.external_id == f"freshet_{run_id}_1"
    assert run.external.next_poll_at == T0 + timedelta(seconds=10)
    assert run.lease_expires_at == run.external.next_poll_at + timedelta(
        seconds=settings.queued_grace_s)
    # its datasets show it refreshing, from the job's running mark (core.bookkeeping)
    job = memory_store.get_job(run.job_id)
    assert job.refreshing and job.refresh_run_id == run_id
    [shown] = with_running([Dataset(key="ds.rollup")], [job])
    assert shown.running_run_id == run_id
    first = _polls(queue)
    assert [(t.poll, t.schedule_time) for t in first] == [(1, run.external.next_poll_at)]
    # a redelivery of the start is a no-op: the run is under way
    again = handle_one(memory_store, queue, run_id, 1, now=T0 + MIN, settings=settings,
                       engines=engine)
    assert again.state == "noop" and engine.starts == [run_id]


def test_a_run_that_waits_two_simulated_hours_completes_exactly_once(memory_store, engine):
    engine.ends_at = T0 + 2 * H
    settings, queue, run_id, _ = _started(memory_store, engine)
    answers, delays, last = [], [], T0
    while memory_store.get_run(run_id).status == RunStatus.WAITING:
        task, polled = _deliver_next(memory_store, queue, engine, settings, twice=True)
        answers.append([p.state for p in polled])
        delays.append((task.schedule_time - last).total_seconds())
        last = task.schedule_time
        # recovery, sweeping meanwhile, never touches a run merely for waiting
        swept = sweep_once(memory_store, queue, now=task.schedule_time, settings=settings)
        assert swept.stuck_failed == swept.stuck_retried == swept.repolled == []
    run = memory_store.get_run(run_id)
    assert run.status == RunStatus.SUCCEEDED and run.finished_at >= T0 + 2 * H
    assert delays[:5] == [10, 20, 40, 80, 120] and max(delays) == 120
    # each poll's duplicate was a no-op; the end was committed once
    assert all(second == "noop" for _, second in answers)
    assert [first for first, _ in answers].count("succeeded") == 1
    dataset = memory_store.get_dataset("ds.rollup")
    assert dataset.last_success_run_id == run_id and dataset.running_run_id is None
    job = memory_store.get_job("rollup")
    assert job.last_run_status == "succeeded" and job.running_run_id is None
    assert engine.starts == [run_id]  # started once
    assert run.external.polls == len(answers) <= 2 * 60 // 2 + 5


def test_a_transient_503_during_a_poll_is_polled_again_not_failed(memory_store, engine):
    engine.ends_at = T0 + MIN
    settings, queue, run_id, _ = _started(memory_store, engine)
    engine.fail_polls = 1
    _, [polled] = _deliver_next(memory_store, queue, engine, settings)
    assert polled.state == "waiting" and "transiently" in polled.detail
    assert memory_store.get_run(run_id).status == RunStatus.WAITING
    while memory_store.get_run(run_id).status == RunStatus.WAITING:
        _deliver_next(memory_store, queue, engine, settings)
    assert memory_store.get_run(run_id).status == RunStatus.SUCCEEDED


def test_recovery_polls_again_a_waiting_run_whose_poll_task_was_lost(memory_store, engine):
    settings, queue, run_id, _ = _started(memory_store, engine)
    lost = _polls(queue)[-1]
    run = memory_store.get_run(run_id)
    assert sweep_once(memory_store, queue, now=run.lease_expires_at - MIN,
                      settings=settings).repolled == []
    late = run.lease_expires_at + MIN
    swept = sweep_once(memory_store, queue, now=late, settings=settings)
    assert swept.repolled == [run_id] and swept.stuck_failed == []
    again = _polls(queue)[-1]
    assert again.poll == lost.poll + 1 and again.schedule_time == late
    # the lost task, arriving after all, is stale; the new one polls
    stale = poll_one(memory_store, queue, run_id, 1, lost.poll, now=late, settings=settings,
                     engines=engine)
    assert stale.state == "noop"
    engine.ends_at = late
    _deliver_next(memory_store, queue, engine, settings)
    assert memory_store.get_run(run_id).status == RunStatus.SUCCEEDED


def test_a_timeout_cancels_the_work_on_the_engine_and_fails_the_run(memory_store, engine):
    settings, queue, run_id, _ = _started(memory_store, engine, params={"timeout_min": 30},
                                          max_retries=2)
    deadline = memory_store.get_run(run_id).external.deadline
    assert deadline == T0 + 30 * MIN
    while not engine.cancels:
        task, _ = _deliver_next(memory_store, queue, engine, settings)
        assert task.schedule_time <= deadline  # never polled later than the timeout
    assert memory_store.get_run(run_id).external.cancel_reason.startswith("timed out")
    _deliver_next(memory_store, queue, engine, settings)
    run = memory_store.get_run(run_id)
    assert run.status == RunStatus.FAILED and "timed out" in run.error
    assert engine.starts == [run_id]  # a timeout is not retried


def test_a_kill_switch_cancels_the_work_on_the_engine(memory_store, engine):
    settings, queue, run_id, _ = _started(memory_store, engine)
    memory_store.set_control({"disabled_kinds": ["engine_probe"], "reason": "bad data"})
    _deliver_next(memory_store, queue, engine, settings)
    assert engine.cancels == [f"freshet_{run_id}_1"]
    _deliver_next(memory_store, queue, engine, settings)
    run = memory_store.get_run(run_id)
    assert run.status == RunStatus.FAILED and "kill switch" in run.error


def test_cancelling_a_waiting_run_cancels_its_work_at_the_next_poll(memory_store, engine):
    settings, queue, run_id, _ = _started(memory_store, engine)
    cancel_run(memory_store, run_id, by="ops@example.com", now=T0 + timedelta(seconds=5))
    assert memory_store.get_run(run_id).status == RunStatus.CANCELLED
    _, [polled] = _deliver_next(memory_store, queue, engine, settings)
    assert polled.state == "cancelled" and engine.cancels == [f"freshet_{run_id}_1"]
    assert memory_store.get_job("rollup").running_run_id is None


def test_work_that_fails_on_the_engine_is_retried_as_a_new_attempt(memory_store, engine):
    engine.ends_at, engine.state = T0, EngineState.FAILED
    settings, queue, run_id, _ = _started(memory_store, engine, max_retries=1)
    _, [polled] = _deliver_next(memory_store, queue, engine, settings)
    assert polled.state == "retrying"
    retry = queue.sent[-1]
    assert (retry.run_id, retry.attempt, retry.poll) == (run_id, 2, None)
    engine.state = EngineState.SUCCEEDED
    again = handle_one(memory_store, queue, run_id, 2, now=T0 + MIN, settings=settings,
                       engines=engine)
    assert again.state == "waiting" and engine.starts == [run_id, run_id]
    _deliver_next(memory_store, queue, engine, settings)
    assert memory_store.get_run(run_id).status == RunStatus.SUCCEEDED


def test_run_task_routes_a_poll_body_to_the_poll_and_refuses_a_bad_one(memory_store, engine):
    import json

    import flask

    from freshet.ops import entries
    from freshet.ops.deps import Deps
    from freshet.ops.web import serve

    engine.ends_at = T0
    settings, queue, run_id, _ = _started(memory_store, engine)
    deps = Deps(settings=settings, store=memory_store, task_queue=queue, certs=None,
                clock=lambda: T0 + MIN, engines=engine)

    def post(body):
        with flask.Flask(__name__).test_request_context(
                "/run_task", method="POST", data=json.dumps(body),
                content_type="application/json"):
            return serve(flask.request, entries.run_task, deps)

    bad = post({"run_id": run_id, "attempt": 1, "poll": 0})
    assert bad.status_code == 400 and b"poll" in bad.data
    done = post({"run_id": run_id, "attempt": 1, "poll": 1})
    assert done.status_code == 200 and done.json["state"] == "succeeded", done.data
    assert memory_store.get_run(run_id).status == RunStatus.SUCCEEDED
    assert post({"run_id": run_id, "attempt": 1, "poll": 1}).json["state"] == "noop"


def test_work_started_for_a_run_cancelled_meanwhile_is_cancelled_on_the_engine(
        memory_store, engine):
    settings, queue = loop_settings(), RecordingQueue(loop_settings())
    add_job(memory_store, "rollup", kind="engine_probe", cron="0 12 28 11 *",
            produces=("ds.rollup",))
    run_id = tick_once(memory_store, queue, now=T0, settings=settings).created[0]

    def start_while_cancelled(ctx):
        cancel_run(memory_store, ctx.run_id, by="ops@example.com", now=T0)
        return Started("bigquery", f"freshet_{ctx.run_id}_{ctx.attempt}")

    registry.unregister("engine_probe")
    registry.sync("engine_probe")(start_while_cancelled)
    outcome = handle_one(memory_store, queue, run_id, 1, now=T0, settings=settings,
                         engines=engine)
    assert outcome.state == "noop"
    assert memory_store.get_run(run_id).status == RunStatus.CANCELLED
    assert engine.cancels == [f"freshet_{run_id}_1"] and _polls(queue) == []


def test_cancelling_a_waiting_run_through_the_api_stops_its_work_at_once(memory_store,
                                                                        engine):
    import flask

    from freshet.ops import entries
    from freshet.ops.deps import Deps
    from freshet.ops.web import serve

    settings, queue, run_id, _ = _started(memory_store, engine)
    deps = Deps(settings=settings, store=memory_store, task_queue=queue, certs=None,
                clock=lambda: T0 + MIN, engines=engine)
    with flask.Flask(__name__).test_request_context(f"/runs/{run_id}/cancel",
                                                    method="POST"):
        answer = serve(flask.request, entries.api, deps)
    assert answer.status_code == 200, answer.data
    assert answer.json["run"]["status"] == "cancelled"
    assert engine.cancels == [f"freshet_{run_id}_1"]  # before any poll
