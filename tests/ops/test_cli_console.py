"""The console's actions in the CLI, against the emulators: pause with a reason and an
until, runs a page at a time, retry and cancel, ad-hoc maintenance windows; bad input
is one line and exit 2."""

import re
from datetime import timedelta

import pytest

from freshet.core import runs
from freshet.core.models import TriggerSource
from freshet.core.settings import Settings
from freshet.core.timeutil import utcnow
from freshet.gcp.store import Store
from tests.ops.test_cli import one_line_error, pipeline, run  # noqa: F401 (a fixture)

SETTINGS = Settings()


@pytest.fixture()
def applied(capsys, pipeline, db):  # noqa: F811
    assert run(capsys, "apply", "--config", str(pipeline))[0] == 0
    store = Store(db)
    job = store.job("rates")
    slot = (utcnow() - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    failed = runs.new_run(job, runs.scheduled_run_id("rates", slot), slot,
                          source=TriggerSource.SCHEDULE, now=slot, settings=SETTINGS)
    failed = runs.failed(runs.started(failed, 1, slot, timedelta(minutes=30)), slot, "boom")
    store.create_run(failed)
    return store, failed


def test_pause_needs_a_reason_and_says_when_it_ends(capsys, applied):
    code, _, err = run(capsys, "jobs", "pause", "orders")
    assert code == 2 and "--reason" in one_line_error(err)
    code, out, _ = run(capsys, "jobs", "pause", "orders", "--reason", "vendor outage",
                       "--until", "2h")
    assert code == 0 and out.splitlines()[0] == "job orders: paused"
    assert re.match(r"  reason: vendor outage; resumes by itself at \d{4}-", out.splitlines()[1])
    code, _, err = run(capsys, "jobs", "pause", "orders", "--reason", "x", "--until", "-1h")
    assert code == 2 and "until" in one_line_error(err)


def test_runs_page_retry_and_cancel(capsys, applied):
    store, failed = applied
    code, out, _ = run(capsys, "runs", "page", "--state", "failed")
    assert code == 0 and failed.id in out and "more:" not in out
    code, out, _ = run(capsys, "runs", "retry", failed.id)
    retry_id = re.search(r"retried as (\S+)", out).group(1)
    assert code == 0 and store.run(retry_id).scheduled_for == failed.scheduled_for
    code, out, _ = run(capsys, "runs", "retry", failed.id)
    assert f"retried as {retry_id} (already requested: queued)" in out
    code, out, _ = run(capsys, "runs", "cancel", retry_id)
    assert code == 0 and out.strip() == f"run {retry_id}: cancelled"
    code, _, err = run(capsys, "runs", "cancel", failed.id)
    assert code == 2 and "only a queued or running run" in one_line_error(err)
    code, out, _ = run(capsys, "runs", "page", "--limit", "1")
    assert "more: --cursor " in out


def test_an_adhoc_window_starts_lists_and_ends(capsys, applied):
    code, out, _ = run(capsys, "maintenance", "start", "--minutes", "30", "--note", "failover",
                       "--job", "orders")
    assert code == 0 and "open until" in out and "jobs orders" in out
    window_id = re.search(r"window (\S+) open", out).group(1)
    code, out, _ = run(capsys, "maintenance", "list")
    assert window_id in out and "ad-hoc" in out
    code, out, _ = run(capsys, "maintenance", "end", window_id)
    assert code == 0 and out.strip() == f"maintenance window {window_id} ended"
    code, _, err = run(capsys, "maintenance", "start", "--minutes", "0", "--note", "x")
    assert code == 2 and "minutes" in one_line_error(err)
    code, _, err = run(capsys, "maintenance", "start", "--minutes", "5", "--note", "x",
                       "--job", "ghost")
    assert code == 2 and "unknown job 'ghost'" in one_line_error(err)
