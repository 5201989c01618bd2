"""Who is calling: verify the Google-signed OIDC token every function receives.

In the cloud every function is private: Cloud Scheduler and Cloud Tasks call with
tokens of the invoker service account, operators call the api with their own. IAM
already checks them at the edge; each function verifies again (defence in depth):
signature (Google's certificates, fetched and cached), expiry, issuer, audience
(settings.audience, else the URL the request was made to), and the caller's email,
which must be verified and allowed (the invoker, plus FRESHET_ALLOWED_CALLERS).

Local mode (FRESHET_AUTH=local) accepts every caller; it is only ever chosen by that
explicit setting, never as a fallback when verification fails.
"""

import os
from collections.abc import Iterable, Mapping

import flask
import google.auth.exceptions
from google.auth import jwt

from freshet.core.settings import Settings
from freshet.gcp.certs import CertCache, CertsError

ALLOWED_CALLERS_ENV = "FRESHET_ALLOWED_CALLERS"
ISSUERS = ("https://accounts.google.com", "accounts.google.com")
CLOCK_SKEW_S = 10


class AuthError(Exception):
    """401: no valid token. 403: a valid token of a caller who is not allowed."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def allowed_callers(settings: Settings, env: Mapping[str, str] = os.environ) -> frozenset[str]:
    listed = {e.strip().lower() for e in env.get(ALLOWED_CALLERS_ENV, "").split(",")
              if e.strip()}
    if settings.invoker_email:
        listed.add(settings.invoker_email.lower())
    return frozenset(listed)


def expected_audiences(request: flask.Request, settings: Settings) -> list[str]:
    if settings.audience:
        return [settings.audience]
    # Behind Google's front end the function sees http; the caller used https.
    scheme = request.headers.get("X-Forwarded-Proto", request.scheme).split(",")[0].strip()
    host = request.headers.get("X-Forwarded-Host", request.host)
    path = request.path.rstrip("/")
    return [f"{scheme}://{host}{path}", f"{scheme}://{host}"]


def bearer_token(request: flask.Request) -> str:
    header = request.headers.get("Authorization")
    if not header:
        raise AuthError(401, "missing Authorization header (expected 'Bearer <OIDC token>')")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or token.count(".") != 2:
        raise AuthError(401, "malformed Authorization header (expected 'Bearer <OIDC token>')")
    return token


def verify(token: str, *, audiences: list[str], certs: dict[str, str]) -> dict:
    """The token's claims, once signature, expiry, audience and issuer check out."""
    try:
        claims = jwt.decode(token, certs=certs, audience=audiences,
                            clock_skew_in_seconds=CLOCK_SKEW_S)
    except (ValueError, google.auth.exceptions.GoogleAuthError) as exc:
        raise AuthError(401, _reason(str(exc))) from None
    if claims.get("iss") not in ISSUERS:
        raise AuthError(401, "token issuer is not Google")
    return claims


def _reason(detail: str) -> str:
    lowered = detail.lower()
    for needle, reason in (("expired", "token expired"),
                           ("audience", "token audience does not match this function"),
                           ("signature", "token signature is invalid"),
                           ("certificate for key id", "token signed by an unknown key"),
                           ("too early", "token is not valid yet")):
        if needle in lowered:
            return reason
    return "token is malformed"


def authenticate(request: flask.Request, settings: Settings, *, certs: CertCache,
                 allowed: Iterable[str] | None = None) -> str:
    """The caller's email ('local' in local mode). Raises AuthError(401 | 403)."""
    if settings.auth_mode == "local":
        return "local"
    token = bearer_token(request)
    try:
        keys = certs.certs()
    except CertsError as exc:
        raise AuthError(401, str(exc)) from None
    claims = verify(token, audiences=expected_audiences(request, settings), certs=keys)
    email = str(claims.get("email") or "").lower()
    if not email:
        raise AuthError(403, "token carries no email claim")
    if claims.get("email_verified") is not True:
        raise AuthError(403, f"caller {email} has no verified email")
    permitted = (frozenset(e.lower() for e in allowed) if allowed is not None
                 else allowed_callers(settings))
    if email not in permitted:
        raise AuthError(403, f"caller {email} is not allowed to call this function")
    return email
