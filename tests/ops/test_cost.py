"""freshet cost: the workload counted from schedules, the arithmetic of the estimate,
its refusal of missing figures, and the command's table."""

import json
from pathlib import Path

import pytest
import yaml

from freshet.core.errors import ValidationError
from freshet.core.schedules import make_schedule
from freshet.ops import cost
from freshet.ops.cli import main
from tests.ops.helpers import PIPELINE, write_config

PRICES = cost.Prices.from_doc(yaml.safe_load(
    (Path(cost.__file__).with_name("prices.yaml")).read_text()))
HOURLY = make_schedule(cron="0 * * * *", timezone="UTC")
CONTROL = [(make_schedule(cron="* * * * *", timezone="UTC"), "scheduler_tick"),
           (make_schedule(cron="*/5 * * * *", timezone="UTC"), "recover_stuck_runs"),
           (make_schedule(cron="*/5 * * * *", timezone="UTC"), "publish_status")]
FIGURES = {figure: 1.0 for figure in cost.Measured.FIGURES.values()}


def measured(**changes) -> cost.Measured:
    return cost.Measured.from_results({**FIGURES, **{cost.Measured.FIGURES[k]: v
                                                     for k, v in changes.items()}})


@pytest.mark.parametrize("cron,zone,runs", [
    ("0 * * * *", "UTC", 720), ("*/5 * * * *", "UTC", 8640), ("* * * * *", "UTC", 43200),
    ("15 6 * * 1-5", "Europe/London", 22), ("30 2 * * *", "America/New_York", 30),
])
def test_runs_a_month_are_the_schedules_slots_in_30_days(cron, zone, runs):
    assert len(cost.slots_in_month(make_schedule(cron=cron, timezone=zone))) == runs


def test_the_workload_counts_runs_datasets_control_calls_and_herds():
    spread = [cost.JobLoad(make_schedule(cron=f"{i % 60} * * * *"), 5) for i in range(120)]
    load = cost.workload(spread, CONTROL, datasets=600, fanout_above=100)
    assert (load.runs, load.dataset_runs, load.datasets_per_run) == (86_400, 432_000, 5)
    assert (load.ticks, load.sweeps, load.publishes, load.scheduler_jobs) == (
        43_200, 8_640, 8_640, 3)
    assert load.herds == 0  # two jobs a minute
    herd = cost.workload([cost.JobLoad(HOURLY, 1)] * 101, CONTROL, datasets=101,
                         fanout_above=100)
    assert herd.herds == 720  # 101 due at the top of every hour: one fan-out each


def test_a_publish_reads_a_runs_job_the_run_and_its_datasets_group():
    """A run changes its job, itself and the group its datasets are kept in (one for up
    to 16 datasets, core.groups), not each dataset."""
    five = cost.workload([cost.JobLoad(HOURLY, 5)] * 120, CONTROL, datasets=600,
                         fanout_above=10_000)
    assert five.groups_per_run == 1
    assert five.changed_per_publish() == 10 + 10 + 10  # 120 runs an hour, 12 publishes
    many = cost.workload([cost.JobLoad(HOURLY, 40)] * 120, CONTROL, datasets=4800,
                         fanout_above=10_000)
    assert many.groups_per_run == 3 and many.changed_per_publish() == 10 + 10 + 30


def test_an_estimate_is_the_measured_counts_times_the_prices_past_the_free_tier():
    load = cost.workload([cost.JobLoad(HOURLY, 1)] * 1000, CONTROL, datasets=1000,
                         fanout_above=10_000)
    m = measured(run_reads_1ds=10, run_writes_1ds=6, run_tasks=1, tick_idle_reads=3,
                 tick_idle_writes=1, sweep_idle_reads=2, sweep_idle_writes=1,
                 publish_reads_idle_5k=5,
                 publish_reads_hour_median=cost.PUBLISH_FIXED_READS + cost.MODEL_CHUNKS_5K
                 + 252 * 1.5, publish_writes_hour_median=8)
    est = cost.estimate(load, m, PRICES, cost.Assumptions(retry_rate=0))
    lines = {(line.service, line.item.split(" (")[0]): line for line in est.lines}
    reads = lines[("Firestore", "document reads")]
    assert m.reads_per_changed() == pytest.approx(1.5)
    publish_reads = m.publish_reads_fixed(2000) + load.changed_per_publish() * 1.5
    # (+ 43,200 * 1: each tick reads the observe ledger; with nothing observed a pass
    # an hour reads the catalog too, and writes the ledger: 720 * (1 - 1) more reads)
    assert reads.quantity == pytest.approx(720_000 * 10 + 43_200 * 3 + 8_640 * 2
                                           + 8_640 * publish_reads + 43_200 * 1)
    assert reads.free == 1_500_000  # 50,000 a day for 30 days
    assert reads.usd == pytest.approx((reads.quantity - 1_500_000) * 0.03 / 1e5)
    tasks = lines[("Cloud Tasks", "operations")]
    assert tasks.quantity == 720_000 * 2  # a create and a delivery each
    assert tasks.usd == pytest.approx((1_440_000 - 1_000_000) * 0.40 / 1e6)
    assert lines[("Cloud Scheduler", "jobs")].usd == 0  # three jobs are free
    assert est.total == pytest.approx(sum(line.usd for line in est.lines))


