"""The built-in http_fetch sync against a real local HTTP server."""

import http.server
import json
import logging
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from freshet.core.errors import PermanentError
from freshet.loop.registry import SyncContext, handler_for
from tests.loop.helpers import T0

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
        status, ctype, body = self.routes.get(self.path, (404, "text/plain", b"no"))
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


def fetch(params, tmp_path: Path | None = None, produces=("ds.a",)):
    saved = {}

    def snapshot(name, data, content_type):
        saved[name] = (data, content_type)

    ctx = SyncContext(job_id="j", run_id="j__r1", attempt=1, params=params,
                      produces=list(produces), deadline=T0 + timedelta(minutes=5),
                      heartbeat=lambda: True, logger=logging.getLogger("test"),
                      snapshot=snapshot)
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
    add_job(store, "orders", kind="http_fetch", produces=("sales.orders",),
            params={"url": f"{upstream}/orders.csv"}, next_run_at=T0)
    queue = RecordingQueue(settings)
    run_id = tick_once(store, queue, now=T0, settings=settings).created[0]
    assert handle_one(store, queue, run_id, 1, now=T0, settings=settings).state == "succeeded"
    assert (tmp_path / "orders" / f"{run_id}.csv").read_bytes() == ORDERS_CSV
    assert store.get_dataset("sales.orders").last_record_count == 3


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

    store, settings = Store(db), loop_settings(snapshot_dir=str(tmp_path))
    add_job(store, "orders", kind="http_fetch", produces=("sales.orders",),
            params={"url": f"{upstream}/stamped.csv",
                    "watermark": {"csv_column": "ordered_at"}}, next_run_at=T0)
    queue = RecordingQueue(settings)
    run_id = tick_once(store, queue, now=T0, settings=settings).created[0]
    assert handle_one(store, queue, run_id, 1, now=T0, settings=settings).state == "succeeded"
    dataset = store.get_dataset("sales.orders")
    assert dataset.data_as_of == stamp("2026-11-27T23:59:00+00:00")
    assert store.get_run(run_id).watermarks == {"sales.orders": dataset.data_as_of}
    judged = evaluate(dataset, make_requirement("sales.orders", "6h", "8h"), T0)
    assert (judged.state, judged.basis) == ("stale_data", "data")


def test_a_date_is_its_midnight_in_the_watermark_timezone():
    from freshet.loop.syncs.http_fetch import read_watermark, watermark_spec

    spec = watermark_spec({"json_path": "day", "timezone": "Europe/Paris"})
    assert read_watermark(spec, b'{"day": "2026-11-28"}', "json", None) == \
        stamp("2026-11-27T23:00:00+00:00")
    assert read_watermark(spec, b'{"day": []}', "json", None) is None  # no value: none
