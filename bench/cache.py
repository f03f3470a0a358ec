"""Cost of a cache hit against the database query it replaces (shared/cache.py). Not a test: asserts nothing.

    python bench/cache.py            # starts PostgreSQL and Redis itself (launcher.devstack)

For an owner with 300 and one with 10,000 tasks: the first page of the default list (20 rows) and the
task stats, each read N times from the primary and N times as a cache hit; prints microseconds per read.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared import tasks  # noqa: E402
from shared.cache import OwnerCache  # noqa: E402
from launcher.devstack import PostgresServer, RedisServer  # noqa: E402
from shared.db.migrate import migrate  # noqa: E402

N = 2000
SEED = """
INSERT INTO tasks (owner_id, title, due_at, status)
SELECT $1, 'Task ' || n, now() + n * interval '1 hour', (ARRAY['todo', 'in_progress'])[1 + n % 2]::task_status
FROM generate_series(1, $2) AS n
"""


async def timed(read: object) -> float:
    for _ in range(50):
        await read()  # type: ignore[operator]
    started = time.perf_counter()
    for _ in range(N):
        await read()  # type: ignore[operator]
    return (time.perf_counter() - started) / N * 1e6


async def measure(dsn: str, redis_url: str) -> None:
    await migrate(dsn)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    redis = Redis.from_url(redis_url)
    cache = OwnerCache(redis, ttl=60)
    try:
        for owner, count in ((1, 300), (2, 10_000)):
            await pool.execute("INSERT INTO users (id, email, password_hash) OVERRIDING SYSTEM VALUE "
                               "VALUES ($1, $2, 'x')", owner, f"owner{owner}@example.com")
            await pool.execute(SEED, owner, count)
            await pool.execute("ANALYZE all_tasks")

            async def page() -> tuple[str, None]:
                async with pool.acquire() as conn:
                    items, _ = await tasks.list_tasks(conn, owner_id=owner, filters=tasks.TaskFilters(),
                                                      sort="-created_at", limit=20, cursor=None, secret="s" * 40)
                return "[" + ",".join(items) + "]", None

            async def stats() -> tuple[str, float | None]:
                async with pool.acquire() as conn:
                    counts, changes_in = await tasks.task_stats(conn, owner_id=owner)
                return json.dumps(counts), changes_in

            for name, fill in (("task_list", page), ("task_stats", stats)):
                database = await timed(fill)
                hit = await timed(lambda: cache.get(owner, name, fill))  # noqa: B023 - used at once
                print(f"{count:>6} tasks  {name:10}  database {database:7.0f} us   cache hit {hit:5.0f} us")
    finally:
        await pool.close()
        await redis.aclose()


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="taskdeck-bench-"))
    os.chmod(base, 0o755)  # postgres runs as nobody when we are root
    postgres, redis = PostgresServer(base / "pg"), RedisServer(base / "redis")
    try:
        postgres.start()
        redis.start()
        postgres.create_database("taskdeck_bench")
        asyncio.run(measure(postgres.dsn("taskdeck_bench"), redis.url))
    finally:
        redis.stop()
        postgres.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
