"""Scheduling depth through the emulators: a 48-slot backfill paced at 4, a chain of
three triggered jobs, and a pool with a limit of 2 under 10 due jobs.

gcloud-tasks-emulator runs one task at a time per queue and ignores the queue's
configuration, so the backfill and pool tests dispatch through
freshet_local.dispatcher.LocalDispatcher: Cloud Tasks' dispatch in process, with each
queue's max_concurrent_dispatches read back from the queues `apply` created in the
emulator. The trigger chain goes through the emulator itself to run_task served by
functions-framework, as in the cloud.
"""

import threading
import time
from datetime import timedelta

import flask
import pytest
from google.cloud.firestore_v1.base_query import FieldFilter

from freshet.core.models import RunStatus
from freshet.core.runs import scheduled_run_id
from freshet.core.settings import load_settings
from freshet.core.timeutil import utcnow
from freshet.gcp.certs import CertCache
from freshet.gcp.store import Store
from freshet.gcp.tasks import TaskQueue
from freshet.loop import registry
from freshet.loop.recover import sweep_once
from freshet.loop.run import handle_one
from freshet.loop.tick import tick_once
from freshet.ops import entries
from freshet.ops.apply import apply
from freshet.ops.config import parse_config
from freshet.ops.deps import Deps
from freshet.ops.web import serve as serve_entry
from freshet.status.publish import pool_counts
from freshet_local.dispatcher import LocalDispatcher
from freshet_local.functions_host import free_port, serve
from tests.loop.helpers import Probe, add_job
from tests.reliability.invariants import check

H = timedelta(hours=1)


@pytest.fixture
def probe():
    made = Probe(sleep=0.3)
    registry.sync("slot_probe")(made)
    yield made
    registry.unregister("slot_probe")


def runs_of(db, job_id):
    query = db.collection("runs").where(filter=FieldFilter("job_id", "==", job_id))
    return [d.to_dict() for d in query.stream()]


