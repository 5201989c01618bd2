"""OIDC verification with real RS256 tokens signed by a test key, whose certificate a
local server publishes the way Google's certs endpoint does."""

from dataclasses import replace

import flask
import pytest

from freshet.core.settings import Settings
from freshet.ops.auth import STRIPPED_SIGNATURE, AuthError, CertCache, authenticate
from tests.ops.helpers import AUDIENCE, INVOKER, OPERATOR, CertServer, SigningKey

APP = flask.Flask(__name__)
SETTINGS = Settings(auth_mode="oidc", invoker_email=INVOKER, audience=AUDIENCE)


@pytest.fixture(scope="module")
def keys():
    good, rogue = SigningKey("test-key-1"), SigningKey("test-key-1")
    server = CertServer([good])
    yield good, rogue, server
    server.close()


@pytest.fixture()
def certs(keys):
    return CertCache(keys[2].url)


def call(token: str | None, certs, settings=SETTINGS, path="/jobs",
         base_url="https://europe-west1-demo-freshet.cloudfunctions.net/api", header=None):
    headers = {} if token is None else {"Authorization": header or f"Bearer {token}"}
    with APP.test_request_context(path, base_url=base_url, headers=headers):
        return authenticate(flask.request, settings, certs=certs)


def status_of(*args, **kwargs) -> tuple[int, str]:
    with pytest.raises(AuthError) as caught:
        call(*args, **kwargs)
    return caught.value.status, caught.value.message


def test_the_invokers_token_is_accepted(keys, certs):
    assert call(keys[0].token(), certs) == INVOKER


def test_an_allowed_operator_is_accepted(keys, certs):
    settings = replace(SETTINGS, allowed_callers=f"someone@example.com, {OPERATOR}")
    assert call(keys[0].token(email=OPERATOR), certs, settings) == OPERATOR


def test_a_missing_token_is_401(certs):
    assert status_of(None, certs) == (401, "missing Authorization header "
                                           "(expected 'Bearer <OIDC token>')")


def test_a_malformed_header_is_401(keys, certs):
    assert status_of("x", certs, header="Basic dXNlcjpwdw==")[0] == 401
    assert status_of("x", certs, header="Bearer not-a-jwt")[0] == 401


def test_an_expired_token_is_401(keys, certs):
    assert status_of(keys[0].token(expires_in=-60), certs) == (401, "token expired")


def test_a_token_for_another_audience_is_401(keys, certs):
    token = keys[0].token(audience="https://elsewhere.example.com/api")
    assert status_of(token, certs) == (401, "token audience does not match this function")


def test_a_token_signed_by_another_key_is_401(keys, certs):
    assert status_of(keys[1].token(), certs) == (401, "token signature is invalid")


def test_a_token_from_another_issuer_is_401(keys, certs):
    token = keys[0].token(issuer="https://evil.example.com")
    assert status_of(token, certs) == (401, "token issuer is not Google")


def test_a_valid_token_of_a_caller_not_allowed_is_403(keys, certs):
    status, message = status_of(keys[0].token(email="intruder@example.com"), certs)
    assert status == 403 and "intruder@example.com" in message


def test_an_unverified_email_is_403(keys, certs):
    assert status_of(keys[0].token(email_verified=False), certs)[0] == 403


def test_without_a_configured_audience_every_call_is_refused_whatever_the_headers_say(
        keys, certs):
    """The audience comes from configuration only: a caller cannot steer it with
    X-Forwarded-Host/-Proto to make a token minted for another service count."""
    settings = Settings(auth_mode="oidc", invoker_email=INVOKER)
    other = "https://elsewhere.example.com/api"
    with APP.test_request_context(
            "/api", base_url="https://europe-west1-demo-freshet.cloudfunctions.net",
            headers={"Authorization": f"Bearer {keys[0].token(audience=other)}",
                     "X-Forwarded-Host": "elsewhere.example.com",
                     "X-Forwarded-Proto": "https"}), pytest.raises(AuthError) as caught:
        authenticate(flask.request, settings, certs=certs)
    assert caught.value.status == 500 and "FRESHET_AUDIENCE" in caught.value.message


def test_forwarded_headers_never_change_the_audience(keys, certs):
    token = keys[0].token(audience="https://elsewhere.example.com/api")
    with APP.test_request_context(
            "/api", headers={"Authorization": f"Bearer {token}",
                             "X-Forwarded-Host": "elsewhere.example.com",
                             "X-Forwarded-Proto": "https"}), pytest.raises(AuthError) as caught:
        authenticate(flask.request, SETTINGS, certs=certs)
    assert (caught.value.status, caught.value.message) == (
        401, "token audience does not match this function")


