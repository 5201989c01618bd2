"""`freshet cost`: a pipeline's monthly bill, estimated. Pure: plain values in, lines out.

Three inputs, none guessed:
  - the pipeline config: each job's schedule (runs a month, counted slot by slot over
    30 days), the datasets it produces, the control schedules (ticks, sweeps,
    publishes a month), each function's memory, and the observed datasets (each read
    once per its observe_every, in passes the tick runs);
  - per-operation counts MEASURED by the benchmarks (bench/results.json): document
    reads and writes per run (for 1 and 5 datasets, interpolated), per retried
    attempt, per idle tick, sweep and steady-state publish; tasks per run; each
    function's time per call; bytes stored per run, job and dataset;
  - a dated price table with its sources and free tiers (freshet/ops/prices.yaml).

Two assumptions are the user's to state, with defaults: how often an attempt fails
transiently (each retry is another attempt), and how long a sync itself takes. A sync
that runs inside run_task is the user's own compute, as it would be under any
orchestrator: it is priced on lines of its own (`Estimate.sync_lines`), beside the
control plane's total, never in it. A third, how long runs are kept (`retention`),
sizes the runs' storage and the TTL deletes that keep it steady; TTL deletes have no
free tier.
"""

import functools
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta

from freshet.core import herd
from freshet.core.errors import ValidationError
from freshet.core.external import polls_for
from freshet.core.groups import PER_GROUP
from freshet.core.limits import FunctionLimits, memory_mib
from freshet.core.schedules import Schedule, slots_between
from freshet.core.specs import QueueSpec
from freshet.core.values import is_number
from freshet.gcp.ports import UNINDEXED

MONTH = timedelta(days=30)
MONTH_START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday; any 30 days would do
GIB = 2 ** 30
# Cloud Run functions: the vCPU that comes with each memory size, when cpu is not set
# (https://cloud.google.com/functions/docs/configuring/memory).
VCPU_FOR_MIB = ((128, 0.083), (256, 0.167), (512, 0.333), (1024, 0.583), (2048, 1.0),
                (4096, 2.0), (8192, 2.0), (16384, 4.0), (32768, 8.0))
# What a publish that rebuilds reads besides the stored model's chunks and the changed
# documents: the manifest, the idle check's first query (it stops at the first change),
# 4 change queries, catalog, control, status memory, heartbeat, and the settings' newest
# commit time before and after (freshet.status.publish). An idle one reads 5.
PUBLISH_FIXED_READS = 12
# The stored model's chunks a publish reads at the benchmark's size (bench_status: 5,000
# datasets, 1,000 jobs, 200 runs, 200 deadline records in 12 chunks), scaled with size.
MODEL_CHUNKS_5K = 12


# -- what the benchmarks measured -----------------------------------------------------

