"""The declarative pipeline config (infra/pipeline.yaml): parsed, validated, typed.

One file describes a whole pipeline: project and region, the Cloud Tasks queues, the
control schedules (tick, recover, publish), the jobs, the dataset catalog and the kill
switches. Every error names the file, the line and the field:

    infra/pipeline.yaml:23: jobs[2].schedule.cron: invalid cron expression '61 * * * *'

Line numbers come from PyYAML's composed node tree, which keeps each node's position.
Nothing here does I/O beyond reading the file (and importing the sync modules the
config names, so that their kinds are known).
"""

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

import yaml

from freshet.core.alerts import RouteSpec, make_route
from freshet.core.catalog import (
    CONSUMER_KINDS,
    Catalog,
    Consumer,
    DatasetSpec,
    check_catalog,
    upstream_cycle,
)
from freshet.core.control import Control, parse_control
from freshet.core.deadlines import make_deadline
from freshet.core.errors import ValidationError
from freshet.core.freshness import make_requirement
from freshet.core.models import Job, check_dataset_key, check_id, new_job
from freshet.core.schedules import make_schedule
from freshet.core.specs import (
    DEFAULT_CONTROL_SCHEDULES,
    SCHEDULE_TARGETS,
    ControlSchedule,
    QueueSpec,
)
from freshet.core.timeutil import parse_duration
from freshet.core.windows import NO_MAINTENANCE, Maintenance, make_window
from freshet.loop.plugins import check_module_name, env_modules, import_sync_modules
from freshet.loop.registry import known_kinds

HTTP_METHODS = ("POST", "GET", "PUT")

Path = tuple[str | int, ...]


class ConfigError(ValidationError):
    """A config problem, located: `file:line: field: message`."""

    def __init__(self, file: str, line: int | None, field: str, message: str):
        super().__init__(field, message)
        self.file = file
        self.line = line
        where = f"{file}:{line}" if line else file
        self.args = (f"{where}: {field}: {message}",)

    def __str__(self) -> str:
        return self.args[0]


@dataclass(frozen=True)
class FunctionsConfig:
    """Where the functions live and who they run and are called as."""

    base_url: str
    service_account: str  # the functions' own identity
    invoker_email: str  # Cloud Scheduler and Cloud Tasks sign OIDC tokens as this account
    allowed_callers: tuple[str, ...] = ()  # operators allowed to call the api
    source: str = "functions"
    runtime: str = "python311"
    env: tuple[tuple[str, str], ...] = ()  # extra environment variables for every function

    def url(self, entry_point: str) -> str:
        return f"{self.base_url.rstrip('/')}/{entry_point}"


@dataclass(frozen=True)
class PipelineConfig:
    path: str
    project: str
    region: str
    functions: FunctionsConfig
    queues: tuple[QueueSpec, ...]
    control_schedules: tuple[ControlSchedule, ...]
    jobs: tuple[Job, ...]
    catalog: Catalog
    # None when the file has no `control:` section: apply then leaves the switches alone.
    control: Control | None
    sync_modules: tuple[str, ...] = ()
    job_ids: frozenset[str] = field(default_factory=frozenset)
    maintenance: Maintenance = NO_MAINTENANCE

    @property
    def queue(self) -> str:
        """The queue runs go to: the first one declared."""
        return self.queues[0].name


