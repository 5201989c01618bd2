"""The `freshet` command: operate a pipeline from a terminal.

    freshet jobs list|show|run|pause|resume|archive     freshet runs list|show
    freshet doctor [--config FILE]                      (checks a deployment)
    freshet datasets      freshet status                freshet apply [--dry-run]
    freshet backfill JOB --from T1 --to T2 [--dry-run] [--max-parallel N] [--rerun]
    freshet backfill status [ID]    freshet backfill cancel ID
    freshet incident open|note|resolve|list|show        freshet cost [--config FILE]
    freshet site build    freshet demo (from the local tooling, when it is installed)
    freshet runs page|cancel|retry    freshet maintenance list|start|end
    freshet console [--port N] [--api URL]           (the operator console, on 127.0.0.1)

It talks to Firestore directly (the emulator when FIRESTORE_EMULATOR_HOST is set).
Other installed packages may add subcommands (entry points in the group
`freshet.commands`): the work tree's local tooling adds `freshet demo`.
A user error is one line on stderr and exit code 2; nothing prints a traceback
(FRESHET_DEBUG=1 shows one for a bug).
"""

import argparse
import contextlib
import os
import re
import socket
import sys
import traceback
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from freshet.core.settings import MAX_RUN_RETENTION_DAYS
from freshet.core.text import one_line, printable, shorten
from freshet.ops.answers import UserError

DEFAULT_CONFIG = "infra/pipeline.yaml"
ETA_HELP = ("when it should be over: a time with a zone (2026-12-07T14:00Z), a time of day "
            "with a zone (14:00Z: the next one), or a duration from now (2h, 90m)")
INCIDENT_ID_HELP = ("the incident's id, a unique prefix of it, or its last 6 characters "
                    "(freshet incident list)")
CONFIG_HELP = ("the pipeline config (default: $FRESHET_CONFIG, which the running local "
               "stack's context sets; else the file the local stack was applied from; else "
               "infra/pipeline.yaml)")
MEASURED = "measured.json"  # in this package: the benchmarks' figures `freshet cost` uses


def say(message: str = "") -> None:
    print(printable(message), flush=True)


def progress(message: str) -> None:
    print(printable(message), file=sys.stderr, flush=True)


# -- output helpers ----------------------------------------------------------------------

def table(headers: Sequence[str], rows: Sequence[Sequence[object]], width: int = 48,
          whole: int = 1) -> str:
    """Left-aligned columns, cells cut at `width` characters (not the first `whole`
    columns: ids stay whole, to be pasted), a rule under the header."""
    def cell(value: object, column: int) -> str:
        if value is None or value == "":
            return "-"
        text = one_line(str(value))
        return text if column < whole else shorten(text, width)

    cells = [[cell(v, i) for i, v in enumerate(row)] for row in rows]
    sizes = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(sizes[i]) for i, h in enumerate(headers)).rstrip(),
             "  ".join("-" * s for s in sizes)]
    lines += ["  ".join(v.ljust(sizes[i]) for i, v in enumerate(r)).rstrip() for r in cells]
    return "\n".join(lines)


