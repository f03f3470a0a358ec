"""Benchmark of the change feed. Not a test: asserts nothing, prints numbers and ratios of one run.

    python bench/changes.py                    # everything (~3 min on 2 cores)
    python bench/changes.py --only post        # one part: post | changes | fanout | webhooks
    python bench/changes.py --streams 1000     # fan-out to this many open streams over 2 web processes

- POST /api/v1/tasks with its event row vs the same build without the feed (the commit before it,
  `--baseline-ref`, unpacked with `git archive` and run side by side on its own database), interleaved
  rounds, a Python load generator (32 connections); the ratio of requests/s.
- GET /api/v1/changes: pages of 500 events (5,000 seeded), latency p50/p99.
- Fan-out: STREAMS open /api/v1/events streams held by 2 web processes; one change; the delay until each
  stream has it (p50/p99/max), over several changes.
- Webhooks: the worker's delivery function (worker.jobs.webhooks.deliver_due) against a local receiver;
  deliveries per second.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from launcher.devstack import PostgresServer, RedisServer, free_port  # noqa: E402

BASELINE_REF = "8b1eada"  # the projects build this feed was branched from: POST /tasks without an event row
SECRET = secrets.token_urlsafe(48)


class Stack:
    """Embedded PostgreSQL + Redis, and `taskdeck web` processes of a given source tree."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.postgres, self.redis = PostgresServer(base / "pg"), RedisServer(base / "redis")
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        self.postgres.start()
        self.redis.start()

    def database(self, name: str, source: Path) -> str:
        self.postgres.create_database(name)
        dsn = self.postgres.dsn(name)
        subprocess.run([sys.executable, "-c", f"import asyncio; from shared.db.migrate import migrate; "
                        f"asyncio.run(migrate({dsn!r}))"], cwd=source, check=True,
                       env={**os.environ, "PYTHONPATH": str(source)})
        return dsn

    def web(self, source: Path, dsn: str, **env: str) -> str:
        port = free_port()
        environment = {**os.environ, "DATABASE_URL": dsn, "REDIS_URL": self.redis.url, "SECRET_KEY": SECRET,
                       "TASKDECK_ENV": "production", "LOG_LEVEL": "WARNING", "ACCESS_TOKEN_TTL": "3600",
                       "BCRYPT_ROUNDS": "4", "PYTHONPATH": str(source), "RATE_LIMITS": "off",
                       "EVENTS_MAX_STREAMS": "10000", "DB_POOL_MAX": "20", **env}
        environment.pop("DATABASE_REPLICA_URLS", None)
        log = open(self.base / f"web-{port}.log", "ab")
        self.processes.append(subprocess.Popen([sys.executable, "-m", "launcher.cli", "web", "--port", str(port)],
                                               cwd=source, env=environment, stdout=log, stderr=subprocess.STDOUT))
        url = f"http://127.0.0.1:{port}"
        try:
            asyncio.run(wait_healthy(url))
        except SystemExit:
            print((self.base / f"web-{port}.log").read_text(errors="replace")[-3000:])
            raise
        return url

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
            process.wait(10)
        self.redis.stop()
        self.postgres.stop()


async def wait_healthy(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            try:
                async with session.get(f"{url}/health") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit(f"{url} did not become healthy")


async def user(url: str) -> dict[str, str]:
    email, password = f"bench-{secrets.token_hex(4)}@example.com", secrets.token_urlsafe(12)
    async with aiohttp.ClientSession(url) as session:
        await session.post("/api/v1/auth/register", json={"email": email, "password": password})
        async with session.post("/api/v1/auth/login", json={"email": email, "password": password}) as response:
            return {"Authorization": f"Bearer {(await response.json())['access_token']}"}


async def load(url: str, headers: dict[str, str], method: str, path: str, body: Any, seconds: float,
               connections: int = 32) -> tuple[float, list[float]]:
    """(2xx per second, latencies) of ``connections`` clients looping for ``seconds``."""
    latencies: list[float] = []
    done = 0
    end = time.perf_counter() + seconds
    async with aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(limit=connections)) as session:
        async def client() -> None:
            nonlocal done
            while time.perf_counter() < end:
                started = time.perf_counter()
                async with session.request(method, path, json=body, headers=headers) as response:
                    await response.read()
                    if response.status < 300:
                        done += 1
                        latencies.append(time.perf_counter() - started)
        await asyncio.gather(*(client() for _ in range(connections)))
    return done / seconds, latencies


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1000 if values else float("nan")


