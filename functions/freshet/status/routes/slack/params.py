from freshet.core.alerts import RouteSpec, RouteType, route_common
from freshet.core.errors import ValidationError

KEYS = ("id", "type", "url", "min_interval")


def parse(doc: dict, where: str) -> RouteSpec:
    if isinstance(doc, dict) and "secret" in doc:
        raise ValidationError(f"{where}.secret", "only a webhook route is signed")
    route_id, url, interval = route_common(doc, where, KEYS)
    return RouteSpec(route_id, RouteType.SLACK, url, None, interval)