def stamp(value: datetime | str | None) -> str:
    """A moment for people: to the second, in UTC, no microseconds."""
    from freshet.core.timeutil import parse_datetime, to_utc

    if value is None or value == "":
        return "-"
    moment = parse_datetime(value, "time") if isinstance(value, str) else to_utc(value)
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def plain(value: object) -> str:
    """A value for people: lists joined, mappings as key=value, never a Python repr."""
    if value is None or value == "" or value == [] or value == {}:
        return "-"
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(plain(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={plain(v)}" for k, v in value.items())
    return str(value)


def state_label(state: str) -> str:
    """A freshness state as the page, the badges and the feed name it."""
    from freshet.status.model import LABELS

    return LABELS.get(state, state)


def emit_json(value: object) -> None:
    """What a listing prints with --json: one JSON document, for scripts."""
    import json

    say(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def nothing_matched(what: str) -> int:
    """A filtered listing that found nothing: said on stderr, exit 1 (like grep)."""
    progress(f"freshet: {what}")
    return 1


def when(value: datetime | None, now: datetime) -> str:
    from freshet.core.timeutil import human_duration

    if value is None:
        return "-"
    delta = value - now
    return f"in {human_duration(delta)}" if delta.total_seconds() > 0 else \
        f"{human_duration(-delta)} ago"


# -- wiring ------------------------------------------------------------------------------

_loaded: dict = {}  # this invocation's settings, read from the environment once (main)


def _settings(**overrides):
    from freshet.core.settings import load_settings

    if overrides:
        return load_settings(os.environ, **overrides)
    if "settings" not in _loaded:
        _loaded["settings"] = load_settings(os.environ)
    return _loaded["settings"]


def _check_reachable(host_port: str, what: str, env_var: str) -> None:
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=2):
            return
    except (OSError, ValueError):
        raise UserError(f"cannot reach the {what} at {host_port} ({env_var}); "
                        "is it running? (make emulators)") from None


def open_store(project: str):
    """A Store on the emulator (checked reachable first) or on Cloud Firestore (no
    credentials: freshet.gcp says so, NoCredentials)."""
    from freshet.gcp.store import Store, firestore_client

    emulator = _settings().firestore_emulator_host
    if emulator:
        _check_reachable(emulator, "Firestore emulator", "FIRESTORE_EMULATOR_HOST")
    return Store(firestore_client(project))


def open_queue(settings):
    """A TaskQueue whose client exists: on the emulator (checked reachable first) or on
    Cloud Tasks with credentials; never a run created that cannot be sent."""
    from google.auth.exceptions import DefaultCredentialsError

    from freshet.gcp.tasks import TaskQueue

    if settings.tasks_emulator_host:
        _check_reachable(settings.tasks_emulator_host, "Cloud Tasks emulator",
                         "FRESHET_TASKS_EMULATOR_HOST")
    elif os.environ.get("FIRESTORE_EMULATOR_HOST"):
        raise UserError("FIRESTORE_EMULATOR_HOST is set but FRESHET_TASKS_EMULATOR_HOST is "
                        'not: run `eval "$(freshet demo env)"` (or unset both for Google '
                        "Cloud)")
    queue = TaskQueue(settings)
    try:
        queue.client  # noqa: B018 - made now, so a missing credential fails before any write
    except DefaultCredentialsError:
        raise UserError("no Google Cloud credentials: run `gcloud auth application-default "
                        "login`, or start the local demo (freshet demo)") from None
    return queue


def _now() -> datetime:
    from freshet.core.timeutil import utcnow

    return utcnow()


# -- commands ----------------------------------------------------------------------------

def cmd_jobs_list(args) -> int:
    from freshet.core.schedules import describe
    from freshet.ops.views import job_json

    settings, now = _settings(), _now()
    jobs = sorted(open_store(settings.project).list_jobs(args.status), key=lambda j: j.id)
    if args.json:
        emit_json([job_json(j) for j in jobs])
    if not jobs and args.status:
        return nothing_matched(f"no {args.status} jobs")
    if args.json:
        return 0
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
    if args.json:
        from freshet.ops.views import run_json

        emit_json({**doc, "runs": [run_json(r, settings.project) for r in
                                   store.recent_runs(job_id=job.id, limit=args.limit)]})
        return 0
    for key in ("id", "kind", "status", "description", "produces", "max_retries",
                "stuck_threshold_minutes", "params", "catchup", "max_lateness", "pool",
                "last_run_status", "last_error"):
        say(f"{key + ':':26}{plain(doc[key])}")
    say(f"{'schedule:':26}{doc['schedule']['description']}")
    if doc["trigger"]:
        say(f"{'trigger:':26}runs {doc['trigger']['description']} ({doc['trigger']['when']})")
    if doc["trigger_refused"]:
        say(f"{'trigger refused:':26}{doc['trigger_refused']['reason']} "
            f"(at {doc['trigger_refused']['at']})")
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
    store.job(args.job_id)  # an unknown job is said before anything about the queue
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
    from freshet.core.errors import NotFound
    from freshet.ops.views import run_json

    settings, now = _settings(), _now()
    store = open_store(settings.project)
    if args.job and store.get_job(args.job) is None:
        raise NotFound("job", args.job)
    runs = store.recent_runs(job_id=args.job, limit=args.limit)
    if args.json:
        emit_json([run_json(r, settings.project) for r in runs])
    elif runs:
        _print_runs(runs, now)
    return 0 if runs else nothing_matched(f"no runs{' of ' + args.job if args.job else ''}")


def cmd_runs_show(args) -> int:
    from freshet.core.links import logs_url

    settings, now = _settings(), _now()
    run = open_store(settings.project).run(args.run_id)
    if args.json:
        from freshet.ops.views import run_json

        emit_json(run_json(run, settings.project))
        return 0
    for label, value in (("run", run.id), ("job", run.job_id), ("kind", run.kind),
                         ("status", run.status + (" (stuck)" if run.stuck else "")),
                         ("source", run.trigger_source + (f" (chain depth {run.trigger_depth})"
                                                          if run.trigger_depth else "")),
                         ("attempt", f"{run.attempt_number} of {run.max_attempts}"),
                         ("scheduled for", when(run.scheduled_for, now)),
                         ("started", when(run.started_at, now)),
                         ("finished", when(run.finished_at, now)),
                         ("took", None if run.duration_s is None else f"{run.duration_s:.1f} s"),
                         ("task", run.task_name), ("error", run.error),
                         *_external_rows(run, now)):
        say(f"{label + ':':16}{'-' if value in (None, '') else value}")
    if run.attempts:
        say(table(("ATTEMPT", "STARTED", "FINISHED", "OUTCOME", "ERROR"),
                  [(a.number, when(a.started_at, now), when(a.finished_at, now), a.outcome,
                    a.error) for a in run.attempts]))
    say(f"{'logs:':16}{logs_url(settings.project, run.id)}")
    return 0


def _external_rows(run, now) -> tuple:
    """A waiting run's work on its engine: what, where, how many polls, the next one."""
    ext = run.external
    if ext is None:
        return ()
    return (("engine", f"{ext.engine} {ext.external_id}" + (" (adopted)" if ext.adopted
                                                             else "")),
            ("polls", f"{ext.polls}, next {when(ext.next_poll_at, now)}"
             if run.status == "waiting" else str(ext.polls)),
            ("engine link", ext.link or None), ("cancelled", ext.cancel_reason or None))


def cmd_datasets(args) -> int:
    from freshet.ops.views import all_datasets

    settings, now = _settings(), _now()
    rows = all_datasets(open_store(settings.project), now)
    if args.json:
        emit_json(rows)
        return 0
    say(table(("DATASET", "STATE", "LAST SUCCESS", "DATA AS OF", "FAILURES", "REASON"),
              [(d["key"], state_label(d["state"]), stamp(d["last_success_at"]),
                stamp(d["data_as_of"]), d["consecutive_failures"], d["reason"])
               for d in rows], width=70))
    return 0


def cmd_status(args) -> int:
    from freshet.ops.views import status_summary

    settings, now = _settings(), _now()
    summary = status_summary(open_store(settings.project), settings, now)
    if args.json:
        emit_json(summary)
        return 0
    say(f"Overall: {state_label(summary['worst'])}   (at {stamp(summary['now'])})")
    say("Jobs:     " + (", ".join(f"{n} {s}" for s, n in summary["jobs"].items() if n)
                        or "none"))
    say("Datasets: " + (", ".join(f"{n} {state_label(s).lower()}"
                                  for s, n in summary["datasets"].items() if n)
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
        say(f"Maintenance: {window['id']} until {stamp(window['end'])}"
            + (f" ({window['note']})" if window["note"] else ""))
    for incident in summary["incidents"]:
        say(f"Incident: {incident['title']} [{incident['id']}]"
            + (f", ETA {stamp(incident['eta'])}" if incident["eta"] else ""))
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
    settings = _settings()
    return settings.author or settings.login_name or "cli"


def _print_incident(incident) -> None:
    doc = incident.to_json()
    say(f"incident {doc['id']}: {doc['status']} — {doc['title']}")
    say(f"  about: {incident.scope.describe()}"
        + (f"; ETA {stamp(doc['eta'])}" if doc["eta"] else ""))
    for note in doc["notes"]:
        say(f"  {stamp(note['at'])}  {note['kind']:8} {note['text']}"
            + (f"  — {note['author']}" if note["author"] else ""))


def cmd_incident_open(args) -> int:
    from freshet.core.windows import Scope
    from freshet.ops import incidents

    settings = _settings()
    scope = Scope(jobs=tuple(args.job), datasets=tuple(args.dataset),
                  consumers=tuple(args.consumer))
    now = _now()
    incident, created = incidents.open_incident(
        open_store(settings.project), title=args.title, note=args.note, scope=scope,
        eta=eta_text(args.eta, now), author=_author(), now=now)
    if not created:
        say("(already open: the same title within the same minute)")
    _print_incident(incident)
    return 0


def cmd_incident_note(args) -> int:
    from freshet.ops import incidents

    settings = _settings()
    store, now = open_store(settings.project), _now()
    _print_incident(incidents.add_note(store, find_incident(store, args.incident_id, now).id,
                                       text=args.text, eta=eta_text(args.eta, now),
                                       author=_author(), now=now))
    return 0


def cmd_incident_resolve(args) -> int:
    from freshet.ops import incidents

    settings = _settings()
    store, now = open_store(settings.project), _now()
    incident = find_incident(store, args.incident_id, now)
    if not incident.open:
        raise UserError(f"incident {incident.id} was resolved {when(incident.resolved_at, now)}"
                        "; nothing was recorded (open a new one, or add a note)")
    _print_incident(incidents.resolve(store, incident.id, text=args.text, author=_author(),
                                      now=now))
    return 0


def cmd_incident_list(args) -> int:
    from freshet.ops import incidents

    settings, now = _settings(), _now()
    found = incidents.recent(open_store(settings.project), now)
    if args.json:
        emit_json([i.to_json() for i in found])
        return 0
    say(table(("INCIDENT", "STATUS", "TITLE", "ABOUT", "OPENED", "ETA", "NOTES"),
              [(i.id, i.status, i.title, i.scope.describe(), when(i.opened_at, now),
                when(i.eta, now), len(i.notes)) for i in found], width=50))
    say(f"{len(found)} incident(s)")
    return 0


def cmd_incident_show(args) -> int:

    settings = _settings()
    incident = find_incident(open_store(settings.project), args.incident_id, _now())
    if args.json:
        emit_json(incident.to_json())
        return 0
    _print_incident(incident)
    return 0


def find_incident(store, given: str, now: datetime):
    """An incident by its id, a unique prefix of it, or its last 6 characters (the
    short id): like git's abbreviated hashes."""
    from freshet.core.errors import NotFound
    from freshet.ops import incidents

    exact = store.get_incident(given)
    if exact is not None:
        return exact
    matches = [i for i in incidents.recent(store, now)
               if given and (i.id.startswith(given) or i.id.endswith("-" + given))]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise UserError(f"{given!r} matches {len(matches)} incidents ("
                        + ", ".join(i.id for i in matches[:4]) + "): give more of the id")
    raise NotFound("incident", given)


def eta_text(value: str | None, now: datetime) -> str | None:
    """--eta as typed: a time with a zone, a duration ('2h'), or a time of day with a zone
    ('14:00Z', '14:00+01:00'): the next such moment."""
    import re
    from datetime import timedelta

    from freshet.core.timeutil import parse_datetime

    match = re.fullmatch(r"(\d{1,2}):(\d{2})(Z|[+-]\d{2}:?\d{2})", (value or "").strip())
    if not match:
        return value
    hour, minute, zone = match.groups()
    zone = "+00:00" if zone == "Z" else zone
    moment = parse_datetime(f"{now:%Y-%m-%d}T{int(hour):02d}:{minute}:00{zone}", "--eta")
    while moment - timedelta(days=1) > now:  # the zone's date may be behind UTC's
        moment -= timedelta(days=1)
    return (moment if moment > now else moment + timedelta(days=1)).isoformat()


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
    from freshet.core.backfill import check_max_parallel
    from freshet.core.timeutil import parse_datetime
    from freshet.loop import backfill

    if args.ident is not None:
        raise UserError(f"unexpected argument {args.ident!r} (see `freshet backfill --help`)")
    if args.start is None or args.end is None:
        raise UserError("backfill JOB needs --from and --to (ISO times with a zone, "
                        "e.g. 2026-11-27T00:00Z)")
    start, end = parse_datetime(args.start, "--from"), parse_datetime(args.end, "--to")
    check_max_parallel(args.max_parallel)  # a dry run refuses what the real run would
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
        requested_by=settings.login_name or "cli")
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
        if args.json:
            from freshet.ops.views import backfill_json

            emit_json(backfill_json(view.backfill, view.progress))
            return 0
        _print_backfill(view)
        for run_id in view.progress.current_runs:
            say(f"  in flight: {run_id}")
        return 0
    views = backfill.recent_views(store, job_id=args.job, limit=args.limit)
    if args.json:
        from freshet.ops.views import backfill_json

        emit_json([backfill_json(v.backfill, v.progress) for v in views])
    else:
        for view in views:
            _print_backfill(view)
        say(f"{len(views)} backfill(s)")
    return 0 if views or not args.job else nothing_matched(f"no backfills of {args.job}")


def _backfill_cancel(args) -> int:
    from freshet.loop import backfill
    from freshet.loop.engines import process_engines

    if args.ident is None:
        raise UserError("backfill cancel needs the backfill's id (freshet backfill status)")
    settings = _settings()
    store = open_store(settings.project)
    backfill.cancel_backfill(store, args.ident, now=_now(), who=settings.login_name or "cli",
                             engines=process_engines(settings))
    _print_backfill(backfill.backfill_view(store, args.ident))
    return 0


def _applied_from(store):
    """Which config file the stored catalog was applied from (None: never applied)."""
    from freshet.core.catalog import APPLIED_FROM, AppliedFrom

    return AppliedFrom.from_doc(store.catalog_doc().get(APPLIED_FROM))


def choose_config(given: str | None) -> tuple[str, str]:
    """The pipeline config a command serves, and why that one: --config, else
    $FRESHET_CONFIG (the local stack's context sets it), else the file the local stack
    was applied from, else infra/pipeline.yaml."""
    from freshet.ops import context

    if given:
        return given, "--config"
    if os.environ.get("FRESHET_CONFIG"):
        found = context.active()
        from_context = found is not None and found.env.get("FRESHET_CONFIG") == \
            os.environ["FRESHET_CONFIG"]
        return os.environ["FRESHET_CONFIG"], (f"the running {found.name}'s" if from_context
                                              else "FRESHET_CONFIG")
    if os.environ.get("FIRESTORE_EMULATOR_HOST"):
        with contextlib.suppress(Exception):  # unreachable: the default, and doctor says so
            applied = _applied_from(open_store(_settings().project))
            if applied is not None and Path(applied.path).is_file():
                return applied.path, "the one the local stack was applied from"
    return _default_config(), "the default"


def _say_config(path: str, why: str) -> None:
    if why != "--config":  # chosen for the user: say which, and why
        progress(f"Config: {path} ({why}).")


def cmd_apply(args) -> int:
    from freshet.gcp.scheduler import SchedulerAdmin
    from freshet.ops.apply import apply, config_source, plan
    from freshet.ops.config import load_config

    path, why = choose_config(args.config)
    config = load_config(path, project=args.project)
    settings = _settings(project=config.project, region=config.region, queue=config.queue)
    store, queue = open_store(config.project), open_queue(settings)
    _say_config(path, why)  # once it can be served: an error stays one line
    local = bool(settings.firestore_emulator_host)
    managed = not (args.skip_scheduler or local)
    admin = SchedulerAdmin(config.project, config.region) if managed else None
    now = _now()
    applied = _applied_from(store)
    if applied is not None and applied.path != config_source(config).path:
        progress(f"Note: the pipeline was applied from {applied.describe()}; this plans "
                 f"{config.path} instead.")
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

    path, why = choose_config(args.config)
    _say_config(path, why)
    config = load_config(path, project=args.project)
    settings, now = _settings(), _now()
    local = bool(settings.firestore_emulator_host)
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
    applied = _applied_from(store)
    progress("Publishing the status page of the pipeline applied from "
             f"{applied.describe() if applied else '(nothing applied yet)'} ...")
    result = publish_once(store, sink_from_settings(settings), now=_now(), settings=settings)
    where = f"gs://{settings.site_bucket}/" if settings.site_bucket else \
        str(Path(settings.site_dir).resolve()) + "/"
    say(f"Status page published to {where} ({settings.site_url}): {_publish_summary(result)}.")
    return 0


def _publish_summary(result) -> str:
    """A publish's result in words."""
    from freshet.status.model import LABELS, OVERALL_TEXT

    words = OVERALL_TEXT.get(result.state) or LABELS.get(result.state, result.state)
    return (f"{words}; {result.files_written} file(s) "
            f"written ({result.bytes_written:,} bytes, {result.mode} build); "
            f"{result.notifications_sent} notification(s) sent")


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
    days = config.runs_days if args.run_retention_days is None else args.run_retention_days
    assumptions = cost.Assumptions(retry_rate=args.retry_rate,
                                   failure_rate=args.failure_rate, sync_s=args.sync_seconds,
                                   run_retention_days=days,
                                   engine_s=args.engine_minutes * 60)
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
        f"each), {load.publishes:,.0f} publishes"
        + (f", {load.polls:,.0f} polls of waiting runs (engine work of "
           f"{a.engine_s / 60:g} min each)" if load.polls else ""))
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
    say(f"Assumed: {a.retry_rate:.0%} of attempts retried, {a.failure_rate:.1%} of runs "
        f"failing for good (each turning its datasets' states twice), syncs of "
        f"{a.sync_s:g} s, runs "
        f"kept {a.run_retention_days} days (a TTL policy deletes them; TTL deletes and "
        f"named databases get no free tier: the free tier is the (default) database's).")
    if load.observed.datasets:
        say(f"Observed: {load.observed.datasets:,} datasets, their data changing "
            f"{a.observed_changes_per_day:g} times a day each; {load.observed.passes:,.0f} "
            "observe passes a month, run by the tick (docs/engines.md).")
    say(f"Counts measured by the benchmarks ({measured_path}, {measured_at or 'undated'}); "
        f"prices as of {estimate.prices.as_of}, {estimate.prices.doc.get('location', '')}; "
        f"this config deploys to {region} (pass --prices for its prices).")


def _default_measured() -> str:
    """The benchmarks' figures as the package carries them: a copy of bench/results.json
    (bench/run_all.py writes both; tests/ops/test_package_data.py keeps them equal)."""
    return str(Path(__file__).with_name(MEASURED))


def cmd_context(args) -> int:
    """Which stack the CLI talks to, and why."""
    import json

    from freshet.ops import context

    path = context.context_path()
    found = context.load()
    active = context.active()
    if args.json:
        say(json.dumps({"active": active is not None, "path": str(path) if path else None,
                        "context": found.to_json() if found else None,
                        "environment": {k: os.environ[k] for k in context.IDENTITY
                                        if os.environ.get(k)}}, indent=2))
        return 0 if active is not None else 1
    if active is not None:
        say(f"Talking to the local {active.name} (project {active.project}, pid "
            f"{active.pid}, up since {active.written_at}).")
        say(f"Context file: {active.path}")
        for name, address in active.addresses.items():
            say(f"  {name + ':':20}{address}")
        if active.config:
            say(f"  {'config:':20}{active.config}")
        say('Other shells: eval "$(freshet demo env)"')
        return 0
    if found is not None and not found.alive():
        say(f"{found.path}: the {found.name} that wrote it (pid {found.pid}) is not running.")
    elif found is not None:
        say(f"{found.path}: not used, the environment says otherwise ("
            + ", ".join(f"{k}={os.environ[k]}" for k in found.conflicts(os.environ)) + ").")
    elif path is None:
        say(f"No context file ({context.ENV_VAR}={os.environ.get(context.ENV_VAR)}).")
    else:
        say(f"No local stack found ({path} does not exist; `freshet demo` writes it).")
    emulator = os.environ.get("FIRESTORE_EMULATOR_HOST")
    project = os.environ.get("GOOGLE_CLOUD_PROJECT")
    say(f"Talking to: {'the Firestore emulator at ' + emulator if emulator else 'Google Cloud'}"
        + (f", project {project} (from the environment)." if project else
           f", project {_settings().project} (the default; set GOOGLE_CLOUD_PROJECT)."))
    return 1 if emulator is None and found is None else 0


PLUGIN_GROUP = "freshet.commands"


def plugin_commands() -> dict:
    """Subcommands that other installed packages add: entry points in PLUGIN_GROUP, each a
    callable that takes the rest of the command line and returns the exit code (the
    product never imports the local tooling; the tooling registers `demo` here)."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=PLUGIN_GROUP)}


def _add_plugins(parser: argparse.ArgumentParser, sub, plugins: dict) -> None:
    """List the plugins in --help; a built-in command's name stays the built-in's."""
    parser.set_defaults(commands=frozenset(sub.choices),
                        plugins=frozenset(set(plugins) - set(sub.choices)))
    for name in sorted(parser.get_default("plugins")):
        module = plugins[name].value.partition(":")[0]
        sub.add_parser(name, help=f"from {module} (options: freshet {name} --help)",
                       add_help=False)


# -- the console's actions, and the console ----------------------------------------------

def cmd_jobs_pause(args) -> int:
    from freshet.core.timeutil import isoformat
    from freshet.ops import operations

    settings = _settings()
    job = operations.pause_job(open_store(settings.project), args.job_id, reason=args.reason,
                               until=args.until, by=_author(), now=_now())
    say(f"job {job.id}: {job.status}")
    say(f"  reason: {job.paused_reason}"
        + (f"; resumes by itself at {isoformat(job.paused_until)}" if job.paused_until else
           "; until someone resumes it"))
    return 0


def cmd_runs_cancel(args) -> int:
    from freshet.loop.engines import process_engines
    from freshet.loop.poll import cancel_work
    from freshet.ops import operations

    settings, now = _settings(), _now()
    store = open_store(settings.project)
    for run_id in args.run_id:
        run = operations.cancel_run(store, run_id, by=_author(), now=now)
        if run.external is not None and run.external.cancelled_at is None:
            cancel_work(run, process_engines(settings))  # its next poll asks again
        say(f"run {run.id}: {run.status}")
    return 0


def cmd_runs_retry(args) -> int:
    from freshet.loop.manual import retry_run

    settings, now = _settings(), _now()
    store, queue = open_store(settings.project), open_queue(settings)
    for run_id in args.run_id:
        run, created = retry_run(store, queue, run_id, now=now, settings=settings)
        say(f"run {run_id}: retried as {run.id}"
            + ("" if created else f" (already requested: {run.status})"))
    return 0


def cmd_runs_page(args) -> int:
    from freshet.core.timeutil import parse_datetime
    from freshet.ops import operations

    settings, now = _settings(), _now()
    runs, cursor = operations.runs_page(
        open_store(settings.project), job_id=args.job,
        states=tuple(s for s in (args.state or "").split(",") if s),
        since=parse_datetime(args.since, "--since") if args.since else None,
        until=parse_datetime(args.until, "--until") if args.until else None,
        cursor=args.cursor, limit=args.limit)
    _print_runs(runs, now)
    if cursor:
        say(f"more: --cursor {cursor}")
    return 0


def cmd_maintenance_list(args) -> int:
    from freshet.ops.views import maintenance_json

    settings = _settings()
    doc = maintenance_json(open_store(settings.project), _now())
    rows = [(w["id"], "ad-hoc" if w["adhoc"] else "declared",
             "now" if w["active"] else "", w["cron"] or w["start"],
             w["duration"] or w["end"], w["mode"], w["note"])
            for w in doc["declared"] + doc["adhoc"]]
    say(table(("WINDOW", "FROM", "ACTIVE", "CRON / START", "DURATION / END", "MODE", "NOTE"),
              rows, width=50))
    return 0


def cmd_maintenance_start(args) -> int:
    from freshet.core.timeutil import isoformat
    from freshet.core.windows import Scope
    from freshet.ops import incidents, operations

    settings = _settings()
    store = open_store(settings.project)
    scope = Scope(jobs=tuple(args.job), datasets=tuple(args.dataset))
    incidents.check_scope(store, scope)
    window = operations.open_window(store, minutes=args.minutes, note=args.note, by=_author(),
                                    scope=scope, mode=args.mode, now=_now())
    say(f"maintenance window {window.id} open until {isoformat(window.end)} "
        f"({window.scope.describe()}, {window.mode})")
    return 0


def cmd_maintenance_end(args) -> int:
    from freshet.ops import operations

    settings = _settings()
    operations.end_window(open_store(settings.project), args.window_id, now=_now())
    say(f"maintenance window {args.window_id} ended")
    return 0


def cmd_console(args) -> int:
    from freshet.ops import console

    return console.serve_console(host=args.host, port=args.port, api=args.api, say=say)


def _run_action_parsers(rsub) -> None:
    p = rsub.add_parser("page", help="runs, filtered, a page at a time (--cursor for more)")
    p.add_argument("--job", help="only this job's runs")
    p.add_argument("--state", help="run states, comma-separated (e.g. failed,cancelled)")
    p.add_argument("--since", help="created at or after (ISO 8601 with a zone)")
    p.add_argument("--until", help="created before (ISO 8601 with a zone)")
    p.add_argument("--cursor", help="the cursor the previous page printed")
    p.add_argument("--limit", type=_whole(1, 500), default=20, help="runs on one page")
    p.set_defaults(fn=cmd_runs_page)
    p = rsub.add_parser("cancel", help="cancel queued, running or waiting runs (they end "
                                       "cancelled; a waiting run's engine work is cancelled "
                                       "by its next poll)")
    p.add_argument("run_id", nargs="+", help="the runs' ids (freshet runs list)")
    p.set_defaults(fn=cmd_runs_cancel)
    p = rsub.add_parser("retry", help="run failed runs' slots again (once, however often "
                                      "asked)")
    p.add_argument("run_id", nargs="+", help="the failed runs' ids (freshet runs list)")
    p.set_defaults(fn=cmd_runs_retry)


def _console_parsers(jsub, sub, parser_class) -> None:
    """`jobs pause` with its reason and until; `maintenance`; `console`."""
    p = jsub.choices["pause"]
    p.add_argument("--reason", required=True, help="why (required; shown to everyone)")
    p.add_argument("--until", help="resume by itself then: a time with a zone, or '2h'")
    p.set_defaults(fn=cmd_jobs_pause)

    maint = sub.add_parser("maintenance", help="list maintenance windows; start an ad-hoc "
                                               "one now, or end it")
    msub = maint.add_subparsers(dest="action", required=True, parser_class=parser_class)
    msub.add_parser("list", help="declared and ad-hoc windows").set_defaults(
        fn=cmd_maintenance_list)
    p = msub.add_parser("start", help="open a window now for N minutes")
    p.add_argument("--minutes", type=_whole(1, 31 * 24 * 60), required=True,
                   help="how long it lasts, from now")
    p.add_argument("--note", required=True, help="why (shown on the page)")
    p.add_argument("--mode", choices=("skip", "drain"), default="skip",
                   help="skip: nothing starts, not even a next attempt; drain: runs under "
                        "way go on, nothing new starts")
    for name in ("job", "dataset"):
        p.add_argument(f"--{name}", action="append", default=[],
                       help=f"a {name} it is about (repeatable; none: the whole pipeline)")
    p.set_defaults(fn=cmd_maintenance_start)
    p = msub.add_parser("end", help="end an ad-hoc window now")
    p.add_argument("window_id", help="the window's id (freshet maintenance list)")
    p.set_defaults(fn=cmd_maintenance_end)

    p = sub.add_parser("console", help="the operator console in your browser, on 127.0.0.1")
    p.add_argument("--port", type=_whole(0, 65535), default=8765,
                   help="its port (0: any free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="loopback only (127.0.0.1, ::1 or localhost); anything else is refused")
    p.add_argument("--api", help="act through a deployed api at this URL instead of "
                                 "Firestore directly")
    p.set_defaults(fn=cmd_console)


# -- parsing -----------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise UserError(f"{message} (see `{self.prog} --help`)")


def _whole(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: ASCII digits only (int() takes '٣'), from `low` to `high`."""

    def convert(text: str) -> int:
        if not re.fullmatch(r"[0-9]{1,9}", text.strip()) or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"must be a whole number from {low} to {high}")
        return int(text)

    return convert


def _real(low: float, high: float) -> Callable[[str], float]:
    """An argparse type: a plain decimal (no nan, inf or exponent) from `low` to `high`."""

    def convert(text: str) -> float:
        if not re.fullmatch(r"[0-9]{1,9}(\.[0-9]{1,9})?", text.strip()) \
                or not low <= float(text) <= high:
            raise argparse.ArgumentTypeError(f"must be a number from {low:g} to {high:g}")
        return float(text)

    return convert


def build_parser(plugins: dict | None = None) -> argparse.ArgumentParser:
    from freshet import __version__

    parser = _Parser(prog="freshet", description="Operate a Freshet pipeline.",
                     epilog="It talks to the local stack that `freshet demo` started in this "
                            "folder (see `freshet context`), else to what the environment "
                            "names (FIRESTORE_EMULATOR_HOST, GOOGLE_CLOUD_PROJECT).")
    parser.add_argument("--version", action="version", version=f"freshet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    jobs = sub.add_parser("jobs", help="list, show, run, pause, resume or archive jobs")
    jsub = jobs.add_subparsers(dest="action", required=True, parser_class=_Parser)
    p = jsub.add_parser("list", help="all jobs")
    p.add_argument("--status", choices=("active", "paused", "archived", "completed"),
                   help="only jobs in this state (none found: exit 1)")
    _json_option(p)
    p.set_defaults(fn=cmd_jobs_list)
    p = jsub.add_parser("show", help="one job and its recent runs")
    p.add_argument("job_id", help="the job's id (freshet jobs list)")
    p.add_argument("--limit", type=_whole(1, 500), default=10, help="how many recent runs")
    _json_option(p)
    p.set_defaults(fn=cmd_jobs_show)
    p = jsub.add_parser("run", help="run a job now")
    p.add_argument("job_id", help="the job's id (freshet jobs list)")
    p.add_argument("--key", help="idempotency key: the same key never runs twice")
    p.set_defaults(fn=cmd_jobs_run)
    for name in ("pause", "resume", "archive"):
        p = jsub.add_parser(name, help=f"{name} a job")
        p.add_argument("job_id", help="the job's id (freshet jobs list)")
        p.set_defaults(fn=_job_action(name))
    _console_parsers(jsub, sub, parser_class=_Parser)

    runs = sub.add_parser("runs", help="recent runs")
    rsub = runs.add_subparsers(dest="action", required=True, parser_class=_Parser)
    p = rsub.add_parser("list", help="recent runs, newest first")
    p.add_argument("--job", help="only this job's runs (unknown job: exit 2; none: exit 1)")
    p.add_argument("--limit", type=_whole(1, 500), default=20, help="how many")
    _json_option(p)
    p.set_defaults(fn=cmd_runs_list)
    p = rsub.add_parser("show", help="one run, its attempts and its Logs Explorer link")
    p.add_argument("run_id", help="the run's id (freshet runs list)")
    _json_option(p)
    p.set_defaults(fn=cmd_runs_show)
    _run_action_parsers(rsub)

    p = sub.add_parser(
        "backfill", help="run a job's past slots (or: backfill status [ID], backfill cancel ID)",
        description="freshet backfill JOB --from T1 --to T2 [--dry-run] [--max-parallel N] "
                    "[--rerun]: one run per slot of JOB in [T1, T2] (up to now) that has no "
                    "successful run yet, at most N at once. `freshet backfill status [ID]` "
                    "shows progress; `freshet backfill cancel ID` cancels.")
    p.add_argument("target", metavar="JOB|status|cancel",
                   help="the job to backfill, or `status` / `cancel`")
    p.add_argument("ident", nargs="?", metavar="ID", help="a backfill's id (status, cancel)")
    p.add_argument("--from", dest="start", help="first slot, ISO 8601 with a zone")
    p.add_argument("--to", dest="end", help="last slot, ISO 8601 with a zone")
    p.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    p.add_argument("--max-parallel", type=_whole(0, 10**6), default=1,
                   help="runs at once")
    p.add_argument("--rerun", action="store_true", help="run slots that succeeded too")
    p.add_argument("--key", help="idempotency key: the same key never backfills twice")
    p.add_argument("--job", help="status: only this job's backfills")
    p.add_argument("--limit", type=_whole(1, 500), default=10, help="status: how many")
    _json_option(p, "status: as JSON, for scripts")
    p.set_defaults(fn=cmd_backfill)

    incident = sub.add_parser("incident", help="open, note, resolve, list or show incidents")
    isub = incident.add_subparsers(dest="action", required=True, parser_class=_Parser)
    p = isub.add_parser("open", help="open an incident (a banner on the status page)")
    p.add_argument("title", help="one line, shown on the page")
    p.add_argument("--note", help="the first note (default: the title)")
    for name in ("job", "dataset", "consumer"):
        p.add_argument(f"--{name}", action="append", default=[],
                       help=f"a {name} it is about (repeatable; none: the whole pipeline)")
    p.add_argument("--eta", help=ETA_HELP)
    p.set_defaults(fn=cmd_incident_open)
    p = isub.add_parser("note", help="add a timestamped note")
    p.add_argument("incident_id", help=INCIDENT_ID_HELP)
    p.add_argument("text", help="the note")
    p.add_argument("--eta", help="a new ETA: " + ETA_HELP)
    p.set_defaults(fn=cmd_incident_note)
    p = isub.add_parser("resolve", help="resolve it, with a closing note (an incident "
                                        "resolved already: exit 2)")
    p.add_argument("incident_id", help=INCIDENT_ID_HELP)
    p.add_argument("text", nargs="?", help="the closing note (default: 'Resolved.')")
    p.set_defaults(fn=cmd_incident_resolve)
    p = isub.add_parser("list", help="open incidents, then recent ones")
    _json_option(p)
    p.set_defaults(fn=cmd_incident_list)
    p = isub.add_parser("show", help="one incident and its notes")
    p.add_argument("incident_id", help=INCIDENT_ID_HELP)
    _json_option(p)
    p.set_defaults(fn=cmd_incident_show)

    p = sub.add_parser("datasets", help="datasets and how fresh they are")
    _json_option(p)
    p.set_defaults(fn=cmd_datasets)
    p = sub.add_parser("status", help="overall status")
    _json_option(p)
    p.set_defaults(fn=cmd_status)

    p = sub.add_parser("apply", help="make Firestore, Cloud Tasks and Cloud Scheduler "
                                     "match the pipeline config")
    p.add_argument("--config", help=CONFIG_HELP)
    p.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    p.add_argument("--skip-scheduler", action="store_true",
                   help="leave Cloud Scheduler alone")
    p.add_argument("--project", help="the project to apply to, instead of the config's "
                                     "(make deploy PROJECT=...)")
    p.set_defaults(fn=cmd_apply)

    p = sub.add_parser("doctor", help="check a deployment (read-only): APIs, functions, "
                                      "accounts, roles, queue, jobs, heartbeat, page")
    p.add_argument("--config", help=CONFIG_HELP)
    p.add_argument("--project", help="the deployed project, instead of the config's")
    p.set_defaults(fn=cmd_doctor)

    p = sub.add_parser("cost", help="estimate the pipeline's monthly Google Cloud bill")
    p.add_argument("--config", default=os.environ.get("FRESHET_CONFIG") or _default_config(),
                   help="the pipeline config")
    p.add_argument("--measured", default=_default_measured(),
                   help="the benchmarks' figures (default: the copy of bench/results.json "
                        "this package carries)")
    p.add_argument("--prices", default=str(Path(__file__).with_name("prices.yaml")),
                   help="a price table like freshet/ops/prices.yaml (yours, for your "
                        "location)")
    p.add_argument("--retry-rate", type=_real(0, 1), default=0.02,
                   help="share of attempts that fail transiently and are retried")
    p.add_argument("--failure-rate", type=_real(0, 1), default=0.01,
                   help="share of runs that fail for good, their retries spent: each "
                        "turns its datasets' states (to failing, and back at the next "
                        "success), which rewrites their badges and consumers' files")
    p.add_argument("--sync-seconds", type=_real(0, 3600), default=1.0,
                   help="how long a sync itself runs inside run_task, in seconds")
    p.add_argument("--engine-minutes", type=_real(0, 168 * 60), default=10.0,
                   help="how long a BigQuery or Cloud Run job's work runs, in minutes: its "
                        "run waits that long, polled with backoff (each poll a task, a "
                        "call, 3 reads and a write)")
    p.add_argument("--run-retention-days", type=_whole(1, MAX_RUN_RETENTION_DAYS),
                   default=None,
                   help="how long run documents are kept, for their storage and TTL "
                        "deletes (default: the config's retention.runs_days)")
    p.add_argument("--herd", type=_whole(1, 10**7), default=10_000,
                   help="runs due at one slot, for the herd's modelled start")
    p.add_argument("--lookahead-s", type=_real(1, 3600), default=60.0,
                   help="the tick's lookahead, FRESHET_LOOKAHEAD_S")
    p.set_defaults(fn=cmd_cost)

    site = sub.add_parser("site", help="the status page")
    ssub = site.add_subparsers(dest="action", required=True, parser_class=_Parser)
    ssub.add_parser("build", help="render and publish the status page now").set_defaults(
        fn=cmd_site_build)

    p = sub.add_parser("context", help="which stack the CLI talks to (the local demo's "
                                       ".freshet/context.json, or the environment)")
    p.add_argument("--json", action="store_true", help="as JSON, for scripts")
    p.set_defaults(fn=cmd_context)

    _add_plugins(parser, sub, plugins or {})
    return parser


def _json_option(parser, text: str = "as JSON, for scripts") -> None:
    parser.add_argument("--json", action="store_true", help=text)


def _default_config() -> str:
    """infra/pipeline.yaml of the work tree this package lives in, else of the cwd."""
    tree = Path(__file__).resolve().parents[3] / DEFAULT_CONFIG
    return str(tree) if tree.exists() else DEFAULT_CONFIG


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _loaded.clear()
    try:
        with _context_environment():
            parser = build_parser()
            if not argv or argv[0] not in parser.get_default("commands"):
                # Not a built-in: look for plugins only now (scanning entry points costs
                # ~0.1 s, which a built-in command need not pay).
                plugins = plugin_commands()
                parser = build_parser(plugins)
            if argv[:1] and argv[0] in parser.get_default("plugins"):
                return plugins[argv[0]].load()(argv[1:])  # it parses its own options
            if argv[:1] == ["demo"]:
                raise UserError("`freshet demo` comes with the work tree's local tooling: "
                                "run `make demo` there (it installs the tooling's commands)")
            args = parser.parse_args(argv)
            return args.fn(args)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:
        print("freshet: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `freshet runs list | head`: the reader has all it wants
        _quiet_stdout()
        return 0
    except Exception as exc:  # one line, never a traceback
        message, code = describe_error(exc)
        if os.environ.get("FRESHET_DEBUG"):
            traceback.print_exc()
        print(f"freshet: error: {printable(message)}", file=sys.stderr)
        return code


@contextlib.contextmanager
def _context_environment():
    """The running local stack's variables (freshet.ops.context) for this command, where
    the environment does not set them; the environment as it was afterwards."""
    from freshet.ops import context

    found = context.active()
    added = found.missing_env(os.environ) if found is not None else {}
    os.environ.update(added)
    try:
        yield found
    finally:
        for key in added:
            os.environ.pop(key, None)


def _quiet_stdout() -> None:
    """After a closed pipe: send what is left to /dev/null so exit prints nothing."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def describe_error(exc: BaseException) -> tuple[str, int]:
    """The one line and the exit code, from the table the HTTP layer uses too."""
    from freshet.ops.answers import answer_for

    answer = answer_for(exc)
    return answer.line, answer.exit_code


if __name__ == "__main__":
    sys.exit(main())
