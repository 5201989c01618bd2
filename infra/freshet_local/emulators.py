"""Local emulators for Freshet: Firestore (Google's official emulator) and Cloud Tasks.

Firestore is Google's Cloud Firestore emulator, run by firebase-tools (pinned in
infra/package.json, the same version deploy uses). The emulator is the Cloud SDK
component ``cloud-firestore-emulator`` when it is installed (Debian package
``google-cloud-cli-firestore-emulator``); otherwise firebase-tools downloads the
same emulator on first use. Either way it needs Java 11 or newer.

Used by the test suite, the Makefile (``make emulators``) and the local demo::

    with start_firestore() as fs, start_tasks(queues=[...]) as tasks:
        os.environ.update(fs.env())
        ...

Every emulator runs under a supervisor in its own process group, which is killed on
``stop()`` and at interpreter exit; the supervisor also takes its emulator down when
our end of its stdin closes, so even a SIGKILLed parent leaves no orphan behind.

``python -m freshet_local.emulators [--firestore-port N] [--tasks-port N]
[--bigquery-port N]`` starts them and runs until Ctrl-C / SIGTERM. BigQuery is PyPI
bqemulator (``start_bigquery``, ``BIGQUERY_EMULATOR_HOST``).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import IO, Any

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA_DIR = REPO_ROOT / "infra"
FIREBASE_BIN = INFRA_DIR / "node_modules" / ".bin" / "firebase"
RULES = INFRA_DIR / "firestore.rules"
LAUNCHER_DIR = REPO_ROOT / ".freshet" / "emulators" / "firestore"
SDK_JAR = Path("platform/cloud-firestore-emulator/cloud-firestore-emulator.jar")
SDK_ROOTS = ("/usr/lib/google-cloud-sdk", "/usr/share/google-cloud-sdk",
             "/opt/google-cloud-sdk", os.path.expanduser("~/google-cloud-sdk"))
EMULATOR_MAIN_CLASS = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"
JAR_ENV = "FIRESTORE_EMULATOR_BINARY_PATH"  # firebase-tools runs this jar instead of its own
MIN_JAVA = 11  # what the pinned firebase-tools accepts (15.x and later want 21)
DEFAULT_PROJECT = "demo-freshet"
DEFAULT_TIMEOUT = 30.0
FIRESTORE_TIMEOUT = 90.0  # a first run may download the emulator

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
# Firestore: Google's official emulator, run by firebase-tools


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


def sdk_jar() -> Path | None:
    """The Cloud SDK component's jar (google-cloud-cli-firestore-emulator), if installed."""
    roots = []
    gcloud = shutil.which("gcloud")
    if gcloud:
        roots.append(Path(os.path.realpath(gcloud)).parents[1])
    roots += [Path(p) for p in SDK_ROOTS]
    for root in roots:
        if (root / SDK_JAR).is_file():
            return root / SDK_JAR
    if gcloud:  # an SDK somewhere unusual: ask it (slower, so last)
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([gcloud, "info", "--format=value(installation.sdk_root)"],
                                 capture_output=True, text=True, timeout=30).stdout.strip()
            if out and (Path(out) / SDK_JAR).is_file():
                return Path(out) / SDK_JAR
    return None


