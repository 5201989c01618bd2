"""Shared by the ops tests: a test signing key whose certificate is served the way
Google serves its own, real RS256 OIDC tokens, and small pipeline configs."""

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
INVOKER = "freshet-invoker@demo-freshet.iam.gserviceaccount.com"
OPERATOR = "ops@example.com"
AUDIENCE = "https://europe-west1-demo-freshet.cloudfunctions.net/api"


class SigningKey:
    """An RSA key and a self-signed certificate for it, as Google publishes them."""

    def __init__(self, kid: str):
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "freshet-test")])
        now = datetime.now(UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - timedelta(days=1))
                .not_valid_after(now + timedelta(days=30))
                .sign(self.key, hashes.SHA256()))
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        pem = self.key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
        self.signer = crypt.RSASigner.from_string(pem, key_id=kid)

    def token(self, *, email: str = INVOKER, audience: str = AUDIENCE,
              expires_in: int = 3600, issuer: str = "https://accounts.google.com",
              email_verified: bool = True, **extra) -> str:
        now = int(time.time())
        claims = {"iss": issuer, "aud": audience, "iat": now - 5, "exp": now + expires_in,
                  "sub": "1234567890", "email": email, "email_verified": email_verified,
                  **extra}
        return jwt.encode(self.signer, claims).decode()


class CertServer:
    """Serves {kid: certificate PEM} with Cache-Control, like Google's certs endpoint."""

    def __init__(self, keys: list[SigningKey]):
        body = json.dumps({k.kid: k.cert_pem for k in keys}).encode()
        self.hits = 0
        server_self = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server_self.hits += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "public, max-age=3600")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/oauth2/v1/certs"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


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