def test_retries_add_their_attempts_and_a_sync_is_the_users_compute_beside_the_total():
    load = cost.workload([cost.JobLoad(HOURLY, 1)] * 1000, CONTROL, datasets=1000,
                         fanout_above=10_000)
    quiet = cost.estimate(load, measured(), PRICES, cost.Assumptions(retry_rate=0))
    flaky = cost.estimate(load, measured(), PRICES, cost.Assumptions(retry_rate=0.5))
    slow = cost.estimate(load, measured(), PRICES, cost.Assumptions(retry_rate=0, sync_s=60))
    quiet_calls, flaky_calls = (next(x for x in e.lines if x.item == "requests").quantity
                                for e in (quiet, flaky))
    assert flaky_calls - quiet_calls == pytest.approx(720_000)  # half the attempts fail
    # A minute-long sync costs the user more, never the control plane.
    assert slow.sync_total > quiet.sync_total
    assert slow.total == pytest.approx(quiet.total)
    assert all(line not in slow.lines for line in slow.sync_lines)


def test_a_waiting_runs_polls_are_each_a_task_a_call_and_the_measured_reads_and_writes():
    plain = cost.workload([cost.JobLoad(HOURLY, 1)] * 10, CONTROL, datasets=10,
                          fanout_above=10_000)
    waits = cost.workload([cost.JobLoad(HOURLY, 1, polls=8)] * 10, CONTROL, datasets=10,
                          fanout_above=10_000)
    assert (plain.polls, waits.polls) == (0, 7200 * 8)

    def counts(load):
        est = cost.estimate(load, measured(), PRICES, cost.Assumptions(retry_rate=0))
        return {line.item.split(" (")[0]: line.quantity for line in est.lines}

    more = {k: counts(waits)[k] - v for k, v in counts(plain).items()}
    assert more["document reads"] == more["document writes"] == more["requests"] == 57_600
    assert more["operations"] == 2 * 57_600  # a task: created, delivered


def test_syncs_use_what_the_control_plane_leaves_of_the_free_tier():
    load = cost.workload([cost.JobLoad(HOURLY, 1)] * 10, CONTROL, datasets=10,
                         fanout_above=10_000)
    est = cost.estimate(load, measured(run_s=0.1), PRICES, cost.Assumptions(sync_s=1))
    vcpu = next(x for x in est.sync_lines if x.item.startswith("vCPU"))
    assert vcpu.quantity > 0 and vcpu.usd == 0  # 7,200 syncs fit the free tier


def test_the_ttl_deletes_one_run_per_run_created_and_has_no_free_tier():
    load = cost.workload([cost.JobLoad(HOURLY, 1)] * 1000, CONTROL, datasets=1000,
                         fanout_above=10_000)
    est = cost.estimate(load, measured(), PRICES, cost.Assumptions(retry_rate=0.5))
    deletes = next(x for x in est.lines if x.item.startswith("TTL deletes"))
    assert deletes.quantity == 720_000 and deletes.free == 0
    assert deletes.usd == pytest.approx(720_000 * 0.01 / 1e5)


def test_the_sites_files_are_every_publishs_fixed_files_and_each_turned_datasets():
    spread = [cost.JobLoad(make_schedule(cron=f"{i % 60} * * * *"), 5) for i in range(1000)]
    load = cost.workload(spread, CONTROL, datasets=5000, fanout_above=100)
    m = measured(publish_reads_idle_5k=65, publish_reads_hour_median=700,
                 publish_writes_hour_median=6, publish_files_fixed=3, files_per_turn=4.5)

    def files(assumed: cost.Assumptions) -> float:
        est = cost.estimate(load, m, PRICES, assumed)
        return next(x for x in est.lines if x.item.startswith("class A")).quantity

    # 720,000 runs of 5 datasets; 1 % fail for good, each turning its 5 datasets twice
    assert cost.turns(load, cost.Assumptions()) == pytest.approx(720_000 * 5 * 0.01 * 2)
    assert files(cost.Assumptions()) == pytest.approx(8_640 * 3 + 72_000 * 4.5)
    # nothing failing: only what shows the moment; twice the failures: twice the turns
    assert files(cost.Assumptions(failure_rate=0)) == pytest.approx(8_640 * 3)
    assert files(cost.Assumptions(failure_rate=0.02)) == pytest.approx(8_640 * 3
                                                                       + 144_000 * 4.5)
    # The benchmark's workload changes what it measured: 84 jobs, runs and 420 datasets.
    assert load.changed_per_publish() == pytest.approx(cost.Measured.SCALE_CHANGED, rel=0.01)


@pytest.mark.parametrize("rate", [-0.01, 1.01])
def test_a_failure_rate_outside_0_to_1_is_refused_by_name(rate):
    with pytest.raises(ValidationError) as caught:
        cost.Assumptions(failure_rate=rate)
    assert caught.value.field == "failure_rate"


