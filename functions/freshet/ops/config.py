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
from dataclasses import dataclass, field, replace
from datetime import timedelta

import yaml

from freshet.core import herd
from freshet.core.alerts import MAX_SUBJECTS_PER_ROUTE, RouteSpec
from freshet.core.catalog import (
    CONSUMER_KINDS,
    Catalog,
    Consumer,
    DatasetSpec,
    Pool,
    check_catalog,
    check_link,
    upstream_cycle,
)
from freshet.core.control import Control, parse_control
from freshet.core.deadlines import make_deadline
from freshet.core.egress import EgressPolicy, check_host_pattern
from freshet.core.errors import ValidationError
from freshet.core.freshness import make_requirement
from freshet.core.herd import MAX_DISPATCH_SHARDS
from freshet.core.limits import (
    FunctionLimits,
    check_deadline_fits,
    check_dispatch_deadline,
    check_function,
    check_job,
    check_schedule_deadline,
)
from freshet.core.models import Job, check_dataset_key, check_id, check_pool, new_job
from freshet.core.observe import ObserveSpec, make_observe
from freshet.core.schedules import make_schedule
from freshet.core.settings import DEFAULT_RUN_RETENTION_DAYS, MAX_RUN_RETENTION_DAYS
from freshet.core.specs import (
    DEFAULT_CONTROL_SCHEDULES,
    DEFAULT_FUNCTION_LIMITS,
    DEFAULT_POOL,
    ENTRY_POINTS,
    SCHEDULE_TARGETS,
    ControlSchedule,
    PoolSpec,
    QueueSpec,
    pool_queue_spec,
)
from freshet.core.timeutil import parse_duration
from freshet.core.triggers import check_triggers, describe_cycle, trigger_cycle
from freshet.core.values import check_bool, is_int, is_number
from freshet.core.windows import NO_MAINTENANCE, Maintenance, check_windows, make_window
from freshet.loop.plugins import check_module_name, env_modules, import_sync_modules
from freshet.loop.registry import CheckContext, check_params
from freshet.status.notify import make_route

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
    """Where the functions live, who they run and are called as, what they may use."""

    base_url: str
    service_account: str  # the functions' own identity
    invoker_email: str  # Cloud Scheduler and Cloud Tasks sign OIDC tokens as this account
    allowed_callers: tuple[str, ...] = ()  # operators allowed to call the api
    source: str = "functions"
    runtime: str = "python311"
    env: tuple[tuple[str, str], ...] = ()  # extra environment variables for every function
    # Cloud Build runs each function's build as this account (new projects' default
    # build account may lack the permissions a build needs).
    build_service_account: str = ""
    limits: tuple[tuple[str, FunctionLimits], ...] = tuple(DEFAULT_FUNCTION_LIMITS.items())

    def url(self, entry_point: str) -> str:
        return f"{self.base_url.rstrip('/')}/{entry_point}"

    def limits_for(self, entry_point: str) -> FunctionLimits:
        return dict(self.limits).get(entry_point) or DEFAULT_FUNCTION_LIMITS[entry_point]


@dataclass(frozen=True)
class SiteConfig:
    """The status page's bucket (and the snapshots' bucket), and who may read the page."""

    bucket: str
    snapshot_bucket: str
    public: bool = False  # true: anyone on the internet may read the page
    viewers: tuple[str, ...] = ()  # IAM members (user:, group:, domain:, serviceAccount:)

    @property
    def url(self) -> str:
        """Where people open the page: with their Google login, unless it is public."""
        host = "storage.googleapis.com" if self.public else "storage.cloud.google.com"
        return f"https://{host}/{self.bucket}/index.html"


