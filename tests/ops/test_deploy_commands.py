"""Every gcloud and firebase command deploy and undeploy generate, run by the real CLIs
(Cloud SDK 528, the pinned firebase-tools) with no credentials: each must stop for lack
of credentials, never for a usage error (unknown flag, bad value, missing argument).

gcloud parses a command completely (flags, values, required arguments) before it
needs an account: a usage error exits 2, a parsed command stops with "You do not
currently have an active account selected" and exit 1. The gcloud commands run in one
gcloud process (gcloud_batch.py), the real CLI loaded once. firebase-tools parses its
options and reads its --config file before it asks for credentials.
"""

import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from freshet.ops.config import load_config
from freshet_local import deploy
from tests.ops.helpers import ROOT

PROJECT = "freshet-acme-prod"
NO_ACCOUNT = "You do not currently have an active account selected"
NO_LOGIN = "Failed to authenticate, have you run firebase login?"

pytestmark = pytest.mark.slow


def generated_commands(config_text: str | None = None, tmp_path=None) -> list[tuple[str, ...]]:
    path = ROOT / deploy.CONFIG
    if config_text is not None:
        path = tmp_path / "pipeline.yaml"
        path.write_text(config_text)
    config = load_config(path, env={}, project=PROJECT)
    found = {}
    for target in deploy.all_targets(config):
        for step in target.all_steps():
            for argv in step.commands():
                found[argv] = None
    return list(found)


def _clean_env(home) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLOUDSDK_", "GOOGLE_", "FIREBASE_", "GCE_"))
           and k not in ("FIRESTORE_EMULATOR_HOST", "STORAGE_EMULATOR_HOST")}
    env.update(CLOUDSDK_CONFIG=str(home / "gcloud"), HOME=str(home),
               XDG_CONFIG_HOME=str(home / ".config"),
               CLOUDSDK_CORE_DISABLE_PROMPTS="1",
               CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK="true",
               NO_UPDATE_NOTIFIER="1", FIREBASE_CLI_DISABLE_UPDATE_CHECK="1",
               # No metadata server here: fail fast instead of waiting for one.
               GCE_METADATA_HOST="127.0.0.1:9", GCE_METADATA_IP="127.0.0.1:9")
    (home / "gcloud").mkdir(exist_ok=True)
    return env


