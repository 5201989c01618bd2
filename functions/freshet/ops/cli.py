"""The `freshet` command: operate a pipeline from a terminal.

    freshet jobs list|show|run|pause|resume|archive     freshet runs list|show
    freshet doctor [--config FILE]                      (checks a deployment)
    freshet datasets      freshet status                freshet apply [--dry-run]
    freshet backfill JOB --from T1 --to T2 [--dry-run] [--max-parallel N] [--rerun]
    freshet backfill status [ID]    freshet backfill cancel ID
    freshet incident open|note|resolve|list|show        freshet cost [--config FILE]
    freshet site build    freshet demo

It talks to Firestore directly (the emulator when FIRESTORE_EMULATOR_HOST is set).
A user error is one line on stderr and exit code 2; nothing prints a traceback
(FRESHET_DEBUG=1 shows one for a bug).
"""

import argparse
import os
import socket
import sys
import traceback
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from freshet.core.errors import FreshetError
from freshet.core.text import one_line, printable, shorten

DEFAULT_CONFIG = "infra/pipeline.yaml"
EXIT_USER_ERROR = 2


class UserError(Exception):
    """Something the user can fix; printed as one line."""


def say(message: str = "") -> None:
    print(printable(message), flush=True)


def progress(message: str) -> None:
    print(printable(message), file=sys.stderr, flush=True)


# -- output helpers ----------------------------------------------------------------------

def table(headers: Sequence[str], rows: Sequence[Sequence[object]], width: int = 48) -> str:
    """Left-aligned columns, cells cut at `width` characters, a rule under the header."""
    def cell(value: object) -> str:
        return "-" if value is None or value == "" else shorten(one_line(str(value)), width)

    cells = [[cell(v) for v in row] for row in rows]
    sizes = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(sizes[i]) for i, h in enumerate(headers)).rstrip(),
             "  ".join("-" * s for s in sizes)]
    lines += ["  ".join(v.ljust(sizes[i]) for i, v in enumerate(r)).rstrip() for r in cells]
    return "\n".join(lines)


def when(value: datetime | None, now: datetime) -> str:
    from freshet.core.timeutil import human_duration

    if value is None:
        return "-"
    delta = value - now
    return f"in {human_duration(delta)}" if delta.total_seconds() > 0 else \
        f"{human_duration(-delta)} ago"


# -- wiring ------------------------------------------------------------------------------

def _settings(**overrides):
    from freshet.core.settings import load_settings

    return load_settings(**overrides)


def _check_reachable(host_port: str, what: str, env_var: str) -> None:
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=2):
            return
    except (OSError, ValueError):
        raise UserError(f"cannot reach the {what} at {host_port} ({env_var}); "
                        "is it running? (make emulators)") from None


def open_store(project: str):
    """A Store on the emulator (checked reachable first) or on Cloud Firestore."""
    from google.auth.exceptions import DefaultCredentialsError

    from freshet.gcp.store import Store, firestore_client

    emulator = os.environ.get("FIRESTORE_EMULATOR_HOST")
    if emulator:
        _check_reachable(emulator, "Firestore emulator", "FIRESTORE_EMULATOR_HOST")
    try:
        return Store(firestore_client(project))
    except DefaultCredentialsError:
        raise UserError("no Google Cloud credentials: run `gcloud auth application-default "
                        "login`, or set FIRESTORE_EMULATOR_HOST for the emulator") from None


def open_queue(settings):
    from freshet.gcp.tasks import TaskQueue

    if settings.tasks_emulator_host:
        _check_reachable(settings.tasks_emulator_host, "Cloud Tasks emulator",
                         "FRESHET_TASKS_EMULATOR_HOST")
    return TaskQueue(settings)


def _now() -> datetime:
    from freshet.core.timeutil import utcnow

    return utcnow()


# -- commands ----------------------------------------------------------------------------