def java_major(java: str) -> int | None:
    """The major version `java -version` reports (17 for "17.0.15"), None if unreadable."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


def check_java() -> str:
    """The java executable, or EmulatorError in one line saying what to install."""
    java = shutil.which("java")
    if java is None:
        raise EmulatorError(
            f"the Firestore emulator needs Java {MIN_JAVA}+ and none was found on PATH: "
            "install it (Debian/Ubuntu: apt-get install openjdk-17-jre-headless "
            "google-cloud-cli-firestore-emulator)")
    major = java_major(java)
    if major is not None and major < MIN_JAVA:
        raise EmulatorError(
            f"the Firestore emulator needs Java {MIN_JAVA}+, but {java} is Java {major}: "
            "install a newer JDK (Debian/Ubuntu: apt-get install openjdk-17-jre-headless)")
    return java


def emulator_jar() -> Path | None:
    """What FIRESTORE_EMULATOR_BINARY_PATH should name: None lets firebase-tools download.

    firebase-tools runs `java -jar PATH`, but the SDK's jar has no Main-Class (the SDK
    starts it with `-cp`). So we point firebase-tools at a jar holding only a manifest
    whose Main-Class is the emulator's and whose Class-Path is the SDK's jar: the Java
    process firebase-tools starts then runs the installed cloud-firestore-emulator.jar.
    """
    given = os.environ.get(JAR_ENV)
    if given:
        return Path(given)
    jar = sdk_jar()
    if jar is None:
        return None
    manifest = ("Manifest-Version: 1.0\r\n"
                f"Main-Class: {EMULATOR_MAIN_CLASS}\r\n"
                f"Class-Path: {jar.resolve().as_uri()}\r\n\r\n")
    launcher = LAUNCHER_DIR / "cloud-firestore-emulator.jar"
    current = None
    with contextlib.suppress(OSError, zipfile.BadZipFile, KeyError), \
            zipfile.ZipFile(launcher) as z:
        current = z.read("META-INF/MANIFEST.MF").decode()
    if current != manifest:
        LAUNCHER_DIR.mkdir(parents=True, exist_ok=True)
        tmp = launcher.with_suffix(f".{os.getpid()}.tmp")
        with zipfile.ZipFile(tmp, "w") as z:
            z.writestr("META-INF/MANIFEST.MF", manifest)
        os.replace(tmp, launcher)
    return launcher


def ensure_firebase_tools() -> Path:
    """firebase-tools as pinned in infra/package-lock.json, installed by `npm ci` if missing."""
    if FIREBASE_BIN.exists():
        return FIREBASE_BIN
    npm = shutil.which("npm")
    if npm is None:
        raise EmulatorError(
            "npm was not found on PATH: install Node.js 20+ (with npm); the Firestore "
            f"emulator runs through firebase-tools (npm ci in {INFRA_DIR})")
    cmd = [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"]
    proc = subprocess.run(cmd, cwd=INFRA_DIR, capture_output=True, text=True)
    if proc.returncode != 0 or not FIREBASE_BIN.exists():
        raise EmulatorError(
            f"`npm ci` failed in {INFRA_DIR} (exit {proc.returncode}):\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return FIREBASE_BIN


class FirestoreEmulator(_Emulator):
    """A running Firestore emulator (owned, or reused from the environment)."""

    def __init__(self, host: str, port: int, project: str,
                 process: _Process | None = None, java_pid: int | None = None,
                 jar: str | None = None) -> None:
        self.host = host
        self.port = port
        self.project = project
        self._process = process
        self.java_pid = java_pid  # the emulator itself (firebase-tools is its parent)
        self.jar = jar

    def env(self) -> dict[str, str]:
        return {FIRESTORE_ENV: self.address, "GOOGLE_CLOUD_PROJECT": self.project}

    def wipe(self, database: str = "(default)") -> None:
        """Deletes every document of the project's database (the emulator's endpoint)."""
        url = (f"http://{self.address}/emulator/v1/projects/{self.project}"
               f"/databases/{database}/documents")
        req = urllib.request.Request(url, method="DELETE")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
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

    def pause(self) -> None:
        """SIGSTOP the emulator's Java process (an outage that loses nothing)."""
        os.kill(self._java(), signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self._java(), signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the Java process, as a crash would, then stop what is left."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._java(), signal.SIGKILL)
        self.stop()

    def _java(self) -> int:
        if self.java_pid is None:
            raise EmulatorError("this emulator was not started here; its process is unknown")
        return self.java_pid

    def __repr__(self) -> str:
        return (f"<FirestoreEmulator {self.address} project={self.project} "
                f"java_pid={self.java_pid} owned={self.owned}>")


# Runs firebase-tools, says READY once the emulator answers, and takes the emulator down
# when its stdin closes (our process died) or on SIGTERM. firebase-tools starts Java in
# a process group of its own, so a plain group kill would leave it running.
_FIRESTORE_SUPERVISOR = r"""
import json, os, signal, subprocess, sys, time, urllib.request

firebase, config, project, host, port, timeout = sys.argv[1:7]
port, timeout = int(port), float(timeout)
shown = f"[{host}]" if ":" in host else host
child = subprocess.Popen(
    [firebase, "emulators:start", "--only", "firestore", "--project", project,
     "--config", config],
    cwd=os.path.dirname(config), stdin=subprocess.DEVNULL, stdout=sys.stderr,
    stderr=sys.stderr)

def descendants(root):
    kids = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for kid in kids.get(todo.pop(), []):
            found.append(kid)
            todo.append(kid)
    return found

def java_pid():
    for pid in descendants(child.pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if args and os.path.basename(args[0]) == b"java":
            return pid
    return None

def shutdown(*_):
    tree = descendants(child.pid)
    if child.poll() is None:
        child.send_signal(signal.SIGINT)  # firebase-tools stops its emulators cleanly
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    os._exit(0)

signal.signal(signal.SIGTERM, shutdown)
signal.signal(signal.SIGINT, shutdown)
deadline = time.monotonic() + timeout
while True:
    if child.poll() is not None:
        sys.exit(f"firebase-tools exited with code {child.returncode}")
    if time.monotonic() > deadline:
        print(f"the Firestore emulator did not answer within {timeout:.0f}s", file=sys.stderr)
        shutdown()
    try:
        with urllib.request.urlopen(f"http://{shown}:{port}/", timeout=1) as r:
            if r.status == 200:
                break
    except OSError:
        time.sleep(0.1)
print(f"READY {shown}:{port} {java_pid() or 0}", flush=True)
try:
    sys.stdin.read()  # returns when our parent closes the pipe (or dies)
finally:
    shutdown()
"""


def _emulator_config(folder: Path, host: str, port: int) -> Path:
    """A firebase.json for one emulator: its own ports throughout (several may run at once)."""
    hub, logging_port, websocket = (_free_port(host) for _ in range(3))
    config = {
        "firestore": {"rules": str(RULES)},
        "emulators": {
            "firestore": {"host": host, "port": port, "websocketPort": websocket},
            "hub": {"host": host, "port": hub},
            "logging": {"host": host, "port": logging_port},
            "ui": {"enabled": False},
            "singleProjectMode": True,
        },
    }
    path = folder / "firebase.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start_firestore(*, host: str = "127.0.0.1", port: int | None = None,
                    project: str = DEFAULT_PROJECT,
                    timeout: float = FIRESTORE_TIMEOUT) -> FirestoreEmulator:
    """Starts Google's Firestore emulator through firebase-tools; waits until it answers.

    The jar is the Cloud SDK component's when installed, else firebase-tools downloads
    its own (the same emulator) on first use. `port=None` picks a free port.
    """
    check_java()
    firebase = ensure_firebase_tools()
    jar = emulator_jar()
    port = port or _free_port(host)
    folder = Path(tempfile.mkdtemp(prefix="freshet-firestore-"))
    config = _emulator_config(folder, host, port)
    env = {**os.environ, "NO_UPDATE_NOTIFIER": "1", "FIREBASE_CLI_DISABLE_UPDATE_CHECK": "1"}
    env.pop(JAR_ENV, None)
    if jar is not None:
        env[JAR_ENV] = str(jar)
    cmd = [sys.executable, "-c", _FIRESTORE_SUPERVISOR, str(firebase), str(config), project,
           host, str(port), str(timeout)]
    proc = _Process("firestore-emulator", cmd, cwd=folder, env=env)
    try:
        ready = proc.wait_ready(timeout + 15)
    except EmulatorError as exc:
        hint = "" if jar is not None else (
            "\nNo Cloud SDK Firestore emulator was found, so firebase-tools tried to download "
            "its own; offline, install google-cloud-cli-firestore-emulator instead.")
        raise EmulatorError(f"{exc}{hint}") from None
    address, _, java_pid = ready.partition(" ")
    bound_host, bound_port = _split_address(address)
    return FirestoreEmulator(bound_host, bound_port, project, proc,
                             java_pid=int(java_pid) or None if java_pid else None,
                             jar=str(sdk_jar() if jar is not None else "firebase-tools"))


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

