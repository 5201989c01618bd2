"""Sending notifications: a Slack-compatible webhook, or a generic JSON webhook signed
with an HMAC header. What to send, to whom and when is decided elsewhere
(freshet.core.alerts, freshet.status.routing); this module only builds the request
and says whether it was delivered. A non-2xx answer, a network error or a missing
URL or secret is a DeliveryError: the message waits in its route's backlog.

The signed webhook POSTs Freshet's JSON with these headers (verify them as you would
Stripe's or GitHub's):

    X-Freshet-Route       the route's id
    X-Freshet-Message     the message id: the same on a retry (delivery is at least once)
    X-Freshet-Timestamp   Unix seconds when this attempt was sent
    X-Freshet-Signature   sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with the secret>
"""

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

import requests

from freshet.core.alerts import Message, RouteSpec, RouteType
from freshet.core.secrets import MIN_SECRET_LEN, redact
from freshet.core.text import one_line, printable_all, shorten
from freshet.core.timeutil import isoformat
from freshet.status.changes import Event
from freshet.status.model import StatusModel

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 5.0
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
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        self._post(body, {"Content-Type": "application/json"})

    def _post(self, body: bytes, headers: dict[str, str]) -> None:
        try:
            response = self._session.post(self.url, data=body, headers=headers,
                                          timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
        if not 200 <= response.status_code < 300:
            raise DeliveryError(f"HTTP {response.status_code}: {response.text[:200]}")


class SignedWebhookNotifier(WebhookNotifier):
    """POSTs the body as given, signed with the route's secret."""

    def __init__(self, url: str, secret: str, route_id: str, **kw):
        super().__init__(url, **kw)
        self._secret = secret.encode()
        self.route_id = route_id

    def send(self, payload: dict, message_id: str = "") -> None:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        stamp = str(int(time.time()))
        signature = hmac.new(self._secret, stamp.encode() + b"." + body, hashlib.sha256)
        headers = {"Content-Type": "application/json", "X-Freshet-Route": self.route_id,
                   "X-Freshet-Message": message_id, "X-Freshet-Timestamp": stamp,
                   "X-Freshet-Signature": f"sha256={signature.hexdigest()}"}
        self._post(body, headers)


def signature_ok(secret: str, timestamp: str, body: bytes, header: str) -> bool:
    """What a receiver checks (and the tests do): the header matches the body."""
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest(f"sha256={expected.hexdigest()}", header)


def send_message(spec: RouteSpec, message: Message, model: StatusModel,
                 environ: Mapping[str, str], session: requests.Session | None = None) -> None:
    """Deliver one message of a route, or raise DeliveryError saying why not."""
    url = spec.url.resolve(environ)
    if not url:
        raise DeliveryError(f"the route's URL is not set ({spec.url.describe()})")
    events = [Event.from_doc(e) for e in message.events]
    payload = payload_for(events, model, more=message.more)
    secret = spec.secret.resolve(environ) if spec.secret else None
    try:
        if spec.type == RouteType.SLACK:
            WebhookNotifier(url, session=session).send(payload)
            return
        if not secret:
            raise DeliveryError(f"the route's secret is not set ({spec.secret.describe()})")
        body = {"route": spec.id, "message": message.id, **payload["freshet"]}
        SignedWebhookNotifier(url, secret, spec.id, session=session).send(body, message.id)
    except DeliveryError as exc:
        # The error is shown on the page: a webhook URL is itself a secret (Slack's is).
        raise DeliveryError(redact(str(exc), _secret_parts(url, secret))) from None


def _secret_parts(url: str, secret: str | None) -> list[str]:
    parts = urlsplit(url)
    found = [url, parts.path, parts.query, secret or ""]
    return [p for p in found if len(p) >= MIN_SECRET_LEN and p != "/"]


_EMOJI = {"dataset_stale": ":warning:", "dataset_recovered": ":white_check_mark:",
          "job_failed": ":x:", "job_recovered": ":white_check_mark:", "run_stuck": ":hourglass:",
          "consumer_warning": ":warning:", "consumer_error": ":x:",
          "consumer_stale_data": ":hourglass:", "consumer_recovered": ":white_check_mark:",
          "dataset_warning": ":warning:", "dataset_error": ":x:",
          "dataset_stale_data": ":hourglass:", "deadline_missed": ":alarm_clock:"}


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


def payload_for(events: list[Event], model: StatusModel, *, more: int = 0) -> dict:
    """One message for the changes of one publish: the reasons and a link to the page.
    `more`: changes beyond `events` that the message only counts."""
    lines = [_line(e) for e in events[:MAX_LINES]]
    total = len(events) + more
    if total > MAX_LINES:
        lines.append(f"… and {total - MAX_LINES} more changes")
    head = f"Freshet: {model.headline} — {total} change{'s' if total != 1 else ''}"
    page = f"Status page: {slack_escape(model.site_url)}" if model.site_url else ""
    text = "\n".join(line for line in [head, *lines, page] if line)
    return printable_all({
        "text": text,
        "unfurl_links": False, "unfurl_media": False,  # Slack fetches no linked page
        "freshet": {
            "overall": model.state, "headline": model.headline, "page": model.site_url,
            "generated_at": isoformat(model.built_at),
            "events": [e.to_doc() for e in events[:MAX_EVENTS_IN_PAYLOAD]],
            "more_events": more + max(len(events) - MAX_EVENTS_IN_PAYLOAD, 0),
        },
    })
