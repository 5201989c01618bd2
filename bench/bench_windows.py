"""Maintenance windows at their worst allowed: what judging them costs (no emulator).

    python bench/bench_windows.py        # prints and returns the figures

The worst windows the config accepts (core.windows.check_windows) start every minute
(the most starts a cron has) in a timezone with DST, as long as the 48 h a week cap
lets three of them be: 5 s each (3 x 5 s x 10,080 starts = 42 h). Before issue 20
such a window could last 31 days, and each question walked up to 20,000 starts.

window_at_worst_us              one "which occurrence is in force now?" (Window.at: one
                                reverse cron step), median over 2,000 instants
deadline_judge_worst_ms         judging one late deadline whose data is a day behind,
                                against the three worst windows (none covers it, so
                                every window is asked), median over 200 deadlines
deadline_judge_worst_s_200      200 such judgements (a catch-up pass), the windows' part
window_check_worst_ms           the config's check of the three (smallest gap, busiest
                                7 days), once, uncached
"""

import statistics
import time
from datetime import UTC, datetime, timedelta

import common  # noqa: F401  (import paths)

from freshet.core import windows as windows_module
from freshet.core.catalog import Requirement
from freshet.core.deadlines import Deadline, Item, Verdict, judge
from freshet.core.schedules import slot_at_or_before
from freshet.core.windows import Maintenance, check_windows, make_window

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
DEADLINES = 200


def worst_windows() -> list:
    return [make_window({"id": f"w{i}", "cron": "* * * * *", "duration": "5s",
                         "timezone": "Europe/London", "scope": {"jobs": ["elsewhere"]}},
                        f"maintenance[{i}]") for i in range(3)]


def _window_at_us(windows: list) -> float:
    slot_at_or_before.cache_clear()
    samples = []
    for i in range(2000):
        when = NOW + timedelta(seconds=7 * i + 0.5)
        started = time.perf_counter()
        windows[i % 3].at(when)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e6


def _judge_ms(windows: list) -> tuple[float, float]:
    slot_at_or_before.cache_clear()
    maintenance = Maintenance(tuple(windows))
    deadline = Deadline(by="0 7 * * *", datasets=("sales.orders",))
    item = Item(key="sales.orders", title="Orders", dataset=None,
                requirement=Requirement("sales.orders", timedelta(hours=24),
                                        timedelta(days=1)))
    samples = []
    for d in range(DEADLINES):
        due = NOW - timedelta(minutes=d, seconds=13)
        started = time.perf_counter()
        verdict = judge(deadline, due, [item], maintenance, lambda w, _item: False)
        samples.append(time.perf_counter() - started)
        assert verdict.verdict == Verdict.MISSED
    return statistics.median(samples) * 1e3, sum(samples)


def _check_ms() -> float:
    windows_module._starts.cache_clear()
    started = time.perf_counter()
    check_windows(worst_windows())  # make_window checks each gap, then the week
    return (time.perf_counter() - started) * 1e3


def run() -> dict:
    windows = worst_windows()
    at_us = _window_at_us(windows)
    judge_ms, judge_total = _judge_ms(windows)
    figures = {
        "window_at_worst_us": round(at_us, 1),
        "deadline_judge_worst_ms": round(judge_ms, 2),
        "deadline_judge_worst_s_200": round(judge_total, 3),
        "window_check_worst_ms": round(_check_ms(), 1),
    }
    for name, value in figures.items():
        print(f"{name:32} {value}")
    return figures


if __name__ == "__main__":
    run()
