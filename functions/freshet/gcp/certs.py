"""Google's token signing certificates, fetched over HTTPS and cached per process.

The one module that fetches them; freshet.ops.auth verifies tokens against them.
"""

import json
import os
import re
import threading
import time
from collections.abc import Mapping

import google.auth.exceptions
import google.auth.transport.requests

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
CERTS_URL_ENV = "FRESHET_OIDC_CERTS_URL"  # tests and the local demo serve their own
_MAX_AGE_RE = re.compile(r"max-age=(\d+)")


class CertsError(Exception):
    """The certificates could not be fetched or read."""


class CertCache:
    """Google's signing certificates, kept for as long as their Cache-Control says."""

    def __init__(self, url: str, default_ttl_s: float = 3600.0):
        self.url = url
        self.default_ttl_s = default_ttl_s
        self._certs: dict[str, str] | None = None
        self._expires = 0.0
        self._lock = threading.Lock()
        self._session = google.auth.transport.requests.Request()

    def certs(self) -> dict[str, str]:
        with self._lock:
            if self._certs is None or time.monotonic() >= self._expires:
                self._certs, ttl = self._fetch()
                self._expires = time.monotonic() + ttl
            return self._certs

    def _fetch(self) -> tuple[dict[str, str], float]:
        try:
            response = self._session(self.url, method="GET")
        except google.auth.exceptions.TransportError as exc:
            raise CertsError(f"cannot fetch the token signing certificates: {exc}") from None
        if response.status != 200:
            raise CertsError(f"cannot fetch the token signing certificates "
                             f"(HTTP {response.status})")
        match = _MAX_AGE_RE.search(response.headers.get("cache-control", ""))
        ttl = float(match.group(1)) if match else self.default_ttl_s
        return json.loads(response.data), ttl


def certs_url(env: Mapping[str, str] = os.environ) -> str:
    """Google's certificates, unless the environment names a stand-in."""
    return env.get(CERTS_URL_ENV) or GOOGLE_CERTS_URL


