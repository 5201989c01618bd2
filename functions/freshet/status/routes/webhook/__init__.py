"""`webhook`: Freshet's JSON, signed with the route's secret (HMAC-SHA256), POSTed with
these headers (verify them as you would Stripe's or GitHub's):

    X-Freshet-Route       the route's id
    X-Freshet-Message     the message id: the same on a retry (delivery is at least once)
    X-Freshet-Timestamp   Unix seconds when this attempt was sent
    X-Freshet-Signature   sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with the secret>

Keys: id, type, url, secret ({env: NAME} or {secret_manager: ...}; never a literal),
min_interval."""

from freshet.status.routes.base import RouteKind
from freshet.status.routes.webhook.params import parse
from freshet.status.routes.webhook.send import send, signature_ok

__all__ = ["TYPE", "signature_ok"]

TYPE = RouteKind("webhook", parse=parse, send=send)
