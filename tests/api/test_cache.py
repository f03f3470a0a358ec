"""The task list / stats cache: never stale after a write, on one app or two; Redis trouble costs speed only."""
from __future__ import annotations

import asyncio
import itertools
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from shared.cache import OwnerCache
from shared.config import Settings
from launcher.devstack import RedisServer, free_port
from tests.helpers import LIMITER_ON, redis_round_trips
from web.app import create_app


def counter(name: str, cache: str) -> float:
    return REGISTRY.get_sample_value(name, {"cache": cache}) or 0.0


async def read(client: Any, headers: dict[str, str], owner: int | None = None) -> tuple[Any, Any]:
    query = f"?owner_id={owner}" if owner else ""
    listing = await client.get(f"/api/v1/tasks{query}", headers=headers)
    stats = await client.get(f"/api/v1/tasks/stats{query}", headers=headers)
    assert listing.status == 200 and stats.status == 200
    return await listing.json(), await stats.json()


async def test_second_read_is_a_hit(client: Any, make_user: Any) -> None:
    user = await make_user()
    await client.post("/api/v1/tasks", json={"title": "one"}, headers=user.headers)
    misses, hits = counter("taskdeck_cache_misses_total", "task_list"), counter("taskdeck_cache_hits_total", "task_list")
    stat_hits = counter("taskdeck_cache_hits_total", "task_stats")
    first, second = await read(client, user.headers), await read(client, user.headers)
    assert first == second and first[0]["items"][0]["title"] == "one"
    assert counter("taskdeck_cache_misses_total", "task_list") == misses + 1
    assert counter("taskdeck_cache_hits_total", "task_list") == hits + 1
    assert counter("taskdeck_cache_hits_total", "task_stats") == stat_hits + 1
    # Filtered or later pages are not cached (and so never counted).
    await client.get("/api/v1/tasks?status=todo", headers=user.headers)
    assert counter("taskdeck_cache_hits_total", "task_list") == hits + 1


