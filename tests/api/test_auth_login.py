"""Register, login, refresh rotation and logout through the HTTP API."""
from __future__ import annotations

import asyncio
import json
import time

import jwt
import pytest

from tests.conftest import TEST_SECRET
from tests.helpers import assert_problem, bearer, login, register


async def test_register_returns_the_user_without_secrets(client, db):
    response = await client.post("/api/v1/auth/register",
                                 json={"email": "  Ada@Example.COM ", "password": "correct horse battery",
                                       "name": " Ada "})
    assert response.status == 201
    user = await response.json()
    assert set(user) == {"id", "email", "name", "role", "is_active", "email_verified", "email_notifications",
                         "created_at"}
    assert user["email"] == "ada@example.com" and user["name"] == "Ada"
    assert user["role"] == "user" and user["is_active"] and not user["email_verified"]
    assert user["created_at"].endswith("Z")
    stored = await db.fetchval("SELECT password_hash FROM users WHERE id = $1", user["id"])
    assert stored.startswith("td2$$2b$") and "correct horse" not in stored


async def test_register_queues_a_verification_mail_in_the_outbox(client, db):
    user = await register(client)
    row = await db.fetchrow("SELECT * FROM email_outbox")
    assert row["user_id"] == user["id"] and row["template"] == "verify_email"
    assert row["to_address"] == "ada@example.com" and row["status"] == "pending"
    assert json.loads(row["context"])["link"].startswith("http://taskdeck.test/verify-email?token=")


async def test_register_duplicate_email_is_409_case_insensitively(client):
    await register(client, "ada@example.com")
    response = await client.post("/api/v1/auth/register",
                                 json={"email": "ADA@example.com", "password": "another password"})
    await assert_problem(response, 409)


@pytest.mark.parametrize("body, field", [
    ({"password": "correct horse battery"}, "email"),
    ({"email": "not-an-email", "password": "correct horse battery"}, "email"),
    ({"email": 42, "password": "correct horse battery"}, "email"),
    ({"email": "a@example.com"}, "password"),
    ({"email": "a@example.com", "password": "short"}, "password"),
    ({"email": "a@example.com", "password": "x" * 129}, "password"),
    ({"email": "a@example.com", "password": ["correct horse battery"]}, "password"),
    ({"email": "a@example.com", "password": "correct horse battery", "name": "n" * 101}, "name"),
    ({"email": "a@example.com", "password": "correct horse battery", "name": None}, "name"),
    ({"email": "a@example.com", "password": "correct horse battery", "role": "admin"}, "role"),
    ({"email": "a@example.com", "password": "correct horse battery", "is_active": False}, "is_active"),
    ({"email": "a" * 250 + "@example.com", "password": "correct horse battery"}, "email"),
])
async def test_register_rejects_bad_fields_with_422(client, body, field):
    response = await client.post("/api/v1/auth/register", json=body)
    await assert_problem(response, 422, field)


async def test_login_returns_a_bearer_pair(client, settings):
    await register(client)
    tokens = await login(client, "ADA@example.com")
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] == settings.access_token_ttl
    assert tokens["refresh_token"] and tokens["access_token"].count(".") == 2
    me = await client.get("/api/v1/users/me", headers=bearer(tokens))
    assert me.status == 200 and (await me.json())["email"] == "ada@example.com"


async def test_wrong_password_and_unknown_email_get_the_same_401(client):
    await register(client)
    wrong = await client.post("/api/v1/auth/login", json={"email": "ada@example.com", "password": "wrong pass"})
    unknown = await client.post("/api/v1/auth/login", json={"email": "bob@example.com", "password": "wrong pass"})
    body_wrong, body_unknown = await assert_problem(wrong, 401), await assert_problem(unknown, 401)
    assert body_wrong["detail"] == body_unknown["detail"]


async def test_login_with_a_short_wrong_password_is_401_not_422(client):
    await register(client)
    response = await client.post("/api/v1/auth/login", json={"email": "ada@example.com", "password": "x"})
    await assert_problem(response, 401)


async def test_login_with_an_over_long_password_is_422(client):
    response = await client.post("/api/v1/auth/login", json={"email": "ada@example.com", "password": "ü" * 129})
    await assert_problem(response, 422, "password")


async def test_unknown_user_login_spends_bcrypt_time_too(client, make_user, monkeypatch):
    from shared import security

    calls = []
    real = security.bcrypt.checkpw
    monkeypatch.setattr(security.bcrypt, "checkpw", lambda *a: calls.append(1) or real(*a))
    response = await client.post("/api/v1/auth/login", json={"email": "ghost@example.com", "password": "whatever1"})
    assert response.status == 401 and calls == [1]


async def test_refresh_rotates_and_spends_the_old_token(client):
    await register(client)
    first = await login(client)
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert response.status == 200
    second = await response.json()
    assert second["refresh_token"] != first["refresh_token"]
    me = await client.get("/api/v1/users/me", headers=bearer(second))
    assert me.status == 200


async def test_reusing_a_spent_refresh_token_revokes_the_whole_login(client):
    await register(client)
    first = await login(client)
    second = await (await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})).json()
    replay = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    await assert_problem(replay, 401)
    # Every token of that login is now dead: the newest refresh token and the access tokens.
    await assert_problem(await client.post("/api/v1/auth/refresh",
                                           json={"refresh_token": second["refresh_token"]}), 401)
    await assert_problem(await client.get("/api/v1/users/me", headers=bearer(second)), 401)
    # Another login of the same user is untouched.
    other = await login(client)
    assert (await client.get("/api/v1/users/me", headers=bearer(other))).status == 200


