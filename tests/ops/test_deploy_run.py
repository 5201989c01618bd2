"""The decisions `make deploy` takes between Google's commands, as tables: when a
function is skipped, which build failures are IAM catching up, when indexes are ready,
what preflight refuses and how it says so, and that every wait is bounded."""

from dataclasses import replace

import pytest

from freshet.ops.config import load_config
from freshet_local import deploy
from freshet_local.deploy_run import (
    PreflightFacts,
    Probe,
    Unread,
    build_account_not_ready,
    cpus_for,
    function_action,
    indexes_state,
    judge_cloud,
    judge_tools,
    parse_quota,
    wait_for,
)
from tests.ops.helpers import ROOT

D = "a" * 40
BUILD = "freshet-build@p-1.iam.gserviceaccount.com"


@pytest.mark.parametrize("label, state, digest, action", [
    (None, None, D, "deploy"),            # not there
    (D, "ACTIVE", D, "unchanged"),
    ("b" * 40, "ACTIVE", D, "deploy"),    # changed
    (D, "FAILED", D, "deploy"),           # a failed build carries the new label
    (D, "UNKNOWN", D, "deploy"),
    (D, "DEPLOYING", D, "wait"),
    ("", "ACTIVE", "", "deploy"),         # the digest command crashed: never a match
    (D, "ACTIVE", "", "deploy"),
    ("", "ACTIVE", D, "deploy"),
])
def test_a_function_is_skipped_only_when_digest_and_state_both_say_so(label, state, digest,
                                                                       action):
    assert function_action(label, state, digest) == action


@pytest.mark.parametrize("stderr, retried", [
    ("OperationError: code=7, message=Could not build the function due to a missing "
     "permission on the build service account.", True),
    (f"ERROR: Permission 'logging.logEntries.create' denied for {BUILD}", True),
    (f"PERMISSION_DENIED: The caller does not have permission to act as {BUILD}", True),
    ("OperationError: code=3, message=Build failed: requirements.txt: no such file", False),
    ("ERROR: (gcloud.functions.deploy) PERMISSION_DENIED: Cloud Functions API has not been "
     "used in project", False),
    (f"ERROR: {BUILD} is a fine account but the quota is exceeded", False),
])
def test_only_the_build_accounts_missing_permissions_are_retried(stderr, retried):
    assert build_account_not_ready(stderr, BUILD) is retried


@pytest.mark.parametrize("states, expected, ready, says", [
    (["READY"] * 3, 3, True, ""),
    (["READY", "CREATING", "READY"], 3, False, "1 of 3 indexes still CREATING"),
    (["READY"], 3, False, "1 of 3 indexes listed so far"),
    ([], 3, False, "0 of 3 indexes listed so far"),
    (["READY", "NEEDS_REPAIR", "READY"], 3, False, "NEEDS_REPAIR"),
])
def test_indexes_are_ready_when_all_are_listed_and_ready(states, expected, ready, says):
    probe = indexes_state(states, expected)
    assert probe.ready is ready
    assert says in probe.detail + probe.failed


class Clock:
    def __init__(self):
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_wait_backs_off_and_stops_at_its_bound_with_one_line(monkeypatch, capsys):
    monkeypatch.setenv("FRESHET_DEPLOY_POLL_S", "10")
    monkeypatch.setenv("FRESHET_DEPLOY_BACKOFF_MAX_S", "60")
    monkeypatch.setenv("FRESHET_DEPLOY_INDEXES_S", "300")
    clock, looks = Clock(), []

    def probe():
        looks.append(clock.now)
        return Probe(False, "2 of 9 indexes still CREATING")

    code = wait_for("9 Firestore composite indexes READY", probe, bound_key="INDEXES",
                    project="p-1", clock=clock, sleep=clock.sleep)
    out, err = capsys.readouterr()
    assert code == 1
    assert clock.slept == [10, 20, 40, 60, 60, 60]  # doubling, capped
    assert clock.now <= 300 and len(looks) == 7
    assert out.count("waiting for 9 Firestore composite indexes READY: 2 of 9") == 6
    assert err.count("\n") == 1 and err.startswith(
        "deploy: 9 Firestore composite indexes READY failed: not ready after 250 s (bound "
        "300 s, FRESHET_DEPLOY_INDEXES_S): 2 of 9 indexes still CREATING")
    assert "resume with `make deploy PROJECT=p-1`" in err


def test_a_wait_ends_when_ready_and_nudges_while_it_waits(monkeypatch, capsys):
    monkeypatch.setenv("FRESHET_DEPLOY_POLL_S", "30")
    monkeypatch.setenv("FRESHET_DEPLOY_REPUBLISH_S", "60")
    clock, nudges = Clock(), []
    answers = iter([False, False, False, True])
    code = wait_for("gs://b/index.html", lambda: Probe(next(answers), "not yet"),
                    bound_key="PAGE", project="p-1", nudge=lambda: nudges.append(clock.now),
                    clock=clock, sleep=clock.sleep)
    assert code == 0 and "  ready: gs://b/index.html" in capsys.readouterr().out
    assert nudges == [90, 150]  # at most once a minute


def test_a_probe_that_failed_stops_at_once():
    clock = Clock()
    code = wait_for("x", lambda: Probe(False, failed="NEEDS_REPAIR"), bound_key="INDEXES",
                    project="p-1", clock=clock, sleep=clock.sleep)
    assert code == 1 and clock.slept == []


