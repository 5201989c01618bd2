"""apply against the Firestore emulator and gcloud-tasks-emulator: a plan first,
idempotent, runtime state kept, removed jobs archived, queues created."""

import uuid
from dataclasses import replace
from datetime import timedelta

import pytest

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
    settings = load_settings({}, project="demo-freshet", region="europe-west1", queue=queue_name,
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
    assert "  + job orders: create (catchup: latest)" in todo.lines()
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
    assert store.catalog().datasets["sales.revenue"].upstream == (
        "sales.orders", "finance.rates")
    assert store.control().manual_actions_enabled is False
    created = queue.queues()[queue_name]
    assert created.rate_limits.max_dispatches_per_second == 500
    assert created.retry_config.min_backoff.seconds == 5


def test_a_pool_with_dispatch_shards_is_that_many_queues_sharing_its_limits(env):
    store, queue, text, queue_name = env
    sharded = text.replace(f"name: {queue_name}", f"name: {queue_name}\n    dispatch_shards: 4")
    result = apply(config_of(sharded), store=store, task_queue=queue, now=T0)
    names = [queue_name] + [f"{queue_name}-{k}" for k in (1, 2, 3)]
    assert result.queues == {**{n: "created" for n in names}, f"{queue_name}-claims": "created"}
    existing = queue.queues()
    for name in names:
        assert existing[name].rate_limits.max_dispatches_per_second == 500 / 4
        assert existing[name].rate_limits.max_concurrent_dispatches == 200 // 4
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
    pause_job(store, "orders", reason="vendor outage", now=T0)
    apply(config_of(text.replace("max_retries: 2", "max_retries: 4")), store=store,
          task_queue=queue, now=T0)
    assert store.job("orders").status == "paused" and store.job("rates").max_retries == 4


def test_what_cloud_tasks_adds_to_a_queue_on_its_own_is_no_change():
    """max_burst_size is output-only and max_retry_duration has a server default: a read
    queue carries both, and neither may make the second apply find changes."""
    from google.cloud import tasks_v2

    from freshet.gcp.tasks import changed_queue_fields

    queue = TaskQueue(load_settings({}, project="demo-freshet", region="europe-west1"))
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
    settings = load_settings({}, project="demo-freshet", dispatch_deadline_s=900,
                             invoker_email="freshet-invoker@demo-freshet.iam.gserviceaccount.com")
    task = TaskQueue(settings).build_task("orders__20261128T120000Z", 1)
    assert task.dispatch_deadline == timedelta(minutes=15)
    assert task.http_request.oidc_token.audience == settings.run_task_url


def test_a_one_time_job_in_the_distant_past_is_refused_at_its_line_and_nothing_is_written(env):
    from freshet.ops.config import ConfigError

    store, queue, text, _ = env
    text = text.replace('schedule: {cron: "0 6 * * *"}',
                        'schedule: {run_at: "1971-01-01T00:00:00Z"}')
    config = config_of(text)  # valid as a file: whether it can run depends on `now`
    with pytest.raises(ConfigError) as caught:
        apply(config, store=store, task_queue=queue, now=T0)
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "1971-01-01" in s)
    assert (caught.value.field, caught.value.line) == ("jobs[1].schedule.run_at", line)
    assert store.list_jobs() == []


def test_a_one_time_job_that_ran_long_ago_does_not_block_a_later_apply(env):
    store, queue, text, _ = env
    text = text.replace('schedule: {cron: "0 6 * * *"}',
                        'schedule: {run_at: "2026-11-28T13:00:00Z"}')
    apply(config_of(text), store=store, task_queue=queue, now=T0)
    later = T0 + timedelta(days=30)
    assert plan(config_of(text), store=store, task_queue=queue, now=later).jobs == []


# -- pools, triggers, policies ----------------------------------------------------------

from tests.ops.test_config import SCHEDULING  # noqa: E402


