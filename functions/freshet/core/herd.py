"""Planning the top-of-the-hour herd: claim shards and dispatch shards, as pure functions.

When more jobs are due than one tick should claim by itself (thousands scheduled at
`0 * * * *`), the tick claims none of them: it sends one named task per claim shard
to the claim handler (scheduler_tick called with a ShardTask body), and the shards are
claimed in parallel function instances. Every job belongs to one of CLAIM_SHARDS
shards, by a hash of its id stored on the job (`claim_shard`, indexed with `status`
and `next_run_at`), so a shard handler finds its due jobs with one query. Claims are
compare-and-set, so a shard delivered twice, or two shards racing the tick, create
each run once.

Dispatch is spread the same way: a pool (a Cloud Tasks queue) with `dispatch_shards`
> 1 is that many queues, and each job's runs go to the one its id hashes to, so the
pool dispatches up to 500 tasks/s per queue instead of 500 in all.
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime

from freshet.core.errors import ValidationError
from freshet.core.timeutil import isoformat, parse_datetime
from freshet.core.values import check_int

# Fixed, like a partition count: changing it would need every job's stored shard
# rewritten. 32 handlers of ~300 claims each take a 10,000-job herd; see docs/scale.md
# for how the count, the lookahead and the cloud's limits fit together.
CLAIM_SHARDS = 32
MAX_DISPATCH_SHARDS = 100  # a region holds at most 1,000 queues


def _bucket(key: str, count: int) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % count


def claim_shard(job_id: str) -> int:
    """The claim shard a job belongs to, for ever (stored on the job)."""
    return _bucket(f"claim|{job_id}", CLAIM_SHARDS)


def dispatch_queue(pool: str, shards: int, job_id: str) -> str:
    """The queue of the pool that a job's runs are sent to."""
    return queue_names(pool, shards)[_bucket(f"dispatch|{job_id}", shards) if shards > 1
                                       else 0]


def queue_names(pool: str, shards: int) -> list[str]:
    """The pool's queues: its own name first (a pool of one is just that queue)."""
    return [pool] + [f"{pool}-{k}" for k in range(1, shards)]


def claims_queue(pool: str) -> str:
    """The queue claim shards travel on: beside the pool, so a herd's claims never wait
    behind its runs (nor count against the pool's concurrency)."""
    return f"{pool}-claims"


def shard_share(total: float, shards: int) -> float:
    """A pool's limit split over its queues (the pool's concurrency is their sum)."""
    return total / shards


@dataclass(frozen=True)
class ShardTask:
    """What the tick sends the claim handler: claim the jobs of `shard` due by `until`.
    `seq` counts continuations: a handler that runs out of time or batch sends the next."""

    shard: int
    until: datetime
    seq: int = 0

    def to_json(self) -> dict:
        return {"claim_shard": self.shard, "until": isoformat(self.until), "seq": self.seq}

    @classmethod
    def from_json(cls, body: dict) -> "ShardTask":
        shard, seq = body.get("claim_shard"), body.get("seq", 0)
        check_int(shard, "claim_shard", 0, CLAIM_SHARDS - 1)
        check_int(seq, "seq", 0, 9999)
        unknown = set(body) - {"claim_shard", "until", "seq"}
        if unknown:
            raise ValidationError(sorted(unknown)[0], "unknown field")
        return cls(shard, parse_datetime(body.get("until"), "until"), seq)

    def task_id(self) -> str:
        """Deterministic: a tick retried in the same minute sends the same names, which
        Cloud Tasks refuses as duplicates (and the claims are compare-and-set anyway)."""
        window = self.until.replace(second=0, microsecond=0)
        key = f"{window:%Y%m%dT%H%M}|{self.shard}|{self.seq}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        return f"{digest}-claim-{window:%Y%m%dT%H%M}-s{self.shard}-q{self.seq}"

    def next(self) -> "ShardTask":
        return ShardTask(self.shard, self.until, self.seq + 1)


