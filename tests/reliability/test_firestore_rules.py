"""infra/firestore.rules denies every client access.

Where it can be tested: the official Firestore emulator enforces rules, but it cannot
be downloaded on these machines, and the offline emulator the project uses
(@firestore-emulator/server) has no rules engine. So this is a documented check of
the rules file itself: a small parser of the rules language (comments, `match`
blocks, `allow` statements) asserts that the catch-all match covers every document,
that every `allow` grants only `if false`, and that reads and writes are both
named. The same checker is run on permissive variants to show it catches them.
When the official emulator is available, a client SDK test against it would add
the behavioural proof (a denied get and set)."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "infra" / "firestore.rules"
OPS = {"read", "write", "get", "list", "create", "update", "delete"}
_TOKEN = re.compile(r"match\s+(?P<path>\S+)\s*\{|allow\s+(?P<ops>[a-z,\s]+?)\s*"
                    r"(?::\s*if\s+(?P<cond>[^;]+))?;|(?P<close>\})|(?P<open>\{)")


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def parse(text: str) -> list[tuple[str, set[str], str]]:
    """[(full match path, operations, condition)] for every allow statement."""
    body = strip_comments(text)
    service = re.search(r"service\s+cloud\.firestore\s*\{", body)
    if service is None:
        raise ValueError("no `service cloud.firestore` block")
    stack: list[str | None] = []
    found = []
    for m in _TOKEN.finditer(body, service.end()):
        if m.group("path"):
            stack.append(m.group("path"))
        elif m.group("open"):
            stack.append(None)
        elif m.group("close"):
            if not stack:
                break  # the end of the service block
            stack.pop()
        elif m.group("ops"):
            ops = {o.strip() for o in m.group("ops").split(",") if o.strip()}
            path = "".join(p for p in stack if p)
            found.append((path, ops, (m.group("cond") or "true").strip()))
    return found


def violations(text: str) -> list[str]:
    statements = parse(text)
    problems = [f"{path}: allow {sorted(ops)} if {cond}" for path, ops, cond in statements
                if cond != "false"]
    problems += [f"{path}: unknown operation {sorted(ops - OPS)}" for path, ops, _ in statements
                 if ops - OPS]
    catch_all = [(p, ops) for p, ops, c in statements
                 if p == "/databases/{database}/documents/{document=**}" and c == "false"]
    named = set().union(*(ops for _, ops in catch_all)) if catch_all else set()
    if not {"read", "write"} <= named:
        problems.append("no catch-all match denying read and write on every document")
    if "rules_version = '2'" not in strip_comments(text):
        problems.append("rules_version '2' is required for recursive wildcards")
    return problems


def test_the_rules_deny_every_read_and_write_by_clients():
    assert violations(RULES.read_text()) == []


def test_firebase_json_deploys_this_rules_file():
    config = json.loads((ROOT / "firebase.json").read_text())
    assert (ROOT / config["firestore"]["rules"]).resolve() == RULES.resolve()


@pytest.mark.parametrize("change", [
    ("allow read, write: if false;", "allow read, write: if request.auth != null;"),
    ("allow read, write: if false;", "allow read: if false;"),
    ("allow read, write: if false;", "allow read, write;"),
    ("allow read, write: if false;",
     "allow read, write: if false;\n    }\n    match /jobs/{id} {\n      allow get: if true;"),
    ("match /{document=**}", "match /runs/{id}"),
])
def test_the_checker_catches_a_permissive_rule(change):
    old, new = change
    assert violations(RULES.read_text().replace(old, new))
