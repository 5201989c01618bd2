"""What a process imports before it asks a Google service anything."""

import os
import subprocess
import sys

from tests.ops.helpers import ROOT

HEAVY = ("google.cloud.bigquery", "google.cloud.run_v2", "pyarrow", "numpy")


def test_the_cli_config_and_deploy_do_not_import_bigquerys_or_cloud_runs_clients():
    """gcp.bigquery and gcp.cloudrun import their clients on first use: the config's
    sync kinds import both adapters, and every CLI command and deploy step would pay
    0.7 s of imports for them."""
    code = ("import sys, freshet.ops.config, freshet.ops.cli, freshet_local.deploy\n"
            f"print(sorted(m for m in sys.modules if m.startswith({HEAVY!r})))")
    env = {**os.environ, "PYTHONPATH": f"{ROOT}/functions{os.pathsep}{ROOT}/infra"}
    found = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, check=True, timeout=60).stdout.strip()
    assert found == "[]"