@dataclass(frozen=True)
class PipelineConfig:
    path: str
    project: str
    region: str
    functions: FunctionsConfig
    site: SiteConfig
    queues: tuple[QueueSpec, ...]
    control_schedules: tuple[ControlSchedule, ...]
    jobs: tuple[Job, ...]
    catalog: Catalog
    # None when the file has no `control:` section: apply then leaves the switches alone.
    control: Control | None
    sync_modules: tuple[str, ...] = ()
    job_ids: frozenset[str] = field(default_factory=frozenset)
    firestore_location: str = ""  # permanent once the database exists; default: the region
    pools: tuple[PoolSpec, ...] = ()
    maintenance: Maintenance = NO_MAINTENANCE
    # Where http_fetch and the routes may connect: apply writes it to settings/control.
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    # Datasets seen rather than produced: {key: where and how often to look}.
    observed: tuple[tuple[str, ObserveSpec], ...] = ()
    # retention.runs_days: how long a run is kept after it ends (its expire_at, which
    # the TTL policy deploy creates acts on); deploy passes it to the functions.
    runs_days: int = DEFAULT_RUN_RETENTION_DAYS
    # Each field's line in the file, for errors found later (apply's plan knows `now`).
    lines: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def queue(self) -> str:
        """The queue runs go to: the first one declared (the default pool's)."""
        return self.queues[0].name

    @property
    def run_queue(self) -> QueueSpec:
        return self.queues[0]

    @property
    def all_queues(self) -> tuple[QueueSpec, ...]:
        """Every Cloud Tasks queue the config means, what apply creates and deploy binds:
        each declared queue spread over its dispatch shards, one per pool (the default
        queue's settings, the pool's max_concurrent_dispatches), and the claims queue
        the herd's claim shards travel on."""
        return (tuple(q for spec in self.queues for q in spec.queues())
                + tuple(pool_queue_spec(self.queues[0], p) for p in self.pools)
                + (self.queues[0].claims(),))

    @property
    def dispatch_shards(self) -> int:
        return self.queues[0].dispatch_shards

    def error(self, field_name: str, message: str) -> "ConfigError":
        """A ConfigError about `field_name` at its line in the file."""
        return ConfigError(self.path, _line_for(self.lines, field_name), field_name, message)