def run_all(commands, tmp_path) -> list[tuple[tuple[str, ...], subprocess.CompletedProcess]]:
    """Every command's result, in order: gcloud's all in one gcloud process (see
    gcloud_batch.py), the others (firebase-tools) each on its own."""
    env = _clean_env(tmp_path)
    by_gcloud = [argv for argv in commands if argv[0] == "gcloud"]
    done = dict(zip(by_gcloud, _gcloud_batch(by_gcloud, env), strict=True))

    def run(argv):
        return subprocess.run(list(argv), capture_output=True, text=True, cwd=ROOT,
                              env=env, timeout=300, stdin=subprocess.DEVNULL)

    others = [argv for argv in commands if argv[0] != "gcloud"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        done.update(zip(others, pool.map(run, others), strict=True))
    return [(argv, done[argv]) for argv in commands]


def _gcloud_batch(commands, env) -> list[subprocess.CompletedProcess]:
    if not commands:
        return []
    sdk = Path(os.path.realpath(shutil.which("gcloud"))).parents[1]
    bundled = sdk / "platform" / "bundledpythonunix" / "bin" / "python3"
    python = env.get("CLOUDSDK_PYTHON") or (str(bundled) if bundled.exists() else "python3")
    proc = subprocess.run([python, str(Path(__file__).with_name("gcloud_batch.py")),
                           str(sdk / "lib")], input=json.dumps([a[1:] for a in commands]),
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [subprocess.CompletedProcess(argv, r["returncode"], "", r["stderr"])
            for argv, r in zip(commands, json.loads(proc.stdout), strict=True)]


# Local reads (preflight's): they need no account, so a parsed one exits 0.
LOCAL = (("gcloud", "config", "get-value", "account"), ("gcloud", "version", "--format=json"))


def _usage_problem(argv, proc) -> str | None:
    tool = argv[0]
    if tool == "gcloud":
        if proc.returncode == 1 and NO_ACCOUNT in proc.stderr:
            return None
        if tuple(argv) in LOCAL and proc.returncode == 0:
            return None
    elif proc.returncode != 0 and NO_LOGIN in proc.stdout + proc.stderr:
        return None
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return f"exit {proc.returncode}: {' '.join(argv)[:160]} -> {' | '.join(tail)}"


@pytest.mark.skipif(shutil.which("gcloud") is None, reason="needs the Cloud SDK")
def test_every_generated_command_parses_and_stops_only_for_credentials(tmp_path):
    commands = generated_commands()
    tools = {argv[0] for argv in commands}
    assert tools == {"gcloud", deploy.FIREBASE}
    assert len(commands) > 40  # deploy and undeploy, every resource
    results = run_all(commands, tmp_path)
    problems = [p for p in (_usage_problem(a, r) for a, r in results) if p]
    assert not problems, "\n".join(problems)


@pytest.mark.skipif(shutil.which("gcloud") is None, reason="needs the Cloud SDK")
def test_the_commands_for_operators_viewers_and_a_public_page_parse_too(tmp_path):
    text = (ROOT / deploy.CONFIG).read_text().replace(
        "allowed_callers: []", "allowed_callers: [ops@freshet-acme-prod.iam.gserviceaccount.com]"
    ).replace("viewers: []", "viewers: [group:data@example.com, domain:example.com]").replace(
        "public: false", "public: true").replace(
        "run_task: {timeout: 15m, memory: 512Mi, max_instances: 200}",
        "run_task: {timeout: 15m, memory: 2Gi, cpu: 1, concurrency: 4, max_instances: 100}")
    everything = generated_commands(text, tmp_path)
    plain = set(generated_commands())
    new = [argv for argv in everything if argv not in plain]
    assert any("--cpu=1" in argv for argv in new)
    assert any("--member=allUsers" in argv for argv in new)
    results = run_all(new, tmp_path)
    problems = [p for p in (_usage_problem(a, r) for a, r in results) if p]
    assert not problems, "\n".join(problems)


@pytest.mark.skipif(shutil.which("gcloud") is None, reason="needs the Cloud SDK")
def test_the_check_itself_catches_a_usage_error(tmp_path):
    """The assertion above can fail: a bad flag is told apart from missing credentials."""
    bad = ("gcloud", "functions", "deploy", "api", "--gen2", "--timeout=forever",
           f"--project={PROJECT}")
    wrong_flag = ("gcloud", "storage", "buckets", "create", "gs://x", "--uniform-access")
    firebase = (deploy.FIREBASE, "--config", deploy.FIREBASE_CONFIG, "deploy", "--only",
                "firestore:indexes", "--bogus-option", f"--project={PROJECT}")
    results = run_all([bad, wrong_flag, firebase], tmp_path)
    assert all(_usage_problem(a, r) for a, r in results), [
        (r.returncode, r.stderr[-200:]) for _, r in results]


def readme_commands() -> list[tuple[str, ...]]:
    """The gcloud commands docs/deploy.md's "Deploying to Google Cloud" shows in its code blocks,
    continuation lines joined, $API filled in."""
    import re
    import shlex

    text = (ROOT / "docs" / "deploy.md").read_text()  # moved out of the README
    section = text.split("## Deploying to Google Cloud", 1)[1].split("\n## ", 1)[0]
    api = re.search(r"^API=(\S+)$", section, re.M).group(1)
    found = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            match = re.search(r"(gcloud [^)#]*)", line)
            if match and " login" not in match.group(1):  # logging in is interactive
                found.append(tuple(shlex.split(match.group(1).replace("$API", api))))
    return found


@pytest.mark.skipif(shutil.which("gcloud") is None, reason="needs the Cloud SDK")
def test_the_commands_the_readme_gives_operators_parse_too(tmp_path):
    commands = readme_commands()
    assert any(c[:3] == ("gcloud", "auth", "print-identity-token") and "--include-email" in c
               for c in commands), commands
    assert any(c[:3] == ("gcloud", "iam", "service-accounts") for c in commands), commands
    results = run_all(commands, tmp_path)
    problems = [p for p in (_usage_problem(a, r) for a, r in results) if p]
    assert not problems, "\n".join(problems)