def cmd_jobs_list(args) -> int:
    from freshet.core.schedules import describe

    settings, now = _settings(), _now()
    jobs = sorted(open_store(settings.project).list_jobs(args.status), key=lambda j: j.id)
    rows = [(j.id, j.kind, j.status, describe(j.schedule), when(j.next_run_at, now),
             when(j.last_run_at, now), j.last_run_status, j.last_error) for j in jobs]
    say(table(("JOB", "KIND", "STATUS", "SCHEDULE", "NEXT RUN", "LAST RUN", "LAST", "ERROR"),
              rows, width=40))
    say(f"{len(jobs)} job(s)")
    return 0


def cmd_jobs_show(args) -> int:
    from freshet.ops.views import job_json

    settings, now = _settings(), _now()
    store = open_store(settings.project)
    job = store.job(args.job_id)
    doc = job_json(job)
    for key in ("id", "kind", "status", "description", "produces", "max_retries",
                "stuck_threshold_minutes", "params", "catchup", "max_lateness", "pool",
                "last_run_status", "last_error"):
        say(f"{key + ':':26}{doc[key] if doc[key] not in (None, '', []) else '-'}")
    say(f"{'schedule:':26}{doc['schedule']['description']}")
    if doc["trigger"]:
        say(f"{'trigger:':26}runs {doc['trigger']['description']} ({doc['trigger']['when']})")
    say(f"{'next run:':26}{when(job.next_run_at, now)}")
    say(f"{'last run:':26}{when(job.last_run_at, now)}")
    _print_runs(store.recent_runs(job_id=job.id, limit=args.limit), now)
    return 0


def slot_text(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M} UTC"


def _print_runs(runs, now: datetime) -> None:
    rows = [(r.id, r.status, r.trigger_source, r.attempt_number, slot_text(r.slot),
             None if r.duration_s is None else f"{r.duration_s:.1f} s", r.error) for r in runs]
    say(table(("RUN", "STATUS", "SOURCE", "ATTEMPT", "SLOT", "TOOK", "ERROR"), rows))


def cmd_jobs_run(args) -> int:
    from freshet.loop.manual import run_now

    settings, now = _settings(), _now()
    store = open_store(settings.project)
    run, created = run_now(store, open_queue(settings), args.job_id, now=now,
                           settings=settings, idempotency_key=args.key, source="manual")
    verb = "queued" if created else "already requested"
    say(f"run {run.id} {verb} (status {run.status})")
    return 0


def _job_action(name: str) -> Callable:
    def command(args) -> int:
        from freshet.ops import operations

        settings = _settings()
        job = getattr(operations, f"{name}_job")(open_store(settings.project), args.job_id,
                                                 now=_now())
        say(f"job {job.id}: {job.status}")
        return 0

    return command


def cmd_runs_list(args) -> int:
    settings, now = _settings(), _now()
    runs = open_store(settings.project).recent_runs(job_id=args.job, limit=args.limit)
    _print_runs(runs, now)
    return 0


def cmd_runs_show(args) -> int:
    from freshet.core.links import logs_url

    settings, now = _settings(), _now()
    run = open_store(settings.project).run(args.run_id)
    for label, value in (("run", run.id), ("job", run.job_id), ("kind", run.kind),
                         ("status", run.status + (" (stuck)" if run.stuck else "")),
                         ("source", run.trigger_source),
                         ("attempt", f"{run.attempt_number} of {run.max_attempts}"),
                         ("scheduled for", when(run.scheduled_for, now)),
                         ("started", when(run.started_at, now)),
                         ("finished", when(run.finished_at, now)),
                         ("took", None if run.duration_s is None else f"{run.duration_s:.1f} s"),
                         ("task", run.task_name), ("error", run.error)):
        say(f"{label + ':':16}{'-' if value in (None, '') else value}")
    if run.attempts:
        say(table(("ATTEMPT", "STARTED", "FINISHED", "OUTCOME", "ERROR"),
                  [(a.number, when(a.started_at, now), when(a.finished_at, now), a.outcome,
                    a.error) for a in run.attempts]))
    say(f"{'logs:':16}{logs_url(settings.project, run.id)}")
    return 0


