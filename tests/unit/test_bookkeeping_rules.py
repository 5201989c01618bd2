"""The pure invariants of dataset bookkeeping (the transactional versions are tested
against the emulator in tests/integration)."""

from datetime import UTC, datetime, timedelta

from freshet.core.bookkeeping import apply_failure, apply_start, apply_success
from freshet.core.models import Dataset

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
