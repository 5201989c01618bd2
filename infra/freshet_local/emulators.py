"""Local emulators for Freshet: Firestore (our patched Node emulator) and Cloud Tasks.

Used by the test suite, the Makefile (``make emulators``) and the local demo::

    with start_firestore() as fs, start_tasks(queues=[...]) as tasks:
        os.environ.update(fs.env())
        ...

Every emulator runs in its own process group, which is killed on ``stop()`` and at
interpreter exit; the Firestore launcher also exits when our end of its stdin
closes, so even a SIGKILLed parent leaves no orphan behind.

``python -m freshet_local.emulators [--firestore-port N] [--tasks-port N]`` starts
both and runs until Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

REPO_ROOT = Path(__file__).resolve().parents[2]
FIRESTORE_DIR = REPO_ROOT / "infra" / "emulators" / "firestore"
LAUNCHER = FIRESTORE_DIR / "launcher.js"
DEFAULT_PROJECT = "demo-freshet"
DEFAULT_TIMEOUT = 30.0

FIRESTORE_ENV = "FIRESTORE_EMULATOR_HOST"
TASKS_ENV = "FRESHET_TASKS_EMULATOR_HOST"


class EmulatorError(RuntimeError):
    """An emulator could not be installed, started or reached."""


# ---------------------------------------------------------------------------
# Process handling


_live: set[_Process] = set()
_live_lock = threading.Lock()


class _Process:
    """A child process in its own process group that announces ``READY host:port``."""

    def __init__(self, name: str, cmd: list[str], *, cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        # A file, not a pipe: nobody has to drain it, and it is there for error reports.
        self._stderr: IO[bytes] = tempfile.TemporaryFile(  # noqa: SIM115 (closed in stop())
            prefix=f"{name}-", suffix=".log")
        self._ready = threading.Event()
        self._ready_address: str | None = None
        self.popen = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            # Our end of stdin is held open for the child's lifetime: when this
            # process dies, the pipe closes and the child shuts itself down.
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            start_new_session=True,
        )
        with _live_lock:
            _live.add(self)
        threading.Thread(target=self._read_stdout, name=f"{name}-stdout", daemon=True).start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _read_stdout(self) -> None:
        # Keeps draining after READY so a chatty child never blocks on a full pipe.
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            line = raw.decode(errors="replace").strip()
            if not self._ready.is_set() and line.startswith("READY "):
                self._ready_address = line.split(" ", 1)[1]
                self._ready.set()
        self._ready.set()  # EOF: wake any waiter, it will see the process died

    def stderr_text(self, limit: int = 8000) -> str:
        try:
            self._stderr.flush()
            self._stderr.seek(0)
            data = self._stderr.read()
        except (OSError, ValueError):
            return ""
        return data.decode(errors="replace")[-limit:]

    def wait_ready(self, timeout: float) -> str:
        """Returns the ``host:port`` the child announced, or raises with its stderr."""
        if not self._ready.wait(timeout) or self._ready_address is None:
            # stdout closed: the child is exiting; let it finish saying why
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(1)
            alive = self.popen.poll() is None
            stderr = self.stderr_text()
            self.stop()
            reason = f"did not report READY within {timeout:.0f}s" if alive else (
                f"exited with code {self.popen.returncode}")
            raise EmulatorError(
                f"{self.name} {reason}.\ncommand: {' '.join(map(str, self.popen.args))}\n"
                f"stderr:\n{stderr}")
        return self._ready_address

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the whole process group, SIGKILL it if it lingers."""
        with _live_lock:
            _live.discard(self)
        if self.popen.poll() is None:
            _signal_group(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout)
        # Grandchildren (if any) share the group; make sure none survive.
        _signal_group(self.popen.pid, signal.SIGKILL)
        for stream in (self.popen.stdin, self.popen.stdout):
            with contextlib.suppress(OSError):
                if stream:
                    stream.close()
        with contextlib.suppress(OSError):
            self._stderr.close()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@atexit.register
def _stop_all() -> None:
    with _live_lock:
        procs = list(_live)
    for p in procs:
        p.stop(timeout=2.0)


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _reachable(address: str, timeout: float = 1.0) -> bool:
    try:
        host, port = _split_address(address)
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


# ---------------------------------------------------------------------------
# Firestore