def cmd_datasets(args) -> int:
    from freshet.ops.views import all_datasets

    settings, now = _settings(), _now()
    rows = all_datasets(open_store(settings.project), now)
    say(table(("DATASET", "STATE", "LAST SUCCESS", "DATA AS OF", "FAILURES", "REASON"),
              [(d["key"], d["state"].upper(), d["last_success_at"], d["data_as_of"],
                d["consecutive_failures"], d["reason"]) for d in rows], width=70))
    return 0


def cmd_status(args) -> int:
    from freshet.ops.views import status_summary

    settings, now = _settings(), _now()
    summary = status_summary(open_store(settings.project), settings, now)
    say(f"Overall: {summary['worst'].upper()}   (at {summary['now']})")
    say("Jobs:     " + (", ".join(f"{n} {s}" for s, n in summary["jobs"].items() if n)
                        or "none"))
    say("Datasets: " + (", ".join(f"{n} {s}" for s, n in summary["datasets"].items() if n)
                        or "none"))
    if summary["late_jobs"]:
        say("Late (is the scheduler ticking?): " + ", ".join(summary["late_jobs"]))
    control = summary["control"]
    switches = []
    if control["paused_all"]:
        switches.append("ALL JOBS PAUSED")
    if not control["manual_actions_enabled"]:
        switches.append("manual actions off")
    if control["disabled_kinds"]:
        switches.append("kinds off: " + ", ".join(control["disabled_kinds"]))
    say("Kill switches: " + ("; ".join(switches) if switches else "none")
        + (f" ({control['reason']})" if control["reason"] else ""))
    for window in summary["maintenance"]:
        say(f"Maintenance: {window['id']} until {window['end']}"
            + (f" ({window['note']})" if window["note"] else ""))
    for incident in summary["incidents"]:
        say(f"Incident: {incident['title']} [{incident['id']}]"
            + (f", ETA {incident['eta']}" if incident["eta"] else ""))
    if summary["routes"]:
        say(table(("ROUTE", "TYPE", "LAST DELIVERY", "STATUS", "WAITING", "DROPPED", "ERROR"),
                  [(r["id"], r["type"], when(_time(r["last_attempt_at"]), now),
                    r["last_status"] or "nothing sent yet", r["waiting"], r["dropped"],
                    r["last_error"]) for r in summary["routes"]], width=60))
    return 0


def _time(value: str | None) -> datetime | None:
    from freshet.core.timeutil import parse_datetime

    return None if value is None else parse_datetime(value, "time")


def _author() -> str:
    """Who a note is by: $FRESHET_AUTHOR, else the login name."""
    return os.environ.get("FRESHET_AUTHOR") or os.environ.get("USER") or "cli"


def _print_incident(incident) -> None:
    doc = incident.to_json()
    say(f"incident {doc['id']}: {doc['status']} — {doc['title']}")
    say(f"  about: {incident.scope.describe()}"
        + (f"; ETA {doc['eta']}" if doc["eta"] else ""))
    for note in doc["notes"]:
        say(f"  {note['at']}  {note['kind']:8} {note['text']}"
            + (f"  — {note['author']}" if note["author"] else ""))


def cmd_incident_open(args) -> int:
    from freshet.core.windows import Scope
    from freshet.ops import incidents

    settings = _settings()
    scope = Scope(jobs=tuple(args.job), datasets=tuple(args.dataset),
                  consumers=tuple(args.consumer))
    incident, created = incidents.open_incident(
        open_store(settings.project), title=args.title, note=args.note, scope=scope,
        eta=args.eta, author=_author(), now=_now())
    if not created:
        say("(already open: the same title within the same minute)")
    _print_incident(incident)
    return 0


def cmd_incident_note(args) -> int:
    from freshet.ops import incidents

    settings = _settings()
    _print_incident(incidents.add_note(open_store(settings.project), args.incident_id,
                                       text=args.text, eta=args.eta, author=_author(),
                                       now=_now()))
    return 0


