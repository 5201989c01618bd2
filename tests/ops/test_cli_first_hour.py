"""What a newcomer meets in the CLI's first hour: --version, help on every option, ids
that can be pasted or abbreviated, output without Python reprs or microseconds, --json on
every listing, exit codes that say whether anything matched, a quiet closed pipe."""

import argparse
import json
import os
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import pytest

from freshet.ops.cli import build_parser, eta_text, main, plain, stamp
from tests.ops.helpers import PIPELINE, ROOT, write_config

NOW = datetime(2026, 12, 7, 9, 30, 15, 123456, tzinfo=UTC)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def applied(capsys, tmp_path, db, tasks_emulator):
    text = PIPELINE.replace("name: freshet-runs", f"name: q-{uuid.uuid4().hex[:10]}")
    assert main(["apply", "--config", str(write_config(tmp_path, text))]) == 0
    capsys.readouterr()


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and re.fullmatch(r"freshet \d+\.\d+\.\d+\n", out)


def _options(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _options(child)
        else:
            yield parser.prog, action


def test_every_option_and_argument_has_help():
    missing = [f"{prog} {action.option_strings or action.dest}"
               for prog, action in _options(build_parser())
               if not action.help and action.dest not in ("command", "action", "demo_args")]
    assert missing == []


def test_help_shows_the_defaults(capsys):
    assert main(["runs", "list", "--help"]) == 0
    assert "(default: 20)" in capsys.readouterr().out


@pytest.mark.parametrize("value, expected", [
    ("14:00Z", "2026-12-07T14:00:00+00:00"),
    ("09:00Z", "2026-12-08T09:00:00+00:00"),  # passed today: tomorrow's
    ("09:30+01:00", "2026-12-08T08:30:00+00:00"),  # 08:30 UTC today: passed
    ("11:00+01:00", "2026-12-07T10:00:00+00:00"),
    ("08:00-02:00", "2026-12-07T10:00:00+00:00"),
    ("07:00-03:00", "2026-12-07T10:00:00+00:00"),
    ("23:00-10:00", "2026-12-08T09:00:00+00:00"),  # within the next 24 hours
    ("2h", "2h"), ("2026-12-07T14:00Z", "2026-12-07T14:00Z"), (None, None)])
def test_an_eta_may_be_a_time_of_day_with_a_zone(value, expected):
    assert eta_text(value, NOW) == expected


def test_people_read_no_reprs_and_no_microseconds():
    assert plain(["sales.orders", "x"]) == "sales.orders, x"
    assert plain({"format": "csv", "n": 2}) == "format=csv, n=2"
    assert plain([]) == "-" and plain(None) == "-"
    assert stamp(NOW) == "2026-12-07 09:30:15 UTC"
    assert stamp("2026-12-07T09:30:15.123456+00:00") == "2026-12-07 09:30:15 UTC"


def test_jobs_show_prints_no_python_reprs(capsys, applied):
    code, out, _ = run(capsys, "jobs", "show", "orders")
    assert code == 0 and "['" not in out and "{'" not in out
    assert re.search(r"produces:\s+sales\.orders\n", out)


def test_every_listing_has_json(capsys, applied):
    assert main(["jobs", "run", "orders", "--key", "json-1"]) == 0
    capsys.readouterr()
    for argv in (("jobs", "list"), ("runs", "list"), ("datasets",), ("incident", "list"),
                 ("backfill", "status"), ("status",), ("jobs", "show", "orders")):
        code, out, _ = run(capsys, *argv, "--json")
        assert code == 0, argv
        json.loads(out)
    runs = json.loads(run(capsys, "runs", "list", "--json")[1])
    assert runs[0]["job_id"] == "orders" and runs[0]["trigger_source"] == "manual"
    run_id = runs[0]["id"]
    assert json.loads(run(capsys, "runs", "show", run_id, "--json")[1])["id"] == run_id


def test_nothing_matched_exits_non_zero(capsys, applied):
    code, out, err = run(capsys, "runs", "list", "--job", "ghost")
    assert code == 2 and "job 'ghost' not found" in err and out == ""
    code, out, err = run(capsys, "runs", "list", "--job", "orders")
    assert code == 1 and out == "" and "no runs of orders" in err
    code, _, err = run(capsys, "jobs", "list", "--status", "paused")
    assert code == 1 and "no paused jobs" in err


def test_incidents_by_whole_id_prefix_or_short_id_and_resolving_twice_is_refused(
        capsys, applied):
    code, out, _ = run(capsys, "incident", "open", "Rates feed late", "--eta", "23:59Z")
    assert code == 0
    incident_id = out.split()[1].rstrip(":")
    listed = run(capsys, "incident", "list")[1]
    assert incident_id in listed.split()  # whole, to be pasted
    short = incident_id.rsplit("-", 1)[1]
    code, out, _ = run(capsys, "incident", "note", short, "Now expected at 14:00.")
    assert code == 0 and incident_id in out
    code, out, _ = run(capsys, "incident", "show", incident_id[:20])
    assert code == 0 and "Now expected at 14:00." in out
    assert not re.search(r"\d{2}:\d{2}:\d{2}\.\d", out)  # no fractions of a second
    assert run(capsys, "incident", "resolve", short, "Back to normal.")[0] == 0
    code, _, err = run(capsys, "incident", "resolve", short, "Again.")
    assert code == 2 and "was resolved" in err and "nothing was recorded" in err
    shown = run(capsys, "incident", "show", short, "--json")[1]
    assert "Again." not in shown


def test_a_closed_pipe_ends_quietly():
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'functions'}:{ROOT / 'infra'}"}
    reader_gone = subprocess.Popen([sys.executable, "-m", "freshet.ops.cli", "backfill",
                                    "--help"], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
    reader_gone.stdout.close()  # `| head` that has read all it wants
    _, err = reader_gone.communicate(timeout=60)
    assert err == "" and reader_gone.returncode == 0
