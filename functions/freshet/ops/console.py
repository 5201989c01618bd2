"""`freshet console`: the operator console, served on 127.0.0.1 to the operator's own
browser. A third face of the API: every screen and action is a call of an API route
(freshet.ops.api), in this process with the operator's own Google credentials as the
CLI acts (the default), or over HTTP to a deployed api (`--api URL`, with the
operator's ID token). Google's IAM and the API's rules decide what each operator may
do, in one place; the console adds nothing to them but sentences.

Safe by construction:
- it binds a loopback address only (check_loopback) and answers only requests whose
  Host names it (a DNS-rebinding page cannot reach it);
- every POST carries the process's CSRF token and an Origin that is the console's own;
- a Content-Security-Policy allows no inline script and nothing from elsewhere;
- templates autoescape, and every printed string goes through core.text.printable
  (controls and bidi overrides shown as U+FFFD, visibly).
"""

import hmac
import ipaddress
import json
import logging
import os
import secrets
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import flask
import jinja2
import markupsafe
from werkzeug.test import EnvironBuilder

from freshet.core.errors import Forbidden, NoCredentials, Unavailable, ValidationError
from freshet.core.text import one_line, printable, safe_link, shorten
from freshet.core.timeutil import human_duration, parse_datetime, utcnow

log = logging.getLogger("freshet.console")

LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; connect-src 'self'")


# -- binding -----------------------------------------------------------------------------

