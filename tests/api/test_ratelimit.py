"""Rate limits: every tier answers 429 + headers, proxies are believed only when trusted, limits live in Redis."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from tests.helpers import assert_problem, redis_round_trips
from shared.config import Settings
from launcher.devstack import RedisServer
from web import ratelimit
from web.app import create_app

WRONG = {"password": "not the password at all"}


def limited(settings: Settings, **overrides: Any) -> Settings:
    """Limits on, small enough to exhaust in a test; the tier under test is overridden smaller still."""
    values = dict(rate_limits=True, rate_limit_login="100 per 15 minutes", rate_limit_auth_address="100/hour",
                  rate_limit_auth_email="100/hour", rate_limit_api="100/minute", rate_limit_jobs="100/hour",
                  max_active_jobs=100)
    return settings.with_(**{**values, **overrides})


def assert_headers(response: Any, limit: int, remaining: int) -> None:
    assert response.headers["RateLimit-Limit"] == str(limit)
    assert response.headers["RateLimit-Remaining"] == str(remaining)
    assert 0 <= int(response.headers["RateLimit-Reset"]) <= 3600


async def assert_limited(response: Any, limit: int) -> dict[str, Any]:
    body = await assert_problem(response, 429)
    assert 1 <= int(response.headers["Retry-After"]) <= 3600
    assert_headers(response, limit, 0)
    return body


def rejections(limit: str) -> float:
    return REGISTRY.get_sample_value("taskdeck_ratelimit_rejections_total", {"limit": limit}) or 0.0


async def test_sixty_failed_logins_are_stopped_at_the_default_limit(aiohttp_client: Any, settings: Settings,
                                                                   make_user: Any) -> None:
    user = await make_user()
    client = await aiohttp_client(create_app(settings.with_(rate_limits=True)))  # the shipped defaults
    statuses = []
    for _ in range(60):
        response = await client.post("/api/v1/auth/login", json={"email": user.email, **WRONG})
        statuses.append(response.status)
        if response.status == 429:
            break
    assert statuses == [401] * 10 + [429]


async def test_login_failures_per_email(aiohttp_client: Any, settings: Settings, make_user: Any) -> None:
    ada, bob = await make_user("ada@example.com"), await make_user("bob@example.com")
    client = await aiohttp_client(create_app(limited(settings, rate_limit_login="3 per 15 minutes")))
    before = rejections("login")
    ok = await client.post("/api/v1/auth/login", json={"email": ada.email, "password": ada.password})
    assert ok.status == 200
    assert_headers(ok, 3, 3)  # a success costs nothing
    for remaining in (2, 1, 0):
        response = await client.post("/api/v1/auth/login", json={"email": ada.email, **WRONG})
        assert response.status == 401
        assert_headers(response, 3, remaining)
    # Used up: even the right password is refused now, and the address is case-insensitive like the account.
    right = await client.post("/api/v1/auth/login", json={"email": "ADA@example.com", "password": ada.password})
    body = await assert_limited(right, 3)
    assert "login" in body["detail"]
    assert rejections("login") == before + 1
    other = await client.post("/api/v1/auth/login", json={"email": bob.email, "password": bob.password})
    assert other.status == 200


async def test_auth_address_tier_covers_login_register_and_reset(aiohttp_client: Any, settings: Settings) -> None:
    client = await aiohttp_client(create_app(limited(settings, rate_limit_auth_address="4/hour")))
    calls = [("/api/v1/auth/register", {"email": "a@example.com", "password": "correct horse battery"}),
             ("/api/v1/auth/login", {"email": "b@example.com", **WRONG}),
             ("/api/v1/auth/password-reset", {"email": "c@example.com"}),
             ("/api/v1/auth/verify-email", {"token": "nope"})]
    for path, body in calls:
        response = await client.post(path, json=body)
        assert response.status in (201, 401, 202, 422), await response.text()
        assert "RateLimit-Remaining" in response.headers
    for path, body in calls + [("/api/v1/auth/password-reset/confirm", {"token": "x", "password": "long enough!"})]:
        await assert_limited(await client.post(path, json=body), 4)


async def test_register_and_reset_per_target_email(aiohttp_client: Any, settings: Settings,
                                                   make_user: Any) -> None:
    await make_user("taken@example.com")
    client = await aiohttp_client(create_app(limited(settings, rate_limit_auth_email="2/hour")))
    for expected in (202, 202):
        response = await client.post("/api/v1/auth/password-reset", json={"email": "taken@example.com"})
        assert response.status == expected
    await assert_limited(await client.post("/api/v1/auth/password-reset", json={"email": "Taken@example.com"}), 2)
    # Another address is its own bucket; register counts per email as well (409s included).
    assert (await client.post("/api/v1/auth/password-reset", json={"email": "other@example.com"})).status == 202
    register = {"email": "new@example.com", "password": "correct horse battery"}
    assert (await client.post("/api/v1/auth/register", json=register)).status == 201
    assert (await client.post("/api/v1/auth/register", json=register)).status == 409
    await assert_limited(await client.post("/api/v1/auth/register", json=register), 2)


async def test_api_tier_per_user_on_every_api_route(aiohttp_client: Any, settings: Settings, make_user: Any) -> None:
    app = create_app(limited(settings, rate_limit_api="3/minute"))
    client = await aiohttp_client(app)
    ada, bob = await make_user(), await make_user()
    for remaining in (2, 1, 0):
        response = await client.get("/api/v1/users/me", headers=ada.headers)
        assert response.status == 200
        assert_headers(response, 3, remaining)
    # Every API route (methods and templated paths from the router itself) now refuses ada before doing work.
    routes = [(r.method, r.resource.canonical) for r in app.router.routes()
              if r.resource is not None and r.resource.canonical.startswith("/api/") and r.method != "HEAD"
              and r.name not in ratelimit.AUTH_ADDRESS_ROUTES]
    assert len(routes) > 20
    for method, template in routes:
        path = template.replace("{id}", "1")
        await assert_limited(await client.request(method, path, headers=ada.headers, json={}), 3)
    assert (await client.get("/api/v1/users/me", headers=bob.headers)).status == 200
    # No token, no per-user limit: the 401 is the answer.
    assert (await client.get("/api/v1/users/me")).status == 401


async def test_jobs_tier_and_the_cap_on_active_jobs(aiohttp_client: Any, settings: Settings, make_user: Any,
                                                    db: Any) -> None:
    client = await aiohttp_client(create_app(limited(settings, rate_limit_jobs="3/hour", max_active_jobs=2)))
    user = await make_user()
    export = {"format": "csv"}
    first = await client.post("/api/v1/exports", json=export, headers=user.headers)
    assert first.status == 202
    assert_headers(first, 3, 2)
    assert (await client.post("/api/v1/reports", json={"kind": "summary"}, headers=user.headers)).status == 202
    # Two queued (no worker runs here): the third is refused by the cap, with a clear detail.
    capped = await client.post("/api/v1/exports", json=export, headers=user.headers)
    body = await assert_problem(capped, 429)
    assert "queued or running" in body["detail"] and int(capped.headers["Retry-After"]) >= 1
    assert await db.fetchval("SELECT count(*) FROM jobs") == 2
    await db.execute("UPDATE jobs SET status = 'succeeded' WHERE id = (SELECT min(id) FROM jobs)")
    # A slot is free, but the hourly tier is spent now (the capped request counted too).
    await assert_limited(await client.post("/api/v1/exports", json=export, headers=user.headers), 3)
    assert await db.fetchval("SELECT count(*) FROM jobs") == 2


async def test_limits_are_shared_by_two_app_instances(aiohttp_client: Any, settings: Settings,
                                                      make_user: Any) -> None:
    config = limited(settings, rate_limit_api="4/minute")
    one, two = await aiohttp_client(create_app(config)), await aiohttp_client(create_app(config))
    user = await make_user()
    for client, remaining in ((one, 3), (two, 2), (one, 1), (two, 0)):
        response = await client.get("/api/v1/users/me", headers=user.headers)
        assert response.status == 200
        assert_headers(response, 4, remaining)
    await assert_limited(await one.get("/api/v1/users/me", headers=user.headers), 4)
    await assert_limited(await two.get("/api/v1/users/me", headers=user.headers), 4)


async def reset_from(client: Any, n: int, forwarded_for: str | None = None) -> list[int]:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    statuses = []
    for i in range(n):
        response = await client.post("/api/v1/auth/password-reset", json={"email": f"x{i}@example.com"},
                                     headers=headers)
        statuses.append(response.status)
    return statuses


@pytest.mark.parametrize("trusted", [(), ("10.0.0.0/8",)])
async def test_forwarded_for_is_ignored_unless_the_peer_is_trusted(aiohttp_client: Any, settings: Settings,
                                                                   trusted: tuple[str, ...]) -> None:
    """No TRUSTED_PROXIES, or a peer (127.0.0.1) outside them: a spoofed header changes nothing."""
    client = await aiohttp_client(create_app(limited(settings, rate_limit_auth_address="2/hour",
                                                     trusted_proxies=trusted)))
    assert await reset_from(client, 2, "203.0.113.1") == [202, 202]
    assert await reset_from(client, 1, "203.0.113.2") == [429]
    assert await reset_from(client, 1) == [429]


async def test_trusted_proxy_forwarded_for_names_the_client(aiohttp_client: Any, settings: Settings) -> None:
    client = await aiohttp_client(create_app(limited(settings, rate_limit_auth_address="2/hour",
                                                     trusted_proxies=("127.0.0.1/32", "10.0.0.0/8"))))
    assert await reset_from(client, 2, "203.0.113.1") == [202, 202]
    assert await reset_from(client, 1, "203.0.113.1") == [429]
    # Another client behind the same proxy has its own bucket, also through a second trusted hop.
    assert await reset_from(client, 2, "198.51.100.7, 10.1.2.3") == [202, 202]
    # A client cannot pick an address by prepending one: the rightmost untrusted hop is the client.
    assert await reset_from(client, 1, "192.0.2.99, 203.0.113.1") == [429]
    # Only trusted hops: the farthest one is the client.
    assert await reset_from(client, 2, "10.9.9.9") == [202, 202]


async def test_rate_limits_off(client: Any, make_user: Any) -> None:
    user = await make_user()
    for _ in range(15):
        response = await client.post("/api/v1/auth/login", json={"email": user.email, **WRONG})
        assert response.status == 401
        assert "RateLimit-Limit" not in response.headers
    response = await client.get("/api/v1/users/me", headers=user.headers)
    assert response.status == 200 and "RateLimit-Limit" not in response.headers


async def test_fail_open_when_redis_stops(aiohttp_client: Any, settings: Settings, make_user: Any, tmp_path: Any,
                                          caplog: Any) -> None:
    own = RedisServer(tmp_path / "redis")
    own.start()
    try:
        client = await aiohttp_client(create_app(limited(settings, redis_url=own.url, rate_limit_api="50/minute")))
        user = await make_user()
        response = await client.get("/api/v1/users/me", headers=user.headers)
        assert_headers(response, 50, 49)
        own.stop()
        before = REGISTRY.get_sample_value("taskdeck_ratelimit_errors_total") or 0.0
        caplog.set_level(logging.WARNING, logger="app.web.ratelimit")
        for _ in range(5):
            response = await client.get("/api/v1/users/me", headers=user.headers)
            assert response.status == 200, await response.text()
            assert "RateLimit-Limit" not in response.headers
        failed = await client.post("/api/v1/auth/login", json={"email": user.email, **WRONG})
        assert failed.status == 401
        assert (REGISTRY.get_sample_value("taskdeck_ratelimit_errors_total") or 0.0) >= before + 5
        logged = [r for r in caplog.records if r.name == "app.web.ratelimit"]
        assert len(logged) == 1 and "letting requests through" in logged[0].getMessage()
    finally:
        own.stop()


async def test_the_active_jobs_cap_holds_under_concurrent_requests(aiohttp_client: Any, settings: Settings,
                                                                   make_user: Any, db: Any) -> None:
    client = await aiohttp_client(create_app(limited(settings, max_active_jobs=2)))
    user = await make_user()
    responses = await asyncio.gather(*(client.post("/api/v1/exports", json={"format": "csv"}, headers=user.headers)
                                       for _ in range(6)))
    assert sorted(r.status for r in responses) == [202, 202, 429, 429, 429, 429]
    assert await db.fetchval("SELECT count(*) FROM jobs WHERE owner_id = $1", user.id) == 2


async def test_html_login_and_register_share_the_api_limiter(aiohttp_client: Any, settings: Settings,
                                                             make_user: Any) -> None:
    """The browser forms count against the same tiers and keys as the JSON API (one limiter, not two)."""
    from tests.pages.test_pages_session import PASSWORD, csrf_of, sign_in

    client = await aiohttp_client(create_app(limited(settings, rate_limit_login="3 per 15 minutes",
                                                     rate_limit_auth_email="2/hour")))
    user = await make_user()
    for _ in range(2):
        assert (await sign_in(client, user.email, password="wrong password 1")).status == 401
    api = await client.post("/api/v1/auth/login", json={"email": user.email, "password": "wrong password 2"})
    assert api.status == 401
    page = await client.get("/login")  # the right password now, but the email's failures are used up
    refused = await client.post("/login", data={"email": user.email, "password": PASSWORD,
                                                "csrf_token": csrf_of(await page.text())},
                                headers={"Accept": "text/html"}, allow_redirects=False)
    assert refused.status == 429 and "text/html" in refused.content_type  # a browser gets the 429 page
    assert int(refused.headers["Retry-After"]) > 0
    for attempt in range(3):
        page = await client.get("/register")
        response = await client.post("/register", data={"email": "new@example.com", "password": "long enough 1",
                                                        "name": "N", "csrf_token": csrf_of(await page.text())},
                                     allow_redirects=False)
        assert response.status == (429 if attempt == 2 else 303 if attempt == 0 else 409), attempt


async def test_the_api_tier_and_the_auth_reads_cost_one_redis_round_trip(aiohttp_client: Any, settings: Settings,
                                                                        make_user: Any) -> None:
    """Once the session is remembered, an authenticated API request talks to Redis exactly once."""
    app = create_app(limited(settings, rate_limit_api="5/minute"))
    client = await aiohttp_client(app)
    user = await make_user()
    for remaining in (4, 3):  # the first asks the primary and remembers the session
        assert_headers(await client.get("/api/v1/users/me", headers=user.headers), 5, remaining)
    response, taken = await redis_round_trips(app, lambda: client.get("/api/v1/users/me", headers=user.headers))
    assert response.status == 200
    assert_headers(response, 5, 2)
    assert taken == 1


async def test_the_api_tier_holds_when_redis_forgets_the_scripts(aiohttp_client: Any, settings: Settings,
                                                                make_user: Any) -> None:
    """The pipelined Lua scripts are the library's; a Redis that lost them (restart, SCRIPT FLUSH) gets them
    loaded again and counts exactly as before."""
    client = await aiohttp_client(create_app(limited(settings, rate_limit_api="3/minute")))
    user = await make_user()
    redis = Redis.from_url(settings.redis_url)
    try:
        for remaining in (2, 1, 0):
            await redis.script_flush()
            response = await client.get("/api/v1/users/me", headers=user.headers)
            assert response.status == 200
            assert_headers(response, 3, remaining)
        await redis.script_flush()
        await assert_limited(await client.get("/api/v1/users/me", headers=user.headers), 3)
    finally:
        await redis.aclose()


async def test_a_logged_out_token_is_refused_with_the_limiter_on(aiohttp_client: Any, settings: Settings,
                                                                make_user: Any) -> None:
    client = await aiohttp_client(create_app(limited(settings)))
    user = await make_user()
    for _ in range(2):
        assert (await client.get("/api/v1/users/me", headers=user.headers)).status == 200
    assert (await client.post("/api/v1/auth/logout", headers=user.headers)).status == 204
    await assert_problem(await client.get("/api/v1/users/me", headers=user.headers), 401)
