"""apply against the Firestore emulator and gcloud-tasks-emulator: a plan first,
idempotent, runtime state kept, removed jobs archived, queues created."""

import uuid
from dataclasses import replace
from datetime import timedelta

import pytest

from freshet.core.catalog import Catalog
from freshet.core.control import Control
from freshet.core.schedules import next_after
from freshet.core.settings import load_settings
from freshet.gcp.store import Store
from freshet.gcp.tasks import TaskQueue
from freshet.ops.apply import apply, plan
from freshet.ops.config import parse_config
from freshet.ops.operations import pause_job
from tests.ops.helpers import PIPELINE, T0


@pytest.fixture()
def env(db, tasks_emulator):
    queue_name = f"q-{uuid.uuid4().hex[:10]}"  # the tasks emulator outlives each test
    text = PIPELINE.replace("name: freshet-runs", f"name: {queue_name}")
    settings = load_settings(project="demo-freshet", region="europe-west1", queue=queue_name,
                             tasks_emulator_host=tasks_emulator.address)
    return Store(db), TaskQueue(settings), text, queue_name


def config_of(text: str):
    return parse_config(text, "pipeline.yaml", env={})


def test_first_plan_lists_everything_and_changes_nothing(env):
    store, queue, text, queue_name = env
    todo = plan(config_of(text), store=store, task_queue=queue, now=T0)
    assert [(c.job_id, c.action) for c in todo.jobs] == [("orders", "create"),
                                                         ("rates", "create")]
    assert todo.catalog_changes and [(q.spec.name, q.action) for q in todo.queues] == [
        (queue_name, "create"), (f"{queue_name}-claims", "create")]  # claim shards' queue
    assert "  + job orders: create" in todo.lines()
    assert store.list_jobs() == [] and store.catalog_doc() == {}
    assert queue_name not in queue.queues()


def test_apply_twice_then_the_second_plan_is_empty(env):
    store, queue, text, queue_name = env
    config = config_of(text)
    result = apply(config, store=store, task_queue=queue, now=T0)
    assert result.jobs == {"orders": "created", "rates": "created"}
    assert result.queues == {queue_name: "created", f"{queue_name}-claims": "created"}
    again = plan(config, store=store, task_queue=queue, now=T0 + timedelta(hours=1))
    assert again.empty, again.lines()
    assert again.lines()[0].startswith("No changes")
    second = apply(config, store=store, task_queue=queue, now=T0 + timedelta(hours=1))
    assert second.jobs == {} and second.queues == {} and not second.catalog_written


def test_apply_writes_jobs_catalog_kill_switches_and_the_queue(env):
    store, queue, text, queue_name = env
    apply(config_of(text.replace("manual_actions_enabled: true",
                                 "manual_actions_enabled: false")),
          store=store, task_queue=queue, now=T0)
    orders = store.job("orders")
    assert orders.status == "active" and orders.created_at == T0
    assert orders.next_run_at == next_after(orders.schedule, T0)
    assert Catalog.from_doc(store.catalog_doc()).datasets["sales.revenue"].upstream == (
        "sales.orders", "finance.rates")
    assert Control.from_doc(store.control()).manual_actions_enabled is False
    created = queue.queues()[queue_name]
    assert created.rate_limits.max_dispatches_per_second == 50
    assert created.retry_config.min_backoff.seconds == 5


def test_a_pool_with_dispatch_shards_is_that_many_queues_sharing_its_limits(env):
    store, queue, text, queue_name = env
    sharded = text.replace(f"name: {queue_name}", f"name: {queue_name}\n    dispatch_shards: 4")
    result = apply(config_of(sharded), store=store, task_queue=queue, now=T0)
    names = [queue_name] + [f"{queue_name}-{k}" for k in (1, 2, 3)]
    assert result.queues == {**{n: "created" for n in names}, f"{queue_name}-claims": "created"}
    existing = queue.queues()
    for name in names:
        assert existing[name].rate_limits.max_dispatches_per_second == 50 / 4
        assert existing[name].rate_limits.max_concurrent_dispatches == 100 // 4
    assert plan(config_of(sharded), store=store, task_queue=queue, now=T0).empty