def check_loopback(host: str) -> str:
    """The address to bind: a loopback one, or ValidationError. The console acts with the
    operator's credentials: anything that can reach it can act as them."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise ValidationError("--host", f"{host!r} is not an address; the console serves on "
                                        "127.0.0.1 (or ::1) only") from None
    if not address.is_loopback:
        raise ValidationError("--host", f"{host} is not a loopback address; the console acts "
                              "with your credentials, so it serves on 127.0.0.1 (or ::1) "
                              "only. To share it, host it behind IAP: docs/console.md")
    return str(address)


# -- the API, in this process or over HTTP -----------------------------------------------

@dataclass(frozen=True)
class Answer:
    status: int
    body: dict

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def error(self) -> dict:
        return (self.body or {}).get("error") or {}


class InProcessApi:
    """The API's routes called in this process: Firestore with the operator's own
    credentials (the CLI's way), the same validation and the same answers."""

    def __init__(self, deps, caller: str):
        self.deps, self.caller = deps, caller
        self.project = deps.settings.project

    def call(self, method: str, path: str, query: dict | None = None,
             body: dict | None = None) -> Answer:
        from freshet.ops.api import route
        from freshet.ops.web import Call, error_for

        environ = EnvironBuilder(path=path, method=method,
                                 query_string={k: v for k, v in (query or {}).items()
                                               if v not in (None, "")},
                                 json=body).get_environ()
        request = flask.Request(environ)
        try:
            status, answer = route(Call(request, self.deps, self.deps.clock(), self.caller))
            return Answer(status, json.loads(json.dumps(answer, default=str)))
        except (Forbidden, NoCredentials) as exc:  # the operator's own: IAM said no
            return Answer(403, {"error": {"field": "iam", "message": one_line(str(exc))[:300]}})
        except Unavailable as exc:
            return Answer(503, {"error": {"field": None, "message": one_line(str(exc))[:300]}})
        except Exception as exc:  # the API's own table: 4xx for what the caller can fix
            response = error_for(exc, f"console {method} {path}")
            return Answer(response.status_code, json.loads(response.get_data()))


class HttpApi:
    """A deployed api, called with the operator's Google ID token (IAM checks it)."""

    def __init__(self, url: str, token: Callable[[], str | None], project: str = ""):
        if safe_link(url) is None or not url.startswith(("http://", "https://")):
            raise ValidationError("--api", "must be an http(s) URL")
        self.url, self.token, self.project = url.rstrip("/"), token, project
        self.caller = "(your Google account)"

    def call(self, method: str, path: str, query: dict | None = None,
             body: dict | None = None) -> Answer:
        import requests

        token = self.token()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            response = requests.request(method, self.url + path, params={
                k: v for k, v in (query or {}).items() if v not in (None, "")},
                json=body, headers=headers, timeout=30)
        except requests.RequestException as exc:
            return Answer(503, {"error": {"field": None, "message": one_line(str(exc))[:300]}})
        try:
            answer = response.json()
        except ValueError:
            answer = {"error": {"field": None, "message": f"HTTP {response.status_code}"}}
        return Answer(response.status_code, answer if isinstance(answer, dict) else {})


def id_token_for(audience: str) -> Callable[[], str | None]:
    """The operator's ID token for the api: from their Google credentials (a service
    account or impersonation), else `gcloud auth print-identity-token`; none with
    FRESHET_AUTH=local (the local stack accepts every caller)."""

    def token() -> str | None:
        if os.environ.get("FRESHET_AUTH") == "local":
            return None
        import google.auth.transport.requests
        from google.oauth2 import id_token

        try:
            return id_token.fetch_id_token(google.auth.transport.requests.Request(), audience)
        except Exception:  # user credentials cannot mint one: ask gcloud
            import subprocess

            done = subprocess.run(["gcloud", "auth", "print-identity-token"],
                                  capture_output=True, text=True, timeout=30, check=False)
            return done.stdout.strip() or None

    return token


# -- refusals as sentences ---------------------------------------------------------------

def sentence(answer: Answer, doing: str) -> str:
    """What an operator reads when the API refuses: what happened and what to do."""
    field, message = answer.error.get("field"), answer.error.get("message") or ""
    if answer.status in (401, 403) and field in ("iam", "Authorization"):
        said = f" (Google Cloud said: {shorten(message, 200)})" if message else ""
        if doing.startswith("view"):
            return (f"You may not {doing}: ask for the viewer role on this pipeline's "
                    f"project (docs/console.md, “Who may do what”){said}.")
        return (f"You may view but not {doing}: ask for the operator role "
                f"(docs/console.md, “Who may do what”){said}.")
    if answer.status == 403 and field == "control":
        return f"Not done: a kill switch is on ({message}). Nothing was changed."
    if answer.status == 400:
        return f"Not done: {field}: {message}" if field else f"Not done: {message}"
    if answer.status == 404:
        return f"Not found: {message}"
    if answer.status == 409:
        return f"Not done: {message}"
    if answer.status >= 500:
        return (f"Not done: the pipeline could not be reached or failed ({message}); "
                "try again, and see the logs if it persists.")
    return f"Not done ({answer.status}): {message}"


# -- rendering ---------------------------------------------------------------------------

def _site() -> Path:
    from freshet.status.render import site_source

    return site_source()


def _printable(value: object) -> object:
    if isinstance(value, markupsafe.Markup):
        return markupsafe.Markup(printable(str(value)))
    return printable(value) if isinstance(value, str) else value


def _time(value: str | None) -> datetime | None:
    return None if not value else parse_datetime(value, "time")


def relative(value: str | None, now: datetime) -> str:
    when = _time(value)
    if when is None:
        return "—"
    delta = when - now
    return f"in {human_duration(delta)}" if delta.total_seconds() > 0 else \
        f"{human_duration(-delta)} ago"


def stamp(value: str | None) -> str:
    """An API time as people read it: `2026-11-28 12:00 UTC` (seconds when not :00)."""
    when = _time(value)
    if when is None:
        return "—"
    return f"{when:%Y-%m-%d %H:%M}" + (f":{when:%S}" if when.second else "") + " UTC"


def seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.1f} s" if value < 120 else human_duration_s(value)


def human_duration_s(value: float) -> str:
    from datetime import timedelta

    return human_duration(timedelta(seconds=value))


def make_env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_site() / "templates" / "console"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
        lstrip_blocks=True, finalize=_printable)
    env.filters.update(at=stamp, short=lambda s, n=120: shorten(s, n) if s else s,
                       link=safe_link,
                       secs=seconds, line=lambda s: one_line(s) if s else s,
                       json=lambda v: json.dumps(v, indent=2, sort_keys=True, default=str))
    return env


class Flash:
    """Messages carried across a redirect by a random id (not by their text in the URL,
    which a link from elsewhere could forge). Bounded."""

    def __init__(self, size: int = 200):
        self._items: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._lock = threading.Lock()
        self.size = size

    def put(self, kind: str, text: str) -> str:
        key = secrets.token_urlsafe(9)
        with self._lock:
            self._items[key] = (kind, text)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return key

    def take(self, key: str | None) -> tuple[str, str] | None:
        with self._lock:
            return self._items.pop(key, None) if key else None


# -- the app -----------------------------------------------------------------------------

def _actor(api) -> str:
    return getattr(api, "caller", "") or "operator"


