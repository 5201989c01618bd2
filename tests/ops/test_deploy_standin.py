"""The generated `make deploy`, run for real against stand-in `gcloud`, `firebase`,
`freshet`, `node` and `npm` on PATH (standin_gcloud.py) that answer "not found",
"CREATING", "missing permission on the build service account", "DEPLOYING" for the
first N looks, as Google does while a new project catches up: deploy finishes through
its waits and retries, within its bounds, prints the page only once index.html is
there, skips on a rerun what is done, repairs a FAILED function, and stops with one line
naming the step and the command that resumes when something never becomes ready.

The waits' intervals and bounds come from FRESHET_DEPLOY_*_S, so each run takes seconds.
The stand-ins accept any syntax: test_deploy_commands.py proves every command parses.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from freshet_local import deploy
from tests.ops.helpers import ROOT

PROJECT = "freshet-acme-prod"
TOOLS = ("gcloud", "firebase", "freshet", "node", "npm")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("make") is None, reason="needs make")]


@pytest.fixture
def standin(tmp_path):
    """A directory of stand-in executables and the state they share."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    source = Path(__file__).with_name("standin_gcloud.py")
    for tool in TOOLS:
        path = bin_dir / tool
        path.write_text(f"#!{sys.executable}\n" + source.read_text())
        path.chmod(0o755)
    adc = tmp_path / "adc.json"  # loads offline; never used to call anything
    adc.write_text(json.dumps({"type": "authorized_user", "client_id": "x",
                               "client_secret": "y", "refresh_token": "z"}))
    return tmp_path


def scenario(home: Path, **answers) -> None:
    answers.setdefault("index_count", deploy.expected_indexes())
    (home / "scenario.json").write_text(json.dumps(answers))


