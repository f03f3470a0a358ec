"""Cron housekeeping that belongs to no other job family."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from arq import cron

from shared import audit, events
from shared.idempotency import delete_expired_idempotency_keys

logger = logging.getLogger("app.worker.housekeeping")


async def purge_idempotency_keys(ctx: dict[str, Any]) -> int:
    """Idempotency keys live 24 h; after that a replay is a new request and the row is dead weight."""
    async with ctx["db"].write.acquire() as conn:
        deleted = await delete_expired_idempotency_keys(conn)
    if deleted:
        logger.info("deleted %d expired idempotency keys", deleted)
    return deleted


# Each batch is one short transaction, so retention never holds the feed's horizon back for long
# (docs/changes.md); a run stops after EVENT_BATCHES and the next run continues.
EVENT_BATCH, EVENT_BATCHES = 1000, 100


async def purge_events(ctx: dict[str, Any]) -> int:
    """Delete change-feed events older than CHANGES_RETENTION_DAYS, in bounded batches (idempotent)."""
    cutoff = datetime.now(timezone.utc) - timedelta(days=ctx["settings"].changes_retention_days)
    total = 0
    async with ctx["db"].write.acquire() as conn:
        for _ in range(EVENT_BATCHES):
            deleted = await events.delete_expired(conn, older_than=cutoff, batch=EVENT_BATCH)
            total += deleted
            if deleted < EVENT_BATCH:
                break
    if total:
        logger.info("deleted %d expired change-feed events", total)
    return total


async def purge_audit(ctx: dict[str, Any]) -> int:
    """Delete audit entries older than AUDIT_RETENTION_DAYS, in bounded batches (the only delete the log allows)."""
    cutoff = datetime.now(timezone.utc) - timedelta(days=ctx["settings"].audit_retention_days)
    total = 0
    async with ctx["db"].write.acquire() as conn:
        for _ in range(EVENT_BATCHES):
            deleted = await audit.delete_expired(conn, older_than=cutoff, batch=EVENT_BATCH)
            total += deleted
            if deleted < EVENT_BATCH:
                break
    if total:
        logger.info("deleted %d expired audit entries", total)
    return total


CRON_JOBS = [
    cron(purge_audit, name="purge_audit", hour=4, minute=41, second=0, unique=True, timeout=300),
    cron(purge_events, name="purge_events", minute=set(range(3, 60, 10)), second=0, unique=True, timeout=300),
    cron(purge_idempotency_keys, name="purge_idempotency_keys", minute=17, second=0, unique=True, timeout=300),
]
