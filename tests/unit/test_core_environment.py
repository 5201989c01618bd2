"""Core does no I/O: it never reads the environment. The entry points read it once
(freshet.ops.deps, freshet.ops.cli) and hand it to `load_settings`, which has no default."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from freshet.core.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "functions" / "freshet" / "core"
MODULES = sorted(f"freshet.core.{p.stem}" for p in CORE.glob("*.py") if p.stem != "__init__")
# Values that would break, or show up in, settings read from this environment.
HOSTILE = {"FRESHET_AUTH": "bogus", "FRESHET_LOOKAHEAD_S": "soon",
           "GOOGLE_CLOUD_PROJECT": "from-the-environment", "FRESHET_DISPATCH_SHARDS": "0"}


def run_python(code: str, env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT / "functions", env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("extra", [{}, HOSTILE], ids=["empty", "hostile"])
def test_importing_core_and_building_settings_ignore_the_environment(extra):
    code = ("".join(f"import {m}\n" for m in MODULES)
            + "from freshet.core.settings import Settings, load_settings\n"
              "print(load_settings({}) == Settings(), load_settings({}).project)")
    assert run_python(code, {"PYTHONPATH": str(ROOT / "functions"), **extra}) == \
        "True demo-freshet"


def test_settings_come_only_from_the_mapping_given():
    with pytest.raises(TypeError):
        load_settings()  # type: ignore[call-arg]  (no default: the caller reads its env)
    given = load_settings({"FRESHET_LOOKAHEAD_S": "30", "FIRESTORE_EMULATOR_HOST": "h:1",
                           "FRESHET_AUTHOR": "ann", "USER": "ann1"})
    assert (given.lookahead_s, given.firestore_emulator_host) == (30, "h:1")
    assert (given.author, given.login_name) == ("ann", "ann1")
    assert load_settings({}, lookahead_s=5) == Settings(lookahead_s=5)


def test_no_core_module_imports_os_or_reads_an_environment_variable():
    for path in CORE.glob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert "os" not in names, path.name
        assert not any(isinstance(n, ast.Attribute) and n.attr in ("environ", "getenv")
                       for n in ast.walk(tree)), path.name
