"""What a job usually takes and how late it usually starts: bounded, percentile, updated
with each success (core.timing, core.lifecycle.decide_finish)."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from freshet.core import runs, timing
from freshet.core.lifecycle import SyncOutcome, decide_finish
from freshet.core.models import new_job
from freshet.core.settings import load_settings

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
SETTINGS = load_settings({})


@pytest.mark.parametrize(
    ("samples", "p95"),
    [([], None), ([7.0], 7.0), ([1, 2, 3], 3), (list(range(1, 21)), 19),
     (list(range(1, 101)), 95)],
)
def test_p95_is_the_nearest_rank(samples, p95):
    assert timing.p95(samples) == p95


def test_samples_are_bounded_oldest_first():
    samples: list[float] = []
    for i in range(timing.MAX_SAMPLES + 5):
        samples = timing.remember(samples, i)
    assert samples == [float(i) for i in range(5, timing.MAX_SAMPLES + 5)]


def test_usual_start_lag_defaults_then_learns_with_a_floor():
    job = new_job(id="j", kind="noop", schedule={"cron": "0 5 * * *"})
    assert timing.usual_start_lag(job) == timing.DEFAULT_START_LAG
    assert timing.usual_start_lag(replace(job, recent_start_lags_s=[1.0, 2.0])) == MIN
    assert timing.usual_start_lag(replace(job, recent_start_lags_s=[90.0] * 3)) == \
        timedelta(seconds=90)


def test_a_successful_scheduled_run_records_its_duration_and_start_lag():
    job = new_job(id="j", kind="noop", schedule={"cron": "0 * * * *"}, produces=["d"])
    run = runs.new_run(job, "j__1", T0, source="schedule", now=T0 - MIN, settings=SETTINGS)
    run = runs.started(run, 1, T0 + 30 * timedelta(seconds=1), 30 * MIN)
    run = runs.retrying(run, T0 + MIN, "503", 10 * MIN)
    run = runs.started(run, 2, T0 + 2 * MIN, 30 * MIN)
    decision = decide_finish(run, 2, job, SyncOutcome(records={"d": 1}), T0 + 5 * MIN,
                             SETTINGS)
    # the duration is the successful attempt's; the lag is the first attempt's start
    assert decision.job_fields["recent_durations_s"] == [180.0]
    assert decision.job_fields["recent_start_lags_s"] == [30.0]


def test_a_manual_run_records_no_start_lag():
    job = new_job(id="j", kind="noop", schedule={"cron": "0 * * * *"})
    run = runs.new_run(job, "j__m", T0, source="manual", now=T0, settings=SETTINGS)
    run = runs.started(run, 1, T0, 30 * MIN)
    fields = decide_finish(run, 1, job, SyncOutcome(records={}), T0 + MIN, SETTINGS).job_fields
    assert "recent_start_lags_s" not in fields and fields["recent_durations_s"] == [60.0]


def test_a_finish_carries_the_watermarks_to_the_run_and_the_datasets():
    job = new_job(id="j", kind="noop", schedule={"cron": "0 * * * *"}, produces=["d"])
    run = runs.started(runs.new_run(job, "j__1", T0, source="schedule", now=T0,
                                    settings=SETTINGS), 1, T0, 30 * MIN)
    mark = T0 - 6 * timedelta(hours=1)
    decision = decide_finish(run, 1, job, SyncOutcome(records={"d": 3}, watermarks={"d": mark}),
                             T0 + MIN, SETTINGS)
    assert decision.run.watermarks == {"d": mark}
    from freshet.core.models import Dataset
    assert decision.datasets.apply(Dataset(key="d")).data_as_of == mark
