"""Runs of the engine kinds end to end through run_task's two steps (handle_one, then
freshet.loop.poll's poll_one), on the in-memory store, against the BigQuery emulator
and the Cloud Run stand-in through Google's own clients: the external work is counted
where it lives, in the emulator.

    duplicate deliveries of one start   -> one external job
    run_task killed between the submit and its commit, recovered -> the next attempt
                                           adopts the job, no second one
    a cancelled backfill                -> its execution is cancelled on the engine
    a 503 while polling                 -> polled again, the run still succeeds
"""

from __future__ import annotations

import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from google.cloud import run_v2

from freshet.core.external import external_job_id
from freshet.core.models import RunStatus
from freshet.gcp.bigquery import BigQuery
from freshet.gcp.cloudrun import CloudRun, make_client
from freshet.gcp.memory import MemoryStore
from freshet.loop.backfill import cancel_backfill, start_backfill
from freshet.loop.engines import Engines
from freshet.loop.poll import poll_one
from freshet.loop.recover import sweep_once
from freshet.loop.run import handle_one
from freshet.loop.tick import tick_once
from freshet_local import emulators
from tests.loop.helpers import MIN, T0, RecordingQueue, add_job, loop_settings

PROJECT, REGION = "demo-freshet", "europe-west1"
JOBS = f"projects/{PROJECT}/locations/{REGION}/jobs"
H = 60 * MIN


class KilledStore(MemoryStore):
    """A store whose process dies in the transaction after `die_after` (run_task killed
    between the submit and the commit that records it)."""

    def __init__(self, die_after: int):
        super().__init__()
        self.left = die_after

    def transact(self, fn, max_attempts: int = 10):
        if self.left == 0:
            self.left = -1
            raise RuntimeError("run_task was killed")
        self.left -= 1
        return super().transact(fn, max_attempts)


# -- BigQuery --------------------------------------------------------------------------


@pytest.fixture
def bq_engines(bigquery_emulator):
    client = emulators.bigquery_client(bigquery_emulator.address, PROJECT)
    return Engines(PROJECT, REGION, bigquery=BigQuery(PROJECT, client=client))


@pytest.fixture
def hits(bigquery_emulator):
    """A fresh dataset with an empty table `hits`; each run of the job adds one row."""
    client = bigquery_emulator.client()
    name = f"t_{uuid.uuid4().hex[:10]}"
    client.create_dataset(name)
    client.query(f"CREATE TABLE {name}.hits (n INT64)").result()
    yield name
    client.delete_dataset(name, delete_contents=True, not_found_ok=True)


def _query_job(store, dataset: str) -> str:
    """A `bigquery_query` job, ticked: its run id (unique: job ids are unique in the
    emulator's project for the session, as in BigQuery's)."""
    settings = loop_settings()
    add_job(store, f"hits-{uuid.uuid4().hex[:8]}", kind="bigquery_query", cron="0 12 28 11 *",
            produces=("ds.hits",),
            params={"query": f"INSERT INTO {dataset}.hits (n) VALUES (1)",
                    "maximum_bytes_billed": 100_000_000}, max_retries=2)
    return tick_once(store, RecordingQueue(settings), now=T0, settings=settings).created[0]


def _jobs_of(emu, run_id: str) -> list[str]:
    prefix = external_job_id(run_id, 0)[:-1]  # freshet_<run>_
    return sorted(j.job_id for j in emu.client().list_jobs() if j.job_id.startswith(prefix))


def _rows(emu, dataset: str) -> list:
    return [tuple(r.values()) for r in emu.client().query(
        f"SELECT n FROM {dataset}.hits").result()]


def _poll_until_over(store, queue, engines, settings, run_id, *, limit=20):
    for _ in range(limit):
        run = store.get_run(run_id)
        if run.status != RunStatus.WAITING:
            return run
        task = [t for t in queue.sent if t.poll is not None][-1]
        poll_one(store, queue, run_id, task.attempt, task.poll, now=task.schedule_time,
                 settings=settings, engines=engines, clock=lambda t=task: t.schedule_time)
    return store.get_run(run_id)


