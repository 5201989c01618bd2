"""The demo's vendor: a BigQuery table (in the local BigQuery emulator) that another
party loads, which Freshet observes (`observe: {bigquery_table: ...}` in
infra/demo/pipeline.yaml) rather than loads.

The vendor loads `vendor.orders` every 3 minutes, except that in every 15 minutes of
the clock it loads at :00, :03 and :06 only, then nothing until the next :00 (a 9
minute gap). The demo's consumer of it needs data under 7 minutes old, so for a couple
of minutes each cycle the observed table is late and its banner turns, then heals at
the next load (which also triggers the job waiting for the vendor's data).

Each load is `CREATE OR REPLACE TABLE ... AS SELECT` (DDL): bqemulator moves a table's
lastModifiedTime on DDL, not on DML (docs/engines.md).
"""

import logging
import threading
from datetime import UTC, datetime

log = logging.getLogger(__name__)

DATASET, TABLE = "vendor", "orders"
ROLLUP_DATASET, ROLLUP_TABLE = "sales", "orders_rollup"
CYCLE_MIN = 15
LOAD_MINUTES = (0, 3, 6)  # of each cycle: a 9 minute gap follows


def loads_at(now: datetime) -> bool:
    """Whether the vendor loads in the minute of `now`."""
    return now.minute % CYCLE_MIN in LOAD_MINUTES


class Vendor:
    """Loads the vendor's table on its schedule, in a thread, until stopped."""

    def __init__(self, client, clock=lambda: datetime.now(UTC)):
        self.client = client
        self.clock = clock
        self.loads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-vendor", daemon=True)
        self._loaded_minute: datetime | None = None

    def start(self) -> "Vendor":
        self.client.create_dataset(DATASET, exists_ok=True)
        self.load()  # the table exists (and has data) from the start
        # Where the demo's orders-rollup (a bigquery_query job) writes.
        self.client.create_dataset(ROLLUP_DATASET, exists_ok=True)
        self.client.query(f"CREATE TABLE IF NOT EXISTS {ROLLUP_DATASET}.{ROLLUP_TABLE} "
                          "(slot TIMESTAMP, batches INT64)").result()
        self._thread.start()
        return self

    def load(self) -> None:
        now = self.clock()
        self.client.query(
            f"CREATE OR REPLACE TABLE {DATASET}.{TABLE} AS "
            f"SELECT {self.loads + 1} AS batch, TIMESTAMP '{now:%Y-%m-%d %H:%M:%S}+00' "
            "AS loaded_at").result()
        self.loads += 1
        self._loaded_minute = now.replace(second=0, microsecond=0)

    def _run(self) -> None:
        while not self._stop.wait(10):
            now = self.clock()
            minute = now.replace(second=0, microsecond=0)
            if loads_at(now) and minute != self._loaded_minute:
                try:
                    self.load()
                except Exception:  # the emulator is going down with the demo
                    log.exception("the demo vendor could not load its table")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=15)
