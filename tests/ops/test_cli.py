"""The `freshet` CLI: readable tables, a plan before apply, and user errors as one line
on stderr with exit code 2 - never a traceback."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from freshet.gcp.store import Store
from freshet.ops.cli import main
from tests.ops.helpers import PIPELINE, write_config

ROOT = Path(__file__).resolve().parents[2]


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("freshet: error: ") and "Traceback" not in err
    return lines[0]


@pytest.fixture()
def pipeline(tmp_path, db, tasks_emulator):
    text = PIPELINE.replace("name: freshet-runs", f"name: q-{uuid.uuid4().hex[:10]}")
    return write_config(tmp_path, text)


def test_missing_config_file(capsys, tmp_path):
    code, _, err = run(capsys, "apply", "--config", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert one_line_error(err).endswith("nope.yaml: config: file not found")


def test_bad_config_names_file_line_and_field(capsys, tmp_path):
    path = write_config(tmp_path, PIPELINE.replace('"0 6 * * *"', '"0 25 * * *"'))
    code, _, err = run(capsys, "apply", "--dry-run", "--config", str(path))
    assert code == 2
    assert f"{path}:14: jobs[1].schedule.cron: invalid cron expression" in one_line_error(err)


def test_usage_errors_are_one_line(capsys):
    code, _, err = run(capsys, "jobs", "frobnicate")
    assert code == 2 and "invalid choice" in one_line_error(err)


def test_unknown_job(capsys, db):
    for argv in (("jobs", "show", "ghost"), ("jobs", "pause", "ghost", "--reason", "x"),
                 ("jobs", "run", "ghost")):
        code, _, err = run(capsys, *argv)
        assert code == 2 and one_line_error(err) == "freshet: error: job 'ghost' not found"


def test_unreachable_firestore(capsys, monkeypatch):
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:9")
    code, _, err = run(capsys, "jobs", "list")
    assert code == 2
    assert "cannot reach the Firestore emulator at 127.0.0.1:9" in one_line_error(err)


def test_a_real_process_prints_no_traceback(tmp_path):
    env = {**os.environ, "FIRESTORE_EMULATOR_HOST": "127.0.0.1:9",
           "PYTHONPATH": f"{ROOT / 'functions'}:{ROOT / 'infra'}"}
    result = subprocess.run([sys.executable, "-m", "freshet.ops.cli", "status"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    one_line_error(result.stderr)


def test_apply_shows_the_plan_dry_run_changes_nothing_then_apply_does(capsys, pipeline, db):
    code, out, _ = run(capsys, "apply", "--dry-run", "--config", str(pipeline))
    assert code == 0 and "+ job orders: create" in out and "Dry run" in out
    assert Store(db).list_jobs() == []
    code, out, err = run(capsys, "apply", "--config", str(pipeline))
    assert code == 0 and "Applied" in out and "[1/" in err  # progress on stderr
    assert {j.id for j in Store(db).list_jobs()} == {"orders", "rates"}
    code, out, _ = run(capsys, "apply", "--config", str(pipeline))
    assert code == 0 and out.startswith("No changes")


def test_jobs_runs_datasets_and_status_read_well(capsys, pipeline):
    assert run(capsys, "apply", "--config", str(pipeline))[0] == 0
    code, out, _ = run(capsys, "jobs", "list")
    header, rule, *rows = out.splitlines()
    assert header.split()[:3] == ["JOB", "KIND", "STATUS"] and set(rule) <= {"-", " "}
    assert rows[0].split()[:3] == ["orders", "noop", "active"] and rows[-1] == "2 job(s)"
    code, out, _ = run(capsys, "jobs", "pause", "orders", "--reason", "vendor outage")
    assert out.splitlines()[0] == "job orders: paused"
    assert run(capsys, "jobs", "resume", "orders")[1].strip() == "job orders: active"
    code, out, _ = run(capsys, "jobs", "run", "orders", "--key", "cli-1")
    assert code == 0 and "queued" in out
    code, out, _ = run(capsys, "jobs", "run", "orders", "--key", "cli-1")
    assert "already requested" in out
    code, out, _ = run(capsys, "runs", "list", "--job", "orders")
    assert out.splitlines()[0].split()[:2] == ["RUN", "STATUS"] and "manual" in out
    code, out, _ = run(capsys, "jobs", "show", "orders")
    assert "kind:" in out and "noop" in out
    code, out, _ = run(capsys, "datasets")
    assert "sales.revenue" in out and "Unknown" in out
    code, out, _ = run(capsys, "status")
    assert code == 0 and out.startswith("Overall: Unknown") and "2 active" in out


def test_runs_show_prints_the_run_its_attempts_and_its_logs_explorer_link(capsys, pipeline):
    assert run(capsys, "apply", "--config", str(pipeline))[0] == 0
    out = run(capsys, "jobs", "run", "orders", "--key", "show-1")[1]
    run_id = out.split()[1]
    code, out, err = run(capsys, "runs", "show", run_id)
    assert code == 0 and err == ""
    lines = dict(line.split(":", 1) for line in out.splitlines() if ":" in line
                 and not line.startswith(" "))
    assert lines["run"].strip() == run_id and lines["job"].strip() == "orders"
    assert lines["status"].strip() == "queued" and lines["attempt"].strip() == "1 of 4"
    logs = out.splitlines()[-1]
    assert logs.startswith("logs:") and "https://console.cloud.google.com/logs/query;" \
        "query=labels.run_id%3D%22" in logs and logs.endswith("?project=demo-freshet")
    code, _, err = run(capsys, "runs", "show", "orders__nope")
    assert code == 2 and "run 'orders__nope' not found" in one_line_error(err)


def test_backfill_dry_run_start_status_with_a_bar_and_cancel(capsys, db, monkeypatch):
    from datetime import UTC, datetime, timedelta

    from freshet.core.settings import load_settings
    from freshet.ops import cli
    from tests.loop.helpers import RecordingQueue, add_job

    recorded = RecordingQueue(load_settings({}, auth_mode="local"))
    monkeypatch.setattr(cli, "open_queue", lambda settings: recorded)
    last = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    add_job(Store(db), "hourly", cron="0 * * * *", next_run_at=last + timedelta(hours=1))
    span = ["--from", (last - timedelta(hours=5)).isoformat(), "--to", last.isoformat()]
    code, out, _ = run(capsys, "backfill", "hourly", *span, "--dry-run", "--max-parallel", "2")
    assert code == 0 and "6 slot(s) in the range (up to now); 6 would run" in out
    assert "nothing was changed" in out and recorded.sent == []
    code, out, _ = run(capsys, "backfill", "hourly", *span, "--max-parallel", "2")
    assert code == 0 and "started: 6 of 6 slot(s) to run" in out
    assert "[..............................] 0/6" in out and "running 2" in out
    backfill_id = out.split()[1]
    code, out, _ = run(capsys, "backfill", "status")
    assert code == 0 and backfill_id in out and out.rstrip().endswith("1 backfill(s)")
    code, out, _ = run(capsys, "backfill", "status", backfill_id)
    assert out.count("in flight: hourly__") == 2
    code, out, _ = run(capsys, "backfill", "cancel", backfill_id)
    assert code == 0 and "cancelled" in out and "cancelled 6" in out
    code, out, _ = run(capsys, "runs", "list", "--job", "hourly")
    assert "SLOT" in out.splitlines()[0] and "backfill" in out


@pytest.mark.parametrize("argv,message", [
    (("backfill", "hourly"), "backfill JOB needs --from and --to"),
    (("backfill", "hourly", "--from", "2026-11-28T00:00", "--to", "2026-11-28T01:00Z"),
     "--from: must include a timezone"),
    (("backfill", "cancel"), "backfill cancel needs the backfill's id"),
    (("backfill", "status", "nope"), "backfill 'nope' not found"),
    (("backfill", "ghost", "--from", "2026-11-28T00:00Z", "--to", "2026-11-28T01:00Z"),
     "job 'ghost' not found"),
    # issue 20 §5: a dry run refuses what the real run refuses; extreme values, one line
    (("backfill", "hourly", "--from", "2026-11-28T00:00Z", "--to", "2026-11-28T01:00Z",
      "--max-parallel", "0", "--dry-run"), "max_parallel: must be an integer from 1 to"),
    (("backfill", "hourly", "--from", "0001-01-01T00:00Z", "--to", "2026-11-28T01:00Z"),
     "--from: must lie in the years 1970 to 2200"),
    (("backfill", "hourly", "--from", "2026-11-28T00:00Z", "--to", "9999-12-31T23:59-05:00"),
     "--to: must lie in the years 1970 to 2200"),
    (("backfill", "hourly", "--from", "2026-11-28T00:00Z", "--to", "2026-11-28T01:00Z",
      "--max-parallel", "\u0663"), "argument --max-parallel: must be a whole number"),
    (("incident", "open", "x", "--eta", "99999999999999d"),
     "eta: must be a duration of at most 3660d"),
    (("incident", "open", "x", "--eta", "1\u00b2h"), "eta: "),
    (("runs", "list", "--limit", "99999999999"), "argument --limit: must be a whole number"),
    (("cost", "--retry-rate", "nan"), "argument --retry-rate: must be a number"),
    (("cost", "--failure-rate", "2"), "argument --failure-rate: must be"),
])
def test_backfill_user_errors_are_one_line(capsys, db, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in one_line_error(err)


def test_a_job_named_status_can_be_backfilled(capsys, db, monkeypatch):
    from datetime import UTC, datetime, timedelta

    from freshet.core.settings import load_settings
    from freshet.ops import cli
    from tests.loop.helpers import RecordingQueue, add_job

    monkeypatch.setattr(cli, "open_queue",
                        lambda settings: RecordingQueue(load_settings({}, auth_mode="local")))
    last = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    add_job(Store(db), "status", cron="0 * * * *", next_run_at=last + timedelta(hours=1))
    code, out, _ = run(capsys, "backfill", "status", "--from",
                       (last - timedelta(hours=1)).isoformat(), "--to", last.isoformat(),
                       "--dry-run")
    assert code == 0 and "Backfill of status" in out and "2 would run" in out


def test_incident_open_note_resolve_and_status(capsys, pipeline, monkeypatch):
    monkeypatch.setenv("FRESHET_AUTHOR", "alice")
    assert run(capsys, "apply", "--config", str(pipeline))[0] == 0
    code, out, _ = run(capsys, "incident", "open", "Rates feed late", "--dataset",
                       "finance.rates", "--note", "The ECB feed is delayed.", "--eta", "2h")
    assert code == 0 and "open — Rates feed late" in out
    assert "about: datasets finance.rates; ETA" in out
    incident_id = out.split()[1].rstrip(":")
    code, out, _ = run(capsys, "status")
    assert f"Incident: Rates feed late [{incident_id}], ETA" in out
    code, out, _ = run(capsys, "incident", "note", incident_id, "Now expected at 14:00.")
    assert code == 0 and "update   Now expected at 14:00.  — alice" in out
    code, out, _ = run(capsys, "incident", "resolve", incident_id, "Back to normal.")
    assert code == 0 and f"incident {incident_id}: resolved" in out
    code, out, _ = run(capsys, "incident", "list")
    assert incident_id in out and "1 incident(s)" in out
    code, _, err = run(capsys, "incident", "note", incident_id, "more")
    assert code == 2 and "is resolved; open a new one" in one_line_error(err)


def test_incident_errors_are_one_line(capsys, db):
    code, _, err = run(capsys, "incident", "open", "x", "--job", "ghost")
    assert code == 2 and one_line_error(err) == "freshet: error: scope.jobs[0]: unknown job 'ghost'"
    code, _, err = run(capsys, "incident", "show", "nope")
    assert code == 2 and "incident 'nope' not found" in one_line_error(err)
    code, _, err = run(capsys, "incident", "open", "x", "--eta", "soon")
    assert code == 2 and "eta" in one_line_error(err)


def test_status_shows_each_routes_last_delivery(capsys, tmp_path, db, tasks_emulator):
    from datetime import UTC, datetime, timedelta

    from freshet.core.alerts import RouteState

    text = PIPELINE.replace("name: freshet-runs", f"name: q-{uuid.uuid4().hex[:10]}") + """\
