"""Ordered SQL migrations, each in its own transaction, serialised across hosts by an advisory lock."""
from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

logger = logging.getLogger("app.migrate")

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "sql" / "migrations"
# Any fixed 64-bit number; every host running `taskdeck migrate` contends for the same one.
ADVISORY_LOCK_ID = 0x7461736B6465636B  # "taskdeck"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     text PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""
SELECT_APPLIED = "SELECT version, checksum FROM schema_migrations"
INSERT_APPLIED = "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)"


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file name {path.name!r} must look like 0001_name.sql")
        migrations.append(Migration(match.group(1), path.name, path.read_text("utf-8")))
    versions = [m.version for m in migrations]
    if len(versions) != len(set(versions)):
        raise ValueError("two migration files share a version number")
    return migrations


async def migrate(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; return the names applied (empty when up to date).

    :param dsn: the primary's URL; the lock makes concurrent runs from several hosts wait, then no-op.
    """
    migrations = discover(directory)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_ID)
        try:
            return await _apply_pending(conn, migrations)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_ID)
    finally:
        await conn.close()


async def _apply_pending(conn: asyncpg.Connection, migrations: list[Migration]) -> list[str]:
    await conn.execute(CREATE_MIGRATIONS_TABLE)
    applied = {row["version"]: row["checksum"] for row in await conn.fetch(SELECT_APPLIED)}
    done = []
    for migration in migrations:
        if migration.version in applied:
            if applied[migration.version] != migration.checksum:
                logger.warning("migration %s changed after it was applied; edit with a new migration instead",
                               migration.name)
            continue
        async with conn.transaction():
            await conn.execute(migration.sql)
            await conn.execute(INSERT_APPLIED, migration.version, migration.name, migration.checksum)
        logger.info("applied migration %s", migration.name)
        done.append(migration.name)
    return done
