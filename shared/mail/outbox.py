"""The email outbox: rows written inside the caller's transaction, enqueued after it commits."""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, Iterable

import asyncpg
from arq.connections import ArqRedis

from shared import jobs
from shared.observability.logs import request_id_var

logger = logging.getLogger("app.outbox")

# Context keys that may carry a live credential (a one-time token, the link holding it). They are
# removed from the row once it is sent or failed, or once `secrets_expire_at` passes unsent.
SECRET_KEYS = ["token", "link"]

INSERT_EMAIL = """
INSERT INTO email_outbox (user_id, to_address, template, context, dedup_key, request_id, secrets_expire_at)
VALUES ($1, $2, $3, $4, $5, $6, now() + $7::interval)
ON CONFLICT (dedup_key) DO NOTHING
RETURNING id
"""


async def queue_email(conn: asyncpg.Connection, *, to: str, template: str, context: dict[str, Any],
                      user_id: int | None = None, dedup_key: str | None = None,
                      secrets_ttl: timedelta | None = None) -> int | None:
    """Write one mail to the outbox inside the caller's transaction.

    :param dedup_key: a mail with the same key is never queued twice (e.g. one reminder per task and due time).
    :param secrets_ttl: the context holds a credential valid this long (SECRET_KEYS are scrubbed after it).
    :return: the outbox id, or None when ``dedup_key`` was already queued.
    """
    request_id = request_id_var.get()
    return await conn.fetchval(INSERT_EMAIL, user_id, to, template, context, dedup_key,
                               None if request_id == "-" else request_id, secrets_ttl)


async def dispatch(arq: ArqRedis, outbox_ids: Iterable[int | None]) -> None:
    """Enqueue send jobs after the commit. If Redis is down the rows stay pending and the sweeper sends them."""
    for outbox_id in outbox_ids:
        if outbox_id is None:
            continue
        try:
            await arq.enqueue_job(jobs.SEND_EMAIL, outbox_id, _job_id=f"email:{outbox_id}")
        except Exception:  # noqa: BLE001 - the outbox row is the durable record; the sweeper retries
            logger.warning("could not enqueue email %s; the outbox sweeper will", outbox_id, exc_info=True)