def cmd_incident_resolve(args) -> int:
    from freshet.ops import incidents

    settings = _settings()
    _print_incident(incidents.resolve(open_store(settings.project), args.incident_id,
                                      text=args.text, author=_author(), now=_now()))
    return 0


def cmd_incident_list(args) -> int:
    from freshet.ops import incidents

    settings, now = _settings(), _now()
    found = incidents.recent(open_store(settings.project), now)
    say(table(("INCIDENT", "STATUS", "TITLE", "ABOUT", "OPENED", "ETA", "NOTES"),
              [(i.id, i.status, i.title, i.scope.describe(), when(i.opened_at, now),
                when(i.eta, now), len(i.notes)) for i in found], width=50))
    say(f"{len(found)} incident(s)")
    return 0


def cmd_incident_show(args) -> int:
    from freshet.core.errors import NotFound

    settings = _settings()
    incident = open_store(settings.project).get_incident(args.incident_id)
    if incident is None:
        raise NotFound("incident", args.incident_id)
    _print_incident(incident)
    return 0


def cmd_backfill(args) -> int:
    """`backfill JOB --from --to ...`, `backfill status [ID]`, `backfill cancel ID`. With
    --from or --to, `status` and `cancel` are job ids like any other."""
    action = args.target if args.start is None and args.end is None else None
    if action == "status":
        return _backfill_status(args)
    if action == "cancel":
        return _backfill_cancel(args)
    return _backfill_start(args)


def _backfill_start(args) -> int:
    from freshet.core.timeutil import parse_datetime
    from freshet.loop import backfill

    if args.ident is not None:
        raise UserError(f"unexpected argument {args.ident!r} (see `freshet backfill --help`)")
    if args.start is None or args.end is None:
        raise UserError("backfill JOB needs --from and --to (ISO times with a zone, "
                        "e.g. 2026-11-27T00:00Z)")
    start, end = parse_datetime(args.start, "--from"), parse_datetime(args.end, "--to")
    settings, now = _settings(), _now()
    store = open_store(settings.project)
    if args.dry_run:
        _, plan = backfill.plan_backfill(store, args.target, start, end, now=now,
                                         rerun=args.rerun)
        say(f"Backfill of {args.target} from {slot_text(start)} to {slot_text(end)} "
            "(dry run: nothing was changed):")
        say(f"  {len(plan.slots)} slot(s) in the range (up to now); {len(plan.todo)} would run, "
            f"at most {args.max_parallel} at once")
        say(f"  {len(plan.done)} succeeded already" + ("" if args.rerun else
                                                      " (left alone; --rerun runs them too)")
            + f"; {len(plan.busy)} have a run in flight (left to it)")
        if plan.todo:
            say(f"  first {slot_text(plan.todo[0])}, last {slot_text(plan.todo[-1])}")
        return 0
    made, created = backfill.start_backfill(
        store, open_queue(settings), args.target, start, end, now=now, settings=settings,
        max_parallel=args.max_parallel, rerun=args.rerun, key=args.key,
        requested_by=os.environ.get("USER") or "cli")
    view = backfill.backfill_view(store, made.id)
    verb = "started" if created else "already requested"
    say(f"backfill {made.id} {verb}: {made.planned} of {made.slots} slot(s) to run, "
        f"{made.already_done} succeeded already, at most {made.max_parallel} at once")
    _print_backfill(view)
    return 0


def _print_backfill(view) -> None:
    from freshet.core.backfill import progress_bar

    b, p = view.backfill, view.progress
    say(f"{b.id}  {b.job_id}  {p.status}  {slot_text(b.start)} .. {slot_text(b.end)}"
        + (f"  ({b.note})" if b.note else ""))
    say(f"  {progress_bar(p)}  done {p.done}, failed {p.failed}, skipped {p.skipped}, "
        f"cancelled {p.cancelled}, running {p.running}, waiting {p.waiting}")


