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


# -- data time: the watermark a sync reports ------------------------------------------

def as_of(data_age: timedelta, synced_ago: timedelta = MINUTE, **kw) -> Dataset:
    return succeeded(synced_ago, data_as_of=NOW - data_age, **kw)


@pytest.mark.parametrize(
    ("data_age", "synced_ago", "failing", "state"),
    [
        # the sync is recent: the data's own age decides
        (timedelta(hours=24) - MINUTE, MINUTE, False, "fresh"),
        (timedelta(hours=24), MINUTE, False, "warn"),
        (timedelta(hours=26) - MINUTE, MINUTE, False, "warn"),
        (timedelta(hours=26), MINUTE, False, "stale_data"),
        (timedelta(hours=40), timedelta(hours=26) - MINUTE, False, "stale_data"),
        # no sync succeeded within the requirement either: error, not stale data
        (timedelta(hours=40), timedelta(hours=26), False, "error"),
        # the newest sync failed: failing while the data is within the requirement,
        # error past it (stale data is reserved for syncs that succeed)
        (timedelta(hours=2), MINUTE, True, "failing"),
        (timedelta(hours=26), MINUTE, True, "error"),
    ],
)
def test_stale_data_is_a_succeeding_sync_with_old_data_not_a_failure(
        data_age, synced_ago, failing, state):
    failure = dict(last_failure_at=NOW, last_error="HTTP 500", consecutive_failures=1) \
        if failing else {}
    result = evaluate(as_of(data_age, synced_ago, **failure), REQ, NOW)
    assert result.state == state
    assert result.basis == "data"
    assert result.age == data_age


def test_stale_data_says_when_it_synced_and_what_the_data_is_as_of():
    ds = as_of(timedelta(hours=13), synced_ago=2 * MINUTE)  # data as of yesterday 23:00
    result = evaluate(ds, make_requirement("ads.performance", "6h", "8h"), NOW)
    assert result.reason == ("synced 2 min ago, but the data is as of yesterday 23:00 UTC "
                             "(needs < 8 h)")
    older = evaluate(as_of(timedelta(hours=37)), REQ, NOW)
    assert "the data is as of 2026-11-26 23:00 UTC" in older.reason


def test_without_a_watermark_the_basis_is_the_last_success():
    result = evaluate(succeeded(timedelta(hours=1)), REQ, NOW)
    assert (result.basis, result.data_as_of, result.age) == ("sync", None, timedelta(hours=1))


def test_a_fresh_sync_of_old_data_is_not_fresh():
    fresh_sync = evaluate(succeeded(MINUTE), REQ, NOW)
    old_data = evaluate(as_of(timedelta(hours=30)), REQ, NOW)
    assert (fresh_sync.state, old_data.state) == ("fresh", "stale_data")


def test_a_rejected_watermark_is_shown_in_the_reason():
    ds = as_of(timedelta(hours=1), watermark_issue="future",
               rejected_watermark=NOW + timedelta(days=2))
    assert "watermark rejected: 2026-11-30 12:00 UTC lies in the future" in \
        evaluate(ds, REQ, NOW).reason
    ds = as_of(timedelta(hours=1), watermark_issue="backwards",
               rejected_watermark=NOW - timedelta(days=3))
    assert "is older than the data already had" in evaluate(ds, REQ, NOW).reason


def test_stale_data_ranks_between_failing_and_error():
    assert worst(["failing", "stale_data"]) == "stale_data"
    assert worst(["stale_data", "error"]) == "error"
    assert worst(["warn", "stale_data", "fresh"]) == "stale_data"


def test_a_window_excuses_bad_states_only():
    from freshet.core.freshness import excuse

    bad = evaluate(as_of(timedelta(hours=30)), REQ, NOW)
    excused = excuse(bad, "maintenance 'vacuum' until 13:00 UTC")
    assert (excused.state, excused.excused_state) == ("maintenance", "stale_data")
    assert excused.reason.endswith("; excused: maintenance 'vacuum' until 13:00 UTC")
    fine = evaluate(succeeded(MINUTE), REQ, NOW)
    assert excuse(fine, "x") == fine
    assert worst(["fresh", "maintenance"]) == "maintenance"
    assert worst(["maintenance", "warn"]) == "warn"
