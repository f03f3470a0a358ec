"""Benchmark of the task API hot path, and the EXPLAIN plans behind docs/tasks.md. Not a test: asserts nothing.

    python bench/tasks.py                 # starts PostgreSQL, Redis and `taskdeck web` itself, then measures
    python bench/tasks.py --url http://127.0.0.1:8080 --duration 20 --connections 64
    python bench/tasks.py --tool python   # the built-in aiohttp load generator instead of wrk
    python bench/tasks.py explain         # 100,000 tasks over 100 users: EXPLAIN ANALYZE of every task query

Seeds 1,000 tasks for a fresh user (through the API), then measures, one after the other over loopback:
GET /api/v1/tasks?limit=20, ?limit=100, GET /api/v1/tasks/{id} and POST /api/v1/tasks; prints requests/s,
p50 and p99. The load generator is wrk when it is on PATH (`apt-get install -y wrk`): it is C and leaves
the CPU to the server; otherwise a small aiohttp client in this process.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from launcher.devstack import PostgresServer, RedisServer, free_port  # noqa: E402
from shared.db.migrate import migrate  # noqa: E402

API = "/api/v1/tasks"
PRIORITIES = ("low", "medium", "high", "urgent")
TASK_BODY = {"title": "Benchmark task", "description": "Created by bench/tasks.py", "priority": "high",
             "tags": ["bench", "load"], "due_at": "2030-01-01T12:00:00Z"}
WRK_SCRIPT = """
wrk.method = {method}
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = {auth}
"""


@contextmanager
def local_service(log_level: str) -> Iterator[str]:
    """Embedded PostgreSQL + Redis (launcher.devstack) and `taskdeck web` in a subprocess; yields its URL."""
    base = Path(tempfile.mkdtemp(prefix="taskdeck-bench-"))
    os.chmod(base, 0o755)  # postgres runs as nobody when we are root
    postgres, redis = PostgresServer(base / "pg"), RedisServer(base / "redis")
    web = None
    try:
        postgres.start()
        redis.start()
        postgres.create_database("taskdeck_bench")
        dsn = postgres.dsn("taskdeck_bench")
        asyncio.run(migrate(dsn))
        port = free_port()
        env = {**os.environ, "DATABASE_URL": dsn, "REDIS_URL": redis.url, "SECRET_KEY": secrets.token_urlsafe(48),
               "TASKDECK_ENV": "production", "LOG_LEVEL": log_level, "ACCESS_TOKEN_TTL": "3600",
               "BCRYPT_ROUNDS": "4", "PYTHONPATH": str(ROOT),
               # One user hammering the API would meet RATE_LIMIT_API (600/minute) within a second.
               "RATE_LIMITS": os.environ.get("RATE_LIMITS", "off")}
        env.pop("DATABASE_REPLICA_URLS", None)
        # `python -m launcher.cli web` is `taskdeck web` without needing the package installed.
        with open(base / "web.log", "ab") as log:
            web = subprocess.Popen([sys.executable, "-m", "launcher.cli", "web", "--port", str(port)], cwd=ROOT,
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        asyncio.run(_wait_until_healthy(url, web, base / "web.log"))
        yield url
    finally:
        if web is not None:
            web.terminate()
            web.wait(10)
        redis.stop()
        postgres.stop()
        shutil.rmtree(base, ignore_errors=True)


async def _wait_until_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            if process.poll() is not None:
                raise SystemExit(f"taskdeck web exited:\n{log.read_text(errors='replace')[-3000:]}")
            try:
                async with session.get(f"{url}/health") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("taskdeck web did not become healthy in 20 s")


async def prepare(url: str, count: int) -> tuple[str, int]:
    """A fresh user (register + login) with ``count`` tasks; returns its access token and one task id."""
    email, password = f"bench-{secrets.token_hex(4)}@example.com", secrets.token_urlsafe(12)
    async with aiohttp.ClientSession(url) as session:
        async with session.post("/api/v1/auth/register", json={"email": email, "password": password}) as response:
            assert response.status == 201, await response.text()
        async with session.post("/api/v1/auth/login", json={"email": email, "password": password}) as response:
            assert response.status == 200, await response.text()
            token = (await response.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        ids: list[int] = []

        async def create(worker: int) -> None:
            for i in range(worker, count, 16):
                body = {**TASK_BODY, "title": f"Seeded task {i}", "priority": PRIORITIES[i % 4]}
                async with session.post(API, json=body, headers=headers) as response:
                    assert response.status == 201, await response.text()
                    ids.append((await response.json())["id"])

        await asyncio.gather(*(create(worker) for worker in range(16)))
    return token, ids[len(ids) // 2]


def scenarios(token: str, task_id: int) -> list[tuple[str, str, str, dict[str, Any] | None]]:
    # Two baselines measured in the same run, so ratios survive a noisy machine: /health is the
    # framework floor (no auth, no I/O), /users/me the authentication floor (JWT, denylist, session row).
    return [("baseline GET /health", "GET", "/health", None),
            ("baseline GET /api/v1/users/me", "GET", "/api/v1/users/me", None),
            ("GET /api/v1/tasks?limit=20", "GET", f"{API}?limit=20", None),
            ("GET /api/v1/tasks?limit=100", "GET", f"{API}?limit=100", None),
            ("GET /api/v1/tasks/{id}", "GET", f"{API}/{task_id}", None),
            ("POST /api/v1/tasks", "POST", API, TASK_BODY)]  # last: it grows the table


def run_wrk(url: str, token: str, method: str, path: str, body: Any, duration: int, connections: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT.format(method=json.dumps(method), body=json.dumps(json.dumps(body)) if body else "nil",
                                       auth=json.dumps(f"Bearer {token}")))
    try:
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", script.name,
                              url + path], check=True, capture_output=True, text=True).stdout
    finally:
        os.unlink(script.name)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            "p50": _wrk_ms(out, "50%"), "p99": _wrk_ms(out, "99%"),
            "errors": int(errors.group(1)) if errors else 0, "note": socket_errors.group(1) if socket_errors else ""}


def _wrk_ms(out: str, percentile: str) -> float:
    value, unit = re.search(rf"^\s+{percentile}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


async def run_python(url: str, token: str, method: str, path: str, body: Any, duration: int,
                     connections: int) -> dict:
    """Closed loop: ``connections`` workers, each sending its next request when the last one answered."""
    latencies: list[float] = []
    errors = 0
    data = json.dumps(body).encode() if body else None
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(url, connector=connector, headers=headers) as session:
        deadline = time.perf_counter() + duration

        async def worker() -> None:
            nonlocal errors
            while (started := time.perf_counter()) < deadline:
                async with session.request(method, path, data=data) as response:
                    await response.read()
                    errors += response.status >= 400
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - began
    cuts = statistics.quantiles(latencies, n=100)
    return {"rps": len(latencies) / elapsed, "p50": cuts[49] * 1000, "p99": cuts[98] * 1000, "errors": errors,
            "note": ""}


def measure(url: str, args: argparse.Namespace) -> None:
    token, task_id = asyncio.run(prepare(url, args.tasks))
    tool = args.tool or ("wrk" if shutil.which("wrk") else "python")
    print(f"# {args.tasks} tasks seeded; load: {tool}, {args.connections} connections, {args.duration} s each "
          f"(after {args.warmup} s warm-up), {os.cpu_count()} CPUs\n")
    print(f"{'endpoint':32} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'÷health':>8} {'÷me':>6}")
    baselines: dict[str, float] = {}
    for name, method, path, body in scenarios(token, task_id):
        for seconds in (args.warmup, args.duration):  # the first pass warms caches, pools and statement cache
            if seconds <= 0:
                continue
            if tool == "wrk":
                result = run_wrk(url, token, method, path, body, seconds, args.connections)
            else:
                result = asyncio.run(run_python(url, token, method, path, body, seconds, args.connections))
        if name.startswith("baseline"):
            baselines[name.split()[-1]] = result["rps"]
        ratios = [result["rps"] / baselines[key] for key in ("/health", "/api/v1/users/me") if key in baselines]
        print(f"{name:32} {result['rps']:9.0f} {result['p50']:8.2f} {result['p99']:8.2f} {result['errors']:7d} "
              + "".join(f" {ratio:8.2f}" for ratio in ratios) + f" {result['note']}")


async def explain(dsn: str) -> None:
    """Seed 100,000 tasks over 100 users (rolled back afterwards) and print every task query's plan."""
    import asyncpg

    from shared import tasks
    from tests.test_tasks_plans import LIST_CASES, SEED_TASKS, SEED_USERS  # the cases the test checks

    conn = await asyncpg.connect(dsn)
    if await conn.fetchval("SELECT count(*) FROM users"):
        await conn.close()
        raise SystemExit("explain needs an empty database: it inserts 100 users and 100,000 tasks, then removes them")
    try:
        await conn.execute(SEED_USERS)
        await conn.execute(SEED_TASKS)
        await conn.execute("VACUUM ANALYZE all_tasks")  # the table behind the `tasks` view, as autovacuum would
        owner = await conn.fetchval("SELECT min(id) + 41 FROM users")
        queries = [(name, *tasks.page_query(owner, filters, sort, 21, after)) for name, filters, sort, after in
                   LIST_CASES]
        queries += [("stats", tasks.SELECT_STATS, [owner]),
                    ("get one", tasks.SELECT_TASK_FOR_USER, [await conn.fetchval(
                        "SELECT id FROM tasks WHERE owner_id = $1 LIMIT 1", owner), owner, False])]
        for name, sql, params in queries:
            plan = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY ON) " + sql, *params)
            print(f"-- {name}\n" + "\n".join(row[0] for row in plan) + "\n")
    finally:
        await conn.execute("DELETE FROM users WHERE email LIKE 'plan%@example.com'")  # tasks cascade
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", choices=("run", "explain"), default="run")
    parser.add_argument("--url", help="benchmark this running server instead of starting one")
    parser.add_argument("--dsn", help="explain: an empty, migrated database (default: start one)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per endpoint (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up seconds per endpoint (default 2)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections (default 32)")
    parser.add_argument("--tasks", type=int, default=1000, help="tasks to seed (default 1000)")
    parser.add_argument("--tool", choices=("wrk", "python"), help="load generator (default: wrk if installed)")
    parser.add_argument("--log-level", default="WARNING", help="LOG_LEVEL of the started server (default WARNING)")
    args = parser.parse_args()
    if args.command == "explain":
        if args.dsn:
            asyncio.run(explain(args.dsn))
            return
        with _database() as dsn:
            asyncio.run(explain(dsn))
    elif args.url:
        measure(args.url.rstrip("/"), args)
    else:
        with local_service(args.log_level) as url:
            measure(url, args)


@contextmanager
def _database() -> Iterator[str]:
    base = Path(tempfile.mkdtemp(prefix="taskdeck-explain-"))
    os.chmod(base, 0o755)
    postgres = PostgresServer(base / "pg")
    try:
        postgres.start()
        postgres.create_database("taskdeck_explain")
        asyncio.run(migrate(postgres.dsn("taskdeck_explain")))
        yield postgres.dsn("taskdeck_explain")
    finally:
        postgres.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