def load_config(path: str | os.PathLike, *, env: Mapping[str, str] = os.environ,
                project: str | None = None) -> PipelineConfig:
    """Read and validate one pipeline file. Raises ConfigError naming file:line: field.

    `project` replaces the file's project id (`make deploy PROJECT=...`), and with it
    every default derived from it (service accounts, URLs, buckets)."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError(path, None, "config", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, None, "config", f"cannot read the file: {exc}") from None
    return parse_config(text, path, env=env, project=project)


def parse_config(text: str, path: str = "<config>", *,
                 env: Mapping[str, str] = os.environ,
                 project: str | None = None) -> PipelineConfig:
    doc, lines = _compose(text, path)
    if project is not None:
        doc["project"] = project
    try:
        return replace(_Parser(doc, env).config(path), lines=lines)
    except ValidationError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(path, _line_for(lines, exc.field), exc.field, exc.message) from None


# -- YAML with positions ------------------------------------------------------------

# Nesting deeper than this is refused (a pipeline needs about 6 levels; params a few more).
MAX_DEPTH = 32
# Values that aliases (*name) may add beyond the file's own: a few shared blocks are fine,
# an alias of an alias of an alias ... (a "billion laughs") is refused, not expanded.
MAX_ALIAS_VALUES = 10_000


def _compose(text: str, path: str) -> tuple[dict, dict[Path, int]]:
    try:
        _check_depth(text, path)
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
    try:
        data = _Converter(lines).convert(root, (), root.start_mark.line + 1, 1)
    except _Refused as refused:
        raise ConfigError(path, refused.line, refused.field, refused.message) from None
    if not isinstance(data, dict):
        raise ConfigError(path, root.start_mark.line + 1, "config", "must be a mapping")
    return data, lines


def _check_depth(text: str, path: str) -> None:
    """Refuse deep nesting from the event stream, before PyYAML's recursive composer
    (and this module's conversion) could run out of stack on it."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigError(path, event.start_mark.line + 1, "yaml",
                                  f"nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


class _Refused(Exception):
    def __init__(self, line: int, field: str, message: str):
        self.line, self.field, self.message = line, field, message


class _Converter:
    """The composed node tree to plain values, noting each path's line.

    Linear in the file: an alias is copied, but every value it adds counts against
    MAX_ALIAS_VALUES, and an alias inside the value it names is refused."""

    def __init__(self, lines: dict[Path, int]):
        self.lines = lines
        self.constructor = yaml.SafeLoader("")
        self.seen: set[int] = set()
        self.open: set[int] = set()
        self.budget = MAX_ALIAS_VALUES
        self.copying = 0  # > 0 while inside a value reached through an alias
        self.alias_line = 0  # where that alias is used

    def convert(self, node: yaml.Node, path: Path, line: int, depth: int) -> object:
        """`line`: where the value is referred to (its key's line, or its list's)."""
        if id(node) in self.open:
            raise _Refused(line, _field(path), "an alias refers to the value that contains it")
        if depth > MAX_DEPTH:
            raise _Refused(line, _field(path), f"nested deeper than {MAX_DEPTH} levels")
        again = id(node) in self.seen
        if again:
            self.alias_line = line if not self.copying else self.alias_line
            self.budget -= 1
            if self.budget < 0:
                raise _Refused(self.alias_line, "yaml", "aliases (*name) expand to more than "
                               f"{MAX_ALIAS_VALUES:,} values; write the values out instead")
        self.seen.add(id(node))
        self.lines.setdefault(path, node.start_mark.line + 1)
        self.open.add(id(node))
        self.copying += again
        try:
            return self._value(node, path, depth)
        finally:
            self.copying -= again
            self.open.discard(id(node))

    def _value(self, node: yaml.Node, path: Path, depth: int) -> object:
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, (*path, i), line, depth + 1)
                    for i, item in enumerate(node.value)]
        return self._scalar(node, path, line)

    def _mapping(self, node: yaml.MappingNode, path: Path, depth: int) -> dict:
        out: dict = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise _Refused(line, _field(path), "a key must be a plain value")
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _Refused(line, _field(path), "merge keys (<<) are not supported; "
                               "write the keys out")
            key = self._scalar(key_node, path, line)
            key = key if isinstance(key, str) else str(key)
            here = (*path, key)
            if key in out:
                raise _Refused(line, _field(here), "duplicate key")
            self.lines[here] = line
            out[key] = self.convert(value_node, here, line, depth + 1)
        return out

    def _scalar(self, node: yaml.Node, path: Path, line: int) -> object:
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            raise _Refused(mark.line + 1 if mark else line, _field(path),
                           f"{exc.problem or exc}") from None
        except (yaml.YAMLError, ValueError, OverflowError) as exc:
            # e.g. an integer of more than 4,300 digits
            reason = str(exc).split(";")[0]
            raise _Refused(line, _field(path), f"cannot read this value ({reason})") from None


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
_LOCATION_RE = re.compile(r"^[a-z]+[0-9]*(-[a-z]+[0-9]+)?$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,61}[a-z0-9]$")
_MEMBER_RE = re.compile(r"^(user|group|serviceAccount):[^@\s]+@[^@\s]+\.[^@\s]+$"
                        r"|^domain:[a-z0-9.-]+\.[a-z]{2,}$")

TOP_KEYS = ("project", "region", "firestore_location", "functions", "site", "sync_modules",
            "queues", "pools", "control_schedules", "jobs", "datasets", "consumers", "control",
            "http_fetch", "maintenance", "routes", "retention")
RETENTION_KEYS = ("runs_days",)
JOB_KEYS = ("id", "kind", "schedule", "params", "secret_params", "max_retries",
            "stuck_threshold_minutes", "expected_runtime_minutes", "produces",
            "allow_overlap", "description", "catchup", "max_catchup", "max_lateness",
            "trigger", "pool")
POOL_KEYS = ("max_concurrent",)
QUEUE_KEYS = ("name", "dispatch_shards", "max_attempts", "min_backoff", "max_backoff",
              "max_doublings", "max_dispatches_per_second", "max_concurrent_dispatches",
              "dispatch_deadline")
SCHEDULE_KEYS = ("name", "cron", "timezone", "target", "method", "deadline", "description")
FUNCTIONS_KEYS = ("base_url", "service_account", "invoker_email", "build_service_account",
                  "allowed_callers", "source", "runtime", "env", "defaults", *ENTRY_POINTS)
LIMIT_KEYS = ("timeout", "memory", "cpu", "max_instances", "concurrency")
SITE_KEYS = ("bucket", "snapshot_bucket", "public", "viewers")
DATASET_KEYS = ("key", "title", "description", "owner", "upstream", "routes", "observe",
                "observe_every")
