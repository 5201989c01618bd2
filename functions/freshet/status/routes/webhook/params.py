from freshet.core.alerts import RouteSpec, RouteType, reference, route_common
from freshet.core.errors import ValidationError

KEYS = ("id", "type", "url", "secret", "min_interval")


def parse(doc: dict, where: str) -> RouteSpec:
    route_id, url, interval = route_common(doc, where, KEYS)
    if "secret" not in doc:
        raise ValidationError(f"{where}.secret", "is required for a webhook route (the "
                              "HMAC key: {env: NAME} or {secret_manager: projects/...})")
    secret = reference(doc["secret"], f"{where}.secret", route_id, "SECRET", literal_ok=False)
    return RouteSpec(route_id, RouteType.WEBHOOK, url, secret, interval)
