"""Cron housekeeping that belongs to no other job family."""
from __future__ import annotations

import logging
from typing import Any

from arq import cron

from shared.idempotency import delete_expired_idempotency_keys

logger = logging.getLogger("app.worker.housekeeping")


async def purge_idempotency_keys(ctx: dict[str, Any]) -> int:
    """Idempotency keys live 24 h; after that a replay is a new request and the row is dead weight."""
    async with ctx["db"].write.acquire() as conn:
        deleted = await delete_expired_idempotency_keys(conn)
    if deleted:
        logger.info("deleted %d expired idempotency keys", deleted)
    return deleted


CRON_JOBS = [
    cron(purge_idempotency_keys, name="purge_idempotency_keys", minute=17, second=0, unique=True, timeout=300),
]
