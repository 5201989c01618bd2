"""`make demo`: Freshet running locally with a demo pipeline, until Ctrl-C.

Starts the Firestore, Cloud Tasks and BigQuery emulators (the last holds the demo
vendor's table, which Freshet observes: freshet_local.demo_vendor), serves every entry point with
functions-framework, applies infra/demo/pipeline.yaml, opens an incident with a note,
fires the same Cloud Scheduler jobs deploy would create from a local scheduler loop,
serves the status page and a receiver for the two notification routes, and stops
everything it started on Ctrl-C.
"""

import argparse
import errno
import functools
import hashlib
import hmac
import http.server
import json
import os
import secrets
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

from freshet_local.demo_vendor import Vendor

ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = ROOT / "infra" / "demo" / "pipeline.yaml"
DEMO_DATA = ROOT / "infra" / "demo" / "data"
SITE_DIR = ROOT / "site" / "public"
LOG_DIR = ROOT / ".freshet" / "logs"
CONTEXT_FILE = ROOT / ".freshet" / "context.json"  # what the CLI reads (freshet context)
# The demo config's http_fetch URLs name this origin; the demo points them at --data-port.
DATA_ORIGIN = "http://127.0.0.1:8095"


def parse_args(argv):
    def port(name: str, default: int) -> int:
        return int(os.environ.get(f"FRESHET_DEMO_{name}_PORT", default))

    p = argparse.ArgumentParser(
        prog="freshet demo", description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="Each port can also be set as FRESHET_DEMO_<NAME>_PORT (e.g. "
               "FRESHET_DEMO_SITE_PORT). `freshet demo env` prints the running demo's "
               'variables for other shells: eval "$(freshet demo env)".')
    p.add_argument("--config", default=str(DEMO_CONFIG), help="the pipeline config")
    p.add_argument("--firestore-port", type=int, default=port("FIRESTORE", 8080),
                   help="the Firestore emulator")
    p.add_argument("--tasks-port", type=int, default=port("TASKS", 8123),
                   help="the Cloud Tasks emulator")
    p.add_argument("--functions-port", type=int, default=port("FUNCTIONS", 8081),
                   help="first of five consecutive ports, one per function")
    p.add_argument("--site-port", type=int, default=port("SITE", 5000),
                   help="the status page")
    p.add_argument("--data-port", type=int, default=port("DATA", 8095),
                   help="the demo's upstream data server (the http_fetch jobs fetch from it)")
    p.add_argument("--console-port", type=int, default=port("CONSOLE", 8766),
                   help="the operator console (freshet console)")
    p.add_argument("--run-for", type=float, default=None,
                   help="stop by itself after this many seconds (default: at Ctrl-C)")
    return p.parse_args(argv)


def _static_server(folder: Path, port: int) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class AlertReceiver:
    """Where the demo's two routes deliver: /slack and /webhook (checks the signature).
    Each message becomes a line of .freshet/logs/alerts.log; a free port, chosen here."""

    def __init__(self, log_path: Path, secret: str):
        receiver = self
        self.log_path, self.secret, self.count = log_path, secret, 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.record(self.path, dict(self.headers), body)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def record(self, path: str, headers: dict, body: bytes) -> None:
        doc = json.loads(body or b"{}")
        if path == "/webhook":
            stamp = headers.get("X-Freshet-Timestamp", "")
            mac = hmac.new(self.secret.encode(), stamp.encode() + b"." + body, hashlib.sha256)
            signed = hmac.compare_digest(f"sha256={mac.hexdigest()}",
                                         headers.get("X-Freshet-Signature", ""))
            line = (f"webhook ({'signature ok' if signed else 'BAD SIGNATURE'}): "
                    + "; ".join(e["title"] for e in doc.get("events", [])))
        else:
            line = "slack: " + doc.get("text", "").replace("\n", " | ")
        self.count += 1
        with self.log_path.open("a", encoding="utf-8") as log:
            log.write(f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} {line}\n")

    def shutdown(self) -> None:
        self.server.shutdown()


