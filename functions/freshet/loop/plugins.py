"""Custom sync kinds: modules imported for their `@sync(...)` registrations.

A team adds its own kinds without touching Freshet: it names the module in the
pipeline config (`sync_modules:`) or in FRESHET_SYNC_MODULES (comma-separated), and
importing the module registers its handlers in freshet.loop.registry.
"""

import importlib
import os
import re
from collections.abc import Iterable, Mapping

from freshet.core.errors import ValidationError

ENV_VAR = "FRESHET_SYNC_MODULES"
_MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def env_modules(env: Mapping[str, str] = os.environ) -> list[str]:
    raw = env.get(ENV_VAR, "")
    return [name.strip() for name in raw.split(",") if name.strip()]


def check_module_name(name: object, field: str) -> str:
    if not isinstance(name, str) or not _MODULE_RE.match(name):
        raise ValidationError(field, "must be a dotted Python module path such as 'team.syncs'")
    return name


def import_sync_modules(names: Iterable[str], field: str = ENV_VAR) -> None:
    """Import each module (registering its syncs); a failure names the module and field."""
    for i, name in enumerate(names):
        where = f"{field}[{i}]"
        check_module_name(name, where)
        try:
            importlib.import_module(name)
        except Exception as exc:  # a broken plugin is a config error, not a crash
            raise ValidationError(where, f"cannot import {name!r}: {exc}") from None
