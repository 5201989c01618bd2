"""Renderings of a StatusModel: index.html, status.json, feed.xml and SVG badges.

Jinja2 with autoescape on for every template (HTML, Atom and SVG alike): job names,
params and error texts are untrusted. Templates live in site/templates/, the page's CSS
and script in site/static/ and are inlined so the page has no external assets.
The page stays compact at scale: the worst datasets and jobs get full rows, the rest a
one-line entry in a collapsed list, and only the newest runs are shown.
"""

import base64
import functools
import hashlib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import jinja2
import markupsafe

from freshet.core.deadlines import Judgement
from freshet.core.frozen import quick_init
from freshet.core.schedules import Schedule, describe
from freshet.core.text import json_encoder, printable, printable_json, safe_link
from freshet.core.timeutil import human_duration, isoformat
from freshet.core.windows import MAX_LISTED, Occurrence, Window
from freshet.status.changes import Event
from freshet.status.model import (
    DAY_CODES,
    LABELS,
    LEVELS,
    ConsumerStatus,
    DatasetStatus,
    JobSummary,
    RouteStatus,
    StatusModel,
    badge_path,
    collector_paused,
    shorten,
)

SCHEMA_VERSION = 1
DETAILED_DATASETS = 150
DETAILED_JOBS = 150
RUNS_ON_PAGE = 50
RUNS_IN_JSON = 200
EVENTS_ON_PAGE = 10
FEED_ENTRIES = 100
# Incident notes in the feed, at most: the rest of FEED_ENTRIES is kept for state
# changes, which notes never push out.
FEED_NOTES = 30
# Each incident's latest notes on the page (banner and list) and in status.json; all
# of them (at most core.incidents.MAX_NOTES + 1) are on incidents/<id>.html.
NOTES_ON_BANNER = 3
NOTES_IN_JSON = 5
NEEDS_ON_BANNER = 8
ERROR_ON_PAGE = 400

BADGE_COLOURS = {
    "fresh": "#137333", "running": "#0b57d0", "maintenance": "#5f6368", "warn": "#8a5a00",
    "at_risk": "#a34400", "unknown": "#5f6368", "failing": "#b3261e",
    "stale_data": "#8c1d18", "error": "#8c1d18",
}
# One name per state: a badge says the page's label (freshet.status.model.LABELS).
BADGE_WORDS = {state: label.lower() for state, label in LABELS.items()}


@quick_init  # made thousands of times a build
@dataclass(frozen=True)
class Output:
    data: bytes
    content_type: str
    # Shows the moment it was built (the build time, ages), so differs at every publish:
    # written each time, its digest not kept.
    dated: bool = False
    # A file that shows ages too, but is rewritten only when `key` (what it says, its
    # ages and times left out) changes: the consumers' pages and JSON (hundreds of
    # files, not rewritten at every publish; the page's script keeps its ages current).
    key: str | None = None
    # Not rendered (`data` is empty): the keyed file published earlier still says this,
    # as the caller of render_site said (`current`).
    kept: bool = False

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()[:16]


def site_source() -> Path:
    """site/ (templates, static, schema): FRESHET_SITE_SRC, else the work tree's, else the
    copy deploy puts in functions/ (the deployed source)."""
    return _site_source(os.environ.get("FRESHET_SITE_SRC") or None)


@functools.cache
def _site_source(configured: str | None) -> Path:
    if configured:
        return Path(configured)
    here = Path(__file__).resolve()
    # The work tree's site/ first: functions/site is deploy's copy for the upload (the
    # deployed source has only it), which a later edit of site/ leaves behind.
    for base in (here.parents[3], here.parents[2]):  # <repo>/site, then functions/site
        if (base / "site" / "templates").is_dir():
            return base / "site"
    raise FileNotFoundError("site/templates not found; set FRESHET_SITE_SRC")


class _Printed(markupsafe.Markup):
    """Markup made of printable text only (the page's CSS and script, rows written
    here from printable values): printed as it is, not searched again (a consumer's
    page printed 40 KB of it, 200 pages a build)."""

    __slots__ = ()


def _printable(value: object) -> object:
    """Every value a template prints: control characters are not allowed in XML."""
    if value.__class__ is str:  # most of them (a hundred thousand a build): no call
        return value if value.isascii() and value.isprintable() else printable(value)
    if value.__class__ is _Printed:
        return value
    if isinstance(value, markupsafe.Markup):
        return markupsafe.Markup(printable(str(value)))
    return printable(value) if isinstance(value, str) else value


def time_attribute(value: datetime | None) -> str | None:
    """A moment as HTML's <time datetime> and Atom accept it: UTC, at most three digits
    of a second (HTML refuses more)."""
    if value is None:
        return None
    moment = value.astimezone(UTC)
    spec = "milliseconds" if moment.microsecond else "seconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def _per_build(text: Callable[[datetime], str | None]) -> Callable[[datetime | None], str | None]:
    """`text` of a moment, made once a build for a UTC one: a build writes each dataset's
    times in status.json, in its consumer's JSON and row (30,000 texts of 2,400 moments
    at 5,000 datasets). render_site empties the cache (`cache_clear`)."""
    made = functools.lru_cache(maxsize=32768)(text)

    def cached(value: datetime | None) -> str | None:
        if value.__class__ is datetime and value.tzinfo is UTC:  # equal: the same text
            return made(value)
        return text(value)  # type: ignore[arg-type]

    cached.cache_clear = made.cache_clear  # type: ignore[attr-defined]
    return cached


