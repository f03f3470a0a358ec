"""Idempotency-Key on POST /api/v1/tasks: replay, mismatch, concurrency, expiry and cleanup."""
from __future__ import annotations

import asyncio

import pytest

from shared import idempotency
from tests.helpers import assert_problem
from web.api.tasks import CREATE_SCOPE

TASKS = "/api/v1/tasks"


def keyed(user, key="key-1"):
    return {**user.headers, "Idempotency-Key": key}


async def count(db):
    return await db.fetchval("SELECT count(*) FROM tasks")


async def test_same_key_and_body_replays_the_first_response(client, make_user, db):
    user = await make_user()
    first = await client.post(TASKS, json={"title": "Pay rent", "tags": ["a"]}, headers=keyed(user))
    assert first.status == 201
    # The same JSON with other key order and spacing is the same body.
    again = await client.post(TASKS, data=b'{ "tags": ["a"],  "title": "Pay rent" }',
                              headers={**keyed(user), "Content-Type": "application/json"})
    assert again.status == 201
    assert await again.read() == await first.read()
    for header in ("Location", "ETag", "Content-Type"):
        assert again.headers[header] == first.headers[header]
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert await count(db) == 1


async def test_replay_returns_the_first_response_even_after_the_task_changed(client, make_user, db):
    user = await make_user()
    first = await client.post(TASKS, json={"title": "t"}, headers=keyed(user))
    task = await first.json()
    await client.patch(f"{TASKS}/{task['id']}", json={"title": "changed"}, headers=user.headers)
    again = await client.post(TASKS, json={"title": "t"}, headers=keyed(user))
    assert await again.json() == task and await count(db) == 1


async def test_same_key_with_another_body_is_422(client, make_user, db):
    user = await make_user()
    assert (await client.post(TASKS, json={"title": "one"}, headers=keyed(user))).status == 201
    body = await assert_problem(await client.post(TASKS, json={"title": "two"}, headers=keyed(user)), 422,
                                "Idempotency-Key")
    assert "different request body" in body["detail"]
    assert await count(db) == 1


async def test_keys_are_per_user(client, make_user, db):
    alice, bob = await make_user(), await make_user()
    a = await (await client.post(TASKS, json={"title": "t"}, headers=keyed(alice))).json()
    b = await (await client.post(TASKS, json={"title": "t"}, headers=keyed(bob))).json()
    assert a["id"] != b["id"] and (a["owner_id"], b["owner_id"]) == (alice.id, bob.id)
    assert await count(db) == 2


async def test_without_a_key_every_post_creates(client, make_user, db):
    user = await make_user()
    for _ in range(2):
        assert (await client.post(TASKS, json={"title": "t"}, headers=user.headers)).status == 201
    assert await count(db) == 2
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 0


async def test_invalid_body_is_not_remembered(client, make_user, db):
    user = await make_user()
    await assert_problem(await client.post(TASKS, json={"title": ""}, headers=keyed(user)), 422, "title")
    assert (await client.post(TASKS, json={"title": "fixed"}, headers=keyed(user))).status == 201
    assert await count(db) == 1


async def test_a_request_still_running_makes_the_second_one_409(client, make_user, db):
    """The first request is held inside its transaction (its INSERT waits on a table lock we hold)."""
    user = await make_user()
    async with db.transaction():
        await db.execute("LOCK TABLE tasks IN SHARE MODE")
        first = asyncio.create_task(client.post(TASKS, json={"title": "t"}, headers=keyed(user)))
        for _ in range(500):  # until the first request waits on our lock, holding the key
            if await db.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'tasks'::regclass"):
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the first request never reached its INSERT")
        others = await asyncio.gather(*(client.post(TASKS, json={"title": "t"}, headers=keyed(user))
                                        for _ in range(3)))
        for response in others:
            await assert_problem(response, 409)
            assert response.headers["Retry-After"] == "1"
        assert not first.done()
    response = await first
    assert response.status == 201
    replay = await client.post(TASKS, json={"title": "t"}, headers=keyed(user))
    assert replay.status == 201 and await replay.json() == await response.json()
    assert await count(db) == 1


