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
