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


def pytest_collection_modifyitems(config, items):
    """The files holding `slow` tests first, so that with several workers (make test:
    pytest -n 4 --dist loadfile) the longest files start at once rather than last."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)  # stable: order kept otherwise


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


@pytest.fixture(scope="session")
def bigquery_emulator():
    """$BIGQUERY_EMULATOR_HOST if it answers, else bqemulator for the session (offline:
    DuckDB's spatial extension comes from the duckdb-extension-spatial wheel)."""
    try:
        emu = emulators.bigquery_from_env(project=PROJECT) or emulators.start_bigquery(
            project=PROJECT)
    except emulators.EmulatorError as exc:
        pytest.exit(f"cannot start the BigQuery emulator: {exc}", returncode=3)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in emu.env().items():
            mp.setenv(key, value)
        yield emu
    emu.stop()


class RecordingProxy:
    """Forwards HTTP to an emulator and keeps each request's method, path (with its
    query) and JSON body: what a Google client really sent, without patching it.
    While `failing`, it answers 503 instead (the service unavailable for a moment)."""

    def __init__(self, target: str) -> None:
        import json
        import threading
        import urllib.error
        import urllib.request
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[dict] = []
        self.failing = False
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.requests.append({"method": self.command, "path": self.path,
                                       "body": json.loads(body) if body else None})
                if proxy.failing:
                    return self._answer(503, b'{"error": {"code": 503, "status": '
                                             b'"UNAVAILABLE"}}')
                req = urllib.request.Request(f"http://{target}{self.path}", data=body or None,
                                             method=self.command,
                                             headers={"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(req, timeout=60) as resp:
                        status, data = resp.status, resp.read()
                except urllib.error.HTTPError as err:
                    status, data = err.code, err.read()
                self._answer(status, data)

            def _answer(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PATCH = _forward  # noqa: N815

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def inserts(self) -> list[dict]:
        """The bodies of BigQuery jobs.insert calls."""
        return [r["body"] for r in self.requests
                if r["method"] == "POST" and r["path"].split("?")[0].endswith("/jobs")]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def recording_proxy():
    """Makes RecordingProxy instances in front of an address; closes them after the module."""
    made = []

    def make(target: str) -> RecordingProxy:
        made.append(RecordingProxy(target))
        return made[-1]

    yield make
    for proxy in made:
        proxy.close()