@dataclass(frozen=True)
class Measured:
    """Per-operation counts from bench/results.json, by figure name."""

    run_reads_1ds: float
    run_reads_5ds: float
    run_writes_1ds: float
    run_writes_5ds: float
    run_tasks: float
    run_s: float
    retry_reads: float
    retry_writes: float
    retry_tasks: float
    tick_idle_reads: float
    tick_idle_writes: float
    tick_idle_s: float
    sweep_idle_reads: float
    sweep_idle_writes: float
    sweep_idle_s: float
    publish_reads_idle_5k: float
    publish_reads_hour_median: float
    publish_writes_hour_median: float
    publish_s_hour_median: float
    publish_files_fixed: float  # a publish whose runs turned no state: the page, ...
    files_per_turn: float  # each dataset turned: its badge, its downstream, its consumers
    site_bytes_5k: float
    bytes_run_1ds: float
    bytes_run_5ds: float
    bytes_job: float
    bytes_dataset_90d: float
    observe_tick_reads: float  # a tick with no observe pass due: the ledger
    observe_pass_reads: float  # a pass over 1,000 tables, none changed
    observe_pass_s_1k: float  # that pass's time, the engine's answers included
    poll_reads: float  # a waiting run's poll: the run, the switches, the run again
    poll_writes: float

    FIGURES = {
        "run_reads_1ds": "ops_run_reads_1ds", "run_reads_5ds": "ops_run_reads_5ds",
        "run_writes_1ds": "ops_run_writes_1ds", "run_writes_5ds": "ops_run_writes_5ds",
        "run_tasks": "ops_run_tasks", "run_s": "ops_run_s",
        "retry_reads": "ops_retry_reads", "retry_writes": "ops_retry_writes",
        "retry_tasks": "ops_retry_tasks",
        "tick_idle_reads": "ops_tick_idle_reads", "tick_idle_writes": "ops_tick_idle_writes",
        "tick_idle_s": "ops_tick_idle_s",
        "sweep_idle_reads": "ops_sweep_idle_reads",
        "sweep_idle_writes": "ops_sweep_idle_writes", "sweep_idle_s": "ops_sweep_idle_s",
        "publish_reads_idle_5k": "page_publish_reads_idle_5k",
        "publish_reads_hour_median": "page_publish_reads_hour_median",
        "publish_writes_hour_median": "page_publish_writes_hour_median",
        "publish_s_hour_median": "page_publish_s_hour_median",
        "publish_files_fixed": "page_files_written_no_turns",
        "files_per_turn": "page_files_per_turned_dataset",
        "site_bytes_5k": "page_site_bytes_5k",
        "bytes_run_1ds": "ops_bytes_run_1ds", "bytes_run_5ds": "ops_bytes_run_5ds",
        "bytes_job": "ops_bytes_job", "bytes_dataset_90d": "ops_bytes_dataset_90d",
        "observe_tick_reads": "observe_reads_per_tick_idle",
        "observe_pass_reads": "observe_reads_per_pass_1k_tables",
        "observe_pass_s_1k": "observe_pass_s_1k_tables",
        "poll_reads": "external_poll_reads", "poll_writes": "external_poll_commit_writes",
    }
    SCALE_DATASETS = 5000  # the size the publish figures were measured at
    # What changed in each 5 minutes of the benchmark's hour (bench_status: 84 runs, their
    # 84 jobs and their 420 datasets, kept in 84 groups: core.groups): the median
    # publish's reads are the idle publish's plus these, at the reads per changed
    # document it measured.
    SCALE_CHANGED = 84 + 84 + 84

    @classmethod
    def from_results(cls, results: Mapping[str, object]) -> "Measured":
        values = {}
        for name in (f.name for f in fields(cls)):
            figure = cls.FIGURES[name]
            value = results.get(figure)
            if not is_number(value):
                raise ValidationError(figure, "is not in the benchmark results: run "
                                              "`make bench` (or bench/run_all.py)")
            values[name] = float(value)
        return cls(**values)

    @staticmethod
    def _per_dataset(one: float, five: float, datasets: float) -> float:
        """Measured at 1 and 5 datasets a run; linear in between and beyond."""
        return one + (five - one) * (datasets - 1) / 4

    def run_reads(self, datasets: float) -> float:
        return self._per_dataset(self.run_reads_1ds, self.run_reads_5ds, datasets)

    def run_writes(self, datasets: float) -> float:
        return self._per_dataset(self.run_writes_1ds, self.run_writes_5ds, datasets)

    def run_bytes(self, datasets: float) -> float:
        return self._per_dataset(self.bytes_run_1ds, self.bytes_run_5ds, datasets)

    def publish_reads_fixed(self, documents: int) -> float:
        """A rebuilding publish's reads besides the changed documents, its model chunks
        scaled with the pipeline's size."""
        scale = documents / (self.SCALE_DATASETS * 1.2)  # the bench: 5k datasets + 1k jobs
        return PUBLISH_FIXED_READS + max(3.0, math.ceil(MODEL_CHUNKS_5K * scale))

    def reads_per_changed(self) -> float:
        """Reads a changed document costs a publish, as the hour's median measured it
        (the incidents and routes it read are counted with them, as the bench had them)."""
        fixed = self.publish_reads_fixed(int(self.SCALE_DATASETS * 1.2))
        return max(0.0, self.publish_reads_hour_median - fixed) / self.SCALE_CHANGED

    def publish_writes(self, documents: int) -> float:
        """The median publish's writes (changed model chunks, manifest, memory), scaled
        with the pipeline's size."""
        return self.publish_writes_hour_median * documents / (self.SCALE_DATASETS * 1.2)