def _install_oidc_delivery(s, key_file):
    # Deliver HTTP tasks as Cloud Tasks does and the package does not: with an ID token
    # for the account the task's oidc_token names (minted by the local stand-in for
    # Google's key), giving up after the task's dispatch_deadline.
    import json, time
    from urllib import request
    from google.auth import crypt, jwt

    doc = json.loads(open(key_file).read())
    signer = crypt.RSASigner.from_string(doc["pem"].encode(), key_id=doc["kid"])
    original = s._make_task_request

    def deliver(queue_name, task, host, port):
        target = task.http_request
        if not target.url:
            return original(queue_name, task, host, port)
        headers = dict(target.headers)
        token = target.oidc_token
        if token.service_account_email:
            now = int(time.time())
            claims = {"iss": "https://accounts.google.com", "aud": token.audience or target.url,
                      "iat": now, "exp": now + 3600, "sub": token.service_account_email,
                      "email": token.service_account_email, "email_verified": True}
            headers["Authorization"] = "Bearer " + jwt.encode(signer, claims).decode()
        headers.update({
            "X-CloudTasks-QueueName": queue_name.rsplit("/", 1)[-1],
            "X-CloudTasks-TaskName": task.name.rsplit("/", 1)[-1],
            "X-CloudTasks-TaskRetryCount": str(task.dispatch_count - 1),
            "X-CloudTasks-TaskExecutionCount": str(task.dispatch_count - 1),
        })
        deadline = task.dispatch_deadline.total_seconds() if task.dispatch_deadline else 600
        req = request.Request(target.url, method=target.http_method.name,
                              data=target.body or None, headers=headers)
        s.logger.info("[TASKS] Delivering %s with an OIDC token (deadline %ss)",
                      task.name, deadline)
        return request.urlopen(req, timeout=deadline)

    s._make_task_request = deliver


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
key_file = os.environ.get("FRESHET_TASKS_OIDC_KEY")
if key_file:
    _install_oidc_delivery(s, key_file)
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
                timeout: float = DEFAULT_TIMEOUT,
                oidc_key: Path | None = None) -> TasksEmulator:
    """Starts gcloud-tasks-emulator.

    ``max_retries=None`` keeps the package default: a failing task is retried
    (every ~0.1 s) forever.  ``queues`` are full queue names
    (``projects/P/locations/L/queues/Q``) created at start-up. With ``oidc_key`` (a
    key saved by freshet_local.local_google.SigningKey.save) HTTP tasks are delivered
    with the ID token their oidc_token names, and given up after their dispatch
    deadline, as Cloud Tasks does.
    """
    queues = tuple(queues)
    cmd = [sys.executable, "-c", _TASKS_BOOTSTRAP, host, str(port or 0),
           str(-1 if max_retries is None else max_retries), *queues]
    env = {k: v for k, v in os.environ.items() if k != "FRESHET_TASKS_OIDC_KEY"}
    if oidc_key is not None:
        env["FRESHET_TASKS_OIDC_KEY"] = str(oidc_key)
    proc = _Process("tasks-emulator", cmd, env=env)
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
# Cloud Storage (PyPI gcp-storage-emulator, in memory, in a thread of this process)

