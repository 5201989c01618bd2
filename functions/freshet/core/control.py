"""Kill switches: turn a job kind, every job, or the manual actions off without a deploy.
Stored in settings/control.

    {"disabled_kinds": ["http_fetch"], "manual_actions_enabled": false,
     "paused_all": false, "reason": "upstream API outage", "updated_by": "..."}

Read once per tick / request; no deploy is needed to flip one.

The same document carries the maintenance windows (field `maintenance`,
freshet.core.windows) and the egress policy (field `egress`, freshet.core.egress), so
that the tick, run_task and publish_status learn them from the one read they make.
Both are declared in the pipeline config and written by `apply` alone: `to_doc` (what
PUT /control writes and GET /control shows) leaves them out. Windows opened now from
the console or the CLI (freshet.core.interventions) are kept beside the declared ones
in `adhoc_maintenance`, which apply leaves alone.
"""

import re
from dataclasses import dataclass, field

from freshet.core.egress import EgressPolicy
from freshet.core.errors import ValidationError
from freshet.core.values import check_bool
from freshet.core.windows import NO_MAINTENANCE, Maintenance

MAX_DISABLED_KINDS = 200
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,63}$")  # as freshet.core.models checks a job's kind


@dataclass(frozen=True)
class Control:
    disabled_kinds: frozenset[str] = field(default_factory=frozenset)
    manual_actions_enabled: bool = True
    paused_all: bool = False
    reason: str = ""
    maintenance: Maintenance = NO_MAINTENANCE
    # Where http_fetch and the notification routes may connect (the config's
    # `http_fetch:` section), written by apply alone, like the windows.
    egress: EgressPolicy = field(default_factory=EgressPolicy)

    def kind_enabled(self, kind: str) -> bool:
        return not self.paused_all and kind not in self.disabled_kinds

    def to_doc(self) -> dict:
        return {
            "disabled_kinds": sorted(self.disabled_kinds),
            "manual_actions_enabled": self.manual_actions_enabled,
            "paused_all": self.paused_all,
            "reason": self.reason,
        }

    @classmethod
    def from_doc(cls, doc: dict | None) -> "Control":
        doc = doc or {}
        return cls(
            disabled_kinds=frozenset(doc.get("disabled_kinds") or ()),
            manual_actions_enabled=bool(doc.get("manual_actions_enabled", True)),
            paused_all=bool(doc.get("paused_all", False)),
            reason=str(doc.get("reason") or ""),
            # declared (written by apply) and ad-hoc (opened from the console) alike
            maintenance=Maintenance.from_doc([*(doc.get("maintenance") or ()),
                                              *(doc.get("adhoc_maintenance") or ())]),
            egress=EgressPolicy.from_doc(doc.get("egress")),
        )


def parse_control(data: object, field_prefix: str = "") -> Control:
    """Validate a kill-switch document from the API or the config."""
    if not isinstance(data, dict):
        raise ValidationError(field_prefix or "body", "must be an object")
    allowed = {"disabled_kinds", "manual_actions_enabled", "paused_all", "reason"}
    for key in data:
        if key not in allowed:
            raise ValidationError(f"{field_prefix}{key}", "unknown field")
    kinds = data.get("disabled_kinds", [])
    if not isinstance(kinds, list) or not all(isinstance(k, str) and _KIND.match(k)
                                              for k in kinds):
        raise ValidationError(f"{field_prefix}disabled_kinds", "must be a list of job kinds")
    if len(kinds) > MAX_DISABLED_KINDS:
        raise ValidationError(f"{field_prefix}disabled_kinds",
                              f"may list at most {MAX_DISABLED_KINDS} kinds")
    for name in ("manual_actions_enabled", "paused_all"):
        if name in data:
            check_bool(data[name], f"{field_prefix}{name}")
    reason = data.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 500:
        raise ValidationError(f"{field_prefix}reason", "must be a string of at most 500 characters")
    return Control(
        disabled_kinds=frozenset(kinds),
        manual_actions_enabled=data.get("manual_actions_enabled", True),
        paused_all=data.get("paused_all", False),
        reason=reason,
    )