_iso = _per_build(isoformat)
_time_attribute = _per_build(time_attribute)


@functools.cache
def _env(source: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(source / "templates"),
        autoescape=True,  # everything: HTML, Atom and SVG
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_printable,
    )
    env.filters.update(safe=_safe, when=_when, age=_age, dur=_dur, iso=_time_attribute,
                       short=shorten, num=lambda n: f"{n:,}", link=safe_link, pct=percent,
                       live=live, age_of=age_of)
    env.globals.update(labels=LABELS, badge_path=badge_path, bar=_bar, day_codes=DAY_CODES,
                       consumer_page=consumer_page, worst_needs=_worst_needs,
                       dataset_rows=_dataset_rows, compact_datasets=_compact_datasets,
                       compact_jobs=_compact_jobs, incident_notes=_incident_notes,
                       window_words=_window_words, listed_limit=MAX_LISTED)
    return env


def _safe(value: object) -> markupsafe.Markup:
    """Jinja's `safe`, keeping Markup as it is (_Printed stays _Printed)."""
    return value if isinstance(value, markupsafe.Markup) else markupsafe.Markup(value)


@functools.cache
def _static(source: Path, name: str) -> _Printed:
    return _Printed(printable((source / "static" / name).read_text(encoding="utf-8")))


@functools.lru_cache(maxsize=8)  # the same for every page of a kind (200 consumers)
def _csp(css: str, js: str, *, heartbeat: bool = False) -> str:
    """The page's Content-Security-Policy: its own inline style and script (by hash) and
    nothing else (a consumer's page may also fetch the site's heartbeat.json). Should a
    hostile link or markup ever slip through, it cannot run."""
    def digest(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    connect = "connect-src 'self'; " if heartbeat else ""
    return (f"default-src 'none'; style-src {digest(css)}; script-src {digest(js)}; "
            f"{connect}img-src 'self' data:; base-uri 'none'; form-action 'none'")


# A consumer's page and JSON are rebuilt when a state they show changes (`consumer_key`);
# their ages in words are kept current by the page's script, and their page learns that
# the control plane is alive from heartbeat.json, which every publish writes (a few bytes).
HEARTBEAT = "heartbeat.json"
# What a consumer's JSON says that moves with the clock or with every sync and deadline
# pass rather than with a state: ages and the words that carry them, the times of the
# last start, success and failure, data as of, the day bars, record counts, the last
# error's text, when deadlines fall due and the on-time counts. (As the issue asks of
# per-dataset files: written when a state changes.)
_MOVING_FIELDS = frozenset({
    "generated_at", "age_s", "reason", "message", "detail", "text", "last_started_at",
    "last_success_at", "last_failure_at", "data_as_of", "history", "last_record_count",
    "consecutive_failures", "last_error", "due", "next_due", "attainment_90d",
    "attainment_30d", "deadline_counts_90d"})


def consumer_key(doc: dict) -> str:
    """What a consumer's files say, its moving parts left out: equal keys, the same
    states, verdicts, incidents, excuses and risks. Its datasets each count as the list
    of their kept values (`_dataset_key_text`), the rest as its JSON with sorted keys."""
    rest = _strip({k: v for k, v in doc.items() if k != "datasets"})
    if "datasets" not in doc:
        return _key_of(_sorted_keys(rest))
    return _key_from(rest, "[" + ",".join(_dataset_key_text(_strip(d))
                                          for d in doc["datasets"]) + "]")


def _key_from(rest: dict, datasets_text: str) -> str:
    """The key of a document stripped of its moving fields (`rest`), its datasets'
    key texts joined (`datasets_text`)."""
    return _key_of(_joined(dict(sorted({**rest, "datasets": None}.items())),
                           {"datasets": datasets_text}, _sorted_keys))


_NESTED = (dict, list)


def _strip(value: object) -> object:
    if isinstance(value, dict):  # scalars kept as they are, without a call each
        return {k: _strip(v) if isinstance(v, _NESTED) else v
                for k, v in value.items() if k not in _MOVING_FIELDS}
    if isinstance(value, list):
        return [_strip(v) if isinstance(v, _NESTED) else v for v in value]
    return value


def _dataset_key_text(doc: dict) -> str:
    """What a consumer's key keeps of a dataset's document (its moving fields left out):
    the list of the other values, in the document's order. A dataset's fields are always
    the same ones (_dataset_json's), so their names need not be written: a text a third
    the size of the whole document's, encoded without sorting (5,000 a build).
    The key is stored in the status memory: a change of this text changes every
    consumer's key, so after an upgrade every consumer's files are rewritten once."""
    return _sorted_keys([v for k, v in doc.items() if k not in _MOVING_FIELDS])


def _key_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _joined(doc: dict, texts: dict[str, str], dump: Callable[[object], str]) -> str:
    """`dump(doc)` with some of its values already dumped (`texts`): the same text, as
    a JSON object is its members joined in order (compact separators)."""
    return "{" + ",".join(f"{dump(k)}:{texts[k] if k in texts else dump(v)}"
                          for k, v in doc.items()) + "}"


def _sorted_keys(value: object) -> str:
    """json.dumps(value, sort_keys=True, separators=(",", ":")), its encoder made once."""
    return _sorted(value)


_sorted = json_encoder(sort_keys=True, separators=(",", ":"))


T = TypeVar("T")


class _Parts:
    """The JSON of datasets, consumers and incidents, made once per render: status.json
    and the consumers' files show the same ones (a dataset in every file of a consumer
    that needs it or what it is built from); the datasets' also as text
    (`printable_json`'s) and as the text of what the consumers' keys keep of them."""

    def __init__(self):
        self._datasets: dict[str, dict] = {}
        self._texts: dict[str, str] = {}
        self._key_texts: dict[str, str] = {}
        self._consumers: dict[str, dict] = {}
        self._consumer_texts: dict[str, str] = {}
        self._incidents: dict[str, dict] = {}

    @staticmethod
    def _kept(made: dict, key: str, make: Callable[[], T]) -> T:
        found = made.get(key)
        if found is None:
            found = made[key] = make()
        return found

    def consumer(self, c: ConsumerStatus) -> dict:
        return self._kept(self._consumers, c.id, lambda: _consumer_json(c))

    def consumer_text(self, c: ConsumerStatus) -> str:
        """printable_json of the consumer's JSON (in status.json and its own file)."""
        return self._kept(self._consumer_texts, c.id,
                          lambda: printable_json(self.consumer(c)))

    def incident(self, incident) -> dict:
        return self._kept(self._incidents, incident.id, lambda: _incident_json(incident))

    def dataset(self, d: DatasetStatus) -> dict:
        return self._kept(self._datasets, d.key, lambda: _dataset_json(d))

    def dataset_text(self, d: DatasetStatus) -> str:
        return self._kept(self._texts, d.key, lambda: printable_json(self.dataset(d)))

    def dataset_key_text(self, d: DatasetStatus) -> str:
        # Its fields' values are scalars and lists of names (_dataset_json's): only the
        # moving fields themselves to leave out, no nested ones (_strip's walk).
        return self._kept(self._key_texts, d.key,
                          lambda: _dataset_key_text(self.dataset(d)))

    @staticmethod
    def datasets_text(datasets: list[DatasetStatus],
                      text: Callable[[DatasetStatus], str]) -> str:
        """The JSON list of the datasets, each one's text from `text`."""
        return "[" + ",".join(text(d) for d in datasets) + "]"


# Whether the keyed file at a path, published earlier, is still current for this
# Output (its key, its refresh): publish_status's memory knows.
Current = Callable[[str, Output], bool]


@collector_paused
def render_site(model: StatusModel, events: list[Event], current: Current | None = None
                ) -> dict[str, Output]:
    """Every file of the site, by path; the keyed ones that `current` says are still
    the ones published are not rendered again (Output.kept)."""
    for made in (_ages_in_words, _live_one, _iso, _time_attribute, _moment_html):
        made.cache_clear()
    parts = _Parts()
    entries = feed_entries(model, events)
    files = {
        "index.html": Output(render_index(model, events).encode(), "text/html; charset=utf-8",
                             dated=True),
        "status.json": Output(  # published beside the page: the same printable text
            _status_text(model, events, parts).encode(), "application/json", dated=True),
        # what consumers' pages ask to learn the control plane is alive (they are not
        # rebuilt at every publish): a few bytes, written at every publish
        HEARTBEAT: heartbeat_file(model.built_at),
        "status.schema.json": Output(
            (site_source() / "status.schema.json").read_bytes(), "application/schema+json"),
        # without entries, the feed's <updated> is the build time
        "feed.xml": Output(render_feed(model, events, entries).encode(),
                           "application/atom+xml", dated=not entries),
    }
    files.update(render_badges(model))
    files.update(render_incident_pages(model))
    files.update(render_consumers(model, parts, current))
    return files


def heartbeat_file(now: datetime) -> Output:
    """heartbeat.json: when Freshet last published (every publish writes it, an idle
    one only it)."""
    return Output(printable_json({"generated_at": isoformat(now)}).encode(),
                  "application/json", dated=True)


def site_digest() -> str:
    """The site's templates, assets and schema (an idle publish rebuilds nothing only
    when they are the ones the page was built with)."""
    return _site_digest(site_source())


@functools.cache
def _site_digest(source: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def incident_page(incident_id: str) -> str:
    """Where an incident's every note is (ids are [a-z0-9-], safe in a path)."""
    return f"incidents/{incident_id}.html"


def render_incident_pages(model: StatusModel) -> dict[str, Output]:
    """incidents/<id>.html: one listed incident and all its notes (bounded by MAX_NOTES).
    Nothing on it depends on the publish's time: a publish rewrites it only when the
    incident changed (the files are written by digest)."""
    source = site_source()
    return {incident_page(i.id): Output(_incident_html(source, i), "text/html; charset=utf-8")
            for i in model.incidents}


# An incident's page is a function of the incident alone (a frozen tree of strings,
# times and tuples), and a warm instance's next publish usually shows the same ones: up to
# MAX_NOTES + 1 notes of 2,000 characters each to escape again, where comparing the
# incident costs a hash and its notes' texts.
@functools.lru_cache(maxsize=64)
def _incident_html(source: Path, incident) -> bytes:
    css = _static(source, "status.css")
    template = _env(source).get_template("incident.html.j2")
    return template.render(i=incident, css=css, csp=_csp(css, "")).encode()


def consumer_page(consumer_id: str, ext: str = "html") -> str:
    """`consumers/<id>.html` (and .json): linkable from a dashboard; unsafe ids get a slug
    and a hash, as badges do."""
    ident = badge_path("consumer", consumer_id).removeprefix("badges/consumer/")
    return f"consumers/{ident.removesuffix('.svg')}.{ext}"


def _built_from(keys: tuple[str, ...], by_key: dict[str, DatasetStatus]) -> list[str]:
    """The datasets `keys` are built from, transitively, nearest first."""
    found: list[str] = []
    todo = [u for k in keys if k in by_key for u in by_key[k].upstream]
    while todo:
        key = todo.pop(0)
        if key not in found and key not in keys:
            found.append(key)
            todo.extend(by_key[key].upstream if key in by_key else ())
    return found


def render_consumers(model: StatusModel, parts: "_Parts | None" = None,
                     current: Current | None = None) -> dict[str, Output]:
    """One short page per consumer, and the same as JSON: only what it depends on (the
    datasets it needs and those they are built from) and the incidents that reach it;
    those `current` says are still the ones published, kept (not rendered)."""
    parts = parts or _Parts()
    source = site_source()
    css, js = _static(source, "status.css"), _static(source, "status.js")
    template = _env(source).get_template("consumer.html.j2")
    by_key = {d.key: d for d in model.datasets}
    incidents = {i.id: i for i in model.incidents}
    out = {}
    for c in model.consumers:
        needed = tuple(d.key for d in c.datasets)
        upstream = _built_from(needed, by_key)
        datasets = [by_key[k] for k in (*needed, *upstream) if k in by_key]
        about = [incidents[i] for i in c.incidents if i in incidents]
        doc = {"schema_version": SCHEMA_VERSION, "generated_at": _iso(model.built_at),
               "stale_after_s": model.stale_after_s, "consumer": parts.consumer(c),
               "built_from": upstream, "datasets": [],  # their text is the parts'
               "incidents": [parts.incident(i) for i in about]}
        # keyed: rewritten when what they say changes (their ages: the browser's):
        # consumer_key(doc), its datasets' part from the parts' texts
        key = _key_from(_strip({k: v for k, v in doc.items() if k != "datasets"}),
                        parts.datasets_text(datasets, parts.dataset_key_text))
        page, data = consumer_page(c.id), consumer_page(c.id, "json")
        kept = {path: Output(b"", kind, key=key, kept=True)
                for path, kind in ((page, "text/html; charset=utf-8"),
                                   (data, "application/json"))}
        if current is not None and all(current(path, o) for path, o in kept.items()):
            out.update(kept)
            continue
        html = template.render(
            m=model, c=c, level=LEVELS[c.state], datasets=datasets, built_from=set(upstream),
            incidents=about, built_iso=time_attribute(model.built_at), css=css, js=js,
            csp=_csp(css, js, heartbeat=True), heartbeat=f"../{HEARTBEAT}",
            stale_words=human_duration(timedelta(seconds=model.stale_after_s)))
        text = _joined(doc, {"datasets": parts.datasets_text(datasets, parts.dataset_text),
                             "consumer": parts.consumer_text(c)}, printable_json)
        out[page] = replace(kept[page], data=html.encode(), kept=False)
        out[data] = replace(kept[data], data=text.encode(), kept=False)
    return out


def render_index(model: StatusModel, events: list[Event]) -> str:
    source = site_source()
    css, js = _static(source, "status.css"), _static(source, "status.js")
    detailed = model.datasets[:DETAILED_DATASETS]
    rest = model.datasets[DETAILED_DATASETS:]
    return _env(source).get_template("index.html.j2").render(
        m=model, now=model.built_at, built_iso=time_attribute(model.built_at),
        detailed_datasets=detailed, other_datasets=rest,
        other_dataset_counts=_counts(d.state for d in rest),
        detailed_jobs=model.jobs[:DETAILED_JOBS], other_jobs=model.jobs[DETAILED_JOBS:],
        runs=model.runs[:RUNS_ON_PAGE], events=events[:EVENTS_ON_PAGE],
        css=css, js=js, csp=_csp(css, js),
        error_limit=ERROR_ON_PAGE, needs_limit=NEEDS_ON_BANNER, notes_limit=NOTES_ON_BANNER,
        incident_page=incident_page,
        incident_titles={i.id: i.title for i in model.incidents},
        stale_words=human_duration(timedelta(seconds=model.stale_after_s)),
        states={d.key: d.state for d in model.datasets},
        state_order=("error", "stale_data", "failing", "warn", "at_risk", "unknown",
                     "maintenance", "running", "fresh"),
    )


@quick_init  # made thousands of times a build
@dataclass(frozen=True)
class FeedEntry:
    id: str
    at: str  # ISO 8601, UTC
    kind: str
    title: str
    summary: str
    anchor: str  # where on the page it links to


_ANCHORS = {"dataset": "d-", "job": "j-", "consumer": "c-", "deadline": "c-"}
_NOTE_WORDS = {"opened": "opened", "update": "update", "resolved": "resolved"}


def feed_entries(model: StatusModel, events: list[Event]) -> list[FeedEntry]:
    """The state changes and the newest incident notes (at most FEED_NOTES of them),
    newest first, at most FEED_ENTRIES: notes never push the state changes out."""
    entries = [FeedEntry(e.id, e.at, e.kind, e.title, e.summary,
                         "runs" if e.kind == "run_stuck"
                         else _ANCHORS.get(e.kind.split("_")[0], "") + e.subject)
               for e in events]
    # Every note's time and id first (20 incidents of 100 notes are 2,000), an entry
    # for the newest FEED_NOTES only.
    found = sorted(((_iso(note.at), f"incident:{incident.id}:{n}", incident, note)
                    for incident in model.incidents for n, note in enumerate(incident.notes)),
                   key=lambda x: x[:2], reverse=True)[:FEED_NOTES]
    notes = [FeedEntry(ident, at, f"incident_{note.kind}",
                       f"Incident {_NOTE_WORDS[note.kind]}: {incident.title}",
                       note.text + (f" (ETA {note.eta:%Y-%m-%d %H:%M} UTC)" if note.eta else ""),
                       f"incident-{incident.id}")
             for at, ident, incident, note in found]
    newest = lambda e: (e.at, e.id)  # noqa: E731
    entries.sort(key=newest, reverse=True)
    entries = entries[:FEED_ENTRIES - min(len(notes), FEED_NOTES)] + notes
    return sorted(entries, key=newest, reverse=True)[:FEED_ENTRIES]


def render_feed(model: StatusModel, events: list[Event],
                entries: list[FeedEntry] | None = None) -> str:
    entries = feed_entries(model, events) if entries is None else entries
    return _env(site_source()).get_template("feed.xml.j2").render(
        m=model, entries=entries, built_iso=time_attribute(model.built_at),
        updated=entries[0].at if entries else _iso(model.built_at),
    )


# The badge template's fields: rendered once with a marker in each, then filled in by
# joining (thousands of badges a publish; a template call each cost most of a build).
_BADGE_FIELDS = ("label", "message", "colour", "label_w", "message_w", "width", "label_x",
                 "message_x")
_MARK = re.compile("\ue000([0-9])\ue001")


@functools.cache
def _badge_parts(source: Path) -> tuple[str, ...]:
    """The rendered template split at its fields: text, field index, text, ..."""
    marks = {name: f"\ue000{i}\ue001" for i, name in enumerate(_BADGE_FIELDS)}
    return tuple(_MARK.split(_env(source).get_template("badge.svg.j2").render(**marks)))


def render_badge(label: str, state: str) -> str:
    """badge.svg.j2 with these values, byte for byte as Jinja renders it (autoescaped,
    printable; numbers as str() writes them)."""
    return _badge(site_source(), label, state)


# A badge is a function of its label and state alone, and few of thousands change
# between two publishes of a warm instance.
@functools.lru_cache(maxsize=16384)
def _badge(source: Path, label: str, state: str) -> str:
    message = BADGE_WORDS[state]
    label = shorten(label, 40)
    label_w, message_w = _text_width(label) + 12, _text_width(message) + 12
    values = (label, message, BADGE_COLOURS[state], label_w, message_w,
              label_w + message_w, label_w / 2, label_w + message_w / 2)
    shown = [str(markupsafe.escape(_printable(v))) for v in values]
    parts = _badge_parts(source)
    return "".join(p if i % 2 == 0 else shown[int(p)] for i, p in enumerate(parts))


def render_badges(model: StatusModel) -> dict[str, Output]:
    source = site_source()
    return {**{badge_path("dataset", d.key): Output(_badge_bytes(source, d.title, d.state),
                                                    "image/svg+xml") for d in model.datasets},
            **{badge_path("consumer", c.id): Output(_badge_bytes(source, c.title, c.state),
                                                    "image/svg+xml") for c in model.consumers}}


@functools.lru_cache(maxsize=16384)  # as _badge, encoded
def _badge_bytes(source: Path, label: str, state: str) -> bytes:
    return _badge(source, label, state).encode()


def _text_width(text: str) -> int:
    """Verdana 11px averages about 7px a character; wide letters count more."""
    return sum(9 if ch in "MWmw@%" else 4 if ch in "ilj.,:;|!'" else 7 for ch in text)


# -- status.json ----------------------------------------------------------------


def _secs(delta: timedelta | None) -> float | None:
    return None if delta is None else round(delta.total_seconds(), 3)


# A requirement's limits: the same few for thousands of datasets.
_limit_secs = functools.lru_cache(maxsize=256)(_secs)


def _dataset_json(d: DatasetStatus) -> dict:
    return {
        "key": d.key, "title": d.title, "owner": d.owner, "description": d.description,
        "declared": d.declared, "state": d.state, "label": d.label, "own_state": d.own_state,
        "reason": d.reason, "age_s": _secs(d.age),
        "warn_after_s": _limit_secs(d.requirement.warn_after),
        "error_after_s": _limit_secs(d.requirement.error_after),
        "last_started_at": _iso(d.last_started_at),
        "last_success_at": _iso(d.last_success_at),
        "last_failure_at": _iso(d.last_failure_at),
        "last_error": d.last_error, "consecutive_failures": d.consecutive_failures,
        "last_record_count": d.last_record_count, "upstream": list(d.upstream),
        "downstream": list(d.downstream), "triggers": list(d.triggers),
        "at_risk_from": list(d.at_risk_from), "consumers": list(d.consumers),
        "history": {"start": d.history_start, "days": d.history},
        "badge": badge_path("dataset", d.key),
        "data_as_of": _iso(d.data_as_of), "freshness_basis": d.freshness_basis,
        "watermark_issue": d.watermark_issue, "excused_by": d.excused_by,
        "incidents": list(d.incidents),
    }


def _ratio(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _judgement_json(j: Judgement | None) -> dict | None:
    if j is None:
        return None
    return {"due": _iso(j.due), "verdict": j.verdict, "detail": j.detail}


def _consumer_json(x: ConsumerStatus) -> dict:
    return {
        "id": x.id, "title": x.title, "kind": x.kind, "url": x.url, "state": x.state,
        "label": x.label, "message": x.message, "badge": badge_path("consumer", x.id),
        "owner": x.owner, "routes": list(x.routes), "excused_by": x.excused_by,
        "incidents": list(x.incidents),
        "datasets": [{
            "key": i.key, "state": i.state, "reason": i.reason, "age_s": _secs(i.age),
            "warn_after_s": _limit_secs(i.requirement.warn_after),
            "error_after_s": _limit_secs(i.requirement.error_after),
            "data_as_of": _iso(i.freshness.data_as_of) if i.freshness else None,
            "freshness_basis": i.freshness.basis if i.freshness else "sync",
        } for i in x.datasets],
        "deadlines": [{
            "key": d.key, "by": d.deadline.by, "timezone": d.deadline.timezone,
            "as_of": d.deadline.as_of, "description": d.description,
            "datasets": list(d.datasets), "next_due": _iso(d.next_due),
            "last": _judgement_json(d.last),
            "at_risk": bool(d.risks),
            "risks": [{"signal": r.signal, "text": r.text} for r in d.risks],
        } for d in x.deadlines],
        "attainment_90d": _ratio(x.attainment_90d),
        "attainment_30d": _ratio(x.attainment_30d),
        "deadline_counts_90d": {k: x.deadline_counts.get(k, 0)
                                for k in ("met", "missed", "excused")},
    }


def _maintenance_json(o: Occurrence, now: datetime) -> dict:
    w = o.window
    return {"id": w.id, "note": w.note, "start": _iso(o.start), "end": _iso(o.end),
            "active": o.active(now), "mode": w.mode, "scope": w.scope.to_json(),
            "recurring": w.recurring, "cron": w.cron, "timezone": w.timezone if w.recurring
            else None}


def route_json(r: RouteStatus) -> dict:
    return {"id": r.id, "type": r.type, "target": r.target,
            "min_interval_s": _secs(r.min_interval), "last_status": r.last_status or None,
            "last_attempt_at": _iso(r.last_attempt_at),
            "last_delivered_at": _iso(r.last_delivered_at), "last_error": r.last_error,
            "waiting": r.waiting, "dropped": r.dropped, "delivered": r.delivered}


def status_json(model: StatusModel, events: list[Event]) -> dict:
    """The documented shape (docs/status-json.md, site/status.schema.json)."""
    return _status_doc(model, events, _Parts(), [_dataset_json(d) for d in model.datasets])


def _status_text(model: StatusModel, events: list[Event], parts: _Parts) -> str:
    """printable_json(status_json(...)), its datasets' and consumers' text the parts'."""
    doc = _status_doc(model, events, parts, [])
    return _joined(doc, {"datasets": parts.datasets_text(model.datasets, parts.dataset_text),
                         "consumers": "[" + ",".join(parts.consumer_text(x)
                                                     for x in model.consumers) + "]"},
                   printable_json)


def _status_doc(model: StatusModel, events: list[Event], parts: _Parts,
                datasets: list[dict]) -> dict:
    c = model.control
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": _iso(model.built_at),
        "stale_after_s": model.stale_after_s,
        "site_url": model.site_url,
        "overall": {"state": model.state, "headline": model.headline},
        "control": {"paused_all": c.paused_all, "disabled_kinds": sorted(c.disabled_kinds),
                    "manual_actions_enabled": c.manual_actions_enabled, "reason": c.reason},
        "counts": {"datasets": model.dataset_counts, "jobs": model.job_counts},
        "control_loop": None if model.loop is None else {
            "ok": model.loop.ok, "message": model.loop.message,
            "last_tick_at": _iso(model.loop.last_tick_at),
            "last_sweep_at": _iso(model.loop.last_sweep_at),
            "overdue_jobs": list(model.loop.overdue_jobs)},
        "consumers": [parts.consumer(x) for x in model.consumers],
        "datasets": datasets,
        "jobs": [{
            "id": j.id, "kind": j.kind, "description": j.description, "status": j.status,
            "health": j.health, "schedule": j.schedule, "timezone": j.timezone,
            "next_run_at": _iso(j.next_run_at), "last_run_at": _iso(j.last_run_at),
            "last_run_status": j.last_run_status, "last_run_id": j.last_run_id,
            "last_error": j.last_error, "attempt": j.attempt, "max_attempts": j.max_attempts,
            "stuck_recoveries": j.stuck_recoveries, "produces": list(j.produces),
            "params": dict(j.params), "kind_enabled": j.kind_enabled,
            "trigger": j.trigger or None, "pool": j.pool, "catchup": j.catchup,
        } for j in model.jobs],
        "pools": [{"name": p.name, "queue": p.queue, "max_concurrent": p.max_concurrent,
                   "running": p.running, "queued": p.queued} for p in model.pools],
        "runs": [{
            "id": r.id, "job_id": r.job_id, "kind": r.kind, "status": r.status,
            "trigger_source": r.trigger_source, "attempt_number": r.attempt_number,
            "max_attempts": r.max_attempts, "scheduled_for": _iso(r.scheduled_for),
            "slot": _iso(r.scheduled_for),
            "data_interval": {"start": _iso(r.interval_start),
                              "end": _iso(r.scheduled_for)},
            "queue": r.queue, "backfill_id": r.backfill_id,
            "started_at": _iso(r.started_at), "finished_at": _iso(r.finished_at),
            "duration_s": r.duration_s, "stuck": r.stuck, "error": r.error,
            "logs_url": r.logs_url,
        } for r in model.runs[:RUNS_IN_JSON]],
        "events": [e.to_doc() for e in events],
        "incidents": [parts.incident(i) for i in model.incidents],
        "maintenance": [_maintenance_json(o, model.built_at) for o in model.maintenance],
        "routes": [route_json(r) for r in model.routes],
    }


def _incident_json(incident) -> dict:
    """An incident with its latest NOTES_IN_JSON notes (oldest first), how many it has
    and the page with all of them."""
    doc = incident.to_json()
    return {**doc, "notes": doc["notes"][-NOTES_IN_JSON:], "notes_total": len(doc["notes"]),
            "notes_url": incident_page(incident.id)}


# -- template helpers -----------------------------------------------------------


def _counts(states) -> dict[str, int]:
    found: dict[str, int] = {}
    for s in states:
        found[s] = found.get(s, 0) + 1
    return found


# A dataset's row on its consumers' pages (consumer.html.j2's table), as Jinja would
# print it: each value printable and HTML-escaped (`_html`), the reason with its ages in
# <time> (`live`). Written here, not in the template: 5,000 rows a build, whose values
# each cost Jinja an attribute lookup, a finalize and an escape call.
CONSUMER_ROW = """\
      <tr>
        <th scope="row">{title}{upstream}<br><span class="muted small">{key}</span></th>
        <td><span class="mini st-{state}">{label}</span></td>
        <td>{reason}</td>
        <td>{success}</td>
        <td>{sla}</td>
      </tr>"""


def _dataset_rows(datasets: list[DatasetStatus], built_from: set[str], now: datetime
                  ) -> markupsafe.Markup:
    rows = []
    for d in datasets:
        success = d.last_success_at
        state, label = _STATE_HTML[d.state]
        rows.append(CONSUMER_ROW.format(
            title=_html(d.title or d.key),
            upstream=' <span class="muted">(upstream)</span>' if d.key in built_from else "",
            key=_html(d.key), state=state, label=label,
            reason=printable(live(shorten(d.reason, 300), d, now)),
            success=_moment_html(success) if success else "never",
            sla=_html(d.sla)))
    return _Printed("\n".join(rows))


# The main page's collapsed lists (index.html.j2): the datasets and jobs past the
# detailed ones, thousands of entries, each as the template would print it.
COMPACT_DATASET = ('<li id="d-{key}"><b class="mini st-{state}">{label}</b> {key} '
                   '<small>{age}</small></li>')
COMPACT_JOB = ('<li id="j-{id}"><b class="mini jh-{health}">{health}</b> {id} '
               '<small>{schedule}</small></li>')


def _compact_datasets(datasets: tuple[DatasetStatus, ...]) -> markupsafe.Markup:
    # an age in words is digits and units (human_duration's) or "—": printed as it is
    return _Printed("".join([COMPACT_DATASET.format(
        key=_html(d.key), state=state, label=label, age=_age(d.age))
        for d in datasets for state, label in (_STATE_HTML[d.state],)]))


def _compact_jobs(jobs: tuple[JobSummary, ...]) -> markupsafe.Markup:
    return _Printed("".join([COMPACT_JOB.format(
        id=_html(j.id), health=_html(j.health), schedule=_html(j.schedule)) for j in jobs]))


# A note on its incident's page (incident.html.j2): up to MAX_NOTES + 1 of them each,
# of up to 2,000 characters.
INCIDENT_NOTE = '<li>{at} {text}{eta}{author}</li>\n'


def _incident_notes(notes: tuple) -> markupsafe.Markup:
    return _Printed("".join([INCIDENT_NOTE.format(
        at=_moment_html(n.at),
        text=_html(shorten(n.text, 2000)),
        eta=f" (ETA {_html(_when(n.eta))})" if n.eta else "",
        author=f' <span class="muted">— {_html(n.author)}</span>' if n.author else "")
        for n in reversed(notes)]))


def _html(value: str) -> str:
    """A text as a template prints it: printable (the environment's finalize), then
    escaped as markupsafe does (its five characters)."""
    if not (value.isascii() and value.isprintable()):
        value = printable(value)
    # five searches (memchr) cost less than one of a character class (sre's)
    if "&" in value or "<" in value or ">" in value or "'" in value or '"' in value:
        return (value.replace("&", "&amp;").replace(">", "&gt;").replace("<", "&lt;")
                .replace("'", "&#39;").replace('"', "&#34;"))
    return value


# Each state and its label as _html prints them: a few words, for 10,000 rows a build.
_STATE_HTML = {state: (_html(state), _html(label)) for state, label in LABELS.items()}


def _worst_needs(items: tuple, limit: int) -> list:
    """A consumer's banner's datasets: those not fresh first, in their order, at most
    `limit` (Jinja's select and reject filters cost a call per test: 5,000 a build)."""
    return ([i for i in items if i.state != "fresh"]
            + [i for i in items if i.state == "fresh"])[:limit]


def _window_words(window: Window) -> str:
    """'every 10 minutes (UTC)': when a recurring window starts, in words."""
    words = describe(Schedule(cron=window.cron, timezone=window.timezone))
    return words[:1].lower() + words[1:]


def percent(value: float) -> str:
    """0.925 -> '92.5%', 1.0 -> '100%'."""
    return f"{value * 100:.1f}".rstrip("0").rstrip(".") + "%"


def _when(value: datetime | None) -> str:
    if value is None:
        return "—"
    if getattr(value, "tzinfo", None) not in (None, UTC):  # said in UTC
        value = value.astimezone(UTC)
    if value.__class__ is datetime and value.year >= 1000:  # isoformat's 4 digits
        return value.isoformat(" ", "minutes")[:16] + " UTC"  # strftime's cost a third
    return f"{value:%Y-%m-%d %H:%M} UTC"


@_per_build
def _moment_html(value: datetime) -> str:
    """A moment as the page shows it: its time in words in a <time> element."""
    return f'<time datetime="{_html(time_attribute(value))}">{_html(_when(value))}</time>'


def _age(value: timedelta | None) -> str:
    return "—" if value is None else human_duration(value)


def _since(d: object) -> datetime | None:
    """What a dataset's age is measured from (its data time, else its last success)."""
    return getattr(d, "data_as_of", None) or getattr(d, "last_success_at", None)


def age_of(d: DatasetStatus) -> markupsafe.Markup:
    """A dataset's age in words, in a <time> the page's script keeps current."""
    since = _since(d)
    words = markupsafe.escape(_age(d.age))
    if since is None or d.age is None:
        return words
    return markupsafe.Markup(f'<time datetime="{time_attribute(since)}" data-age>{words}</time>')


def live(text: str, datasets: object, now: datetime) -> markupsafe.Markup:
    """`text` (a reason, a banner) escaped, its ages in words ("synced 2 h ago", "27 h
    old") put in <time> elements the page's script keeps current: a page that is not
    rebuilt while nothing changes still says how old the data is. `datasets`: the
    dataset (or datasets) whose times the words were computed from, at `now`."""
    if not isinstance(datasets, list | tuple):
        return _live_one(text, getattr(datasets, "last_success_at", None),
                         getattr(datasets, "last_started_at", None), _since(datasets), now)
    return _timed(text, _first_times(
        _ages_in_words(getattr(d, "last_success_at", None),
                       getattr(d, "last_started_at", None), _since(d), now)
        for d in datasets))


# One dataset's reason: the datasets of a run share their times, and most of them their
# reason's words too (typed: a text and Markup of the same characters escape apart).
# render_site empties it.
@functools.lru_cache(maxsize=32768, typed=True)
def _live_one(text: str, success: datetime | None, started: datetime | None,
              since: datetime | None, now: datetime) -> markupsafe.Markup:
    return _timed(text, _first_times([_ages_in_words(success, started, since, now)]))


def _first_times(ages: Iterable[tuple[tuple[str, str], ...]]) -> dict[str, str]:
    """{words: ISO time} of datasets' ages in words (_ages_in_words'), the first time
    each words were said of kept."""
    found: dict[str, str] = {}
    for pairs in ages:
        for words, at in pairs:
            found.setdefault(words, at)
    return found


def _timed(text: str, found: dict[str, str]) -> markupsafe.Markup:
    """live's: `text` escaped, each age in `found` ({words: ISO time}) in a <time>."""
    escaped = str(markupsafe.escape(text))
    if not found:
        return markupsafe.Markup(escaped)

    def timed(match: re.Match) -> str:
        at = found.get(match.group(0))
        if at is None:
            return match.group(0)
        if match.group(2) == "ago":
            return f'<time datetime="{at}" data-rel>{match.group(1)} ago</time>'
        return f'<time datetime="{at}" data-age>{match.group(1)}</time> old'

    return markupsafe.Markup(_AGE_WORDS.sub(timed, escaped))


@functools.lru_cache(maxsize=32768)
def _ages_in_words(success: datetime | None, started: datetime | None,
                   since: datetime | None, now: datetime) -> tuple[tuple[str, str], ...]:
    """A dataset's ages in words at `now` and the times they count from (live's).
    A page shows each dataset's up to three times (the main page, a consumer's banner
    and its row): render_site empties this cache, so it serves one build only."""
    return tuple((f"{human_duration(now - at)} {kind}", _time_attribute(at))
                 for at, kind in ((success, "ago"), (started, "ago"), (since, "old"),
                                  (success, "old"))
                 if at is not None and at <= now)


# An age in words as core.timeutil.human_duration writes it, then "ago" or "old".
_AGE_WORDS = re.compile(r"(?<![\w-])(\d+ (?:s|min|h|d)(?: \d+ min)?) (ago|old)\b")


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.1f} s"
    return human_duration(timedelta(seconds=seconds))


_BAR_CLASSES = {"o": "b-ok", "p": "b-partial", "f": "b-fail", "m": "b-maint", "-": "b-none"}


def _bar(history: str) -> dict:
    """Run-length paths, one per colour, and a text label: small at any number of rows."""
    paths: dict[str, list[str]] = {}
    i = 0
    while i < len(history):
        j = i
        while j < len(history) and history[j] == history[i]:
            j += 1
        paths.setdefault(_BAR_CLASSES[history[i]], []).append(f"M{i} 0h{j - i}v1H{i}z")
        i = j
    counts = {DAY_CODES[c]: history.count(c) for c in "opfm-" if c in history}
    label = f"Last {len(history)} days: " + ", ".join(f"{n} {w}" for w, n in counts.items())
    return {"paths": {k: "".join(v) for k, v in paths.items()}, "label": label}
