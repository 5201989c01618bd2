"""A local front that behaves like Cloud Run's in front of a private function.

For every request to https://REGION-PROJECT.cloudfunctions.net/NAME/... Cloud Run:

- finds the caller's ID token (X-Serverless-Authorization, else Authorization):
  none -> 403; a token whose signature, expiry, issuer or audience does not check out
  against Google's keys -> 401;
- checks IAM: the token's email must hold roles/run.invoker on the function -> else 403;
- forwards the request with the token's signature replaced by the literal
  SIGNATURE_REMOVED_BY_GOOGLE, the function's name taken off the path, and
  X-Forwarded-Proto / X-Cloud-Trace-Context added;
- waits at most the function's timeout, then answers 504 and stops waiting (the
  function's code may still be running: Cloud Run does not kill it either).

This front does the same, verifying tokens against the local stand-in for Google's
certificates (freshet_local.local_google) and taking the invoker bindings from the
code that makes deploy's (freshet_local.deploy.invokers). freshet_local.cloud_local
puts it in front of functions-framework processes started with deploy's environment.
"""

import http.client
import json
import logging
import secrets
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import google.auth.exceptions
from google.auth import jwt

from freshet.gcp.certs import CertCache

log = logging.getLogger("freshet.cloud_front")

STRIPPED = "SIGNATURE_REMOVED_BY_GOOGLE"
ISSUERS = ("https://accounts.google.com", "accounts.google.com")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailers", "transfer-encoding", "upgrade", "host", "content-length"}


@dataclass(frozen=True)
class Route:
    """One deployed function, as the front sees it."""

    name: str
    backend: str  # http://127.0.0.1:PORT of its functions-framework process
    audience: str  # the function's URL: tokens must be minted for it
    invokers: frozenset[str]  # emails holding roles/run.invoker on it
    timeout_s: float


@dataclass(frozen=True)
class Decision:
    """What the front decided about one request (kept for tests and the demo)."""

    function: str
    status: int | None  # the front's own answer; None when it forwarded the request
    reason: str
    caller: str = ""


class Refused(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def caller_of(headers, route: Route, certs: dict[str, str]) -> tuple[str, str, str]:
    """(email, header name, stripped header value) for a request IAM lets through."""
    name = "X-Serverless-Authorization" if headers.get("X-Serverless-Authorization") \
        else "Authorization"
    value = headers.get(name)
    if not value:
        raise Refused(403, "no credentials: the caller sent no ID token")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or token.count(".") != 2:
        raise Refused(401, "the Authorization header is not a Bearer ID token")
    try:
        claims = jwt.decode(token, certs=certs, audience=[route.audience],
                            clock_skew_in_seconds=10)
    except (ValueError, google.auth.exceptions.GoogleAuthError) as exc:
        raise Refused(401, f"invalid ID token: {exc}") from None
    if claims.get("iss") not in ISSUERS:
        raise Refused(401, "the ID token was not issued by Google")
    email = str(claims.get("email") or "").lower()
    if email not in route.invokers:
        raise Refused(403, f"{email or 'the caller'} lacks roles/run.invoker on {route.name}")
    stripped = token.rsplit(".", 1)[0] + "." + STRIPPED
    return email, name, f"Bearer {stripped}"


class CloudFront:
    """Serves the routes on one address until close()."""

    def __init__(self, routes: list[Route], certs_url: str, *, host: str = "127.0.0.1",
                 port: int = 0, sock: socket.socket | None = None):
        self.routes = {r.name: r for r in routes}
        self.certs = CertCache(certs_url)
        self.decisions: list[Decision] = []
        self._lock = threading.Lock()
        handler = _handler(self)
        if sock is not None:  # bound earlier, so the URL could go into the functions' env
            self.httpd = ThreadingHTTPServer(sock.getsockname()[:2], handler,
                                             bind_and_activate=False)
            self.httpd.socket.close()
            self.httpd.socket = sock
            self.httpd.server_activate()
        else:
            self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.host, self.port = self.httpd.server_address[:2]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="cloud-front",
                                        daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def add_routes(self, routes: list[Route]) -> None:
        self.routes.update({r.name: r for r in routes})

    def record(self, decision: Decision) -> None:
        with self._lock:
            self.decisions.append(decision)
        if decision.status is not None:
            log.info("front: %s %s: %s", decision.function, decision.status, decision.reason)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler(front: CloudFront):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self._handle()

        do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

        def log_message(self, *args):
            pass

        def _handle(self):
            parts = urlsplit(self.path)
            name, _, rest = parts.path.lstrip("/").partition("/")
            route = front.routes.get(name)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if route is None:
                return self._answer(404, f"no function named {name!r}", name)
            try:
                email, header, value = caller_of(self.headers, route, front.certs.certs())
            except Refused as exc:
                return self._answer(exc.status, exc.reason, name)
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in HOP_BY_HOP and k.lower() != header.lower()}
            headers[header] = value
            headers.setdefault("X-Cloud-Trace-Context", f"{secrets.token_hex(16)}/1;o=1")
            headers["X-Forwarded-Proto"] = "https"
            headers["X-Forwarded-For"] = self.client_address[0]
            path = "/" + rest + (f"?{parts.query}" if parts.query else "")
            self._forward(route, email, path, body, headers)

        def _forward(self, route: Route, email: str, path: str, body: bytes,
                     headers: dict) -> None:
            target = urlsplit(route.backend)
            conn = http.client.HTTPConnection(target.hostname, target.port,
                                              timeout=route.timeout_s)
            try:
                conn.request(self.command, path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except TimeoutError:
                conn.close()  # stop waiting; the function may run on, as on Cloud Run
                return self._answer(504, f"{route.name} did not answer within its "
                                         f"{route.timeout_s:g} s timeout", route.name, email)
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                conn.close()
                return self._answer(503, f"{route.name} is not reachable: {exc}", route.name,
                                    email)
            conn.close()
            front.record(Decision(route.name, None, f"forwarded: {response.status}", email))
            self._send(response.status, data, [(k, v) for k, v in response.getheaders()
                                               if k.lower() not in HOP_BY_HOP])

        def _answer(self, status: int, reason: str, name: str, caller: str = "") -> None:
            front.record(Decision(name, status, reason, caller))
            body = json.dumps({"error": {"code": status, "message": reason}}).encode()
            self._send(status, body, [("Content-Type", "application/json")])

        def _send(self, status: int, body: bytes, headers: list) -> None:
            try:
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the caller stopped waiting (Cloud Tasks past its dispatch deadline)

    return Handler
