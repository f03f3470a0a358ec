"""Failover drills against `taskdeck dev --ha`: real Patroni, etcd, PostgreSQL, Redis and sentinels.

One HA system serves the whole module (it takes ~20 s to start); the drills run in file order. Each
measured time is printed (`-s` shows them); docs/ha.md states the promises they check.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import aiohttp
import pytest
import redis

from tests.ha_helpers import HaDev, Writer, kill_node, pids_matching, start_ha_dev, stop_ha_dev

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (shutil.which("patroni") and shutil.which("etcd")),
                       reason="needs Debian's patroni and etcd-server (scripts/test installs them as root)"),
]
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def ha() -> Iterator[HaDev]:
    # Not tmp_path_factory: pytest prunes old basetemp dirs, and another session on the machine could
    # prune this one while its servers still run. Kept when a drill failed, for its logs.
    base = Path(tempfile.mkdtemp(prefix="taskdeck-ha-"))
    dev = start_ha_dev(base, "--web-procs", "2", "--worker-procs", "2")
    try:
        yield dev
    finally:
        output = stop_ha_dev(dev)
        assert dev.process.returncode == 0, output[-3000:]
    if not os.environ.get("TASKDECK_KEEP_HA"):  # set it to read the servers' logs afterwards
        shutil.rmtree(base, ignore_errors=True)


async def _call(session: aiohttp.ClientSession, method: str, url: str, token: str | None = None,
                **kwargs: Any) -> tuple[int, Any, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.request(method, url, headers=headers, **kwargs) as response:
        body = await response.json(content_type=None) if response.status != 204 else None
        return response.status, body, response.headers


async def _user(session: aiohttp.ClientSession, base: str, email: str) -> str:
    status, _, _ = await _call(session, "POST", f"{base}/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert status in (201, 409)
    return await _login(session, base, email)


async def _login(session: aiohttp.ClientSession, base: str, email: str) -> str:
    status, body, _ = await _call(session, "POST", f"{base}/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert status == 200, body
    return str(body["access_token"])


async def _until(check: Any, timeout: float, what: str) -> float:
    """Seconds until ``check()`` is truthy (exceptions count as not yet)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if await check():
                return time.monotonic() - started
        except (aiohttp.ClientError, asyncio.TimeoutError, KeyError, TypeError):
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} not within {timeout} s")


async def _jobs_done(session: aiohttp.ClientSession, base: str, token: str, ids: list[int]) -> bool:
    for job_id in ids:
        status, body, _ = await _call(session, "GET", f"{base}/api/v1/exports/{job_id}", token)
        if status != 200 or body["status"] != "succeeded":
            return False
    return True


async def test_redis_master_killed(ha: HaDev) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        token = await _user(session, ha.base, "redis-kill@example.com")
        host, port = ha.redis_master()
        [pid] = pids_matching(b"-server", f"{host}:{port}".encode())  # the server retitles itself so
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        enqueued: list[int] = []

        async def limits_revocation_and_enqueue_work() -> bool:
            status, _, headers = await _call(session, "GET", f"{ha.base}/api/v1/tasks", token)
            if status != 200 or "RateLimit-Remaining" not in headers:  # no header: the limiter failed open
                return False
            other = await _login(session, ha.base, "redis-kill@example.com")
            if (await _call(session, "POST", f"{ha.base}/api/v1/auth/logout", other))[0] != 204:
                return False
            if (await _call(session, "GET", f"{ha.base}/api/v1/users/me", other))[0] != 401:
                return False
            status, job, _ = await _call(session, "POST", f"{ha.base}/api/v1/exports", token, json={"format": "csv"})
            if status == 202:
                enqueued.append(job["id"])
            return status == 202

        await _until(limits_revocation_and_enqueue_work, 10, "limits, revocation and enqueueing")
        recovered = time.monotonic() - killed
        assert ha.redis_master()[1] != port, "Sentinel did not promote the replica"
        # Jobs enqueued after the kill run (the workers followed the new master).
        for _ in range(3):
            status, job, _ = await _call(session, "POST", f"{ha.base}/api/v1/exports", token, json={"format": "csv"})
            assert status == 202
            enqueued.append(job["id"])
        ran = await _until(lambda: _jobs_done(session, ha.base, token, enqueued), 30, "jobs enqueued after the kill")
    # The launcher starts the killed server again as a replica of the new master (never a second master).
    await _until(lambda: asyncio.to_thread(_replica_count, ha, port), 30, "the old master back as a replica")
    print(f"\nredis master killed: limits, revocation and enqueueing work after {recovered:.2f} s; "
          f"{len(enqueued)} jobs enqueued after the kill ran within {ran:.1f} s more")
    assert recovered <= 5.0


def _replica_count(ha: HaDev, old_port: int) -> bool:
    host, port = ha.redis_master()
    client = redis.Redis(host=host, port=port, socket_timeout=1)
    try:
        info = client.info("replication")
    finally:
        client.close()
    return any(str(value.get("port")) == str(old_port) for key, value in info.items() if key.startswith("slave"))