def baseline_tree(ref: str, into: Path) -> Path:
    archive = into / "baseline.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), ref], check=True)
    tree = into / "baseline"
    tree.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    return tree


def bench_post(stack: Stack, ref: str, rounds: int, seconds: float) -> None:
    feed_url = stack.web(ROOT, stack.database("bench_feed", ROOT))
    base_src = baseline_tree(ref, stack.base)
    base_url = stack.web(base_src, stack.database("bench_base", base_src))
    feed_headers, base_headers = asyncio.run(user(feed_url)), asyncio.run(user(base_url))
    body = {"title": "Bench task", "priority": "high", "tags": ["bench"]}
    ratios, feed_rps, base_rps = [], [], []
    for round_ in range(rounds):
        order = [("feed", feed_url, feed_headers), ("base", base_url, base_headers)]
        results = {}
        for name, url, headers in (order if round_ % 2 == 0 else order[::-1]):
            results[name] = asyncio.run(load(url, headers, "POST", "/api/v1/tasks", body, seconds))[0]
        feed_rps.append(results["feed"])
        base_rps.append(results["base"])
        ratios.append(results["feed"] / results["base"])
    print(f"POST /api/v1/tasks  with events {statistics.median(feed_rps):8.0f} rps   without (at {ref}) "
          f"{statistics.median(base_rps):8.0f} rps   median ratio {statistics.median(ratios):.2f}  "
          f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)}; target >= 0.90)")


def bench_changes(stack: Stack, seconds: float) -> None:
    url = stack.web(ROOT, stack.database("bench_changes", ROOT))
    headers = asyncio.run(user(url))

    async def run() -> None:
        async with aiohttp.ClientSession(url) as session:
            async with session.get("/api/v1/changes", headers=headers) as response:
                start = (await response.json())["next_cursor"]
            sem = asyncio.Semaphore(16)

            async def post(i: int) -> None:
                async with sem, session.post("/api/v1/tasks", json={"title": f"t{i}"}, headers=headers) as r:
                    await r.read()
            await asyncio.gather(*(post(i) for i in range(5000)))
            latencies: list[float] = []
            end = time.perf_counter() + seconds
            cursor = start
            while time.perf_counter() < end:
                began = time.perf_counter()
                async with session.get(f"/api/v1/changes?limit=500&since={cursor}", headers=headers) as response:
                    page = await response.json()
                latencies.append(time.perf_counter() - began)
                cursor = page["next_cursor"] if len(page["items"]) == 500 else start
            print(f"GET /api/v1/changes?limit=500  {len(latencies)} pages  p50 {pct(latencies, .5):.1f} ms  "
                  f"p99 {pct(latencies, .99):.1f} ms  (target p99 < 50 ms)")
    asyncio.run(run())


