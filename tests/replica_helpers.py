"""Driving the embedded streaming replica from tests."""
from __future__ import annotations

import asyncio

import asyncpg

from launcher.devstack import PostgresServer


async def set_apply_delay(server: PostgresServer, delay: str) -> None:
    """recovery_min_apply_delay: the replica receives WAL at once but applies each commit this late."""
    conn = await asyncpg.connect(server.dsn("postgres"))
    try:
        await conn.execute(f"ALTER SYSTEM SET recovery_min_apply_delay = '{delay}'")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


async def wait_caught_up(server: PostgresServer, primary_dsn: str, timeout: float = 60.0) -> None:
    """Until the replica has replayed every record inserted so far (the position read-your-writes records)."""
    primary, standby = await asyncpg.connect(primary_dsn), await asyncpg.connect(server.dsn("postgres"))
    try:
        target = await primary.fetchval("SELECT pg_current_wal_insert_lsn()")
        deadline = asyncio.get_running_loop().time() + timeout
        while await standby.fetchval("SELECT pg_last_wal_replay_lsn()") < target:
            assert asyncio.get_running_loop().time() < deadline, "the replica did not catch up"
            await asyncio.sleep(0.05)
    finally:
        await primary.close()
        await standby.close()
