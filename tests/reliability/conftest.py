"""Fixtures for the reliability tests: run_task served by functions-framework the way
Cloud Run serves it (one request per instance, a request timeout that kills the worker)."""

from pathlib import Path

import pytest

from freshet.core.settings import load_settings
from freshet_local.functions_host import serve

ROOT = Path(__file__).resolve().parents[2]
REQUEST_TIMEOUT_S = 3


def served_env(firestore_emulator, **extra) -> dict[str, str]:
    return {
        **firestore_emulator.env(),
        "FRESHET_AUTH": "local",
        "FRESHET_SYNC_MODULES": "tests.reliability.syncs",
        "PYTHONPATH": str(ROOT),
        **extra,
    }


@pytest.fixture(scope="module")
def served_run_task(firestore_emulator, tmp_path_factory):
    """THREADS=1 makes gunicorn use its sync worker, which CLOUD_RUN_TIMEOUT_SECONDS
    kills when a request outlives it — as the platform's request timeout does."""
    log = tmp_path_factory.mktemp("served") / "run_task.log"
    env = served_env(firestore_emulator, THREADS="1",
                     CLOUD_RUN_TIMEOUT_SECONDS=str(REQUEST_TIMEOUT_S))
    served = serve("run_task", env=env, log_path=log)
    yield served
    served.stop()


@pytest.fixture
def settings():
    """Lookahead 0: a repeated tick at the same `now` has nothing new to claim, so
    every run a test sees is for the slot it means (the lookahead has its own tests)."""
    return load_settings({}, auth_mode="local", lookahead_s=0)