def _backfill_status(args) -> int:
    from freshet.loop import backfill

    settings = _settings()
    store = open_store(settings.project)
    if args.ident is not None:
        view = backfill.backfill_view(store, args.ident)
        _print_backfill(view)
        for run_id in view.progress.current_runs:
            say(f"  in flight: {run_id}")
        return 0
    views = backfill.recent_views(store, job_id=args.job, limit=args.limit)
    for view in views:
        _print_backfill(view)
    say(f"{len(views)} backfill(s)")
    return 0


def _backfill_cancel(args) -> int:
    from freshet.loop import backfill

    if args.ident is None:
        raise UserError("backfill cancel needs the backfill's id (freshet backfill status)")
    settings = _settings()
    store = open_store(settings.project)
    backfill.cancel_backfill(store, args.ident, now=_now(),
                             who=os.environ.get("USER") or "cli")
    _print_backfill(backfill.backfill_view(store, args.ident))
    return 0


def cmd_apply(args) -> int:
    from freshet.gcp.scheduler import SchedulerAdmin
    from freshet.ops.apply import apply, plan
    from freshet.ops.config import load_config

    config = load_config(args.config, project=args.project)
    settings = _settings(project=config.project, region=config.region, queue=config.queue)
    store, queue = open_store(config.project), open_queue(settings)
    local = bool(os.environ.get("FIRESTORE_EMULATOR_HOST"))
    managed = not (args.skip_scheduler or local)
    admin = SchedulerAdmin(config.project, config.region) if managed else None
    now = _now()
    todo = plan(config, store=store, task_queue=queue, scheduler_admin=admin, now=now)
    for line in todo.lines():
        say(line)
    if admin is None:
        say("Cloud Scheduler: not managed here (local mode: the local scheduler loop fires "
            "the config's schedules)." if local else "Cloud Scheduler: skipped.")
    if args.dry_run:
        say("Dry run: nothing was changed.")
        return 0
    if todo.empty:
        return 0
    apply(todo, store=store, task_queue=queue, scheduler_admin=admin, now=now,
          progress=progress)
    say(f"Applied {todo.count()} change(s).")
    return 0


def cmd_doctor(args) -> int:
    from freshet.ops import doctor
    from freshet.ops.config import load_config

    config = load_config(args.config, project=args.project)
    settings, now = _settings(), _now()
    local = bool(os.environ.get("FIRESTORE_EMULATOR_HOST"))
    stale = _timedelta(settings.page_stale_after_s)
    if local:
        say(f"Checking the local stack for {config.path} (FIRESTORE_EMULATOR_HOST is set):")
        checks = doctor.local_checks(config, doctor.collect_local(config), now,
                                     page_stale_after=stale)
    else:
        say(f"Checking {config.project} ({config.region}) against {config.path}:")
        checks = doctor.cloud_checks(config, doctor.collect_cloud(config), now,
                                     page_stale_after=stale)
    for check in checks:
        say(check.line())
    failed = sum(not c.ok for c in checks)
    say(f"{len(checks)} checks, {failed} failed." if failed else f"All {len(checks)} checks "
        "passed.")
    return 1 if failed else 0


def _timedelta(seconds: float):
    from datetime import timedelta

    return timedelta(seconds=seconds)


def cmd_site_build(args) -> int:
    from freshet.gcp.storage import sink_from_settings
    from freshet.status.publish import publish_once

    settings = _settings()
    store = open_store(settings.project)
    progress("publishing the status page…")
    result = publish_once(store, sink_from_settings(settings), now=_now(), settings=settings)
    say(f"status page published: {result}")
    return 0


