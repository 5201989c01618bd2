from datetime import UTC, datetime, timedelta

import pytest

from freshet.core.freshness import Requirement, evaluate, make_requirement, worst
from freshet.core.models import Dataset

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
REQ = Requirement("ads.performance", timedelta(hours=24), timedelta(hours=26))
MINUTE = timedelta(minutes=1)


def succeeded(ago: timedelta, **kw) -> Dataset:
    return Dataset(key="ads.performance", last_started_at=NOW - ago - MINUTE,
                   last_success_at=NOW - ago, **kw)


@pytest.mark.parametrize(
    ("age", "state"),
    [
        (timedelta(hours=24) - MINUTE, "fresh"),
        (timedelta(hours=24), "warn"),
        (timedelta(hours=24) + MINUTE, "warn"),
        (timedelta(hours=26) - MINUTE, "warn"),
        (timedelta(hours=26), "error"),
        (timedelta(hours=26) + MINUTE, "error"),
    ],
)
def test_state_at_each_threshold_boundary(age, state):
    assert evaluate(succeeded(age), REQ, NOW).state == state


def test_error_reason_says_age_and_need():
    result = evaluate(succeeded(timedelta(hours=27)), REQ, NOW)
    assert result.reason == "last success 27 h ago; needs < 26 h"


def test_never_synced_is_unknown():
    assert evaluate(None, REQ, NOW).state == "unknown"
    assert evaluate(Dataset(key="x"), REQ, NOW).state == "unknown"


def test_first_sync_in_progress_is_running():
    ds = Dataset(key="x", last_started_at=NOW - MINUTE, running_run_id="r1")
    assert evaluate(ds, REQ, NOW).state == "running"


def test_never_succeeded_and_failed_is_failing_with_the_error():
    ds = Dataset(key="x", last_failure_at=NOW - MINUTE, last_error="HTTP 500",
                 consecutive_failures=2)
    result = evaluate(ds, REQ, NOW)
    assert result.state == "failing"
    assert "the last 2 syncs failed: HTTP 500" in result.reason


def test_recent_failure_within_sla_is_failing_not_fresh():
    ds = succeeded(timedelta(hours=1), last_failure_at=NOW - MINUTE, last_error="boom",
                   consecutive_failures=1)
    result = evaluate(ds, REQ, NOW)
    assert result.state == "failing"
    assert "the last sync failed: boom" in result.reason


def test_stale_and_failing_is_error_and_names_the_failure():
    ds = succeeded(timedelta(hours=27), last_failure_at=NOW - MINUTE, last_error="timeout",
                   consecutive_failures=3)
    result = evaluate(ds, REQ, NOW)
    assert result.state == "error"
    assert result.reason == "last success 27 h ago; needs < 26 h; the last 3 syncs failed: timeout"


def test_refresh_in_progress_past_warn_is_running():
    ds = succeeded(timedelta(hours=25))
    ds.last_started_at, ds.running_run_id = NOW - MINUTE, "r2"
    assert evaluate(ds, REQ, NOW).state == "running"


def test_refresh_in_progress_within_warn_stays_fresh():
    ds = succeeded(timedelta(hours=1))
    ds.last_started_at, ds.running_run_id = NOW - MINUTE, "r2"
    assert evaluate(ds, REQ, NOW).state == "fresh"


def test_old_failure_before_success_does_not_count():
    ds = succeeded(timedelta(hours=1), last_failure_at=NOW - timedelta(hours=2))
    assert evaluate(ds, REQ, NOW).state == "fresh"


def test_requirement_refuses_warn_longer_than_error():
    with pytest.raises(ValueError, match="warn_after"):
        make_requirement("x", "27h", "26h")


def test_worst_picks_the_most_severe():
    assert worst(["fresh", "warn", "running"]) == "warn"
    assert worst(["fresh", "error", "failing"]) == "error"
    assert worst([]) == "fresh"