def test_a_missing_figure_is_named():
    with pytest.raises(ValidationError) as caught:
        cost.Measured.from_results({k: v for k, v in FIGURES.items()
                                    if k != "ops_run_reads_5ds"})
    assert caught.value.field == "ops_run_reads_5ds"


def test_stored_bytes_follow_googles_formula():
    # https://cloud.google.com/firestore/docs/storage-size: a document of 4 fields.
    doc = {"type": "Personal", "done": False, "priority": 1,
           "description": "Learn Cloud Firestore"}
    name = 6 + 11 + 16  # "tasks", "my_task_id", 16
    fields = 14 + 6 + 17 + 34
    entries = sum(2 * (name + len(k) + 1 + cost.value_size(v) + 32) for k, v in doc.items())
    assert cost.stored_bytes("tasks", "my_task_id", doc) == name + fields + 32 + entries


def test_freshet_cost_prints_a_table_a_total_and_the_composer_comparison(tmp_path, capsys):
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"measured_at": "2026-11-29", "results": FIGURES}))
    config = write_config(tmp_path)
    assert main(["cost", "--config", str(config), "--measured", str(results)]) == 0
    out = capsys.readouterr().out
    for text in ("Firestore", "Cloud Tasks", "Cloud Run functions", "Cloud Scheduler",
                 "Cloud Storage", "Total: $", "Cloud Composer", "as of 2026-11-29"):
        assert text in out, text


def test_freshet_cost_keeps_runs_as_long_as_the_configs_retention_says(tmp_path, capsys):
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"measured_at": "2026-11-29", "results": FIGURES}))
    config = write_config(tmp_path, PIPELINE + "retention: {runs_days: 30}\n")
    assert main(["cost", "--config", str(config), "--measured", str(results)]) == 0
    assert "storage (30 days of runs)" in capsys.readouterr().out
    assert main(["cost", "--config", str(config), "--measured", str(results),
                 "--run-retention-days", "7"]) == 0
    assert "storage (7 days of runs)" in capsys.readouterr().out


def test_freshet_cost_without_measured_figures_says_so_in_one_line(tmp_path, capsys):
    config = write_config(tmp_path)
    code = main(["cost", "--config", str(config), "--measured", str(tmp_path / "none.json")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "make bench" in err


def test_the_committed_benchmark_figures_are_what_freshet_cost_and_the_readme_use():
    """`freshet cost` reads bench/results.json by default: it must hold every figure the
    estimate multiplies, the stored monthly figure must be the one those figures give,
    and docs/benchmarks.md (linked from the README) must state it."""
    from bench import bench_cost

    root = Path(__file__).resolve().parents[2]
    saved = json.loads((root / "bench" / "results.json").read_text())["results"]
    cost.Measured.from_results(saved)  # names the first missing figure
    figure = "cost_usd_month_1k_hourly_5k_datasets"
    assert bench_cost.derive(saved)[figure] == saved[figure]
    assert f"${saved[figure]:.2f}" in (root / "docs" / "benchmarks.md").read_text()


def test_observations_are_counted_tables_get_free_listings_and_sql_billed():
    from datetime import timedelta

    from freshet.core.observe import ObserveKind, ObserveSpec

    five = timedelta(minutes=5)
    specs = [ObserveSpec(ObserveKind.BIGQUERY_TABLE, f"p-roj1.d.t{i}", five)
             for i in range(1000)]
    specs += [ObserveSpec(ObserveKind.GCS_PREFIX, "gs://bkt/drop/", five),
              ObserveSpec(ObserveKind.BIGQUERY_SQL, "select 1", timedelta(hours=1), 2 ** 30)]
    load = cost.workload([], CONTROL, datasets=1002, fanout_above=100, observed=specs)
    seen = load.observed
    assert (seen.passes, seen.tables, seen.listings, seen.queries) == (
        8_640, 8_640_000, 8_640, 720)
    m = measured(observe_tick_reads=1, observe_pass_reads=2, observe_pass_s_1k=7,
                 tick_idle_reads=0, sweep_idle_reads=0, publish_reads_idle_5k=0,
                 publish_reads_hour_median=0)
    est = cost.estimate(load, m, PRICES, cost.Assumptions(observed_changes_per_day=24))
    lines = {(line.service, line.item.split(" (")[0]): line for line in est.lines}
    assert lines[("BigQuery", "tables.get")].usd == 0
    (listed,) = [x for x in est.lines if x.item.endswith("(observed prefixes listed)")]
    assert listed.quantity == 8_640 and listed.usd == pytest.approx(8_640 * 0.005 / 1000)
    sql = lines[("BigQuery", "observation SQL")]
    assert sql.quantity == pytest.approx(720 / 1024) and sql.usd == 0  # under 1 TiB free
    changes = 1002 * 24 * 30
    reads = lines[("Firestore", "document reads")].quantity
    assert reads >= 43_200 * 1 + 8_640 * 1 + changes
    bare = cost.estimate(cost.workload([], CONTROL, datasets=1002, fanout_above=100), m,
                         PRICES, cost.Assumptions())
    assert est.total > bare.total