def create_app(api, *, port: int, csrf_token: str | None = None,
               clock: Callable[[], datetime] = utcnow) -> flask.Flask:
    """The console over `api` (InProcessApi or HttpApi), for a server on 127.0.0.1:port."""
    from freshet.ops import console_views

    app = flask.Flask("freshet-console", static_folder=None)
    app.config.update(MAX_CONTENT_LENGTH=64 * 1024)
    token = csrf_token or secrets.token_urlsafe(32)
    hosts = {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}
    origins = {f"http://{h}" for h in hosts}
    state = console_views.State(api=api, env=make_env(), csrf=token, flash=Flash(),
                                clock=clock, static=_site() / "static")

    @app.before_request
    def guard():
        if flask.request.host not in hosts:  # DNS rebinding: a page on another name
            return _refused(421, "This console answers on 127.0.0.1 only.")
        if flask.request.method == "POST":
            origin = flask.request.headers.get("Origin")
            if origin not in origins:
                return _refused(403, "Refused: this form did not come from the console "
                                     "(its Origin is not the console's).")
            sent = flask.request.form.get("csrf", "")
            if not hmac.compare_digest(sent.encode(), token.encode()):
                return _refused(403, "Refused: the form's security token is missing or "
                                     "stale; reload the page and try again.")
        return None

    # Referrer-Policy is same-origin, not no-referrer: under no-referrer Chromium sends
    # `Origin: null` with a form's POST, and the Origin check above needs the real one.
    @app.after_request
    def headers(response: flask.Response) -> flask.Response:
        response.headers.update({
            "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY",
            "Cache-Control": "no-store", "Cross-Origin-Opener-Policy": "same-origin",
            "Cross-Origin-Resource-Policy": "same-origin"})
        return response

    console_views.register(app, state)
    return app


def _refused(status: int, text: str) -> flask.Response:
    return flask.Response(text + "\n", status=status, mimetype="text/plain")


def log_action(who: str, method: str, path: str, body: dict | None, answer: Answer) -> None:
    """Every action, one JSON line on stderr, as the CLI's actions are logged."""
    entry = {"severity": "INFO" if answer.ok else "WARNING", "message":
             f"console: {who} {method} {path} -> {answer.status}",
             "actor": who, "action": f"{method} {path}", "status": answer.status,
             "body": body or {}, "error": answer.error or None}
    print(json.dumps(entry, default=str), file=sys.stderr, flush=True)


# -- serving -----------------------------------------------------------------------------

def operator() -> str:
    """Who acts: $FRESHET_AUTHOR, else the login name (as the CLI's notes say)."""
    return os.environ.get("FRESHET_AUTHOR") or os.environ.get("USER") or "console"


def build_api(api_url: str | None):
    """The console's API, found the way the CLI finds the pipeline: from the environment
    (GOOGLE_CLOUD_PROJECT, FIRESTORE_EMULATOR_HOST, FRESHET_TASKS_EMULATOR_HOST, the
    FRESHET_* settings), which `freshet console` runs with the running local stack's
    context (.freshet/context.json) filled in, as every CLI command does."""
    from freshet.core.settings import load_settings

    if api_url:
        return HttpApi(api_url, id_token_for(api_url), project=load_settings(os.environ).project)
    from freshet.ops.deps import Deps

    return InProcessApi(Deps.from_env(os.environ), operator())


def console_server(host: str = "127.0.0.1", port: int = 8765, api: str | None = None):
    """A server for the console, bound (loopback only, refused otherwise) and not yet
    serving: `serve_forever()` it; `server_port` is the port it got (0: a free one)."""
    from werkzeug.serving import make_server

    address = check_loopback(host)
    if not 0 <= port <= 65535:
        raise ValidationError("--port", "must be 0-65535")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # actions are logged, not GETs
    server = make_server(address, port, None, threaded=True)
    server.app = create_app(build_api(api), port=server.server_port)  # Host check: its port
    return server


def serve_console(*, host: str = "127.0.0.1", port: int = 8765, api: str | None = None,
                  say: Callable[[str], None] = print) -> int:
    """Serve until interrupted. Refuses a non-loopback address before anything else."""
    server = console_server(host, port, api)
    shown = host if ":" not in server.server_address[0] else f"[{server.server_address[0]}]"
    say(f"Freshet console: http://{shown}:{server.server_port}/  (acting as {operator()}"
        + (f" through {api}" if api else " with your Google credentials") + "; Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