def make(home: Path, target: str = "deploy", **bounds) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")
           and not k.startswith(("CLOUDSDK_", "FRESHET_DEPLOY_"))}
    env.update(PATH=f"{home / 'bin'}{os.pathsep}{env['PATH']}", STANDIN_DIR=str(home),
               GOOGLE_APPLICATION_CREDENTIALS=str(home / "adc.json"),
               FRESHET_DEPLOY_POLL_S="0.01", FRESHET_DEPLOY_BACKOFF_MAX_S="0.05",
               **{f"FRESHET_DEPLOY_{k.upper()}_S": str(v) for k, v in bounds.items()})
    return subprocess.run(
        ["make", "--no-print-directory", "-o", "setup", target, f"PROJECT={PROJECT}",
         f"FIREBASE={home / 'bin' / 'firebase'}", f"FRESHET={home / 'bin' / 'freshet'}"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


def calls(home: Path) -> list[list[str]]:
    path = home / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def deploys(home: Path) -> list[str]:
    return [c[3] for c in calls(home) if c[:3] == ["gcloud", "functions", "deploy"]]


def state(home: Path) -> dict:
    return json.loads((home / "state.json").read_text())


def ours(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("deploy:")]


def test_deploy_survives_eventual_consistency_a_rerun_skips_and_repairs(standin):
    scenario(standin, database=3, indexes=4, build_iam=3, deploying=2, page=3)
    done = make(standin)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "waiting for Firestore database (default): " in out
    assert "  ready: Firestore database (default)" in out
    assert f"waiting for {deploy.expected_indexes()} Firestore composite indexes READY: " in out
    retries = [line for line in out.splitlines() if "the build account's role is not in "
               "effect yet" in line]
    assert len(retries) == 3 and "attempt 3:" in retries[-1]  # a line each time
    assert "waiting for function scheduler_tick ACTIVE: state DEPLOYING" in out
    # every function deployed once, after the three refused builds
    assert sorted(deploys(standin)) == sorted(["scheduler_tick"] * 4 + [
        "run_task", "recover_stuck_runs", "publish_status", "api"])
    assert {f["state"] for f in state(standin)["functions"].values()} == {"ACTIVE"}
    # the URL comes only after index.html is there
    lines = out.splitlines()
    ready = lines.index(f"  ready: gs://{PROJECT}-freshet-site/index.html")
    url = next(i for i, line in enumerate(lines) if line.startswith("Status page: "))
    assert ready < url
    assert "readers: you (the deploying account)" in lines[url]
    grant = [c for c in calls(standin) if c[:5] == ["gcloud", "storage", "buckets",
                                                    "add-iam-policy-binding",
                                                    f"gs://{PROJECT}-freshet-site"]]
    assert any("--member=user:ops@example.com" in c and
               "--role=roles/storage.objectViewer" in c for c in grant)

    before = len(calls(standin))
    again = make(standin)
    assert again.returncode == 0, again.stderr[-3000:]
    new = calls(standin)[before:]
    assert not [c for c in new if c[1:3] in (["functions", "deploy"],
                                             ["databases", "create"])]
    assert again.stdout.count("unchanged: function ") == 5

    # A FAILED function keeps the new digest as its label; an empty label is what a
    # crashed digest command leaves: each is deployed again, the others are not.
    saved = state(standin)
    saved["functions"]["run_task"]["state"] = "FAILED"
    saved["functions"]["api"]["label"] = ""
    (standin / "state.json").write_text(json.dumps(saved))
    before = len(deploys(standin))
    repair = make(standin)
    assert repair.returncode == 0, repair.stderr[-3000:]
    assert deploys(standin)[before:] == ["run_task", "api"]
    assert "function run_task is FAILED: deploying it again" in repair.stdout
    assert repair.stdout.count("unchanged: function ") == 3


@pytest.mark.parametrize("answers, bounds, step", [
    ({"indexes": 10**9}, {"indexes": 0.3},
     f"{deploy.expected_indexes()} Firestore composite indexes READY failed: not ready after"),
    ({"build_iam": 10**9}, {"build_iam": 0.3}, "function scheduler_tick failed: the build "
     f"account freshet-build@{PROJECT}.iam.gserviceaccount.com still lacks its role"),
    ({"page": 10**9}, {"page": 0.3}, f"gs://{PROJECT}-freshet-site/index.html failed: not "
     "ready after"),
])
def test_what_never_becomes_ready_stops_deploy_with_one_line_and_the_resume_command(
        standin, answers, bounds, step):
    scenario(standin, **answers)
    done = make(standin, **bounds)
    assert done.returncode != 0
    lines = ours(done.stderr)
    assert len(lines) == 1, done.stderr[-2000:]
    assert step in lines[0], lines[0]
    assert lines[0].endswith(f"resume with `make deploy PROJECT={PROJECT}` (finished steps "
                             "are skipped)")
    assert "Status page: " not in done.stdout


@pytest.mark.parametrize("answers, needle", [
    ({"node": "v18.19.0"}, "Node.js v18.19.0 is too old for firebase-tools: install Node 20"),
    ({"billing": False}, f"billing is not enabled on {PROJECT}: link a billing account"),
    ({"roles": ["roles/editor"]}, "which deploy needs to grant roles: ask for roles/owner"),
    ({"gcloud": "450.0.0"}, "gcloud 450.0.0 is older than 500.0.0: run `gcloud components"),
    ({"quota": [{"metric": "run.googleapis.com/mem_allocation", "metricUnit": "MiBy",
                 "dimensionsInfos": [{"dimensions": {"region": "europe-west1"},
                                      "details": {"value": "20480"}}]}]},
     "run_task: 200 instances x 512 MiB needs 102400 MiB, above the Cloud Run memory quota "
     "of 20480 in europe-west1: set max_instances: 40 for run_task"),
])
def test_preflight_refuses_in_one_line_with_the_fix_before_anything_is_created(
        standin, answers, needle):
    scenario(standin, **answers)
    done = make(standin)
    assert done.returncode != 0
    lines = ours(done.stderr)
    assert len(lines) == 1 and needle in lines[0], done.stderr[-2000:]
    made = [c for c in calls(standin) if c[0] in ("firebase", "freshet") or any(
        verb in c for verb in ("create", "enable", "deploy", "add-iam-policy-binding"))]
    assert made == [], made


@pytest.mark.parametrize("fail, step", [
    ("services enable", "gcloud services enable failed (its error is above)"),
    ("storage buckets create", f"gs://{PROJECT}-freshet-site failed (its error is above)"),
])
def test_a_command_that_fails_stops_deploy_with_one_line_naming_it_and_how_to_resume(
        standin, fail, step):
    scenario(standin, fail=[fail])
    if fail.startswith("storage"):  # make the bucket look missing, so it is created
        scenario(standin, fail=[fail, "storage buckets describe"])
    done = make(standin)
    assert done.returncode != 0
    lines = ours(done.stderr)
    assert len(lines) == 1 and step in lines[0], done.stderr[-2000:]
    assert lines[0].endswith(f"resume with `make deploy PROJECT={PROJECT}` (finished steps "
                             "are skipped)")