CONSUMER_KEYS = ("id", "title", "kind", "url", "owner", "requires", "deadlines", "routes")
REQUIREMENT_KEYS = ("dataset", "warn_after", "error_after")
# Bounds that keep each catalog entry small (the catalog document pages by entries).
MAX_UPSTREAM = 100
MAX_REQUIRES = 1000
HTTP_FETCH_KEYS = ("allowed_hosts", "allow_private_addresses", "allow_link_local")
# The variables that once carried the http_fetch: section to the functions: nothing
# reads them now (apply stores the policy in settings/control), so setting one is a
# mistake worth naming.
OLD_FETCH_ENV = ("FRESHET_FETCH_ALLOWED_HOSTS", "FRESHET_FETCH_ALLOW_PRIVATE",
                 "FRESHET_FETCH_ALLOW_LINK_LOCAL")


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
    if not (is_int(value) if integer else is_number(value)):
        raise ValidationError(where, "must be an integer" if integer else "must be a number")
    if not low <= value <= high:
        raise ValidationError(where, f"must be between {low:g} and {high:g}")
    return value


def _limit(key: str, value: object, where: str) -> object:
    if key == "timeout":
        return parse_duration(value, where)
    if key in ("memory", "cpu"):
        if is_number(value):
            value = f"{value:g}"
        return _text(value, where)
    return _number(value, where, 1, 1000)


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
        location = _text(doc.get("firestore_location", region), "firestore_location",
                         _LOCATION_RE, "a Firestore location such as europe-west1 or eur3")
        modules = self.sync_modules(doc.get("sync_modules"))
        queues = self.queues(doc.get("queues"))
        pools = self.pools(doc.get("pools"), queues)
        policy = self.http_fetch(doc.get("http_fetch"))
        catalog = self.catalog(doc, queues[0], pools, policy)
        observed = self.observed(doc.get("datasets"), project)
        catalog = replace(catalog, datasets={
            k: replace(d, observe=observed.get(k)) for k, d in catalog.datasets.items()})
        jobs = self.jobs(doc.get("jobs"), catalog, pools, policy)
        _check_not_produced(jobs, observed)
        control = None if doc.get("control") is None else parse_control(doc["control"],
                                                                          "control.")
        maintenance = self.maintenance(doc.get("maintenance"), jobs, catalog)
        config = PipelineConfig(
            path=path, project=project, region=region, firestore_location=location,
            functions=self.functions(doc.get("functions"), project, region),
            site=self.site(doc.get("site"), project),
            queues=queues,
            control_schedules=self.schedules(doc.get("control_schedules")),
            jobs=jobs, catalog=catalog, control=control, sync_modules=modules,
            job_ids=frozenset(j.id for j in jobs), pools=pools, maintenance=maintenance,
            egress=policy,
            observed=tuple(observed.items()),
            runs_days=self.retention(doc.get("retention")),
        )
        check_time_limits(config)
        return config

    def retention(self, value: object) -> int:
        """`retention: {runs_days: 90}`: how long runs are kept after they end."""
        doc = _mapping(value or {}, "retention", RETENTION_KEYS)
        return _number(doc.get("runs_days", DEFAULT_RUN_RETENTION_DAYS), "retention.runs_days",
                       1, MAX_RUN_RETENTION_DAYS)

    def pools(self, value: object, queues: tuple[QueueSpec, ...]) -> tuple[PoolSpec, ...]:
        """`pools: {warehouse: {max_concurrent: 4}}`: each its own queue."""
        if value is None:
            return ()
        if not isinstance(value, dict):
            raise ValidationError("pools", "must be a mapping of pool name to "
                                           "{max_concurrent: N}")
        found = []
        for name, raw in value.items():
            where = f"pools.{name}"
            check_pool(name, where)
            if name == DEFAULT_POOL:
                raise ValidationError(where, f"{DEFAULT_POOL!r} is the default queue's pool; "
                                             "set its limit on queues[0]")
            if name == "claims" or name.isdigit():
                raise ValidationError(where, f"{name!r} would share a queue name with the "
                                             "herd's claims or dispatch-shard queues")
            doc = _mapping(raw, where, POOL_KEYS, required=("max_concurrent",))
            pool = PoolSpec(name, _number(doc["max_concurrent"], f"{where}.max_concurrent",
                                          1, 5000))
            if pool.queue(queues[0].name) in {q.name for q in queues}:
                raise ValidationError(where, f"its queue {pool.queue(queues[0].name)!r} is "
                                             "declared under queues too")
            found.append(pool)
        return tuple(found)

    def maintenance(self, value: object, jobs: tuple[Job, ...],
                    catalog: Catalog) -> Maintenance:
        windows = [make_window(raw, f"maintenance[{i}]")
                   for i, raw in enumerate(_list(value, "maintenance"))]
        _unique([w.id for w in windows], "id", "maintenance")
        check_windows(windows)  # recurring ones: at most MAX_WEEKLY in any 7 days
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

    def http_fetch(self, value: object) -> EgressPolicy:
        """Where http_fetch may fetch from (freshet.core.egress)."""
        doc = _mapping(value or {}, "http_fetch", HTTP_FETCH_KEYS)
        hosts = tuple(check_host_pattern(h, f"http_fetch.allowed_hosts[{i}]") for i, h in
                      enumerate(_list(doc.get("allowed_hosts"), "http_fetch.allowed_hosts")))
        flags = {}
        for key, default in (("allow_private_addresses", True), ("allow_link_local", False)):
            flags[key] = doc.get(key, default)
            if not isinstance(flags[key], bool):
                raise ValidationError(f"http_fetch.{key}", "must be true or false")
        return EgressPolicy(hosts, flags["allow_private_addresses"], flags["allow_link_local"])

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
            if name in OLD_FETCH_ENV:
                raise ValidationError(f"{where}env.{name}", "not read: set the http_fetch: "
                                      "section (apply stores it)")
            if not (isinstance(val, str) or is_number(val)):
                raise ValidationError(f"{where}env.{name}", "must be a string or a number")
        build = _text(doc.get("build_service_account", "freshet-build" + account),
                      where + "build_service_account", _EMAIL_RE, "an email address")
        return FunctionsConfig(
            base_url=base_url.rstrip("/"), service_account=emails["service_account"],
            invoker_email=emails["invoker_email"], allowed_callers=callers,
            build_service_account=build, limits=self.function_limits(doc),
            source=_text(doc.get("source", "functions"), where + "source"),
            runtime=_text(doc.get("runtime", "python311"), where + "runtime",
                          re.compile(r"^python3\d+$"), "a Python runtime such as python311"),
            env=tuple(sorted((k, str(v)) for k, v in env.items())),
        )

    @staticmethod
    def function_limits(doc: dict) -> tuple[tuple[str, FunctionLimits], ...]:
        """Each function's timeout, memory, cpu, max_instances and concurrency: its own
        entry, else `defaults`, else Freshet's default for that function."""
        defaults = _mapping(doc.get("defaults") or {}, "functions.defaults", LIMIT_KEYS)
        found = []
        for name in ENTRY_POINTS:
            where = f"functions.{name}"
            own = _mapping(doc.get(name) or {}, where, LIMIT_KEYS)
            values = {}
            for key in LIMIT_KEYS:
                if key in own:
                    values[key] = _limit(key, own[key], f"{where}.{key}")
                elif key in defaults:
                    values[key] = _limit(key, defaults[key], f"functions.defaults.{key}")
            limits = replace(DEFAULT_FUNCTION_LIMITS[name], **values)
            check_function(limits, where)
            found.append((name, limits))
        return tuple(found)

    def site(self, value: object, project: str) -> SiteConfig:
        doc = _mapping(value or {}, "site", SITE_KEYS)
        public = check_bool(doc.get("public", False), "site.public")
        viewers = tuple(_text(v, f"site.viewers[{i}]", _MEMBER_RE,
                              "an IAM member such as group:team@example.com, "
                              "user:ann@example.com or domain:example.com")
                        for i, v in enumerate(_list(doc.get("viewers"), "site.viewers")))
        hint = "3-63 lowercase letters, digits, '-', '_' or '.'"
        return SiteConfig(
            bucket=_text(doc.get("bucket", f"{project}-freshet-site"), "site.bucket",
                         _BUCKET_RE, hint),
            snapshot_bucket=_text(doc.get("snapshot_bucket", f"{project}-freshet-snapshots"),
                                  "site.snapshot_bucket", _BUCKET_RE, hint),
            public=public, viewers=viewers)

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
                dispatch_deadline_s=self._deadline(doc, where),
                dispatch_shards=_number(doc.get("dispatch_shards", 1),
                                        f"{where}.dispatch_shards", 1, MAX_DISPATCH_SHARDS),
            ))
            suffix = herd.claims_queue("")
            if len(specs[-1].name + suffix) > 100:
                raise ValidationError(f"{where}.name", f"at most {100 - len(suffix)} characters"
                                      f" (Freshet adds '{suffix}' for its claims queue)")
        _unique([q.name for s in specs for q in (*s.queues(), s.claims())], "name", "queues")
        return tuple(specs)

    @staticmethod
    def _deadline(doc: dict, where: str) -> float:
        if "dispatch_deadline" not in doc:
            return QueueSpec(name="x").dispatch_deadline_s
        deadline = parse_duration(doc["dispatch_deadline"], f"{where}.dispatch_deadline")
        check_dispatch_deadline(deadline, f"{where}.dispatch_deadline")
        return deadline.total_seconds()

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

    def routes(self, value: object, policy: EgressPolicy) -> tuple[RouteSpec, ...]:
        """Each route checked by its type (freshet.status.routes), its literal URL by
        the pipeline's policy."""
        routes = tuple(make_route(raw, f"routes[{i}]", policy)
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

    def catalog(self, doc: dict, default: QueueSpec, pools: tuple[PoolSpec, ...],
                policy: EgressPolicy) -> Catalog:
        routes = self.routes(doc.get("routes"), policy)
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
            if len(upstream) > MAX_UPSTREAM:
                raise ValidationError(f"{where}.upstream", f"at most {MAX_UPSTREAM} datasets")
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
        shown = (Pool(DEFAULT_POOL, default.name, default.max_concurrent_dispatches),
                 *(Pool(p.name, p.queue(default.name), p.max_concurrent) for p in pools))
        catalog = Catalog(datasets=datasets, consumers=consumers, pools=shown, routes=routes)
        _check_route_subjects(catalog)
        check_catalog(catalog)  # the same checks publish_status relies on
        return catalog

    @staticmethod
    def observed(value: object, project: str) -> dict[str, ObserveSpec]:
        """The datasets with an `observe:` block (the catalog checked them otherwise)."""
        found = {}
        for i, raw in enumerate(_list(value, "datasets")):
            if "observe" in raw:
                found[raw["key"]] = make_observe(
                    raw["observe"], f"datasets[{i}].observe", raw.get("observe_every"),
                    every_field=f"datasets[{i}].observe_every", default_project=project)
            elif "observe_every" in raw:
                raise ValidationError(f"datasets[{i}].observe_every", "needs observe:")
        return found

    def consumers(self, value: object, datasets: dict,
                  route_ids: set[str]) -> tuple[Consumer, ...]:
        found = []
        for i, raw in enumerate(_list(value, "consumers")):
            where = f"consumers[{i}]"
            c = _mapping(raw, where, CONSUMER_KEYS, required=("id",))
            requires = []
            raw_requires = _list(c.get("requires"), f"{where}.requires")
            if len(raw_requires) > MAX_REQUIRES:
                raise ValidationError(f"{where}.requires", f"at most {MAX_REQUIRES} datasets")
            for j, rraw in enumerate(raw_requires):
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
                kind=kind, url=check_link(c.get("url"), f"{where}.url"),
                requires=tuple(requires),
                owner=_optional_text(c.get("owner"), f"{where}.owner", 200),
                deadlines=deadlines,
                routes=self.route_ids(c.get("routes"), f"{where}.routes", route_ids),
            ))
        _unique([c.id for c in found], "id", "consumers")
        return tuple(found)

    def jobs(self, value: object, catalog: Catalog, pools: tuple[PoolSpec, ...],
             policy: EgressPolicy) -> tuple[Job, ...]:
        context = CheckContext(egress=policy)
        jobs: list[Job] = []
        for i, raw in enumerate(_list(value, "jobs")):
            where = f"jobs[{i}]"
            doc = _mapping(raw, where, JOB_KEYS, required=("id", "kind"))
            if "schedule" not in doc and "trigger" not in doc:
                raise ValidationError(f"{where}.schedule", "is required (or give the job a "
                                                           "trigger)")
            try:
                job = new_job(**doc)
            except ValidationError as exc:
                raise ValidationError(f"{where}.{exc.field}", exc.message) from None
            check_params(job.kind, dict(job.params), context, where)  # the kind's own
            for field_name, keys in (("produces", job.produces),
                                     ("trigger.after", job.trigger.after if job.trigger else ())):
                for j, key in enumerate(keys):
                    if catalog.datasets and key not in catalog.datasets:
                        raise ValidationError(f"{where}.{field_name}[{j}]",
                                              f"dataset {key!r} is not declared under datasets")
            if job.pool not in {None, DEFAULT_POOL, *(p.name for p in pools)}:
                raise ValidationError(f"{where}.pool", f"unknown pool {job.pool!r} (declare it "
                                                       "under pools)")
            jobs.append(job)
        _unique([j.id for j in jobs], "id", "jobs")
        _one_producer(jobs)
        cycle = trigger_cycle(jobs)
        if cycle:
            first = [j.id for j in jobs].index(cycle[0])
            raise ValidationError(f"jobs[{first}].trigger",
                                  f"trigger cycle: {describe_cycle(cycle)}")
        check_triggers(jobs, "jobs")  # and no dataset triggers too many jobs
        return tuple(jobs)


