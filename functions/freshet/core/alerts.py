"""Routed, quiet alerts: who is told what, when, as pure decisions.

Consumers and datasets name their notification routes (`routes: [growth-slack]`). A
route is a Slack-compatible webhook or a generic JSON webhook signed with an HMAC
header; its URL and secret are references: a literal, an environment variable, or a
Secret Manager version that deploy exposes to publish_status as an environment
variable (`--set-secrets`), so no secret is ever stored in Firestore or the catalog.

Each route keeps its own bounded state (`routes/{id}`): the class each subject it
follows was last told in, the newest deadline it has reported per consumer, when it
last queued a message, and its backlog. Per publish, `decide_route`:

  - tells a subject's change of class: entering warning / error / stale data, and
    recovery (back to ok); a subject seen for the first time only sets a baseline;
  - tells a missed deadline once;
  - says nothing of a muted subject (in a maintenance window's scope) and does not move
    its baseline: a change that is still there when the window ends is told then;
  - queues at most one message per publish for the route, and none while its minimum
    interval since the last one runs (the changes wait, coalesced: a subject that went
    bad and recovered within the interval is never told);
  - keeps at most MAX_BACKLOG messages, dropping the oldest (counted).

A change to a dataset reaches every route of every consumer it affects (each
consumer's state changes), once per route: one message carries all of it.
"""

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

from freshet.core.deadlines import Judgement, Verdict
from freshet.core.errors import ValidationError, check_keys
from freshet.core.models import check_id
from freshet.core.text import shorten
from freshet.core.timeutil import format_duration, isoformat, parse_duration, to_utc

MAX_BACKLOG = 10  # messages waiting per route
# Consumers and datasets one route may follow: its state document files a line or two
# per subject (45 bytes at most) beside a full backlog, and must stay under Firestore's
# 1 MiB: at its worst 225 KB of subjects beside 731 KB of backlog, 956 KB in all.
# apply refuses more (tests/integration/test_route_bounds.py writes the worst case).
MAX_SUBJECTS_PER_ROUTE = 5000
MAX_EVENTS_PER_MESSAGE = 20  # the rest are counted in `more`
MAX_ATTEMPTS = 8
FIRST_BACKOFF = timedelta(minutes=1)
MAX_BACKOFF = timedelta(hours=1)
MAX_SUMMARY = 500
MAX_TITLE = 300
DEFAULT_ROUTE = "default"  # FRESHET_WEBHOOK_URL: every change of the feed, unrouted


class RouteType(StrEnum):
    """The built-in route types' names. Each is a package under freshet/status/routes/
    (its keys, its apply-time check, its sender); a RouteSpec's `type` is the name."""

    SLACK = "slack"  # {"text": ...}, as Slack's incoming webhooks (and many others) take it
    WEBHOOK = "webhook"  # Freshet's JSON, signed: X-Freshet-Signature: sha256=HMAC(...)


class Tell(StrEnum):
    """What a subject's state is, for a route: a change between these is told."""

    OK = "ok"
    WARNING = "warning"
    ERROR = "error"
    STALE_DATA = "stale_data"


_TELL = {"fresh": Tell.OK, "warn": Tell.WARNING, "at_risk": Tell.WARNING,
         "unknown": Tell.WARNING, "failing": Tell.ERROR, "error": Tell.ERROR,
         "stale_data": Tell.STALE_DATA}


def tell_of(state: str) -> Tell | None:
    """None: nothing to tell yet. `maintenance` is muted; `running` is on its way to an
    outcome (a first sync, or a refresh of old data), which is told when it comes."""
    return _TELL.get(state)


# -- references and routes -----------------------------------------------------------------

@dataclass(frozen=True)
class Reference:
    """A URL or a secret: given in the file, or read from the environment."""

    value: str = ""
    env: str = ""
    secret_manager: str = ""  # projects/P/secrets/S/versions/V, exposed as `env` by deploy

    def resolve(self, environ: Mapping[str, str]) -> str | None:
        return self.value or environ.get(self.env) or None

    def describe(self) -> str:
        if self.secret_manager:
            return f"Secret Manager {self.secret_manager} (as ${self.env})"
        if self.env:
            return f"${self.env}"
        return "in the config"

    def to_doc(self) -> dict:
        return {"value": self.value, "env": self.env, "secret_manager": self.secret_manager}

    @classmethod
    def from_doc(cls, doc: dict | None) -> "Reference":
        doc = doc or {}
        return cls(doc.get("value") or "", doc.get("env") or "", doc.get("secret_manager") or "")


