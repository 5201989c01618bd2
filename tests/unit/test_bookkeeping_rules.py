"""The pure invariants of dataset bookkeeping (the transactional versions are tested
against the emulator in tests/integration)."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from freshet.core.bookkeeping import (
    MAX_DATA_POINTS,
    apply_failure,
    apply_start,
    apply_success,
    judge_watermark,
    with_running,
)
from freshet.core.models import Dataset, new_job

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
M = timedelta(minutes=1)


def test_failure_never_touches_last_success_at():
    ds = apply_success(Dataset(key="d"), "r1", T0, records=10)
    after = apply_failure(ds, "r2", T0 + M, "boom")
    assert after.last_success_at == T0
    assert after.last_failure_at == T0 + M
    assert after.consecutive_failures == 1
    assert after.last_error == "boom"


def test_success_never_moves_last_success_backwards():
    ds = apply_success(Dataset(key="d"), "late", T0 + 5 * M)
    ds = apply_success(ds, "early", T0)
    assert ds.last_success_at == T0 + 5 * M
    assert ds.last_success_run_id == "late"


def test_start_never_marks_success():
    ds = apply_start(Dataset(key="d"), "r1", T0)
    assert ds.last_success_at is None and ds.running


def test_consecutive_failures_count_and_reset():
    ds = Dataset(key="d")
    for i in range(3):
        ds = apply_failure(ds, f"f{i}", T0 + i * M, "x")
    assert ds.consecutive_failures == 3
    ds = apply_success(ds, "ok", T0 + 10 * M)
    assert ds.consecutive_failures == 0 and ds.last_error is None


def test_old_success_arriving_after_newer_failure_keeps_the_failure_visible():
    ds = apply_failure(Dataset(key="d"), "new-fail", T0 + 5 * M, "boom")
    ds = apply_success(ds, "old-ok", T0)
    assert ds.last_success_at == T0
    assert ds.consecutive_failures == 1 and ds.last_error == "boom"
    assert ds.failing


def test_old_failure_arriving_after_newer_success_is_ignored():
    ds = apply_success(Dataset(key="d"), "ok", T0 + 5 * M)
    ds = apply_failure(ds, "old-fail", T0, "boom")
    assert ds.consecutive_failures == 0 and ds.last_failure_at is None


def test_daily_history_counts_outcomes_and_keeps_90_days():
    ds = Dataset(key="d")
    for day in range(100):
        ds = apply_success(ds, f"r{day}", T0 + timedelta(days=day))
    ds = apply_failure(ds, "f", T0 + timedelta(days=99, minutes=1), "x")
    assert len(ds.daily) == 90
    last = (T0 + timedelta(days=99)).date().isoformat()
    assert ds.daily[last] == {"ok": 1, "fail": 1}


def test_a_finish_stamped_before_its_start_still_ends_the_run():
    """Instances' clocks disagree: attempt 1 started on a fast one, the retry finished
    on a slow one. The dataset must not say a sync is running afterwards."""
    ds = apply_start(Dataset(key="d"), "r1", T0 + M)
    ds = apply_success(ds, "r1", T0)
    assert not ds.running and ds.last_success_at == T0


def test_an_older_run_finishing_leaves_the_newer_run_running():
    ds = apply_start(Dataset(key="d"), "r1", T0)
    ds = apply_start(ds, "r2", T0 + M)
    ds = apply_success(ds, "r1", T0 + 2 * M)
    assert ds.running and ds.running_run_id == "r2"
    ds = apply_failure(ds, "r2", T0 + 3 * M, "boom")
    assert not ds.running


# -- runs for past slots (backfills, catch-up) ----------------------------------------

H = timedelta(hours=1)


def fresh_at(slot, finished):
    """A dataset whose newest success is the scheduled run of `slot`, finished then."""
    return apply_success(Dataset(key="d"), "sched", finished, slot=slot)


def test_a_backfill_of_an_old_slot_never_makes_the_dataset_look_fresher():
    ds = fresh_at(T0, T0 + 2 * M)
    after = apply_success(ds, "backfill", T0 - 40 * H, slot=T0 - 40 * H, past=True)
    assert after.last_success_at == T0 + 2 * M and after.last_success_run_id == "sched"
    assert after.daily == ds.daily  # past runs are not on the live bar


def test_a_backfill_of_a_newer_slot_counts_as_of_its_slot_not_its_finish():
    ds = fresh_at(T0 - 10 * H, T0 - 10 * H + M)  # failing since: the gap is backfilled
    after = apply_success(ds, "backfill", T0 - 2 * H, slot=T0 - 2 * H, past=True)
    assert after.last_success_at == T0 - 2 * H  # data as of its slot, whenever it finished
    assert after.last_success_slot == T0 - 2 * H and after.last_success_run_id == "backfill"


def test_a_live_run_after_a_backfill_moves_freshness_to_its_finish():
    ds = apply_success(Dataset(key="d"), "bf", T0 - 5 * H, slot=T0 - 5 * H, past=True)
    ds = apply_success(ds, "live", T0 + M, slot=T0)
    assert (ds.last_success_at, ds.last_success_slot) == (T0 + M, T0)


def test_a_failed_backfill_of_an_old_slot_is_history_not_news():
    ds = fresh_at(T0, T0 + M)
    after = apply_failure(ds, "bf", T0 + 3 * M, "boom", slot=T0 - 30 * H, past=True)
    assert not after.failing and after.consecutive_failures == 0 and after.daily == ds.daily


def test_a_failed_backfill_of_a_never_synced_dataset_says_it_fails():
    after = apply_failure(Dataset(key="d"), "bf", T0, "boom", slot=T0 - 30 * H, past=True)
    assert after.failing and after.consecutive_failures == 1


def test_live_runs_out_of_order_keep_the_old_rule_and_remember_the_newest_slot():
    ds = apply_success(Dataset(key="d"), "late-slot", T0 + 5 * M, slot=T0 + 5 * M)
    ds = apply_success(ds, "early-slot", T0 + 9 * M, slot=T0)  # overlap: finished last
    assert ds.last_success_at == T0 + 9 * M  # a live sync's data is as of its finish
    assert ds.last_success_slot == T0 + 5 * M


# -- watermarks: the time the data is current to ----------------------------------------

@pytest.mark.parametrize(
    ("current", "reported", "trusted", "issue"),
    [
        (None, None, None, None),  # nothing reported, nothing known
        (T0 - 5 * H, None, T0 - 5 * H, None),  # nothing reported: what was known stays
        (None, T0 - 2 * H, T0 - 2 * H, None),  # the first watermark
        (T0 - 5 * H, T0 - 2 * H, T0 - 2 * H, None),  # forwards
        (T0 - 2 * H, T0 - 2 * H, T0 - 2 * H, None),  # the same again
        (T0 - 2 * H, T0 - 3 * H, T0 - 2 * H, "backwards"),  # older than known: not trusted
        (T0 - 2 * H, T0 + 5 * M, T0, None),  # a clock a little ahead counts as now
        (T0 - 2 * H, T0 + 5 * M + timedelta(seconds=1), T0 - 2 * H, "future"),
        (None, T0 + 2 * H, None, "future"),
    ],
)
def test_watermark_ordering(current, reported, trusted, issue):
    assert judge_watermark(current, reported, T0) == (trusted, issue)


def test_an_untrusted_watermark_is_recorded_and_cleared_by_a_good_one():
    ds = apply_success(Dataset(key="d"), "r1", T0, watermark=T0 - 2 * H)
    ds = apply_success(ds, "r2", T0 + M, watermark=T0 - 9 * H)
    assert ds.data_as_of == T0 - 2 * H
    assert (ds.watermark_issue, ds.rejected_watermark) == ("backwards", T0 - 9 * H)
    assert ds.last_success_at == T0 + M  # the sync itself did succeed
    ds = apply_success(ds, "r3", T0 + 2 * M)  # no watermark: the issue stays on record
    assert ds.watermark_issue == "backwards"
    ds = apply_success(ds, "r4", T0 + 3 * M, watermark=T0 - H)
    assert (ds.data_as_of, ds.watermark_issue, ds.rejected_watermark) == (T0 - H, None, None)


def test_a_late_older_success_does_not_move_the_watermark():
    ds = apply_success(Dataset(key="d"), "new", T0 + 5 * M, watermark=T0)
    ds = apply_success(ds, "old", T0, watermark=T0 - 3 * H)
    assert (ds.data_as_of, ds.watermark_issue) == (T0, None)


def test_data_points_are_bounded_and_keep_the_newest_dropped_one_as_floor():
    ds = Dataset(key="d")
    for i in range(MAX_DATA_POINTS + 3):
        ds = apply_success(ds, f"r{i}", T0 + i * M, watermark=T0 - H + i * M)
    assert len(ds.data_points) == MAX_DATA_POINTS
    assert ds.data_points[-1] == {"at": T0 + (MAX_DATA_POINTS + 2) * M,
                                  "as_of": T0 - H + (MAX_DATA_POINTS + 2) * M}
    assert ds.data_floor == {"at": T0 + 2 * M, "as_of": T0 - H + 2 * M}
    assert ds.data_points[0]["at"] == T0 + 3 * M


def test_a_failure_adds_no_data_point():
    ds = apply_success(Dataset(key="d"), "r1", T0)
    ds = apply_failure(ds, "r2", T0 + M, "boom")
    assert ds.data_points == [{"at": T0, "as_of": None}]


def test_a_failure_at_the_same_instant_as_the_last_success_loses_the_tie_in_either_order():
    # Seen in the soak: a stuck verdict and the next run's success stamped the same minute.
    for first, second in ((apply_success, apply_failure), (apply_failure, apply_success)):
        ds = Dataset(key="d")
        for apply in (first, second):
            ds = (apply(ds, "ok", T0) if apply is apply_success
                  else apply(ds, "stuck", T0, "stuck"))
        assert not ds.failing and ds.consecutive_failures == 0, (first, ds)
        assert ds.daily[T0.date().isoformat()] == {"ok": 1, "fail": 1}
    # One minute on, the failure is the newest outcome again.
    ds = apply_failure(apply_success(Dataset(key="d"), "ok", T0), "f", T0 + M, "x")
    assert ds.failing and ds.consecutive_failures == 1


def _refreshing(job_id: str, run_id: str, at: datetime, produces=("d",), ended=None):
    job = new_job(id=job_id, kind="noop", schedule={"cron": "0 * * * *"},
                  produces=list(produces))
    job.refresh_run_id, job.refresh_started_at, job.refresh_ended_run_id = run_id, at, ended
    return job


def test_a_job_refreshing_its_datasets_shows_them_running_from_its_start():
    ds = apply_success(Dataset(key="d"), "r1", T0)
    [shown] = with_running([ds], [_refreshing("j", "r2", T0 + M)])
    assert shown.running_run_id == "r2" and shown.last_started_at == T0 + M
    assert shown.last_success_at == T0  # nothing else changes


def test_a_first_refresh_shows_a_dataset_no_run_has_written_yet():
    [shown] = with_running([], [_refreshing("j", "r1", T0)])
    assert shown.key == "d" and shown.running and shown.last_success_at is None


def test_an_ended_mark_or_one_older_than_the_recorded_start_is_not_running():
    ds = replace(Dataset(key="d"), last_started_at=T0 + 2 * M)
    assert with_running([ds], [_refreshing("j", "r1", T0, ended="r1")]) == [ds]
    assert with_running([ds], [_refreshing("j", "r1", T0 + M)]) == [ds]  # r2 started since


def test_of_two_jobs_refreshing_a_dataset_the_newest_start_shows():
    jobs = [_refreshing("a", "ra", T0 + M), _refreshing("b", "rb", T0 + 2 * M)]
    [shown] = with_running([Dataset(key="d")], jobs)
    assert shown.running_run_id == "rb" and shown.last_started_at == T0 + 2 * M
