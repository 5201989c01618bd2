"""Observed datasets: freshness for data Freshet did not load, as pure decisions.

A dataset may declare where its data can be seen instead of a job that produces it:

    observe: {bigquery_table: project.dataset.table}     tables.get -> lastModifiedTime
    observe: {gcs_prefix: gs://bucket/path/}             the newest object's `updated`
    observe: {bigquery_sql: "select max(loaded_at) ...", maximum_bytes_billed: 10000000}
    observe_every: 5m                                    (the default)

The first two are free metadata reads; the SQL is billed by the bytes it scans, so it
is opt-in and capped. An observation is judged like a sync's watermark (never
backwards, never in the future: freshet.core.bookkeeping): the dataset's `data_as_of`
is the time the data was last changed and its freshness basis is `observed`
(freshet.core.freshness judges its age on that time: a table that stops changing turns
`warn`, then `stale_data`, then its consumers' banners). A read that fails permanently
(the table is gone, it is a view) counts as a failure; one that may pass (429, 5xx)
changes nothing and is read again next pass.

The pass keeps what it last saw of every observed dataset in one ledger (`Seen` per
key: when it was read, the data time, the error), so deciding what is due and what
moved costs one document, not one per dataset. A dataset document is written only
when its data time moves or its error changes, and that commit is the one that fires
the jobs triggered by it (freshet.core.commit.observing): the dataset's version is
derived from its data time (`observed_version`), so a repeated commit fires nothing new.
"""

import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from freshet.core import bookkeeping
from freshet.core.errors import ValidationError, check_keys
from freshet.core.freshness import Basis
from freshet.core.models import Dataset
from freshet.core.text import MAX_ERROR_CHARS, shorten
from freshet.core.timeutil import format_duration, isoformat, parse_duration, to_utc

OBSERVED = str(Basis.OBSERVED)  # the freshness basis (status.json `freshness_basis`)
OBSERVER = "observer"  # stands for the run id in an observed dataset's failures
MAX_LEDGER_ERROR = 300  # characters of a read error the ledger keeps
DEFAULT_OBSERVE_EVERY = timedelta(minutes=5)
MIN_OBSERVE_EVERY = timedelta(minutes=1)
MAX_OBSERVE_EVERY = timedelta(days=1)
MAX_SQL_CHARS = 10_000
# At least BigQuery's 10 MB minimum charge per query; at most 10 TiB.
MIN_BYTES_BILLED = 10 * 1024 * 1024
MAX_BYTES_BILLED = 10 * 1024 ** 4


class ObserveKind(StrEnum):
    BIGQUERY_TABLE = "bigquery_table"
    GCS_PREFIX = "gcs_prefix"
    BIGQUERY_SQL = "bigquery_sql"


OBSERVE_KEYS = (*ObserveKind, "maximum_bytes_billed", "location")

# https://cloud.google.com/bigquery/docs/tables#table_naming (letters, marks, numbers,
# connectors, dashes, spaces in Unicode; Freshet takes the ASCII subset, no spaces),
# https://cloud.google.com/bigquery/docs/datasets#dataset-naming,
# https://cloud.google.com/resource-manager/docs/creating-managing-projects (project ids,
# optionally with a domain: "example.com:my-project").
_PROJECT = r"(?:[a-z][a-z0-9.-]{0,61}[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]"
_DATASET = r"[A-Za-z0-9_]{1,1024}"
_TABLE = r"[A-Za-z0-9_-]{1,1024}"
TABLE_RE = re.compile(rf"^({_PROJECT})\.({_DATASET})\.({_TABLE})$")
DATASET_TABLE_RE = re.compile(rf"^({_DATASET})\.({_TABLE})$")
# https://cloud.google.com/storage/docs/buckets#naming (the dotted form aside)
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$")


@dataclass(frozen=True, slots=True)
class TableRef:
    project: str
    dataset: str
    table: str

    def __str__(self) -> str:
        return f"{self.project}.{self.dataset}.{self.table}"