def test_twenty_duplicate_deliveries_of_a_query_run_create_one_bigquery_job(
        bigquery_emulator, bq_engines, hits):
    store, settings = MemoryStore(), loop_settings()
    queue = RecordingQueue(settings)
    run_id = _query_job(store, hits)
    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(lambda _: handle_one(
            store, queue, run_id, 1, now=T0, settings=settings, engines=bq_engines,
            clock=lambda: T0), range(20)))
    assert sorted(o.state for o in outcomes) == ["noop"] * 19 + ["waiting"], outcomes
    assert _jobs_of(bigquery_emulator, run_id) == [external_job_id(run_id, 1)]
    run = _poll_until_over(store, queue, bq_engines, settings, run_id)
    assert run.status == RunStatus.SUCCEEDED and run.external.polls >= 1
    assert _rows(bigquery_emulator, hits) == [(1,)]
    assert store.get_dataset("ds.hits").last_success_run_id == run_id


def test_run_task_killed_between_the_submit_and_its_commit_starts_no_second_job(
        bigquery_emulator, bq_engines, hits):
    store, settings = KilledStore(die_after=1), loop_settings()  # the claim lands, no more
    queue = RecordingQueue(settings)
    run_id = _query_job(store, hits)
    store.left = 1
    with pytest.raises(RuntimeError, match="killed"):
        handle_one(store, queue, run_id, 1, now=T0, settings=settings, engines=bq_engines)
    assert _jobs_of(bigquery_emulator, run_id) == [external_job_id(run_id, 1)]  # submitted
    # Cloud Tasks redelivers: the run is under way, a no-op
    again = handle_one(store, queue, run_id, 2, now=T0 + MIN, settings=settings,
                       engines=bq_engines)
    assert again.state == "noop"
    # recovery finds it stuck and sends attempt 2, which adopts attempt 1's job
    swept = sweep_once(store, queue, now=T0 + 31 * MIN, settings=settings)
    assert swept.stuck_retried == [run_id]
    retry = handle_one(store, queue, run_id, 2, now=T0 + 32 * MIN, settings=settings,
                       engines=bq_engines)
    assert retry.state == "waiting"
    run = store.get_run(run_id)
    assert (run.external.external_id, run.external.adopted) == (external_job_id(run_id, 1),
                                                                True)
    assert _jobs_of(bigquery_emulator, run_id) == [external_job_id(run_id, 1)]
    assert _poll_until_over(store, queue, bq_engines, settings, run_id).status == \
        RunStatus.SUCCEEDED
    assert _rows(bigquery_emulator, hits) == [(1,)]  # the insert ran once


# -- Cloud Run Jobs ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def stand_in():
    emu = emulators.start_cloud_run({
        f"{JOBS}/quick": {"command": [sys.executable, "-c", "pass"]},
        f"{JOBS}/slow": {"command": [sys.executable, "-c", "import time; time.sleep(120)"]},
    })
    yield emu
    emu.stop()


@pytest.fixture
def flaky(stand_in, recording_proxy, monkeypatch):
    """The stand-in behind a proxy that answers 503 while told to."""
    proxy = recording_proxy(stand_in.address)
    monkeypatch.setenv("FRESHET_CLOUD_RUN_EMULATOR_HOST", proxy.address)
    return proxy


@pytest.fixture
def cr_engines(flaky):
    return Engines(PROJECT, REGION, cloud_run=CloudRun(PROJECT, REGION, deadline_s=1.0))


def _executions(job: str) -> list:
    """The job's executions, as the stand-in lists them (through Google's client)."""
    client = make_client(run_v2.ExecutionsClient)
    return list(client.list_executions(parent=f"{JOBS}/{job}"))


def _ended(engines, execution: str):
    """The execution's status once it has ended (its local processes take a moment)."""
    status = engines.cloud_run.poll(execution)
    for _ in range(50):
        if status.finished:
            break
        threading.Event().wait(0.1)
        status = engines.cloud_run.poll(execution)
    return status


def _cloud_run_job(store, job: str, **kw):
    add_job(store, f"cr-{job}", kind="cloud_run_job", cron="0 * * * *",
            produces=(f"ds.{job}",), params={"job": job, "region": REGION}, **kw)


