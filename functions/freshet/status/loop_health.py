"""Is the control loop itself alive? From settings/heartbeat, which scheduler_tick and
recover_stuck_runs write each time they run. Pure: a document and `now` in."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from freshet.core.timeutil import human_duration, to_utc

# Cloud Scheduler ticks every minute and sweeps every 5: allow one missed call each.
TICK_LATE_AFTER = timedelta(minutes=3)
SWEEP_LATE_AFTER = timedelta(minutes=11)


@dataclass(frozen=True)
class LoopHealth:
    ok: bool
    message: str
    last_tick_at: datetime | None = None
    last_sweep_at: datetime | None = None
    overdue_jobs: tuple[str, ...] = ()


def loop_health(heartbeats: dict, now: datetime) -> LoopHealth:
    tick = heartbeats.get("tick") or {}
    sweep = heartbeats.get("recover") or {}
    tick_at, sweep_at = to_utc(tick.get("at")), to_utc(sweep.get("at"))
    overdue = tuple(sweep.get("not_ticking") or ())
    problems = []
    if tick_at is None:
        problems.append("the scheduler has never ticked")
    elif now - tick_at > TICK_LATE_AFTER:
        problems.append(f"the scheduler last ticked {human_duration(now - tick_at)} ago")
    if sweep_at is not None and now - sweep_at > SWEEP_LATE_AFTER:
        problems.append(f"stuck-run recovery last ran {human_duration(now - sweep_at)} ago")
    if overdue:
        problems.append(f"{len(overdue)} job(s) are overdue: {', '.join(overdue[:5])}")
    if problems:
        return LoopHealth(False, "Control loop: " + "; ".join(problems) + ".", tick_at,
                          sweep_at, overdue)
    said = f"last tick {human_duration(now - tick_at)} ago"
    if sweep_at is not None:
        said += f", last recovery sweep {human_duration(now - sweep_at)} ago"
    return LoopHealth(True, f"Control loop running ({said}).", tick_at, sweep_at)