STORAGE_ENV = "STORAGE_EMULATOR_HOST"


class StorageEmulator:
    """gcp-storage-emulator serving in-memory buckets from a thread of this process."""

    def __init__(self, host: str, buckets: tuple[str, ...]) -> None:
        from gcp_storage_emulator.handlers import buckets as bucket_handlers
        from gcp_storage_emulator.server import create_server

        self._server = create_server(host, 0, in_memory=True)
        self._server.start()
        httpd = self._server._api._httpd  # bound to port 0: read the port it got
        self.host, self.port = host, httpd.server_port
        for name in buckets:
            bucket_handlers.create_bucket(name, self._server._storage)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        return {STORAGE_ENV: self.url}

    def read(self, bucket: str, name: str) -> tuple[bytes, dict[str, str]]:
        """An object's bytes and metadata (contentType, cacheControl), over HTTP."""
        from urllib.parse import quote

        base = f"{self.url}/storage/v1/b/{bucket}/o/{quote(name, safe='')}"
        with urllib.request.urlopen(base + "?alt=media", timeout=10) as resp:
            data = resp.read()
        with urllib.request.urlopen(base, timeout=10) as resp:
            meta = json.loads(resp.read())
        return data, meta

    def names(self, bucket: str) -> list[str]:
        with urllib.request.urlopen(f"{self.url}/storage/v1/b/{bucket}/o", timeout=10) as r:
            return sorted(item["name"] for item in json.loads(r.read()).get("items", []))

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_storage(*, host: str = "127.0.0.1", buckets: tuple[str, ...] = ()) -> StorageEmulator:
    return StorageEmulator(host, tuple(buckets))


