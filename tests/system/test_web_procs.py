"""`taskdeck web --procs N` as a real process tree: one port, merged /metrics, a draining SIGTERM."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from launcher.devstack import free_port

TASKS = "/api/v1/tasks"


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


async def _until(predicate, timeout: float = 60.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = await predicate()
        except (OSError, aiohttp.ClientError):
            result = None
        if result:
            return result
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(interval)


@pytest.fixture
def web_procs(settings, tmp_path):
    """Start `taskdeck web --procs N`; yields (process, base_url, metrics_dir)."""
    started: list[subprocess.Popen] = []

    def start(procs: int) -> tuple[subprocess.Popen, str, Path]:
        port, metrics_dir = free_port(), tmp_path / "metrics"
        metrics_dir.mkdir(exist_ok=True)
        (metrics_dir / "counter_999999.db").write_bytes(b"")  # a stale file from an earlier run: must go
        env = {**os.environ, "TASKDECK_ENV": "test", "DATABASE_URL": settings.database_url,
               "REDIS_URL": settings.redis_url, "SECRET_KEY": settings.secret_key, "BCRYPT_ROUNDS": "4",
               "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "LOG_LEVEL": "WARNING"}
        process = subprocess.Popen([sys.executable, "-m", "launcher.cli", "web", "--port", str(port),
                                    "--procs", str(procs)], env=env)
        started.append(process)
        return process, f"http://127.0.0.1:{port}", metrics_dir

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


async def _ready(session: aiohttp.ClientSession, base: str, procs: int, pid: int) -> bool:
    async with session.get(f"{base}/health") as response:
        # --procs 1 is a single process; with more, gunicorn's arbiter has that many children.
        return response.status == 200 and len(_children(pid)) == (procs if procs > 1 else 0)


async def test_two_procs_serve_one_port_and_metrics_merge_them(web_procs, make_user):
    process, base, metrics_dir = web_procs(2)
    user = await make_user()
    async with aiohttp.ClientSession() as session:
        await _until(lambda: _ready(session, base, 2, process.pid))
        assert not (metrics_dir / "counter_999999.db").exists()

        async def one_request() -> int:  # a fresh connection each: the kernel hands them to either process
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as fresh:
                async with fresh.get(f"{base}{TASKS}", headers=user.headers) as response:
                    return response.status

        assert await asyncio.gather(*(one_request() for _ in range(30))) == [200] * 30
        # Kill a process that served some: the others keep the port, gunicorn replaces it.
        victim = next(pid for pid in _children(process.pid) if (metrics_dir / f"counter_{pid}.db").exists())
        os.kill(victim, signal.SIGKILL)
        assert await asyncio.gather(*(one_request() for _ in range(20))) == [200] * 20
        await _until(lambda: asyncio.sleep(0, result=len(_children(process.pid)) == 2 and
                                           victim not in _children(process.pid)))
        async with session.get(f"{base}/metrics") as response:
            text = await response.text()
        line = next(line for line in text.splitlines()
                    if line.startswith("taskdeck_http_requests_total") and 'route="/api/v1/tasks"' in line)
        # The 50 include those counted by the killed process, which no live process remembers: merged.
        assert float(line.rsplit(" ", 1)[1]) == 50.0
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0


@pytest.mark.parametrize("procs", [1, 2])
async def test_sigterm_drains_in_flight_requests_then_exits_0(web_procs, make_user, db, stack, procs):
    process, base, _ = web_procs(procs)
    user = await make_user()
    port = int(base.rsplit(":", 1)[1])
    async with aiohttp.ClientSession() as session:
        await _until(lambda: _ready(session, base, procs, process.pid))
        async with session.post(f"{base}{TASKS}", json={"title": "held"}, headers=user.headers) as response:
            assert response.status == 201
        # Hold a request open honestly: it waits in PostgreSQL for a lock this test holds.
        locker = await asyncpg.connect(stack.dsn)
        try:
            await locker.execute("BEGIN; LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE")
            in_flight = asyncio.ensure_future(session.get(f"{base}{TASKS}", headers=user.headers))
            await _until(lambda: db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                             "AND query LIKE '%FROM tasks%'"))
            process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            # New connections are refused while the held request is still running...
            await _until(lambda: asyncio.sleep(0, result=not _port_open(port)), timeout=10)
            assert not in_flight.done() and process.poll() is None
            await locker.execute("COMMIT")
            # ...and the held one completes normally.
            response = await asyncio.wait_for(in_flight, 30)
            assert response.status == 200
            assert [t["title"] for t in (await response.json())["items"]] == ["held"]
            response.release()
        finally:
            await locker.close()
    assert await asyncio.to_thread(process.wait, 60) == 0
    print(f"--procs {procs}: exited {time.monotonic() - signalled:.2f} s after SIGTERM (request held meanwhile)")