def bench_fanout(stack: Stack, streams: int, changes: int) -> None:
    dsn = stack.database("bench_fanout", ROOT)
    urls = [stack.web(ROOT, dsn), stack.web(ROOT, dsn)]
    headers = asyncio.run(user(urls[0]))

    async def run() -> None:
        delays: list[float] = []
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                         timeout=aiohttp.ClientTimeout(total=None)) as session:
            arrived: dict[int, list[float]] = {}
            opened = asyncio.Event()
            ready = 0

            async def listen(index: int) -> None:
                nonlocal ready
                async with session.get(f"{urls[index % 2]}/api/v1/events", headers=headers) as response:
                    ready += 1
                    if ready == streams:
                        opened.set()
                    async for line in response.content:
                        if line.startswith(b"event: task.created"):
                            arrived.setdefault(index, []).append(time.perf_counter())
            listeners = [asyncio.create_task(listen(i)) for i in range(streams)]
            await asyncio.wait_for(opened.wait(), 120)
            await asyncio.sleep(1)
            for n in range(changes):
                sent = time.perf_counter()
                async with session.post(f"{urls[0]}/api/v1/tasks", json={"title": f"fan {n}"}, headers=headers) as r:
                    await r.read()
                deadline = time.perf_counter() + 15
                while sum(len(v) > n for v in arrived.values()) < streams and time.perf_counter() < deadline:
                    await asyncio.sleep(0.01)
                delays += [times[n] - sent for times in arrived.values() if len(times) > n]
                await asyncio.sleep(0.5)
            for task in listeners:
                task.cancel()
            await asyncio.gather(*listeners, return_exceptions=True)
        received = len(delays) / (streams * changes)
        print(f"fan-out  {streams} streams on 2 processes x {changes} changes  received {received:.1%}  "
              f"p50 {pct(delays, .5):.0f} ms  p99 {pct(delays, .99):.0f} ms  max {pct(delays, 1):.0f} ms  "
              f"(target p99 < 1000 ms)")
    asyncio.run(run())


def bench_webhooks(stack: Stack, count: int) -> None:
    from shared.config import Settings
    from shared.db.database import Database
    from worker.jobs import webhooks as job

    dsn = stack.database("bench_webhooks", ROOT)

    async def run() -> None:
        received = 0

        async def hook(request: web.Request) -> web.Response:
            nonlocal received
            await request.read()
            received += 1
            return web.Response(status=204)
        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        settings = Settings(environment="test", database_url=dsn, redis_url=stack.redis.url, secret_key=SECRET,
                            webhook_allow_private=True, db_pool_max=20)
        db = await Database.connect(settings)
        from shared import webhooks
        async with db.write.acquire() as conn:
            owner = await conn.fetchval("INSERT INTO users (email, password_hash) VALUES ('hooks@example.com', 'x') "
                                        "RETURNING id")
            hook_id = await conn.fetchval(
                "INSERT INTO webhooks (owner_id, url, events, secret_sealed) VALUES ($1, $2, '{*}', $3) RETURNING id",
                owner, f"http://127.0.0.1:{port}/hook", webhooks.seal(SECRET, webhooks.new_secret()))
            await conn.execute("INSERT INTO webhook_deliveries (webhook_id, event_type, msg_id, payload) "
                               "SELECT $1, 'ping', 'msg_' || g, jsonb_build_object('type', 'ping') "
                               "FROM generate_series(1, $2) AS g",
                               hook_id, count)
        ctx = {"db": db, "settings": settings, "redis": None}
        began = time.perf_counter()
        while received < count:
            await job.deliver_due(ctx)
        elapsed = time.perf_counter() - began
        await db.close()
        await runner.cleanup()
        print(f"webhooks  {count} deliveries by one worker process  {count / elapsed:.0f}/s  "
              f"(target >= 200/s)")
    asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("post", "changes", "fanout", "webhooks"))
    parser.add_argument("--baseline-ref", default=BASELINE_REF)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=5)
    parser.add_argument("--deliveries", type=int, default=2000)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="taskdeck-bench-feed-"))
    os.chmod(base, 0o755)
    stack = Stack(base)
    with ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, base, ignore_errors=True)
        cleanup.callback(stack.stop)
        stack.start()
        if args.only in (None, "post"):
            bench_post(stack, args.baseline_ref, args.rounds, args.seconds)
        if args.only in (None, "changes"):
            bench_changes(stack, args.seconds)
        if args.only in (None, "fanout"):
            bench_fanout(stack, args.streams, args.changes)
        if args.only in (None, "webhooks"):
            bench_webhooks(stack, args.deliveries)


if __name__ == "__main__":
    main()