def parse_table(value: object, where: str, default_project: str = "") -> TableRef:
    """`project.dataset.table` (or `dataset.table` with a default project). A wildcard
    table (`events_*`) is refused: its lastModifiedTime is not one table's."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(where, "must be a table name project.dataset.table")
    text = value.strip().strip("`")
    if "*" in text:
        raise ValidationError(where, f"{value!r} is a wildcard table: it has no one "
                              "lastModifiedTime to observe; name one table")
    match = TABLE_RE.match(text)
    if match:
        return TableRef(*match.groups())
    match = DATASET_TABLE_RE.match(text)
    if match and default_project:
        return TableRef(default_project, *match.groups())
    raise ValidationError(where, f"{value!r} is not a table name project.dataset.table "
                          "(project: 6-30 lowercase letters, digits or '-'; dataset: "
                          "letters, digits or '_'; table: letters, digits, '_' or '-')")


def parse_gcs_prefix(value: object, where: str) -> tuple[str, str]:
    """`gs://bucket/path/` -> (bucket, "path/")."""
    if not isinstance(value, str) or not value.startswith("gs://"):
        raise ValidationError(where, "must be a Cloud Storage prefix gs://bucket/path/")
    bucket, _, prefix = value[len("gs://"):].partition("/")
    if not _BUCKET_RE.match(bucket):
        raise ValidationError(where, f"{bucket!r} is not a bucket name (3-63 lowercase "
                              "letters, digits, '-' or '_')")
    if "*" in prefix or "?" in prefix or "[" in prefix:
        raise ValidationError(where, "a prefix, not a pattern: Freshet reads the newest "
                              "object under it")
    return bucket, prefix


def check_bytes_billed(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(where, "must be a whole number of bytes (it caps the bill)")
    if not MIN_BYTES_BILLED <= value <= MAX_BYTES_BILLED:
        raise ValidationError(where, f"must be between {MIN_BYTES_BILLED:,} (BigQuery bills "
                              f"10 MB at least) and {MAX_BYTES_BILLED:,}")
    return value


@dataclass(frozen=True, slots=True)
class ObserveSpec:
    """Where an observed dataset's data is seen, and how often to look."""

    kind: ObserveKind
    target: str  # the table (normalised), the gs:// prefix, or the SQL
    every: timedelta = DEFAULT_OBSERVE_EVERY
    maximum_bytes_billed: int | None = None  # bigquery_sql only
    location: str = ""  # BigQuery location for the SQL (default: the client's)

    def to_dict(self) -> dict:
        doc = {str(self.kind): self.target, "every": format_duration(self.every)}
        if self.maximum_bytes_billed is not None:
            doc["maximum_bytes_billed"] = self.maximum_bytes_billed
        if self.location:
            doc["location"] = self.location
        return doc

    @classmethod
    def from_dict(cls, doc: dict) -> "ObserveSpec":
        kind = next(k for k in ObserveKind if k in doc)
        return cls(kind, doc[kind], parse_duration(doc.get("every", "5m"), "every"),
                   doc.get("maximum_bytes_billed"), doc.get("location", ""))


def make_observe(raw: object, where: str, every: object = None, *,
                 every_field: str = "observe_every", default_project: str = "") -> ObserveSpec:
    """The `observe:` block of a dataset (and its `observe_every`, at `every_field`),
    checked."""
    doc = check_keys(raw, where, OBSERVE_KEYS,
                     "with one of bigquery_table, gcs_prefix or bigquery_sql")
    kinds = [k for k in ObserveKind if k in doc]
    if len(kinds) != 1:
        raise ValidationError(where, "needs exactly one of bigquery_table, gcs_prefix, "
                              "bigquery_sql")
    kind = kinds[0]
    period = DEFAULT_OBSERVE_EVERY if every is None else parse_duration(every, every_field)
    if not MIN_OBSERVE_EVERY <= period <= MAX_OBSERVE_EVERY:
        raise ValidationError(every_field, "must be between 1m and 1d")
    billed = doc.get("maximum_bytes_billed")
    if kind != ObserveKind.BIGQUERY_SQL and billed is not None:
        raise ValidationError(f"{where}.maximum_bytes_billed", "only a bigquery_sql "
                              "observation is billed; the others read free metadata")
    location = doc.get("location", "")
    if not isinstance(location, str) or len(location) > 64:
        raise ValidationError(f"{where}.location", "must be a BigQuery location such as EU")
    if kind == ObserveKind.BIGQUERY_TABLE:
        target = str(parse_table(doc[kind], f"{where}.{kind}", default_project))
    elif kind == ObserveKind.GCS_PREFIX:
        parse_gcs_prefix(doc[kind], f"{where}.{kind}")
        target = doc[kind]
    else:
        sql = doc[kind]
        if not isinstance(sql, str) or not sql.strip() or len(sql) > MAX_SQL_CHARS:
            raise ValidationError(f"{where}.{kind}", f"must be SQL of at most "
                                  f"{MAX_SQL_CHARS:,} characters returning one timestamp")
        if billed is None:
            raise ValidationError(f"{where}.maximum_bytes_billed", "is required with "
                                  "bigquery_sql (the query is billed by bytes scanned)")
        billed = check_bytes_billed(billed, f"{where}.maximum_bytes_billed")
        target = sql.strip()
    return ObserveSpec(kind, target, period, billed, location)


