"""Shared by the ops tests: a test signing key whose certificate is served the way
Google serves its own, real RS256 OIDC tokens, and small pipeline configs."""

from datetime import UTC, datetime
from pathlib import Path

from freshet_local import local_google

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
INVOKER = "freshet-invoker@demo-freshet.iam.gserviceaccount.com"
OPERATOR = "ops@example.com"
AUDIENCE = "https://europe-west1-demo-freshet.cloudfunctions.net/api"


class SigningKey(local_google.SigningKey):
    """The local stand-in for Google's key, with the tests' usual caller and audience."""

    def token(self, *, email: str = INVOKER, audience: str = AUDIENCE, **kwargs) -> str:
        return super().token(email=email, audience=audience, **kwargs)


CertServer = local_google.CertServer


PIPELINE = """\
project: demo-freshet
region: europe-west1
queues:
  - name: freshet-runs
    min_backoff: 5s
    max_backoff: 5m
jobs:
  - id: orders
    kind: noop
    schedule: {cron: "*/15 * * * *", timezone: Europe/London}
    produces: [sales.orders]
  - id: rates
    kind: noop
    schedule: {cron: "0 6 * * *"}
    max_retries: 2
    produces: [finance.rates]
datasets:
  - key: sales.orders
  - key: finance.rates
  - key: sales.revenue
    upstream: [sales.orders, finance.rates]
consumers:
  - id: dashboard
    requires:
      - {dataset: sales.revenue, warn_after: 26h, error_after: 50h}
control:
  disabled_kinds: []
  manual_actions_enabled: true
"""


def write_config(tmp_path, text: str = PIPELINE, name: str = "pipeline.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path