@pytest.mark.parametrize("limiter", [False, True], ids=["own reads", "read in the limiter's round trip"])
async def test_every_write_path_is_seen_at_once_on_two_apps(aiohttp_client: Any, settings: Settings,
                                                            make_user: Any, limiter: bool) -> None:
    settings = settings.with_(**LIMITER_ON) if limiter else settings
    one, two = await aiohttp_client(create_app(settings)), await aiohttp_client(create_app(settings))
    oracle = await aiohttp_client(create_app(settings.with_(cache=False)))
    ada, root = await make_user(), await make_user(role="admin")
    due = (datetime.now(timezone.utc) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    task_ids: list[int] = []
    keys = itertools.count()

    async def create(client: Any, who: Any) -> None:
        response = await client.post("/api/v1/tasks", json={"title": f"t{len(task_ids)}", "due_at": due},
                                     headers={**ada.headers, "Idempotency-Key": f"k{next(keys)}"})
        assert response.status == 201
        task_ids.append((await response.json())["id"])

    async def update(client: Any, who: Any) -> None:
        response = await client.patch(f"/api/v1/tasks/{task_ids[-1]}", json={"status": "done", "title": "done"},
                                      headers=who.headers)
        assert response.status == 200

    async def delete(client: Any, who: Any) -> None:
        response = await client.delete(f"/api/v1/tasks/{task_ids.pop(0)}", headers=who.headers)
        assert response.status == 204

    plan = [create, create, update, create, delete, update, create, delete, create, update, delete, create]
    for step, action in enumerate(plan * 2):
        writer, other = (one, two) if step % 2 else (two, one)
        await read(one, ada.headers), await read(two, ada.headers), await read(two, root.headers, ada.id)
        await action(writer, root if step % 3 == 0 else ada)  # every third write is an admin's
        expected = await read(oracle, ada.headers)
        for client in (writer, other):
            assert await read(client, ada.headers) == expected, (step, action.__name__)
            assert await read(client, root.headers, ada.id) == expected, (step, action.__name__)


async def test_a_write_during_a_fill_is_never_hidden(settings: Settings) -> None:
    """The fill race: rows read before a write must not be served after it."""
    redis = Redis.from_url(settings.redis_url)
    cache = OwnerCache(redis, ttl=60)
    try:
        async def racing_fill() -> tuple[str, None]:
            answer = "before the write"
            await cache.invalidate(7)  # the write commits and invalidates while this fill runs
            return answer, None

        assert await cache.get(7, "task_list", racing_fill) == "before the write"

        async def fresh() -> tuple[str, None]:
            return "after the write", None

        assert await cache.get(7, "task_list", fresh) == "after the write"
        assert await cache.get(7, "task_list", fresh) == "after the write"
    finally:
        await redis.aclose()


async def test_an_evicted_version_key_never_resurrects_old_entries(settings: Settings) -> None:
    redis = Redis.from_url(settings.redis_url)
    cache = OwnerCache(redis, ttl=60)
    try:
        async def old() -> tuple[str, None]:
            return "old", None

        async def new() -> tuple[str, None]:
            return "new", None

        assert await cache.get(1, "task_stats", old) == "old"
        await cache.invalidate(1)
        await redis.delete(OwnerCache._version_key(1))  # eviction (maxmemory) or expiry
        assert await cache.get(1, "task_stats", new) == "new"
    finally:
        await redis.aclose()


async def test_failed_invalidation_bypasses_the_cache_until_retried(settings: Settings) -> None:
    good = Redis.from_url(settings.redis_url)
    unreachable = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    cache = OwnerCache(good, ttl=60)
    errors = counter("taskdeck_cache_errors_total", "invalidate")
    try:
        async def old() -> tuple[str, None]:
            return "old", None

        async def new() -> tuple[str, None]:
            return "new", None

        assert await cache.get(3, "task_list", old) == "old"
        cache.redis = unreachable  # this process loses Redis just as a write commits
        await cache.invalidate(3)
        assert cache.pending == {3}
        assert counter("taskdeck_cache_errors_total", "invalidate") == errors + 1
        cache.redis = good  # Redis is back, old entry and all: the pending invalidation goes first
        assert await cache.get(3, "task_list", new) == "new"
        assert cache.pending == set()
        assert await cache.get(3, "task_list", old) == "new"  # and the fresh answer is cached
    finally:
        await good.aclose()
        await unreachable.aclose()


async def test_stats_expire_when_a_task_falls_due(client: Any, make_user: Any) -> None:
    user = await make_user()
    soon = (datetime.now(timezone.utc) + timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    await client.post("/api/v1/tasks", json={"title": "soon", "due_at": soon}, headers=user.headers)
    stats = await (await client.get("/api/v1/tasks/stats", headers=user.headers)).json()
    assert stats["overdue"] == 0
    deadline = time.monotonic() + 30  # CACHE_TTL is 60 s: only the due-time bound can make this pass
    while stats["overdue"] == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        stats = await (await client.get("/api/v1/tasks/stats", headers=user.headers)).json()
    assert stats["overdue"] == 1


async def test_reads_stay_correct_with_redis_down(aiohttp_client: Any, settings: Settings, make_user: Any,
                                                  tmp_path: Any) -> None:
    own = RedisServer(tmp_path / "redis")
    own.start()
    try:
        client = await aiohttp_client(create_app(settings.with_(redis_url=own.url)))
        user = await make_user()
        await client.post("/api/v1/tasks", json={"title": "a"}, headers=user.headers)
        await read(client, user.headers)
        own.stop()
        errors = counter("taskdeck_cache_errors_total", "task_list")
        invalidations = counter("taskdeck_cache_errors_total", "invalidate")
        assert (await client.post("/api/v1/tasks", json={"title": "b"}, headers=user.headers)).status == 201
        assert counter("taskdeck_cache_errors_total", "invalidate") == invalidations + 1
        listing, stats = await read(client, user.headers)
        assert [t["title"] for t in listing["items"]] == ["b", "a"] and stats["by_status"]["todo"] == 2
        other = await make_user()  # not waiting for an invalidation: tries the cache, fails, reads the database
        listing, _ = await read(client, other.headers)
        assert listing["items"] == []
        assert counter("taskdeck_cache_errors_total", "task_list") == errors + 1
    finally:
        own.stop()


async def test_a_hit_is_one_round_trip_and_an_older_fill_never_wins(settings: Settings) -> None:
    redis = Redis.from_url(settings.redis_url)
    cache = OwnerCache(redis, ttl=60)
    try:
        async def answer(text: str) -> tuple[str, None]:
            return text, None

        assert await cache.get(11, "task_list", lambda: answer("first")) == "first"
        sent = 0
        original = redis.execute_command

        async def counting(*args: Any, **kwargs: Any) -> Any:
            nonlocal sent
            sent += 1
            return await original(*args, **kwargs)

        redis.execute_command = counting  # type: ignore[method-assign]
        try:
            assert await cache.get(11, "task_list", lambda: answer("unused")) == "first"
        finally:
            redis.execute_command = original  # type: ignore[method-assign]
        assert sent == 1
        # A fill that read its token before a write and stores after a newer fill: it lands, but with
        # the old token, so the next read misses instead of serving the pre-write rows.
        old_token = await redis.get(OwnerCache._version_key(11))
        await cache.invalidate(11)
        assert await cache.get(11, "task_list", lambda: answer("after")) == "after"
        await redis.set("taskdeck:cache:11:task_list:", old_token + b"\nbefore", ex=60)
        assert await cache.get(11, "task_list", lambda: answer("after again")) == "after again"
    finally:
        await redis.aclose()


async def test_the_cached_first_page_costs_one_redis_round_trip(aiohttp_client: Any, settings: Settings,
                                                               make_user: Any) -> None:
    """Rate limit, denylist, auth version and the cache entry: one pipeline, nothing else."""
    app = create_app(settings.with_(**LIMITER_ON))
    client = await aiohttp_client(app)
    user = await make_user()
    await client.post("/api/v1/tasks", json={"title": "one"}, headers=user.headers)
    for _ in range(2):  # remembers the session, fills the cache
        first = await (await client.get("/api/v1/tasks", headers=user.headers)).json()
    hits = counter("taskdeck_cache_hits_total", "task_list")
    response, taken = await redis_round_trips(app, lambda: client.get("/api/v1/tasks", headers=user.headers))
    assert response.status == 200 and await response.json() == first
    assert counter("taskdeck_cache_hits_total", "task_list") == hits + 1
    assert taken == 1


async def test_values_read_before_a_retried_invalidation_are_not_used(settings: Settings) -> None:
    good = Redis.from_url(settings.redis_url)
    unreachable = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    cache = OwnerCache(good, ttl=60)
    try:
        async def answer(text: str) -> tuple[str, None]:
            return text, None

        assert await cache.get(12, "task_list", lambda: answer("old")) == "old"
        version_key, key = cache.keys(12, "task_list")
        early = dict(zip((version_key, key), await good.mget(version_key, key)))  # read before the flush
        cache.redis = unreachable
        await cache.invalidate(12)  # committed write, invalidation pending
        cache.redis = good
        assert await cache.get(12, "task_list", lambda: answer("new"), early=early) == "new"
        assert cache.pending == set()
    finally:
        await good.aclose()
        await unreachable.aclose()