def _say(text: str = "") -> None:
    print(text, flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    from freshet_local import emulators
    from freshet_local.functions_host import ENTRY_POINTS, serve, stop_all

    stop = threading.Event()
    starting = [True]

    def on_signal(*_) -> None:
        stop.set()
        if starting[0]:  # Ctrl-C during start-up stops at once, not after it
            starting[0] = False
            raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    SITE_DIR.mkdir(parents=True, exist_ok=True)
    started = []
    try:
        _say("Starting the Firestore emulator (Google's, through firebase-tools) ...")
        fs = emulators.start_firestore(port=args.firestore_port)
        started.append(fs)
        config = _load(with_data_port(args.config, args.data_port))
        _say("Starting the Cloud Tasks emulator ...")
        tasks = emulators.start_tasks(port=args.tasks_port)
        started.append(tasks)
        _say("Starting the BigQuery emulator (bqemulator) and the demo's vendor ...")
        bigquery = emulators.start_bigquery(project=config.project)
        started.append(bigquery)
        vendor = Vendor(bigquery.client()).start()
        _say("Starting the Cloud Run Jobs stand-in (its executions run a local command) ...")
        cloud_run = emulators.start_cloud_run(demo_cloud_run_jobs(
            config.project, config.region,
            export_seconds(os.environ)))
        started.append(cloud_run)
        servers = [_static_server(DEMO_DATA, args.data_port)]
        alerts = AlertReceiver(LOG_DIR / "alerts.log", secrets.token_hex(16))
        servers.append(alerts)
        ports = {t: args.functions_port + i for i, t in enumerate(ENTRY_POINTS)}
        env = {**_function_env(fs, tasks, config, ports, args.site_port),
               **bigquery.env(), **cloud_run.env(), **_route_env(alerts)}
        _say("Serving the functions with functions-framework ...")
        functions = {}
        for target in ENTRY_POINTS:
            extra = ({"THREADS": "1", "CLOUD_RUN_TIMEOUT_SECONDS": "50"}
                     if target == "run_task" else {})
            functions[target] = serve(target, env={**env, **extra}, port=ports[target],
                                      log_path=LOG_DIR / f"{target}.log")
        os.environ.update(env)
        _apply(config)
        servers.append(_static_server(SITE_DIR, args.site_port))
        servers.append(_console(args.console_port))
        scheduler = _scheduler(config, ports)
        # A first tick right away (its runs, and the first observation of the vendor's
        # table), then the other jobs, so that the first page shows them.
        tick = [j for j in scheduler.jobs if j.http_target.uri.endswith("/scheduler_tick")]
        for job in tick:
            scheduler.fire_now(job, wait=True)
        for job in scheduler.jobs:
            if job not in tick:
                scheduler.fire_now(job)
        scheduler.start()
        write_context("demo", env, {
            "firestore": fs.address, "tasks": tasks.address, "bigquery": bigquery.address,
            "cloud_run": cloud_run.address,
            **{name: served.url for name, served in functions.items()},
            "site": f"http://127.0.0.1:{args.site_port}/",
            "data": f"http://127.0.0.1:{args.data_port}/"}, config.path)
        _banner(args, fs, tasks, functions)
        starting[0] = False
        stop.wait(args.run_for)
        _say("\nStopping ...")
        scheduler.stop()
        vendor.stop()
        for server in servers:
            server.shutdown()
        return 0
    finally:
        starting[0] = False
        from freshet.ops import context

        context.remove(context.write_path(CONTEXT_FILE))
        stop_all()
        for handle in reversed(started):
            handle.stop()
        _say("Stopped everything the demo started.")


# The Cloud Run job the demo's `nightly-export` runs (a `cloud_run_job`): each execution
# works for EXPORT_S seconds, longer than the demo queue's dispatch deadline (20 s) and
# run_task's timeout (30 s), which a sync inside run_task could not outlast.
EXPORT_JOB, EXPORT_S = "nightly-export", 45
_EXPORT = ("import os, time; time.sleep(float(os.environ.get('EXPORT_S', '45'))); "
           "print('exported', os.environ.get('FRESHET_RUN_ID'))")


def export_seconds(env) -> float:
    """FRESHET_DEMO_EXPORT_S, checked: how long the demo's Cloud Run job works."""
    text = env.get("FRESHET_DEMO_EXPORT_S") or str(EXPORT_S)
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 1 <= seconds <= 3600:
        raise SystemExit(f"freshet demo: FRESHET_DEMO_EXPORT_S must be a number of seconds "
                         f"from 1 to 3600, not {text[:40]!r}")
    return seconds


def demo_cloud_run_jobs(project: str, region: str, seconds: float = EXPORT_S
                        ) -> dict[str, dict]:
    """The Cloud Run jobs the stand-in serves for the demo (they exist before Freshet
    runs them, as in the cloud, where Freshet never creates one). `seconds`: how long
    nightly-export's execution works (FRESHET_DEMO_EXPORT_S; the tests take 25)."""
    return {f"projects/{project}/locations/{region}/jobs/{EXPORT_JOB}": {
        "command": [sys.executable, "-c", _EXPORT], "env": {"EXPORT_S": str(seconds)},
        "timeout": "600s"}}


def _shown(path: str | Path) -> str:
    """A path relative to the work tree when it is inside it."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def write_context(name: str, env: dict[str, str], addresses: dict[str, str],
                  config_path: str | None) -> None:
    """.freshet/context.json (or $FRESHET_CONTEXT): the stack's addresses and the
    variables the CLI needs."""
    from freshet.ops import context

    context.write(context.write_path(CONTEXT_FILE), name=name,
                  project=env["GOOGLE_CLOUD_PROJECT"], env=env, addresses=addresses,
                  config=config_path)


def _load(path):
    from freshet.ops.config import load_config

    return load_config(path)


def with_data_port(config_path: str | Path, port: int, into: Path = ROOT / ".freshet") -> Path:
    """The config file with its data server's URLs on `port`: the file itself for the
    default port, else a copy in `into` (demo-pipeline.yaml). The stack is applied from
    it and the context names it, so `freshet apply` and `doctor` plan against the same
    file and never move the URLs back."""
    source = Path(config_path)
    text = source.read_text(encoding="utf-8")
    origin = f"http://127.0.0.1:{port}"
    if origin == DATA_ORIGIN or DATA_ORIGIN + "/" not in text:
        return source
    into.mkdir(parents=True, exist_ok=True)
    ported = into / f"{source.stem}.data-port-{port}.yaml"
    ported.write_text(f"# {source} with its data URLs on port {port} (written by the demo)\n"
                      + text.replace(DATA_ORIGIN + "/", origin + "/"), encoding="utf-8")
    return ported


def _function_env(fs, tasks, config, ports, site_port: int) -> dict[str, str]:
    return {
        **dict(config.functions.env),  # the config's own (FRESHET_FETCH_* among them)
        **fs.env(),
        **tasks.env(),
        "FRESHET_AUTH": "local",
        "FRESHET_REGION": config.region,
        "FRESHET_QUEUE": config.queue,
        "FRESHET_RUN_TASK_URL": f"http://127.0.0.1:{ports['run_task']}/run_task",
        "FRESHET_SYNC_MODULES": ",".join(config.sync_modules),
        "FRESHET_SITE_DIR": str(SITE_DIR),
        "FRESHET_SITE_URL": f"http://127.0.0.1:{site_port}/",
        "FRESHET_QUEUED_GRACE_S": "120",
        "FRESHET_PAGE_STALE_AFTER_S": "180",
        "FRESHET_CONFIG": config.path,
    }


def _route_env(alerts: AlertReceiver) -> dict[str, str]:
    """The demo routes' URLs and secret: what a deployment sets from Secret Manager."""
    return {"FRESHET_DEMO_SLACK_URL": f"{alerts.url}/slack",
            "FRESHET_DEMO_WEBHOOK_URL": f"{alerts.url}/webhook",
            "FRESHET_DEMO_WEBHOOK_SECRET": alerts.secret}


def _open_incident(store, now: datetime) -> None:
    """An incident on the CRM contacts, with a note, as an operator would open it."""
    from freshet.core.windows import Scope
    from freshet.ops.incidents import add_note, open_incident

    incident, _ = open_incident(
        store, title="CRM API hangs on its first call", eta="30m", author="demo",
        note="crm-sync's first attempt hangs; recovery declares it stuck and retries.",
        scope=Scope(datasets=("crm.contacts",)), now=now)
    add_note(store, incident.id, author="demo", now=now,
             text="The vendor is investigating; the retries keep the contacts fresh meanwhile.")
    _say(f"  opened incident {incident.id} (with a note)")


def _apply(config) -> None:
    from freshet.core.settings import load_settings
    from freshet.gcp.store import Store, firestore_client
    from freshet.gcp.tasks import TaskQueue
    from freshet.ops.apply import apply, plan
    from freshet.ops.operations import pause_job

    now = datetime.now(UTC)
    settings = load_settings(os.environ)
    store, queue = Store(firestore_client(settings.project)), TaskQueue(settings)
    todo = plan(config, store=store, task_queue=queue, now=now)
    _say(f"Applying {_shown(config.path)}:")
    for line in todo.lines():
        _say(f"  {line}")
    apply(todo, store=store, task_queue=queue, now=now)
    pause_job(store, "marketing-sync", reason="demo: paused on purpose", by="demo", now=now)
    _say("  paused marketing-sync (a paused job never runs)")
    _open_incident(store, now)


def _console(port: int):
    from freshet.ops.console import console_server

    server = console_server("127.0.0.1", port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _scheduler(config, ports):
    from freshet.gcp.scheduler import build_job
    from freshet_local.local_scheduler import LocalScheduler

    jobs = [build_job(config.project, config.region, spec, base_url=f"http://127.0.0.1:{ports[spec.target]}",
                      invoker_email=None) for spec in config.control_schedules]

    def on_call(name: str, status) -> None:
        if status != 200:
            _say(f"  [{datetime.now():%H:%M:%S}] {name} answered {status}")

    return LocalScheduler(jobs, on_call=on_call)


def _banner(args, fs, tasks, functions) -> None:
    site = f"http://127.0.0.1:{args.site_port}/"
    api = functions["api"].url
    _say(f"""
Freshet is running locally.

  Status page      {site}            (rebuilt every minute; also status.json, feed.xml, badges/)
  Console          http://127.0.0.1:{args.console_port}/   (operate: run, pause, retry, backfill)
  API              {api}/jobs
  Firestore        {fs.address}   (emulator)    Cloud Tasks {tasks.address} (emulator)
  Function logs    {LOG_DIR.relative_to(ROOT)}/

The demo pipeline (infra/demo/pipeline.yaml): orders-sync and rates-sync are healthy;
ads-sync fails twice, then succeeds on retry; crm-sync hangs on its first attempt and is
recovered as stuck within ~2 minutes, then retried (an incident about it is open);
legacy-export fails permanently, and every 15 minutes for 4 a maintenance window holds
it (excused, muted); revenue-rollup has no schedule: each time orders and rates are
both fresh, their success triggers it (it and ads-sync share the warehouse pool, at most
2 at once), and the revenue dashboard has a deadline every 5 minutes (its attainment
shows on its banner); events-sync succeeds but its data is 50 minutes behind (stale
data), so the web analytics team misses its deadlines; marketing-sync is paused.
vendor.orders is a table another party loads into BigQuery (here the local emulator):
Freshet observes its lastModifiedTime every minute (no job loads it); the vendor loads
every 3 minutes but goes quiet for 9 minutes of every 15, so the vendor feed's banner
turns stale, then heals at the next load, which also triggers vendor-rollup. Work that
runs where it lives: orders-sync's success triggers orders-rollup, a BigQuery job in
the emulator; nightly-export runs a Cloud Run job (the local stand-in) for 45 s, past the
queue's 20 s dispatch deadline: each run waits without holding a function, polled at
10 s, 30 s and 70 s, and succeeds once. Two
notification routes deliver to a local receiver: {LOG_DIR.relative_to(ROOT)}/alerts.log.

Try, in another terminal (the CLI finds this demo through {CONTEXT_FILE.relative_to(ROOT)}
from this folder; for other shells and tools: eval "$(.venv/bin/freshet demo env)"):
  .venv/bin/freshet context
  .venv/bin/freshet jobs list
  .venv/bin/freshet jobs run rates-sync
  .venv/bin/freshet datasets
  .venv/bin/freshet backfill orders-sync --from <an hour ago> --to <now> --max-parallel 4 --rerun
  .venv/bin/freshet backfill status
  curl -s -X POST {api}/jobs/orders-sync/run

Ctrl-C stops everything.""")


def env_cli() -> int:
    """`freshet demo env`: the running stack's variables as `export` lines, for
    eval "$(freshet demo env)" in another shell (freshet.ops.context)."""
    from freshet.ops import context

    found = context.active()
    if found is None:
        print("freshet demo: no local stack is running here (start one with `freshet "
              "demo`; `freshet context` says what was found)", file=sys.stderr)
        return 2
    print(found.shell(), flush=True)
    return 0


def cli(argv=None) -> int:
    """main() with the errors a user can cause as one line each, not a traceback."""
    from freshet.core.errors import ValidationError
    from freshet_local.emulators import EmulatorError

    if list(sys.argv[1:] if argv is None else argv) == ["env"]:
        return env_cli()
    try:
        return main(argv)
    except KeyboardInterrupt:
        print("freshet demo: interrupted during start-up; everything it started is stopped.",
              file=sys.stderr)
        return 130
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(f"freshet demo: a port is already in use ({exc.strerror}); is another demo "
                  "running? Stop it, or choose other ports (freshet demo --help).",
                  file=sys.stderr)
            return 2
        raise
    except (EmulatorError, ValidationError) as exc:
        print(f"freshet demo: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(cli())
