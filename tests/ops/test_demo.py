"""`make demo`: every port it uses is an option, so two demos can share a machine."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import pytest

from freshet.ops.config import load_config
from freshet_local.demo import DEMO_CONFIG, parse_args, with_data_port
from tests.loop.helpers import wait_for
from tests.ops.helpers import ROOT

PORTS = {"FIRESTORE": "firestore_port", "TASKS": "tasks_port", "FUNCTIONS": "functions_port",
         "SITE": "site_port", "DATA": "data_port", "CONSOLE": "console_port"}


@pytest.mark.parametrize("name", sorted(PORTS))
def test_each_port_has_an_option_and_an_environment_default(name, monkeypatch):
    flag = "--" + PORTS[name].replace("_", "-")
    assert getattr(parse_args([flag, "9321"]), PORTS[name]) == 9321
    monkeypatch.setenv(f"FRESHET_DEMO_{name}_PORT", "9322")
    assert getattr(parse_args([]), PORTS[name]) == 9322


def test_the_demo_pipelines_fetches_follow_the_data_port(tmp_path):
    config = load_config(with_data_port(DEMO_CONFIG, 9321, into=tmp_path))
    urls = [j.params["url"] for j in config.jobs if j.kind == "http_fetch"]
    assert len(urls) == 2 and all(u.startswith("http://127.0.0.1:9321/") for u in urls)
    assert config.path.startswith(str(tmp_path))  # a file `apply` and `doctor` can reread


@pytest.mark.parametrize("value", ["x", "0", "-5", "1e9", "nan"])
def test_a_bad_export_duration_is_one_line_naming_the_variable(value):
    from freshet_local.demo import export_seconds

    with pytest.raises(SystemExit, match="FRESHET_DEMO_EXPORT_S must be a number"):
        export_seconds({"FRESHET_DEMO_EXPORT_S": value})
    assert export_seconds({}) == 45 and export_seconds({"FRESHET_DEMO_EXPORT_S": "25"}) == 25


def test_on_the_default_data_port_the_demo_config_is_used_as_it_is(tmp_path):
    assert with_data_port(DEMO_CONFIG, 8095, into=tmp_path) == DEMO_CONFIG
    assert not list(tmp_path.iterdir())


def test_the_demo_vendors_gap_outlasts_what_its_consumer_allows_so_its_banner_turns():
    """The observed vendor table: loaded every 3 minutes, then quiet for longer than
    the vendor feed's error_after, once every cycle (and it triggers vendor-rollup)."""
    from datetime import UTC, datetime, timedelta

    from freshet_local import demo_vendor

    config = load_config(DEMO_CONFIG, env={})
    (key, spec), = config.observed
    assert spec.target == f"{config.project}.{demo_vendor.DATASET}.{demo_vendor.TABLE}"
    (need,) = [r for c in config.catalog.consumers for r in c.requires if r.dataset == key]
    start = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    minutes = [m for m in range(demo_vendor.CYCLE_MIN * 2)
               if demo_vendor.loads_at(start + timedelta(minutes=m))]
    longest = max(b - a for a, b in zip(minutes, minutes[1:], strict=False))
    assert timedelta(minutes=longest) > need.error_after + spec.every
    assert min(b - a for a, b in zip(minutes, minutes[1:], strict=False)) == 3
    assert any(j.trigger and key in j.trigger.after for j in config.jobs)


def free_ports(count: int, *, consecutive: int = 1) -> list[int]:
    """`count` free ports, the first starting a run of `consecutive` free ones."""
    for base in range(20_000, 40_000, 7):
        wanted = list(range(base, base + consecutive)) + [base + 100 + i for i in range(count)]
        if all(_free(p) for p in wanted):
            return [base] + wanted[consecutive:][: count - 1]
    raise RuntimeError("no free ports")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _hold(port: int, stack: ExitStack) -> None:
    """Occupy a port as another demo would (if nothing else holds it already)."""
    s = stack.enter_context(socket.socket())
    try:
        s.bind(("127.0.0.1", port))
        s.listen()
    except OSError:
        pass  # already taken: just as good