def ensure_node_deps() -> None:
    """Installs the Firestore emulator's npm dependencies if node_modules is missing."""
    if (FIRESTORE_DIR / "node_modules" / "@firestore-emulator" / "server").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise EmulatorError(
            "npm was not found on PATH; install Node.js 20+ (with npm) to run the "
            f"Firestore emulator, then run `npm ci` in {FIRESTORE_DIR}")
    lock = FIRESTORE_DIR / "package-lock.json"
    cmd = [npm, "ci" if lock.exists() else "install", "--no-audit", "--no-fund"]
    proc = subprocess.run(cmd, cwd=FIRESTORE_DIR, capture_output=True, text=True)
    if proc.returncode != 0:
        raise EmulatorError(
            f"`{' '.join(cmd[1:])}` failed in {FIRESTORE_DIR} (exit {proc.returncode}):\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")


class _Emulator:
    """What both emulator handles share: an address and, if we started it, a process."""

    host: str
    port: int
    _process: _Process | None

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def owned(self) -> bool:
        return self._process is not None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def stop(self) -> None:
        """Stops the emulator if we started it; a reused one is left alone."""
        if self._process is not None:
            self._process.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class FirestoreEmulator(_Emulator):
    """A running Firestore emulator (owned, or reused from the environment)."""

    def __init__(self, host: str, port: int, project: str,
                 process: _Process | None = None, unpatched: bool = False) -> None:
        self.host = host
        self.port = port
        self.project = project
        self.unpatched = unpatched
        self._process = process

    def env(self) -> dict[str, str]:
        return {FIRESTORE_ENV: self.address, "GOOGLE_CLOUD_PROJECT": self.project}

    def wipe(self, database: str = "(default)") -> None:
        """Deletes every document of the project's database (the official emulator's endpoint)."""
        url = (f"http://{self.address}/emulator/v1/projects/{self.project}"
               f"/databases/{database}/documents")
        req = urllib.request.Request(url, method="DELETE")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                resp.read()
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            raise EmulatorError(
                f"wiping Firestore emulator at {self.address} failed: {exc}") from exc

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.address}/", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, http.client.HTTPException, OSError):
            return False

    def __repr__(self) -> str:
        kind = "unpatched" if self.unpatched else "patched"
        return (f"<FirestoreEmulator {kind} {self.address} project={self.project} "
                f"owned={self.owned}>")


def start_firestore(*, host: str = "127.0.0.1", port: int | None = None,
                    project: str = DEFAULT_PROJECT, unpatched: bool = False,
                    timeout: float = DEFAULT_TIMEOUT) -> FirestoreEmulator:
    """Starts the Firestore emulator and waits until it listens (port None: a free one)."""
    node = shutil.which("node")
    if node is None:
        raise EmulatorError("node was not found on PATH; the Firestore emulator needs Node.js 20+")
    ensure_node_deps()
    cmd = [node, str(LAUNCHER), "--host", host, "--port", str(port or 0)]
    if unpatched:
        cmd.append("--unpatched")
    name = "firestore-emulator" + ("-unpatched" if unpatched else "")
    proc = _Process(name, cmd, cwd=FIRESTORE_DIR)
    address = proc.wait_ready(timeout)
    bound_host, bound_port = _split_address(address)
    return FirestoreEmulator(bound_host, bound_port, project, proc, unpatched=unpatched)


def firestore_from_env(*, project: str | None = None) -> FirestoreEmulator | None:
    """A non-owning handle on ``$FIRESTORE_EMULATOR_HOST`` if it is set and answers."""
    address = os.environ.get(FIRESTORE_ENV)
    if not address or not _reachable(address):
        return None
    host, port = _split_address(address)
    project = project or os.environ.get("GOOGLE_CLOUD_PROJECT") or DEFAULT_PROJECT
    return FirestoreEmulator(host, port, project)


# ---------------------------------------------------------------------------
# Cloud Tasks (PyPI gcloud-tasks-emulator, run in this interpreter)

# gcloud-tasks-emulator's own CLI always listens on [::] (all interfaces) and
# cannot pick a free port, so we drive its server module directly: bind only to
# the requested host, report the bound port, and exit with our parent.
_TASKS_BOOTSTRAP = r"""
import logging, os, signal, sys, threading
from concurrent import futures
import grpc
from gcloud_tasks_emulator import server as s

host, port, max_retries = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
queues = sys.argv[4:]
logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                    format="%(asctime)s %(name)s %(levelname)s %(message)s")
bound = {}
started = threading.Event()

def run(self):
    self._httpd = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    s.add_CloudTasksServicer_to_server(s.Greeter(self._state), self._httpd)
    bound["port"] = self._httpd.add_insecure_port(f"{host}:{port}")
    self._httpd.start()
    started.set()

s.APIThread.run = run
server = s.create_server(host, port, default_queue_names=queues, max_retries=max_retries)
server.start()
if not started.wait(30) or not bound.get("port"):
    sys.exit(f"tasks emulator could not listen on {host}:{port}")
shown = f"[{host}]" if ":" in host else host
print(f"READY {shown}:{bound['port']}", flush=True)

def shutdown(*_):
    # The package's worker threads are not daemons; exit hard once stopped.
    try:
        server.stop()
    finally:
        os._exit(0)

signal.signal(signal.SIGTERM, shutdown)
signal.signal(signal.SIGINT, shutdown)
try:
    sys.stdin.read()  # returns when our parent closes the pipe (or dies)
finally:
    shutdown()
"""


