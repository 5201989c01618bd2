"""What Freshet costs a month on Google Cloud, derived from the other benchmarks' figures.

    python bench/run_all.py            # derives it after every benchmark has run

cost_usd_month_1k_hourly_5k_datasets
    1,000 hourly jobs (spread over the hour), each producing 5 of 5,000 datasets, 200
    consumers (their pages rewritten when their states change), the
    default control schedules (tick every minute, sweep and publish every 5 minutes)
    and function sizes, priced by freshet/ops/prices.yaml with `freshet cost`'s model
    and default assumptions (2 % of attempts retried, 1 s syncs, runs kept 90 days).
    Target: under $10 for the control plane. cost_usd_month_<service> break it down;
    cost_usd_month_syncs is the syncs' own compute inside run_task (the user's, as under
    any orchestrator), reported beside the total, not in it.

herd_10k_start_s_modelled
    seconds from the slot until the last of 10,000 runs due at it has started, modelled
    from the shipped defaults (the default pool's queue rate and concurrency, run_task's
    instances and concurrency), a run_task call of ops_run_s + a 1 s sync, Cloud Tasks'
    500/50/5 ramp and one cold start (freshet.core.herd.herd_start; docs/scale.md).
    Target: within 60 s.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402,F401  (import paths)

JOBS, DATASETS_PER_JOB = 1000, 5


def run() -> dict:
    return {}  # nothing to measure: derive() works on the others' figures


def derive(results: dict) -> dict:
    import yaml

    from freshet.core.schedules import make_schedule
    from freshet.core.specs import (
        DEFAULT_CONTROL_SCHEDULES,
        DEFAULT_FUNCTION_LIMITS,
        QueueSpec,
    )
    from freshet.ops import cost

    jobs = [cost.JobLoad(make_schedule(cron=f"{i % 60} * * * *", timezone="UTC"),
                         DATASETS_PER_JOB) for i in range(JOBS)]
    control = [(make_schedule(cron=s.cron, timezone=s.timezone), s.target)
               for s in DEFAULT_CONTROL_SCHEDULES]
    assumptions = cost.Assumptions()
    from bench_status import CONSUMERS  # the consumers bench_status's site has

    load = cost.workload(jobs, control, datasets=JOBS * DATASETS_PER_JOB,
                         fanout_above=assumptions.fanout_above,
                         memory=DEFAULT_FUNCTION_LIMITS, consumers=CONSUMERS)
    prices_file = Path(cost.__file__).with_name("prices.yaml")
    prices = cost.Prices.from_doc(yaml.safe_load(prices_file.read_text()))
    estimate = cost.estimate(load, cost.Measured.from_results(results), prices, assumptions)
    figures = {"cost_usd_month_1k_hourly_5k_datasets": round(estimate.total, 2)}
    for service, usd in estimate.by_service().items():
        figures[f"cost_usd_month_{service.lower().replace(' ', '_')}"] = round(usd, 2)
    figures["cost_usd_month_syncs"] = round(estimate.sync_total, 2)
    measured = cost.Measured.from_results(results)
    start = cost.herd_start(10_000, queue=QueueSpec(name="freshet-runs"),
                            run_task=DEFAULT_FUNCTION_LIMITS["run_task"],
                            call_s=measured.run_s + assumptions.sync_s, lookahead_s=60)
    figures["herd_10k_start_s_modelled"] = round(start.start_s, 1)
    return figures


if __name__ == "__main__":
    import json

    saved = json.loads((Path(__file__).parent / "results.json").read_text())["results"]
    print(json.dumps(derive(saved), indent=2))
