"""Webhook deliveries, at least once, following the Standard Webhooks specification.

``webhooks_tick`` (a cron every WEBHOOK_TICK seconds) does two things, both with their truth in PostgreSQL:
1. Fan-out: reads the change feed after its own position (the same (xid, id) horizon walk as /changes, so
   nothing is skipped) and inserts one delivery row per matching active webhook whose owner can read the
   event's project, in the same transaction as the new position. A retry inserts nothing twice (unique
   (webhook, event)).
2. Deliveries: leases due rows (SKIP LOCKED, the lease moves next_attempt_at forward: a worker that dies
   mid-send lets another retry), POSTs each with a signature computed for this attempt (standardwebhooks),
   and records the outcome. 2xx within 10 s: delivered. Anything else, a redirect included (never
   followed), is retried on the Standard Webhooks schedule with jitter, later if the receiver's
   Retry-After says so; 410 disables the webhook at once, three days of failures too, and either mails
   its owner through the outbox.

Connections go through ``PublicResolver``: every address a name resolves to is checked when connecting,
so a name that points at a private address only at delivery time (DNS rebinding) is refused.
"""
from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import logging
import random
import socket
import time
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import asyncpg
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from arq import cron
from standardwebhooks.webhooks import Webhook

from shared import audit, events, webhooks
from shared.mail import outbox
from shared.observability.metrics import (WEBHOOK_DELIVERIES, WEBHOOK_DELIVERY_SECONDS,
                                          WEBHOOK_OLDEST_PENDING)

logger = logging.getLogger("app.worker.webhooks")

TIMEOUT = 10.0
MAX_RESPONSE_BYTES = 64 * 1024  # read this much of a reply at most (a 10 MB answer costs nothing more)
# The Standard Webhooks schedule after the first attempt, then every 10 h until GIVE_UP.
SCHEDULE = (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600)
GIVE_UP = timedelta(days=3)
MAX_RETRY_AFTER = 24 * 3600
JITTER = 0.2
LEASE = timedelta(seconds=60)
FANOUT_BATCH, FANOUT_BATCHES = 500, 20
DELIVERY_BATCH, CONCURRENCY, PER_WEBHOOK = 400, 50, 20

