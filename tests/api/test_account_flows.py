"""Email verification, password reset and the caller's own account."""
from __future__ import annotations

import json

import pytest

from tests.helpers import assert_problem, bearer, login, mailed_tokens, register, request_reset


async def _mailed_token(db, template: str) -> str:
    context = await db.fetchval("SELECT context FROM email_outbox WHERE template = $1 ORDER BY id DESC LIMIT 1",
                                template)
    return json.loads(context)["token"]


async def test_verify_email_with_the_mailed_token(client, db):
    user = await register(client)
    token = await _mailed_token(db, "verify_email")
    assert (await client.post("/api/v1/auth/verify-email", json={"token": token})).status == 204
    tokens = await login(client)
    me = await (await client.get("/api/v1/users/me", headers=bearer(tokens))).json()
    assert me["id"] == user["id"] and me["email_verified"] is True
    # Single use.
    await assert_problem(await client.post("/api/v1/auth/verify-email", json={"token": token}), 401)


@pytest.mark.parametrize("body, status", [({"token": "bogus"}, 401), ({"token": ""}, 401),
                                          ({"token": "x" * 10240}, 401), ({"token": "\u0000"}, 401),
                                          ({}, 422), ({"token": 1}, 422), ({"token": None}, 422)])
async def test_verify_email_rejects_bad_tokens(client, body, status):
    """Only a missing or non-string token is a validation error; any string that is not live is 401."""
    body_out = await assert_problem(await client.post("/api/v1/auth/verify-email", json=body), status)
    assert status == 401 or list(body_out["errors"]) == ["token"]


async def test_expired_verification_token_is_refused(client, db):
    await register(client)
    token = await _mailed_token(db, "verify_email")
    await db.execute("UPDATE one_time_tokens SET expires_at = now() - interval '1 minute'")
    await assert_problem(await client.post("/api/v1/auth/verify-email", json={"token": token}), 401)


async def test_password_reset_is_202_whether_or_not_the_email_exists(client, db, settings, stack):
    await register(client)
    await request_reset(client, settings, "ada@example.com")
    await request_reset(client, settings, "nobody@example.com")
    assert await db.fetchval("SELECT count(*) FROM email_outbox WHERE template = 'password_reset'") == 1
    assert len(mailed_tokens(stack, "/reset-password")) == 1


async def test_password_reset_confirm_changes_the_password_and_ends_every_session(client, db, settings, stack):
    await register(client)
    session_a, session_b = await login(client), await login(client)
    await request_reset(client, settings)
    [token] = mailed_tokens(stack, "/reset-password")
    response = await client.post("/api/v1/auth/password-reset/confirm",
                                 json={"token": token, "password": "a brand new secret"})
    assert response.status == 204
    for tokens in (session_a, session_b):
        await assert_problem(await client.get("/api/v1/users/me", headers=bearer(tokens)), 401)
        await assert_problem(await client.post("/api/v1/auth/refresh",
                                               json={"refresh_token": tokens["refresh_token"]}), 401)
    old_password = {"email": "ada@example.com", "password": "correct horse battery"}
    await assert_problem(await client.post("/api/v1/auth/login", json=old_password), 401)
    assert (await login(client, password="a brand new secret"))["access_token"]
    # The token is spent.
    again = await client.post("/api/v1/auth/password-reset/confirm", json={"token": token, "password": "another one1"})
    await assert_problem(again, 401)


async def test_only_the_newest_reset_link_works(client, db, settings, stack):
    await register(client)
    await request_reset(client, settings)
    await request_reset(client, settings)
    old, new = mailed_tokens(stack, "/reset-password")
    assert old != new
    response = await client.post("/api/v1/auth/password-reset/confirm", json={"token": old, "password": "new secret 1"})
    await assert_problem(response, 401)


async def test_password_reset_confirm_validates_the_new_password(client, db, settings, stack):
    await register(client)
    await request_reset(client, settings)
    [token] = mailed_tokens(stack, "/reset-password")
    response = await client.post("/api/v1/auth/password-reset/confirm", json={"token": token, "password": "short"})
    await assert_problem(response, 422, "password")
    # The failed attempt did not spend the token.
    ok = await client.post("/api/v1/auth/password-reset/confirm", json={"token": token, "password": "long enough"})
    assert ok.status == 204


async def test_password_reset_for_a_deactivated_user_sends_nothing(client, db, settings, stack):
    await register(client)
    await db.execute("UPDATE users SET is_active = false")
    await request_reset(client, settings)
    assert await db.fetchval("SELECT count(*) FROM email_outbox WHERE template = 'password_reset'") == 0
    assert mailed_tokens(stack, "/reset-password") == []


async def test_update_me_changes_the_name(client, make_user):
    user = await make_user()
    response = await client.patch("/api/v1/users/me", json={"name": "  Grace  "}, headers=user.headers)
    assert response.status == 200 and (await response.json())["name"] == "Grace"


async def test_new_password_needs_the_current_one(client, make_user):
    user = await make_user()
    missing = await client.patch("/api/v1/users/me", json={"password": "new password 1"}, headers=user.headers)
    await assert_problem(missing, 422, "current_password")
    wrong = await client.patch("/api/v1/users/me", json={"password": "new password 1", "current_password": "nope"},
                               headers=user.headers)
    await assert_problem(wrong, 422, "current_password")


async def test_password_change_keeps_this_session_and_ends_the_others(client):
    await register(client)
    this, other = await login(client), await login(client)
    response = await client.patch("/api/v1/users/me", headers=bearer(this),
                                  json={"password": "new password 1", "current_password": "correct horse battery"})
    assert response.status == 200
    assert (await client.get("/api/v1/users/me", headers=bearer(this))).status == 200
    await assert_problem(await client.get("/api/v1/users/me", headers=bearer(other)), 401)
    assert await login(client, password="new password 1")


@pytest.mark.parametrize("body, field", [
    ({"role": "admin"}, "role"), ({"is_active": False}, "is_active"), ({"email": "x@example.com"}, "email"),
    ({"name": 5}, "name"), ({"name": "n" * 101}, "name"), ({"password": "short", "current_password": "x"}, "password"),
])
async def test_update_me_rejects_forbidden_and_bad_fields(client, make_user, body, field):
    user = await make_user()
    await assert_problem(await client.patch("/api/v1/users/me", json=body, headers=user.headers), 422, field)


async def test_me_requires_a_token(client):
    await assert_problem(await client.get("/api/v1/users/me"), 401)
    await assert_problem(await client.patch("/api/v1/users/me", json={"name": "x"}), 401)