@dataclass(frozen=True)
class RouteSpec:
    id: str
    type: str  # a route type's name (RouteType for the built-in ones)
    url: Reference
    secret: Reference | None = None  # webhook: the HMAC key
    min_interval: timedelta = timedelta(0)

    def to_doc(self) -> dict:
        return {"id": self.id, "type": str(self.type), "url": self.url.to_doc(),
                "secret": self.secret.to_doc() if self.secret else None,
                "min_interval": format_duration(self.min_interval) if self.min_interval
                else "0s"}

    @classmethod
    def from_doc(cls, doc: dict) -> "RouteSpec":
        interval = doc.get("min_interval") or "0s"
        return cls(id=doc["id"], type=str(doc.get("type") or RouteType.SLACK),
                   url=Reference.from_doc(doc.get("url")),
                   secret=Reference.from_doc(doc["secret"]) if doc.get("secret") else None,
                   min_interval=timedelta(0) if interval == "0s"
                   else parse_duration(interval, "min_interval"))


def route_specs(declared: Iterable[RouteSpec], webhook_url: str | None) -> list[RouteSpec]:
    """The catalog's routes, and `default` when FRESHET_WEBHOOK_URL is set."""
    specs = list(declared)
    if webhook_url:
        specs.append(RouteSpec(DEFAULT_ROUTE, RouteType.SLACK,
                               Reference(value=webhook_url, env="FRESHET_WEBHOOK_URL")))
    return specs


_ENV_NAME = "FRESHET_ROUTE_{id}_{what}"


def secret_env_name(route_id: str, what: str) -> str:
    """The variable deploy sets from a Secret Manager reference: FRESHET_ROUTE_OPS_SECRET."""
    ident = "".join(c if c.isalnum() else "_" for c in route_id.upper())
    return _ENV_NAME.format(id=ident, what=what)


def route_common(doc: object, where: str, keys: tuple[str, ...]
                 ) -> tuple[str, Reference, timedelta]:
    """What every route type shares, checked: its id, its URL (a literal http(s) URL or
    a reference) and its minimum interval. `keys`: the keys the type allows."""
    check_keys(doc, where, keys, "with id, type and url")
    route_id = check_id(doc.get("id"), f"{where}.id")
    if "url" not in doc:
        raise ValidationError(f"{where}.url", "is required")
    url = reference(doc["url"], f"{where}.url", route_id, "URL", literal_ok=True)
    if url.value:
        _check_url(url.value, f"{where}.url")
    interval = doc.get("min_interval", 0)
    interval = timedelta(0) if interval in (0, "0", "0s") else parse_duration(
        interval, f"{where}.min_interval")
    return route_id, url, interval


