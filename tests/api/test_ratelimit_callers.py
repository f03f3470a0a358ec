"""Limits that hold for every kind of caller and under bursts; bcrypt only after the cheap checks, in a queue
that anonymous requests cannot fill."""
from __future__ import annotations

import asyncio
import threading
from typing import Any

import bcrypt
import pytest
from redis.asyncio import Redis

from shared import security
from tests.api.test_races import reset_token
from tests.api.test_ratelimit import assert_headers, limited
from tests.helpers import assert_problem
from tests.pages.test_pages_session import csrf_of, sign_in
from web.app import create_app

WRONG = "not the password at all"


class BcryptCalls:
    """Counts the calls that reach the bcrypt pool (each costs a hash)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = security._in_bcrypt_pool

        async def counted(function: Any, *args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await original(function, *args, **kwargs)

        monkeypatch.setattr(security, "_in_bcrypt_pool", counted)


async def signed_in_with_csrf(client: Any, user: Any) -> str:
    response = await sign_in(client, user.email, user.password)
    assert response.status == 303
    return csrf_of(await (await client.get("/account")).text())


# --- bcrypt after the cheap checks, and never for free -----------------------------------------------------

async def test_the_reset_form_checks_the_token_before_any_bcrypt(client, make_user, db, monkeypatch):
    user = await make_user()
    form = await client.get("/reset-password?token=whatever")
    csrf = csrf_of(await form.text())
    calls = BcryptCalls(monkeypatch)
    response = await client.post("/reset-password", data={"csrf_token": csrf, "token": "not a live token",
                                                          "password": "a fine new password"})
    assert response.status == 422 and "invalid" in await response.text()
    assert calls.count == 0
    live = await client.post("/reset-password", data={"csrf_token": csrf, "token": await reset_token(db, user.id),
                                                      "password": "a fine new password"})
    assert live.status == 200 and calls.count == 1  # the real one hashes, once


async def _bcrypt_routes(client: Any, db: Any, user: Any) -> list[tuple[str, Any]]:
    """(name, coroutine function sending one request) for every route that can reach bcrypt."""
    csrf = await signed_in_with_csrf(client, user)
    new = "a brand new password"

    async def api(path: str, body: dict[str, Any], method: str = "POST", **kw: Any) -> Any:
        return await client.request(method, path, json=body, **kw)

    return [
        ("api login", lambda: api("/api/v1/auth/login", {"email": user.email, "password": WRONG})),
        ("api register", lambda: api("/api/v1/auth/register", {"email": "new@example.com", "password": new})),
        ("api reset", lambda: api("/api/v1/auth/password-reset/confirm", {"token": "dead", "password": new})),
        ("api password change", lambda: api("/api/v1/users/me", {"current_password": WRONG, "password": new},
                                            "PATCH", headers=user.headers)),
        ("page login", lambda: client.post("/login", data={"csrf_token": csrf, "email": "x@example.com",
                                                           "password": WRONG})),
        ("page register", lambda: client.post("/register", data={"csrf_token": csrf, "email": "y@example.com",
                                                                 "password": new})),
        ("page reset", lambda: client.post("/reset-password", data={"csrf_token": csrf, "token": "dead",
                                                                    "password": new})),
        ("page password change", lambda: client.post("/account", data={
            "csrf_token": csrf, "action": "password", "current_password": WRONG, "password": new})),
    ]


async def test_every_route_that_can_reach_bcrypt_is_under_the_address_limit(aiohttp_client, settings, make_user,
                                                                           db):
    user = await make_user()
    redis = Redis.from_url(settings.redis_url)
    try:
        for index in range(8):
            await redis.flushdb()
            client = await aiohttp_client(create_app(limited(settings, rate_limit_auth_address="3/hour")))
            name, send = (await _bcrypt_routes(client, db, user))[index]  # signing in spends one
            statuses = [(await send()).status for _ in range(3)]
            assert 429 not in statuses[:2] and statuses[2] == 429, (name, statuses)
            await client.close()
    finally:
        await redis.aclose()


async def test_a_full_bcrypt_queue_answers_503_to_strangers_and_keeps_room_for_users(client, make_user,
                                                                                  monkeypatch):
    user, other = await make_user(), await make_user()
    release, started = threading.Event(), threading.Event()
    real_checkpw = bcrypt.checkpw

    def slow_checkpw(password: bytes, hashed: bytes) -> bool:
        started.set()
        release.wait(20)
        return real_checkpw(password, hashed)

    monkeypatch.setattr(security.bcrypt, "checkpw", slow_checkpw)
    anonymous_places = security.BCRYPT_QUEUE - security.BCRYPT_RESERVED
    try:
        queued = [asyncio.create_task(client.post("/api/v1/auth/login", json={"email": user.email,
                                                                              "password": WRONG}))
                  for _ in range(anonymous_places)]
        for _ in range(500):
            if security._bcrypt_queue.in_flight >= anonymous_places:
                break
            await asyncio.sleep(0.01)
        assert security._bcrypt_queue.in_flight == anonymous_places
        refused = await client.post("/api/v1/auth/login", json={"email": user.email, "password": WRONG})
        await assert_problem(refused, 503)
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        # A signed-in password change still gets a place.
        change = asyncio.create_task(client.patch("/api/v1/users/me", headers=other.headers, json={
            "current_password": other.password, "password": "a brand new password"}))
        for _ in range(500):
            if security._bcrypt_queue.in_flight > anonymous_places:
                break
            await asyncio.sleep(0.01)
        assert security._bcrypt_queue.in_flight == anonymous_places + 1
    finally:
        release.set()
    assert [r.status for r in await asyncio.gather(*queued)] == [401] * anonymous_places
    assert (await change).status == 200
    assert security._bcrypt_queue.in_flight == 0


# --- limits for cookie callers and bursts ------------------------------------------------------------------

async def test_cookie_callers_of_the_api_are_counted_in_the_api_tier(aiohttp_client, settings, make_user):
    client = await aiohttp_client(create_app(limited(settings, rate_limit_api="3/minute")))
    user = await make_user()
    await signed_in_with_csrf(client, user)
    for remaining in (2, 1, 0):
        response = await client.get("/api/v1/tasks")  # the session cookie only, as the pages' JavaScript
        assert response.status == 200, await response.text()
        assert_headers(response, 3, remaining)
    refused = await client.get("/api/v1/tasks")
    await assert_problem(refused, 429)
    assert "api" in (await refused.json())["detail"]
    # The same user with a bearer token shares the tier: it is per user, not per credential.
    await assert_problem(await client.get("/api/v1/tasks", headers=user.headers), 429)


async def test_cookie_callers_are_counted_in_the_jobs_tier(aiohttp_client, settings, make_user):
    client = await aiohttp_client(create_app(limited(settings, rate_limit_jobs="2/hour")))
    user = await make_user()
    csrf = await signed_in_with_csrf(client, user)
    for remaining in (1, 0):
        response = await client.post("/api/v1/exports", json={"format": "csv"}, headers={"X-CSRF-Token": csrf})
        assert response.status == 202, await response.text()
        assert response.headers["RateLimit-Remaining"] == str(remaining)
    refused = await client.post("/api/v1/exports", json={"format": "csv"}, headers={"X-CSRF-Token": csrf})
    await assert_problem(refused, 429)
    assert "jobs" in (await refused.json())["detail"]


async def test_a_burst_of_cookie_calls_gets_exactly_the_limit(aiohttp_client, settings, make_user):
    client = await aiohttp_client(create_app(limited(settings, rate_limit_api="5/minute")))
    await signed_in_with_csrf(client, await make_user())
    responses = await asyncio.gather(*(client.get("/api/v1/tasks") for _ in range(12)))
    assert sorted(r.status for r in responses) == [200] * 5 + [429] * 7


async def test_a_burst_of_wrong_passwords_reaches_bcrypt_only_up_to_the_limit(aiohttp_client, settings, make_user,
                                                                             monkeypatch):
    user = await make_user()
    client = await aiohttp_client(create_app(limited(settings, rate_limit_login="10 per 15 minutes")))
    calls = BcryptCalls(monkeypatch)
    monkeypatch.setattr(security, "BCRYPT_QUEUE", 100)  # this test is about the limit, not the queue's 503
    responses = await asyncio.gather(*(client.post("/api/v1/auth/login", json={"email": user.email,
                                                                                 "password": WRONG})
                                       for _ in range(40)))
    assert sorted(r.status for r in responses) == [401] * 10 + [429] * 30
    assert calls.count == 10
    # Same through the login form, from another address's point of view the email is what is limited.
    await assert_problem(await client.post("/api/v1/auth/login", json={"email": user.email,
                                                                       "password": user.password}), 429)


async def test_a_successful_login_gives_its_reserved_attempt_back(aiohttp_client, settings, make_user):
    user = await make_user()
    client = await aiohttp_client(create_app(limited(settings, rate_limit_login="3 per 15 minutes")))
    for _ in range(5):
        ok = await client.post("/api/v1/auth/login", json={"email": user.email, "password": user.password})
        assert ok.status == 200
        assert_headers(ok, 3, 3)
    for remaining in (2, 1, 0):
        failed = await client.post("/api/v1/auth/login", json={"email": user.email, "password": WRONG})
        assert failed.status == 401
        assert_headers(failed, 3, remaining)
