import json

from freshet.core.alerts import Message
from freshet.status.changes import Event
from freshet.status.routes.base import Delivery, post
from freshet.status.routes.content import payload_for


def send(delivery: Delivery, message: Message, model) -> None:
    events = [Event.from_doc(e) for e in message.events]
    payload = payload_for(events, model, more=message.more)
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    post(delivery, body, {"Content-Type": "application/json"})
