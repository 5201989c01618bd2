"""The soak, short: 50 one-minute jobs for 3 simulated minutes, 10 % of syncs failing
and 1 % hanging, 2 % of tasks delivered twice (bench/bench_soak.py has the details
and the full 500 x 10 run)."""

import pytest

from bench.bench_soak import soak

pytestmark = pytest.mark.slow


def test_a_short_soak_loses_nothing_and_keeps_every_invariant(db):
    figures = soak(db, jobs=50, minutes=3, seed=11)
    assert figures["soak_lost"] == 0
    assert figures["soak_duplicate_slots"] == 0
    assert figures["soak_invariant_violations"] == 0
    assert figures["soak_started"] == 150
    assert figures["soak_succeeded"] + figures["soak_failed"] == 150
    assert figures["soak_retried"] > 0 and figures["soak_duplicate_deliveries"] > 0


def test_a_soak_with_many_failures_and_duplicates_runs_no_attempt_twice(db):
    figures = soak(db, jobs=30, minutes=2, fail_rate=0.5, hang_rate=0.0, dup_rate=0.5, seed=3)
    assert figures["soak_lost"] == 0 and figures["soak_duplicate_slots"] == 0
    assert figures["soak_attempts_run_twice"] == 0
