"""The cloud-shaped local run: Freshet as `make deploy` would leave it, on this machine.

- The five functions run under functions-framework with exactly the environment deploy
  gives them (freshet_local.deploy.function_env), plus only what the platform adds
  (K_SERVICE, PORT, HOME, PATH) and where Google's services are (the emulators, the
  local stand-in for Google's certificates): PLATFORM_ENV.
- They run from a copy of the source folder, as deploy uploads it (site/ copied in),
  made read-only: Cloud Functions' /workspace is. A write there fails with EROFS.
- A front (freshet_local.cloud_front) stands where Cloud Run's does: it verifies RS256
  ID tokens against the local Google's certificates, checks the invoker bindings
  deploy would create, strips the signature, and enforces each function's timeout.
- Cloud Tasks deliveries carry the ID token their task names (the tasks emulator mints
  it) and stop at the task's dispatch deadline; the local Cloud Scheduler calls with
  the invoker's token, as Google's services would.
- The site and the snapshots go to the deploy's buckets in gcp-storage-emulator.

    with cloud_local.start("infra/demo/pipeline.yaml", workdir=tmp) as cloud:
        cloud.fire("freshet-tick")
        cloud.call("api", "POST", "/jobs/orders-sync/run", as_="invoker")
"""

import contextlib
import functools
import http.server
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import requests

from freshet.core.specs import ENTRY_POINTS
from freshet.ops.config import PipelineConfig, load_config
from freshet_local import deploy, emulators
from freshet_local.cloud_front import CloudFront, Route
from freshet_local.functions_host import ServedFunction, serve
from freshet_local.local_google import LocalGoogle
from freshet_local.local_scheduler import LocalScheduler, call

ROOT = Path(__file__).resolve().parents[2]
# What a function's process has besides deploy's variables: what Cloud Run sets, and
# where the stand-ins for Google's services listen.
PLATFORM_ENV = ("K_SERVICE", "K_REVISION", "K_CONFIGURATION", "PORT", "PATH", "HOME",
                "PYTHONUNBUFFERED", "PYTHONPATH", emulators.FIRESTORE_ENV,
                emulators.TASKS_ENV, emulators.STORAGE_ENV, "FRESHET_OIDC_CERTS_URL")
# In a mount namespace of its own: bind the source folder ($1) read-only, then run in it.
# The `cd` matters: a working directory entered before the mount would still be the
# writable one underneath, and relative paths would write through it.
_READ_ONLY = ('mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && cd "$1" && shift '
              '&& exec env -u PWD -u OLDPWD "$@"')


# -- the source folder, as deploy uploads it, read-only --------------------------------

def workspace(config: PipelineConfig, into: Path) -> Path:
    """functions/ as deploy uploads it: site/ copied in (deploy-source), and the sync
    modules the config names (a deployment keeps its own inside functions/)."""
    source = into / "workspace"
    shutil.copytree(ROOT / config.functions.source, source,
                    ignore=shutil.ignore_patterns(*deploy.SOURCE_IGNORED, "site"))
    site = source / "site"
    site.mkdir()
    for name in ("templates", "static"):
        shutil.copytree(ROOT / "site" / name, site / name)
    shutil.copy2(ROOT / "site" / "status.schema.json", site)
    for module in config.sync_modules:
        _copy_module(module, source)
    return source


def _copy_module(module: str, source: Path) -> None:
    parts = module.split(".")
    if (source.joinpath(*parts).with_suffix(".py")).exists():
        return
    for depth in range(1, len(parts) + 1):
        spec = importlib.util.find_spec(".".join(parts[:depth]))
        if spec is None or spec.origin is None:
            raise RuntimeError(f"sync module {module!r} not found")
        target = source.joinpath(*parts[:depth])
        if depth < len(parts):
            target.mkdir(exist_ok=True)
            shutil.copy2(spec.origin, target / "__init__.py")
        else:
            shutil.copy2(spec.origin, target.with_suffix(".py"))


def read_only(source: Path) -> list[str]:
    """A command prefix under which `source` cannot be written to.

    Not root: file modes do it. Root ignores modes, so its functions run in a mount
    namespace where `source` is bound read-only (writes fail with EROFS, as in
    Cloud Functions)."""
    for path in [source, *source.rglob("*")]:
        if not path.is_symlink():
            mode = 0o555 if path.is_dir() else 0o444
            path.chmod(mode)
    if os.geteuid() != 0:
        return []
    prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _READ_ONLY, "sh",
              str(source)]
    probe = subprocess.run([*prefix, "touch", ".probe"], capture_output=True, text=True,
                           cwd=source)
    if probe.returncode == 0 or "Read-only file system" not in probe.stderr:
        raise RuntimeError("cannot serve the source read-only here (as root, that needs "
                           f"`unshare --mount`): {probe.stderr.strip()[:300]}")
    return prefix