def test_a_503_while_polling_an_execution_is_polled_again_and_the_run_succeeds(
        flaky, cr_engines):
    store, settings = MemoryStore(), loop_settings()
    queue = RecordingQueue(settings)
    _cloud_run_job(store, "quick", next_run_at=T0)
    run_id = tick_once(store, queue, now=T0, settings=settings).created[0]
    assert handle_one(store, queue, run_id, 1, now=T0, settings=settings,
                      engines=cr_engines).state == "waiting"
    flaky.failing = True
    task = [t for t in queue.sent if t.poll is not None][-1]
    polled = poll_one(store, queue, run_id, 1, task.poll, now=task.schedule_time,
                      settings=settings, engines=cr_engines)
    assert (polled.status, polled.state) == (200, "waiting")
    assert store.get_run(run_id).status == RunStatus.WAITING
    flaky.failing = False
    for _ in range(50):  # the execution's local process ends within a second or so
        run = _poll_until_over(store, queue, cr_engines, settings, run_id, limit=1)
        if run.status != RunStatus.WAITING:
            break
        threading.Event().wait(0.1)
    assert run.status == RunStatus.SUCCEEDED and run.records == {"ds.quick": 1}
    assert len([e for e in _executions("quick")
                if any(v.value == run_id for c in e.template.containers
                       for v in c.env)]) == 1


def _backfill_waiting_on_an_execution(store, queue, settings, engines):
    """A one-lane backfill of cr-slow whose first run started its execution and waits
    on it: (the backfill, the run's id, the execution's id)."""
    _cloud_run_job(store, "slow", next_run_at=T0 + H)
    backfill, _ = start_backfill(store, queue, "cr-slow", start=T0 - 3 * H, end=T0 - H,
                                 max_parallel=1, now=T0, settings=settings)
    run_id = queue.sent[0].run_id
    assert handle_one(store, queue, run_id, 1, now=T0, settings=settings,
                      engines=engines).state == "waiting"
    return backfill, run_id, store.get_run(run_id).external.external_id


def test_a_cancelled_backfill_cancels_its_execution_on_the_engine(flaky, cr_engines):
    store, settings = MemoryStore(), loop_settings()
    queue = RecordingQueue(settings)
    backfill, run_id, execution = _backfill_waiting_on_an_execution(store, queue,
                                                                    settings, cr_engines)
    cancel_backfill(store, backfill.id, now=T0 + MIN, who="ops@example.com")
    assert store.get_run(run_id).status == RunStatus.CANCELLED
    task = [t for t in queue.sent if t.poll is not None][-1]
    polled = poll_one(store, queue, run_id, 1, task.poll, now=task.schedule_time,
                      settings=settings, engines=cr_engines)
    assert polled.state == "cancelled"
    assert _ended(cr_engines, execution).state == "cancelled"
    assert len(_executions("slow")) == 1
    assert [t for t in queue.sent if t.poll is None and t.run_id != run_id] == []
    assert store.get_run(run_id).status == RunStatus.CANCELLED


def test_a_backfills_cancel_stops_its_execution_at_once_even_if_the_next_poll_is_lost(
        flaky, cr_engines):
    """The API's and the CLI's backfill cancel pass their engines: the work is asked to
    stop in the cancel itself, so a lost poll task leaves nothing running."""
    store, settings = MemoryStore(), loop_settings()
    queue = RecordingQueue(settings)
    backfill, run_id, execution = _backfill_waiting_on_an_execution(store, queue,
                                                                    settings, cr_engines)
    cancel_backfill(store, backfill.id, now=T0 + MIN, who="ops@example.com",
                    engines=cr_engines)
    assert store.get_run(run_id).status == RunStatus.CANCELLED
    # no poll is delivered (its task lost): the execution stops anyway
    assert _ended(cr_engines, execution).state == "cancelled"


def test_a_killed_start_of_a_cloud_run_job_is_adopted_by_its_marker_not_run_twice(
        flaky, cr_engines):
    store, settings = KilledStore(die_after=-1), loop_settings()
    queue = RecordingQueue(settings)
    _cloud_run_job(store, "slow", next_run_at=T0)
    run_id = tick_once(store, queue, now=T0, settings=settings).created[0]
    before = len(_executions("slow"))
    store.left = 1  # the claim lands; run_task dies before the commit of the start
    with pytest.raises(RuntimeError, match="killed"):
        handle_one(store, queue, run_id, 1, now=T0, settings=settings, engines=cr_engines)
    assert sweep_once(store, queue, now=T0 + 31 * MIN, settings=settings).stuck_retried == [
        run_id]
    retry = handle_one(store, queue, run_id, 2, now=T0 + 32 * MIN, settings=settings,
                       engines=cr_engines)
    assert retry.state == "waiting"
    external = store.get_run(run_id).external
    assert external.adopted and external.external_id.startswith(f"{JOBS}/slow/executions/")
    assert len(_executions("slow")) == before + 1  # one execution for the run
    cr_engines.cloud_run.cancel(external.external_id)  # do not leave it sleeping