# ---------------------------------------------------------------------------
# BigQuery (PyPI bqemulator on DuckDB, run in a child interpreter)

BIGQUERY_ENV = "BIGQUERY_EMULATOR_HOST"
BIGQUERY_DIR = REPO_ROOT / ".freshet" / "emulators" / "bigquery"
BIGQUERY_TIMEOUT = 60.0

# bqemulator loads DuckDB's `spatial` extension at start and would download it. The
# PyPI wheel duckdb-extension-spatial carries it: we put it where DuckDB looks
# ($HOME/.duckdb/extensions/v<version>/<platform>/, with HOME the emulator's own folder)
# so the emulator starts offline. It also lacks what Google guarantees and Freshet's
# idempotence rests on: a job id is unique in its project, and inserting it again
# answers 409 ALREADY_EXISTS (bqemulator replaces the job and runs it again). The
# bootstrap refuses a job id seen before, as BigQuery does, before anything runs.
_BIGQUERY_BOOTSTRAP = r"""
import asyncio, os, shutil, signal, sys, threading
from pathlib import Path

host, port, project, home = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
os.environ["HOME"] = home  # DuckDB's extension directory is $HOME/.duckdb/extensions
import duckdb
try:
    import duckdb_extension_spatial
except ImportError:
    sys.exit("duckdb-extension-spatial is not installed (pip install "
             f"duckdb-extension-spatial=={duckdb.__version__}): bqemulator needs it offline")
version = "v" + duckdb.__version__
source = Path(duckdb_extension_spatial.__file__).parent / "extensions" / version
source = source / "spatial.duckdb_extension"
if not source.is_file():
    sys.exit(f"duckdb-extension-spatial has no {version} build (duckdb is "
             f"{duckdb.__version__}): install duckdb-extension-spatial=={duckdb.__version__}")
platform = duckdb.execute("PRAGMA platform").fetchone()[0]
target = Path(home, ".duckdb", "extensions", version, platform, source.name)
if not target.is_file() or target.stat().st_size != source.stat().st_size:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)

from bqemulator.api.routes import jobs as routes
from bqemulator.config import Settings
from bqemulator.domain.errors import AlreadyExistsError
from bqemulator.server import EmulatorServer

claimed = set()

def unique(handler):
    async def insert_once(project_id, job_id, config, *args, **kwargs):
        dry = (config.get("dryRun") or kwargs.get("dry_run")) if isinstance(config, dict) else False
        ctx = kwargs.get("ctx") or next((a for a in args if hasattr(a, "catalog")), None)
        if not dry:
            key = (project_id, job_id)
            if key in claimed or (ctx is not None and ctx.catalog.get_job(project_id, job_id)):
                raise AlreadyExistsError(f"Already Exists: Job {project_id}:US.{job_id}")
            claimed.add(key)  # no await between the check and this: one event loop
        return await handler(project_id, job_id, config, *args, **kwargs)
    return insert_once

routes._handle_query_job = unique(routes._handle_query_job)
routes._handle_load_job_with_async_envelope = unique(
    routes._handle_load_job_with_async_envelope)

async def main():
    server = EmulatorServer(Settings(
        rest_host=host, rest_port=port, grpc_host=host, grpc_port=0,
        default_project_id=project, log_level="warning"))
    await server.start()
    shown = f"[{host}]" if ":" in host else host
    print(f"READY {shown}:{server.rest_port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # our parent closing the pipe (or dying) stops us too
    threading.Thread(target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stop.set)),
                     daemon=True).start()
    await stop.wait()
    await server.stop()

try:
    asyncio.run(main())
finally:
    os._exit(0)
"""


