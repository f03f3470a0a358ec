"""The per-process session cache (web/auth.py): a revocation on one process is refused at once on another.

Two app instances stand for two web processes: each has its own SessionCache and pools, both share
PostgreSQL and Redis. Process B always serves the token first, so it has the session cached when
process A revokes it.
"""
from __future__ import annotations

import asyncio
import json
import time

import pytest
from redis.asyncio import Redis

from shared import accounts
from shared.security import create_access_token
from tests.helpers import LIMITER_ON, assert_problem, bearer, login, mailed_tokens, register, request_reset
from web.app import create_app

ME = "/api/v1/users/me"


# With the limiter on, the denylist and auth version come from the rate limiter's pipeline
# (web/ratelimit.py) instead of the auth check's own MGET: every revocation below must hold on both paths.
@pytest.fixture(params=[False, True], ids=["limiter off", "limiter on"])
async def two(request, aiohttp_client, settings):
    settings = settings.with_(**LIMITER_ON) if request.param else settings
    return await aiohttp_client(create_app(settings)), await aiohttp_client(create_app(settings))


async def _warm(client, headers) -> dict:
    """Two requests: the first checks the primary and remembers the session, the second is served from memory."""
    for _ in range(2):
        response = await client.get(ME, headers=headers)
        assert response.status == 200, await response.text()
    return await response.json()


async def test_the_session_is_remembered_while_the_auth_version_stands(two, make_user, db):
    a, b = two
    user = await make_user()
    await _warm(b, user.headers)
    # A revocation that bypasses the application (raw SQL, no auth_changed) is not seen: proof the
    # primary is not asked on every request. Every application path bumps the version (tests below).
    await db.execute("UPDATE sessions SET revoked_at = now() WHERE id = $1", user.session_id)
    assert (await b.get(ME, headers=user.headers)).status == 200
    # A fresh process has nothing remembered and asks the primary.
    await assert_problem(await a.get(ME, headers=user.headers), 401)


async def test_a_lost_auth_version_is_never_taken_for_the_old_one(two, make_user, db, settings):
    _, b = two
    user = await make_user()
    await _warm(b, user.headers)
    await db.execute("UPDATE sessions SET revoked_at = now() WHERE id = $1", user.session_id)
    redis = Redis.from_url(settings.redis_url)
    await redis.delete(accounts.AUTH_VERSION_KEY.format(user.id))  # eviction, or a Redis restart
    await redis.aclose()
    await assert_problem(await b.get(ME, headers=user.headers), 401)


async def test_zero_seconds_turns_the_cache_off(aiohttp_client, settings, make_user, db):
    client = await aiohttp_client(create_app(settings.with_(session_cache_seconds=0)))
    user = await make_user()
    await _warm(client, user.headers)
    await db.execute("UPDATE sessions SET revoked_at = now() WHERE id = $1", user.session_id)
    await assert_problem(await client.get(ME, headers=user.headers), 401)


async def test_logout_on_one_process_is_refused_at_once_on_the_other(two):
    a, b = two
    await register(a)
    tokens = await login(a)
    await _warm(b, bearer(tokens))
    assert (await a.post("/api/v1/auth/logout", headers=bearer(tokens))).status == 204
    await assert_problem(await b.get(ME, headers=bearer(tokens)), 401)


async def test_logout_of_one_session_leaves_the_others_working(two):
    a, b = two
    await register(a)
    first, second = await login(a), await login(a)
    await _warm(b, bearer(first))
    await _warm(b, bearer(second))
    assert (await a.post("/api/v1/auth/logout", headers=bearer(first))).status == 204
    await assert_problem(await b.get(ME, headers=bearer(first)), 401)
    assert (await b.get(ME, headers=bearer(second))).status == 200


async def test_password_reset_on_one_process_ends_sessions_on_the_other(two, settings, stack):
    a, b = two
    await register(a)
    tokens = await login(a)
    await _warm(b, bearer(tokens))
    await request_reset(a, settings)
    [token] = mailed_tokens(stack, "/reset-password")
    response = await a.post("/api/v1/auth/password-reset/confirm",
                            json={"token": token, "password": "a new long password"})
    assert response.status == 204
    await assert_problem(await b.get(ME, headers=bearer(tokens)), 401)


async def test_password_change_on_one_process_ends_the_other_sessions_there(two):
    a, b = two
    await register(a)
    caller, other = await login(a), await login(a)
    await _warm(b, bearer(other))
    response = await a.patch(ME, headers=bearer(caller),
                             json={"password": "a new long password", "current_password": "correct horse battery"})
    assert response.status == 200
    await assert_problem(await b.get(ME, headers=bearer(other)), 401)
    assert (await b.get(ME, headers=bearer(caller))).status == 200


async def test_refresh_token_reuse_on_one_process_ends_the_login_on_the_other(two):
    a, b = two
    await register(a)
    tokens = await login(a)
    assert (await a.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})).status == 200
    await _warm(b, bearer(tokens))
    await assert_problem(await a.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401)
    await assert_problem(await b.get(ME, headers=bearer(tokens)), 401)


async def test_deactivation_and_demotion_take_effect_at_once_on_the_other_process(two, make_user):
    a, b = two
    admin, target, victim = await make_user(role="admin"), await make_user(role="admin"), await make_user()
    await _warm(b, target.headers)
    await _warm(b, victim.headers)
    assert (await b.get("/api/v1/admin/users", headers=target.headers)).status == 200
    response = await a.patch(f"/api/v1/admin/users/{target.id}", json={"role": "user"}, headers=admin.headers)
    assert response.status == 200
    await assert_problem(await b.get("/api/v1/admin/users", headers=target.headers), 403)
    response = await a.patch(f"/api/v1/admin/users/{victim.id}", json={"is_active": False}, headers=admin.headers)
    assert response.status == 200
    await assert_problem(await b.get(ME, headers=victim.headers), 401)


async def test_name_change_and_verification_are_seen_at_once_on_the_other_process(two, db):
    a, b = two
    await register(a)
    tokens = await login(a)
    assert (await _warm(b, bearer(tokens)))["email_verified"] is False
    assert (await a.patch(ME, headers=bearer(tokens), json={"name": "Grace"})).status == 200
    assert (await (await b.get(ME, headers=bearer(tokens))).json())["name"] == "Grace"
    context = await db.fetchval("SELECT context FROM email_outbox WHERE template = 'verify_email'")
    assert (await a.post("/api/v1/auth/verify-email", json={"token": json.loads(context)["token"]})).status == 204
    assert (await (await b.get(ME, headers=bearer(tokens))).json())["email_verified"] is True


async def test_a_remembered_token_still_expires(client, settings, make_user):
    user = await make_user()
    token, _ = create_access_token(settings.with_(access_token_ttl=2), user_id=user.id, session_id=user.session_id)
    headers = {"Authorization": f"Bearer {token}"}
    await _warm(client, headers)
    deadline = time.monotonic() + 30
    while (response := await client.get(ME, headers=headers)).status == 200:
        assert time.monotonic() < deadline, "the remembered token never expired"
        await asyncio.sleep(0.2)
    body = await assert_problem(response, 401)
    assert "expired" in body["detail"]