# -- the prices -------------------------------------------------------------------------

@dataclass(frozen=True)
class Prices:
    as_of: str
    doc: Mapping  # prices.yaml as read

    @classmethod
    def from_doc(cls, doc: object) -> "Prices":
        if not isinstance(doc, dict) or "as_of" not in doc:
            raise ValidationError("prices", "must be a mapping with as_of and one section "
                                            "per service")
        for path in ("firestore.read_per_100k", "firestore.write_per_100k",
                     "firestore.storage_gib_month", "cloud_tasks.operations_per_million",
                     "cloud_run_functions.vcpu_second", "cloud_run_functions.gib_second",
                     "cloud_run_functions.requests_per_million",
                     "cloud_scheduler.job_month", "cloud_storage.storage_gib_month",
                     "cloud_storage.class_a_per_1000"):
            section, key = path.split(".")
            value = (doc.get(section) or {}).get(key)
            if not is_number(value) or value < 0:
                raise ValidationError(f"prices.{path}", "must be a number >= 0")
        return cls(str(doc["as_of"]), doc)

    def __call__(self, section: str, key: str) -> float:
        return float(self.doc[section][key])

    def free(self, section: str, key: str) -> float:
        return float((self.doc[section].get("free") or {}).get(key, 0))


# -- the pipeline's workload ------------------------------------------------------------

@dataclass(frozen=True)
class Assumptions:
    retry_rate: float = 0.02  # share of attempts that fail transiently and are retried
    # share of runs that fail for good (their retries spent): each turns its datasets'
    # states twice, which the status site pays for in files written
    failure_rate: float = 0.01
    sync_s: float = 1.0  # a sync's own time inside run_task
    run_retention_days: int = 90  # how long run documents are kept
    fanout_above: int = 100  # the tick's claim_fanout_above
    # How often an observed dataset's data changes (each change: a dataset written, and
    # the runs it triggers, which are counted as runs)
    observed_changes_per_day: float = 24.0
    # How long an engine kind's work (a BigQuery job, a Cloud Run execution) runs: its
    # run waits that long, polled with backoff (core.external.polls_for).
    engine_s: float = 600.0

    def __post_init__(self):
        if not 0 <= self.retry_rate < 1:
            raise ValidationError("retry_rate", "must be from 0 to below 1")
        if not 0 <= self.failure_rate <= 1:
            raise ValidationError("failure_rate", "must be from 0 to 1")
        if self.sync_s < 0:
            raise ValidationError("sync_seconds", "must not be negative")
        if self.run_retention_days < 0:
            raise ValidationError("run_retention_days", "must not be negative")
        if self.observed_changes_per_day < 0:
            raise ValidationError("observed_changes_per_day", "must not be negative")


@dataclass(frozen=True)
class JobLoad:
    schedule: Schedule
    datasets: int
    polls: int = 0  # an engine kind's: the polls of each run's wait


@dataclass(frozen=True)
class ObservedLoad:
    """The observed datasets' month (freshet.core.observe): the passes the tick runs
    and the engines' reads, each dataset read once per its observe_every."""

    datasets: int = 0
    passes: float = 0.0  # observe passes (each: the catalog read, the ledger written)
    tables: float = 0.0  # BigQuery tables.get calls (free metadata)
    listings: float = 0.0  # Cloud Storage listings of a prefix (class A operations)
    queries: float = 0.0  # observation SQL queries (billed by bytes)
    query_bytes_cap: float = 0.0  # what those queries may bill at most, in bytes


