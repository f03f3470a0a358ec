"""Migrations: ordered, recorded, idempotent, safe when several hosts run them at once."""
from __future__ import annotations

import asyncio

import asyncpg
import pytest

from shared.db.migrate import discover, migrate


@pytest.fixture
async def scratch_dsn(stack):
    """A fresh, empty database per test."""
    name = f"scratch_{id(object())}"
    admin = await asyncpg.connect(stack.postgres.dsn("postgres"))
    await admin.execute(f'CREATE DATABASE "{name}"')
    yield stack.postgres.dsn(name)
    await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    await admin.close()


async def test_concurrent_runs_apply_each_migration_once(scratch_dsn):
    results = await asyncio.gather(*(migrate(scratch_dsn) for _ in range(3)))
    applied = sorted(name for result in results for name in result)
    assert applied == sorted(m.name for m in discover())
    conn = await asyncpg.connect(scratch_dsn)
    try:
        versions = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in versions] == [m.version for m in discover()]
    finally:
        await conn.close()
    assert await migrate(scratch_dsn) == []


async def test_a_failing_migration_rolls_back_alone(scratch_dsn, tmp_path):
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE ok (id int);")
    (tmp_path / "0002_broken.sql").write_text("CREATE TABLE half (id int); SELECT nope FROM nowhere;")
    with pytest.raises(asyncpg.PostgresError):
        await migrate(scratch_dsn, tmp_path)
    conn = await asyncpg.connect(scratch_dsn)
    try:
        assert await conn.fetchval("SELECT to_regclass('ok') IS NOT NULL")
        assert await conn.fetchval("SELECT to_regclass('half') IS NULL")
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 1
    finally:
        await conn.close()


def test_badly_named_files_are_refused(tmp_path):
    (tmp_path / "1_init.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError, match="0001_name.sql"):
        discover(tmp_path)