def load_config(path: str | os.PathLike, *, env: Mapping[str, str] = os.environ
                ) -> PipelineConfig:
    """Read and validate one pipeline file. Raises ConfigError naming file:line: field."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError(path, None, "config", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, None, "config", f"cannot read the file: {exc}") from None
    return parse_config(text, path, env=env)


def parse_config(text: str, path: str = "<config>", *,
                 env: Mapping[str, str] = os.environ) -> PipelineConfig:
    doc, lines = _compose(text, path)
    try:
        return _Parser(doc, env).config(path)
    except ValidationError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(path, _line_for(lines, exc.field), exc.field, exc.message) from None


# -- YAML with positions ------------------------------------------------------------

def _compose(text: str, path: str) -> tuple[dict, dict[Path, int]]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(path, line, "yaml", f"{exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, None, "yaml", str(exc)) from None
    if root is None:
        raise ConfigError(path, 1, "config", "the file is empty")
    lines: dict[Path, int] = {}
    constructor = yaml.SafeLoader("")
    try:
        data = _convert(root, (), lines, constructor)
    except _DuplicateKey as dup:
        raise ConfigError(path, dup.line, _field(dup.path), "duplicate key") from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, None, "yaml", str(exc)) from None
    if not isinstance(data, dict):
        raise ConfigError(path, root.start_mark.line + 1, "config", "must be a mapping")
    return data, lines


class _DuplicateKey(Exception):
    def __init__(self, path: Path, line: int):
        self.path, self.line = path, line


def _convert(node: yaml.Node, path: Path, lines: dict[Path, int], constructor) -> object:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict = {}
        for key_node, value_node in node.value:
            key = constructor.construct_object(key_node, deep=True)
            key = key if isinstance(key, str) else str(key)
            here = (*path, key)
            if key in out:
                raise _DuplicateKey(here, key_node.start_mark.line + 1)
            lines[here] = key_node.start_mark.line + 1
            out[key] = _convert(value_node, here, lines, constructor)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), lines, constructor) for i, item in enumerate(node.value)]
    return constructor.construct_object(node, deep=True)


def _field(path: Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "config"


_PART_RE = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _parse_field(name: str) -> Path:
    return tuple(int(index) if index else key for key, index in _PART_RE.findall(name))


def _line_for(lines: dict[Path, int], field_name: str) -> int | None:
    """The line of the field, or of the nearest enclosing field the file has."""
    path = _parse_field(field_name)
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


# -- validation ----------------------------------------------------------------------

_PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_REGION_RE = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
_QUEUE_RE = re.compile(r"^[A-Za-z0-9-]{1,100}$")
_SCHEDULER_JOB_RE = re.compile(r"^[A-Za-z0-9_-]{1,500}$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ENV_NAME_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")

TOP_KEYS = ("project", "region", "functions", "sync_modules", "queues", "control_schedules",
            "jobs", "datasets", "consumers", "control", "maintenance", "routes")
JOB_KEYS = ("id", "kind", "schedule", "params", "secret_params", "max_retries",
            "stuck_threshold_minutes", "produces", "allow_overlap", "description")
QUEUE_KEYS = ("name", "max_attempts", "min_backoff", "max_backoff", "max_doublings",
              "max_dispatches_per_second", "max_concurrent_dispatches")
SCHEDULE_KEYS = ("name", "cron", "timezone", "target", "method", "deadline", "description")
FUNCTIONS_KEYS = ("base_url", "service_account", "invoker_email", "allowed_callers",
                  "source", "runtime", "env")
DATASET_KEYS = ("key", "title", "description", "owner", "upstream", "routes")
CONSUMER_KEYS = ("id", "title", "kind", "url", "owner", "requires", "deadlines", "routes")
REQUIREMENT_KEYS = ("dataset", "warn_after", "error_after")


def _mapping(value: object, where: str, allowed: tuple[str, ...],
             required: tuple[str, ...] = ()) -> dict:
    if not isinstance(value, dict):
        raise ValidationError(where or "config", "must be a mapping")
    for key in value:
        if key not in allowed:
            prefix = f"{where}." if where else ""
            raise ValidationError(f"{prefix}{key}",
                                  f"unknown key (expected one of: {', '.join(allowed)})")
    for key in required:
        if key not in value:
            prefix = f"{where}." if where else ""
            raise ValidationError(f"{prefix}{key}", "is required")
    return value


def _list(value: object, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValidationError(where, "must be a list")
    return value


def _text(value: object, where: str, pattern: re.Pattern | None = None,
          hint: str = "") -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(where, "must be a non-empty string")
    if pattern is not None and not pattern.match(value):
        raise ValidationError(where, f"{value!r} is not valid{': ' + hint if hint else ''}")
    return value


def _optional_text(value: object, where: str, limit: int = 2000) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise ValidationError(where, f"must be a string of at most {limit} characters")
    return value


def _number(value: object, where: str, low: float, high: float, integer: bool = True):
    kinds = int if integer else int | float
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ValidationError(where, "must be an integer" if integer else "must be a number")
    if not low <= value <= high:
        raise ValidationError(where, f"must be between {low:g} and {high:g}")
    return value


def _unique(items: list, key: str, where: str) -> None:
    seen: set = set()
    for i, item in enumerate(items):
        if item in seen:
            raise ValidationError(f"{where}[{i}].{key}", f"duplicate {key} {item!r}")
        seen.add(item)


class _Parser:
    def __init__(self, doc: dict, env: Mapping[str, str]):
        self.doc = doc
        self.env = env

    def config(self, path: str) -> PipelineConfig:
        doc = _mapping(self.doc, "", TOP_KEYS, required=("project", "region"))
        project = _text(doc["project"], "project", _PROJECT_RE,
                        "6-30 lowercase letters, digits or '-'")
        region = _text(doc["region"], "region", _REGION_RE, "a region such as europe-west1")
        modules = self.sync_modules(doc.get("sync_modules"))
        catalog = self.catalog(doc)
        jobs = self.jobs(doc.get("jobs"), catalog)
        control = None if doc.get("control") is None else parse_control(doc["control"],
                                                                          "control.")
        maintenance = self.maintenance(doc.get("maintenance"), jobs, catalog)
        return PipelineConfig(
            path=path, project=project, region=region,
            functions=self.functions(doc.get("functions"), project, region),
            queues=self.queues(doc.get("queues")),
            control_schedules=self.schedules(doc.get("control_schedules")),
            jobs=jobs, catalog=catalog, control=control, sync_modules=modules,
            job_ids=frozenset(j.id for j in jobs), maintenance=maintenance,
        )

    def maintenance(self, value: object, jobs: tuple[Job, ...],
                    catalog: Catalog) -> Maintenance:
        windows = [make_window(raw, f"maintenance[{i}]")
                   for i, raw in enumerate(_list(value, "maintenance"))]
        _unique([w.id for w in windows], "id", "maintenance")
        known = {"jobs": {j.id for j in jobs}, "datasets": set(catalog.datasets),
                 "consumers": {c.id for c in catalog.consumers}}
        for i, window in enumerate(windows):
            for name, ids in known.items():
                for j, ident in enumerate(getattr(window.scope, name)):
                    if ident not in ids:
                        raise ValidationError(f"maintenance[{i}].scope.{name}[{j}]",
                                              f"unknown {name[:-1]} {ident!r}")
        return Maintenance(tuple(windows))

    def sync_modules(self, value: object) -> tuple[str, ...]:
        names = [check_module_name(n, f"sync_modules[{i}]")
                 for i, n in enumerate(_list(value, "sync_modules"))]
        import_sync_modules(names, "sync_modules")
        import_sync_modules(env_modules(self.env))
        return tuple(names)

    def functions(self, value: object, project: str, region: str) -> FunctionsConfig:
        doc = _mapping(value or {}, "functions", FUNCTIONS_KEYS)
        where = "functions."
        base_url = doc.get("base_url") or f"https://{region}-{project}.cloudfunctions.net"
        if not isinstance(base_url, str) or not base_url.startswith(("https://", "http://")):
            raise ValidationError(f"{where}base_url", "must be an http(s) URL")
        account = f"@{project}.iam.gserviceaccount.com"
        emails = {}
        for name, default in (("service_account", "freshet-runtime"),
                              ("invoker_email", "freshet-invoker")):
            emails[name] = _text(doc.get(name, default + account), where + name, _EMAIL_RE,
                                 "an email address")
        callers = tuple(_text(c, f"{where}allowed_callers[{i}]", _EMAIL_RE, "an email address")
                        for i, c in enumerate(_list(doc.get("allowed_callers"),
                                                    where + "allowed_callers")))
        env = doc.get("env") or {}
        if not isinstance(env, dict):
            raise ValidationError(f"{where}env", "must be a mapping of NAME: value")
        for name, val in env.items():
            _text(name, f"{where}env.{name}", _ENV_NAME_RE, "an upper-case variable name")
            if not isinstance(val, str | int | float) or isinstance(val, bool):
                raise ValidationError(f"{where}env.{name}", "must be a string or a number")
        return FunctionsConfig(
            base_url=base_url.rstrip("/"), service_account=emails["service_account"],
            invoker_email=emails["invoker_email"], allowed_callers=callers,
            source=_text(doc.get("source", "functions"), where + "source"),
            runtime=_text(doc.get("runtime", "python311"), where + "runtime",
                          re.compile(r"^python3\d+$"), "a Python runtime such as python311"),
            env=tuple(sorted((k, str(v)) for k, v in env.items())),
        )

    def queues(self, value: object) -> tuple[QueueSpec, ...]:
        items = _list(value, "queues") if value is not None else [{"name": "freshet-runs"}]
        if not items:
            raise ValidationError("queues", "needs at least one queue")
        specs = []
        for i, raw in enumerate(items):
            where = f"queues[{i}]"
            doc = _mapping(raw, where, QUEUE_KEYS, required=("name",))
            defaults = QueueSpec(name="x")
            min_backoff = self._seconds(doc, where, "min_backoff", defaults.min_backoff_s)
            max_backoff = self._seconds(doc, where, "max_backoff", defaults.max_backoff_s)
            if max_backoff < min_backoff:
                raise ValidationError(f"{where}.max_backoff", "must not be below min_backoff")
            specs.append(QueueSpec(
                name=_text(doc["name"], f"{where}.name", _QUEUE_RE,
                           "letters, digits or '-', at most 100"),
                max_attempts=_number(doc.get("max_attempts", defaults.max_attempts),
                                     f"{where}.max_attempts", 1, 1000),
                min_backoff_s=min_backoff, max_backoff_s=max_backoff,
                max_doublings=_number(doc.get("max_doublings", defaults.max_doublings),
                                      f"{where}.max_doublings", 0, 16),
                max_dispatches_per_second=float(_number(
                    doc.get("max_dispatches_per_second", defaults.max_dispatches_per_second),
                    f"{where}.max_dispatches_per_second", 0.001, 500, integer=False)),
                max_concurrent_dispatches=_number(
                    doc.get("max_concurrent_dispatches", defaults.max_concurrent_dispatches),
                    f"{where}.max_concurrent_dispatches", 1, 5000),
            ))
        _unique([s.name for s in specs], "name", "queues")
        return tuple(specs)

    @staticmethod
    def _seconds(doc: dict, where: str, key: str, default: float) -> float:
        if key not in doc:
            return default
        return parse_duration(doc[key], f"{where}.{key}").total_seconds()

    def schedules(self, value: object) -> tuple[ControlSchedule, ...]:
        if value is None:
            return DEFAULT_CONTROL_SCHEDULES
        found = []
        for i, raw in enumerate(_list(value, "control_schedules")):
            where = f"control_schedules[{i}]"
            doc = _mapping(raw, where, SCHEDULE_KEYS, required=("name", "cron", "target"))
            sched = make_schedule(cron=doc["cron"], timezone=doc.get("timezone", "UTC"),
                                  field=where)
            target = doc["target"]
            if target not in SCHEDULE_TARGETS:
                raise ValidationError(f"{where}.target",
                                      f"must be one of {', '.join(SCHEDULE_TARGETS)}")
            method = doc.get("method", "POST")
            if method not in HTTP_METHODS:
                raise ValidationError(f"{where}.method",
                                      f"must be one of {', '.join(HTTP_METHODS)}")
            deadline = parse_duration(doc.get("deadline", "3m"), f"{where}.deadline")
            if not timedelta(seconds=15) <= deadline <= timedelta(minutes=30):
                raise ValidationError(f"{where}.deadline", "must be between 15s and 30m")
            found.append(ControlSchedule(
                name=_text(doc["name"], f"{where}.name", _SCHEDULER_JOB_RE,
                           "letters, digits, '_' or '-'"),
                cron=sched.cron, timezone=sched.timezone, target=target, method=method,
                deadline=deadline,
                description=_optional_text(doc.get("description"), f"{where}.description", 500),
            ))
        _unique([s.name for s in found], "name", "control_schedules")
        return tuple(found)

    def routes(self, value: object) -> tuple[RouteSpec, ...]:
        routes = tuple(make_route(raw, f"routes[{i}]")
                       for i, raw in enumerate(_list(value, "routes")))
        _unique([r.id for r in routes], "id", "routes")
        return routes

    @staticmethod
    def route_ids(value: object, where: str, known: set[str]) -> tuple[str, ...]:
        ids = _list(value, where)
        for i, route in enumerate(ids):
            if route not in known:
                raise ValidationError(f"{where}[{i}]", f"unknown route {route!r} (declare it "
                                      "under routes)")
        return tuple(ids)

    def catalog(self, doc: dict) -> Catalog:
        routes = self.routes(doc.get("routes"))
        route_ids = {r.id for r in routes}
        datasets: dict[str, DatasetSpec] = {}
        raw_sets = _list(doc.get("datasets"), "datasets")
        for i, raw in enumerate(raw_sets):
            where = f"datasets[{i}]"
            d = _mapping(raw, where, DATASET_KEYS, required=("key",))
            key = check_dataset_key(d["key"], f"{where}.key")
            if key in datasets:
                raise ValidationError(f"{where}.key", f"duplicate key {key!r}")
            upstream = _list(d.get("upstream"), f"{where}.upstream")
            datasets[key] = DatasetSpec(
                key=key, title=_optional_text(d.get("title"), f"{where}.title", 200),
                description=_optional_text(d.get("description"), f"{where}.description"),
                owner=_optional_text(d.get("owner"), f"{where}.owner", 200),
                upstream=tuple(check_dataset_key(u, f"{where}.upstream[{j}]")
                               for j, u in enumerate(upstream)),
                routes=self.route_ids(d.get("routes"), f"{where}.routes", route_ids),
            )
        for i, spec in enumerate(datasets.values()):
            for j, up in enumerate(spec.upstream):
                if up not in datasets:
                    raise ValidationError(f"datasets[{i}].upstream[{j}]",
                                          f"unknown dataset {up!r}")
        cycle = upstream_cycle(datasets)
        if cycle:
            first = list(datasets).index(cycle[0])
            raise ValidationError(f"datasets[{first}].upstream",
                                  "upstream cycle: " + " -> ".join(cycle))
        consumers = self.consumers(doc.get("consumers"), datasets, route_ids)
        catalog = Catalog(datasets=datasets, consumers=consumers, routes=routes)
        check_catalog(catalog)  # the same checks publish_status relies on
        return catalog

    def consumers(self, value: object, datasets: dict,
                  route_ids: set[str]) -> tuple[Consumer, ...]:
        found = []
        for i, raw in enumerate(_list(value, "consumers")):
            where = f"consumers[{i}]"
            c = _mapping(raw, where, CONSUMER_KEYS, required=("id",))
            requires = []
            for j, rraw in enumerate(_list(c.get("requires"), f"{where}.requires")):
                rwhere = f"{where}.requires[{j}]"
                r = _mapping(rraw, rwhere, REQUIREMENT_KEYS,
                             required=("dataset", "warn_after", "error_after"))
                try:
                    req = make_requirement(r["dataset"], r["warn_after"], r["error_after"],
                                           field=rwhere)
                except ValidationError as exc:
                    name = exc.field if exc.field.startswith(rwhere) else f"{rwhere}.{exc.field}"
                    raise ValidationError(name, exc.message) from None
                if req.dataset not in datasets:
                    raise ValidationError(f"{rwhere}.dataset",
                                          f"unknown dataset {req.dataset!r}")
                requires.append(req)
            kind = c.get("kind", "page")
            if kind not in CONSUMER_KINDS:
                raise ValidationError(f"{where}.kind",
                                      f"must be one of {', '.join(CONSUMER_KINDS)}")
            cid = check_id(c["id"], f"{where}.id")
            needed = [r.dataset for r in requires]
            deadlines = tuple(make_deadline(d, f"{where}.deadlines[{k}]", needed)
                              for k, d in enumerate(_list(c.get("deadlines"),
                                                          f"{where}.deadlines")))
            found.append(Consumer(
                id=cid, title=_optional_text(c.get("title"), f"{where}.title", 200) or cid,
                kind=kind, url=_optional_text(c.get("url"), f"{where}.url", 2000),
                requires=tuple(requires),
                owner=_optional_text(c.get("owner"), f"{where}.owner", 200),
                deadlines=deadlines,
                routes=self.route_ids(c.get("routes"), f"{where}.routes", route_ids),
            ))
        _unique([c.id for c in found], "id", "consumers")
        return tuple(found)

    def jobs(self, value: object, catalog: Catalog) -> tuple[Job, ...]:
        kinds = set(known_kinds())
        jobs: list[Job] = []
        for i, raw in enumerate(_list(value, "jobs")):
            where = f"jobs[{i}]"
            doc = _mapping(raw, where, JOB_KEYS, required=("id", "kind", "schedule"))
            try:
                job = new_job(**doc)
            except ValidationError as exc:
                raise ValidationError(f"{where}.{exc.field}", exc.message) from None
            if job.kind not in kinds:
                raise ValidationError(f"{where}.kind", f"unknown kind {job.kind!r} (known: "
                                      f"{', '.join(sorted(kinds))}; add yours with sync_modules)")
            for j, key in enumerate(job.produces):
                if catalog.datasets and key not in catalog.datasets:
                    raise ValidationError(f"{where}.produces[{j}]",
                                          f"dataset {key!r} is not declared under datasets")
            jobs.append(job)
        _unique([j.id for j in jobs], "id", "jobs")
        return tuple(jobs)