# -- the run -----------------------------------------------------------------------------

@dataclass
class CloudLocal:
    config: PipelineConfig  # base_url is the front's
    google: LocalGoogle
    front: CloudFront
    firestore: emulators.FirestoreEmulator
    tasks: emulators.TasksEmulator
    storage: emulators.StorageEmulator
    source: Path
    functions: dict[str, ServedFunction] = field(default_factory=dict)
    envs: dict[str, dict[str, str]] = field(default_factory=dict)
    scheduler: LocalScheduler | None = None
    log_dir: Path | None = None
    read_only_prefix: list[str] = field(default_factory=list)  # how the functions run
    _owned: list = field(default_factory=list)

    def token(self, email: str | None = None, function: str | None = None, **claims) -> str:
        """An ID token minted by the local Google: the invoker's, for `function`."""
        email = email or self.config.functions.invoker_email
        audience = self.config.functions.url(function) if function else claims.pop("audience")
        return self.google.mint(email, audience, **claims)

    def call(self, function: str, method: str, path: str = "", *, email: str | None = None,
             token: str | None = None, json=None, headers: dict | None = None,
             timeout: float = 60) -> requests.Response:
        """A call through the front, by default as the invoker account."""
        url = self.config.functions.url(function) + path
        head = dict(headers or {})
        if token is None:
            token = self.token(email, function)
        if token:
            head["Authorization"] = f"Bearer {token}"
        return requests.request(method, url, json=json, headers=head, timeout=timeout)

    def fire(self, schedule: str) -> int:
        """One call of a control schedule, as Cloud Scheduler makes it (waits for it)."""
        return call(self.scheduler.job(schedule), self.google.mint)

    def log_text(self, function: str) -> str:
        path = self.log_dir / f"{function}.log" if self.log_dir else None
        return path.read_text(errors="replace") if path and path.exists() else ""

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
        for served in self.functions.values():
            served.stop()
        for closer in reversed(self._owned):
            with contextlib.suppress(Exception):
                closer()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def function_process_env(config: PipelineConfig, entry_point: str, *, port: int,
                         home: Path, services: dict[str, str]) -> dict[str, str]:
    """Deploy's variables for the function, and the platform's (PLATFORM_ENV) only."""
    env = dict(deploy.function_env(config, entry_point))
    env.update({
        # Cloud Run names the service after the function (no underscores allowed).
        "K_SERVICE": entry_point.replace("_", "-"), "K_REVISION": f"{entry_point}-00001-loc",
        "K_CONFIGURATION": entry_point.replace("_", "-"), "PORT": str(port),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
        "PYTHONUNBUFFERED": "1", **services,
    })
    return env


