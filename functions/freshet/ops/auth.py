"""Who is calling: the Google-signed OIDC token every function receives.

Authorization is IAM's: deploy grants roles/run.invoker on each function to the invoker
account only (and, on the api, to the operators pipeline.yaml names), and deploys every
function with --no-allow-unauthenticated. Cloud Run's front end then checks each call's
token against those bindings and forwards it with its signature replaced by the literal
SIGNATURE_REMOVED_BY_GOOGLE. The function checks the token again, as a second lock:

- Behind Cloud Run (K_SERVICE set), a token whose signature is exactly
  SIGNATURE_REMOVED_BY_GOOGLE is read on its claims: the front end verified the
  signature. Why that is safe only behind --no-allow-unauthenticated, and how deploy
  guarantees it: docs/deploy-security.md.
- Anywhere else, the signature is verified against Google's certificates.
- Either way: the issuer is Google, the token has not expired, the audience is this
  function's URL from configuration (FRESHET_AUDIENCE, never the request's headers),
  and the caller's email is verified and allowed (the invoker; on the api, the
  operators in FRESHET_ALLOWED_CALLERS).

Local mode (FRESHET_AUTH=local) accepts every caller; it is only ever chosen by that
explicit setting, never as a fallback when verification fails.
"""

import base64
import json
import time
from collections.abc import Iterable

import flask
import google.auth.exceptions
from google.auth import jwt

from freshet.core.settings import Settings
from freshet.gcp.certs import CertCache, CertsError

ISSUERS = ("https://accounts.google.com", "accounts.google.com")
CLOCK_SKEW_S = 10
STRIPPED_SIGNATURE = "SIGNATURE_REMOVED_BY_GOOGLE"
# Cloud Run checks this header instead of Authorization when both are present, and then
# forwards Authorization untouched: the identity IAM checked is in this one.
SERVERLESS_HEADER = "X-Serverless-Authorization"


class AuthError(Exception):
    """401: no valid token. 403: a valid token of a caller who is not allowed.
    500: this function is not configured to check tokens."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def allowed_callers(settings: Settings) -> frozenset[str]:
    """The invoker and the operators FRESHET_ALLOWED_CALLERS lists (settings: read once)."""
    listed = {e.strip().lower() for e in settings.allowed_callers.split(",") if e.strip()}
    if settings.invoker_email:
        listed.add(settings.invoker_email.lower())
    return frozenset(listed)


def expected_audience(settings: Settings) -> str:
    """This function's URL, from configuration only."""
    if not settings.audience:
        raise AuthError(500, "FRESHET_AUDIENCE is not set: this function cannot check "
                             "tokens (deploy sets it to the function's URL)")
    return settings.audience


def bearer_token(request: flask.Request) -> str:
    header = request.headers.get(SERVERLESS_HEADER) or request.headers.get("Authorization")
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


def stripped(token: str) -> bool:
    return token.rsplit(".", 1)[-1] == STRIPPED_SIGNATURE


def unverified_claims(token: str) -> dict:
    """The payload of a token whose signature Google's front end checked and removed."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, UnicodeDecodeError):
        raise AuthError(401, "token is malformed") from None
    if not isinstance(claims, dict):
        raise AuthError(401, "token is malformed")
    return claims


def check_claims(claims: dict, *, audience: str, now: float) -> dict:
    """Pure: what jwt.decode checks besides the signature (issuer, times, audience)."""
    if claims.get("iss") not in ISSUERS:
        raise AuthError(401, "token issuer is not Google")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or not isinstance(iat, int | float):
        raise AuthError(401, "token is malformed")
    if now > exp + CLOCK_SKEW_S:
        raise AuthError(401, "token expired")
    if now < iat - CLOCK_SKEW_S:
        raise AuthError(401, "token is not valid yet")
    aud = claims.get("aud")
    if aud != audience and not (isinstance(aud, list) and audience in aud):
        raise AuthError(401, "token audience does not match this function")
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


def token_claims(token: str, settings: Settings, certs: CertCache) -> dict:
    audience = expected_audience(settings)
    if stripped(token):
        if not settings.k_service:
            # Outside Cloud Run nothing checked this token: a removed signature is forged.
            raise AuthError(401, "token signature was removed; only accepted behind Cloud "
                                 "Run's front end")
        return check_claims(unverified_claims(token), audience=audience, now=time.time())
    try:
        keys = certs.certs()
    except CertsError as exc:
        raise AuthError(401, str(exc)) from None
    return verify(token, audiences=[audience], certs=keys)


def authenticate(request: flask.Request, settings: Settings, *, certs: CertCache,
                 allowed: Iterable[str] | None = None) -> str:
    """The caller's email ('local' in local mode). Raises AuthError(401 | 403 | 500)."""
    if settings.auth_mode == "local":
        return "local"
    claims = token_claims(bearer_token(request), settings, certs)
    email = str(claims.get("email") or "").lower()
    if not email:
        raise AuthError(403, "token carries no email claim (mint it with --include-email)")
    if claims.get("email_verified") is not True:
        raise AuthError(403, f"caller {email} has no verified email")
    permitted = (frozenset(e.lower() for e in allowed) if allowed is not None
                 else allowed_callers(settings))
    if email not in permitted:
        raise AuthError(403, f"caller {email} is not allowed to call this function")
    return email
