"""The built-in http_fetch sync against a real local HTTP server."""

import http.server
import json
import logging
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from freshet.core.egress import EgressPolicy
from freshet.core.errors import PermanentError
from freshet.core.timeutil import utcnow
from freshet.loop.registry import SyncContext, handler_for

ORDERS_CSV = b"order_id,amount\no-1,10\no-2,20\no-3,30\n"
RATES = {"base": "EUR", "data": {"rates": [{"c": "USD"}, {"c": "GBP"}]}}
STAMPED_CSV = (b"order_id,ordered_at\no-1,2026-11-27T22:10:00Z\no-2,2026-11-27 23:59:00\n"
               b"o-3,2026-11-27T23:30:00+00:00\no-4,\n")
EVENTS = {"meta": {"generated_at": "2026-11-28T09:00:00+01:00"},
          "pages": [{"items": [{"at": 1795860000}, {"at": 1795863600}]},
                    {"items": [{"at": "2026-11-27"}]}]}
LAST_MODIFIED = "Fri, 27 Nov 2026 23:00:00 GMT"


class Handler(http.server.BaseHTTPRequestHandler):
    routes = {
        "/orders.csv": (200, "text/csv", ORDERS_CSV),
        "/rates.json": (200, "application/json", json.dumps(RATES).encode()),
        "/list.json": (200, "application/json", b"[1, 2, 3, 4]"),
        "/broken.json": (200, "application/json", b"{not json"),
        "/big.json": (200, "application/json", b"[" + b"1," * 5000 + b"1]"),
        "/busy": (503, "text/plain", b"try later"),
        "/throttled": (429, "text/plain", b"slow down"),
        "/stamped.csv": (200, "text/csv", STAMPED_CSV),
        "/events.json": (200, "application/json", json.dumps(EVENTS).encode()),
    }

    def do_GET(self):  # noqa: N802
        status, ctype, body = self.routes.get(self.path.split("?")[0],
                                              (404, "text/plain", b"no"))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if self.path == "/stamped.csv":
            self.send_header("Last-Modified", LAST_MODIFIED)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def upstream():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


# The pipeline's http_fetch policy as run_task hands it to the sync (ctx.egress).
POLICY = {"now": EgressPolicy()}


def fetch(params, tmp_path: Path | None = None, produces=("ds.a",)):
    saved = {}

    def snapshot(name, data, content_type):
        saved[name] = (data, content_type)

    ctx = SyncContext(job_id="j", run_id="j__r1", attempt=1, params=params,
                      produces=list(produces), deadline=utcnow() + timedelta(minutes=5),
                      heartbeat=lambda: True, logger=logging.getLogger("test"),
                      snapshot=snapshot, egress=POLICY["now"])
    return handler_for("http_fetch")(ctx), saved


def test_csv_body_is_counted_without_its_header_and_kept(upstream):
    result, saved = fetch({"url": f"{upstream}/orders.csv"})
    assert result.records == {"ds.a": 3}
    assert saved == {"j__r1.csv": (ORDERS_CSV, "text/csv")}


def test_json_records_path_counts_the_list_it_names(upstream):
    result, saved = fetch({"url": f"{upstream}/rates.json", "records_path": "data.rates"})
    assert result.records == {"ds.a": 2} and "j__r1.json" in saved


def test_json_list_body_counts_its_items(upstream):
    assert fetch({"url": f"{upstream}/list.json"})[0].records == {"ds.a": 4}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"url": "/not-a-url"}, "params.url"),
        ({"path": "/missing"}, "answered 404"),
        ({"path": "/broken.json"}, "not valid JSON"),
        ({"path": "/big.json", "max_bytes": 1000}, "larger than 1000 bytes"),
        ({"path": "/rates.json", "records_path": "data.nope"}, "no key 'nope'"),
        ({"path": "/list.json", "format": "xml"}, "params.format"),
    ],
)
def test_what_retrying_cannot_fix_is_permanent(upstream, params, message):
    params = dict(params)
    if "path" in params:
        params["url"] = upstream + params.pop("path")
    with pytest.raises(PermanentError, match=message):
        fetch(params)


@pytest.mark.parametrize("path", ["/busy", "/throttled"])
def test_server_errors_and_throttling_are_transient(upstream, path):
    with pytest.raises(Exception) as caught:
        fetch({"url": upstream + path})
    assert not isinstance(caught.value, PermanentError)