routes:
  - {id: team-slack, type: slack, url: {env: TEAM_SLACK_URL}}
  - {id: ops-hook, type: webhook, url: {env: OPS_URL}, secret: {env: OPS_SECRET}}
"""
    assert run(capsys, "apply", "--config", str(write_config(tmp_path, text)))[0] == 0
    code, out, _ = run(capsys, "status")
    assert code == 0 and "nothing sent yet" in out
    now = datetime.now(UTC)
    Store(db).change_route("ops-hook", lambda _: (RouteState(
        "ops-hook", last_status="failed", delivered=3, last_attempt_at=now - timedelta(minutes=4),
        last_delivered_at=now - timedelta(hours=1), last_error="HTTP 503: try later"), None))
    code, out, _ = run(capsys, "status")
    rows = {line.split()[0]: line for line in out.splitlines()
            if line.startswith(("team-slack", "ops-hook"))}
    assert "ROUTE" in out and set(rows) == {"team-slack", "ops-hook"}
    assert "slack" in rows["team-slack"] and "nothing sent yet" in rows["team-slack"]
    assert "failed" in rows["ops-hook"] and "HTTP 503: try later" in rows["ops-hook"]
    assert "4 min ago" in rows["ops-hook"]


def test_a_refused_trigger_and_a_runs_chain_depth_are_shown(capsys, db):
    """Issue 20 §1: the run-time loop guard's refusal, as `jobs show` and `runs show` say it."""
    from datetime import UTC, datetime

    from freshet.core.models import Run
    from tests.loop.helpers import add_job

    store = Store(db)
    add_job(store, "b", schedule=None, next_run_at=None, trigger={"after": ["x"]})
    at = datetime(2026, 11, 28, 12, tzinfo=UTC)
    store.update_job("b", {"trigger_refused": {
        "at": at, "depth": 3, "limit": 2, "upstream_run_id": "a__t1",
        "reason": "trigger chain depth 3 exceeds 2 (the number of jobs): a trigger loop; "
                  "the run was not created"}})
    store.create_run(Run(id="b__t1", job_id="b", kind="noop", scheduled_for=at,
                         trigger_source="upstream", trigger_depth=2))
    code, out, _ = run(capsys, "jobs", "show", "b")
    assert code == 0
    assert "trigger refused:" in out and "depth 3 exceeds 2" in out
    assert "2026-11-28T12:00:00Z" in out
    code, out, _ = run(capsys, "runs", "show", "b__t1")
    assert code == 0 and "upstream (chain depth 2)" in out
