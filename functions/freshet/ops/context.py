"""The local context: which running stack the CLI (and the console) talk to.

`freshet demo`, `python -m freshet_local.emulators` and `python -m freshet_local.cloud_local`
write `.freshet/context.json` when they are up and remove it when they stop. The CLI reads
it when no environment says otherwise, the way kubectl reads its current context. The
format is documented in docs/context.md; `load()` is the one reader.

Which file: $FRESHET_CONTEXT if set (`none` turns the context off), else
`.freshet/context.json` in the current directory or the nearest parent that has one.
"""

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

FORMAT = "freshet-context/1"
ENV_VAR = "FRESHET_CONTEXT"
RELATIVE_PATH = Path(".freshet") / "context.json"
# The variables that say which stack a command talks to: when the environment sets one
# of them to another value, the environment wins and the context is not used at all.
IDENTITY = ("FIRESTORE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT")
# Never written to the file: secrets the local stack's functions hold.
_SECRET_MARKERS = ("SECRET", "TOKEN", "PASSWORD", "KEY")


@dataclass(frozen=True)
class Context:
    name: str  # what wrote it: demo, emulators, demo-cloud
    project: str
    pid: int
    written_at: str
    config: str | None = None
    addresses: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    path: Path | None = None

    def alive(self) -> bool:
        """Whether the process that wrote it still runs (a crashed demo leaves the file)."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def conflicts(self, environ: Mapping[str, str]) -> list[str]:
        """The identity variables the environment sets to something else."""
        return [k for k in IDENTITY if environ.get(k) and k in self.env
                and environ[k] != self.env[k]]

    def missing_env(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The context's variables the environment does not set."""
        return {k: v for k, v in self.env.items() if not environ.get(k)}

    def to_json(self) -> dict:
        return {"format": FORMAT, "name": self.name, "project": self.project,
                "pid": self.pid, "written_at": self.written_at, "config": self.config,
                "addresses": dict(self.addresses), "env": dict(self.env)}

    def shell(self) -> str:
        """`export` lines for a POSIX shell (eval "$(freshet demo env)")."""
        return "\n".join(f"export {k}={_quote(v)}" for k, v in sorted(self.env.items()))


def _quote(value: str) -> str:
    import shlex

    return shlex.quote(value)


def context_path(environ: Mapping[str, str] = os.environ, cwd: Path | None = None
                 ) -> Path | None:
    """The context file in use (it may not exist), or None when turned off."""
    chosen = environ.get(ENV_VAR)
    if chosen:
        return None if chosen.lower() in ("none", "off", "0") else Path(chosen)
    here = (cwd or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / RELATIVE_PATH).is_file():
            return folder / RELATIVE_PATH
    return here / RELATIVE_PATH


def write_path(default: Path, environ: Mapping[str, str] = os.environ) -> Path | None:
    """Where a local stack writes its context: $FRESHET_CONTEXT if set, else `default`
    (None: turned off)."""
    chosen = environ.get(ENV_VAR)
    if chosen:
        return None if chosen.lower() in ("none", "off", "0") else Path(chosen)
    return default


def load(environ: Mapping[str, str] = os.environ, cwd: Path | None = None) -> Context | None:
    """The context file's content, or None when there is none (or it cannot be read)."""
    path = context_path(environ, cwd)
    if path is None:
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        return None
    try:
        return Context(name=str(doc["name"]), project=str(doc["project"]),
                       pid=int(doc["pid"]), written_at=str(doc["written_at"]),
                       config=doc.get("config"),
                       addresses={str(k): str(v) for k, v in doc["addresses"].items()},
                       env={str(k): str(v) for k, v in doc["env"].items()}, path=path)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def active(environ: Mapping[str, str] = os.environ, cwd: Path | None = None
           ) -> Context | None:
    """The context the CLI uses: present, its writer alive, and no environment against it."""
    found = load(environ, cwd)
    if found is None or not found.alive() or found.conflicts(environ):
        return None
    return found


def write(path: Path | None, *, name: str, project: str, env: Mapping[str, str],
          addresses: Mapping[str, str], config: str | None = None,
          pid: int | None = None) -> Context:
    """Write (atomically) the context of a stack this process runs; secrets left out."""
    kept = {k: str(v) for k, v in env.items()
            if not any(marker in k.upper() for marker in _SECRET_MARKERS)}
    made = Context(name=name, project=project, pid=pid or os.getpid(),
                   written_at=datetime.now(UTC).isoformat(timespec="seconds"),
                   config=config, addresses=dict(addresses), env=kept, path=path)
    if path is None:
        return made
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(made.to_json(), indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)
    return made


def remove(path: Path | None, pid: int | None = None) -> None:
    """Remove the context file if this process (or `pid`) wrote it."""
    if path is None:
        return
    found = load({ENV_VAR: str(path)})
    if found is not None and found.pid == (pid or os.getpid()):
        path.unlink(missing_ok=True)
