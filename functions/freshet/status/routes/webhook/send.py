import hashlib
import hmac
import json
import time

from freshet.core.alerts import Message
from freshet.status.changes import Event
from freshet.status.routes.base import Delivery, DeliveryError, post
from freshet.status.routes.content import payload_for


def send(delivery: Delivery, message: Message, model) -> None:
    if not delivery.secret:
        raise DeliveryError("the route's secret is not set")
    events = [Event.from_doc(e) for e in message.events]
    payload = payload_for(events, model, more=message.more)["freshet"]
    body = json.dumps({"route": delivery.route_id, "message": message.id, **payload},
                      separators=(",", ":"), ensure_ascii=False).encode()
    stamp = str(int(time.time()))
    signature = hmac.new(delivery.secret.encode(), stamp.encode() + b"." + body, hashlib.sha256)
    post(delivery, body, {
        "Content-Type": "application/json", "X-Freshet-Route": delivery.route_id,
        "X-Freshet-Message": message.id, "X-Freshet-Timestamp": stamp,
        "X-Freshet-Signature": f"sha256={signature.hexdigest()}"})


def signature_ok(secret: str, timestamp: str, body: bytes, header: str) -> bool:
    """What a receiver checks (and the tests do): the header matches the body."""
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest(f"sha256={expected.hexdigest()}", header)
