"""Configuration, read once per process into a frozen object that fails loudly.

Every knob comes from an environment variable (Cloud Functions sets them at deploy;
the local demo and tests set them for their processes). Core does no I/O: the entry
points (freshet.ops.deps for the functions, freshet.ops.cli for the command) hand their
environment to `load_settings`, which has no default for it.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from freshet.core.errors import ValidationError
from freshet.core.herd import MAX_DISPATCH_SHARDS

AUTH_MODES = ("oidc", "local")
# Runs are kept this long after they end (the pipeline config's retention.runs_days).
DEFAULT_RUN_RETENTION_DAYS = 90
MAX_RUN_RETENTION_DAYS = 3650
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class Settings:
    project: str = "demo-freshet"
    region: str = "europe-west1"
    queue: str = "freshet-runs"
    # Where Cloud Tasks delivers runs (the run_task function's URL).
    run_task_url: str = "http://127.0.0.1:8081/run_task"
    # Set locally: talk to gcloud-tasks-emulator instead of Cloud Tasks.
    tasks_emulator_host: str | None = None
    # The service account Cloud Tasks and Cloud Scheduler sign OIDC tokens as.
    invoker_email: str | None = None
    # Operators allowed to call the api besides the invoker (comma-separated emails).
    allowed_callers: str = ""
    # "oidc" verifies Google-signed tokens; "local" accepts any caller and must be
    # chosen explicitly (FRESHET_AUTH=local), never as a fallback.
    auth_mode: str = "oidc"
    # Audience expected in OIDC tokens: this function's URL, as deploy sets it. Never
    # derived from the request (a caller could steer it).
    audience: str | None = None
    # Set by Cloud Run (K_SERVICE): the function sits behind Google's front end, which
    # verified the caller's token and replaced its signature (see freshet.ops.auth).
    k_service: str | None = None
    # Where Google's token signing certificates are; tests and the local demo serve
    # their own (unset: Google's, freshet.gcp.certs).
    oidc_certs_url: str | None = None
    # How long Cloud Tasks waits for run_task before retrying (Task.dispatch_deadline).
    dispatch_deadline_s: int = 600
    # "json": one JSON object per line on stdout, as Cloud Logging reads them.
    log_format: str = "text"
    lookahead_s: int = 60
    tick_budget_s: float = 50.0
    tick_batch: int = 500
    # The herd (freshet.core.herd): past `claim_fanout_above` due jobs the tick sends
    # one claim task per shard to the claim handler at `claim_url` (scheduler_tick's
    # URL; unset: the tick claims everything itself, tick_batch at a time); a handler
    # claims up to `claim_batch` jobs, then sends the rest of its shard on.
    claim_url: str | None = None
    claim_fanout_above: int = 100
    claim_batch: int = 1000
    # Queues per pool: runs spread over this many, hashed by job (500 tasks/s each).
    dispatch_shards: int = 1
    default_stuck_minutes: int = 30
    completed_retention_days: int = 7
    # How long a run's document is kept after it ends: its `expire_at`, which the
    # Firestore TTL policy deploy creates acts on (the page's history is on datasets).
    run_retention_days: int = DEFAULT_RUN_RETENTION_DAYS
    not_ticking_after_s: int = 600
    queued_grace_s: int = 600
    # A waiting run's engine is polled after 10 s, then doubling up to this cap.
    poll_cap_s: int = 120
    # Where syncs keep what they fetched (http_fetch snapshots): a bucket, else a folder.
    snapshot_bucket: str | None = None
    snapshot_dir: str = ".freshet/snapshots"
    site_dir: str = "site/public"
    site_bucket: str | None = None
    site_url: str = "http://127.0.0.1:5000/"
    webhook_url: str | None = None
    page_stale_after_s: int = 900
    # publish_status reads only what changed since the previous publish; a full read
    # at least this often also catches documents changed behind Freshet's back
    # (0: read everything every time).
    publish_rebuild_after_s: int = 86400
    config_path: str | None = None
    # Set locally: the Firestore emulator the process talks to (Google's client reads
    # it too); the CLI checks it is reachable and treats the stack as local.
    firestore_emulator_host: str | None = None
    # Who a CLI action is by (incident notes: FRESHET_AUTHOR, else the login name).
    author: str | None = None
    login_name: str | None = None


_ENV = {
    "project": "GOOGLE_CLOUD_PROJECT",
    "region": "FRESHET_REGION",
    "queue": "FRESHET_QUEUE",
    "run_task_url": "FRESHET_RUN_TASK_URL",
    "tasks_emulator_host": "FRESHET_TASKS_EMULATOR_HOST",
    "invoker_email": "FRESHET_INVOKER_EMAIL",
    "allowed_callers": "FRESHET_ALLOWED_CALLERS",
    "auth_mode": "FRESHET_AUTH",
    "audience": "FRESHET_AUDIENCE",
    "k_service": "K_SERVICE",
    "oidc_certs_url": "FRESHET_OIDC_CERTS_URL",
    "dispatch_deadline_s": "FRESHET_DISPATCH_DEADLINE_S",
    "log_format": "FRESHET_LOG_FORMAT",
    "lookahead_s": "FRESHET_LOOKAHEAD_S",
    "tick_budget_s": "FRESHET_TICK_BUDGET_S",
    "tick_batch": "FRESHET_TICK_BATCH",
    "claim_url": "FRESHET_CLAIM_URL",
    "claim_fanout_above": "FRESHET_CLAIM_FANOUT_ABOVE",
    "claim_batch": "FRESHET_CLAIM_BATCH",
    "dispatch_shards": "FRESHET_DISPATCH_SHARDS",
    "default_stuck_minutes": "FRESHET_DEFAULT_STUCK_MINUTES",
    "completed_retention_days": "FRESHET_COMPLETED_RETENTION_DAYS",
    "run_retention_days": "FRESHET_RUN_RETENTION_DAYS",
    "not_ticking_after_s": "FRESHET_NOT_TICKING_AFTER_S",
    "queued_grace_s": "FRESHET_QUEUED_GRACE_S",
    "poll_cap_s": "FRESHET_POLL_CAP_S",
    "snapshot_bucket": "FRESHET_SNAPSHOT_BUCKET",
    "snapshot_dir": "FRESHET_SNAPSHOT_DIR",
    "site_dir": "FRESHET_SITE_DIR",
    "site_bucket": "FRESHET_SITE_BUCKET",
    "site_url": "FRESHET_SITE_URL",
    "webhook_url": "FRESHET_WEBHOOK_URL",
    "page_stale_after_s": "FRESHET_PAGE_STALE_AFTER_S",
    "publish_rebuild_after_s": "FRESHET_PUBLISH_REBUILD_AFTER_S",
    "config_path": "FRESHET_CONFIG",
    "firestore_emulator_host": "FIRESTORE_EMULATOR_HOST",
    "author": "FRESHET_AUTHOR",
    "login_name": "USER",
}


def load_settings(env: Mapping[str, str], /, **overrides) -> Settings:
    """The settings `env` (the caller's environment, or {} for the defaults) and the
    overrides say."""
    values: dict = {}
    defaults = Settings()
    for name, var in _ENV.items():
        raw = env.get(var)
        if raw is None or raw == "":
            continue
        values[name] = _convert(name, var, raw, getattr(defaults, name))
    values.update(overrides)
    settings = Settings(**values)
    if settings.auth_mode not in AUTH_MODES:
        raise ValidationError("FRESHET_AUTH", f"must be one of {', '.join(AUTH_MODES)}")
    if settings.log_format not in LOG_FORMATS:
        raise ValidationError("FRESHET_LOG_FORMAT", f"must be one of {', '.join(LOG_FORMATS)}")
    if not 15 <= settings.dispatch_deadline_s <= 1800:
        raise ValidationError("FRESHET_DISPATCH_DEADLINE_S",
                              "must be between 15 and 1800 (Cloud Tasks' limits)")
    if not 10 <= settings.poll_cap_s <= 3600:
        raise ValidationError("FRESHET_POLL_CAP_S", "must be between 10 and 3600 seconds")
    if not 1 <= settings.run_retention_days <= MAX_RUN_RETENTION_DAYS:
        raise ValidationError("FRESHET_RUN_RETENTION_DAYS",
                              f"must be from 1 to {MAX_RUN_RETENTION_DAYS} (days)")
    if not 1 <= settings.dispatch_shards <= MAX_DISPATCH_SHARDS:
        raise ValidationError("FRESHET_DISPATCH_SHARDS",
                              f"must be from 1 to {MAX_DISPATCH_SHARDS}")
    return settings


def _convert(name: str, var: str, raw: str, default):
    if isinstance(default, bool):
        return raw.lower() in ("1", "true", "yes")
    if isinstance(default, int | float):
        try:
            value = type(default)(raw)
        except ValueError:
            raise ValidationError(var, f"must be a number, got {raw!r}") from None
        if value < 0:
            raise ValidationError(var, "must not be negative")
        return value
    return raw

