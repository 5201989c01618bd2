"""What a route type is made of, and the one way a message leaves Freshet.

`post` sends through the guarded client that http_fetch uses (freshet.gcp.egress):
the connected socket's address is checked against the pipeline's policy (never a
link-local or metadata address, a private one only when `http_fetch:
allow_private_addresses` allows it), no redirect is followed (a redirect is an error
naming its status: a signed body never goes to a host it was not meant for), no proxy
comes from the environment, and the whole exchange has a deadline.

A failure is a DeliveryError in Freshet's own words (a status code, a timeout, a
refusal): that text is stored on the route and shown on the page and by `freshet
status`. The receiver's answer is never part of it; its first bytes go to the log
only, on one line, with every part of the route's URL and secret redacted.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from freshet.core.alerts import Message, RouteSpec
from freshet.core.egress import EgressPolicy
from freshet.core.secrets import MIN_SECRET_LEN, redact
from freshet.core.text import one_line, shorten
from freshet.gcp import egress

log = logging.getLogger("freshet.status.routes")

SEND_TIMEOUT_S = 5.0
LOGGED_ANSWER_CHARS = 300


class DeliveryError(Exception):
    """Not delivered; the text is Freshet's own words and names no part of the URL."""


@dataclass(frozen=True)
class Delivery:
    """One attempt of one message on one route, with everything resolved."""

    route_id: str
    message_id: str
    url: str
    secret: str | None
    policy: EgressPolicy  # the pipeline's; routes take its address rules only
    timeout_s: float = SEND_TIMEOUT_S

    @property
    def secrets(self) -> list[str]:
        return secret_parts(self.url, self.secret)


@dataclass(frozen=True)
class RouteKind:
    name: str
    parse: Callable[[dict, str], RouteSpec]
    send: Callable[[Delivery, Message, object], None]


def post(delivery: Delivery, body: bytes, headers: dict[str, str]) -> None:
    """POST once; a 2xx answer is delivered, anything else raises DeliveryError."""
    policy = delivery.policy.for_routes()
    parts = urlsplit(delivery.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DeliveryError("the route's URL is not an http(s) URL")
    refusal = policy.host_refusal(parts.hostname)
    if refusal:
        raise DeliveryError(f"refused: {refusal}")

    def exchange(session) -> tuple[int, bytes]:
        with session.post(delivery.url, data=body, headers=headers, allow_redirects=False,
                          stream=True, timeout=(delivery.timeout_s, delivery.timeout_s)
                          ) as response:
            if 200 <= response.status_code < 300:
                return response.status_code, b""
            return response.status_code, next(response.iter_content(1024), b"")

    try:
        status, answer = egress.within_deadline(policy, exchange,
                                                deadline_s=delivery.timeout_s)
    except Exception as exc:
        raise DeliveryError(egress.describe(exc) or f"failed ({type(exc).__name__})") from None
    if 200 <= status < 300:
        return
    text = shorten(one_line(answer.decode("utf-8", errors="replace")), LOGGED_ANSWER_CHARS)
    log.warning("route %s: the receiver answered HTTP %s: %s", delivery.route_id, status,
                redact(text, delivery.secrets))
    if 300 <= status < 400:
        raise DeliveryError(f"HTTP {status}: a redirect, not followed")
    raise DeliveryError(f"HTTP {status}")


def secret_parts(url: str, secret: str | None) -> list[str]:
    """Everything of a route's URL and secret that must never be shown: the URL, its
    path and query, each path segment and query value (a receiver may echo any of
    them), raw and decoded."""
    parts = urlsplit(url)
    found = [url, parts.path, parts.query, parts.netloc.rpartition("@")[0], secret or ""]
    found += [s for s in parts.path.split("/") if s]
    found += [v for _, v in parse_qsl(parts.query, keep_blank_values=True)]
    found += [unquote(p) for p in list(found)]
    return sorted({p for p in found if len(p) >= MIN_SECRET_LEN and p != "/"}, key=len,
                  reverse=True)