def fan_out(due_sampled: int, above: int) -> bool:
    """Fan out when the tick's sample of due jobs holds more than `above` (it asks for
    `above` + 1 of them: the tick never reads the whole herd)."""
    return above > 0 and due_sampled > above


def shard_tasks(until: datetime) -> list[ShardTask]:
    return [ShardTask(shard, until) for shard in range(CLAIM_SHARDS)]



# -- how long a herd takes to start, from the config ----------------------------------

# Cloud Tasks dispatches at most 500 tasks/s from one queue; Google asks that traffic to a
# target start at 500/s and grow by 50 % every 5 minutes ("500/50/5", Cloud Tasks' "Manage
# scaling risks"); the runs collection takes about 500 writes/s (its timestamps are
# indexed: Firestore's "sharded timestamps"). See docs/scale.md for the sources.
QUEUE_MAX_RATE = 500.0
RAMP_START_RATE, RAMP_GROWTH, RAMP_STEP_S = 500.0, 1.5, 300.0
RUNS_WRITE_CEILING = 500.0


@dataclass(frozen=True)
class HerdStart:
    """When a herd of `jobs` due at one slot has started: claimed within the lookahead
    (or late), then dispatched at `rate` runs a second, bound by `bound`."""

    jobs: int
    claim_s: float  # claiming it, before the slot
    late_s: float  # how far past the slot the claiming ends (0 when it fits the lookahead)
    rate: float  # runs started per second once dispatch is under way
    bound: str  # what sets that rate
    start_s: float  # from the slot until the last of its runs has started
    lookahead_s: float

    @property
    def fits(self) -> bool:
        return self.start_s <= self.lookahead_s


def dispatch_rates(queue_rates: list[float], concurrent: float, call_s: float
                   ) -> dict[str, float]:
    """Each limit on how many runs a second a pool starts: its queues' rates (each at
    most 500/s), the calls in flight (queues' concurrency and run_task's instances x
    concurrency, each call lasting `call_s`), and the runs' write ceiling."""
    return {
        "the queues' dispatch rate": sum(min(QUEUE_MAX_RATE, r) for r in queue_rates),
        "calls in flight (queue concurrency, run_task instances)":
            concurrent / max(call_s, 1e-3),
        "Firestore's ~500 writes/s on the runs": RUNS_WRITE_CEILING,
    }


def ramped_seconds(jobs: int, rate: float) -> float:
    """Seconds to dispatch `jobs` at `rate`, with traffic to a cold target following
    500/50/5: at most 500/s for 5 minutes, then 50 % more every 5 minutes."""
    done = elapsed = 0.0
    step = 0
    while True:
        cap = min(rate, RAMP_START_RATE * RAMP_GROWTH ** step)
        if done + cap * RAMP_STEP_S >= jobs:
            return elapsed + (jobs - done) / cap
        done, elapsed, step = done + cap * RAMP_STEP_S, elapsed + RAMP_STEP_S, step + 1


def herd_start(jobs: int, *, queue_rates: list[float], queue_concurrency: int,
               instances: int, concurrency: int, call_s: float, lookahead_s: float,
               claim_latency_s: float = 0.05, cold_start_s: float = 3.0) -> HerdStart:
    """The modelled start of a herd. Claiming: CLAIM_SHARDS handlers at
    `claim_latency_s` a claim (a commit and a CreateTask; Google publishes no figure,
    50 ms is the central case of docs/scale.md), never faster than the runs' writes.
    Starting: the tightest of `dispatch_rates`, ramped, plus one cold start."""
    claim_s = max(jobs * claim_latency_s / CLAIM_SHARDS, jobs / RUNS_WRITE_CEILING)
    late_s = max(0.0, claim_s - lookahead_s)
    rates = dispatch_rates(queue_rates, min(queue_concurrency, instances * concurrency),
                           call_s)
    bound = min(rates, key=rates.get)
    start_s = late_s + cold_start_s + ramped_seconds(jobs, rates[bound])
    return HerdStart(jobs, claim_s, late_s, rates[bound], bound, start_s, lookahead_s)
