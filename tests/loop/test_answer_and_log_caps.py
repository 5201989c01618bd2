"""A sync's error of any size: what run_task answers and logs is capped like what is stored."""

import logging
from pathlib import Path

import pytest

from freshet.core.text import MAX_LOGGED_CHARS
from freshet.gcp.store import Store
from freshet.loop import registry
from freshet.loop.tick import tick_once
from freshet.ops.deps import reset_process_deps
from freshet.ops.web import MAX_ANSWER_CHARS
from tests.loop.helpers import T0, RecordingQueue, add_job, loop_settings

ROOT = Path(__file__).resolve().parents[2]
TEN_MB = 10 * 1024 * 1024


@pytest.fixture
def huge_error_kind():
    @registry.sync("test_huge_error")
    def huge(ctx):
        raise RuntimeError("E" * TEN_MB)

    yield "test_huge_error"
    registry.unregister("test_huge_error")


@pytest.fixture
def run_task_app(db, tasks_emulator, monkeypatch):
    from functions_framework import create_app

    monkeypatch.setenv("FRESHET_AUTH", "local")
    monkeypatch.setenv("FRESHET_TASKS_EMULATOR_HOST", tasks_emulator.address)
    monkeypatch.setenv("FRESHET_QUEUE", "caps-no-such-queue")
    reset_process_deps()
    yield create_app(target="run_task", source=str(ROOT / "functions" / "main.py")).test_client()
    reset_process_deps()


def test_a_ten_megabyte_error_is_answered_and_logged_in_a_few_kilobytes(
        db, run_task_app, huge_error_kind, caplog):
    store, settings = Store(db), loop_settings()
    add_job(store, "huge", kind=huge_error_kind, max_retries=2, next_run_at=T0)
    run_id = tick_once(store, RecordingQueue(settings), now=T0, settings=settings).created[0]
    with caplog.at_level(logging.WARNING, logger="freshet.loop.run"):
        response = run_task_app.post("/", json={"run_id": run_id, "attempt": 1})
    assert response.status_code == 503  # transient, retried: the answer that was 11 MB
    assert len(response.data) < MAX_ANSWER_CHARS + 1000
    logged = [r.getMessage() for r in caplog.records if r.name == "freshet.loop.run"]
    assert logged and all(len(m) < MAX_LOGGED_CHARS + 1000 for m in logged)
    assert "characters cut" in logged[0] and "RuntimeError" in logged[0]
    assert len(store.get_run(run_id).error) <= 2000