SELECT_FANOUT = "SELECT xid::text::bigint AS xid, id FROM webhook_fanout FOR UPDATE NOWAIT"
START_FANOUT = f"INSERT INTO webhook_fanout (xid, id) SELECT {events.HORIZON}, 0 ON CONFLICT DO NOTHING"
# One batch of the feed after ($1 xid, $2 id) below the horizon, fanned out to matching webhooks. $3 rows.
FAN_OUT = f"""
WITH h AS (SELECT {events.HORIZON} AS horizon),
batch AS (
    SELECT e.id, e.xid, e.type, e.project_id, e.also FROM events AS e, h
    WHERE (e.xid, e.id) > ($1::text::xid8, $2::bigint) AND e.xid < h.horizon
    ORDER BY e.xid, e.id LIMIT $3
), queued AS (
    INSERT INTO webhook_deliveries (webhook_id, event_id, event_type, project_id, msg_id)
    SELECT w.id, b.id, b.type, b.project_id, 'msg_' || b.id || '_' || w.id
    FROM batch AS b JOIN webhooks AS w ON w.active AND (w.project_id IS NULL OR w.project_id = b.project_id)
        AND (w.events = ARRAY['*'] OR b.type = ANY (w.events))
    WHERE EXISTS (SELECT 1 FROM project_members AS m WHERE m.project_id = b.project_id AND m.user_id = w.owner_id)
       OR w.owner_id = ANY (b.also)
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM batch) AS events, (SELECT count(*) FROM queued) AS queued,
       (SELECT xid::text::bigint FROM batch ORDER BY xid DESC, id DESC LIMIT 1) AS last_xid,
       (SELECT id FROM batch ORDER BY xid DESC, id DESC LIMIT 1) AS last_id,
       (SELECT horizon::text::bigint FROM h) AS horizon
"""
MOVE_FANOUT = "UPDATE webhook_fanout SET xid = $1::text::xid8, id = $2"
# At most $3 rows per webhook per tick, so one webhook's backlog (a receiver that is down) cannot take every
# slot from the others. The conditions are repeated on the locking level: a row another worker leased in the
# meantime is re-checked there and skipped.
LEASE_DUE = """
UPDATE webhook_deliveries AS d SET next_attempt_at = now() + $2::interval
WHERE d.id IN (
    SELECT id FROM webhook_deliveries
    WHERE status = 'pending' AND next_attempt_at <= now() AND id IN (
        SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY webhook_id ORDER BY next_attempt_at) AS n
                        FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= now()) AS fair
        WHERE fair.n <= $3)
    ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
RETURNING d.id, d.webhook_id, d.event_id, d.project_id, d.msg_id, d.payload::text AS payload, d.attempt, d.created_at
"""
# The webhook, its sealed secret, whether its owner may still read the delivery's project, and the event.
SELECT_CONTEXT = f"""
SELECT w.url, w.active, w.owner_id, w.secret_sealed, w.failing_since,
       ($2::bigint IS NULL OR EXISTS (SELECT 1 FROM project_members AS m
                                       WHERE m.project_id = $2 AND m.user_id = w.owner_id)
        OR EXISTS (SELECT 1 FROM events AS a WHERE a.id = $3 AND w.owner_id = ANY (a.also))) AS allowed,
       (SELECT row_to_json(x)::text FROM (SELECT {events.EVENT_COLUMNS} FROM events AS e
            LEFT JOIN users AS u ON u.id = e.actor_id WHERE e.id = $3) AS x) AS event
FROM webhooks AS w WHERE w.id = $1
"""
DELIVERED = """
UPDATE webhook_deliveries SET status = 'delivered', attempt = attempt + 1, response_status = $2, error = NULL,
    duration_ms = $3, next_attempt_at = NULL WHERE id = $1
"""
FAILED_ATTEMPT = """
UPDATE webhook_deliveries SET status = $2, attempt = attempt + 1, response_status = $3, error = $4, duration_ms = $5,
    next_attempt_at = $6 WHERE id = $1
"""
HEALTHY = "UPDATE webhooks SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL"
FAILING = "UPDATE webhooks SET failing_since = COALESCE(failing_since, now()) WHERE id = $1 RETURNING failing_since"
DISABLE = """
UPDATE webhooks AS w SET active = false, disabled_reason = $2 WHERE w.id = $1 AND w.active
RETURNING w.id, w.url, w.owner_id, (SELECT email FROM users WHERE id = w.owner_id) AS email,
          (SELECT name FROM users WHERE id = w.owner_id) AS name
"""
OLDEST_PENDING = "SELECT EXTRACT(EPOCH FROM now() - min(created_at)) FROM webhook_deliveries WHERE status = 'pending'"
DELETE_OLD = """
DELETE FROM webhook_deliveries WHERE id IN (
    SELECT id FROM webhook_deliveries WHERE status <> 'pending' AND created_at < $1 ORDER BY created_at LIMIT $2)
"""


class PublicResolver(AbstractResolver):
    """Resolves like aiohttp's default, then refuses the host if any address it resolves to is not public.

    Checked here, at connect time, on the very addresses the connection will use: a name cannot pass a
    check and then connect elsewhere.
    """

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            if not webhooks.is_public_address(ipaddress.ip_address(result["host"])):
                raise OSError(errno.EPERM, f"{host} resolves to a non-public address")
        return results

    async def close(self) -> None:
        await self._inner.close()


def next_delay(attempt: int, retry_after: float | None, rng: random.Random = random.Random()) -> float:
    """Seconds until attempt ``attempt + 1`` (``attempt`` = attempts made so far, 1 after the first)."""
    base = SCHEDULE[min(attempt - 1, len(SCHEDULE) - 1)]
    delay = base * (1 + rng.uniform(-JITTER, JITTER))
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None


def session(settings: Any) -> aiohttp.ClientSession:
    resolver = DefaultResolver() if settings.webhook_allow_private else PublicResolver()
    connector = aiohttp.TCPConnector(resolver=resolver, limit=CONCURRENCY, ttl_dns_cache=None, use_dns_cache=False)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=TIMEOUT),
                                 headers={"User-Agent": "Taskdeck-Webhooks/1"})