def test_apply_creates_a_queue_per_pool_lists_triggers_and_the_plan_shows_policies(env):
    store, queue, _, queue_name = env
    text = SCHEDULING.replace("name: freshet-runs", f"name: {queue_name}")
    config = config_of(text)
    todo = plan(config, store=store, task_queue=queue, now=T0)
    lines = todo.lines()
    assert ("  + job rates: create (catchup: all (at most 6), max_lateness: 45m, "
            "pool: warehouse)") in lines
    assert ("  + job revenue: create (no schedule, runs after all of sales.orders, "
            "finance.rates is fresh)") in lines
    assert (f"  + queue {queue_name}-warehouse: create (pool warehouse, at most 4 at once)"
            ) in lines
    assert "  ~ dataset sales.orders: triggers [] -> ['revenue']" in lines
    result = apply(todo, store=store, task_queue=queue, now=T0)
    assert result.queues == {queue_name: "created", f"{queue_name}-warehouse": "created",
                             f"{queue_name}-claims": "created"}
    made = queue.queues()[f"{queue_name}-warehouse"]
    assert made.rate_limits.max_concurrent_dispatches == 4
    assert store.get_dataset("sales.orders").triggers == ["revenue"]
    assert store.get_dataset("finance.rates").triggers == ["revenue"]
    assert store.job("revenue").next_run_at is None  # a triggered job has no slots
    assert plan(config, store=store, task_queue=queue, now=T0).empty

    # the pool's limit changes: the queue is updated; the trigger goes: the lists empty
    changed = text.replace("{max_concurrent: 4}", "{max_concurrent: 2}").replace(
        "    trigger: {after: [sales.orders, finance.rates]}\n",
        "    schedule: {cron: \"0 7 * * *\"}\n")
    todo = plan(config_of(changed), store=store, task_queue=queue, now=T0)
    (update,) = todo.queues
    assert (update.action, update.changes) == ("update", ["rate_limits.max_concurrent_dispatches"])
    assert update.spec.max_concurrent_dispatches == 2
    # (gcloud-tasks-emulator accepts update_queue but keeps the old settings)
    result = apply(todo, store=store, task_queue=queue, now=T0)
    assert result.queues == {f"{queue_name}-warehouse": "updated"}
    assert store.get_dataset("sales.orders").triggers == []


def test_apply_keeps_the_triggers_of_jobs_made_through_the_api(env):
    from freshet.core.models import new_job
    from freshet.ops.operations import create_job, register_triggers

    store, queue, text, _ = env
    apply(config_of(text), store=store, task_queue=queue, now=T0)
    made = create_job(store, new_job(id="by-api", kind="noop", produces=["x.y"],
                                     trigger={"after": ["sales.orders"]}), now=T0)
    register_triggers(store, made)
    assert store.get_dataset("sales.orders").triggers == ["by-api"]
    assert plan(config_of(text), store=store, task_queue=queue, now=T0).empty


def test_apply_records_the_number_of_jobs_for_the_trigger_depth_bound(env, db):
    store, queue, text, _ = env
    apply(config_of(text), store=store, task_queue=queue, now=T0)
    graph = db.collection("settings").document("trigger_graph").get().to_dict()
    assert graph["jobs"] == len(store.list_jobs()) and graph["version"] == 1


def test_maintenance_windows_are_planned_and_written_beside_the_kill_switches(env):
    from tests.ops.test_config import MAINTENANCE

    store, queue, text, _ = env
    config = config_of(text + MAINTENANCE)
    todo = plan(config, store=store, task_queue=queue, now=T0)
    assert todo.maintenance_changes == ["window vacuum added", "window migration added"]
    assert "  ~ maintenance: window vacuum added" in todo.lines()
    apply(todo, store=store, task_queue=queue, now=T0)
    stored = store.control()
    assert [w.id for w in stored.maintenance.windows] == ["vacuum", "migration"]
    assert plan(config, store=store, task_queue=queue, now=T0).empty
    apply(config_of(text), store=store, task_queue=queue, now=T0)  # removed from the file
    assert store.control().maintenance.windows == ()
    assert store.control().manual_actions_enabled is True