def observed_load(specs: Iterable, ticks: float) -> ObservedLoad:
    """`specs`: the config's ObserveSpecs. A pass runs at a tick when the earliest
    dataset is due (at least one an hour: core.observe.MAX_PASS_GAP)."""
    from freshet.core.observe import MAX_PASS_GAP, MIN_BYTES_BILLED, ObserveKind

    specs = list(specs)
    reads = Counter()
    capped = 0.0
    for spec in specs:
        count = MONTH / max(spec.every, timedelta(minutes=1))
        reads[spec.kind] += count
        if spec.kind == ObserveKind.BIGQUERY_SQL:
            capped += count * max(MIN_BYTES_BILLED, spec.maximum_bytes_billed or 0)
    gap = min([MAX_PASS_GAP, *(s.every for s in specs)])
    return ObservedLoad(datasets=len(specs), passes=min(ticks, MONTH / gap),
                        tables=reads[ObserveKind.BIGQUERY_TABLE],
                        listings=reads[ObserveKind.GCS_PREFIX],
                        queries=reads[ObserveKind.BIGQUERY_SQL], query_bytes_cap=capped)


@dataclass(frozen=True)
class Workload:
    """What happens in a month: counted from the config, before any price."""

    jobs: int
    datasets: int
    runs: float
    dataset_runs: float  # the sum over runs of the datasets each produces
    ticks: float
    sweeps: float
    publishes: float
    scheduler_jobs: int
    herds: float  # ticks that fan out (more jobs due in one minute than fanout_above)
    memory: Mapping[str, FunctionLimits] = field(default_factory=dict)
    observed: ObservedLoad = ObservedLoad()
    # Polls of waiting runs: each one task, one run_task call, and the reads and writes
    # bench_engines measured.
    polls: float = 0.0
    # Consumers: each one's page and JSON are rewritten when their states change (in the
    # median publish's files); their ages are kept current by the reader's browser.
    consumers: int = 0

    @property
    def datasets_per_run(self) -> float:
        return self.dataset_runs / self.runs if self.runs else 0.0

    @property
    def groups_per_run(self) -> float:
        """The documents a run's datasets are kept in (core.groups: a job's datasets,
        PER_GROUP to a document)."""
        return math.ceil(self.datasets_per_run / PER_GROUP) if self.datasets_per_run else 0.0

    def changed_per_publish(self) -> float:
        """Documents a steady-state publish reads: each run in its window changes its
        job, itself and its datasets' group(s) (once each, however often written)."""
        if not self.publishes:
            return 0.0
        window = self.runs / self.publishes
        return (min(self.jobs, window) + window
                + min(self.datasets, window * self.groups_per_run))


@functools.lru_cache(maxsize=256)
def slots_in_month(schedule: Schedule) -> tuple[datetime, ...]:
    """The schedule's slots in 30 days (a one-time job: its one run). Cached: a minute's
    cron has 43,200, and a pipeline's jobs share a few schedules."""
    if not schedule.recurring:
        return (MONTH_START,)
    end = MONTH_START + MONTH
    return tuple(s for s in slots_between(schedule, MONTH_START, end) if s < end)


def workload(jobs: Iterable[JobLoad], control: list[tuple[Schedule, str]], *,
             datasets: int, fanout_above: int,
             memory: Mapping[str, FunctionLimits] | None = None,
             observed: Iterable = (), consumers: int = 0) -> Workload:
    """`control`: the control schedules as (schedule, target function); `observed`:
    the observed datasets' specs."""
    groups = Counter((j.schedule, j.datasets, j.polls) for j in jobs)
    per_minute: Counter = Counter()
    runs = dataset_runs = polls = 0.0
    for (schedule, produced, waits), count in groups.items():
        slots = slots_in_month(schedule)
        runs += len(slots) * count
        dataset_runs += len(slots) * count * produced
        polls += len(slots) * count * waits
        for slot in slots:
            per_minute[slot.replace(second=0, microsecond=0)] += count
    calls = Counter()
    for schedule, target in control:
        calls[target] += len(slots_in_month(schedule))
    herds = sum(1 for n in per_minute.values() if herd.fan_out(n, fanout_above))
    return Workload(jobs=sum(groups.values()), datasets=datasets, runs=runs,
                    dataset_runs=dataset_runs, ticks=calls["scheduler_tick"],
                    sweeps=calls["recover_stuck_runs"], publishes=calls["publish_status"],
                    scheduler_jobs=len(control), herds=herds, memory=dict(memory or {}),
                    observed=observed_load(observed, calls["scheduler_tick"]),
                    polls=polls, consumers=consumers)


