"""Pools: routing and the cheap per-release reset."""
from __future__ import annotations

from shared.db import Database


async def test_a_connection_released_inside_a_transaction_is_rolled_back(settings, db):
    database = await Database.connect(settings.with_(db_pool_min=1, db_pool_max=1))
    try:
        async with database.write.acquire() as conn:
            await conn.execute("BEGIN")
            await conn.execute("INSERT INTO users (email, password_hash) VALUES ('leak@example.com', 'x')")
        async with database.write.acquire() as conn:  # the same, single pooled connection
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM users") == 0
    finally:
        await database.close()


async def test_reads_go_round_robin_over_replicas_else_to_the_primary(settings):
    database = await Database.connect(settings.with_(db_pool_min=1, db_pool_max=1,
                                                     database_replica_urls=(settings.database_url,) * 2))
    try:
        assert database.read() is not database.write
        assert {id(database.read()), id(database.read())} == {id(p) for p in database.replicas}
    finally:
        await database.close()
    alone = await Database.connect(settings.with_(db_pool_min=1, db_pool_max=1))
    try:
        assert alone.read() is alone.write
    finally:
        await alone.close()