def test_unreachable_upstream_is_transient():
    with pytest.raises(Exception) as caught:
        fetch({"url": "http://127.0.0.1:9/x.json", "timeout_s": 2})
    assert not isinstance(caught.value, PermanentError)


def test_run_task_keeps_the_snapshot_in_the_snapshot_folder(db, upstream, tmp_path):
    from freshet.gcp.store import Store
    from freshet.loop.run import handle_one
    from freshet.loop.tick import tick_once
    from tests.loop.helpers import RecordingQueue, add_job, loop_settings

    store, settings = Store(db), loop_settings(snapshot_dir=str(tmp_path))
    now = utcnow()  # http_fetch's deadline is the run's lease, on the wall clock
    add_job(store, "orders", kind="http_fetch", produces=("sales.orders",),
            params={"url": f"{upstream}/orders.csv"}, next_run_at=now)
    queue = RecordingQueue(settings)
    run_id = tick_once(store, queue, now=now, settings=settings).created[0]
    assert handle_one(store, queue, run_id, 1, now=now, settings=settings).state == "succeeded"
    assert (tmp_path / "orders" / f"{run_id}.csv").read_bytes() == ORDERS_CSV
    assert store.get_dataset("sales.orders").last_record_count == 3


# -- where it may fetch from, and for how long ----------------------------------------------

METADATA_TOKEN = "/computeMetadata/v1/instance/service-accounts/default/token"


