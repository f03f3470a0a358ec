"""SIGTERM to a real `taskdeck web` process: open streams get a `retry:` hint and end at once, so the process
drains without waiting for them."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from launcher.devstack import free_port
from tests.conftest import TEST_SECRET

ROOT = Path(__file__).resolve().parents[2]


async def test_sigterm_ends_streams_with_a_retry_hint(stack: Any, settings: Any, make_user: Any,
                                                     tmp_path: Path) -> None:
    env = {**os.environ, "TASKDECK_ENV": "test", "DATABASE_URL": stack.dsn, "REDIS_URL": settings.redis_url,
           "SECRET_KEY": TEST_SECRET, "DB_POOL_MIN": "1", "DB_POOL_MAX": "3", "LOG_LEVEL": "WARNING"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    port = free_port()
    with (tmp_path / "web.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "launcher.cli", "web", "--port", str(port)], cwd=ROOT,
                                env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        ada = await make_user()
        async with aiohttp.ClientSession(headers=ada.headers) as session:
            for _ in range(300):
                try:
                    async with session.get(f"{url}/health") as health:
                        if health.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            streams = [await session.get(f"{url}/api/v1/events") for _ in range(3)]
            assert [s.status for s in streams] == [200, 200, 200]
            await asyncio.sleep(0.3)
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            for stream in streams:
                async with asyncio.timeout(5):
                    body = await stream.content.read()
                assert b"retry: 2000" in body
            assert time.monotonic() - sent < 5
        await asyncio.get_running_loop().run_in_executor(None, proc.wait, 20)
        assert proc.returncode is not None and time.monotonic() - sent < 15, (tmp_path / "web.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