def wait_for(predicate, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def in_process(store, settings):
    """A dispatcher delivering to run_task's step in this process."""
    dispatcher: LocalDispatcher

    def deliver(run_id: str, attempt: int) -> int:
        return handle_one(store, dispatcher, run_id, attempt, now=utcnow(),
                          settings=settings).status

    dispatcher = LocalDispatcher(settings, deliver)
    return dispatcher


# -- a backfill of 48 hourly slots, at most 4 at once ---------------------------------------

def test_a_backfill_of_48_hourly_slots_runs_each_once_never_more_than_4_at_once(db, probe,
                                                                                 monkeypatch):
    store = Store(db)
    settings = load_settings({}, auth_mode="local")
    now = utcnow()
    last = now.replace(minute=0, second=0, microsecond=0)
    first = last - 47 * H
    # the job's own schedule is due at the last slot: the tick races the backfill for it
    add_job(store, "hourly", kind="slot_probe", cron="0 * * * *", produces=("ds.hourly",),
            next_run_at=last)
    dispatcher = in_process(store, settings)
    deps = Deps(settings=settings, store=store, task_queue=dispatcher, certs=CertCache("x"),
                clock=utcnow)
    app = flask.Flask("backfill-api")
    app.add_url_rule("/<path:path>", "api", lambda path: serve_entry(flask.request, entries.api,
                                                                    deps), methods=["GET", "POST"])
    client = app.test_client()
    body = {"job_id": "hourly", "from": first.isoformat(), "to": last.isoformat(),
            "max_parallel": 4}
    dry = client.post("/backfills", json={**body, "dry_run": True}).get_json()
    assert (dry["slots"], dry["todo_count"]) == (48, 48)
    ticked = threading.Thread(target=lambda: tick_once(Store(db), dispatcher, now=now,
                                                       settings=settings))
    ticked.start()
    answer = client.post("/backfills", json=body)
    ticked.join(60)
    assert answer.status_code == 201, answer.get_json()
    backfill_id = answer.get_json()["backfill"]["id"]
    dispatcher.wait_idle(timeout=240)
    dispatcher.close()

    # never more than 4 of the backfill's runs at once, and its lanes did run side by side
    # (the tick's own run of the last slot, if it won that slot, is not the backfill's)
    assert 2 <= probe.peak_by_source["backfill"] <= 4, probe.peak_by_source
    # every slot exactly once: one run document and one execution per slot
    slots = [first + i * H for i in range(48)]
    docs = runs_of(db, "hourly")
    assert sorted(d["id"] for d in docs) == sorted(scheduled_run_id("hourly", s) for s in slots)
    assert all(d["status"] == RunStatus.SUCCEEDED for d in docs)
    assert sorted(probe.slots) == slots
    assert not dispatcher.errors
    # recovery's sweep folds the backfill's newest success into the dataset, as of its slot
    sweep_once(store, dispatcher, now=utcnow(), settings=settings)
    assert store.get_dataset("ds.hourly").last_success_slot == last
    check(db)  # every run finished; the dataset agrees with the run history
    status = client.get(f"/backfills/{backfill_id}").get_json()["backfill"]
    assert status["status"] == "done"
    # the tick's run for the last slot, or the backfill's, whichever came first, ran it:
    # the plan left it to the tick's run (busy), or the lane found it taken (skipped)
    progress = status["progress"]
    assert progress["done"] + progress["skipped"] + status["busy_at_plan"] == 48
    assert progress["failed"] == 0 and progress["planned"] == 48 - status["busy_at_plan"]
    assert progress["bar"].endswith(f"{progress['planned']}/{progress['planned']}")


# -- a trigger chain of three jobs --------------------------------------------------------

CHAIN = """\
project: demo-freshet
region: europe-west1
queues:
  - name: {queue}
    min_backoff: 1s
    max_backoff: 2s
jobs:
  - id: extract
    kind: noop
    schedule: {{cron: "* * * * *"}}
    produces: [raw.orders]
  - id: clean
    kind: noop
    trigger: {{after: [raw.orders]}}
    produces: [clean.orders]
  - id: report
    kind: noop
    trigger: {{after: [clean.orders], when: any}}
    produces: [report.orders]
datasets:
  - {{key: raw.orders}}
  - {{key: clean.orders, upstream: [raw.orders]}}
  - {{key: report.orders}}
"""


@pytest.fixture
def served_chain(firestore_emulator, tasks_emulator, tmp_path):
    queue_name = "chain-runs"
    port = free_port()
    env = {**firestore_emulator.env(), "FRESHET_AUTH": "local",
           "FRESHET_TASKS_EMULATOR_HOST": tasks_emulator.address, "FRESHET_QUEUE": queue_name,
           "FRESHET_REGION": "europe-west1",
           "FRESHET_RUN_TASK_URL": f"http://127.0.0.1:{port}/run_task"}
    served = serve("run_task", env=env, port=port, log_path=tmp_path / "run_task.log")
    yield load_settings(env), queue_name
    served.stop()


def test_a_chain_of_three_jobs_runs_each_once_the_one_before_succeeds(db, served_chain):
    settings, queue_name = served_chain
    store, queue = Store(db), TaskQueue(settings)
    now = utcnow()
    config = parse_config(CHAIN.format(queue=queue_name), "chain.yaml")
    result = apply(config, store=store, task_queue=queue, now=now)
    assert store.get_dataset("raw.orders").triggers == ["clean"]
    assert store.get_dataset("clean.orders").triggers == ["report"]
    assert result.jobs == {"extract": "created", "clean": "created", "report": "created"}
    store.update_job("extract", {"next_run_at": now - timedelta(seconds=1)})
    (extract_run,) = tick_once(store, queue, now=now, settings=settings).created

    def finished(job_id):
        docs = runs_of(db, job_id)
        return len(docs) == 1 and docs[0]["status"] == RunStatus.SUCCEEDED

    wait_for(lambda: finished("report"), timeout=90, what="the report job's run")
    check(db)
    (clean,), (report,) = runs_of(db, "clean"), runs_of(db, "report")
    assert clean["upstream_versions"] == {"raw.orders": extract_run}
    assert report["upstream_versions"] == {"clean.orders": clean["id"]}
    assert clean["trigger_source"] == report["trigger_source"] == "upstream"
    for key in ("raw.orders", "clean.orders", "report.orders"):
        assert store.get_dataset(key).last_success_at is not None, key
    # nothing more runs: the chain ran once
    time.sleep(2)
    assert [len(runs_of(db, j)) for j in ("extract", "clean", "report")] == [1, 1, 1]


# -- a pool with a limit of 2 under 10 due jobs -----------------------------------------------

POOLED = """\
project: demo-freshet
region: europe-west1
queues:
  - name: pool-test-runs
pools:
  warehouse: {{max_concurrent: 2}}
jobs:
{jobs}"""


def test_a_pool_of_2_runs_at_most_2_of_10_due_jobs_at_once(db, tasks_emulator, probe):
    store = Store(db)
    settings = load_settings({"FRESHET_TASKS_EMULATOR_HOST": tasks_emulator.address,
                              "FRESHET_QUEUE": "pool-test-runs"}, auth_mode="local")
    jobs = "".join(f"  - {{id: load-{i}, kind: slot_probe, pool: warehouse, "
                   f"schedule: {{cron: '0 * * * *'}}, produces: [wh.t{i}]}}\n"
                   for i in range(10))
    config = parse_config(POOLED.format(jobs=jobs), "pooled.yaml")
    admin = TaskQueue(settings)
    now = utcnow()
    apply(config, store=store, task_queue=admin, now=now)
    # Google enforces the limit: the queue apply made (or found, on a reused emulator) says 2
    limits = LocalDispatcher.limits_from(admin)
    assert limits["pool-test-runs-warehouse"] == 2
    assert limits["pool-test-runs"] == 200  # the default pool: the queue's default

    hold = threading.Event()

    def deliver(run_id, attempt):
        hold.wait(30)
        return handle_one(store, dispatcher, run_id, attempt, now=utcnow(),
                          settings=settings).status

    dispatcher = LocalDispatcher(settings, deliver, limits=limits)
    for i in range(10):
        store.update_job(f"load-{i}", {"next_run_at": now - timedelta(seconds=1)})
    created = tick_once(store, dispatcher, now=now, settings=settings).created
    assert len(created) == 10
    counts = pool_counts(store, config.catalog)  # what the page shows, counted in Firestore
    assert counts == {"default": (0, 0), "warehouse": (0, 10)}
    hold.set()
    seen = []
    while not dispatcher.idle():
        running, queued = pool_counts(store, config.catalog)["warehouse"]
        seen.append(running)
        assert running <= 2 and running + queued <= 10
        time.sleep(0.05)
    dispatcher.wait_idle(timeout=120)
    dispatcher.close()
    assert probe.peak == 2  # never more, and the pool was used to its limit
    assert dispatcher.peak["pool-test-runs-warehouse"] == 2
    assert all(store.run(r).status == RunStatus.SUCCEEDED for r in created)
    assert {store.run(r).queue for r in created} == {"pool-test-runs-warehouse"}
    assert pool_counts(store, config.catalog)["warehouse"] == (0, 0)
    assert max(seen, default=0) <= 2