# -- the estimate -----------------------------------------------------------------------

@dataclass(frozen=True)
class Line:
    service: str
    item: str
    quantity: float  # a month's, in `unit`
    unit: str
    free: float  # of it, within the free tier
    usd: float

    @property
    def billable(self) -> float:
        return max(0.0, self.quantity - self.free)


@dataclass(frozen=True)
class Estimate:
    lines: tuple[Line, ...]
    workload: Workload
    prices: Prices
    assumptions: Assumptions

    sync_lines: tuple[Line, ...] = ()  # the syncs' own compute: the user's, not ours

    @property
    def total(self) -> float:
        """The control plane's monthly cost (the syncs' own compute is not in it)."""
        return sum(line.usd for line in self.lines)

    @property
    def sync_total(self) -> float:
        return sum(line.usd for line in self.sync_lines)

    def by_service(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for line in self.lines:
            out[line.service] = out.get(line.service, 0.0) + line.usd
        return out

    def composer(self) -> tuple[float, float]:
        low, high = self.prices.doc["comparison"]["cloud_composer_small_month"]
        return float(low), float(high)


def _line(service: str, item: str, quantity: float, unit: str, free: float,
          price_per_unit: float) -> Line:
    return Line(service, item, quantity, unit, min(free, quantity),
                max(0.0, quantity - free) * price_per_unit)


def vcpu_of(limits: FunctionLimits) -> float:
    if limits.cpu:
        return float(limits.cpu)
    mib = memory_mib(limits.memory)
    return next((cpu for size, cpu in VCPU_FOR_MIB if mib <= size), VCPU_FOR_MIB[-1][1])


def estimate(load: Workload, measured: Measured, prices: Prices,
             assumptions: Assumptions = Assumptions()) -> Estimate:
    k = load.datasets_per_run
    retries = load.runs * assumptions.retry_rate / (1 - assumptions.retry_rate)
    documents = load.jobs + load.datasets
    publish_reads = (measured.publish_reads_fixed(documents)
                     + load.changed_per_publish() * measured.reads_per_changed())
    shard_calls = load.herds * herd.CLAIM_SHARDS
    functions, syncs = _functions(load, measured, prices, assumptions, retries, shard_calls)
    lines = [
        *_firestore(load, measured, prices, assumptions, k, retries, publish_reads,
                    documents, shard_calls),
        *_tasks(load, measured, prices, retries, shard_calls),
        *functions,
        _line("Cloud Scheduler", "jobs", load.scheduler_jobs, "jobs",
              prices.free("cloud_scheduler", "jobs"), prices("cloud_scheduler", "job_month")),
        *_storage(load, measured, prices, assumptions, documents),
        *_observations(load, prices),
    ]
    return Estimate(tuple(lines), load, prices, assumptions, tuple(syncs))


def _observe_ops(load: Workload, measured: Measured, assumptions: Assumptions
                 ) -> tuple[float, float]:
    """(reads, writes) a month of the observe pass: every tick reads the ledger; each
    pass also reads the catalog and writes the ledger; each change of an observed
    dataset's data is one transaction reading and writing its document."""
    seen = load.observed
    changes = seen.datasets * assumptions.observed_changes_per_day * MONTH.days
    reads = (load.ticks * measured.observe_tick_reads
             + seen.passes * max(0.0, measured.observe_pass_reads
                                 - measured.observe_tick_reads) + changes)
    return reads, seen.passes + changes


def _firestore(load, measured, prices, assumptions, k, retries, publish_reads, documents,
               shard_calls) -> list[Line]:
    days = MONTH.days
    observe_reads, observe_writes = _observe_ops(load, measured, assumptions)
    reads = (load.runs * measured.run_reads(k) + retries * measured.retry_reads
             + load.ticks * measured.tick_idle_reads + load.sweeps * measured.sweep_idle_reads
             + load.publishes * publish_reads + shard_calls  # a handler reads the switches
             + observe_reads + load.polls * measured.poll_reads)
    writes = (load.runs * measured.run_writes(k) + retries * measured.retry_writes
              + load.ticks * measured.tick_idle_writes
              + load.sweeps * measured.sweep_idle_writes
              + load.publishes * measured.publish_writes(documents) + observe_writes
              + load.polls * measured.poll_writes)
    kept_runs = load.runs / days * assumptions.run_retention_days
    stored = (load.jobs * measured.bytes_job + load.datasets * measured.bytes_dataset_90d
              + kept_runs * measured.run_bytes(k)) / GIB
    # In the steady state the TTL policy deletes as many runs a month as are created
    # (each `retention` after it ends); TTL deletes get no free tier.
    return [
        _line("Firestore", "document reads", reads, "reads",
              prices.free("firestore", "reads_per_day") * days,
              prices("firestore", "read_per_100k") / 1e5),
        _line("Firestore", "document writes", writes, "writes",
              prices.free("firestore", "writes_per_day") * days,
              prices("firestore", "write_per_100k") / 1e5),
        _line("Firestore", f"storage ({assumptions.run_retention_days} days of runs)", stored,
              "GiB", prices.free("firestore", "storage_gib"),
              prices("firestore", "storage_gib_month")),
        _line("Firestore", "TTL deletes (expired runs)", load.runs, "deletes",
              0.0, prices("firestore", "delete_per_100k") / 1e5),
    ]


def _tasks(load, measured, prices, retries, shard_calls) -> list[Line]:
    # Each task is created once and delivered at least once; a retry is a delivery.
    operations = (load.runs * measured.run_tasks * 2 + retries * (measured.retry_tasks + 1)
                  + shard_calls * 2 + load.polls * 2)
    return [_line("Cloud Tasks", "operations (create + deliveries)", operations, "ops",
                  prices.free("cloud_tasks", "operations_per_month"),
                  prices("cloud_tasks", "operations_per_million") / 1e6)]


def _functions(load, measured, prices, assumptions, retries, shard_calls
               ) -> tuple[list[Line], list[Line]]:
    """The control plane's function time, and the syncs' own time inside run_task (the
    free tier is the billing account's: the control plane uses it first)."""
    step = float(prices.doc["cloud_run_functions"].get("billing_increment_s", 0.1))

    def billed(seconds: float) -> float:
        return max(step, math.ceil(round(seconds / step, 6)) * step)

    attempts = load.runs + retries
    calls = {  # function -> (requests a month, seconds each)
        "run_task": (attempts + load.polls, measured.run_s),
        "scheduler_tick": (load.ticks + shard_calls, measured.tick_idle_s),
        "recover_stuck_runs": (load.sweeps, measured.sweep_idle_s),
        "publish_status": (load.publishes, measured.publish_s_hour_median),
    }
    # The observe pass runs inside a tick's request: its time, not another request,
    # scaled from 1,000 tables by the observed datasets a pass reads at most.
    observe_s = measured.observe_pass_s_1k * load.observed.datasets / 1000
    tick = load.memory.get("scheduler_tick") or FunctionLimits()
    requests = vcpu_s = gib_s = 0.0
    if load.observed.passes and observe_s:
        time_s = load.observed.passes * billed(observe_s)
        vcpu_s += time_s * vcpu_of(tick)
        gib_s += time_s * memory_mib(tick.memory) / 1024
    for name, (count, seconds) in calls.items():
        limits = load.memory.get(name) or FunctionLimits()
        time_s = count * billed(seconds)
        requests += count
        vcpu_s += time_s * vcpu_of(limits)
        gib_s += time_s * memory_mib(limits.memory) / 1024
    section = "cloud_run_functions"
    free_vcpu = prices.free(section, "vcpu_seconds_per_month")
    free_gib = prices.free(section, "gib_seconds_per_month")
    ours = [
        _line("Cloud Run functions", "requests", requests, "requests",
              prices.free(section, "requests_per_month"),
              prices(section, "requests_per_million") / 1e6),
        _line("Cloud Run functions", "vCPU-seconds", vcpu_s, "vCPU-s", free_vcpu,
              prices(section, "vcpu_second")),
        _line("Cloud Run functions", "GiB-seconds", gib_s, "GiB-s", free_gib,
              prices(section, "gib_second")),
    ]
    run_task = load.memory.get("run_task") or FunctionLimits()
    # A sync's own time is billed on top of run_task's (rounded as one request).
    sync_time = attempts * max(0.0, billed(measured.run_s + assumptions.sync_s)
                               - billed(measured.run_s))
    syncs = [
        _line("Syncs (your compute)", "vCPU-seconds in run_task",
              sync_time * vcpu_of(run_task), "vCPU-s", max(0.0, free_vcpu - vcpu_s),
              prices(section, "vcpu_second")),
        _line("Syncs (your compute)", "GiB-seconds in run_task",
              sync_time * memory_mib(run_task.memory) / 1024, "GiB-s",
              max(0.0, free_gib - gib_s), prices(section, "gib_second")),
    ]
    return ours, syncs


def turns(load: Workload, assumptions: Assumptions) -> float:
    """Datasets whose state turns in a month: each run that fails for good turns its
    datasets to failing, and the next success turns them back (transient failures, which
    a retry mends within the run, turn nothing)."""
    return load.dataset_runs * assumptions.failure_rate * 2


def _storage(load, measured, prices, assumptions, documents) -> list[Line]:
    scale = documents / (Measured.SCALE_DATASETS * 1.2)
    # A file is written when its bytes change (bench_status measured both parts): what
    # shows the moment (the page, status.json, heartbeat.json) at every publish that has
    # changes, and for each dataset whose state turns its badge and what it turns
    # downstream and in its consumers (their badges, pages and JSON).
    files = (load.publishes * measured.publish_files_fixed
             + turns(load, assumptions) * measured.files_per_turn)
    site = measured.site_bytes_5k * scale / GIB
    return [
        _line("Cloud Storage", "class A operations (page files written)", files, "ops",
              prices.free("cloud_storage", "class_a_per_month"),
              prices("cloud_storage", "class_a_per_1000") / 1000),
        _line("Cloud Storage", "storage (the status site)", site, "GiB",
              prices.free("cloud_storage", "storage_gib"),
              prices("cloud_storage", "storage_gib_month")),
    ]


def _observations(load: Workload, prices: Prices) -> list[Line]:
    """The engines' side of observed datasets: tables.get is free metadata, a prefix's
    listing is a class A operation, an observation query bills its bytes (priced here
    at its cap, maximum_bytes_billed: at most this)."""
    seen = load.observed
    if not seen.datasets:
        return []
    lines = []
    if seen.tables:
        lines.append(_line("BigQuery", "tables.get (observed tables: free metadata)",
                           seen.tables, "calls", seen.tables, 0.0))
    if seen.listings:
        lines.append(_line("Cloud Storage", "class A operations (observed prefixes listed)",
                           seen.listings, "ops", 0.0,
                           prices("cloud_storage", "class_a_per_1000") / 1000))
    if seen.queries:
        bigquery = prices.doc.get("bigquery") or {}
        lines.append(_line("BigQuery", "observation SQL (at its maximum_bytes_billed)",
                           seen.query_bytes_cap / 2 ** 40, "TiB",
                           float((bigquery.get("free") or {}).get("tib_per_month", 0)),
                           float(bigquery.get("on_demand_tib", 0))))
    return lines


# -- Firestore storage, by Google's formula -------------------------------------------

def _string_size(text: str) -> int:
    return len(text.encode()) + 1


def value_size(value: object) -> int:
    """https://cloud.google.com/firestore/docs/storage-size: field value sizes by type."""
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, int | float | datetime):
        return 8
    if isinstance(value, str):
        return _string_size(value)
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, dict):
        return sum(_string_size(k) + value_size(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return sum(value_size(v) for v in value)
    raise TypeError(f"not a Firestore value: {type(value).__name__}")


def _indexed(path: str, value: object):
    """(field path, value, entries) for every automatic single-field index entry: an
    ascending and a descending entry per value, map fields by their subfields, and one
    array-contains entry per array element."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _indexed(f"{path}.{key}", inner)
    elif isinstance(value, list | tuple):
        for inner in value:
            yield path, inner, 1
    else:
        yield path, value, 2


def stored_bytes(collection: str, doc_id: str, doc: Mapping[str, object]) -> int:
    """About what Firestore stores for a document of a root collection: the document
    (its name, its fields, 32 bytes) and its automatic single-field index entries (each
    about the document's name, the field path, the value and 32 bytes), but for the
    fields exempted from them (freshet.gcp.ports.UNINDEXED, deployed as the indexes'
    fieldOverrides). Composite indexes, a few per collection, are left out."""
    name = _string_size(collection) + _string_size(doc_id) + 16
    size = name + sum(_string_size(k) + value_size(v) for k, v in doc.items()) + 32
    exempt = UNINDEXED.get(collection, ())
    for key, value in doc.items():
        if key in exempt:
            continue
        for path, leaf, entries in _indexed(key, value):
            size += entries * (name + _string_size(path) + value_size(leaf) + 32)
    return size


# -- from a pipeline config -------------------------------------------------------------

def workload_of(config, assumptions: Assumptions = Assumptions()) -> Workload:
    """The workload of a freshet.ops.config.PipelineConfig: its jobs (paused and archived
    ones run nothing), the datasets it declares or produces, its control schedules and
    each function's memory."""
    from freshet.core.models import JobStatus
    from freshet.core.schedules import make_schedule
    from freshet.core.specs import ENTRY_POINTS

    active = [j for j in config.jobs if j.status == JobStatus.ACTIVE]
    datasets = set(config.catalog.datasets) | {k for j in active for k in j.produces}
    control = [(make_schedule(cron=s.cron, timezone=s.timezone), s.target)
               for s in config.control_schedules]
    from freshet.loop.registry import kind_for

    waits = polls_for(timedelta(seconds=assumptions.engine_s))
    engine_kinds = {j.kind for j in active if (k := kind_for(j.kind)) and k.finish}
    return workload((JobLoad(j.schedule, len(j.produces),
                             waits if j.kind in engine_kinds else 0) for j in active), control,
                    datasets=len(datasets), fanout_above=assumptions.fanout_above,
                    memory={e: config.functions.limits_for(e) for e in ENTRY_POINTS},
                    observed=(spec for _, spec in config.observed),
                    consumers=len(config.catalog.consumers))


# -- the herd: when N runs due at one slot have started ---------------------------------

def herd_start(jobs: int, *, queue: QueueSpec, run_task: FunctionLimits, call_s: float,
               lookahead_s: float) -> herd.HerdStart:
    """The modelled start of `jobs` runs due at one slot, from the default pool's queues
    (rate, concurrency, dispatch shards) and run_task's instances and concurrency."""
    queues = queue.queues()
    return herd.herd_start(
        jobs, queue_rates=[q.max_dispatches_per_second for q in queues],
        queue_concurrency=sum(q.max_concurrent_dispatches for q in queues),
        instances=run_task.max_instances, concurrency=run_task.concurrency,
        call_s=call_s, lookahead_s=lookahead_s)


def herd_of(config, measured: Measured, assumptions: Assumptions, *, jobs: int,
            lookahead_s: float) -> herd.HerdStart:
    """`herd_start` for a pipeline config: a run_task call lasts the measured control
    plane's time plus the assumed sync."""
    return herd_start(jobs, queue=config.run_queue,
                      run_task=config.functions.limits_for("run_task"),
                      call_s=measured.run_s + assumptions.sync_s, lookahead_s=lookahead_s)


def herd_text(start: herd.HerdStart) -> str:
    text = (f"A herd of {start.jobs:,} runs due at one slot starts within "
            f"{start.start_s:,.0f} s of it ({start.rate:,.0f} runs/s, bound by "
            f"{start.bound})")
    if start.late_s:
        text += f"; claiming it takes {start.claim_s:,.0f} s, {start.late_s:,.0f} s past the slot"
    if not start.fits:
        text += (f". Warning: that is longer than the lookahead ({start.lookahead_s:,.0f} s): "
                 "raise the queue's max_dispatches_per_second, its max_concurrent_dispatches "
                 "and run_task's max_instances (docs/scale.md)")
    return text + "."
