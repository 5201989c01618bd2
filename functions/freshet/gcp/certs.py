"""Google's token signing certificates, fetched over HTTPS and cached per process.

The one module that fetches them; freshet.ops.auth verifies tokens against them.
"""

import json
import re
import threading
import time

import requests

from freshet.core.settings import Settings
from freshet.core.values import joined_within

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
_MAX_AGE_RE = re.compile(r"max-age=(\d{1,9})")
# Google's answer is ~3 KB (two or three PEM certificates); a larger one is not theirs.
MAX_CERTS_BYTES = 64 * 1024
MAX_CERTS = 20
FETCH_TIMEOUT_S = 10.0


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
        self._session = requests.Session()

    def certs(self) -> dict[str, str]:
        with self._lock:
            if self._certs is None or time.monotonic() >= self._expires:
                self._certs, ttl = self._fetch()
                self._expires = time.monotonic() + ttl
            return self._certs

    def _fetch(self) -> tuple[dict[str, str], float]:
        """Every way the endpoint can fail (unreachable, not 200, too large, not a
        {key id: PEM} object) is a CertsError: the caller answers 401, never 500."""
        try:
            with self._session.get(self.url, timeout=FETCH_TIMEOUT_S, stream=True,
                                   allow_redirects=False) as response:
                if response.status_code != 200:
                    raise CertsError(f"{_CANNOT} (HTTP {response.status_code})")
                body = _read_capped(response)
                cache_control = response.headers.get("cache-control", "")
        except requests.RequestException as exc:
            raise CertsError(f"{_CANNOT} ({type(exc).__name__})") from None
        match = _MAX_AGE_RE.search(cache_control)
        ttl = float(match.group(1)) if match else self.default_ttl_s
        return _parse(body), ttl


_CANNOT = "cannot fetch the token signing certificates"


def _read_capped(response: requests.Response) -> bytes:
    body = joined_within(response.iter_content(16 * 1024), MAX_CERTS_BYTES)
    if body is None:
        raise CertsError(f"{_CANNOT} (the answer is larger than {MAX_CERTS_BYTES} bytes)")
    return body


def _parse(body: bytes) -> dict[str, str]:
    try:
        certs = json.loads(body)
    except (ValueError, RecursionError):
        raise CertsError(f"{_CANNOT} (the answer is not JSON)") from None
    if (not isinstance(certs, dict) or not 0 < len(certs) <= MAX_CERTS
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in certs.items())):
        raise CertsError(f"{_CANNOT} (the answer is not a set of certificates)")
    return certs


def certs_url(settings: Settings) -> str:
    """Google's certificates, unless the settings name a stand-in."""
    return settings.oidc_certs_url or GOOGLE_CERTS_URL


