"""What each read replica has replayed, kept fresh in the background, and which of them may serve a read.

One task per replica polls it every POLL_INTERVAL: its replay position (``pg_last_wal_replay_lsn()``)
and how far behind the primary it is. A read for a user may use a replica only if the replica has
replayed that user's last write (see shared/db/database.py) and is behind by at most REPLICA_MAX_LAG_SECONDS.
Requests never query a replica's position themselves: they read this module's snapshot.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from prometheus_client import Counter

from shared.observability import metrics

logger = logging.getLogger("app.db.replicas")

POLL_INTERVAL = 0.25
POLL_TIMEOUT = 1.0
# A snapshot older than this means the poller is stuck (replica hanging): do not trust it.
STALE_AFTER = POLL_INTERVAL * 8
# After a failed query a replica sits out at least this long, even if the next poll succeeds: a replica
# that lacks a table just created by a migration answers polls fine but fails every query until it replays.
BENCH_SECONDS = 1.0

PRIMARY_LSN = "SELECT (pg_current_wal_lsn() - '0/0')::bigint"
# Lag is the age of the last transaction replayed, but only while the replica is behind: an idle primary
# writes nothing new, and a replica that has everything is not "late" however old that transaction is.
REPLICA_POSITION = """
SELECT pg_is_in_recovery() AS in_recovery, (pg_last_wal_replay_lsn() - '0/0')::bigint AS replay_lsn,
       greatest(0, extract(epoch FROM now() - pg_last_xact_replay_timestamp()))::float8 AS replayed_age
"""

# The lag gauge is metrics.REPLICA_LAG (set by the poller below, the one place lag is measured).
READS = Counter("taskdeck_db_reads_total", "Routed reads by the database that answered", ["target"])
REPLICA_FALLBACKS = Counter("taskdeck_db_replica_fallbacks_total",
                            "Reads a replica failed and the primary answered instead", ["replica"])


def lsn_text(lsn: int) -> str:
    """The usual X/Y spelling of a WAL position, for people reading /ready."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


@dataclass
class Replica:
    name: str  # replica-0, replica-1, ...: /ready and metrics never carry host names
    pool: asyncpg.Pool
    state: str = "unknown"  # up | lagging | down | unknown
    replay_lsn: int = 0
    lag: float | None = None
    checked_at: float = 0.0
    benched_until: float = 0.0
    error: str | None = None

    def usable(self, now: float) -> bool:
        """Up, freshly polled and not benched; whether it has a given user's write is ``choose``'s part."""
        return self.state == "up" and now - self.checked_at < STALE_AFTER and now >= self.benched_until

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "status": self.state,
                               "lag_seconds": None if self.lag is None else round(self.lag, 3)}
        if self.state in ("up", "lagging"):
            out["replay_lsn"] = lsn_text(self.replay_lsn)
        if self.error:
            out["error"] = self.error
        return out


@dataclass
class ReplicaSet:
    primary: asyncpg.Pool
    replicas: list[Replica]
    max_lag: float
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _turn: itertools.count = field(default_factory=itertools.count)

    async def start(self) -> None:
        """Poll every replica once (so the first request already knows), then keep polling in the background."""
        await asyncio.gather(*(self._poll(replica) for replica in self.replicas))
        self._tasks = [asyncio.create_task(self._poll_forever(r), name=f"poll-{r.name}") for r in self.replicas]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def candidates(self) -> list[Replica]:
        """Replicas that are up and within the lag ceiling, whatever any one user needs."""
        now = time.monotonic()
        return [r for r in self.replicas if r.usable(now)]

    def choose(self, candidates: list[Replica], needed_lsn: int) -> Replica | None:
        """Round-robin over the candidates that have replayed ``needed_lsn``."""
        current = [r for r in candidates if r.replay_lsn >= needed_lsn]
        return current[next(self._turn) % len(current)] if current else None

    def failed(self, replica: Replica, exc: BaseException) -> None:
        """A query failed on ``replica``: skip it from now on until a poll after BENCH_SECONDS says it is back."""
        if replica.state != "down":
            logger.warning("%s failed a query (%s); reads go elsewhere until it answers again",
                           replica.name, type(exc).__name__)
        replica.state, replica.error = "down", type(exc).__name__
        replica.benched_until = time.monotonic() + BENCH_SECONDS
        REPLICA_FALLBACKS.labels(replica.name).inc()
        metrics.REPLICA_LAG.labels(replica.name).set(-1)

    async def _poll_forever(self, replica: Replica) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            await self._poll(replica)

    async def _poll(self, replica: Replica) -> None:
        try:
            async with asyncio.timeout(POLL_TIMEOUT):
                # Primary first: a replica at or past this position is fully caught up at this moment.
                primary_lsn = await self.primary.fetchval(PRIMARY_LSN)
                row = await replica.pool.fetchrow(REPLICA_POSITION)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure (refused, timeout, primary down) means: do not use it
            self._mark(replica, "down", None, error=type(exc).__name__)
            return
        if not row["in_recovery"]:
            # Promoted (a failover swapped the roles), or pointed at a primary by mistake: not a replica we can
            # reason about. Reconnect on the next poll: a DSN listing every node with target_session_attrs=standby
            # then finds whichever node is the standby now (the old primary, once it has rejoined).
            self._mark(replica, "down", None, error="not in recovery")
            await replica.pool.expire_connections()
            return
        replica.replay_lsn = int(row["replay_lsn"] or 0)
        age = row["replayed_age"]  # None until the replica has replayed a transaction since it started
        lag = 0.0 if replica.replay_lsn >= primary_lsn else (None if age is None else float(age))
        self._mark(replica, "up" if lag is not None and lag <= self.max_lag else "lagging", lag)

    def _mark(self, replica: Replica, state: str, lag: float | None, error: str | None = None) -> None:
        if state != replica.state and replica.state != "unknown":
            logger.info("%s is now %s (lag %s s%s)", replica.name, state, lag, f", {error}" if error else "")
        replica.state, replica.lag, replica.error = state, lag, error
        replica.checked_at = time.monotonic()
        metrics.REPLICA_LAG.labels(replica.name).set(-1 if lag is None else lag)
