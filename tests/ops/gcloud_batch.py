"""Run many gcloud commands in ONE gcloud process: the real CLI (calliope), loaded once.

    SDK_PYTHON gcloud_batch.py SDK_LIB < [["functions", "deploy", ...], ...]  > results

Each command goes through `CreateCLI([]).Execute(argv)`, exactly what `gcloud ARGV`
runs after start-up, so usage errors exit 2 and a parsed command that needs an
account stops with "You do not currently have an active account selected" (exit 1),
as it would alone; starting gcloud once instead of 70 times saves ~2 s of CPU each.
Run by tests/ops/test_deploy_commands.py with the SDK's own Python.
"""

import io
import json
import sys

sys.path.insert(0, sys.argv[1])
import gcloud  # noqa: E402  (the SDK's lib/gcloud.py: its own path set-up)

sys.path = gcloud.reorder_sys_path(sys.path)
gcloud._fix_google_module()
from googlecloudsdk import gcloud_main  # noqa: E402
from googlecloudsdk.core import log  # noqa: E402
from googlecloudsdk.core.credentials import creds_context_managers  # noqa: E402

cli = gcloud_main.CreateCLI([])
results = []
for argv in json.load(sys.stdin):
    err, real, code = io.StringIO(), sys.stderr, 0
    sys.stderr = err
    log.Reset(stdout=io.StringIO(), stderr=err)
    try:
        # As gcloud_main.main() does: impersonation and other credential providers.
        with creds_context_managers.CredentialProvidersManager(None):
            cli.Execute(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # noqa: BLE001  (reported as a failure of that command)
        code, _ = 99, err.write(f"{type(exc).__name__}: {exc}")
    finally:
        sys.stderr = real
    results.append({"returncode": code, "stderr": err.getvalue()[-4000:]})
json.dump(results, sys.stdout)
