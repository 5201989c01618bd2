"""The engines' local stand-ins start and stop like the other emulators: a free port
announced as READY host:port, their own process group, nothing left behind on stop,
and (BigQuery) no download: DuckDB's spatial extension comes from the wheel."""

import os
import sys
import time

from freshet_local import emulators


def gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_bigquery_starts_offline_on_a_free_port_and_stops_with_its_group():
    emu = emulators.start_bigquery()
    try:
        assert emu.owned and emulators._reachable(emu.address)
        assert emu.env() == {"BIGQUERY_EMULATOR_HOST": emu.address}
        placed = list((emulators.BIGQUERY_DIR / "home" / ".duckdb" / "extensions")
                      .glob("v*/*/spatial.duckdb_extension"))
        assert placed and placed[0].stat().st_size > 1_000_000
        assert emu.client().query("SELECT 1 AS one").result().total_rows == 1
    finally:
        emu.stop()
    assert gone(emu.pid) and not emulators._reachable(emu.address)


def test_the_cloud_run_stand_in_kills_running_tasks_when_it_stops(tmp_path):
    marker = tmp_path / "pid"
    job = "projects/demo-freshet/locations/europe-west1/jobs/sleeper"
    code = (f"import os, time; open({str(marker)!r}, 'w').write(str(os.getpid())); "
            "time.sleep(300)")
    emu = emulators.start_cloud_run({job: {"command": [sys.executable, "-c", code]}})
    try:
        import urllib.request

        req = urllib.request.Request(f"{emu.url}/v2/{job}:run", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200
        deadline = time.monotonic() + 10
        while not marker.exists() or not marker.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        task = int(marker.read_text())
    finally:
        emu.stop()
    assert gone(task) and gone(emu.pid)