def strip(token: str) -> str:
    """What Cloud Run's front end forwards: the signature replaced by a literal."""
    return token.rsplit(".", 1)[0] + "." + STRIPPED_SIGNATURE


BEHIND_CLOUD_RUN = replace(SETTINGS, k_service="api")


def test_behind_cloud_run_a_stripped_token_is_accepted_on_its_claims(keys):
    no_certs = CertCache("http://127.0.0.1:9/unreachable")  # never fetched
    assert call(strip(keys[0].token()), no_certs, BEHIND_CLOUD_RUN) == INVOKER


@pytest.mark.parametrize("claims, status, message", [
    ({"expires_in": -60}, 401, "token expired"),
    ({"audience": "https://elsewhere.example.com/api"}, 401,
     "token audience does not match this function"),
    ({"issuer": "https://evil.example.com"}, 401, "token issuer is not Google"),
    ({"email": "intruder@example.com"}, 403,
     "caller intruder@example.com is not allowed to call this function"),
    ({"email_verified": False}, 403, f"caller {INVOKER} has no verified email"),
])
def test_behind_cloud_run_a_stripped_tokens_claims_are_still_checked(keys, claims, status,
                                                                     message):
    no_certs = CertCache("http://127.0.0.1:9/unreachable")
    assert status_of(strip(keys[0].token(**claims)), no_certs, BEHIND_CLOUD_RUN) == (
        status, message)


def test_a_stripped_token_outside_cloud_run_is_refused_as_forged(keys, certs):
    """Without K_SERVICE nothing verified the token before us: a removed signature is
    what a forger would send."""
    forged = strip(keys[1].token())  # any key, even none: the signature is gone
    status, message = status_of(forged, certs)
    assert status == 401 and "signature was removed" in message


def test_behind_cloud_run_a_token_with_its_signature_is_still_verified(keys, certs):
    assert call(keys[0].token(), certs, BEHIND_CLOUD_RUN) == INVOKER
    assert status_of(keys[1].token(), certs, BEHIND_CLOUD_RUN) == (
        401, "token signature is invalid")


def test_the_serverless_authorization_header_is_the_identity_iam_checked(keys, certs):
    """With X-Serverless-Authorization, Cloud Run checks that header and forwards
    Authorization untouched: Authorization then proves nothing."""
    forged = strip(keys[1].token(email="intruder@example.com"))
    with APP.test_request_context("/jobs", headers={
            "X-Serverless-Authorization": f"Bearer {strip(keys[0].token())}",
            "Authorization": f"Bearer {forged}"}):
        assert authenticate(flask.request, BEHIND_CLOUD_RUN, certs=certs) == INVOKER


def test_certificates_are_fetched_once_and_cached(keys):
    cache = CertCache(keys[2].url)
    before = keys[2].hits
    for _ in range(3):
        call(keys[0].token(), cache)
    assert keys[2].hits - before == 1


def test_local_mode_accepts_anyone_only_when_chosen_explicitly(certs):
    assert call(None, certs, Settings(auth_mode="local")) == "local"
    assert status_of(None, certs, Settings(auth_mode="oidc"))[0] == 401


class BadCertServer:
    """A certificates endpoint that answers `body` (bytes, or a generator of chunks)."""

    def __init__(self, body, status: int = 200):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                try:
                    for chunk in (body() if callable(body) else [body]):
                        self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading: the point of the cap

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/certs"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def endless_json():
    yield b'{"k": "'
    for _ in range(100_000):  # 100 MB if read to the end
        yield b"A" * 1024


@pytest.mark.parametrize(("body", "status", "reason"), [
    (b"<html>maintenance</html>", 200, "not JSON"),
    (b'["a", "list"]', 200, "not a set of certificates"),
    (b'{"kid": 42}', 200, "not a set of certificates"),
    (b"{}", 200, "not a set of certificates"),
    (b"[" * 50_000, 200, "not JSON"),
    (endless_json, 200, "larger than 65536 bytes"),
    (b"{}", 503, "HTTP 503"),
])
def test_a_bad_certificates_answer_is_a_401_saying_so_never_a_500(keys, body, status, reason):
    import time

    server = BadCertServer(body, status)
    try:
        started = time.monotonic()
        code, message = status_of(keys[0].token(), CertCache(server.url))
        assert time.monotonic() - started < 5
    finally:
        server.close()
    assert code == 401
    assert message.startswith("cannot fetch the token signing certificates") and reason in message


def test_an_unreachable_certificates_endpoint_is_a_401():
    code, message = status_of("a.b.c", CertCache("http://127.0.0.1:9/certs"))
    assert code == 401 and "cannot fetch the token signing certificates" in message