class Upstream:
    """A server that records each request's path and headers; routes are functions."""

    def __init__(self):
        self.requests: list[tuple[str, dict]] = []
        self.routes: dict = {}
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                upstream.requests.append((self.path, dict(self.headers)))
                route = upstream.routes.get(self.path.split("?")[0])
                try:
                    if route is None:
                        self._send(404, b"no")
                    else:
                        route(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _send(self, status, body, headers=()):
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        self.routes[path] = lambda h: h._send(status, b"", [("Location", location)])

    def serve(self, path: str, body: bytes, ctype: str = "application/json") -> None:
        self.routes[path] = lambda h: h._send(200, body, [("Content-Type", ctype)])

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def servers():
    a, b = Upstream(), Upstream()
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def policy():
    """Set pipeline.yaml's http_fetch policy as the sync receives it (ctx.egress)."""
    def set_policy(allowed_hosts="", allow_private="true", allow_link_local="false"):
        POLICY["now"] = EgressPolicy(tuple(h for h in allowed_hosts.split(",") if h),
                                     allow_private == "true", allow_link_local == "true")

    yield set_policy
    POLICY["now"] = EgressPolicy()


def refused(params) -> str:
    with pytest.raises(PermanentError) as caught:
        fetch(params)
    return str(caught.value)


def test_a_redirect_to_another_host_is_refused_without_naming_it(servers, policy):
    a, b = servers
    policy()
    b.serve("/data.json", b"[1]")
    a.redirect("/moved", b.url("/data.json", host="localhost"))
    message = refused({"url": a.url("/moved?token=abc")})
    assert "refused: a redirect to another host" in message
    assert "localhost" not in message and str(b.port) not in message and "abc" not in message
    assert b.requests == []


def test_a_redirect_on_the_same_host_is_followed_with_the_jobs_headers(servers, policy):
    a, _ = servers
    policy()
    a.serve("/v2/data.json", b"[1, 2]")
    a.redirect("/data.json", "/v2/data.json", 301)
    result, _ = fetch({"url": a.url("/data.json"), "headers": {"Authorization": "Bearer t"}})
    assert result.records == {"ds.a": 2}
    assert [h.get("Authorization") for _, h in a.requests] == ["Bearer t", "Bearer t"]


def test_an_allowed_cross_host_redirect_is_followed_without_the_jobs_headers(servers, policy):
    a, b = servers
    policy(allowed_hosts="127.0.0.1,localhost")
    b.serve("/data.json", b"[1, 2, 3]")
    a.redirect("/moved", b.url("/data.json", host="localhost"))
    result, _ = fetch({"url": a.url("/moved"), "headers": {"Authorization": "Bearer t",
                                                           "X-Api-Key": "k"}})
    assert result.records == {"ds.a": 3}
    assert a.requests[0][1].get("Authorization") == "Bearer t"
    sent_on = b.requests[0][1]
    assert "Authorization" not in sent_on and "X-Api-Key" not in sent_on


@pytest.mark.parametrize("allowed", ["", "127.0.0.1,169.254.169.254"])
def test_a_redirect_to_the_metadata_server_is_refused_even_when_listed(servers, policy,
                                                                        allowed):
    a, _ = servers
    policy(allowed_hosts=allowed)
    a.redirect("/rates.json", f"http://169.254.169.254{METADATA_TOKEN}")
    message = refused({"url": a.url("/rates.json")})
    assert "refused" in message and "169.254" not in message


@pytest.mark.parametrize("url", [
    f"http://169.254.169.254{METADATA_TOKEN}", f"http://metadata.google.internal{METADATA_TOKEN}",
    "http://METADATA.GOOGLE.INTERNAL./x", "http://metadata/x", "http://[fe80::1]/x",
    "http://[::ffff:169.254.169.254]/x", "http://2852039166/x", "http://169.254.1.1:8080/x",
    "http://0.0.0.0/x", "http://[::]/x",
])
def test_link_local_metadata_and_unusable_addresses_are_refused_before_connecting(url, policy):
    import time

    policy()
    started = time.monotonic()
    message = refused({"url": url})
    assert time.monotonic() - started < 2  # never tried: 169.254/16 does not answer here
    assert "refused" in message


def test_the_applied_policy_reaches_the_sync_through_its_context_not_the_environment(
        db, servers, tmp_path, monkeypatch):
    """apply writes the http_fetch: section to settings/control; run_task hands it to
    the sync. The old environment variables no longer change anything."""
    from freshet.gcp.store import Store
    from freshet.loop.run import handle_one
    from freshet.loop.tick import tick_once
    from tests.loop.helpers import RecordingQueue, add_job, loop_settings

    a, _ = servers
    a.serve("/x.json", b"[1]")
    monkeypatch.setenv("FRESHET_FETCH_ALLOW_PRIVATE", "true")  # ignored now
    store, settings = Store(db), loop_settings(snapshot_dir=str(tmp_path))
    store.set_control({"egress": EgressPolicy(allow_private=False).to_doc()})
    assert store.control().egress == EgressPolicy(allow_private=False)
    now = utcnow()
    add_job(store, "private", kind="http_fetch", produces=("ds.p",),
            params={"url": a.url("/x.json")}, next_run_at=now)
    queue = RecordingQueue(settings)
    run_id = tick_once(store, queue, now=now, settings=settings).created[0]
    outcome = handle_one(store, queue, run_id, 1, now=now, settings=settings)
    assert outcome.state == "failed" and "private address" in store.get_run(run_id).error
    assert a.requests == []


def test_link_local_addresses_can_be_allowed_by_the_pipeline():
    assert EgressPolicy(allow_link_local=True).host_refusal("169.254.169.254") is None
    assert EgressPolicy.from_doc(EgressPolicy((), True, True).to_doc()) == \
        EgressPolicy((), True, True)


@pytest.mark.parametrize("header", ["Metadata-Flavor", "metadata-flavor",
                                    "X-Google-Metadata-Request", "Host"])
def test_a_metadata_or_host_header_is_never_sent(servers, policy, header):
    a, _ = servers
    policy()
    a.serve("/x.json", b"[]")
    assert f"{header} is never sent" in refused({"url": a.url("/x.json"),
                                                 "headers": {header: "Google"}})
    assert a.requests == []


def test_a_host_outside_the_allowlist_is_refused(servers, policy):
    a, _ = servers
    policy(allowed_hosts="api.example.com,*.example.org")
    assert "host 127.0.0.1 is not in http_fetch.allowed_hosts" in refused({"url": a.url("/")})
    assert a.requests == []


def test_a_name_that_resolves_to_a_refused_address_is_refused_where_it_connects(servers,
                                                                                 policy):
    """The check is made on the connected socket's peer: a name passes the first look,
    and DNS (or a rebinding attacker) decides where it leads."""
    a, _ = servers
    policy(allow_private="false")
    a.serve("/x.json", b"[]")
    message = refused({"url": a.url("/x.json", host="localhost")})
    assert "private address" in message and "127.0.0.1" not in message
    assert a.requests == []


def trickle(handler, every_s=0.3, count=1000):
    """Answers at once, then sends its body a byte at a time: each read is quick."""
    import time

    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(count))
    handler.end_headers()
    for _ in range(count):
        handler.wfile.write(b" ")
        handler.wfile.flush()
        time.sleep(every_s)


