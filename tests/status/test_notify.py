"""Sending to a real local HTTP server: Slack-compatible and signed webhooks, retried with
backoff, dropped after the last attempt, never raised."""

import json
from datetime import timedelta

import pytest

from freshet.core.alerts import (
    MAX_ATTEMPTS,
    Attempted,
    Reference,
    RouteSpec,
    RouteState,
    RouteType,
    after_delivery,
    decide_feed_route,
    due_messages,
)
from freshet.status.changes import Memory, detect_changes, remember
from freshet.status.notify import DeliveryError, payload_for, send_message, signature_ok

from .builders import NOW, H, model, synced
from .webhook_server import WebhookReceiver


@pytest.fixture
def receiver():
    with WebhookReceiver() as r:
        yield r


def stale_events():
    before = model(datasets=[synced("meta.ads", H)], site_url="https://status.example/")
    after = model(datasets=[synced("meta.ads", 50 * H)], site_url="https://status.example/")
    return detect_changes(after, remember(before, Memory(exists=True), [])), after


def stale_payload():
    events, after = stale_events()
    return payload_for(events, after)


def test_payload_is_slack_compatible_with_the_reason_and_a_link():
    payload = stale_payload()
    assert payload["text"].startswith("Freshet: Some data cannot be trusted — 1 change")
    assert "meta.ads is Error (was Fresh)" in payload["text"]
    assert "last success 50 h ago" in payload["text"]
    assert "https://status.example/" in payload["text"]
    assert payload["freshet"]["events"][0]["kind"] == "dataset_stale"


def queued(url: str, kind=RouteType.SLACK, secret=None):
    events, after = stale_events()
    spec = RouteSpec("ops", kind, Reference(value=url), secret)
    state, message = decide_feed_route(RouteState("ops"), [e.to_doc() for e in events], NOW)
    return spec, state, message, after


def test_a_slack_message_is_delivered_once(receiver):
    spec, state, message, after = queued(receiver.url)
    send_message(spec, message, after, {})
    state = after_delivery(state, [Attempted(message.id, NOW)])
    assert (state.backlog, state.delivered, state.last_status) == ((), 1, "delivered")
    assert receiver.received[0]["text"] == stale_payload()["text"]


def test_a_signed_webhook_carries_an_hmac_the_receiver_can_check(receiver):
    spec, _, message, after = queued(receiver.url, RouteType.WEBHOOK,
                                     Reference(env="OPS_SECRET"))
    send_message(spec, message, after, {"OPS_SECRET": "s3cr3t-hmac-key"})
    headers, body = receiver.requests[0]
    assert headers["X-Freshet-Route"] == "ops" and headers["X-Freshet-Message"] == message.id
    assert signature_ok("s3cr3t-hmac-key", headers["X-Freshet-Timestamp"], body,
                        headers["X-Freshet-Signature"])
    assert not signature_ok("another-key", headers["X-Freshet-Timestamp"], body,
                            headers["X-Freshet-Signature"])
    doc = json.loads(body)
    assert doc["route"] == "ops" and doc["events"][0]["kind"] == "dataset_stale"
    assert "s3cr3t" not in body.decode()


def test_a_missing_secret_or_url_is_a_delivery_error_naming_the_variable(receiver):
    spec, _, message, after = queued(receiver.url, RouteType.WEBHOOK,
                                     Reference(env="OPS_SECRET"))
    with pytest.raises(DeliveryError, match=r"secret is not set \(\$OPS_SECRET\)"):
        send_message(spec, message, after, {})
    unset = RouteSpec("x", RouteType.SLACK, Reference(env="X_URL"))
    with pytest.raises(DeliveryError, match=r"URL is not set \(\$X_URL\)"):
        send_message(unset, message, after, {})
    assert receiver.attempts == 0


def test_a_failed_delivery_waits_with_backoff_then_succeeds(receiver):
    receiver.fail_next = 1
    spec, state, message, after = queued(receiver.url)
    with pytest.raises(DeliveryError, match="HTTP 500"):
        send_message(spec, message, after, {})
    state = after_delivery(state, [Attempted(message.id, NOW, "HTTP 500: down")])
    assert (state.last_status, state.backlog[0].attempts) == ("failed", 1)
    assert due_messages(state, NOW + timedelta(seconds=30)) == []  # not due yet
    (again,) = due_messages(state, NOW + timedelta(minutes=1))
    send_message(spec, again, after, {})
    state = after_delivery(state, [Attempted(again.id, NOW + timedelta(minutes=1))])
    assert (state.backlog, state.last_status, state.delivered) == ((), "delivered", 1)
    assert (receiver.attempts, len(receiver.received)) == (2, 1)