@dataclass(frozen=True, slots=True)
class Observation:
    """What one read of an observed dataset found."""

    dataset: str
    data_as_of: datetime | None = None  # None: nothing there yet (empty prefix, NULL)
    error: str = ""  # the read failed
    transient: bool = False  # ... in a way that may pass: read again next pass


def observation_due(last_observed_at: datetime | None, every: timedelta,
                    now: datetime) -> bool:
    """Whether a pass at `now` reads the dataset. A pass runs on a cadence, so a read
    due within the next 10 s is taken now rather than one pass late."""
    return last_observed_at is None or now >= last_observed_at + every - timedelta(seconds=10)


def observed_version(data_as_of: datetime | None) -> str:
    """An observed dataset's version (`last_success_run_id`, what triggers compare):
    its data time, so it changes exactly when the data does."""
    return f"observed@{isoformat(data_as_of) if data_as_of is not None else 'none'}"


def _same_issue(dataset: Dataset, issue: str, seen: datetime | None) -> bool:
    return dataset.watermark_issue == issue and dataset.rejected_watermark == seen


def apply_observation(dataset: Dataset, observation: Observation, now: datetime) -> Dataset:
    """The dataset document after one observation at `now` (unchanged: nothing to write).

    New data (a later change time) is recorded as a success whose watermark is that
    time (data points, daily bar, data_as_of: what deadlines and the page read), with
    the version `observed_version(data_as_of)`. The same data again changes nothing. A
    permanent error is a failure (never touching last_success_at), recorded once while
    it stays the same; a transient one changes nothing."""
    if observation.error:
        error = shorten(observation.error, MAX_ERROR_CHARS)
        if observation.transient or (dataset.failing and dataset.last_error == error):
            return dataset
        failed = bookkeeping.apply_failure(dataset, OBSERVER, now, observation.error)
        return replace(failed, freshness_basis=OBSERVED)
    seen = observation.data_as_of
    trusted, issue = bookkeeping.judge_watermark(dataset.data_as_of, seen, now)
    moved = issue is None and seen is not None and trusted != dataset.data_as_of
    if (moved or dataset.last_success_at is None or dataset.failing
            or dataset.freshness_basis != OBSERVED):
        done = bookkeeping.apply_success(dataset, observed_version(trusted), now,
                                         watermark=seen)
        return replace(done, freshness_basis=OBSERVED)
    if issue is None or _same_issue(dataset, str(issue), seen):
        return dataset
    return replace(dataset, watermark_issue=str(issue), rejected_watermark=seen,
                   updated_at=now)


def freshness_basis(observed: bool, dataset: Dataset | None) -> str:
    """`observed` for an observed dataset; else `data` with a watermark, `sync` without."""
    if observed:
        return OBSERVED
    return "data" if dataset is not None and dataset.data_as_of is not None else "sync"


# -- the ledger: what the observer last saw of each dataset -------------------------------


@dataclass(frozen=True, slots=True)
class Seen:
    """One dataset's entry in the ledger (settings/observations)."""

    at: datetime | None = None  # when it was last read with an answer
    as_of: datetime | None = None  # the data time that read found
    error: str = ""  # that read's permanent error ("" when it succeeded)

    def to_doc(self, key: str) -> dict:
        return {"key": key, "at": self.at, "as_of": self.as_of, "error": self.error}

    @classmethod
    def from_doc(cls, doc: dict) -> "Seen":
        return cls(to_utc(doc.get("at")), to_utc(doc.get("as_of")), str(doc.get("error") or ""))