class TasksEmulator(_Emulator):
    """A running Cloud Tasks emulator (owned, or reused from the environment)."""

    def __init__(self, host: str, port: int, process: _Process | None = None,
                 max_retries: int | None = None, queues: tuple[str, ...] = ()) -> None:
        self.host = host
        self.port = port
        self.max_retries = max_retries
        self.queues = queues
        self._process = process

    def env(self) -> dict[str, str]:
        return {TASKS_ENV: self.address}

    def client(self):
        return tasks_client(self.address)

    def stderr_text(self) -> str:
        return self._process.stderr_text() if self._process else ""

    def __repr__(self) -> str:
        return f"<TasksEmulator {self.address} owned={self.owned}>"


def start_tasks(*, host: str = "127.0.0.1", port: int | None = None,
                max_retries: int | None = None, queues: tuple[str, ...] | list[str] = (),
                timeout: float = DEFAULT_TIMEOUT) -> TasksEmulator:
    """Starts gcloud-tasks-emulator.

    ``max_retries=None`` keeps the package default: a failing task is retried
    (every ~0.1 s) forever.  ``queues`` are full queue names
    (``projects/P/locations/L/queues/Q``) created at start-up.
    """
    queues = tuple(queues)
    cmd = [sys.executable, "-c", _TASKS_BOOTSTRAP, host, str(port or 0),
           str(-1 if max_retries is None else max_retries), *queues]
    proc = _Process("tasks-emulator", cmd)
    address = proc.wait_ready(timeout)
    bound_host, bound_port = _split_address(address)
    return TasksEmulator(bound_host, bound_port, proc, max_retries=max_retries, queues=queues)


def tasks_from_env() -> TasksEmulator | None:
    """A non-owning handle on ``$FRESHET_TASKS_EMULATOR_HOST`` if it is set and answers."""
    address = os.environ.get(TASKS_ENV)
    if not address or not _reachable(address):
        return None
    host, port = _split_address(address)
    return TasksEmulator(host, port)


def tasks_client(address: str):
    """A ``tasks_v2.CloudTasksClient`` talking to the emulator over an insecure channel."""
    import grpc
    from google.cloud import tasks_v2
    from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

    channel = grpc.insecure_channel(address)
    return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))


# ---------------------------------------------------------------------------
# CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m freshet_local.emulators",
        description="Run the Firestore and Cloud Tasks emulators until Ctrl-C / SIGTERM.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--firestore-port", type=int, default=8080)
    parser.add_argument("--tasks-port", type=int, default=8123)
    parser.add_argument("--project", default=DEFAULT_PROJECT)
    parser.add_argument("--max-retries", type=int, default=None,
                        help="give up a failing task after N retries (default: retry forever)")
    parser.add_argument("--queue", action="append", default=[],
                        help="full queue name to create at start-up (repeatable)")
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    firestore = tasks = None
    try:
        firestore = start_firestore(host=args.host, port=args.firestore_port, project=args.project)
        tasks = start_tasks(host=args.host, port=args.tasks_port, max_retries=args.max_retries,
                            queues=args.queue)
        print(f"Firestore emulator: {firestore.address} (project {firestore.project})")
        print(f"Cloud Tasks emulator: {tasks.address}")
        print("# export these in your shell:")
        for key, value in {**firestore.env(), **tasks.env()}.items():
            print(f"export {key}={value}")
        print("Press Ctrl-C to stop.", flush=True)
        while not stop.is_set():
            for emu, label in ((firestore, "Firestore"), (tasks, "Cloud Tasks")):
                proc = emu._process
                if proc is not None and not proc.alive():
                    print(f"{label} emulator exited unexpectedly:\n{proc.stderr_text()}",
                          file=sys.stderr)
                    return 1
            stop.wait(1.0)
        return 0
    except EmulatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        for emu in (tasks, firestore):
            if emu is not None:
                emu.stop()
        print("emulators stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