@pytest.mark.slow
def test_a_demo_runs_beside_another_holding_the_default_ports(tmp_path):
    """...and the CLI, given nothing but the context file the demo writes, starts a run
    that succeeds within seconds (not at recovery's sweep, minutes later); the console
    serves its overview."""
    functions, firestore, tasks, site, data, console = free_ports(6, consecutive=5)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FRESHET_", "FIRESTORE_EMULATOR", "GOOGLE_CLOUD_PROJECT"))}
    env["FRESHET_CONTEXT"] = str(tmp_path / "context.json")
    env["FRESHET_DEMO_EXPORT_S"] = "25"  # still past the 20 s dispatch deadline; polled at 30 s
    with ExitStack() as stack:
        for port in (8080, 8123, 8081, 5000, 8095, 8766):  # the defaults: "another demo"
            _hold(port, stack)
        demo = subprocess.Popen(
            [sys.executable, "-m", "freshet_local.demo", f"--firestore-port={firestore}",
             f"--tasks-port={tasks}", f"--functions-port={functions}", f"--site-port={site}",
             f"--data-port={data}", f"--console-port={console}", "--run-for=240"],
            cwd=ROOT, env={**env, "PYTHONPATH": f"{ROOT}/functions:{ROOT}/infra"},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            api = f"http://127.0.0.1:{functions + 4}/api"
            wait_for(lambda: _post(f"{api}/jobs/orders-sync/run"), 150, interval=1)
            run = wait_for(lambda: _succeeded_run(api), 90, interval=1)
            rows = len((ROOT / "infra/demo/data/orders.csv").read_text().splitlines()) - 1
            assert run["records"] == {"sales.orders": rows}  # fetched from our data port
            # the demo writes its context once everything it starts is up (the API
            # answers before): the run above may succeed first
            wait_for(lambda: Path(env["FRESHET_CONTEXT"]).exists(), 90, interval=0.5)
            assert f"127.0.0.1:{firestore}" in _cli(env, "context")
            # The Cloud Run job works 25 s here: past the queue's 20 s dispatch deadline.
            assert _post(f"{api}/jobs/nightly-export/run")
            started = time.monotonic()
            run_id = _cli(env, "jobs", "run", "rates-sync").split()[1]
            wait_for(lambda: "succeeded" in _cli(env, "runs", "show", run_id), 30,
                     interval=0.5)
            assert time.monotonic() - started < 30
            with urllib.request.urlopen(f"http://127.0.0.1:{console}/", timeout=10) as page:
                assert 'id="j-orders-sync"' in page.read().decode()  # the console's overview
            vendor = wait_for(lambda: _observed(f"http://127.0.0.1:{site}/status.json"), 90,
                              interval=2)  # the vendor's table, observed in BigQuery
            assert vendor["data_as_of"] is not None
            # orders-sync's success triggered the BigQuery rollup: a job in the emulator,
            # waited on and polled 10, 30, 70 and 150 s after it was submitted (as the
            # export is, below): on a loaded machine its job outlived the 30 s poll, and
            # a timeout says what its runs were.
            rollup = wait_for(lambda: _succeeded_run(api, "orders-rollup"), 150, interval=2,
                              why=lambda: _runs(api, "orders-rollup"))
            assert rollup["trigger_source"] == "upstream"
            assert rollup["external"]["engine"] == "bigquery"
            assert rollup["external"]["id"].startswith("freshet_orders-rollup")
            export = wait_for(lambda: _succeeded_run(api, "nightly-export"), 150, interval=2)
            assert export["external"]["engine"] == "cloud_run"
            assert export["external"]["polls"] >= 2  # 10 s and 30 s after it started
            assert export["attempt_number"] == 1  # once: no retry, no second execution
        finally:
            demo.send_signal(signal.SIGTERM)
            output, _ = demo.communicate(timeout=60)
    assert demo.returncode == 0, output[-3000:]
    assert "already in use" not in output


def _cli(env: dict, *argv: str) -> str:
    """`freshet ARGV` as a user types it, in another folder: only the context file
    (FRESHET_CONTEXT) says where the demo is."""
    result = subprocess.run([sys.executable, "-m", "freshet.ops.cli", *argv], cwd="/",
                            env={**env, "PYTHONPATH": f"{ROOT}/functions:{ROOT}/infra"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _post(url: str):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=5) as r:
            return json.load(r)
    except OSError:
        return None


def _observed(url: str):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            datasets = json.load(r)["datasets"]
    except (OSError, ValueError):
        return None
    return next((d for d in datasets if d["key"] == "vendor.orders"
                 and d["freshness_basis"] == "observed" and d["data_as_of"]), None)


def _runs(api: str, job: str) -> str:
    """A job's runs as the API lists them (what a timeout waiting on them reports)."""
    try:
        with urllib.request.urlopen(f"{api}/runs?job_id={job}", timeout=5) as r:
            return json.dumps(json.load(r)["runs"])[:4000]
    except OSError as e:
        return f"the API did not answer: {e}"


def _succeeded_run(api: str, job: str = "orders-sync"):
    try:
        with urllib.request.urlopen(f"{api}/runs?job_id={job}", timeout=5) as r:
            runs = json.load(r)["runs"]
    except OSError:
        return None
    return next((r for r in runs if r["status"] == "succeeded"), None)



@pytest.mark.slow
def test_ctrl_c_during_start_up_stops_at_once(tmp_path):
    functions, firestore, tasks, site, data = free_ports(5, consecutive=5)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FRESHET_", "FIRESTORE_EMULATOR", "GOOGLE_CLOUD_PROJECT"))}
    demo = subprocess.Popen(
        [sys.executable, "-m", "freshet_local.demo", f"--firestore-port={firestore}",
         f"--tasks-port={tasks}", f"--functions-port={functions}", f"--site-port={site}",
         f"--data-port={data}"],
        cwd=ROOT, env={**env, "PYTHONPATH": f"{ROOT}/functions:{ROOT}/infra",
                       "FRESHET_CONTEXT": str(tmp_path / "context.json")},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: _listening(firestore) or demo.poll() is not None, 90, interval=0.1)
    demo.send_signal(signal.SIGINT)  # the Firestore emulator is up, the rest is not
    started = time.monotonic()
    output, _ = demo.communicate(timeout=60)
    assert time.monotonic() - started < 20, output[-2000:]
    assert demo.returncode == 130 and "interrupted during start-up" in output
    assert "Freshet is running locally" not in output
    assert not (tmp_path / "context.json").exists()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