@dataclass(frozen=True, slots=True)
class Ledger:
    """What the observer saw, by dataset key, and when the next read is due (the tick
    reads only this document to know whether a pass is due)."""

    seen: dict[str, Seen]
    next_at: datetime | None = None  # None: a pass is due now (nothing recorded yet)

    def to_doc(self) -> dict:
        return {"next_at": self.next_at,
                "datasets": [s.to_doc(k) for k, s in sorted(self.seen.items())]}

    @classmethod
    def from_doc(cls, doc: dict | None) -> "Ledger":
        doc = doc or {}
        seen = {d["key"]: Seen.from_doc(d) for d in doc.get("datasets") or []
                if isinstance(d, dict) and d.get("key")}
        return cls(seen, to_utc(doc.get("next_at")))

    def due(self, now: datetime) -> bool:
        return self.next_at is None or now >= self.next_at


def recorded(before: Seen | None, observation: Observation, now: datetime
             ) -> tuple[Seen | None, bool]:
    """(the ledger's entry after `observation`, whether the dataset must be committed):
    only when its data time moved or its error changed, or it was never seen. A
    transient failure keeps the entry (the read is due again next pass)."""
    if observation.transient:
        return before, False
    if observation.error:
        error = shorten(observation.error, MAX_LEDGER_ERROR)
        last = before.as_of if before is not None else None
        return Seen(now, last, error), before is None or before.error != error
    seen = Seen(now, observation.data_as_of)
    return seen, before is None or before.error != "" or before.as_of != seen.as_of


# The longest a ledger waits before the next pass, whatever the datasets' cadence
# (with none observed: a pass an hour reads the catalog and finds nothing). apply makes
# a pass due at once when it writes the catalog (`due_now`), so a newly declared
# dataset is read at the next tick; this bounds the wait should that write be lost.
MAX_PASS_GAP = timedelta(hours=1)


def due_now(doc: dict | None) -> dict:
    """The ledger document with a pass due at the next tick (apply, after it writes
    the catalog: what is observed, and how often, may have changed)."""
    return {**(doc or {}), "next_at": None}


def next_pass(specs: dict[str, ObserveSpec], seen: dict[str, Seen], now: datetime
              ) -> datetime:
    """When the next pass has something to read: the earliest entry's due time (one
    never read: now), at most MAX_PASS_GAP away."""
    due = [now if (s := seen.get(k)) is None or s.at is None
           else s.at + spec.every - timedelta(seconds=10) for k, spec in specs.items()]
    return min([*due, now + MAX_PASS_GAP])


@dataclass(frozen=True, slots=True)
class ObservePlan:
    """One pass's reads, grouped so each kind is read in bulk: tables by project (one
    client, calls in parallel), prefixes by bucket, SQL one by one (it is billed)."""

    tables: tuple[tuple[str, str], ...] = ()  # (dataset key, project.dataset.table)
    prefixes: tuple[tuple[str, str], ...] = ()  # (dataset key, gs://bucket/prefix/)
    sql: tuple[tuple[str, ObserveSpec], ...] = ()

    @property
    def reads(self) -> int:
        return len(self.tables) + len(self.prefixes) + len(self.sql)


def plan_observations(specs: dict[str, ObserveSpec], seen: dict[str, Seen],
                      now: datetime, limit: int = 10_000) -> ObservePlan:
    """The reads due at `now`, the longest-unread first, at most `limit` of them."""
    def last(key: str) -> datetime | None:
        entry = seen.get(key)
        return entry.at if entry is not None else None

    due = [(last(key), key) for key, spec in specs.items()
           if observation_due(last(key), spec.every, now)]
    due.sort(key=lambda item: (item[0] is not None, item[0] or now, item[1]))
    chosen = [key for _, key in due[:limit]]
    by_kind = {kind: tuple((k, specs[k].target) for k in chosen if specs[k].kind == kind)
               for kind in ObserveKind}
    return ObservePlan(
        tables=tuple(sorted(by_kind[ObserveKind.BIGQUERY_TABLE], key=lambda kt: kt[1])),
        prefixes=tuple(sorted(by_kind[ObserveKind.GCS_PREFIX], key=lambda kt: kt[1])),
        sql=tuple((k, specs[k]) for k in chosen if specs[k].kind == ObserveKind.BIGQUERY_SQL))
