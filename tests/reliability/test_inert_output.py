"""Hostile names, params and errors render inert: whatever text a sync's error, a job's
description or params, or a consumer's title holds, the page gains no element or
handler it would not have with plain text, the feed and badges stay well-formed XML,
status.json stays JSON, and the CLI writes no terminal control sequences."""

import json
import xml.etree.ElementTree as ET
from collections import Counter
from html.parser import HTMLParser

from hypothesis import given, settings
from hypothesis import strategies as st

from freshet.gcp.store import Store
from freshet.ops.cli import main
from freshet.status.changes import Memory, detect_changes, remember
from freshet.status.render import render_site
from tests.status.builders import MIN, NOW, H, catalog, consumer, job, model, requirement, synced
from tests.status.builders import run as make_run

FUZZ = settings(max_examples=50, deadline=None, derandomize=True)
PAYLOADS = st.sampled_from([
    '<script>alert(1)</script>', '"><img src=x onerror=alert(1)>', "'><svg onload=alert(1)>",
    "]]></summary><script>x</script>", "</title><script>x</script>", "javascript:alert(1)",
    "{{7*7}}{% raw %}", "&amp;&lt;&#x3C;", "\u202egnp.exe", "\x1b[31mred\x1b[0m\x07",
])
HOSTILE = st.one_of(PAYLOADS, st.text(min_size=1, max_size=60),
                    st.lists(PAYLOADS, min_size=2, max_size=3).map("".join))
# XML 1.0 cannot carry control characters at all: the renderer replaces them.
XML_TEXT = st.one_of(PAYLOADS.filter(lambda p: "\x1b" not in p),
                     st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1,
                             max_size=60))
KEY = "meta.ads"


def site(text: str) -> dict:
    return render_site(*hostile_model(text))


def hostile_model(text: str):
    evil = job(job_id="evil", description=text, last_run_status="failed", last_error=text,
               last_run_id="r1", params={"q": text, "token": "tok_secret"})
    ds = synced(KEY, 30 * H, last_failure_at=NOW - MIN, last_error=text, consecutive_failures=2)
    cat = catalog({KEY: ()}, [consumer("ads", text, requirement(KEY))])
    runs = [make_run("r1", "evil", status="failed", error=text, stuck=True)]
    before = model(jobs=[job(job_id="evil")], datasets=[synced(KEY, H)], cat=cat)
    after = model(jobs=[evil], datasets=[ds], runs=runs, cat=cat)
    memory = remember(before, Memory(exists=True), [])
    events = detect_changes(after, memory)
    return after, remember(after, memory, events).events