async def fan_out(conn: asyncpg.Connection) -> int:
    """Queue the deliveries of every event the fan-out has not read yet; returns how many were queued."""
    await conn.execute(START_FANOUT)
    queued = 0
    for _ in range(FANOUT_BATCHES):
        async with conn.transaction():
            try:
                position = await conn.fetchrow(SELECT_FANOUT)
            except asyncpg.LockNotAvailableError:
                return queued  # another worker is fanning out right now
            row = await conn.fetchrow(FAN_OUT, str(position["xid"]), position["id"], FANOUT_BATCH)
            queued += row["queued"]
            last = (row["last_xid"], row["last_id"]) if row["events"] else (position["xid"], position["id"])
            if row["events"] < FANOUT_BATCH and (row["horizon"], 0) > last:
                last = (row["horizon"], 0)
            await conn.execute(MOVE_FANOUT, str(last[0]), last[1])
        if row["events"] < FANOUT_BATCH:
            break
    return queued


def _body(settings: Any, delivery: asyncpg.Record, context: asyncpg.Record) -> str | None:
    if delivery["payload"] is not None:
        return str(delivery["payload"])
    if context["event"] is None:
        return None  # retention deleted it: nothing true is left to send
    row = json.loads(context["event"])
    row["at"] = datetime.fromisoformat(row["at"])
    return json.dumps(events.event_out(settings.secret_key, context["owner_id"], row), separators=(",", ":"))


async def _send(http: aiohttp.ClientSession, url: str, msg_id: str, secret: str,
                body: str) -> tuple[int | None, str | None, float | None]:
    """(status, error, Retry-After seconds) of one attempt; the signature is made for this attempt's time."""
    now = datetime.now(timezone.utc)
    headers = {"content-type": "application/json", "webhook-id": msg_id,
               "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": Webhook(secret).sign(msg_id, now, body)}
    try:
        async with http.post(url, data=body.encode(), headers=headers, allow_redirects=False) as response:
            await response.content.read(MAX_RESPONSE_BYTES)  # never more, however much it sends
            return response.status, None, parse_retry_after(response.headers.get("Retry-After"))
    except asyncio.TimeoutError:
        return None, f"no answer within {TIMEOUT:.0f} s", None
    except (aiohttp.ClientError, OSError) as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500], None


async def _disable(conn: asyncpg.Connection, webhook_id: int, reason: str) -> int | None:
    """Disable, audit and mail the owner (outbox), in the caller's transaction; the outbox id to dispatch."""
    hook = await conn.fetchrow(DISABLE, webhook_id, reason)
    if hook is None:
        return None
    await audit.record(conn, "webhook.disabled", actor_id=None, subject_type="webhook", subject_id=webhook_id,
                       detail={"reason": reason})
    return await outbox.queue_email(conn, to=hook["email"], template="webhook_disabled", user_id=hook["owner_id"],
                                    context={"name": hook["name"], "url": hook["url"], "reason": reason},
                                    dedup_key=f"webhook-disabled:{webhook_id}:{int(time.time() // 86400)}")


