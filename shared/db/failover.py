"""What a database error means while the primary may be failing over, decided in one place; and a watch
on the primary that counts failovers and the time without one.

During a failover (docs/ha.md) asyncpg raises, depending on the moment: a connection closed mid-query
(ConnectionDoesNotExistError), a refused or reset socket, "the database system is shutting down"
(57P01-57P03), no listed host being read-write (TargetServerAttributeNotMatched, or the first host's
socket error), a write reaching a demoted server (25006, read-only transaction), and asyncpg's own state
errors on a dying connection (InternalClientError, InterfaceError). ``classify`` names them; the web
tier (web/middlewares.py) retries a request once when that is safe and answers 503 otherwise.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import time
from typing import Any

import asyncpg

from shared.observability import metrics

logger = logging.getLogger("app.db.failover")

PRIMARY_GONE = "primary-gone"  # the server went away or is not the primary: another may take over
READ_ONLY = "read-only"  # we reached a server that is (now) a standby
TIMEOUT = "timeout"  # no answer within DB_COMMAND_TIMEOUT: a hung or partitioned peer
BUSY = "busy"  # too many connections right now

_GONE_STATES = frozenset({"57P01", "57P02", "57P03"})  # admin/crash shutdown, cannot connect now
_NETWORK_ERRNOS = frozenset({errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE,
                             errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENOTCONN})


def classify(exc: BaseException) -> str | None:
    """PRIMARY_GONE, READ_ONLY, TIMEOUT or BUSY for a failure of the database connection; None otherwise
    (a bad query, a constraint, and anything that is not the database's doing)."""
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        if state == "25006":
            return READ_ONLY
        if state in _GONE_STATES or state.startswith("08"):
            return PRIMARY_GONE
        return BUSY if state == "53300" else None
    if isinstance(exc, (asyncpg.InterfaceError, asyncpg.TargetServerAttributeNotMatched)):
        return PRIMARY_GONE
    if isinstance(exc, asyncpg.InternalClientError):
        # "another operation is in progress" while rolling back on a connection that just died: the death
        # decides. Without such a cause it is a bug of ours, and no failover will fix it.
        cause = exc.__cause__ or exc.__context__
        return classify(cause) if cause is not None else None
    if isinstance(exc, TimeoutError):  # asyncio.TimeoutError is TimeoutError since 3.11
        return TIMEOUT
    if isinstance(exc, ConnectionError) or (isinstance(exc, OSError) and exc.errno in _NETWORK_ERRNOS):
        return PRIMARY_GONE
    return None


# Off on a primary; on on a standby, and in a session a read-only default_transaction_read_only started.
WRITABLE = "SELECT current_setting('transaction_read_only') = 'off'"


async def wait_for_primary(pool: asyncpg.Pool, budget: float) -> bool:
    """After a PRIMARY_GONE/READ_ONLY error: drop the pool's connections (they may point at a demoted or
    dead server) and wait up to ``budget`` seconds for a writable primary; True once one answers."""
    await pool.expire_connections()
    deadline = time.monotonic() + budget
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        try:
            async with asyncio.timeout(min(remaining, 2.0)):
                async with pool.acquire() as conn:
                    if await conn.fetchval(WRITABLE):
                        return True
                    await pool.expire_connections()  # a standby answered: connect again, elsewhere
        except Exception as exc:  # noqa: BLE001 - anything else is classified by the caller's retry
            if classify(exc) is None:
                raise
        await asyncio.sleep(min(0.25, max(0.0, deadline - time.monotonic())))


# The timeline is the first 8 hex digits of a WAL file name: a promotion starts a new one.
PRIMARY_IDENTITY = """
SELECT inet_server_port() AS port, pg_is_in_recovery() AS standby,
       substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) AS timeline
"""
# pg_current_wal_lsn() fails on a standby: ask it the cheaper way first.
IS_STANDBY = "SELECT pg_is_in_recovery()"


class PrimaryWatch:
    """Sampled every few seconds (web and worker): is a writable primary there, and is it still the same one?

    Counts ``taskdeck_db_failovers_total`` when the primary's server or timeline changes and adds the
    seconds without a writable primary to ``taskdeck_db_no_primary_seconds_total``.
    """

    def __init__(self, pool: asyncpg.Pool, timeout: float = 2.0) -> None:
        self.pool, self.timeout = pool, timeout
        self.identity: tuple[Any, ...] | None = None
        self._down_since: float | None = None
        self._counted_until: float | None = None

    async def check(self) -> bool:
        try:
            async with asyncio.timeout(self.timeout):
                async with self.pool.acquire() as conn:
                    standby = await conn.fetchval(IS_STANDBY)
                    row = None if standby else await conn.fetchrow(PRIMARY_IDENTITY)
        except Exception as exc:  # noqa: BLE001 - any failure means: no primary right now
            self._down(exc)
            return False
        if row is None:  # our connection reached a standby (it was demoted): reconnect next time
            await self.pool.expire_connections()
            self._down(None)
            return False
        identity = (row["port"], row["timeline"])
        if self.identity is not None and identity != self.identity:
            metrics.DB_FAILOVERS.inc()
            logger.warning("the primary changed (server port %s, timeline %s)", *identity)
        self.identity = identity
        self._up()
        return True

    def _down(self, exc: BaseException | None) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = self._counted_until = now
            logger.warning("no writable primary (%s)", type(exc).__name__ if exc else "reached a standby")
        metrics.DB_NO_PRIMARY_SECONDS.inc(now - (self._counted_until or now))
        self._counted_until = now
        metrics.DB_PRIMARY_UP.set(0)

    def _up(self) -> None:
        if self._down_since is not None:
            now = time.monotonic()
            metrics.DB_NO_PRIMARY_SECONDS.inc(now - (self._counted_until or now))
            logger.info("a writable primary answers again after %.1f s", now - self._down_since)
            self._down_since = self._counted_until = None
        metrics.DB_PRIMARY_UP.set(1)