def test_an_upsert_keeps_runtime_state_and_moves_next_run_only_for_a_new_schedule(env):
    store, queue, text, _ = env
    apply(config_of(text), store=store, task_queue=queue, now=T0)
    ran = replace(store.job("orders"), last_run_at=T0, last_run_status="failed",
                  last_error="boom", last_run_id="r1", next_run_at=T0 + timedelta(minutes=15))
    store.put_job(ran)
    before = store.job("orders").updated_at  # Firestore's commit time (gcp.store)
    later = T0 + timedelta(hours=2)
    apply(config_of(text.replace("produces: [sales.orders]",
                                 "produces: [sales.orders]\n    max_retries: 7")),
          store=store, task_queue=queue, now=later)
    kept = store.job("orders")
    assert kept.max_retries == 7 and kept.updated_at > before
    assert (kept.last_run_at, kept.last_error, kept.last_run_id, kept.next_run_at) == (
        T0, "boom", "r1", T0 + timedelta(minutes=15))
    todo = plan(config_of(text.replace('"*/15 * * * *"', '"*/30 * * * *"')), store=store,
                task_queue=queue, now=later)
    assert todo.jobs[0].changes["schedule"][1]["cron"] == "*/30 * * * *"
    apply(todo, store=store, task_queue=queue, now=later)
    moved = store.job("orders")
    assert moved.next_run_at == next_after(moved.schedule, later)
    assert moved.last_error == "boom"


def test_a_job_removed_from_the_file_is_archived_not_deleted(env):
    store, queue, text, _ = env
    apply(config_of(text), store=store, task_queue=queue, now=T0)
    without_rates = text.replace('  - id: rates\n    kind: noop\n    schedule: {cron: "0 6 * * *"}'
                                 '\n    max_retries: 2\n    produces: [finance.rates]\n', "")
    todo = plan(config_of(without_rates), store=store, task_queue=queue, now=T0)
    assert [(c.job_id, c.action) for c in todo.jobs] == [("rates", "archive")]
    apply(todo, store=store, task_queue=queue, now=T0 + timedelta(minutes=1))
    rates = store.job("rates")
    assert rates.status == "archived" and rates.archived_at == T0 + timedelta(minutes=1)
    assert plan(config_of(without_rates), store=store, task_queue=queue, now=T0).empty
    # declared again: it comes back, active and scheduled
    apply(config_of(text), store=store, task_queue=queue, now=T0 + timedelta(hours=1))
    assert store.job("rates").status == "active"


def test_jobs_not_declared_by_any_apply_are_left_alone(env):
    store, queue, text, _ = env
    from freshet.core.models import new_job
    from freshet.ops.operations import create_job

    create_job(store, new_job(id="adhoc", kind="noop", schedule={"cron": "0 * * * *"}), now=T0)
    apply(config_of(text), store=store, task_queue=queue, now=T0)
    assert store.job("adhoc").status == "active"


def test_a_paused_job_stays_paused_across_applies(env):
    store, queue, text, _ = env
    apply(config_of(text), store=store, task_queue=queue, now=T0)
    pause_job(store, "orders", now=T0)
    apply(config_of(text.replace("max_retries: 2", "max_retries: 4")), store=store,
          task_queue=queue, now=T0)
    assert store.job("orders").status == "paused" and store.job("rates").max_retries == 4


def test_what_cloud_tasks_adds_to_a_queue_on_its_own_is_no_change():
    """max_burst_size is output-only and max_retry_duration has a server default: a read
    queue carries both, and neither may make the second apply find changes."""
    from google.cloud import tasks_v2

    from freshet.gcp.tasks import changed_queue_fields

    queue = TaskQueue(load_settings(project="demo-freshet", region="europe-west1"))
    spec = config_of(PIPELINE).queues[0]
    wanted = queue.build_queue(spec)
    echoed = tasks_v2.Queue(wanted)
    echoed.rate_limits.max_burst_size = 100
    echoed.retry_config.max_retry_duration = timedelta(0)
    echoed.state = tasks_v2.Queue.State.RUNNING
    assert changed_queue_fields(echoed, wanted) == []
    echoed.rate_limits.max_concurrent_dispatches = 7
    echoed.retry_config.min_backoff = timedelta(seconds=1)
    assert changed_queue_fields(echoed, wanted) == ["rate_limits.max_concurrent_dispatches",
                                                    "retry_config.min_backoff"]


def test_each_task_carries_the_dispatch_deadline_run_tasks_timeout_covers():
    settings = load_settings(project="demo-freshet", dispatch_deadline_s=900,
                             invoker_email="freshet-invoker@demo-freshet.iam.gserviceaccount.com")
    task = TaskQueue(settings).build_task("orders__20261128T120000Z", 1)
    assert task.dispatch_deadline == timedelta(minutes=15)
    assert task.http_request.oidc_token.audience == settings.run_task_url
