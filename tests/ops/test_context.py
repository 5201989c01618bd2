"""The local context (.freshet/context.json): the CLI finds a running local stack by
itself, unless the environment names another one; without a stack and without
credentials every command says so in one line and never claims success."""

import json
import os
import subprocess
import sys
import uuid

import pytest

from freshet.ops import context
from freshet.ops.cli import main
from tests.ops.helpers import PIPELINE, ROOT, write_config

IDENTITY_VARS = ("FIRESTORE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT",
                 "FRESHET_TASKS_EMULATOR_HOST", "FRESHET_CONFIG", "FRESHET_QUEUE")


def _write(path, **env):
    return context.write(path, name="demo", project="demo-freshet", config="/x/pipeline.yaml",
                         env={"FIRESTORE_EMULATOR_HOST": "127.0.0.1:9", "GOOGLE_CLOUD_PROJECT":
                              "demo-freshet", **env}, addresses={"firestore": "127.0.0.1:9"})


def test_a_written_context_reads_back_without_its_secrets(tmp_path):
    path = tmp_path / ".freshet" / "context.json"
    _write(path, FRESHET_DEMO_WEBHOOK_SECRET="s3cret", FRESHET_QUEUED_GRACE_S="120")
    found = context.load({context.ENV_VAR: str(path)})
    assert found.name == "demo" and found.pid == os.getpid() and found.alive()
    assert found.env["FRESHET_QUEUED_GRACE_S"] == "120"
    assert "FRESHET_DEMO_WEBHOOK_SECRET" not in found.env
    assert "s3cret" not in path.read_text()
    assert json.loads(path.read_text())["format"] == context.FORMAT


def test_the_file_is_found_from_a_subfolder_and_can_be_turned_off(tmp_path):
    _write(tmp_path / ".freshet" / "context.json")
    below = tmp_path / "a" / "b"
    below.mkdir(parents=True)
    assert context.load({}, cwd=below).config == "/x/pipeline.yaml"
    assert context.load({context.ENV_VAR: "none"}, cwd=below) is None


def test_the_environment_naming_another_stack_wins(tmp_path):
    path = tmp_path / "context.json"
    _write(path)
    chosen = {context.ENV_VAR: str(path)}
    assert context.active(chosen) is not None
    assert context.active({**chosen, "FIRESTORE_EMULATOR_HOST": "127.0.0.1:9"}) is not None
    assert context.active({**chosen, "FIRESTORE_EMULATOR_HOST": "10.0.0.1:8080"}) is None
    assert context.active({**chosen, "GOOGLE_CLOUD_PROJECT": "prod"}) is None


def test_a_context_whose_stack_died_is_not_used(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = tmp_path / "context.json"
    context.write(path, name="demo", project="p", env={}, addresses={}, pid=dead.pid)
    assert context.load({context.ENV_VAR: str(path)}) is not None
    assert context.active({context.ENV_VAR: str(path)}) is None


def test_only_the_writer_removes_its_context(tmp_path):
    path = tmp_path / "context.json"
    context.write(path, name="demo", project="p", env={}, addresses={}, pid=1)
    context.remove(path)
    assert path.exists()
    _write(path)
    context.remove(path)
    assert not path.exists()


@pytest.fixture()
def through_context(tmp_path, monkeypatch, db, tasks_emulator):
    """The test emulators named only by a context file; no identity in the environment."""
    env = {k: os.environ[k] for k in IDENTITY_VARS if os.environ.get(k)}
    queue = f"q-{uuid.uuid4().hex[:10]}"
    config = write_config(tmp_path, PIPELINE.replace("name: freshet-runs", f"name: {queue}"))
    env.update({"FRESHET_CONFIG": str(config), "FRESHET_QUEUE": queue})
    path = tmp_path / "context.json"
    context.write(path, name="demo", project=env["GOOGLE_CLOUD_PROJECT"], env=env,
                  addresses={"firestore": env["FIRESTORE_EMULATOR_HOST"]}, config=str(config))
    for key in IDENTITY_VARS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv(context.ENV_VAR, str(path))
    return env


def test_the_cli_talks_to_the_stack_its_context_names(capsys, through_context):
    assert main(["apply"]) == 0  # the context's config, by default
    out = capsys.readouterr().out
    assert "+ job orders: create" in out and through_context["FRESHET_CONFIG"] in out
    assert main(["jobs", "run", "orders"]) == 0
    assert "queued" in capsys.readouterr().out
    assert main(["context"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Talking to the local demo") and "firestore:" in out
    from freshet_local.demo import env_cli  # `freshet demo env` (the demo is a plugin)

    assert env_cli() == 0
    exports = capsys.readouterr().out.splitlines()
    assert f"export FIRESTORE_EMULATOR_HOST={through_context['FIRESTORE_EMULATOR_HOST']}" \
        in exports
    assert all(key not in os.environ for key in IDENTITY_VARS)  # nothing leaks


def test_the_banners_two_variables_alone_never_reach_for_google_cloud(capsys, db, monkeypatch):
    from freshet.gcp.store import Store
    from tests.loop.helpers import add_job

    store = Store(db)
    add_job(store, "orders")
    monkeypatch.delenv("FRESHET_TASKS_EMULATOR_HOST", raising=False)
    assert main(["jobs", "run", "orders"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "FRESHET_TASKS_EMULATOR_HOST is not" in err
    assert store.recent_runs(job_id="orders", limit=5) == []  # nothing was created


COMMANDS = [("jobs", "list"), ("jobs", "run", "orders-sync"), ("runs", "list"), ("datasets",),
            ("status",), ("incident", "list"), ("backfill", "status"), ("site", "build"),
            ("apply", "--dry-run")]


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_without_a_stack_or_credentials_each_command_says_so_in_one_line(tmp_path, argv):
    home = tmp_path / "home"
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "CLOUDSDK_CONFIG": str(home / "gc"),
           "FRESHET_CONTEXT": str(tmp_path / "none.json"), "GCE_METADATA_HOST": "127.0.0.1:9",
           "GCE_METADATA_IP": "127.0.0.1:9",
           "PYTHONPATH": f"{ROOT / 'functions'}:{ROOT / 'infra'}"}
    result = subprocess.run([sys.executable, "-m", "freshet.ops.cli", *argv], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == "" and "queued" not in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "credentials" in result.stderr  # the wording is the answer table's (ops/answers)