@pytest.mark.parametrize("facts, problem", [
    (PreflightFacts(node="v20.11.1", npm="10.2.4", gcloud="528.0.0"), None),
    (PreflightFacts(node="v22.1.0", npm="10.2.4", gcloud="500.0.0"), None),
    (PreflightFacts(node=Unread("No such file"), npm="10", gcloud="528.0.0"),
     "Node.js is not installed (firebase-tools needs it): install Node 20 or later"),
    (PreflightFacts(node="v18.19.0", npm="10", gcloud="528.0.0"),
     "Node.js v18.19.0 is too old for firebase-tools: install Node 20 or later"),
    (PreflightFacts(node="v20.0.0", npm=Unread("No such file"), gcloud="528.0.0"),
     "npm is not installed"),
    (PreflightFacts(node="v20.0.0", npm="10", gcloud="499.0.0"),
     "gcloud 499.0.0 is older than 500.0.0: run `gcloud components update`"),
])
def test_tools_are_checked_one_line_each_with_the_fix(facts, problem):
    problems = judge_tools(facts)
    assert problems == ([] if problem is None else [p for p in problems if problem in p])
    assert all("\n" not in p for p in problems)


LIMITS = {"run_task": (512, 0.333, 100), "api": (256, 0.167, 5)}


def healthy(**changes) -> PreflightFacts:
    return replace(PreflightFacts(billing=True, roles={"roles/owner"},
                                  quota={"memory": 400 * 1024, "cpu": 200_000},
                                  account="me@example.com"), **changes)


@pytest.mark.parametrize("facts, env, problem", [
    (healthy(), {}, None),
    (healthy(roles={"roles/resourcemanager.projectIamAdmin", "roles/viewer"}), {}, None),
    (healthy(billing=False), {}, "billing is not enabled on p-1: link a billing account "
                                 "(gcloud billing projects link p-1 --billing-account=ID)"),
    (healthy(roles={"roles/editor"}), {}, "you (me@example.com) hold neither roles/owner nor "
                                          "roles/resourcemanager.projectIamAdmin on p-1"),
    (healthy(roles={"roles/editor"}), {"FRESHET_DEPLOY_SKIP_IAM_CHECK": "1"}, None),
    (healthy(roles=Unread("PERMISSION_DENIED")), {},
     "you (me@example.com) cannot read p-1's IAM policy"),
    (healthy(quota={"memory": 20 * 1024}), {},
     "run_task: 100 instances x 512 MiB needs 51200 MiB, above the Cloud Run memory quota of "
     "20480 in europe-west1: set max_instances: 40 for run_task under functions:"),
    (healthy(quota={"cpu": 10_000}), {},
     "run_task: 100 instances x 333 milli-vCPU needs 33300 milli-vCPU, above the Cloud Run "
     "cpu quota of 10000 in europe-west1: set max_instances: 30 for run_task"),
])
def test_billing_iam_and_quota_are_refused_in_one_line_with_the_fix(facts, env, problem):
    problems, _ = judge_cloud(facts, "p-1", LIMITS, "europe-west1", env)
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0] and "\n" not in problems[0]


def test_what_preflight_cannot_read_is_a_note_not_a_refusal():
    problems, notes = judge_cloud(healthy(billing=Unread("API not enabled"),
                                          quota=Unread("no alpha component")),
                                  "p-1", LIMITS, "europe-west1", {})
    assert problems == []
    assert "could not read whether billing is enabled (API not enabled)" in notes[0]
    assert "lower its max_instances under functions:" in notes[1]


def test_the_run_quota_is_read_for_the_region_in_mib_and_milli_cpus():
    infos = [
        {"metric": "run.googleapis.com/mem_allocation", "metricUnit": "GiBy",
         "dimensionsInfos": [{"dimensions": {"region": "us-central1"}, "details": {"value": "1"}},
                             {"details": {"value": "400"}},
                             {"dimensions": {"region": "europe-west1"},
                              "details": {"value": "20"}}]},
        {"metric": "run.googleapis.com/cpu_allocation", "metricUnit": "1/{project}/{region}",
         "dimensionsInfos": [{"details": {"value": "-1"}}]},  # unlimited
        {"metric": "run.googleapis.com/requests", "dimensionsInfos": [
            {"details": {"value": "5"}}]},
    ]
    assert parse_quota(infos, "europe-west1") == {"memory": 20 * 1024}
    assert parse_quota(infos, "asia-east1") == {"memory": 400 * 1024}
    assert parse_quota("garbage", "europe-west1") == {}


@pytest.mark.parametrize("memory, cpu, cpus", [
    (256, None, 0.167), (512, None, 0.333), (2048, None, 1), (4096, None, 2),
    (512, "1", 1.0), (512, "500m", 0.5)])
def test_the_cpus_a_function_gets(memory, cpu, cpus):
    assert cpus_for(memory, cpu) == cpus


def test_bucket_names_with_google_are_refused_with_the_key_to_change(tmp_path):
    text = (ROOT / deploy.CONFIG).read_text().replace(
        "site:\n", "site:\n  bucket: my-google-status\n  snapshot_bucket: goog-snaps\n")
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    refusals = deploy.bucket_refusals(load_config(path, env={}, project="p-12345"))
    assert [r.split(":")[0] for r in refusals] == [
        "bucket name 'my-google-status' contains \"google\" (or starts with \"goog\"), which "
        "Cloud Storage refuses", "bucket name 'goog-snaps' contains \"google\" (or starts "
        "with \"goog\"), which Cloud Storage refuses"]
    assert "set site.bucket: another name" in refusals[0]
    assert deploy.bucket_refusals(load_config(ROOT / deploy.CONFIG, env={},
                                              project="p-12345")) == []
