"""The cloud-shaped local run (freshet_local.cloud_local): the demo pipeline, deployed as
`make deploy` would deploy it, behind a front that behaves like Cloud Run's.

The five functions run with exactly deploy's environment, from a read-only copy of the
source; every call carries an RS256 ID token minted by a local stand-in for Google
(Cloud Tasks deliveries and Cloud Scheduler calls included), which the front verifies,
checks against deploy's invoker bindings, and forwards with its signature stripped.
In that shape the demo pipeline ticks, runs, retries, recovers a hung run and
publishes its page into a bucket, and the front refuses what Cloud Run refuses.
"""

import functools
import http.server
import json
import os
import re
import threading
import time
from pathlib import Path

import pytest
import requests

from freshet.core.links import logs_query, logs_url
from freshet_local import cloud_local, deploy
from freshet_local.functions_host import serve
from freshet_local.local_google import SigningKey
from tests.ops.helpers import ROOT

pytestmark = pytest.mark.slow

OPERATOR = "ops@demo-freshet.iam.gserviceaccount.com"
INVOKER = "freshet-invoker@demo-freshet.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def data_server():
    """The demo's http_fetch source (infra/demo/data), on a free port."""
    handler = functools.partial(_Quiet, directory=str(ROOT / "infra" / "demo" / "data"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_port}"
    server.shutdown()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def cloud(firestore_emulator, data_server, tmp_path_factory):
    work = tmp_path_factory.mktemp("cloud")
    text = (ROOT / "infra" / "demo" / "pipeline.yaml").read_text()
    demo_data = re.search(r"http://([^/\s\"]+)/orders\.csv", text).group(1)
    text = text.replace(demo_data, data_server).replace(
        "  run_task: {timeout: 30s}",
        f"  run_task: {{timeout: 30s}}\n  allowed_callers: [{OPERATOR}]")
    config = work / "pipeline.yaml"
    config.write_text(text)
    firestore_emulator.wipe()
    with cloud_local.start(config, workdir=work, firestore=firestore_emulator) as running:
        yield running


def wait_for(predicate, timeout: float, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def run_doc(cloud, run_id: str) -> dict:
    return cloud.call("api", "GET", f"/runs/{run_id}").json()["run"]


# -- deployed as deploy deploys ---------------------------------------------------------

def test_each_function_runs_with_exactly_deploys_environment_and_the_platforms(cloud):
    for name, served in cloud.functions.items():
        raw = Path(f"/proc/{served.process.pid}/environ").read_bytes()
        env = dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)
        wanted = dict(deploy.function_env(cloud.config, name))
        assert {k: env.get(k) for k in wanted} == wanted, name
        assert set(env) - set(wanted) <= set(cloud_local.PLATFORM_ENV), name
        assert env["K_SERVICE"] and env["PYTHONPATH"] == str(cloud.source)
        assert env["FRESHET_SITE_BUCKET"] == cloud.config.site.bucket


def test_the_source_folder_is_read_only_as_in_cloud_functions(cloud, tmp_path):
    """Without the bucket deploy now configures, publish_status would write into its
    source folder: on Cloud Functions that fails, and here it fails the same way."""
    env = {k: v for k, v in cloud.envs["publish_status"].items()
           if k not in ("FRESHET_SITE_BUCKET", "FRESHET_SNAPSHOT_BUCKET")}
    env["FRESHET_AUTH"] = "local"
    log = tmp_path / "publish.log"
    served = serve("publish_status", env=env, source=cloud.source, exact_env=True,
                   prefix=cloud.read_only_prefix, log_path=log)
    try:
        answer = requests.post(served.url, json={}, timeout=60)
    finally:
        served.stop()
    assert answer.status_code == 500
    assert "Read-only file system" in log.read_text()
    assert not (cloud.source / "site" / "public").exists()


# -- the front refuses what Cloud Run refuses ------------------------------------------

def test_no_token_is_refused_before_the_function(cloud):
    answer = cloud.call("api", "GET", "/jobs", token="")
    assert answer.status_code == 403
    assert cloud.front.decisions[-1].status == 403


@pytest.mark.parametrize("claims, status", [
    ({"expires_in": -120}, 401),  # expired
    ({"issuer": "https://evil.example.com"}, 401),
])
def test_a_bad_token_is_refused(cloud, claims, status):
    token = cloud.token(function="api", **claims)
    assert cloud.call("api", "GET", "/jobs", token=token).status_code == status


def test_a_token_for_another_function_is_refused(cloud):
    token = cloud.token(function="api")  # minted for the api's URL
    assert cloud.call("run_task", "POST", "", token=token, json={}).status_code == 401


def test_a_caller_without_an_invoker_binding_is_refused(cloud):
    # The operator may call the api, not run_task; a stranger may call neither.
    assert cloud.call("api", "GET", "/jobs", email=OPERATOR).status_code == 200
    assert cloud.call("run_task", "POST", "", email=OPERATOR, json={}).status_code == 403
    stranger = "someone@demo-freshet.iam.gserviceaccount.com"
    assert cloud.call("api", "GET", "/jobs", email=stranger).status_code == 403


def test_a_token_signed_by_another_key_or_forged_stripped_is_refused(cloud):
    rogue = SigningKey(cloud.google.key.kid)
    audience = cloud.config.functions.url("api")
    signed = rogue.token(email=INVOKER, audience=audience)
    assert cloud.call("api", "GET", "/jobs", token=signed).status_code == 401
    forged = signed.rsplit(".", 1)[0] + ".SIGNATURE_REMOVED_BY_GOOGLE"
    assert cloud.call("api", "GET", "/jobs", token=forged).status_code == 401


def test_a_forged_stripped_token_is_refused_by_a_function_not_behind_the_front(
        cloud, tmp_path):
    """Only K_SERVICE (Cloud Run's) makes a function read a stripped token on its claims;
    anywhere else it verifies the signature itself, against Google's keys."""
    env = {k: v for k, v in cloud.envs["api"].items()
           if k not in ("K_SERVICE", "K_REVISION", "K_CONFIGURATION")}
    served = serve("api", env=env, source=cloud.source, exact_env=True,
                   prefix=cloud.read_only_prefix, log_path=tmp_path / "api.log")
    try:
        audience = cloud.config.functions.url("api")
        signed = cloud.google.mint(INVOKER, audience)
        forged = SigningKey("forger").token(email=INVOKER, audience=audience)
        forged = forged.rsplit(".", 1)[0] + ".SIGNATURE_REMOVED_BY_GOOGLE"

        def get(token):
            return requests.get(f"http://127.0.0.1:{served.port}/jobs", timeout=30,
                                headers={"Authorization": f"Bearer {token}"})

        answer = get(forged)
        assert answer.status_code == 401
        assert "signature was removed" in answer.json()["error"]["message"]
        assert get(signed).status_code == 200  # verified against the local Google's keys
    finally:
        served.stop()


# -- the demo pipeline, end to end ------------------------------------------------------

def test_the_demo_pipeline_ticks_runs_retries_recovers_and_publishes(cloud):
    started = time.monotonic()
    # Operators start runs through the api; Cloud Tasks delivers them to run_task.
    hung = cloud.call("api", "POST", "/jobs/crm-sync/run", email=OPERATOR)
    flaky = cloud.call("api", "POST", "/jobs/ads-sync/run", email=OPERATOR)
    assert (hung.status_code, flaky.status_code) == (201, 201), (hung.text, flaky.text)
    hung_id, flaky_id = hung.json()["run"]["id"], flaky.json()["run"]["id"]
    assert cloud.fire("freshet-tick") == 200

    # Retry: ads-sync fails twice (503 to Cloud Tasks), then succeeds on attempt 3.
    flaky_run = wait_for(lambda: (r := run_doc(cloud, flaky_id))["status"] == "succeeded"
                         and r, timeout=120)
    assert flaky_run and flaky_run["attempt_number"] == 3
    assert [a["outcome"] for a in flaky_run["attempts"]] == ["retrying", "retrying",
                                                              "succeeded"]

    # Tick: the jobs due this minute run once, through Cloud Tasks, with tokens.
    orders = wait_for(lambda: [r for r in cloud.call("api", "GET", "/runs?job_id=orders-sync")
                               .json()["runs"] if r["status"] == "succeeded"], timeout=150)
    assert orders and orders[0]["trigger_source"] == "schedule"

    # The hung run: Cloud Tasks stops waiting at the dispatch deadline, the front at
    # run_task's timeout (504); the lease (1 minute) runs out; recovery retries it.
    assert run_doc(cloud, hung_id)["status"] == "running"
    assert wait_for(lambda: any(d.function == "run_task" and d.status == 504
                                for d in cloud.front.decisions), timeout=90)
    lease = run_doc(cloud, hung_id)["lease_expires_at"]
    wait_for(lambda: time.time() > _epoch(lease) + 2, timeout=120, every=2)
    assert cloud.fire("freshet-recover") == 200
    recovered = wait_for(lambda: (r := run_doc(cloud, hung_id))["status"] == "succeeded"
                         and r, timeout=120)
    assert recovered, run_doc(cloud, hung_id)
    assert recovered["attempt_number"] == 2
    assert recovered["logs_url"] == logs_url(cloud.config.project, hung_id)  # the api's
    assert [a["outcome"] for a in recovered["attempts"]] == ["stuck", "succeeded"]

    # Publish: the page and status.json land in the site bucket, with Cache-Control.
    assert cloud.fire("freshet-publish") == 200
    bucket = cloud.config.site.bucket
    page, meta = cloud.storage.read(bucket, "index.html")
    status, _ = cloud.storage.read(bucket, "status.json")
    assert meta["cacheControl"] == "public, max-age=60"
    assert b"crm-sync" in page and b"console.cloud.google.com/logs/query" in page
    runs = {r["id"]: r for r in json.loads(status)["runs"]}
    assert runs[hung_id]["status"] == "succeeded" and runs[flaky_id]["attempt_number"] == 3
    assert runs[hung_id]["logs_url"].startswith("https://console.cloud.google.com/logs/")
    snapshots = cloud.storage.names(cloud.config.site.snapshot_bucket)
    assert any(name.startswith("orders-sync/") for name in snapshots), snapshots

    # Every call the functions received came through the front with a valid token of
    # a bound caller: the invoker (Scheduler, Tasks) or the operator (the api).
    forwarded = [d for d in cloud.front.decisions if d.status is None]
    assert {d.caller for d in forwarded} <= {INVOKER, OPERATOR}
    assert {d.function for d in forwarded if d.caller == INVOKER} >= {
        "scheduler_tick", "run_task", "recover_stuck_runs", "publish_status"}

    # Logs Explorer can filter one run: JSON lines labelled with run, job and attempt.
    lines = [json.loads(line) for line in cloud.log_text("run_task").splitlines()
             if line.startswith("{")]
    labelled = [e for e in lines if e.get("logging.googleapis.com/labels", {}).get("run_id")
                == flaky_id]
    assert labelled and {e["logging.googleapis.com/labels"]["attempt"]
                         for e in labelled} >= {"1", "2"}
    assert all(e["severity"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
               for e in lines)
    assert logs_query(flaky_id) == f'labels.run_id="{flaky_id}"'
    assert time.monotonic() - started < 600


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_nothing_was_written_into_the_source_folder(cloud):
    writable = [p for p in cloud.source.rglob("*") if os.access(p, os.W_OK)
                and os.geteuid() != 0]
    assert not writable
    assert not list(cloud.source.rglob("site/public"))