async def test_concurrent_duplicates_create_exactly_one_task(client, make_user, db):
    user = await make_user()
    responses = await asyncio.gather(*(client.post(TASKS, json={"title": "t"}, headers=keyed(user))
                                       for _ in range(10)))
    statuses = sorted(r.status for r in responses)
    assert set(statuses) <= {201, 409} and 201 in statuses
    bodies = {await r.text() for r in responses if r.status == 201}
    assert len(bodies) == 1  # every 201 is the same response
    assert await count(db) == 1


async def test_a_failed_first_attempt_leaves_the_key_free(client, make_user, db):
    """If the work fails, nothing is stored: a retry with the same key runs for real."""
    user = await make_user()

    async def boom(conn):
        await conn.execute("INSERT INTO tasks (owner_id, title) VALUES ($1, 'ghost')", user.id)
        raise RuntimeError("crash mid-request")

    with pytest.raises(RuntimeError):
        await idempotency.run_once(db, user_id=user.id, scope=CREATE_SCOPE, key="key-1",
                                   request_body={"title": "t"}, action=boom)
    assert await count(db) == 0
    assert (await client.post(TASKS, json={"title": "t"}, headers=keyed(user))).status == 201
    assert await count(db) == 1


async def test_expired_keys_are_forgotten_and_cleaned_up(client, make_user, db):
    user = await make_user()
    first = await (await client.post(TASKS, json={"title": "one"}, headers=keyed(user))).json()
    expires = await db.fetchval("SELECT expires_at - created_at FROM idempotency_keys")
    assert expires.total_seconds() == 24 * 3600
    await db.execute("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'")
    # Past 24 h the key is new again, even with another body; the old record is replaced.
    second = await (await client.post(TASKS, json={"title": "two"}, headers=keyed(user))).json()
    assert second["id"] != first["id"] and await count(db) == 2
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 1
    await client.post(TASKS, json={"title": "three"}, headers=keyed(user, "key-2"))
    await db.execute("UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = 'key-1'")
    assert await idempotency.delete_expired_idempotency_keys(db) == 1
    assert await db.fetchval("SELECT key FROM idempotency_keys") == "key-2"
    assert await idempotency.delete_expired_idempotency_keys(db) == 0


async def test_cleanup_works_in_batches(db, make_user, monkeypatch):
    user = await make_user()
    monkeypatch.setattr(idempotency, "CLEANUP_BATCH", 3)
    await db.execute("""
        INSERT INTO idempotency_keys (user_id, scope, key, request_hash, status, body, expires_at)
        SELECT $1, 's', 'k' || g, '\\x00', 201, '{}', now() - interval '1 hour' FROM generate_series(1, 10) g
    """, user.id)
    assert await idempotency.delete_expired_idempotency_keys(db) == 10


async def test_the_same_key_on_another_endpoint_is_independent(db, make_user):
    user = await make_user()

    async def answer(conn):
        return idempotency.StoredResponse(202, {"Content-Type": "application/json"}, '{"ok": true}')

    first = await idempotency.run_once(db, user_id=user.id, scope="POST /api/v1/exports", key="key-1",
                                       request_body={"format": "csv"}, action=answer)
    again = await idempotency.run_once(db, user_id=user.id, scope="POST /api/v1/exports", key="key-1",
                                       request_body={"format": "csv"}, action=answer)
    other = await idempotency.run_once(db, user_id=user.id, scope=CREATE_SCOPE, key="key-1",
                                       request_body={"title": "x"}, action=answer)
    assert (first.replayed, again.replayed, other.replayed) == (False, True, False)
    assert again.status == 202 and again.body == '{"ok": true}' and again.headers == first.headers
