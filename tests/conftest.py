"""Shared fixtures: the Firestore / Cloud Tasks emulators and a freshly wiped Firestore client."""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Plain `pytest` must work before `pip install -e .`: fall back to the source folders.
if importlib.util.find_spec("freshet") is None:
    sys.path[:0] = [str(ROOT / "functions"), str(ROOT / "infra")]
elif importlib.util.find_spec("freshet_local") is None:
    sys.path.insert(0, str(ROOT / "infra"))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for `tests.<pkg>.helpers` imports

from freshet_local import emulators  # noqa: E402

PROJECT = "demo-freshet"
# A demo running in this folder must not steer the tests' CLI calls (freshet.ops.context).
os.environ["FRESHET_CONTEXT"] = "none"


@pytest.fixture(scope="session")
def firestore_emulator():
    """$FIRESTORE_EMULATOR_HOST if it answers, else Google's emulator for the session.

    Without Java (or without the emulator, offline) the session stops with one line
    that says what to install, instead of an error per test."""
    try:
        emu = emulators.firestore_from_env(project=PROJECT) or emulators.start_firestore(
            project=PROJECT)
    except emulators.EmulatorError as exc:
        pytest.exit(f"cannot start the Firestore emulator: {exc}", returncode=3)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in emu.env().items():
            mp.setenv(key, value)
        yield emu
    emu.stop()  # a no-op for a reused emulator


@pytest.fixture(scope="session")
def tasks_emulator():
    """$FRESHET_TASKS_EMULATOR_HOST if it answers, else gcloud-tasks-emulator for the session."""
    emu = emulators.tasks_from_env() or emulators.start_tasks()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in emu.env().items():
            mp.setenv(key, value)
        yield emu
    emu.stop()


@pytest.fixture
def db(firestore_emulator):
    """A Firestore client on an emptied database."""
    from google.cloud import firestore

    firestore_emulator.wipe()
    client = firestore.Client(project=firestore_emulator.project)
    yield client
    client.close()
