"""No usable one-time token at rest: after register -> verify -> reset through the real worker and SMTP
sink, nothing in PostgreSQL (every column of every table) or Redis passes verify-email or
reset-password/confirm; and the logs name user ids, never addresses or tokens.
"""
from __future__ import annotations

import logging
import re
from datetime import timedelta

from redis.asyncio import Redis

from shared.security import token_digest
from tests.helpers import bearer, login, mailed_tokens, register, request_reset
from tests.worker_helpers import job_ctx, outbox_row, queue_mail, refusing_smtp, run_burst
from worker.jobs.email import send_email
from worker.jobs.outbox import outbox_retention

CANDIDATE = re.compile(r"[A-Za-z0-9_-]{20,}")
EMAIL = "ada@example.com"


async def everything_in_postgres(db) -> str:
    """Every row of every table as text (a row cast to text renders every column, json and bytea included)."""
    tables = await db.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    dumps = [await db.fetchval(f'SELECT string_agg(t::text, E\'\\n\') FROM "{row["tablename"]}" AS t') or ""
             for row in tables]
    return "\n".join(dumps)


async def everything_in_redis(settings) -> str:
    redis = Redis.from_url(settings.redis_url)
    try:
        parts = []
        async for key in redis.scan_iter():
            kind = (await redis.type(key)).decode()
            if kind == "string":
                parts.append(repr(await redis.get(key)))
            elif kind == "zset":
                parts.append(repr(await redis.zrange(key, 0, -1)))
            elif kind == "hash":
                parts.append(repr(await redis.hgetall(key)))
            parts.append(key.decode(errors="replace"))
        return "\n".join(parts)
    finally:
        await redis.aclose()


async def live_tokens_in(text: str, db) -> set[str]:
    """The strings in ``text`` that an unused, unexpired one-time token row would accept."""
    live = {bytes(row["token_hash"]) for row in await db.fetch(
        "SELECT token_hash FROM one_time_tokens WHERE used_at IS NULL AND expires_at > now()")}
    return {candidate for candidate in set(CANDIDATE.findall(text)) if token_digest(candidate) in live}


async def test_nothing_at_rest_passes_verify_or_reset(client, db, settings, stack):
    await register(client, EMAIL)
    # The detector works: before the mail is sent, the outbox row does hold the live token.
    assert len(await live_tokens_in(await everything_in_postgres(db), db)) == 1

    await run_burst(settings)
    [verify_token] = mailed_tokens(stack, "/verify-email")
    assert (await client.post("/api/v1/auth/verify-email", json={"token": verify_token})).status == 204
    await request_reset(client, settings, EMAIL)
    [used] = mailed_tokens(stack, "/reset-password")
    confirm = {"token": used, "password": "a brand new secret"}
    assert (await client.post("/api/v1/auth/password-reset/confirm", json=confirm)).status == 204
    await request_reset(client, settings, EMAIL)  # a second link, mailed and still unused: live right now
    live_link = mailed_tokens(stack, "/reset-password")[-1]
    assert await db.fetchval("SELECT count(*) FROM email_outbox WHERE status = 'sent'") == 3

    at_rest = await everything_in_postgres(db) + "\n" + await everything_in_redis(settings)
    assert live_link not in at_rest and verify_token not in at_rest
    assert await live_tokens_in(at_rest, db) == set()
    # And from outside: no string at rest is accepted by either endpoint.
    for candidate in set(CANDIDATE.findall(at_rest)):
        verify = await client.post("/api/v1/auth/verify-email", json={"token": candidate[:200]})
        reset = await client.post("/api/v1/auth/password-reset/confirm",
                                  json={"token": candidate[:200], "password": "stolen password 1"})
        assert verify.status == 401 and reset.status == 401, candidate  # not a live token
    # The mailed link itself still works: scrubbing removed a copy, not the credential.
    assert (await client.post("/api/v1/auth/password-reset/confirm",
                              json={"token": live_link, "password": "the final secret"})).status == 204
    contexts = await db.fetch("SELECT context FROM email_outbox")
    assert all("token" not in row["context"] and "link" not in row["context"] for row in contexts)


async def test_a_failed_mail_keeps_no_token(db, database, settings, caplog):
    caplog.set_level(logging.DEBUG, logger="app")
    outbox_id = await queue_mail(database)
    with refusing_smtp() as smtp:  # 550 for every recipient: a permanent failure
        assert await send_email(job_ctx(settings.with_(smtp=smtp), database), outbox_id) == "failed"
    row = await outbox_row(db, outbox_id)
    assert row["status"] == "failed" and "token" not in row["context"] and "link" not in row["context"]
    assert "ada@example.com" not in row["last_error"] and "<recipient>" in row["last_error"]
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records if r.name.startswith("app"))
    assert "failed permanently" in logged and "ada@example.com" not in logged


async def test_retention_scrubs_expired_unsent_tokens_and_purges_old_rows(client, db, database, settings):
    await register(client, EMAIL)  # pending verification mail, token valid 48 h
    await register(client, "grace@example.com")
    expired, fresh = [r["id"] for r in await db.fetch("SELECT id FROM email_outbox ORDER BY id")]
    await db.execute("UPDATE email_outbox SET secrets_expire_at = now() - interval '1 second' WHERE id = $1", expired)
    old_sent = await queue_mail(database, context={"name": "x"})
    recent_sent = await queue_mail(database, context={"name": "y"})
    await db.execute("UPDATE email_outbox SET status = 'sent', created_at = now() - $2::interval WHERE id = $1",
                     old_sent, timedelta(days=settings.outbox_retention_days, minutes=1))
    await db.execute("UPDATE email_outbox SET status = 'sent' WHERE id = $1", recent_sent)

    result = await outbox_retention(job_ctx(settings, database))
    assert result == {"expired": 1, "purged": 1}
    row = await outbox_row(db, expired)
    assert row["status"] == "failed" and "token" not in row["context"] and "expired" in row["last_error"]
    assert "token" in (await outbox_row(db, fresh))["context"]  # still valid: it may still be sent
    assert await db.fetchval("SELECT count(*) FROM email_outbox WHERE id = $1", old_sent) == 0
    assert await db.fetchval("SELECT count(*) FROM email_outbox WHERE id = $1", recent_sent) == 1
    assert await outbox_retention(job_ctx(settings, database)) == {"expired": 0, "purged": 0}  # idempotent


async def test_logs_name_user_ids_not_addresses_or_tokens(client, db, settings, stack, caplog):
    caplog.set_level(logging.DEBUG)
    user = await register(client, EMAIL)
    await run_burst(settings)
    [verify_token] = mailed_tokens(stack, "/verify-email")
    await client.post("/api/v1/auth/verify-email", json={"token": verify_token})
    await request_reset(client, settings, EMAIL)
    await request_reset(client, settings, "nobody@example.com")
    [reset_token] = mailed_tokens(stack, "/reset-password")
    await client.post("/api/v1/auth/password-reset/confirm", json={"token": reset_token, "password": "new secret 12"})
    await client.get("/api/v1/users/me", headers=bearer(await login(client, EMAIL, "new secret 12")))

    ours = [r for r in caplog.records if r.name.split(".")[0] in ("app", "arq", "aiohttp")]
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in ours)
    assert ours and f"user {user['id']}" in text
    for secret in (EMAIL, "nobody@example.com", verify_token, reset_token, "new secret 12"):
        assert secret not in text, secret