class Elements(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: Counter = Counter()
        self.handlers: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags[tag] += 1
        self.handlers |= {f"{tag}[{name}]" for name, _ in attrs if name.startswith("on")}


def elements(html: bytes) -> Elements:
    parser = Elements()
    parser.feed(html.decode())
    return parser


BASELINE = elements(site("plain words")["index.html"].data)


@FUZZ
@given(text=HOSTILE)
def test_hostile_text_adds_no_element_or_handler_to_the_page(text):
    page = elements(site(text)["index.html"].data)
    assert set(page.tags) <= set(BASELINE.tags), set(page.tags) - set(BASELINE.tags)
    assert page.tags["script"] == BASELINE.tags["script"]
    assert page.handlers <= BASELINE.handlers


@FUZZ
@given(text=XML_TEXT)
def test_hostile_text_keeps_the_feed_badges_and_json_well_formed(text):
    files = site(text)
    ET.fromstring(files["feed.xml"].data)
    for path, out in files.items():
        if path.endswith(".svg"):
            svg = ET.fromstring(out.data)
            assert not [e for e in svg.iter() if e.tag.endswith("script")]
    json.loads(files["status.json"].data)


@FUZZ
@given(text=HOSTILE)
def test_the_json_files_are_their_documents_made_printable_whatever_the_text(text):
    """status.json and each consumer's JSON are assembled from parts shared between
    them: the text is the one their whole document would print, and a consumer's key
    the one its whole document gives."""
    from freshet.core.text import printable_json
    from freshet.status.render import consumer_key, status_json

    after, events = hostile_model(text)
    files = render_site(after, events)
    assert files["status.json"].data == printable_json(status_json(after, events)).encode()
    (path,) = [p for p in files if p.startswith("consumers/") and p.endswith(".json")]
    doc = json.loads(files[path].data)
    assert printable_json(doc).encode() == files[path].data  # compact, printable
    if printable_json(text) == json.dumps(text, ensure_ascii=False):  # nothing replaced
        assert files[path].key == consumer_key(doc)


def test_control_characters_in_an_error_keep_the_feed_well_formed():
    ET.fromstring(site("\x1b[31mdisk full\x1b[0m\x07")["feed.xml"].data)


def test_the_cli_writes_no_terminal_control_sequences(db, capsys):
    store = Store(db)
    text = "\x1b]0;pwned\x07\x1b[2Jupstream said no"
    store.put_job(job(job_id="evil", description=text, last_run_status="failed",
                      last_error=text, last_run_id="r1"))
    store.put_many("runs", [("r1", make_run("r1", "evil", status="failed", error=text).to_doc())])
    assert main(["jobs", "list"]) == 0
    assert main(["jobs", "show", "evil"]) == 0
    out = capsys.readouterr().out
    assert "upstream said no" in out
    assert "\x1b" not in out and "\x07" not in out


# -- issue 12: links, reading order, chat markup -------------------------------------------

BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c\ufeff"
LINK_SCHEMES = st.sampled_from(["javascript", "JAVASCRIPT", "JaVaScRiPt", "data", "vbscript",
                                "http", "https", "file", ""])
LINKS = st.builds(lambda pad, scheme, sep, rest: f"{pad}{scheme}{sep}{rest}",
                  st.sampled_from(["", " ", "\t", "\n", "\x01", "\u202e", "\ufeff"]),
                  LINK_SCHEMES, st.sampled_from([":", "://", "\t:", ""]),
                  st.text(alphabet="ab/.:?#=&()<>\"'", max_size=15))


def linked_site(url: str, text: str = "x"):
    from freshet.core.catalog import Consumer

    cat = catalog({KEY: ()}, [Consumer("ads", text, url=url, requires=(requirement(KEY),))])
    return render_site(model(cat=cat, datasets=[synced(KEY, H)], site_url=url), [])


class Links(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.hrefs += [value for name, value in attrs if name in ("href", "src", "action")]


@FUZZ
@given(url=LINKS)
def test_no_link_on_the_page_or_in_the_feed_leads_anywhere_but_http_or_the_page(url):
    from freshet.core.text import link_scheme

    files = linked_site(url)
    links = Links()
    links.feed(files["index.html"].data.decode())
    feed = ET.fromstring(files["feed.xml"].data)
    hrefs = links.hrefs + [e.get("href") for e in feed.iter("{http://www.w3.org/2005/Atom}link")]
    for href in hrefs:
        assert link_scheme(href) in ("", "http", "https"), href
    doc = json.loads(files["status.json"].data)
    for value in (doc["site_url"], doc["consumers"][0]["url"]):
        assert link_scheme(value) in ("", "http", "https"), value


@FUZZ
@given(text=st.text(alphabet=BIDI + "abc.exe<>&", min_size=1, max_size=30))
def test_no_bidi_control_or_bom_reaches_the_page_feed_badges_or_json(text):
    for path, out in site(text).items():
        if path == "status.schema.json":
            continue
        shown = out.data.decode()
        assert not set(shown) & set(BIDI), path
    payload = chat(text)
    assert not set(payload["text"]) & set(BIDI)


def chat(text: str) -> dict:
    from freshet.status.notify import payload_for

    before = model(jobs=[job(job_id="evil", last_run_status="succeeded")])
    after = model(jobs=[job(job_id="evil", last_run_status="failed", last_error=text)])
    events = detect_changes(after, remember(before, Memory(exists=True), []))
    return payload_for(events, after)


CHAT = st.one_of(st.sampled_from(["<!channel>", "<!here>", "<!everyone>", "<@U123>",
                                  "<#C1|x>", "<https://evil.example|Click>", "&", "`", "```"]),
                 st.text(alphabet="<>!@#|&`*_~:/. abc\n", max_size=40))


@FUZZ
@given(parts=st.lists(CHAT, min_size=1, max_size=4))
def test_a_sync_error_never_becomes_chat_markup(parts):
    text = chat("".join(parts))["text"]
    assert "<" not in text and ">" not in text
    assert all(line.count("`") % 2 == 0 for line in text.splitlines())
    rest = text
    for entity in ("&amp;", "&lt;", "&gt;"):
        rest = rest.replace(entity, "")
    assert "&" not in rest
