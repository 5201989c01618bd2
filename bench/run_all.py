"""`make bench`: every benchmark, one table, and bench/results.json.

    python bench/run_all.py [bench_loop ...]   # only these; the others' figures are kept

Each bench/bench_*.py module exposes run() -> dict of figures, and may expose
derive(results) -> dict, called once every module has run, for figures computed from
the others' (bench_cost's monthly bill). Figures are medians of repeated rounds where
a benchmark repeats; compare ratios measured in one run, as these machines are noisy.
"""

import importlib
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The copy the package carries for `freshet cost` (tests/ops/test_cost.py keeps it equal).
PACKAGED = HERE.parent / "functions" / "freshet" / "ops" / "measured.json"
sys.path.insert(0, str(HERE))

import common  # noqa: E402,F401  (import paths)

TARGETS = {
    "tick_job_reads_20k_200due": "≈ 200",
    "tick_time_ratio_20k_vs_2k": "≤ 1.3",
    "commits_per_run": "≤ 4",
    "page_build_s_5k": "< 1.5 s",
    "page_html_bytes_5k": "< 2 MB",
    "recovery_sweep_reads_10k_100stuck": "≤ 300",
    "soak_duplicated": "0",
    "soak_lost": "0",
    "page_publish_reads_steady_5k": "≤ 100 + changed",
    "page_publish_s_steady_5k": "< 10 s",
    "page_publish_writes_idle_5k": "0",
    "page_publish_reads_idle_5k": "≤ 5",
    "herd_10k_runs_created": "10000",
    "herd_10k_duplicates": "0",
    "cost_usd_month_1k_hourly_5k_datasets": "< $10",
    "console_overview_s_1k_jobs": "< 1 s",
    "console_render_s_1k_rows": "< 1 s",
    "external_submit_duplicates_20_deliveries": "0",
    "external_polls_per_run_10min": "≈ 8",
}


def main(names: list[str]) -> int:
    modules = names or sorted(p.stem for p in HERE.glob("bench_*.py"))
    results: dict[str, object] = {}
    saved = HERE / "results.json"
    if names and saved.exists():  # rerunning some: keep the others' last figures
        results.update(json.loads(saved.read_text())["results"])
    for name in modules:
        started = time.perf_counter()
        print(f"running {name} ...", flush=True)
        figures = importlib.import_module(name).run()
        results.update(figures)
        print(f"  done in {time.perf_counter() - started:.0f} s", flush=True)
    for name in sorted(p.stem for p in HERE.glob("bench_*.py")):
        derive = getattr(importlib.import_module(name), "derive", None)
        if derive is not None:
            results.update(derive(results))
    print()
    print(f"{'figure':40} {'value':>14}  target")
    print(f"{'-' * 40} {'-' * 14}  ------")
    for key, value in results.items():
        print(f"{key:40} {value!s:>14}  {TARGETS.get(key, '')}")
    out = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count()},
        "results": results,
    }
    saved.write_text(json.dumps(out, indent=2) + "\n")
    # `freshet cost` reads the package's copy: the product never reads the work tree.
    PACKAGED.write_text(saved.read_text())
    print(f"\nwritten to {saved} and {PACKAGED}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
