"""The token denylist on its own: a denied jti is refused even though its session is alive in the database.

(Logout also revokes the session, so the logout tests alone would pass with the denylist check removed.)
"""
from __future__ import annotations

from redis.asyncio import Redis

from shared.security import decode_access_token
from tests.helpers import assert_problem
from web.auth import DENYLIST_PREFIX


async def test_a_denied_jti_is_401_while_its_session_lives(client, make_user, settings, db):
    user = await make_user()
    other = await make_user()  # same kind of token, not denied
    assert (await client.get("/api/v1/users/me", headers=user.headers)).status == 200

    jti = decode_access_token(settings, user.token).jti
    redis = Redis.from_url(settings.redis_url)
    try:
        await redis.set(DENYLIST_PREFIX + jti, b"1", ex=60)
    finally:
        await redis.aclose()

    assert await db.fetchval("SELECT revoked_at IS NULL FROM sessions WHERE id = $1::uuid", user.session_id)
    body = await assert_problem(await client.get("/api/v1/users/me", headers=user.headers), 401)
    assert "revoked" in body["detail"]
    await assert_problem(await client.get("/api/v1/tasks", headers=user.headers), 401)
    assert (await client.get("/api/v1/users/me", headers=other.headers)).status == 200
