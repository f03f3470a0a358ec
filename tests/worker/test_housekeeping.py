"""Cron housekeeping jobs against the real database."""
from __future__ import annotations

from worker.jobs.housekeeping import purge_idempotency_keys


async def test_purge_idempotency_keys_deletes_only_expired(client, make_user, database, db):
    user = await make_user()
    for key in ("old", "fresh"):
        response = await client.post("/api/v1/tasks", json={"title": key},
                                     headers={**user.headers, "Idempotency-Key": key})
        assert response.status == 201
    await db.execute("UPDATE idempotency_keys SET expires_at = now() - interval '1 hour' WHERE key = 'old'")
    assert await purge_idempotency_keys({"db": database}) == 1
    assert [r["key"] for r in await db.fetch("SELECT key FROM idempotency_keys")] == ["fresh"]
