"""A small pipeline for the console's tests: applied from a config, with a failed run
whose error is hostile (markup, a bidi override), a queued run and a second failure."""

from dataclasses import replace
from datetime import datetime, timedelta

from freshet.core import runs
from freshet.core.models import LastRun, RunStatus, TriggerSource
from freshet.core.settings import Settings
from freshet.core.windows import make_window
from freshet.gcp.store import Store
from freshet.ops.config import parse_config
from freshet.ops.operations import upsert_job
from freshet_local.recording_queue import RecordingQueue
from tests.ops.helpers import PIPELINE

HOSTILE = "<script>alert(1)</script> upstream said \u202egnp.exe\u202c no"
SETTINGS = Settings(project="demo-freshet", region="europe-west1", auth_mode="local")


def seed_console(store: Store, now: datetime) -> RecordingQueue:
    queue = RecordingQueue(SETTINGS)
    config = parse_config(PIPELINE, "pipeline.yaml", env={})
    for job in config.jobs:
        upsert_job(store, job, now=now - timedelta(hours=3))
    store.put_catalog_doc(config.catalog.to_doc())
    nightly = make_window({"id": "nightly-vacuum", "cron": "0 3 * * *", "duration": "30m",
                           "note": "warehouse vacuum"}, "maintenance[0]")
    store.set_control({"maintenance": [nightly.to_doc()]})
    rates, orders = store.job("rates"), store.job("orders")
    for i, (job, hours) in enumerate(((rates, 2), (rates, 26))):
        slot = (now - timedelta(hours=hours)).replace(minute=0, second=0, microsecond=0)
        run = runs.new_run(job, runs.scheduled_run_id(job.id, slot), slot,
                           source=TriggerSource.SCHEDULE, now=slot, settings=SETTINGS)
        run = runs.started(run, 1, slot + timedelta(seconds=5), timedelta(minutes=30))
        store.create_run(runs.failed(run, slot + timedelta(seconds=30 + i),
                                     HOSTILE if i == 0 else "timeout talking to the bank"))
    store.update_job("rates", {"last_run_status": LastRun.FAILED, "last_error": HOSTILE,
                               "last_run_at": now - timedelta(hours=2),
                               "last_run_id": runs.scheduled_run_id("rates", slot)})
    slot = now.replace(second=0, microsecond=0)
    queued = runs.new_run(orders, runs.scheduled_run_id("orders", slot), slot,
                          source=TriggerSource.SCHEDULE, now=now, settings=SETTINGS)
    store.create_run(replace(queued, status=RunStatus.QUEUED))
    return queue