def cmd_cost(args) -> int:
    import json

    import yaml

    from freshet.ops import cost
    from freshet.ops.config import load_config

    config = load_config(args.config)
    try:
        results = json.loads(Path(args.measured).read_text())
        prices = cost.Prices.from_doc(yaml.safe_load(Path(args.prices).read_text()))
    except FileNotFoundError as exc:
        raise UserError(f"{exc.filename}: not found (the measured figures come from "
                        "`make bench`)") from None
    except (ValueError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read {args.measured} or {args.prices}: {exc}") from None
    assumptions = cost.Assumptions(retry_rate=args.retry_rate, sync_s=args.sync_seconds,
                                   run_retention_days=args.run_retention_days)
    measured = cost.Measured.from_results(results.get("results") or {})
    estimate = cost.estimate(cost.workload_of(config, assumptions), measured, prices,
                             assumptions)
    _print_estimate(estimate, config.path, args.measured, results.get("measured_at"),
                    region=config.firestore_location or config.region)
    say(cost.herd_text(cost.herd_of(config, measured, assumptions, jobs=args.herd,
                                    lookahead_s=args.lookahead_s)))
    return 0


def _print_estimate(estimate, config_path: str, measured_path: str, measured_at, *,
                    region: str) -> None:
    load, a = estimate.workload, estimate.assumptions
    say(f"Monthly estimate for {config_path}: {load.jobs:,} jobs, {load.datasets:,} "
        f"datasets, {load.runs:,.0f} runs a month ({load.datasets_per_run:.1f} datasets "
        f"each), {load.publishes:,.0f} publishes")
    rows = [(line.service, line.item, f"{line.quantity:,.2f} {line.unit}",
             f"{line.free:,.2f}", f"{line.billable:,.2f}", f"${line.usd:,.2f}")
            for line in estimate.lines]
    say(table(("SERVICE", "ITEM", "A MONTH", "FREE", "BILLED", "USD"), rows, width=44))
    say("")
    say("By service: " + ", ".join(f"{s} ${v:,.2f}" for s, v in estimate.by_service().items()))
    say(f"Total: ${estimate.total:,.2f} a month for the control plane")
    say(f"Your syncs' own compute inside run_task (not in the total, as under any "
        f"orchestrator): ${estimate.sync_total:,.2f} a month")
    low, high = estimate.composer()
    say(f"The smallest Cloud Composer environment: about ${low:,.0f}-{high:,.0f} a month "
        f"(always on), {low / max(estimate.total, 0.01):,.0f}x or more.")
    say(f"Assumed: {a.retry_rate:.0%} of attempts retried, syncs of {a.sync_s:g} s, runs "
        f"kept {a.run_retention_days} days (a TTL policy deletes them; TTL deletes and "
        f"named databases get no free tier: the free tier is the (default) database's).")
    say(f"Counts measured by the benchmarks ({measured_path}, {measured_at or 'undated'}); "
        f"prices as of {estimate.prices.as_of}, {estimate.prices.doc.get('location', '')}; "
        f"this config deploys to {region} (pass --prices for its prices).")


def _default_measured() -> str:
    return str(Path(__file__).resolve().parents[3] / "bench" / "results.json")


def cmd_demo(args) -> int:
    try:
        from freshet_local.demo import cli as demo_cli
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("freshet_local"):
            raise UserError("the local demo is not available here (freshet_local.demo "
                            "is missing; run from the project's work tree)") from None
        raise
    rest = list(args.demo_args)
    return demo_cli(rest[1:] if rest[:1] == ["--"] else rest)


# -- parsing -----------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UserError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="freshet", description="Operate a Freshet pipeline.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    jobs = sub.add_parser("jobs", help="list, show, run, pause, resume or archive jobs")
    jsub = jobs.add_subparsers(dest="action", required=True, parser_class=_Parser)
    p = jsub.add_parser("list", help="all jobs")
    p.add_argument("--status", choices=("active", "paused", "archived", "completed"))
    p.set_defaults(fn=cmd_jobs_list)
    p = jsub.add_parser("show", help="one job and its recent runs")
    p.add_argument("job_id")
    p.add_argument("--limit", type=int, default=10)
    p.set_defaults(fn=cmd_jobs_show)
    p = jsub.add_parser("run", help="run a job now")
    p.add_argument("job_id")
    p.add_argument("--key", help="idempotency key: the same key never runs twice")
    p.set_defaults(fn=cmd_jobs_run)
    for name in ("pause", "resume", "archive"):
        p = jsub.add_parser(name, help=f"{name} a job")
        p.add_argument("job_id")
        p.set_defaults(fn=_job_action(name))

    runs = sub.add_parser("runs", help="recent runs")
    rsub = runs.add_subparsers(dest="action", required=True, parser_class=_Parser)
    p = rsub.add_parser("list", help="recent runs, newest first")
    p.add_argument("--job", help="only this job's runs")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(fn=cmd_runs_list)
    p = rsub.add_parser("show", help="one run, its attempts and its Logs Explorer link")
    p.add_argument("run_id")
    p.set_defaults(fn=cmd_runs_show)

    p = sub.add_parser(
        "backfill", help="run a job's past slots (or: backfill status [ID], backfill cancel ID)",
        description="freshet backfill JOB --from T1 --to T2 [--dry-run] [--max-parallel N] "
                    "[--rerun]: one run per slot of JOB in [T1, T2] (up to now) that has no "
                    "successful run yet, at most N at once. `freshet backfill status [ID]` "
                    "shows progress; `freshet backfill cancel ID` cancels.")
    p.add_argument("target", metavar="JOB|status|cancel")
    p.add_argument("ident", nargs="?", metavar="ID", help="a backfill's id (status, cancel)")
    p.add_argument("--from", dest="start", help="first slot, ISO 8601 with a zone")
    p.add_argument("--to", dest="end", help="last slot, ISO 8601 with a zone")
    p.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    p.add_argument("--max-parallel", type=int, default=1, help="runs at once (default 1)")
    p.add_argument("--rerun", action="store_true", help="run slots that succeeded too")
    p.add_argument("--key", help="idempotency key: the same key never backfills twice")
    p.add_argument("--job", help="status: only this job's backfills")
    p.add_argument("--limit", type=int, default=10, help="status: how many (default 10)")
    p.set_defaults(fn=cmd_backfill)

    incident = sub.add_parser("incident", help="open, note, resolve, list or show incidents")
    isub = incident.add_subparsers(dest="action", required=True, parser_class=_Parser)
    p = isub.add_parser("open", help="open an incident (a banner on the status page)")
    p.add_argument("title")
    p.add_argument("--note", help="the first note (default: the title)")
    for name in ("job", "dataset", "consumer"):
        p.add_argument(f"--{name}", action="append", default=[],
                       help=f"a {name} it is about (repeatable; none: the whole pipeline)")
    p.add_argument("--eta", help="when it should be over: a time with a zone, or '2h'")
    p.set_defaults(fn=cmd_incident_open)
    p = isub.add_parser("note", help="add a timestamped note")
    p.add_argument("incident_id")
    p.add_argument("text")
    p.add_argument("--eta", help="a new ETA: a time with a zone, or '2h'")
    p.set_defaults(fn=cmd_incident_note)
    p = isub.add_parser("resolve", help="resolve it, with a closing note")
    p.add_argument("incident_id")
    p.add_argument("text", nargs="?")
    p.set_defaults(fn=cmd_incident_resolve)
    isub.add_parser("list", help="open incidents, then recent ones").set_defaults(
        fn=cmd_incident_list)
    p = isub.add_parser("show", help="one incident and its notes")
    p.add_argument("incident_id")
    p.set_defaults(fn=cmd_incident_show)

    sub.add_parser("datasets", help="datasets and how fresh they are").set_defaults(
        fn=cmd_datasets)
    sub.add_parser("status", help="overall status").set_defaults(fn=cmd_status)

    p = sub.add_parser("apply", help="make Firestore, Cloud Tasks and Cloud Scheduler "
                                     "match the pipeline config")
    p.add_argument("--config", default=os.environ.get("FRESHET_CONFIG") or _default_config())
    p.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    p.add_argument("--skip-scheduler", action="store_true",
                   help="leave Cloud Scheduler alone")
    p.add_argument("--project", help="the project to apply to, instead of the config's "
                                     "(make deploy PROJECT=...)")
    p.set_defaults(fn=cmd_apply)

    p = sub.add_parser("doctor", help="check a deployment (read-only): APIs, functions, "
                                      "accounts, roles, queue, jobs, heartbeat, page")
    p.add_argument("--config", default=os.environ.get("FRESHET_CONFIG") or _default_config())
    p.add_argument("--project", help="the deployed project, instead of the config's")
    p.set_defaults(fn=cmd_doctor)

    p = sub.add_parser("cost", help="estimate the pipeline's monthly Google Cloud bill")
    p.add_argument("--config", default=os.environ.get("FRESHET_CONFIG") or _default_config())
    p.add_argument("--measured", default=_default_measured(),
                   help="the benchmarks' figures (bench/results.json)")
    p.add_argument("--prices", default=str(Path(__file__).with_name("prices.yaml")),
                   help="a price table like freshet/ops/prices.yaml (yours, for your "
                        "location)")
    p.add_argument("--retry-rate", type=float, default=0.02,
                   help="share of attempts that fail transiently and are retried (0.02)")
    p.add_argument("--sync-seconds", type=float, default=1.0,
                   help="how long a sync itself runs inside run_task (1.0)")
    p.add_argument("--run-retention-days", type=int, default=90,
                   help="how long run documents are kept, for their storage (90)")
    p.add_argument("--herd", type=int, default=10_000,
                   help="runs due at one slot, for the herd's modelled start (10000)")
    p.add_argument("--lookahead-s", type=float, default=60.0,
                   help="the tick's lookahead, FRESHET_LOOKAHEAD_S (60)")
    p.set_defaults(fn=cmd_cost)

    site = sub.add_parser("site", help="the status page")
    ssub = site.add_subparsers(dest="action", required=True, parser_class=_Parser)
    ssub.add_parser("build", help="render and publish the status page now").set_defaults(
        fn=cmd_site_build)

    demo = sub.add_parser("demo", help="run the local demo (options: freshet demo --help)",
                          add_help=False)
    demo.add_argument("demo_args", nargs=argparse.REMAINDER)
    demo.set_defaults(fn=cmd_demo)
    return parser


def _default_config() -> str:
    """infra/pipeline.yaml of the work tree this package lives in, else of the cwd."""
    tree = Path(__file__).resolve().parents[3] / DEFAULT_CONFIG
    return str(tree) if tree.exists() else DEFAULT_CONFIG


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["demo"]:  # the demo parses its own options (freshet demo --help)
            argv = ["demo", "--", *argv[1:]]
        args = build_parser().parse_args(argv)
        return args.fn(args)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:
        print("freshet: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line, never a traceback
        message, code = describe_error(exc)
        if os.environ.get("FRESHET_DEBUG"):
            traceback.print_exc()
        print(f"freshet: error: {printable(message)}", file=sys.stderr)
        return code


def describe_error(exc: BaseException) -> tuple[str, int]:
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    from freshet.ops.config import ConfigError

    if isinstance(exc, UserError | ConfigError | FreshetError):
        return _one_line(str(exc)), EXIT_USER_ERROR
    if isinstance(exc, gexc.RetryError | gexc.ServiceUnavailable | gexc.DeadlineExceeded):
        return "cannot reach Google Cloud (Firestore or Cloud Tasks): " + _one_line(
            str(exc)), EXIT_USER_ERROR
    if isinstance(exc, gexc.PermissionDenied | gexc.Unauthenticated
                  | auth_exc.GoogleAuthError):
        return "not allowed by Google Cloud: " + _one_line(str(exc)), EXIT_USER_ERROR
    if isinstance(exc, gexc.GoogleAPICallError):
        return "Google Cloud refused the request: " + _one_line(str(exc)), EXIT_USER_ERROR
    return (f"internal error ({type(exc).__name__}: {_one_line(str(exc))}); "
            "rerun with FRESHET_DEBUG=1 for details"), 1


def _one_line(text: str, limit: int = 400) -> str:
    return shorten(" ".join(text.split()), limit)


if __name__ == "__main__":
    sys.exit(main())
