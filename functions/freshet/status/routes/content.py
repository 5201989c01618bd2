"""What a notification says, whatever carries it: one message for the changes of one
publish, as Slack-compatible text (escaped: a sync's error can form no mention and no
link) and as Freshet's structured JSON."""

from freshet.core.text import one_line, printable_all, shorten
from freshet.core.timeutil import isoformat
from freshet.status.changes import Event
from freshet.status.model import StatusModel

MAX_LINES = 10
MAX_EVENTS_IN_PAYLOAD = 20  # the structured copy; the rest is counted (bounded documents)

_EMOJI = {"dataset_stale": ":warning:", "dataset_recovered": ":white_check_mark:",
          "job_failed": ":x:", "job_recovered": ":white_check_mark:", "run_stuck": ":hourglass:",
          "consumer_warning": ":warning:", "consumer_error": ":x:",
          "consumer_stale_data": ":hourglass:", "consumer_recovered": ":white_check_mark:",
          "dataset_warning": ":warning:", "dataset_error": ":x:",
          "dataset_stale_data": ":hourglass:", "deadline_missed": ":alarm_clock:"}


def slack_escape(text: str) -> str:
    """Slack's three control characters as the entities it asks for: `<!channel>`,
    `<@U123>` and `<https://evil|Click here>` then show as text, never as a mention or a
    disguised link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _quoted(text: str, limit: int = 300) -> str:
    """Text a sync wrote (errors, reasons), as inline code: escaped, on one line, and
    with no backtick that could end the code span so Slack links or formats the rest."""
    text = shorten(one_line(text), limit) or ""
    return f"`{slack_escape(text.replace('`', 'ˋ'))}`" if text.strip() else ""


def _line(event: Event) -> str:
    summary = _quoted(event.summary)
    title = slack_escape(one_line(event.title))
    return f"{_EMOJI.get(event.kind, '•')} {title}" + (f": {summary}" if summary else "")


def payload_for(events: list[Event], model: StatusModel, *, more: int = 0) -> dict:
    """One message for the changes of one publish: the reasons and a link to the page.
    `more`: changes beyond `events` that the message only counts."""
    lines = [_line(e) for e in events[:MAX_LINES]]
    total = len(events) + more
    if total > MAX_LINES:
        lines.append(f"… and {total - MAX_LINES} more changes")
    head = f"Freshet: {model.headline} — {total} change{'s' if total != 1 else ''}"
    page = f"Status page: {slack_escape(model.site_url)}" if model.site_url else ""
    text = "\n".join(line for line in [head, *lines, page] if line)
    return printable_all({
        "text": text,
        "unfurl_links": False, "unfurl_media": False,  # Slack fetches no linked page
        "freshet": {
            "overall": model.state, "headline": model.headline, "page": model.site_url,
            "generated_at": isoformat(model.built_at),
            "events": [e.to_doc() for e in events[:MAX_EVENTS_IN_PAYLOAD]],
            "more_events": more + max(len(events) - MAX_EVENTS_IN_PAYLOAD, 0),
        },
    })
