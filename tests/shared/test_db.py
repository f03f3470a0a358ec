"""Pools: routing and the cheap per-release reset."""
from __future__ import annotations

from shared.db.database import Database


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


async def test_without_replicas_every_read_is_on_the_primary(settings, make_user):
    database = await Database.connect(settings.with_(db_pool_min=1, db_pool_max=1))
    try:
        assert database.replicas == []
        assert await database.read_as(1, lambda conn: conn.fetchval("SELECT pg_is_in_recovery()")) is False
        await database.wrote(1)  # nothing to remember without replicas
    finally:
        await database.close()