def silent(handler, seconds=30):
    import time

    time.sleep(seconds)


def fetch_within(params, lease_s: float, monkeypatch):
    import time

    from freshet.gcp import egress as module

    monkeypatch.setattr(module, "HEARTBEAT_EVERY_S", 0.2)
    beats = []
    ctx = SyncContext(job_id="j", run_id="j__r1", attempt=1, params=params, produces=["ds.a"],
                      deadline=utcnow() + timedelta(seconds=lease_s),
                      heartbeat=lambda: beats.append(time.monotonic()),
                      logger=logging.getLogger("test"), egress=POLICY["now"])
    started = time.monotonic()
    with pytest.raises(Exception) as caught:
        handler_for("http_fetch")(ctx)
    return caught.value, time.monotonic() - started, beats


def test_a_trickling_server_cannot_hold_the_attempt_past_timeout_s(servers, policy,
                                                                    monkeypatch):
    a, _ = servers
    policy()
    a.routes["/slow.json"] = trickle
    error, took, beats = fetch_within({"url": a.url("/slow.json"), "timeout_s": 2}, 600,
                                      monkeypatch)
    assert 1.9 < took < 3.5, took
    assert not isinstance(error, PermanentError)  # transient: retried
    assert "no complete answer within 2 s" in str(error)
    assert len(beats) >= 5  # the lease was renewed while it waited


def test_the_download_ends_before_the_runs_lease_does(servers, policy, monkeypatch):
    a, _ = servers
    policy()
    a.routes["/silent.json"] = silent
    error, took, beats = fetch_within({"url": a.url("/silent.json"), "timeout_s": 600}, 8,
                                      monkeypatch)
    assert 2.5 < took < 4.5, took  # 8 s of lease, minus a 5 s margin to record the outcome
    assert "no complete answer within 3 s" in str(error) and beats


def test_with_no_lease_left_nothing_is_fetched(servers, policy, monkeypatch):
    a, _ = servers
    policy()
    error, took, _ = fetch_within({"url": a.url("/x.json")}, 3, monkeypatch)
    assert "no time left in the run's lease" in str(error) and a.requests == []


@pytest.mark.parametrize(("path", "expected"), [
    ("/busy", "GET http://127.0.0.1:{port}/busy answered 503"),
    ("/missing", "GET http://127.0.0.1:{port}/missing answered 404"),
])
def test_error_texts_name_the_url_without_its_query(upstream, path, expected):
    port = upstream.rsplit(":", 1)[1]
    with pytest.raises(Exception) as caught:
        fetch({"url": f"{upstream}{path}?api_key=s3cr3t"})
    assert str(caught.value) == expected.format(port=port)


def test_a_connection_error_says_so_without_the_librarys_internals():
    with pytest.raises(Exception) as caught:
        fetch({"url": "http://127.0.0.1:9/x.json?k=v"})
    assert str(caught.value) == "GET http://127.0.0.1:9/x.json: cannot connect"


def test_a_body_nested_too_deeply_is_permanent_not_a_crash(servers, policy):
    a, _ = servers
    policy()
    a.serve("/deep.json", b"[" * 100_000 + b"]" * 100_000)
    assert "nested too deeply" in refused({"url": a.url("/deep.json")})
# -- watermark: the time the data is current to -----------------------------------------


UTC_ = __import__("datetime").UTC


def stamp(text: str):
    from datetime import datetime
    return datetime.fromisoformat(text).astimezone(UTC_)


