"""The overview's rows as tables: what a row says, the order (failures first) and the
filters. Pure: documents and `now` in. (freshet.ops.overview; its reads are tested on
the emulator in tests/ops/test_console_api.py.)"""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from freshet.core.control import Control
from freshet.core.interventions import adhoc_window, paused
from freshet.core.models import new_job
from freshet.ops.overview import Filters, first_line, job_row, matches, rank

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def job(job_id="orders", **kw):
    j = new_job(id=job_id, kind=kw.pop("kind", "noop"), schedule={"cron": "0 * * * *"},
                produces=["sales.orders"], pool=kw.pop("pool", None))
    return replace(j, next_run_at=NOW + timedelta(minutes=30), **kw)


def row(j, *, state="fresh", control=None, owners=None):
    datasets = {"sales.orders": {"key": "sales.orders", "state": state, "reason": "r"}}
    return job_row(j, datasets, owners or {"sales.orders": "sales"}, control or Control(), NOW)


def test_a_row_says_what_the_job_is_doing():
    r = row(job(last_run_status="succeeded", last_run_at=NOW - timedelta(minutes=5),
                recent_durations_s=[3.0, 4.5]))
    assert (r["status"], r["pool"], r["owners"], r["freshness"]) == (
        "active", "default", ["sales"], "fresh")
    assert r["last_run"]["duration_s"] == 4.5 and r["next_run_at"] == "2026-11-28T12:30:00Z"
    assert not r["failing"] and r["paused"] is None and r["maintenance"] is None


def test_a_paused_job_shows_why_and_until_and_has_no_next_run():
    p = paused(job(), reason="vendor outage", until=NOW + timedelta(hours=2), by="ana", now=NOW)
    r = row(p)
    assert r["paused"] == {"reason": "vendor outage", "by": "ana",
                           "at": "2026-11-28T12:00:00Z", "until": "2026-11-28T14:00:00Z"}
    assert r["next_run_at"] is None


def test_a_kill_switch_and_a_window_show_on_the_row():
    window = adhoc_window(minutes=30, note="failover", by="", now=NOW - timedelta(minutes=1))
    control = Control(disabled_kinds=frozenset({"noop"}), reason="bank migration",
                      maintenance=Control.from_doc({"adhoc_maintenance": [window.to_doc()]})
                      .maintenance)
    r = row(job(), control=control)
    assert r["kill_switched"] and r["kill_switch_reason"] == "bank migration"
    assert "failover" in r["maintenance"]


@pytest.mark.parametrize("text, first", [("boom\nat line 2", "boom"), ("  \n", None),
                                         (None, None), ("x" * 500, "x" * 299 + "…")])
def test_the_last_error_is_its_first_line(text, first):
    assert first_line(text) == first


def test_failures_come_first_then_what_needs_a_look_then_the_rest():
    rows = [row(job("a")), row(job("b"), state="warn"),
            row(job("c", last_run_status="failed", last_error="boom")),
            row(job("d"), state="error"),
            row(paused(job("e"), reason="x", until=None, by="", now=NOW))]
    assert [r["id"] for r in sorted(rows, key=rank)] == ["c", "d", "b", "e", "a"]


@pytest.mark.parametrize("filters, expected", [
    (Filters(), ["a", "b", "c"]),
    (Filters(state="failing"), ["b"]),
    (Filters(state="paused"), ["c"]),
    (Filters(state="active"), ["a", "b"]),
    (Filters(pool="warehouse"), ["a"]),
    (Filters(kind="http_fetch"), ["b"]),
    (Filters(owner="sales"), ["a", "b", "c"]),
    (Filters(owner="nobody"), []),
    (Filters(q="SALES.ORD"), ["a", "b", "c"]),
    (Filters(q="b"), ["b"]),
])
def test_the_filters(filters, expected):
    rows = [row(job("a", pool="warehouse")),
            row(job("b", kind="http_fetch", last_run_status="failed")),
            row(paused(job("c"), reason="x", until=None, by="", now=NOW))]
    assert [r["id"] for r in rows if matches(r, filters.check())] == expected
