"""End to end through the local stack: tick -> Cloud Task (gcloud-tasks-emulator) ->
run_task served by functions-framework -> dataset fresh in the Firestore emulator."""

from datetime import timedelta

import pytest

from freshet.core.catalog import Catalog
from freshet.core.freshness import evaluate
from freshet.core.settings import load_settings
from freshet.core.timeutil import utcnow
from freshet.gcp.store import Store
from freshet.gcp.tasks import QueueSpec, TaskQueue
from freshet.loop.tick import tick_once
from freshet_local.functions_host import serve
from tests.loop.helpers import add_job, wait_for


@pytest.fixture
def stack(firestore_emulator, tasks_emulator, tmp_path):
    env = {
        **firestore_emulator.env(),
        "FRESHET_AUTH": "local",
        "FRESHET_TASKS_EMULATOR_HOST": tasks_emulator.address,
        "FRESHET_QUEUE": "e2e-runs",
        "FRESHET_REGION": "europe-west1",
    }
    served = serve("run_task", env=env, log_path=tmp_path / "run_task.log")
    settings = load_settings(env, run_task_url=served.url)
    queue = TaskQueue(settings)
    queue.create_or_update_queue(QueueSpec("e2e-runs"))
    yield settings, queue
    served.stop()


def test_tick_to_task_to_run_task_makes_the_dataset_fresh(db, stack):
    settings, queue = stack
    store = Store(db)
    now = utcnow()
    add_job(store, "e2e", kind="noop", produces=("ds.e2e",), cron="* * * * *",
            next_run_at=now - timedelta(seconds=1))
    run_id = tick_once(store, queue, now=now, settings=settings).created[0]
    run = wait_for(lambda: (r := store.run(run_id)).terminal and r)
    assert run.status == "succeeded" and run.attempt_number == 1
    ds = store.get_dataset("ds.e2e")
    assert evaluate(ds, Catalog().requirement_for("ds.e2e"), utcnow()).state == "fresh"
    assert store.job("e2e").last_run_status == "succeeded"