def test_an_unreachable_webhook_never_raises_past_delivery_and_is_dropped_after_max_attempts():
    spec, state, message, after = queued("http://127.0.0.1:9/nothing")
    now = NOW
    for _ in range(MAX_ATTEMPTS):
        (due,) = due_messages(state, now)
        with pytest.raises(DeliveryError):
            send_message(spec, due, after, {})
        state = after_delivery(state, [Attempted(due.id, now, "refused")])
        now += timedelta(hours=2)
    assert (state.backlog, state.dropped, state.last_status) == ((), 1, "dropped")


def test_a_delivery_error_never_shows_the_webhook_url_or_the_secret():
    spec, _, message, after = queued("http://127.0.0.1:9/services/T000/B000/XXXXSECRETPATH",
                                     RouteType.WEBHOOK, Reference(env="OPS_SECRET"))
    with pytest.raises(DeliveryError) as caught:
        send_message(spec, message, after, {"OPS_SECRET": "s3cr3t-hmac-key"})
    assert str(caught.value) == "cannot connect"  # Freshet's words: no URL, no secret


# -- chat markup from syncs stays text ---------------------------------------------------

CHAT_MARKUP = [
    "<!channel> the export broke", "<!everyone> look", "<!here|here>", "<@U024BE7LH> fix it",
    "<https://evil.example/login|Click here to re-authenticate>", "<#C123|general>",
    "a & b <> c", "`<!channel>` *bold* _it_ ~s~", "```<https://evil.example|x>```",
    "line one\n<!channel>\r\nline three", "&lt;!channel&gt;",
]


def failed_job_payload(error: str, site_url: str = "https://status.example/"):
    from .builders import job

    before = model(jobs=[job("meta_sync", last_run_status="succeeded")], site_url=site_url)
    after = model(jobs=[job("meta_sync", last_run_status="failed", last_error=error)],
                  datasets=[synced("meta.ads", 50 * H, last_error=error,
                                   last_failure_at=NOW - H, consecutive_failures=1)],
                  site_url=site_url)
    memory = remember(before, Memory(exists=True), [])
    memory.datasets["meta.ads"] = "fresh"
    events = detect_changes(after, memory)
    assert {e.kind for e in events} == {"dataset_stale", "job_failed"}
    return payload_for(events, after)


def outside_code(text: str) -> str:
    """What Slack would read as markup: everything not inside an inline code span."""
    return "".join(part for i, part in enumerate(text.split("`")) if i % 2 == 0)


@pytest.mark.parametrize("error", CHAT_MARKUP)
def test_a_sync_error_can_form_no_mention_and_no_link_in_the_message(error):
    text = failed_job_payload(error)["text"]
    assert "<" not in text and ">" not in text  # no Slack control sequence at all
    assert all(line.count("`") % 2 == 0 for line in text.splitlines())
    for line in text.splitlines()[1:-1]:  # the change lines: the error only inside code
        assert "channel" not in outside_code(line) and "evil" not in outside_code(line)
    for amp in range(len(text)):
        if text[amp] == "&":
            assert text[amp:].startswith(("&amp;", "&lt;", "&gt;"))


def test_the_escaped_error_still_reads_as_it_was_written():
    text = failed_job_payload("vendor said <Unauthorized> & gave up")["text"]
    assert "`vendor said &lt;Unauthorized&gt; &amp; gave up`" in text


def test_slack_fetches_no_preview_and_the_page_link_is_our_own():
    payload = failed_job_payload("<https://evil.example|x>")
    assert payload["unfurl_links"] is False and payload["unfurl_media"] is False
    assert payload["text"].endswith("Status page: https://status.example/")
    unsafe = failed_job_payload("boom", site_url="javascript:alert(1)")
    assert "javascript" not in unsafe["text"] and unsafe["freshet"]["page"] == ""


# -- the guarded client: what a route may reach, and what is shown (issue 20, section 3) --

