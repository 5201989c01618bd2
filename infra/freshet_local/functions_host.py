"""Serve Freshet's entry points locally, each with functions-framework in its own
process, as Cloud Functions would (one function, one service)."""

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from freshet.core.specs import ENTRY_POINTS  # noqa: F401  (the demo serves each of them)

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "functions" / "main.py"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class ServedFunction:
    target: str
    host: str
    port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/{self.target}"

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


_started: list[ServedFunction] = []


def serve(target: str, *, env: dict[str, str], port: int | None = None,
          host: str = "127.0.0.1", log_path: Path | None = None,
          timeout_s: float = 30.0, source: Path | None = None,
          exact_env: bool = False, prefix: list[str] | None = None) -> ServedFunction:
    """Start `functions-framework --target TARGET` and wait until it answers.

    By default the function runs from the work tree with this process's environment
    plus `env`. `source` serves another copy of functions/ (from its own folder, with
    only that folder on the path, as Cloud Functions serves /workspace); `exact_env`
    gives the process `env` and nothing else; `prefix` runs the command through a
    wrapper (freshet_local.cloud_local makes the source read-only with one)."""
    port = port or free_port(host)
    if source is None:
        paths = [str(ROOT / "functions"), str(ROOT / "infra"), env.get("PYTHONPATH", "")]
        main, cwd = SOURCE, ROOT
    else:
        paths, main, cwd = [str(source)], source / "main.py", source
    base = {} if exact_env else dict(os.environ)
    full_env = {**base, **env, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        [*(prefix or []), sys.executable, "-m", "functions_framework", "--target", target,
         "--source", str(main), "--host", host, "--port", str(port)],
        env=full_env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True, cwd=cwd,
    )
    served = ServedFunction(target, host, port, process)
    _started.append(served)
    _wait_ready(served, timeout_s, log_path)
    return served


def _wait_ready(served: ServedFunction, timeout_s: float, log_path: Path | None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            tail = log_path.read_text()[-2000:] if log_path and log_path.exists() else ""
            raise RuntimeError(f"{served.target} exited with {served.process.returncode}\n{tail}")
        try:
            with socket.create_connection((served.host, served.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    served.stop()
    raise RuntimeError(f"{served.target} did not start on port {served.port} in {timeout_s} s")


def stop_all() -> None:
    while _started:
        _started.pop().stop()


atexit.register(stop_all)