async def test_concurrent_refreshes_with_one_token_yield_one_winner(client):
    await register(client)
    tokens = await login(client)
    responses = await asyncio.gather(*(client.post("/api/v1/auth/refresh",
                                                   json={"refresh_token": tokens["refresh_token"]})
                                       for _ in range(3)))
    assert sorted(r.status for r in responses) == [200, 401, 401]


@pytest.mark.parametrize("token", ["nonsense", "", "x" * 10240, "\u0000", "\ud800", "ü" * 300])
async def test_refresh_with_anything_but_a_live_refresh_token_is_401(client, token):
    raw = json.dumps({"refresh_token": token}).encode()  # json.dumps escapes a lone surrogate, as a client would
    response = await client.post("/api/v1/auth/refresh", data=raw, headers={"Content-Type": "application/json"})
    await assert_problem(response, 401)


async def test_refresh_with_an_access_token_is_401(client):
    await register(client)
    tokens = await login(client)
    await assert_problem(await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["access_token"]}),
                         401)


@pytest.mark.parametrize("body", [{}, {"refresh_token": 5}, {"refresh_token": None}, {"refresh_token": ["x"]}])
async def test_refresh_without_a_string_token_is_422(client, body):
    problem = await assert_problem(await client.post("/api/v1/auth/refresh", json=body), 422, "refresh_token")
    assert list(problem["errors"]) == ["refresh_token"]


async def test_expired_refresh_token_is_401(client, db):
    await register(client)
    tokens = await login(client)
    await db.execute("UPDATE refresh_tokens SET expires_at = now() - interval '1 second'")
    await assert_problem(await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}),
                         401)


async def test_logout_refuses_the_access_token_and_revokes_the_refresh_token(client, stack):
    await register(client)
    tokens = await login(client)
    response = await client.post("/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]},
                                 headers=bearer(tokens))
    assert response.status == 204
    await assert_problem(await client.get("/api/v1/users/me", headers=bearer(tokens)), 401)
    await assert_problem(await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}),
                         401)


async def test_logout_puts_the_jti_on_the_redis_denylist_until_expiry(client, settings):
    from redis.asyncio import Redis

    await register(client)
    tokens = await login(client)
    assert (await client.post("/api/v1/auth/logout", headers=bearer(tokens))).status == 204
    jti = jwt.decode(tokens["access_token"], TEST_SECRET, algorithms=["HS256"])["jti"]
    redis = Redis.from_url(settings.redis_url)
    try:
        ttl = await redis.ttl(f"denylist:jti:{jti}")
    finally:
        await redis.aclose()
    assert 0 < ttl <= settings.access_token_ttl


async def test_logout_without_a_body_and_without_a_token(client):
    await assert_problem(await client.post("/api/v1/auth/logout"), 401)
    await register(client)
    tokens = await login(client)
    assert (await client.post("/api/v1/auth/logout", headers=bearer(tokens))).status == 204


def _forge(claims: dict, key: str = TEST_SECRET, algorithm: str = "HS256") -> dict[str, str]:
    return {"Authorization": "Bearer " + jwt.encode(claims, key, algorithm=algorithm)}


async def test_forged_expired_and_malformed_tokens_are_401(client, make_user):
    user = await make_user()
    now = int(time.time())
    good = {"sub": str(user.id), "sid": user.session_id, "jti": "x", "iat": now, "exp": now + 60, "typ": "access"}
    cases = [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer not.a.jwt"},
        _forge(good, key="another-secret-key-that-is-long-enough-0123456789"),
        _forge({**good, "exp": now - 10}),
        _forge({**good, "typ": "refresh"}),
        _forge({**good, "sub": "abc"}),
        _forge({**good, "sid": "not-a-uuid"}),
        _forge({k: v for k, v in good.items() if k != "jti"}),
        _forge({**good, "sid": "00000000-0000-0000-0000-000000000000"}),
    ]
    assert (await client.get("/api/v1/users/me", headers=_forge(good))).status == 200
    for headers in cases:
        await assert_problem(await client.get("/api/v1/users/me", headers=headers), 401)


async def test_alg_none_tokens_are_refused(client, make_user):
    user = await make_user()
    now = int(time.time())
    token = jwt.encode({"sub": str(user.id), "sid": user.session_id, "jti": "x", "iat": now, "exp": now + 60,
                        "typ": "access"}, key=None, algorithm="none")
    await assert_problem(await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}), 401)


async def test_deactivated_user_is_refused_at_once_and_cannot_log_in(client, db):
    await register(client)
    tokens = await login(client)
    await db.execute("UPDATE users SET is_active = false")
    await assert_problem(await client.get("/api/v1/users/me", headers=bearer(tokens)), 401)
    response = await client.post("/api/v1/auth/login",
                                 json={"email": "ada@example.com", "password": "correct horse battery"})
    await assert_problem(response, 403)
    await assert_problem(await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}),
                         401)


async def test_with_redis_down_auth_still_works_and_logout_still_sticks(aiohttp_client, settings, make_user):
    from launcher.devstack import free_port
    from web.app import create_app

    user = await make_user()
    client = await aiohttp_client(create_app(settings.with_(redis_url=f"redis://127.0.0.1:{free_port()}/0")))
    assert (await client.get("/api/v1/users/me", headers=user.headers)).status == 200
    assert (await client.post("/api/v1/auth/logout", headers=user.headers)).status == 204
    await assert_problem(await client.get("/api/v1/users/me", headers=user.headers), 401)