def test_the_http_fetch_policy_is_planned_and_written_to_the_control_document(env):
    """The policy reaches run_task and publish_status in the control document they read
    anyway: apply is enough to change it, no redeploy, no environment variable."""
    from freshet.core.egress import EgressPolicy

    store, queue, text, _ = env
    section = "http_fetch:\n  allowed_hosts: [api.example.com]\n  allow_private_addresses: false\n"
    config = config_of(text + section)
    todo = plan(config, store=store, task_queue=queue, now=T0)
    assert todo.egress_changes == ["allowed_hosts: [] -> ['api.example.com']",
                                   "allow_private: True -> False"]
    assert "  ~ http_fetch: allow_private: True -> False" in todo.lines()
    apply(todo, store=store, task_queue=queue, now=T0)
    stored = store.control()
    assert stored.egress == EgressPolicy(("api.example.com",), False, False)
    assert plan(config, store=store, task_queue=queue, now=T0).empty
    apply(config_of(text), store=store, task_queue=queue, now=T0)  # the section removed
    assert store.control().egress == EgressPolicy()


def test_apply_stores_what_is_observed_and_makes_the_next_tick_observe(env):
    from freshet.core.observe import Ledger

    store, queue, text, _ = env
    store.put_observations_doc({"next_at": T0 + timedelta(hours=1), "datasets": []})
    observed = text.replace(
        "  - key: finance.rates\n",
        "  - key: finance.rates\n  - key: vendor.orders\n"
        "    observe: {bigquery_table: vendor-proj.sales.orders}\n    observe_every: 10m\n")
    apply(config_of(observed), store=store, task_queue=queue, now=T0)
    spec = store.catalog().observed["vendor.orders"]
    assert (spec.target, spec.every) == ("vendor-proj.sales.orders", timedelta(minutes=10))
    assert Ledger.from_doc(store.observations_doc()).due(T0)


def test_apply_moves_an_existing_deployments_datasets_into_groups_once(env, db):
    """State stored before groups (datasets/{key}) moves into its job's group, history
    kept; what the API shows is unchanged; a second apply moves nothing."""
    from freshet.core.models import Dataset
    from freshet.ops.views import all_datasets

    store, queue, text, _ = env
    config = config_of(text)
    apply(config, store=store, task_queue=queue, now=T0)
    for ref in db.collection("datasets").list_documents():  # as an older Freshet left it
        ref.delete()
    for ref in db.collection("dataset_keys").list_documents():
        ref.delete()
    old = [Dataset("sales.orders", last_success_run_id="r1", last_success_at=T0,
                   daily={"2026-11-27": {"ok": 3, "fail": 1}}),
           Dataset("finance.rates", last_failure_at=T0, consecutive_failures=2,
                   last_error="boom")]
    store.put_many("datasets", [(d.key, d.to_doc()) for d in old])
    shown = all_datasets(store, T0)
    todo = plan(config, store=store, task_queue=queue, now=T0)
    assert todo.groups == {"orders~0": ("sales.orders",), "rates~0": ("finance.rates",)}
    assert "  ~ dataset group orders~0: 1 dataset(s)" in todo.lines()
    apply(todo, store=store, task_queue=queue, now=T0)
    assert sorted(d.id for d in db.collection("datasets").stream()) == ["orders~0", "rates~0"]
    assert all_datasets(store, T0) == shown
    assert store.get_dataset("sales.orders").daily == {"2026-11-27": {"ok": 3, "fail": 1}}
    assert plan(config, store=store, task_queue=queue, now=T0).empty
    store.stats.reset()
    apply(config, store=store, task_queue=queue, now=T0)
    assert store.stats.writes == 0