def _one_producer(jobs: list[Job]) -> None:
    """A dataset has one producing job: its state is stored with that job's other datasets
    (core.groups), as Dagster refuses two definitions of one asset key."""
    producer: dict[str, str] = {}
    for i, job in enumerate(jobs):
        for j, key in enumerate(job.produces):
            first = producer.setdefault(key, job.id)
            if first != job.id:
                raise ValidationError(f"jobs[{i}].produces[{j}]", f"dataset {key!r} is "
                                      f"produced by job {first!r} already; job {job.id!r} "
                                      "may not produce it too (one producer per dataset)")


def _check_not_produced(jobs: tuple[Job, ...], observed: dict[str, ObserveSpec]) -> None:
    """An observed dataset is seen, not made: a job producing it is refused."""
    for i, job in enumerate(jobs):
        for j, key in enumerate(job.produces):
            if key in observed:
                raise ValidationError(f"jobs[{i}].produces[{j}]", f"dataset {key!r} is "
                                      "observed (observe:), so no job may produce it: "
                                      "drop one of the two")


def _check_route_subjects(catalog: Catalog) -> None:
    """A route's state document files each subject it follows: at most
    MAX_SUBJECTS_PER_ROUTE, so that it stays under 1 MiB with a full backlog."""
    counts = {r.id: 0 for r in catalog.routes}
    for item in (*catalog.consumers, *catalog.datasets.values()):
        for route in item.routes:
            counts[route] = counts.get(route, 0) + 1
    for i, route in enumerate(catalog.routes):
        if counts[route.id] > MAX_SUBJECTS_PER_ROUTE:
            raise ValidationError(f"routes[{i}]", f"followed by {counts[route.id]} consumers "
                                  f"and datasets; at most {MAX_SUBJECTS_PER_ROUTE} per route "
                                  "(its state must fit one document): split it into routes")


# -- limits that span sections ----------------------------------------------------------

def check_time_limits(config: PipelineConfig, default_stuck_minutes: int = 30) -> None:
    """run_task's timeout >= every queue's dispatch deadline >= each job's expected
    runtime; each job's lease fits Cloud Tasks' 30 minutes; each Scheduler attempt
    deadline fits its target's timeout. Raises ValidationError naming the field."""
    fn = config.functions
    run_task = fn.limits_for("run_task").timeout
    for i, queue in enumerate(config.queues):
        check_deadline_fits(timedelta(seconds=queue.dispatch_deadline_s), run_task,
                            f"queues[{i}].dispatch_deadline")
    deadline = timedelta(seconds=config.run_queue.dispatch_deadline_s)
    for i, job in enumerate(config.jobs):
        check_job(stuck_threshold_minutes=job.stuck_threshold_minutes,
                  expected_runtime_minutes=job.expected_runtime_minutes,
                  default_stuck_minutes=default_stuck_minutes, dispatch_deadline=deadline,
                  where=f"jobs[{i}]")
    for i, sched in enumerate(config.control_schedules):
        check_schedule_deadline(sched.deadline, fn.limits_for(sched.target).timeout,
                                sched.target, f"control_schedules[{i}].deadline")