class BigQueryEmulator(_Emulator):
    """A running bqemulator (owned, or reused from the environment)."""

    def __init__(self, host: str, port: int, project: str,
                 process: _Process | None = None, gcs_root: Path | None = None) -> None:
        self.host = host
        self.port = port
        self.project = project
        self._process = process
        # Load jobs read gs://bucket/path from gcs_root/bucket/path (bqemulator's
        # BQEMU_GCS_LOCAL_ROOT); None for an emulator we did not start.
        self.gcs_root = gcs_root

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def env(self) -> dict[str, str]:
        return {BIGQUERY_ENV: self.address}

    def client(self, project: str | None = None):
        """The official client, pointed here without credentials."""
        return bigquery_client(self.address, project or self.project)

    def stderr_text(self) -> str:
        return self._process.stderr_text() if self._process else ""

    def __repr__(self) -> str:
        return f"<BigQueryEmulator {self.address} project={self.project} owned={self.owned}>"


def start_bigquery(*, host: str = "127.0.0.1", port: int | None = None,
                   project: str = DEFAULT_PROJECT, gcs_root: Path | None = None,
                   timeout: float = BIGQUERY_TIMEOUT) -> BigQueryEmulator:
    """Starts bqemulator (in memory) on `port` (None: a free one); waits until it answers.

    Load jobs read `gs://bucket/path` from `gcs_root/bucket/path` (default: a new
    temporary folder)."""
    home = BIGQUERY_DIR / "home"
    home.mkdir(parents=True, exist_ok=True)
    gcs_root = Path(gcs_root or tempfile.mkdtemp(prefix="freshet-bigquery-gcs-"))
    cmd = [sys.executable, "-c", _BIGQUERY_BOOTSTRAP, host, str(port or 0), project, str(home)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BQEMU_")}
    env["BQEMU_GCS_LOCAL_ROOT"] = str(gcs_root)
    proc = _Process("bigquery-emulator", cmd, env=env)
    address = proc.wait_ready(timeout)
    bound_host, bound_port = _split_address(address)
    return BigQueryEmulator(bound_host, bound_port, project, proc, gcs_root)


def bigquery_from_env(*, project: str | None = None) -> BigQueryEmulator | None:
    """A non-owning handle on ``$BIGQUERY_EMULATOR_HOST`` if it is set and answers."""
    address = os.environ.get(BIGQUERY_ENV)
    if not address or not _reachable(address):
        return None
    host, port = _split_address(address)
    return BigQueryEmulator(host, port, project or os.environ.get("GOOGLE_CLOUD_PROJECT")
                            or DEFAULT_PROJECT)


def bigquery_client(address: str, project: str):
    """A ``bigquery.Client`` talking to the emulator at ``address`` anonymously."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    return bigquery.Client(project=project, credentials=AnonymousCredentials(),
                           client_options=ClientOptions(api_endpoint=f"http://{address}"))


# ---------------------------------------------------------------------------
# Cloud Run Jobs (no emulator exists: freshet_local.cloudrun, a stand-in of the Admin
# API v2 surface Freshet calls, whose executions run local commands)

CLOUD_RUN_ENV = "FRESHET_CLOUD_RUN_EMULATOR_HOST"
CLOUD_RUN_SCRIPT = Path(__file__).resolve().parent / "cloudrun.py"


class CloudRunStandIn(_Emulator):
    """A running Cloud Run Admin API stand-in (owned, or reused from the environment)."""

    def __init__(self, host: str, port: int, process: _Process | None = None,
                 jobs: dict | None = None) -> None:
        self.host = host
        self.port = port
        self._process = process
        self.jobs = jobs or {}

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def env(self) -> dict[str, str]:
        return {CLOUD_RUN_ENV: self.address}

    def stderr_text(self) -> str:
        return self._process.stderr_text() if self._process else ""

    def __repr__(self) -> str:
        return f"<CloudRunStandIn {self.address} jobs={len(self.jobs)} owned={self.owned}>"


def start_cloud_run(jobs: dict[str, dict], *, host: str = "127.0.0.1",
                    port: int | None = None,
                    timeout: float = DEFAULT_TIMEOUT) -> CloudRunStandIn:
    """Starts the stand-in serving `jobs` ({"projects/P/locations/R/jobs/J": {"command":
    [...], "task_count": 1, "timeout": "600s", "env": {...}}}: each execution runs the
    command once per task)."""
    folder = Path(tempfile.mkdtemp(prefix="freshet-cloudrun-"))
    config = folder / "jobs.json"
    config.write_text(json.dumps({"jobs": jobs}, indent=2))
    cmd = [sys.executable, str(CLOUD_RUN_SCRIPT), "--config", str(config), "--host", host,
           "--port", str(port or 0)]
    proc = _Process("cloud-run-stand-in", cmd, cwd=folder)
    address = proc.wait_ready(timeout)
    bound_host, bound_port = _split_address(address)
    return CloudRunStandIn(bound_host, bound_port, proc, dict(jobs))


def cloud_run_from_env() -> CloudRunStandIn | None:
    """A non-owning handle on ``$FRESHET_CLOUD_RUN_EMULATOR_HOST`` if it is set and answers."""
    address = os.environ.get(CLOUD_RUN_ENV)
    if not address or not _reachable(address):
        return None
    host, port = _split_address(address)
    return CloudRunStandIn(host, port)


# ---------------------------------------------------------------------------
# CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m freshet_local.emulators",
        description="Run the Firestore, Cloud Tasks and BigQuery emulators until Ctrl-C / "
                    "SIGTERM.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--firestore-port", type=int, default=8080)
    parser.add_argument("--tasks-port", type=int, default=8123)
    parser.add_argument("--bigquery-port", type=int, default=9050)
    parser.add_argument("--cloud-run-port", type=int, default=9070)
    parser.add_argument("--cloud-run-jobs", type=Path, default=None,
                        help='JSON {"projects/P/locations/R/jobs/J": {"command": [...]}} '
                             "for the Cloud Run Jobs stand-in")
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

    firestore = tasks = bigquery = cloud_run = None
    try:
        firestore = start_firestore(host=args.host, port=args.firestore_port, project=args.project)
        tasks = start_tasks(host=args.host, port=args.tasks_port, max_retries=args.max_retries,
                            queues=args.queue)
        print(f"Firestore emulator: {firestore.address} (project {firestore.project}; "
              f"Java pid {firestore.java_pid} running {firestore.jar})")
        bigquery = start_bigquery(host=args.host, port=args.bigquery_port, project=args.project)
        print(f"Cloud Tasks emulator: {tasks.address}")
        jobs = json.loads(args.cloud_run_jobs.read_text()) if args.cloud_run_jobs else {}
        cloud_run = start_cloud_run(jobs, host=args.host, port=args.cloud_run_port)
        print(f"BigQuery emulator: {bigquery.address} (bqemulator, in memory)")
        print(f"Cloud Run Jobs stand-in: {cloud_run.address} ({len(jobs)} jobs)")
        _write_context(firestore, tasks)
        print(f"The CLI finds them from this folder ({CONTEXT_FILE.relative_to(REPO_ROOT)}); "
              'other shells: eval "$(freshet demo env)", or export:')
        for key, value in {**firestore.env(), **tasks.env(), **bigquery.env(),
                           **cloud_run.env()}.items():
            print(f"export {key}={value}")
        print("Press Ctrl-C to stop.", flush=True)
        while not stop.is_set():
            for emu, label in ((firestore, "Firestore"), (tasks, "Cloud Tasks"),
                               (bigquery, "BigQuery"), (cloud_run, "Cloud Run")):
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
        from freshet.ops import context

        context.remove(context.write_path(CONTEXT_FILE))
        for emu in (cloud_run, bigquery, tasks, firestore):
            if emu is not None:
                emu.stop()
        print("emulators stopped.", flush=True)


CONTEXT_FILE = REPO_ROOT / ".freshet" / "context.json"


def _write_context(firestore: FirestoreEmulator, tasks: TasksEmulator) -> None:
    """.freshet/context.json (freshet.ops.context): what the CLI needs to find them."""
    from freshet.ops import context

    context.write(context.write_path(CONTEXT_FILE), name="emulators",
                  project=firestore.project,
                  env={**firestore.env(), **tasks.env()},
                  addresses={"firestore": firestore.address, "tasks": tasks.address})


if __name__ == "__main__":
    sys.exit(main())
