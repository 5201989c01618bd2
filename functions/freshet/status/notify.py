"""Webhook notifications of state changes: Slack-compatible, delivered at least once.

A publish that finds changes queues ONE notification for them (a Slack message with
`text`, plus the structured `freshet` field other receivers can use) in the pending
list of the status memory. Each publish tries the pending ones that are due, once
each, within a small time budget; a failure is retried at a later publish with
exponential backoff, and dropped after MAX_ATTEMPTS. Nothing here ever raises into
the publish: the page matters more than the message.
"""

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import requests

from freshet.core.settings import Settings
from freshet.core.text import one_line, printable_all
from freshet.core.timeutil import isoformat, parse_datetime
from freshet.status.changes import Event
from freshet.status.model import StatusModel, shorten

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
MAX_PENDING = 20  # notifications kept while the webhook fails; older ones are dropped
FIRST_BACKOFF = timedelta(minutes=1)
MAX_BACKOFF = timedelta(hours=1)
SEND_TIMEOUT_S = 5.0
BUDGET_S = 15.0
MAX_LINES = 10
MAX_EVENTS_IN_PAYLOAD = 20  # the structured copy; the rest is counted (bounded documents)


class DeliveryError(Exception):
    pass


class WebhookNotifier:
    """POSTs JSON to one URL; any non-2xx answer or network error is a DeliveryError."""

    def __init__(self, url: str, *, timeout_s: float = SEND_TIMEOUT_S,
                 session: requests.Session | None = None):
        self.url = url
        self.timeout_s = timeout_s
        self._session = session or requests.Session()

    def send(self, payload: dict) -> None:
        try:
            response = self._session.post(self.url, json=payload, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
        if not 200 <= response.status_code < 300:
            raise DeliveryError(f"HTTP {response.status_code}: {response.text[:200]}")


def notifier_from_settings(settings: Settings) -> WebhookNotifier | None:
    return WebhookNotifier(settings.webhook_url) if settings.webhook_url else None


_EMOJI = {"dataset_stale": ":warning:", "dataset_recovered": ":white_check_mark:",
          "job_failed": ":x:", "job_recovered": ":white_check_mark:", "run_stuck": ":hourglass:"}


def slack_escape(text: str) -> str:
    """Slack's three control characters as the entities it asks for: `<!channel>`,
    `<@U123>` and `<https://evil|Click here>` then show as text, never as a mention or a
    disguised link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _quoted(text: str, limit: int = 300) -> str:
    """Text a sync wrote (errors, reasons), as inline code: escaped, on one line, and
    with no backtick that could end the code span so Slack links or formats the rest."""
    text = shorten(one_line(text), limit) or ""
    return f"`{slack_escape(text.replace('`', 'ˋ'))}`" if text.strip() else ""


def _line(event: Event) -> str:
    summary = _quoted(event.summary)
    title = slack_escape(one_line(event.title))
    return f"{_EMOJI.get(event.kind, '•')} {title}" + (f": {summary}" if summary else "")


def payload_for(events: list[Event], model: StatusModel) -> dict:
    """One message for the changes of one publish: the reasons and a link to the page."""
    lines = [_line(e) for e in events[:MAX_LINES]]
    if len(events) > MAX_LINES:
        lines.append(f"… and {len(events) - MAX_LINES} more changes")
    head = f"Freshet: {model.headline} — {len(events)} change{'s' if len(events) != 1 else ''}"
    page = f"Status page: {slack_escape(model.site_url)}" if model.site_url else ""
    text = "\n".join(line for line in [head, *lines, page] if line)
    return printable_all({
        "text": text,
        "unfurl_links": False, "unfurl_media": False,  # Slack fetches no linked page
        "freshet": {
            "overall": model.state, "headline": model.headline, "page": model.site_url,
            "generated_at": isoformat(model.built_at),
            "events": [e.to_doc() for e in events[:MAX_EVENTS_IN_PAYLOAD]],
            "more_events": max(len(events) - MAX_EVENTS_IN_PAYLOAD, 0),
        },
    })


def queue(pending: list[dict], payload: dict, now: datetime) -> list[dict]:
    item = {"id": payload["freshet"]["events"][0]["id"], "payload": payload, "attempts": 0,
            "next_attempt_at": isoformat(now), "last_error": None}
    return (pending + [item])[-MAX_PENDING:]


def backoff(attempts: int) -> timedelta:
    return min(FIRST_BACKOFF * 2 ** max(attempts - 1, 0), MAX_BACKOFF)


@dataclass
class Delivery:
    pending: list[dict]
    sent: int = 0
    failed: int = 0
    dropped: int = 0


def deliver(pending: list[dict], notifier: WebhookNotifier | None, now: datetime, *,
            budget_s: float = BUDGET_S) -> Delivery:
    """Try each due notification once; keep the rest for a later publish. Never raises."""
    if notifier is None:
        return Delivery(pending=pending)
    result = Delivery(pending=[])
    deadline = time.monotonic() + budget_s
    for item in pending:
        if time.monotonic() > deadline or _due(item) > now:
            result.pending.append(item)
            continue
        try:
            notifier.send(item["payload"])
            result.sent += 1
            continue
        except DeliveryError as exc:
            error = str(exc)
        except Exception as exc:  # a receiver's bug must not fail the publish
            error = f"{type(exc).__name__}: {exc}"
        attempts = int(item.get("attempts", 0)) + 1
        result.failed += 1
        if attempts >= MAX_ATTEMPTS:
            log.error("webhook notification %s dropped after %d attempts: %s",
                      item.get("id"), attempts, error)
            result.dropped += 1
            continue
        log.warning("webhook notification %s failed (attempt %d): %s",
                    item.get("id"), attempts, error)
        result.pending.append({**item, "attempts": attempts, "last_error": error[:500],
                               "next_attempt_at": isoformat(now + backoff(attempts))})
    return result


def _due(item: dict) -> datetime:
    value = item.get("next_attempt_at")
    if isinstance(value, datetime):
        return value
    try:
        return parse_datetime(value, "next_attempt_at")
    except ValueError:
        return datetime(2000, 1, 1, tzinfo=UTC)  # unreadable: due now
