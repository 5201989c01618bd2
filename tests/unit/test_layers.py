"""The layers the package shows (docs/architecture.md) are the ones the imports keep.

`make test` runs import-linter on the contracts in pyproject.toml; these check what it
cannot express: what importing core loads at run time, who imports google.cloud, and
what the entry points import."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "functions" / "freshet"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def test_importing_every_core_module_loads_no_google_module():
    modules = sorted(f"freshet.core.{p.stem}" for p in (PACKAGE / "core").glob("*.py")
                     if p.stem != "__init__")
    # `google` and `google.cloud` may be namespace packages that site's .pth files set up
    # at start-up: what counts is what importing core adds.
    code = ("import sys\nbefore = set(sys.modules)\n" + "".join(f"import {m}\n" for m in modules)
            + "print(sorted(m for m in set(sys.modules) - before if m.startswith("
              "('google', 'flask', 'grpc', 'werkzeug'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT / "functions", check=True)
    assert out.stdout.strip() == "[]", out.stdout
    assert len(modules) >= 10  # models, schedules, freshness, runs, lifecycle, ...


def test_no_module_outside_the_adapters_imports_google_cloud():
    offenders = [str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py")
                 if "gcp" not in p.relative_to(PACKAGE).parts
                 and any(m == "google.cloud" or m.startswith("google.cloud.")
                         for m in imported_modules(p))]
    assert offenders == []


def test_the_entry_points_import_only_the_loop_the_operating_layer_and_the_status_page():
    allowed = ("functions_framework", "freshet.loop", "freshet.ops", "freshet.status")
    imports = imported_modules(ROOT / "functions" / "main.py")
    assert imports and all(m.startswith(allowed) for m in imports), imports


def test_each_layer_is_a_package_with_a_docstring():
    for layer in ("core", "gcp", "loop", "ops", "status"):
        init = PACKAGE / layer / "__init__.py"
        assert ast.get_docstring(ast.parse(init.read_text())), layer


def test_no_module_outside_the_adapters_imports_googles_exceptions():
    """Google's exceptions are translated at the adapters (freshet.gcp.errors): above them
    only Freshet's classes are caught (import-linter cannot name a subpackage of an
    external package, hence this check)."""
    offenders = [str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py")
                 if "gcp" not in p.relative_to(PACKAGE).parts
                 and any(m == "google.api_core" or m.startswith("google.api_core.")
                         for m in imported_modules(p))]
    assert offenders == []
