"""Sending notifications: the route types (one package each under freshet.status.routes:
`slack`, a Slack-compatible webhook, and `webhook`, Freshet's JSON signed with an HMAC
header), and the two things the rest of Freshet asks of them: parse a route at apply
(`make_route`), deliver one message (`send_message`). What to send, to whom and when is
decided elsewhere (freshet.core.alerts, freshet.status.routing).

A non-2xx answer, a redirect, a refusal, a timeout, a network error or a missing URL or
secret is a DeliveryError in Freshet's own words: the message waits in its route's
backlog, and the words are what the page and `freshet status` show.
"""

from collections.abc import Mapping
from urllib.parse import urlsplit

from freshet.core.alerts import Message, RouteSpec
from freshet.core.egress import EgressPolicy
from freshet.core.errors import ValidationError
from freshet.core.secrets import redact
from freshet.status.model import StatusModel
from freshet.status.routes import slack, webhook
from freshet.status.routes.base import Delivery, DeliveryError, RouteKind, secret_parts
from freshet.status.routes.content import payload_for, slack_escape
from freshet.status.routes.webhook import signature_ok

__all__ = ["ROUTE_TYPES", "DeliveryError", "make_route", "send_message", "payload_for",
           "slack_escape", "signature_ok"]

ROUTE_TYPES: dict[str, RouteKind] = {k.name: k for k in (slack.TYPE, webhook.TYPE)}
DEFAULT_POLICY = EgressPolicy()  # the pipeline's when its config has no http_fetch: section


def make_route(doc: object, where: str, policy: EgressPolicy = DEFAULT_POLICY) -> RouteSpec:
    """A route from the config, checked by its type; a literal URL the pipeline's policy
    refuses is refused here, at its line (an {env:} URL is checked when it is sent)."""
    kind = doc.get("type", "slack") if isinstance(doc, dict) else None
    if not isinstance(kind, str) or kind not in ROUTE_TYPES:
        if not isinstance(doc, dict):
            raise ValidationError(where, "must be a mapping with id, type and url")
        raise ValidationError(f"{where}.type", f"must be {' or '.join(ROUTE_TYPES)}")
    spec = ROUTE_TYPES[kind].parse(doc, where)
    if spec.url.value:
        refusal = policy.for_routes().host_refusal(urlsplit(spec.url.value).hostname or "")
        if refusal:
            raise ValidationError(f"{where}.url", refusal)
    return spec


def send_message(spec: RouteSpec, message: Message, model: StatusModel,
                 environ: Mapping[str, str], policy: EgressPolicy = DEFAULT_POLICY) -> None:
    """Deliver one message of a route, or raise DeliveryError saying why not (never
    naming any part of the URL or the secret)."""
    url = spec.url.resolve(environ)
    if not url:
        raise DeliveryError(f"the route's URL is not set ({spec.url.describe()})")
    secret = spec.secret.resolve(environ) if spec.secret else None
    if spec.secret and not secret:
        raise DeliveryError(f"the route's secret is not set ({spec.secret.describe()})")
    kind = ROUTE_TYPES.get(spec.type)
    if kind is None:
        raise DeliveryError(f"unknown route type {spec.type!r}")
    delivery = Delivery(spec.id, message.id, url, secret, policy)
    try:
        kind.send(delivery, message, model)
    except DeliveryError as exc:
        raise DeliveryError(redact(str(exc), secret_parts(url, secret))) from None
    except Exception as exc:  # our bug, or a library's: its text may quote the URL
        raise DeliveryError(f"failed ({type(exc).__name__})") from None