def _check_url(url: str, where: str) -> None:
    """An http(s) URL with a host and a valid port (named neither: it may be secret)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a port out of range)
    except ValueError:
        raise ValidationError(where, "must be an http(s) URL with a valid port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(where, "must be an http(s) URL")


def reference(value: object, where: str, route_id: str, what: str, *,
              literal_ok: bool) -> Reference:
    """A URL or secret given as a literal (`literal_ok`), {env: NAME} or
    {secret_manager: projects/P/secrets/S/versions/V}."""
    if isinstance(value, str) and literal_ok:
        return Reference(value=value)
    if not isinstance(value, dict) or len(value) != 1 or \
            next(iter(value)) not in ("env", "secret_manager"):
        allowed = "a URL, " if literal_ok else ""
        raise ValidationError(where, f"must be {allowed}{{env: NAME}} or {{secret_manager: "
                              "projects/P/secrets/S/versions/V}}")
    (kind, ref), = value.items()
    if not isinstance(ref, str) or not ref.strip():
        raise ValidationError(f"{where}.{kind}", "must be a non-empty string")
    if kind == "env":
        if not ref.replace("_", "").isalnum() or not ref[0].isalpha() or ref.upper() != ref:
            raise ValidationError(f"{where}.env", "must be an upper-case variable name")
        return Reference(env=ref)
    parts = ref.split("/")
    if len(parts) != 6 or parts[0] != "projects" or parts[2] != "secrets" \
            or parts[4] != "versions" or not all(parts):
        raise ValidationError(f"{where}.secret_manager",
                              "must be projects/PROJECT/secrets/NAME/versions/VERSION")
    return Reference(env=secret_env_name(route_id, what), secret_manager=ref)


# -- what a route knows ---------------------------------------------------------------

@dataclass(frozen=True)
class Message:
    id: str
    created_at: datetime
    events: tuple[dict, ...]  # Event documents (freshet.status.changes.Event)
    more: int = 0  # events beyond MAX_EVENTS_PER_MESSAGE
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None

    def to_doc(self) -> dict:
        return {"id": self.id, "created_at": self.created_at, "events": list(self.events),
                "more": self.more, "attempts": self.attempts,
                "next_attempt_at": self.next_attempt_at, "last_error": self.last_error}

    @classmethod
    def from_doc(cls, doc: dict) -> "Message":
        return cls(doc["id"], to_utc(doc["created_at"]), tuple(doc.get("events") or ()),
                   int(doc.get("more") or 0), int(doc.get("attempts") or 0),
                   to_utc(doc.get("next_attempt_at")), doc.get("last_error"))


@dataclass(frozen=True)
class RouteState:
    id: str
    notified: dict[str, str] = field(default_factory=dict)  # subject hash -> Tell
    deadlines_seen: dict[str, datetime] = field(default_factory=dict)  # consumer hash -> due
    last_message_at: datetime | None = None
    backlog: tuple[Message, ...] = ()
    dropped: int = 0
    delivered: int = 0
    last_attempt_at: datetime | None = None
    last_delivered_at: datetime | None = None
    last_status: str = ""  # delivered | failed | dropped ("" before the first attempt)
    last_error: str | None = None

    def to_doc(self) -> dict:
        return {"id": self.id, "notified": dict(self.notified),
                "deadlines_seen": dict(self.deadlines_seen),
                "last_message_at": self.last_message_at,
                "backlog": [m.to_doc() for m in self.backlog], "dropped": self.dropped,
                "delivered": self.delivered, "last_attempt_at": self.last_attempt_at,
                "last_delivered_at": self.last_delivered_at, "last_status": self.last_status,
                "last_error": self.last_error}

    @classmethod
    def from_doc(cls, doc: dict) -> "RouteState":
        return cls(
            id=doc["id"], notified=dict(doc.get("notified") or {}),
            deadlines_seen={k: to_utc(v) for k, v in (doc.get("deadlines_seen") or {}).items()},
            last_message_at=to_utc(doc.get("last_message_at")),
            backlog=tuple(Message.from_doc(m) for m in doc.get("backlog") or ()),
            dropped=int(doc.get("dropped") or 0), delivered=int(doc.get("delivered") or 0),
            last_attempt_at=to_utc(doc.get("last_attempt_at")),
            last_delivered_at=to_utc(doc.get("last_delivered_at")),
            last_status=doc.get("last_status") or "", last_error=doc.get("last_error"),
        )


@dataclass(frozen=True)
class Observation:
    """One subject a route follows, as this publish sees it."""

    subject: str  # "consumer:<id>" | "dataset:<key>"
    title: str
    state: str
    summary: str
    muted: bool = False  # in the scope of a maintenance window now


@dataclass(frozen=True)
class DeadlineNews:
    """A consumer's recent deadline verdicts (newest first), for the routes that follow it."""

    subject: str  # "consumer:<id>"
    title: str
    recent: tuple[Judgement, ...]
    describe: Mapping[str, str] = field(default_factory=dict)  # deadline key -> words
    muted: bool = False


def subject_key(subject: str) -> str:
    """Subjects are filed hashed: a route's document stays small whatever the ids."""
    return hashlib.sha256(subject.encode()).hexdigest()[:12]


def notice(kind: str, subject: str, title: str, summary: str, state: str, previous: str,
           now: datetime) -> dict:
    """An Event document (the shape of freshet.status.changes.Event)."""
    at = isoformat(now)
    ident = hashlib.sha256(f"{kind}|{subject}|{at}|{state}".encode()).hexdigest()[:20]
    return {"id": ident, "at": at, "kind": kind, "subject": subject,
            "title": shorten(title, MAX_TITLE), "summary": shorten(summary, MAX_SUMMARY) or "",
            "state": state, "previous": previous}


def _change_notice(o: Observation, tell: Tell, before: str, now: datetime) -> dict:
    kind = o.subject.split(":", 1)[0]
    if tell == Tell.OK:
        return notice(f"{kind}_recovered", o.subject, f"{o.title} recovered", o.summary,
                      o.state, before, now)
    words = {Tell.WARNING: "needs attention", Tell.ERROR: "cannot be trusted",
             Tell.STALE_DATA: "has stale data"}[tell]
    return notice(f"{kind}_{tell}", o.subject, f"{o.title} {words}", o.summary, o.state,
                  before, now)