async def deliver_one(ctx: dict[str, Any], http: aiohttp.ClientSession, delivery: asyncpg.Record) -> str:
    """One attempt of one delivery; returns its outcome (delivered, retry, failed, skipped)."""
    settings, db = ctx["settings"], ctx["db"]
    async with db.write.acquire() as conn:
        context = await conn.fetchrow(SELECT_CONTEXT, delivery["webhook_id"], delivery["project_id"],
                                      delivery["event_id"])
    body = _body(settings, delivery, context) if context is not None else None
    if context is None or not context["active"] or not context["allowed"] or body is None:
        why = ("the webhook is inactive" if context is not None and not context["active"] else
               "the webhook's owner can no longer read this project" if context is not None and not context["allowed"]
               else "the event is gone")
        async with db.write.acquire() as conn:
            await conn.execute(FAILED_ATTEMPT, delivery["id"], "failed", None, why, None, None)
        return "skipped"
    secret = webhooks.unseal(settings.secret_key, context["secret_sealed"])
    started = time.perf_counter()
    status, error, retry_after = await _send(http, context["url"], delivery["msg_id"], secret, body)
    elapsed = time.perf_counter() - started
    WEBHOOK_DELIVERY_SECONDS.observe(elapsed)
    duration_ms, mails = int(elapsed * 1000), []
    async with db.write.acquire() as conn, conn.transaction():
        if status is not None and 200 <= status < 300:
            await conn.execute(DELIVERED, delivery["id"], status, duration_ms)
            await conn.execute(HEALTHY, delivery["webhook_id"])
            outcome = "delivered"
        else:
            redirect = status is not None and 300 <= status < 400
            error = error or (f"redirect {status} (not followed)" if redirect else f"HTTP {status}")
            failing_since = await conn.fetchval(FAILING, delivery["webhook_id"])
            now = datetime.now(timezone.utc)
            if status == 410:
                mails.append(await _disable(conn, delivery["webhook_id"], "the receiver answered 410 Gone"))
                outcome, next_at = "failed", None
            elif now - failing_since >= GIVE_UP or now - delivery["created_at"] >= GIVE_UP:
                if now - failing_since >= GIVE_UP:
                    mails.append(await _disable(conn, delivery["webhook_id"], "deliveries failed for 3 days"))
                outcome, next_at = "failed", None
            else:
                outcome = "retry"
                next_at = now + timedelta(seconds=next_delay(delivery["attempt"] + 1, retry_after))
            await conn.execute(FAILED_ATTEMPT, delivery["id"], "failed" if next_at is None else "pending", status,
                               error, duration_ms, next_at)
    if mails and ctx.get("redis") is not None:
        await outbox.dispatch(ctx["redis"], mails)
    return outcome


async def deliver_due(ctx: dict[str, Any]) -> dict[str, int]:
    """Lease and attempt up to DELIVERY_BATCH due deliveries, CONCURRENCY at a time."""
    async with ctx["db"].write.acquire() as conn:
        due = await conn.fetch(LEASE_DUE, DELIVERY_BATCH, LEASE, PER_WEBHOOK)
    outcomes: dict[str, int] = {}
    if not due:
        return outcomes
    gate = asyncio.Semaphore(CONCURRENCY)
    async with session(ctx["settings"]) as http:
        async def attempt(delivery: asyncpg.Record) -> None:
            async with gate:
                try:
                    outcome = await deliver_one(ctx, http, delivery)
                except Exception:  # one broken delivery must not stop the others; its lease makes it retry
                    logger.exception("webhook delivery %s failed unexpectedly", delivery["id"])
                    outcome = "error"
            WEBHOOK_DELIVERIES.labels(outcome).inc()
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        await asyncio.gather(*(attempt(d) for d in due))
    return outcomes


async def webhooks_tick(ctx: dict[str, Any]) -> dict[str, int]:
    async with ctx["db"].write.acquire() as conn:
        queued = await fan_out(conn)
        WEBHOOK_OLDEST_PENDING.set(float(await conn.fetchval(OLDEST_PENDING) or 0))
    outcomes = await deliver_due(ctx)
    return {"queued": queued, **outcomes}


async def purge_deliveries(ctx: dict[str, Any]) -> int:
    """Finished deliveries older than WEBHOOK_DELIVERY_RETENTION_DAYS go, in bounded batches."""
    cutoff = datetime.now(timezone.utc) - timedelta(days=ctx["settings"].webhook_delivery_retention_days)
    total = 0
    async with ctx["db"].write.acquire() as conn:
        for _ in range(100):
            deleted = int((await conn.execute(DELETE_OLD, cutoff, 1000)).split()[-1])
            total += deleted
            if deleted < 1000:
                break
    return total


CRON_JOBS = [
    cron(webhooks_tick, name="webhooks_tick", second=set(range(0, 60, 2)), unique=True, timeout=120),
    cron(purge_deliveries, name="purge_webhook_deliveries", minute=23, second=30, unique=True, timeout=300),
]