def start(config_path: str | os.PathLike, *, workdir: Path,
          firestore: emulators.FirestoreEmulator | None = None, apply: bool = True,
          run_scheduler: bool = False, max_task_retries: int = 50,
          log_dir: Path | None = None) -> CloudLocal:
    """Start everything; stop it with .stop() (or use it as a context manager)."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_dir = log_dir or workdir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    owned: list = []
    try:
        google = LocalGoogle()
        owned.append(google.close)
        listener = socket.create_server(("127.0.0.1", 0))
        front_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        config = load_config(config_path)
        config = replace(config, functions=replace(config.functions, base_url=front_url))
        if firestore is None:
            firestore = emulators.start_firestore(project=config.project)
            owned.append(firestore.stop)
            os.environ.update(firestore.env())  # this process's own clients (apply)
        tasks = emulators.start_tasks(max_retries=max_task_retries,
                                      oidc_key=google.key.save(workdir / "google-key.json"))
        owned.append(tasks.stop)
        storage = emulators.start_storage(buckets=(config.site.bucket,
                                                   config.site.snapshot_bucket))
        owned.append(storage.stop)
        source = workspace(config, workdir)
        prefix = read_only(source)
        front = CloudFront([], google.certs_url, sock=listener)
        owned.append(front.close)
        cloud = CloudLocal(config=config, google=google, front=front, firestore=firestore,
                           tasks=tasks, storage=storage, source=source, log_dir=log_dir,
                           read_only_prefix=prefix, _owned=owned)
        services = {**firestore.env(), **tasks.env(), **storage.env(),
                    "FRESHET_OIDC_CERTS_URL": google.certs_url}
        services.pop("GOOGLE_CLOUD_PROJECT", None)  # deploy's env names the project
        home = Path(tempfile.mkdtemp(prefix="home-", dir=workdir))
        for ep in ENTRY_POINTS:
            port = _free_port()
            env = function_process_env(config, ep, port=port, home=home, services=services)
            cloud.envs[ep] = env
            cloud.functions[ep] = serve(ep, env=env, port=port, source=source,
                                        exact_env=True, prefix=prefix,
                                        log_path=log_dir / f"{ep}.log", timeout_s=60)
        front.add_routes([Route(
            name=ep, backend=f"http://127.0.0.1:{cloud.functions[ep].port}",
            audience=config.functions.url(ep),
            invokers=frozenset(e.lower() for e in deploy.invokers(config, ep)),
            timeout_s=config.functions.limits_for(ep).timeout.total_seconds())
            for ep in ENTRY_POINTS])
        if apply:
            apply_config(cloud)
        from freshet.ops.apply import control_jobs

        cloud.scheduler = LocalScheduler(control_jobs(config), token_source=google.mint)
        if run_scheduler:
            cloud.scheduler.start()
        return cloud
    except BaseException:
        from freshet_local.functions_host import stop_all

        stop_all()
        for closer in reversed(owned):
            with contextlib.suppress(Exception):
                closer()
        raise


def apply_config(cloud: CloudLocal):
    """What deploy's `freshet apply` step does (Cloud Scheduler: the local loop)."""
    from google.cloud import firestore as gfirestore

    from freshet.core.settings import load_settings
    from freshet.core.timeutil import utcnow
    from freshet.gcp.store import Store
    from freshet.gcp.tasks import TaskQueue
    from freshet.ops.apply import apply, plan

    config = cloud.config
    settings = load_settings(os.environ, project=config.project, region=config.region,
                             queue=config.queue, tasks_emulator_host=cloud.tasks.address)
    client = gfirestore.Client(project=config.project)
    store, queue = Store(client), TaskQueue(settings)
    todo = plan(config, store=store, task_queue=queue, now=utcnow())
    apply(todo, store=store, task_queue=queue, now=utcnow())
    return todo


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- make demo-cloud ---------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """Run the demo pipeline cloud-shaped until Ctrl-C, the scheduler loop included."""
    import argparse
    import signal
    import sys
    import threading

    parser = argparse.ArgumentParser(prog="python -m freshet_local.cloud_local",
                                     description=main.__doc__)
    parser.add_argument("--config", default=str(ROOT / "infra" / "demo" / "pipeline.yaml"))
    parser.add_argument("--run-for", type=float, default=None)
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    data = http.server.ThreadingHTTPServer(
        ("127.0.0.1", _demo_data_port(args.config)),
        functools.partial(_QuietFiles, directory=str(ROOT / "infra" / "demo" / "data")))
    threading.Thread(target=data.serve_forever, daemon=True).start()
    work = Path(tempfile.mkdtemp(prefix="freshet-cloud-"))
    print("Starting the cloud-shaped demo (emulators, five functions, the front) ...",
          flush=True)
    with start(args.config, workdir=work, run_scheduler=True) as cloud:
        for job in cloud.scheduler.jobs:
            cloud.scheduler.fire_now(job)
        site, fn = cloud.config.site, cloud.config.functions
        page = f"{cloud.storage.url}/storage/v1/b/{site.bucket}/o/index.html?alt=media"
        mint = (f"{sys.executable} -m freshet_local.local_google mint "
                f"--key={work / 'google-key.json'} --email={fn.invoker_email} "
                f"--audience={fn.url('api')}")
        print(f"""
Freshet is running cloud-shaped.

  Functions, behind the front    {cloud.front.url}/<function>   (Cloud Run's stand-in)
  Status page, in its bucket     {page}
  Function logs (JSON lines)     {cloud.log_dir}/
  Read-only source               {cloud.source}

Every call needs an ID token the front accepts, e.g. as the invoker account:
  curl -H "Authorization: Bearer $({mint})" {fn.url('api')}/jobs

Ctrl-C stops everything.""", flush=True)
        stop.wait(args.run_for)
    data.shutdown()
    shutil.rmtree(work, ignore_errors=True)
    return 0


def _demo_data_port(config_path: str) -> int:
    import re

    text = Path(config_path).read_text()
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", text.split("jobs:", 1)[-1])
    return int(match.group(1)) if match else 0


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


if __name__ == "__main__":
    raise SystemExit(main())
