"""A local stand-in for Google's token issuer: an RSA key that signs real RS256 ID
tokens, and a server that publishes its certificate the way Google publishes its own
(https://www.googleapis.com/oauth2/v1/certs: {key id: x509 PEM}, with Cache-Control).

The cloud-shaped local run (freshet_local.cloud_local) mints every token with it: the
tokens Cloud Scheduler and Cloud Tasks would send as the invoker account, and an
operator's. Its front (freshet_local.cloud_front) verifies them against the served
certificates, as Cloud Run's front end verifies Google's. Tests use it too.
"""

import hashlib
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

ISSUER = "https://accounts.google.com"


class SigningKey:
    """An RSA key and a self-signed certificate for it, as Google publishes them."""

    def __init__(self, kid: str, *, pem: bytes | None = None):
        self.kid = kid
        self.key = (serialization.load_pem_private_key(pem, password=None) if pem
                    else rsa.generate_private_key(public_exponent=65537, key_size=2048))
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "freshet-local-google")])
        now = datetime.now(UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - timedelta(days=1))
                .not_valid_after(now + timedelta(days=30))
                .sign(self.key, hashes.SHA256()))
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        self.private_pem = self.key.private_bytes(serialization.Encoding.PEM,
                                                  serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption())
        self.signer = crypt.RSASigner.from_string(self.private_pem, key_id=kid)

    def token(self, *, email: str, audience: str, expires_in: int = 3600,
              issuer: str = ISSUER, email_verified: bool = True, **extra) -> str:
        """An ID token as Google mints one for a service account (with its email)."""
        now = int(time.time())
        subject = str(int(hashlib.sha256(email.encode()).hexdigest()[:16], 16))
        claims = {"iss": issuer, "aud": audience, "iat": now - 5, "exp": now + expires_in,
                  "sub": subject, "email": email, "email_verified": email_verified, **extra}
        return jwt.encode(self.signer, claims).decode()

    def save(self, path: Path) -> Path:
        """The key, for another process that mints tokens (the Cloud Tasks emulator)."""
        path.write_text(json.dumps({"kid": self.kid, "pem": self.private_pem.decode()}))
        path.chmod(0o600)
        return path

    @classmethod
    def load(cls, path: Path) -> "SigningKey":
        doc = json.loads(Path(path).read_text())
        return cls(doc["kid"], pem=doc["pem"].encode())


class CertServer:
    """Serves {kid: certificate PEM} with Cache-Control, like Google's certs endpoint."""

    def __init__(self, keys: list[SigningKey], host: str = "127.0.0.1"):
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

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.httpd.server_port}/oauth2/v1/certs"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class LocalGoogle:
    """One signing key and its published certificates: Google, as far as tokens go."""

    def __init__(self, kid: str = "freshet-local-google-1"):
        self.key = SigningKey(kid)
        self.certs = CertServer([self.key])

    @property
    def certs_url(self) -> str:
        return self.certs.url

    def mint(self, email: str, audience: str, **claims) -> str:
        return self.key.token(email=email, audience=audience, **claims)

    def close(self) -> None:
        self.certs.close()


def main(argv: list[str] | None = None) -> int:
    """`python -m freshet_local.local_google mint --key=F --email=E --audience=URL`:
    print an ID token signed with a saved key (what `make demo-cloud` prints)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m freshet_local.local_google")
    parser.add_argument("action", choices=("mint",))
    parser.add_argument("--key", required=True, type=Path)
    parser.add_argument("--email", required=True)
    parser.add_argument("--audience", required=True)
    args = parser.parse_args(argv)
    print(SigningKey.load(args.key).token(email=args.email, audience=args.audience))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