async def test_redis_flushall_loses_no_job_and_no_revocation(ha: HaDev) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        token = await _user(session, ha.base, "flush@example.com")
        revoked = await _login(session, ha.base, "flush@example.com")
        assert (await _call(session, "POST", f"{ha.base}/api/v1/auth/logout", revoked))[0] == 204
        workers = ha.children("worker")
        assert len(workers) == 2
        for pid in workers:  # paused: what they would have taken stays queued, in PostgreSQL and in Redis
            os.kill(pid, signal.SIGSTOP)
        try:
            ids = []
            for _ in range(6):
                status, job, _ = await _call(session, "POST", f"{ha.base}/api/v1/exports", token,
                                             json={"format": "csv"})
                assert status == 202
                ids.append(job["id"])
            host, port = ha.redis_master()
            client = redis.Redis(host=host, port=port)
            assert client.zcard("arq:queue") >= len(ids)
            client.flushall()
            client.close()
            flushed = time.monotonic()
            assert (await _call(session, "GET", f"{ha.base}/api/v1/users/me", revoked))[0] == 401
        finally:
            for pid in workers:
                os.kill(pid, signal.SIGCONT)
        await _until(lambda: _jobs_done(session, ha.base, token, ids), 30, "every queued job after FLUSHALL")
        took = time.monotonic() - flushed
        assert (await _call(session, "GET", f"{ha.base}/api/v1/users/me", revoked))[0] == 401
    import asyncpg

    conn = await asyncpg.connect(ha.dsn)
    try:  # `attempts` counts claims: exactly one run each
        attempts = await conn.fetch("SELECT attempts FROM jobs WHERE id = ANY($1::bigint[])", ids)
    finally:
        await conn.close()
    assert sorted(r["attempts"] for r in attempts) == [1] * len(ids)
    print(f"\nFLUSHALL: {len(ids)} queued jobs each ran once, all done {took:.1f} s after the flush; "
          f"the revoked token stayed revoked")


async def _writer_drill(ha: HaDev, email: str, act: Any, limit: float) -> tuple[float, int, Writer, float]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        token = await _user(session, ha.base, email)
    writer = Writer(ha.base, token).start()
    await asyncio.sleep(2)
    moment = time.monotonic()
    await asyncio.to_thread(act)
    await _until(lambda: _acked_after(writer, moment, 5), 30, "writes after the failover")
    await writer.stop()
    gap = writer.longest_gap_after(moment)
    checked = await writer.check_every_ack(ha.dsn)
    assert set(writer.statuses) <= {201, 503}, (writer.statuses, ha.errors())  # never a 500, never a dropped connection
    assert set(writer.read_statuses) <= {200, 503}, (writer.read_statuses, ha.errors())  # reads back its writes
    assert writer.slowest < 15, writer.slowest
    assert gap <= limit, f"writes stopped for {gap:.2f} s"
    return gap, checked, writer, moment


async def _acked_after(writer: Writer, moment: float, count: int) -> bool:
    return sum(t > moment for t in writer.ack_times) >= count


async def test_clean_switchover(ha: HaDev) -> None:
    cluster = ha.cluster
    await _until(lambda: asyncio.to_thread(lambda: cluster.sync_standby() is not None), 60, "a sync standby")
    old = cluster.leader()
    gap, checked, writer, _ = await _writer_drill(ha, "switchover@example.com", cluster.switchover, 5.0)
    assert cluster.leader() is not old
    print(f"\nswitchover {old.name} -> {cluster.leader().name}: writes paused {gap:.2f} s; {checked} acknowledged "
          f"writes all on the new primary once; statuses {writer.statuses}, reads {writer.read_statuses}")


async def test_primary_node_killed_and_back_as_sync_standby(ha: HaDev) -> None:
    cluster = ha.cluster
    await _until(lambda: asyncio.to_thread(lambda: cluster.sync_standby() is not None), 60, "a sync standby")
    old = cluster.leader()
    gap, checked, writer, killed = await _writer_drill(ha, "node-death@example.com", lambda: kill_node(old), 10.0)
    new = cluster.leader()
    assert new is not None and new.name != old.name
    # The launcher starts the dead node again once its lock expired; it rewinds and follows the new leader.
    await _until(lambda: asyncio.to_thread(lambda: getattr(cluster.sync_standby(), "name", None) == old.name),
                 40, "the old primary as synchronous standby")
    back = time.monotonic() - killed
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        # Roles swapped: the replica pool follows the standby to the other node.
        replica_up = await _until(lambda: _replica_up(session, ha.base), 30, "the replica reads on the new standby")
        metrics = await (await session.get(f"{ha.base}/metrics")).text()
    # Both web processes saw the primary move (switchover and this) and counted the time without one.
    assert _metric(metrics, "taskdeck_db_failovers_total") >= 2
    assert _metric(metrics, "taskdeck_db_no_primary_seconds_total") > 0
    assert _metric(metrics, "taskdeck_redis_new_total") >= 1  # the Redis drills above
    print(f"\nnode death of {old.name}: writes resumed on {new.name} after {gap:.2f} s; {checked} acknowledged writes "
          f"all there once; statuses {writer.statuses}, reads {writer.read_statuses}; {old.name} sync standby again {back:.1f} s after the kill; "
          f"replica reads up {replica_up:.1f} s after that; metrics: failovers seen "
          f"{_metric(metrics, 'taskdeck_db_failovers_total'):.0f}, seconds without a primary "
          f"{_metric(metrics, 'taskdeck_db_no_primary_seconds_total'):.1f} (summed over the web processes)")
    assert back <= 30


def _metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and line[len(name):len(name) + 1] in (" ", "{"))


async def _replica_up(session: aiohttp.ClientSession, base: str) -> bool:
    async with session.get(f"{base}/ready") as response:
        body = await response.json()
    return response.status == 200 and [r["status"] for r in body["checks"]["replicas"]] == ["up"]