@pytest.mark.parametrize(
    ("path", "watermark", "expected"),
    [
        # a CSV column's latest value; a value without a zone is in `timezone`
        ("/stamped.csv", {"csv_column": "ordered_at"}, "2026-11-27T23:59:00+00:00"),
        ("/stamped.csv", {"csv_column": "ordered_at", "timezone": "Europe/Paris"},
         "2026-11-27T23:30:00+00:00"),
        ("/stamped.csv", {"last_modified": True}, "2026-11-27T23:00:00+00:00"),
        ("/events.json", {"json_path": "meta.generated_at"}, "2026-11-28T08:00:00+00:00"),
        # lists on the path are walked; Unix seconds and dates (their midnight) count
        ("/events.json", {"json_path": "pages.items.at"}, "2026-11-28T11:00:00+00:00"),
    ],
)
def test_the_watermark_is_read_as_configured(upstream, path, watermark, expected):
    result, _ = fetch({"url": upstream + path, "watermark": watermark},
                      produces=("ds.a", "ds.b"))
    assert result.watermarks == {"ds.a": stamp(expected), "ds.b": stamp(expected)}


def test_no_watermark_configured_reports_none(upstream):
    assert fetch({"url": f"{upstream}/orders.csv"})[0].watermarks == {}


@pytest.mark.parametrize(
    ("path", "watermark", "message"),
    [
        ("/orders.csv", {"csv_column": "updated_at"}, "'updated_at': no such column"),
        ("/orders.csv", {"csv_column": "amount", "last_modified": True}, "exactly one"),
        ("/orders.csv", {"last_modified": True}, "no Last-Modified header"),
        ("/orders.csv", {"csv_column": "order_id"}, "'o-1' is not a time"),
        ("/rates.json", {"json_path": "data.when"}, "no key 'when'"),
        ("/rates.json", {"json_path": "base"}, "'EUR' is not a time"),
        ("/rates.json", {"json_path": "base", "timezone": "Mars/Olympus"}, "unknown timezone"),
        ("/rates.json", {"json_pth": "base"}, "json_pth: unknown key"),
        ("/rates.json", "base", "must be an object"),
    ],
)
def test_a_watermark_that_is_not_there_or_not_a_time_is_permanent(upstream, path, watermark,
                                                                   message):
    with pytest.raises(PermanentError, match=message):
        fetch({"url": upstream + path, "watermark": watermark})


def test_run_task_records_the_data_time_on_the_dataset(db, upstream, tmp_path):
    from freshet.core.freshness import evaluate, make_requirement
    from freshet.gcp.store import Store
    from freshet.loop.run import handle_one
    from freshet.loop.tick import tick_once
    from tests.loop.helpers import RecordingQueue, add_job, loop_settings

    # The download's deadline is the lease measured by the wall clock: run at the real now.
    now = utcnow()
    store, settings = Store(db), loop_settings(snapshot_dir=str(tmp_path))
    add_job(store, "orders", kind="http_fetch", produces=("sales.orders",),
            params={"url": f"{upstream}/stamped.csv",
                    "watermark": {"csv_column": "ordered_at"}}, next_run_at=now)
    queue = RecordingQueue(settings)
    run_id = tick_once(store, queue, now=now, settings=settings).created[0]
    assert handle_one(store, queue, run_id, 1, now=now, settings=settings).state == "succeeded"
    dataset = store.get_dataset("sales.orders")
    assert dataset.data_as_of == stamp("2026-11-27T23:59:00+00:00")
    assert store.get_run(run_id).watermarks == {"sales.orders": dataset.data_as_of}
    judged = evaluate(dataset, make_requirement("sales.orders", "6h", "8h"), now)
    assert (judged.state, judged.basis) == ("stale_data", "data")


def test_a_date_is_its_midnight_in_the_watermark_timezone():
    from freshet.loop.syncs.http_fetch.sync import read_watermark, watermark_spec

    spec = watermark_spec({"json_path": "day", "timezone": "Europe/Paris"})
    assert read_watermark(spec, b'{"day": "2026-11-28"}', "json", None) == \
        stamp("2026-11-27T23:00:00+00:00")
    assert read_watermark(spec, b'{"day": []}', "json", None) is None  # no value: none


def test_a_stored_job_with_a_key_apply_would_refuse_still_runs(upstream):
    """apply and POST /jobs refuse unknown params; a job stored before keeps running."""
    from freshet.core.errors import ValidationError
    from freshet.loop.registry import CheckContext, check_params

    params = {"url": f"{upstream}/list.json", "legacy_option": True}
    with pytest.raises(ValidationError, match="params.legacy_option: unknown key"):
        check_params("http_fetch", params, CheckContext())
    assert fetch(params)[0].records == {"ds.a": 4}
