"""`slack`: the message as `{"text": ...}`, as Slack's incoming webhooks (and Mattermost,
Rocket.Chat, Google Chat's and many others') take it. Keys: id, type, url,
min_interval; no secret (a Slack webhook URL is itself the secret: give it as
{env: NAME} or {secret_manager: ...})."""

from freshet.status.routes.base import RouteKind
from freshet.status.routes.slack.params import parse
from freshet.status.routes.slack.send import send

TYPE = RouteKind("slack", parse=parse, send=send)
