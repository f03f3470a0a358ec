"""Two real `taskdeck web` processes on one Redis: limits are shared, and the cache never shows either
process a read older than a write made through the other."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest

from launcher.devstack import free_port
from tests.conftest import TEST_SECRET
from web.app import create_app

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def two_webs(stack: Any, settings: Any, tmp_path: Path) -> AsyncIterator[list[str]]:
    env = {**os.environ, "TASKDECK_ENV": "test", "DATABASE_URL": stack.dsn, "REDIS_URL": settings.redis_url,
           "SECRET_KEY": TEST_SECRET, "DB_POOL_MIN": "1", "DB_POOL_MAX": "3", "BCRYPT_ROUNDS": "4",
           "RATE_LIMITS": "on", "RATE_LIMIT_API": "1000/minute", "RATE_LIMIT_LOGIN": "6 per 15 minutes",
           "LOG_LEVEL": "WARNING"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    procs, urls = [], []
    try:
        for i in range(2):
            port = free_port()
            with (tmp_path / f"web{i}.log").open("wb") as log:
                procs.append(subprocess.Popen([sys.executable, "-m", "launcher.cli", "web", "--port", str(port)],
                                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
            urls.append(f"http://127.0.0.1:{port}")
        async with aiohttp.ClientSession() as session:
            for proc, url, i in zip(procs, urls, range(2)):
                deadline = asyncio.get_running_loop().time() + 60
                while True:
                    assert proc.poll() is None, (tmp_path / f"web{i}.log").read_text()
                    try:
                        async with session.get(url + "/health") as response:
                            if response.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    assert asyncio.get_running_loop().time() < deadline, "web did not start"
                    await asyncio.sleep(0.1)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


async def test_login_limit_is_shared_by_two_processes(two_webs: list[str], make_user: Any) -> None:
    user = await make_user()
    wrong = {"email": user.email, "password": "definitely the wrong one"}
    seen = []
    async with aiohttp.ClientSession() as session:
        for i in range(8):
            async with session.post(two_webs[i % 2] + "/api/v1/auth/login", json=wrong) as response:
                seen.append((response.status, response.headers.get("RateLimit-Remaining")))
    assert seen[:6] == [(401, str(5 - i)) for i in range(6)]
    assert [status for status, _ in seen[6:]] == [429, 429]


async def test_writes_on_one_process_are_read_at_once_on_the_other(two_webs: list[str], aiohttp_client: Any,
                                                                   settings: Any, make_user: Any) -> None:
    oracle = await aiohttp_client(create_app(settings.with_(cache=False)))
    user = await make_user()
    headers = user.headers
    ids: list[int] = []
    async with aiohttp.ClientSession(headers=headers) as session:

        async def read(base: Any) -> Any:
            """List and stats from a process (its URL) or from the uncached in-process oracle."""
            answers = []
            for path in ("/api/v1/tasks", "/api/v1/tasks/stats"):
                if base is oracle:
                    response = await oracle.get(path, headers=headers)
                else:
                    response = await session.get(base + path)
                assert response.status == 200
                answers.append(await response.json())
            return answers

        for step in range(24):
            writer, reader = two_webs[step % 2], two_webs[(step + 1) % 2]
            await read(reader), await read(writer)  # both caches filled before the write
            if step % 4 == 3:
                async with session.delete(f"{writer}/api/v1/tasks/{ids.pop(0)}") as response:
                    assert response.status == 204
            elif step % 4 == 2:
                async with session.patch(f"{writer}/api/v1/tasks/{ids[-1]}", json={"status": "done"}) as response:
                    assert response.status == 200
            else:
                async with session.post(f"{writer}/api/v1/tasks", json={"title": f"t{step}"}) as response:
                    assert response.status == 201
                    ids.append((await response.json())["id"])
            expected = await read(oracle)
            assert await read(reader) == expected, step
            assert await read(writer) == expected, step