SECRET_HOOK = "/services/T0SECRET/B0SECRET/XXXXSECRETPATH?token=QUERYSECRET"


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/token",
    "http://metadata.google.internal/computeMetadata/v1/", "http://[fe80::1]/hook",
    "http://0.0.0.0/hook",
])
def test_a_route_never_reaches_a_link_local_or_metadata_address(url):
    import time

    from freshet.core.egress import EgressPolicy

    spec, _, message, after = queued("unused")
    spec = RouteSpec("ops", RouteType.SLACK, Reference(env="OPS_URL"))
    started = time.monotonic()
    with pytest.raises(DeliveryError, match="^refused: ") as caught:
        send_message(spec, message, after, {"OPS_URL": url},
                     EgressPolicy(allow_link_local=True))  # http_fetch's switch: not routes'
    assert time.monotonic() - started < 2  # never tried
    assert "169.254" not in str(caught.value) and "metadata.google" not in str(caught.value)


def test_a_name_leading_to_a_private_address_is_refused_where_it_connects(receiver):
    from freshet.core.egress import EgressPolicy

    spec, _, message, after = queued(receiver.url.replace("127.0.0.1", "localhost"))
    with pytest.raises(DeliveryError, match="private address") as caught:
        send_message(spec, message, after, {}, EgressPolicy(allow_private=False))
    assert receiver.attempts == 0 and "127.0.0.1" not in str(caught.value)


def test_a_redirect_is_an_error_naming_its_status_and_the_signed_body_goes_nowhere_else():
    with WebhookReceiver() as first, WebhookReceiver() as elsewhere:
        first.answer = (307, {"Location": elsewhere.url}, b"")
        spec, _, message, after = queued(first.url, RouteType.WEBHOOK,
                                         Reference(env="OPS_SECRET"))
        with pytest.raises(DeliveryError) as caught:
            send_message(spec, message, after, {"OPS_SECRET": "s3cr3t-hmac-key"})
        assert str(caught.value) == "HTTP 307: a redirect, not followed"
        assert first.attempts == 1 and elsewhere.attempts == 0


def test_the_receivers_answer_is_never_the_stored_error_and_is_logged_redacted(receiver,
                                                                                caplog):
    import logging

    url = receiver.url.replace("/hook", SECRET_HOOK)
    receiver.answer = (403, {}, b"forbidden: password=hunter2 for /services/T0SECRET/"
                       b"B0SECRET/XXXXSECRETPATH and token QUERYSECRET " + b"x" * 5000)
    spec, state, message, after = queued(url)
    with caplog.at_level(logging.WARNING, logger="freshet.status.routes"), \
            pytest.raises(DeliveryError) as caught:
        send_message(spec, message, after, {})
    assert str(caught.value) == "HTTP 403"
    state = after_delivery(state, [Attempted(message.id, NOW, str(caught.value))])
    assert (state.last_error, state.backlog[0].last_error) == ("HTTP 403", "HTTP 403")
    logged = caplog.text
    assert "HTTP 403" in logged and "forbidden" in logged  # the log has it, for operators
    for part in ("T0SECRET", "B0SECRET", "XXXXSECRETPATH", "QUERYSECRET"):
        assert part not in logged
    assert len(logged) < 1000  # clipped


def test_no_proxy_is_taken_from_the_environment(receiver, monkeypatch):
    with WebhookReceiver() as proxy:
        for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "ALL_PROXY"):
            monkeypatch.setenv(name, proxy.url.rsplit("/", 1)[0])
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        spec, _, message, after = queued(receiver.url)
        send_message(spec, message, after, {})
        assert (receiver.attempts, proxy.attempts) == (1, 0)


def test_a_receiver_that_never_answers_is_a_timeout_in_our_words(receiver):
    import time

    receiver.delay_s = 6
    spec, _, message, after = queued(receiver.url)
    started = time.monotonic()
    with pytest.raises(DeliveryError, match="^no complete answer within 5 s$|^timed out$"):
        send_message(spec, message, after, {})
    assert time.monotonic() - started < 7


def test_every_part_of_a_route_url_that_could_echo_is_redacted():
    from freshet.status.routes.base import secret_parts

    parts = secret_parts("https://hooks.example/services/T0SECRET/B0%2FSECRET"
                         "?token=QUERYSECRET&x=1", "hmac-key")
    text = ("echo T0SECRET, B0%2FSECRET, B0/SECRET, QUERYSECRET, hmac-key, services")
    from freshet.core.secrets import redact

    shown = redact(text, parts)
    for secret in ("T0SECRET", "B0%2FSECRET", "B0/SECRET", "QUERYSECRET", "hmac-key"):
        assert secret not in shown
