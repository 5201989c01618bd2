"""A stand-in for `gcloud` (and, by its name, `firebase`, `freshet`, `node`, `npm`) that
answers like Google does while it is not ready yet: the database not found, the
indexes CREATING, the build refused for the build account's permissions, a function
DEPLOYING, index.html missing, each for the first N looks (scenario.json in
$STANDIN_DIR), then ready. Every call is appended to calls.jsonl there; what has been
created (database, functions with their digest label and state, the page) is kept in
state.json. Used by tests/ops/test_deploy_standin.py, which puts it on PATH.
"""

import json
import os
import sys
from pathlib import Path

DIR = Path(os.environ["STANDIN_DIR"])
BUILD_DENIED = ("ERROR: (gcloud.functions.deploy) OperationError: code=7, message=Could not "
                "build the function due to a missing permission on the build service "
                "account. If you didn't revoke that permission explicitly, this could be "
                "caused by a change in the organization policies.")


def load(name: str, default):
    path = DIR / name
    return json.loads(path.read_text()) if path.exists() else default


def bump(state: dict, key: str) -> int:
    state.setdefault("counts", {})
    state["counts"][key] = state["counts"].get(key, 0) + 1
    return state["counts"][key]


def flag(args: list[str], name: str) -> str | None:
    return next((a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")), None)


def gcloud(args: list[str], scenario: dict, state: dict) -> tuple[int, str, str]:
    if any(" ".join(args).startswith(prefix) for prefix in scenario.get("fail", ())):
        return 1, "", "ERROR: (gcloud) PERMISSION_DENIED: a refusal the deploy cannot wait out\n"
    if args[:3] == ["config", "get-value", "account"]:
        return 0, "ops@example.com\n", ""
    if args[:1] == ["version"]:
        return 0, json.dumps({"Google Cloud SDK": scenario.get("gcloud", "528.0.0")}), ""
    if args[:3] == ["billing", "projects", "describe"]:
        return 0, f"{scenario.get('billing', True)}\n", ""
    if args[:2] == ["projects", "get-iam-policy"]:
        if any(a.startswith("--filter=bindings.members=user:") for a in args):
            return 0, "\n".join(scenario.get("roles", ["roles/owner"])) + "\n", ""
        return 0, "", ""
    if args[:3] == ["alpha", "quotas", "info"]:
        return 0, json.dumps(scenario.get("quota", [])), ""
    if args[:3] == ["firestore", "databases", "create"]:
        state["database"] = True
        return 0, "", ""
    if args[:3] == ["firestore", "databases", "describe"]:
        if state.get("database") and bump(state, "database") > scenario.get("database", 0):
            return 0, "name: projects/p/databases/(default)\n", ""
        return 1, "", "ERROR: (gcloud.firestore.databases.describe) NOT_FOUND: not found\n"
    if args[:4] == ["firestore", "indexes", "composite", "list"]:
        n = scenario["index_count"]
        if bump(state, "indexes") > scenario.get("indexes", 0):
            return 0, "READY\n" * n, ""
        return 0, "READY\n" + "CREATING\n" * (n - 1), ""
    if args[:2] == ["functions", "describe"]:
        fn = state.get("functions", {}).get(args[2])
        if fn is None:
            return 1, "", f"ERROR: (gcloud.functions.describe) Function {args[2]} not found\n"
        if fn["state"] == "DEPLOYING" and bump(state, f"deploying-{args[2]}") > scenario.get(
                "deploying", 0):
            fn["state"] = "ACTIVE"
        return 0, f"{fn['label']}\t{fn['state']}\n", ""
    if args[:2] == ["functions", "deploy"]:
        if bump(state, "builds") <= scenario.get("build_iam", 0):
            return 1, "", BUILD_DENIED + "\n"
        labels = flag(args, "update-labels") or ""
        state.setdefault("functions", {})[args[2]] = {
            "label": labels.removeprefix("freshet-digest="), "state": "DEPLOYING"}
        return 0, "", ""
    if args[:3] == ["scheduler", "jobs", "run"]:
        state["published"] = True
        return 0, "", ""
    if args[:3] == ["storage", "objects", "describe"]:
        if state.get("published") and bump(state, "page") > scenario.get("page", 0):
            return 0, "index.html\n", ""
        return 1, "", "ERROR: (gcloud.storage.objects.describe) NotFoundError: 404\n"
    return 0, "", ""


def main() -> int:
    tool = Path(sys.argv[0]).name
    args = sys.argv[1:]
    with (DIR / "calls.jsonl").open("a") as log:
        log.write(json.dumps([tool, *args]) + "\n")
    scenario = load("scenario.json", {})
    if tool == "node":
        print(scenario.get("node", "v20.11.1"))
        return 0
    if tool == "npm":
        print("10.2.4")
        return 0
    if tool != "gcloud":  # firebase deploy, freshet apply: accepted
        return 0
    state = load("state.json", {})
    code, out, err = gcloud(args, scenario, state)
    (DIR / "state.json").write_text(json.dumps(state))
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code


if __name__ == "__main__":
    sys.exit(main())
