"""Webhook delivery against a real local HTTP server: sent, retried with backoff, never raised."""

from datetime import timedelta

import pytest

from freshet.status.changes import Memory, detect_changes, remember
from freshet.status.notify import MAX_ATTEMPTS, WebhookNotifier, deliver, payload_for, queue

from .builders import NOW, H, model, synced
from .webhook_server import WebhookReceiver


@pytest.fixture
def receiver():
    with WebhookReceiver() as r:
        yield r


def stale_payload():
    before = model(datasets=[synced("meta.ads", H)], site_url="https://status.example/")
    after = model(datasets=[synced("meta.ads", 50 * H)], site_url="https://status.example/")
    events = detect_changes(after, remember(before, Memory(exists=True), []))
    return payload_for(events, after)


def test_payload_is_slack_compatible_with_the_reason_and_a_link():
    payload = stale_payload()
    assert payload["text"].startswith("Freshet: Some data cannot be trusted — 1 change")
    assert "meta.ads is Error (was Fresh)" in payload["text"]
    assert "last success 50 h ago" in payload["text"]
    assert "https://status.example/" in payload["text"]
    assert payload["freshet"]["events"][0]["kind"] == "dataset_stale"


def test_a_due_notification_is_delivered_once(receiver):
    pending = queue([], stale_payload(), NOW)
    result = deliver(pending, WebhookNotifier(receiver.url), NOW)
    assert (result.sent, result.pending) == (1, [])
    assert len(receiver.received) == 1
    assert receiver.received[0]["text"] == stale_payload()["text"]


def test_a_failed_delivery_waits_with_backoff_then_succeeds(receiver):
    receiver.fail_next = 1
    notifier = WebhookNotifier(receiver.url)
    result = deliver(queue([], stale_payload(), NOW), notifier, NOW)
    assert (result.sent, result.failed, len(result.pending)) == (0, 1, 1)
    assert result.pending[0]["attempts"] == 1
    assert "HTTP 500" in result.pending[0]["last_error"]
    early = deliver(result.pending, notifier, NOW + timedelta(seconds=30))
    assert early.sent == 0 and receiver.attempts == 1  # not due yet: no request made
    later = deliver(early.pending, notifier, NOW + timedelta(minutes=1))
    assert (later.sent, later.pending) == (1, [])
    assert (receiver.attempts, len(receiver.received)) == (2, 1)


def test_an_unreachable_webhook_never_raises_and_is_dropped_after_max_attempts():
    notifier = WebhookNotifier("http://127.0.0.1:9/nothing", timeout_s=0.5)
    pending, now = queue([], stale_payload(), NOW), NOW
    for _ in range(MAX_ATTEMPTS - 1):
        result = deliver(pending, notifier, now)
        assert len(result.pending) == 1
        pending, now = result.pending, now + timedelta(hours=2)
    result = deliver(pending, notifier, now)
    assert (result.pending, result.dropped) == ([], 1)
