"""Sync kinds and route types are one package each, and the registry imports them
without their importing it back (issue 19, items 4 and 5)."""

import ast
from pathlib import Path

import pytest

from freshet.core.errors import ValidationError
from freshet.loop import registry
from freshet.loop.syncs.base import CheckContext, Kind

PACKAGE = Path(__file__).resolve().parents[2] / "functions" / "freshet"


def imports_of(folder: Path) -> set[str]:
    found = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
    return found


def test_no_sync_kind_imports_the_registry_so_there_is_no_cycle():
    syncs = PACKAGE / "loop" / "syncs"
    assert not {m for m in imports_of(syncs) if m.startswith("freshet.loop.registry")}
    assert "freshet.loop.syncs.base" in imports_of(syncs / "http_fetch")


def test_each_builtin_kind_is_a_package_with_its_kind_and_is_registered():
    folders = sorted(p.name for p in (PACKAGE / "loop" / "syncs").iterdir()
                     if (p / "sync.py").exists())
    assert folders == sorted(k.name for k in registry.BUILTIN) == [
        "bigquery_load", "bigquery_query", "cloud_run_job", "http_fetch", "noop"]
    # the engine kinds read their work's end (freshet.loop.poll); the others have none
    assert {k.name for k in registry.BUILTIN if k.finish} == {
        "bigquery_load", "bigquery_query", "cloud_run_job"}
    assert all(isinstance(k, Kind) and registry.kind_for(k.name) is k
               for k in registry.BUILTIN)
    assert registry.known_kinds() == sorted(registry.known_kinds())


def test_each_route_type_is_a_package_and_listed():
    from freshet.core.alerts import RouteType
    from freshet.status.notify import ROUTE_TYPES

    routes = PACKAGE / "status" / "routes"
    folders = sorted(p.name for p in routes.iterdir() if (p / "__init__.py").exists())
    assert folders == sorted(ROUTE_TYPES) == sorted(RouteType)
    # Senders post through base.post (the guarded client), never requests directly.
    for name in folders:
        assert "requests" not in imports_of(routes / name), name


def test_a_custom_kind_can_bring_its_own_check():
    def check(params, context):
        if "table" not in params:
            raise ValidationError("params.table", "is required")

    registry.sync("test_with_check", check=check)(lambda ctx: None)
    try:
        with pytest.raises(ValidationError) as caught:
            registry.check_params("test_with_check", {}, CheckContext(), "jobs[4]")
        assert caught.value.field == "jobs[4].params.table"
        registry.check_params("test_with_check", {"table": "t"}, CheckContext(), "jobs[4]")
    finally:
        registry.unregister("test_with_check")
    assert registry.handler_for("test_with_check") is None


def test_an_unknown_kind_is_named_with_the_known_ones():
    with pytest.raises(ValidationError, match="unknown kind 'teleport'") as refused:
        registry.check_params("teleport", {}, CheckContext(), "jobs[0]")
    # every built-in kind is named (other tests in the process may have added theirs)
    known = str(refused.value).split("(known: ")[1].split(";")[0].split(", ")
    assert {"bigquery_load", "bigquery_query", "cloud_run_job", "http_fetch",
            "noop"} <= set(known) and known == sorted(known)


def test_builtin_kinds_cannot_be_unregistered_by_accident():
    registry.unregister("noop")
    assert registry.handler_for("noop") is not None
