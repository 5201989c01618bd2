"""The Cloud Run Jobs calls Freshet makes (freshet.gcp.cloudrun), through the official
google-cloud-run client's REST transport, against freshet_local's stand-in of the Admin
API v2 (no emulator exists: googleapis/google-cloud-python#12138).

Request and response shapes are pinned to Google's REST reference, read off the wire by
a recording proxy between the client and the stand-in:
  jobs.run          https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.jobs/run
                    (POST .../jobs/J:run, body RunJobRequest: overrides.containerOverrides
                    [{args, env[{name, value}], clearArgs}], overrides.taskCount,
                    overrides.timeout as a Duration "Ns"; answer: an Operation whose
                    metadata is the Execution)
  Overrides         https://cloud.google.com/run/docs/reference/rest/v2/Overrides
  Execution         https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.jobs.executions
                    (template is a TaskTemplate; taskCount, runningCount, succeededCount,
                    failedCount, cancelledCount, completionTime, conditions, logUri)
  Condition.State   https://cloud.google.com/run/docs/reference/rest/v2/Condition#state
                    (enums as integers: the client asks $alt=json;enum-encoding=int)
  executions.get / .list / .cancel: the methods of the Execution page above.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest

from freshet.core.errors import NotFound, TransientError
from freshet.core.external import ATTEMPT_ENV, RUN_ENV, EngineState
from freshet.gcp.cloudrun import CloudRun
from freshet_local import emulators

PROJECT, REGION = "demo-freshet", "europe-west1"
JOBS = f"projects/{PROJECT}/locations/{REGION}/jobs"
RUNTIME = f"serviceAccount:freshet-runtime@{PROJECT}.iam.gserviceaccount.com"
# Each task writes what it was started with into $OUT/<execution>-<task>.json.
REPORT = ("import json, os, sys; from pathlib import Path; "
          "Path(os.environ['OUT'], os.environ['CLOUD_RUN_EXECUTION'] + '-' + "
          "os.environ['CLOUD_RUN_TASK_INDEX'] + '.json').write_text(json.dumps("
          "{'args': sys.argv[1:], 'env': dict(os.environ)}))")
FAIL_TASK_1 = "import os, sys; sys.exit(1 if os.environ['CLOUD_RUN_TASK_INDEX'] == '1' else 0)"


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tasks")


@pytest.fixture(scope="module")
def stand_in(out):
    jobs = {
        f"{JOBS}/report": {"command": [sys.executable, "-c", REPORT],
                           "env": {"OUT": str(out), "FROM_JOB": "yes"}, "args": ["default"]},
        f"{JOBS}/partial": {"command": [sys.executable, "-c", FAIL_TASK_1], "task_count": 3},
        f"{JOBS}/slow": {"command": [sys.executable, "-c", "import time; time.sleep(120)"],
                         "bindings": {"roles/run.viewer": [RUNTIME]}},
    }
    emu = emulators.start_cloud_run(jobs)
    yield emu
    emu.stop()


@pytest.fixture
def proxy(stand_in, recording_proxy):
    return recording_proxy(stand_in.address)


@pytest.fixture
def cloud_run(proxy, monkeypatch):
    """The adapter with the official REST clients, pointed at the stand-in via the proxy."""
    monkeypatch.setenv("FRESHET_CLOUD_RUN_EMULATOR_HOST", proxy.address)
    return CloudRun(PROJECT, REGION)


def wait_end(cloud_run, name, seconds=20.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = cloud_run.poll(name)
        if status.finished:
            return status
        time.sleep(0.1)
    raise AssertionError(f"{name} did not end within {seconds}s")


def run_id(request) -> str:
    return f"{request.node.name[:40]}-{time.monotonic_ns()}"


# -- jobs.run on the wire -----------------------------------------------------------------


def test_jobs_run_sends_googles_request_shape_and_answers_an_operation(cloud_run, proxy,
                                                                      request):
    rid = run_id(request)
    handle = cloud_run.start("report", run_id=rid, attempt=2, args=("--day", "2026-12-07"),
                             env={"MODE": "full"}, task_count=2,
                             timeout=timedelta(hours=3))
    run = next(r for r in proxy.requests if r["method"] == "POST")
    path, _, query = run["path"].partition("?")
    assert path == f"/v2/{JOBS}/report:run"
    assert "enum-encoding=int" in urllib.parse.unquote(query)
    overrides = run["body"]["overrides"]
    [container] = overrides["containerOverrides"]
    assert container["args"] == ["--day", "2026-12-07"]
    assert {e["name"]: e["value"] for e in container["env"]} == {
        "MODE": "full", RUN_ENV: rid, ATTEMPT_ENV: "2"}
    assert overrides["taskCount"] == 2
    assert overrides["timeout"] == "10800s"
    assert handle.name.startswith(f"{JOBS}/report/executions/report-")
    assert not handle.adopted
    # the looked-for execution came first: executions.list on the job
    assert proxy.requests[0]["method"] == "GET"
    assert proxy.requests[0]["path"].split("?")[0] == f"/v2/{JOBS}/report/executions"


def test_an_execution_runs_the_command_once_per_task_with_the_overrides(cloud_run, out,
                                                                        request):
    rid = run_id(request)
    handle = cloud_run.start("report", run_id=rid, attempt=1, args=("x", "y"),
                             env={"MODE": "delta"}, task_count=3)
    status = wait_end(cloud_run, handle.name)
    assert status.state == EngineState.SUCCEEDED
    assert dict(status.stats)["succeeded"] == 3
    execution = handle.name.rsplit("/", 1)[-1]
    reports = [json.loads((out / f"{execution}-{i}.json").read_text()) for i in range(3)]
    assert all(r["args"] == ["x", "y"] for r in reports)
    env = reports[0]["env"]
    assert (env["MODE"], env["FROM_JOB"], env[RUN_ENV], env["CLOUD_RUN_TASK_COUNT"]) == (
        "delta", "yes", rid, "3")


def test_without_args_the_jobs_own_args_are_kept(cloud_run, out, request):
    handle = cloud_run.start("report", run_id=run_id(request), attempt=1)
    wait_end(cloud_run, handle.name)
    execution = handle.name.rsplit("/", 1)[-1]
    assert json.loads((out / f"{execution}-0.json").read_text())["args"] == ["default"]


def test_the_execution_answers_with_integer_enums_and_googles_fields(cloud_run, stand_in,
                                                                     request):
    handle = cloud_run.start("report", run_id=run_id(request), attempt=1)
    wait_end(cloud_run, handle.name)
    url = f"{stand_in.url}/v2/{handle.name}?%24alt=json%3Benum-encoding%3Dint"
    with urllib.request.urlopen(url, timeout=10) as resp:
        doc = json.loads(resp.read())
    [condition] = doc["conditions"]
    assert condition["type"] == "Completed" and condition["state"] == 4  # CONDITION_SUCCEEDED
    assert isinstance(doc["launchStage"], int)
    assert doc["taskCount"] == 1 and doc["succeededCount"] == 1
    assert {"name", "uid", "createTime", "startTime", "completionTime", "job", "template",
            "logUri", "etag"} <= set(doc)
    assert "containers" in doc["template"]  # a TaskTemplate


# -- the verdicts -----------------------------------------------------------------------------


def test_an_execution_with_one_failed_task_is_a_failure_with_its_counts(cloud_run, request):
    handle = cloud_run.start("partial", run_id=run_id(request), attempt=1)
    status = wait_end(cloud_run, handle.name)
    assert status.state == EngineState.FAILED
    assert dict(status.stats) == {"task_count": 3, "succeeded": 2, "failed": 1, "cancelled": 0}
    assert status.link.startswith("https://console.cloud.google.com/logs/")


def test_a_cancelled_execution_is_cancelled_not_a_success(cloud_run, request):
    handle = cloud_run.start("slow", run_id=run_id(request), attempt=1)
    assert cloud_run.poll(handle.name).state == EngineState.RUNNING
    cloud_run.cancel(handle.name)
    status = wait_end(cloud_run, handle.name)
    assert status.state == EngineState.CANCELLED
    cloud_run.cancel(handle.name)  # cancelling what has ended leaves it as it ended
    assert cloud_run.poll(handle.name).state == EngineState.CANCELLED


def test_the_timeout_override_stops_the_task_on_the_engine(cloud_run, request):
    handle = cloud_run.start("slow", run_id=run_id(request), attempt=1,
                             timeout=timedelta(seconds=1))
    status = wait_end(cloud_run, handle.name)
    assert status.state == EngineState.FAILED
    assert dict(status.stats)["failed"] == 1


# -- idempotence: a redelivered start finds its execution ---------------------------------


def test_a_redelivered_start_adopts_the_execution_and_starts_nothing(cloud_run, stand_in,
                                                                    request):
    rid = run_id(request)
    first = cloud_run.start("report", run_id=rid, attempt=1)
    redeliveries = [cloud_run.start("report", run_id=rid, attempt=1) for _ in range(19)]
    assert {h.name for h in redeliveries} == {first.name}
    assert all(h.adopted for h in redeliveries)
    jobs = make_client_list(stand_in, "report")
    assert sum(1 for e in jobs if {v["name"]: v["value"] for c in e["template"]["containers"]
                                   for v in c["env"]}.get(RUN_ENV) == rid) == 1


def test_the_next_attempt_gets_an_execution_of_its_own(cloud_run, request):
    rid = run_id(request)
    first = cloud_run.start("report", run_id=rid, attempt=1)
    second = cloud_run.start("report", run_id=rid, attempt=2)
    assert first.name != second.name and not second.adopted


def make_client_list(stand_in, job: str) -> list[dict]:
    url = f"{stand_in.url}/v2/{JOBS}/{job}/executions?pageSize=1000"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())["executions"]


# -- jobs.getIamPolicy (freshet doctor's check of the runtime account's roles) --------------


def test_get_iam_policy_is_a_get_on_the_job_and_answers_its_bindings(cloud_run, proxy):
    assert cloud_run.job_policy("slow") == {"roles/run.viewer": {RUNTIME}}
    # The REST reference: GET /v2/{resource=projects/*/locations/*/jobs/*}:getIamPolicy
    last = proxy.requests[-1]
    assert (last["method"], last["path"].split("?")[0]) == ("GET",
                                                          f"/v2/{JOBS}/slow:getIamPolicy")


def test_a_job_nobody_was_granted_on_has_an_empty_policy(cloud_run):
    assert cloud_run.job_policy("report") == {}


def test_the_policy_of_a_job_that_does_not_exist_is_not_found(cloud_run):
    with pytest.raises(NotFound):
        cloud_run.job_policy("nope")


# -- errors ---------------------------------------------------------------------------------


def test_a_job_that_does_not_exist_is_not_found(cloud_run, request):
    with pytest.raises(NotFound):
        cloud_run.start("nope", run_id=run_id(request), attempt=1)


def test_polling_an_execution_that_does_not_exist_is_not_found(cloud_run):
    with pytest.raises(NotFound):
        cloud_run.poll(f"{JOBS}/report/executions/report-00000")


def test_an_unreachable_api_is_transient(monkeypatch):
    monkeypatch.setenv("FRESHET_CLOUD_RUN_EMULATOR_HOST", "127.0.0.1:9")
    with pytest.raises(TransientError):
        CloudRun(PROJECT, REGION, deadline_s=1).poll(f"{JOBS}/report/executions/x")


def test_clients_are_made_once_and_lazily(monkeypatch, stand_in):
    monkeypatch.setenv("FRESHET_CLOUD_RUN_EMULATOR_HOST", stand_in.address)
    adapter = CloudRun(PROJECT, REGION)
    assert adapter._jobs is None and adapter._executions is None
    first = adapter._clients()
    assert all(first) and adapter._clients() == first
    assert adapter._clients()[0] is first[0]