def decide_route(spec: RouteSpec, state: RouteState, observations: Iterable[Observation],
                 deadlines: Iterable[DeadlineNews], now: datetime
                 ) -> tuple[RouteState, Message | None]:
    """The route's new state, and the message it queues (None: nothing to tell now)."""
    observations, deadlines = list(observations), list(deadlines)
    baseline, told, events = {}, {}, []
    for o in observations:
        key, tell = subject_key(o.subject), tell_of(o.state)
        before = state.notified.get(key)
        if tell is None or o.muted:
            continue  # maintenance, or a sync under way: the baseline waits
        if before is None:
            baseline[key] = str(tell)
        elif before != tell:
            told[key] = str(tell)
            events.append(_change_notice(o, tell, before, now))
    seen_base, seen = {}, {}
    for news in deadlines:
        key = subject_key(news.subject)
        newest = max((j.due for j in news.recent), default=None)
        last = state.deadlines_seen.get(key)
        if last is None:  # first sight: verdicts so far are history, later ones news
            seen_base[key] = newest or now
            continue
        if news.muted:
            continue
        fresh = [j for j in news.recent if j.due > last]
        events += [notice("deadline_missed", news.subject, f"{news.title} missed its deadline "
                          f"of {j.due:%Y-%m-%d %H:%M} UTC",
                          f"{news.describe.get(j.deadline, '')}: {j.detail}".lstrip(": "),
                          "missed", "", now)
                   for j in sorted(fresh, key=lambda j: j.due) if j.verdict == Verdict.MISSED]
        if fresh:
            seen[key] = newest
    current = {subject_key(o.subject) for o in observations}
    followed = {subject_key(n.subject) for n in deadlines}
    notified = {k: v for k, v in {**state.notified, **baseline}.items() if k in current}
    seen_at = {k: v for k, v in {**state.deadlines_seen, **seen_base}.items() if k in followed}
    quiet = state.last_message_at is not None and now - state.last_message_at < spec.min_interval
    if not events or quiet:  # nothing to say, or not yet: the changes wait, coalesced
        return replace(state, notified=notified, deadlines_seen=seen_at), None
    message = Message(id=events[0]["id"], created_at=now,
                      events=tuple(events[:MAX_EVENTS_PER_MESSAGE]),
                      more=max(len(events) - MAX_EVENTS_PER_MESSAGE, 0), next_attempt_at=now)
    return _queued(replace(state, notified={**notified, **told},
                           deadlines_seen={**seen_at, **seen}, last_message_at=now), message)


def decide_feed_route(state: RouteState, events: list[dict], now: datetime
                      ) -> tuple[RouteState, Message | None]:
    """The unrouted webhook (FRESHET_WEBHOOK_URL): every change of the feed, one message
    per publish that has any."""
    if not events:
        return state, None
    message = Message(id=events[0]["id"], created_at=now,
                      events=tuple(events[:MAX_EVENTS_PER_MESSAGE]),
                      more=max(len(events) - MAX_EVENTS_PER_MESSAGE, 0), next_attempt_at=now)
    return _queued(replace(state, last_message_at=now), message)


def _queued(state: RouteState, message: Message) -> tuple[RouteState, Message]:
    backlog = (*state.backlog, message)
    dropped = max(len(backlog) - MAX_BACKLOG, 0)
    return replace(state, backlog=backlog[dropped:], dropped=state.dropped + dropped), message


# -- delivery --------------------------------------------------------------------------------

def backoff(attempts: int) -> timedelta:
    return min(FIRST_BACKOFF * 2 ** max(attempts - 1, 0), MAX_BACKOFF)


def due_messages(state: RouteState, now: datetime) -> list[Message]:
    return [m for m in state.backlog if m.next_attempt_at is None or m.next_attempt_at <= now]


@dataclass(frozen=True)
class Attempted:
    """How one delivery attempt of a message went."""

    message_id: str
    at: datetime
    error: str | None = None  # None: delivered


def after_delivery(state: RouteState, attempts: Iterable[Attempted]) -> RouteState:
    """The route once these attempts are recorded: delivered messages leave the backlog,
    failed ones wait with backoff, and leave it after MAX_ATTEMPTS (counted as dropped).
    Messages queued meanwhile by another publish are kept. The last attempt decides
    the status the page and `freshet status` show."""
    attempts = list(attempts)
    if not attempts:
        return state
    by_id = {a.message_id: a for a in attempts}
    backlog, dropped, delivered, outcome = [], state.dropped, state.delivered, {}
    for message in state.backlog:
        attempt = by_id.get(message.id)
        if attempt is None:
            backlog.append(message)
        elif attempt.error is None:
            delivered, outcome[message.id] = delivered + 1, "delivered"
        elif message.attempts + 1 >= MAX_ATTEMPTS:
            dropped, outcome[message.id] = dropped + 1, "dropped"
        else:
            tries = message.attempts + 1
            backlog.append(replace(message, attempts=tries, last_error=attempt.error,
                                   next_attempt_at=attempt.at + backoff(tries)))
            outcome[message.id] = "failed"
    last = attempts[-1]
    ok = [a.at for a in attempts if a.error is None]
    return replace(state, backlog=tuple(backlog), dropped=dropped, delivered=delivered,
                   last_attempt_at=last.at,
                   last_delivered_at=max(ok) if ok else state.last_delivered_at,
                   last_status=outcome.get(last.message_id, "failed" if last.error else
                                           "delivered"),
                   last_error=shorten(last.error, 500))
