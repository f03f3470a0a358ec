"""Drive `taskdeck dev --ha` from outside: its banner, its processes, and a writer that records every ack."""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import redis

from launcher.dev_ha import HaServices
from launcher.devstack import free_port
from launcher.ha_redis import MASTER_NAME
from launcher.ha_stack import PatroniNode


@dataclass
class HaDev:
    process: subprocess.Popen[bytes]
    base: str
    var: Path
    output: Path
    dsn: str = ""
    sentinels: list[tuple[str, int]] = field(default_factory=list)

    @property
    def cluster(self) -> Any:
        return HaServices(self.var).postgres  # ports come from var/ha/ports.json: the running cluster's

    def banner(self) -> str:
        return self.output.read_text(errors="replace")

    def errors(self) -> str:
        """The logged errors with their tracebacks, to explain a failed drill."""
        text = self.banner()
        start = text.find("unhandled error")
        return text[start:start + 6000] if start >= 0 else "(no unhandled error logged)"

    def children(self, role: str) -> list[int]:
        pids = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return [int(pid) for pid in pids if f"launcher.cli\x00{role}".encode() in _cmdline(int(pid))]

    def redis_master(self) -> tuple[str, int]:
        for host, port in self.sentinels:
            client = redis.Redis(host=host, port=port, socket_timeout=1)
            try:
                master = client.execute_command("SENTINEL", "get-master-addr-by-name", MASTER_NAME)
                return master[0].decode(), int(master[1])
            except (redis.RedisError, OSError):
                continue
            finally:
                client.close()
        raise AssertionError("no sentinel answers")


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def pids_matching(*needles: bytes) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and all(n in (cmd := _cmdline(int(entry.name))) for n in needles) and cmd:
            out.append(int(entry.name))
    return out


def kill_node(node: PatroniNode) -> None:
    """Node death: SIGKILL the node's Patroni, then its postmaster (Patroni detaches it)."""
    postmaster = node.postmaster_pid()
    for pid in pids_matching(b"patroni", str(node.config_path).encode()):
        os.kill(pid, signal.SIGKILL)
    if postmaster is not None:
        os.kill(postmaster, signal.SIGKILL)


def start_ha_dev(tmp: Path, *options: str) -> HaDev:
    tmp.chmod(0o755)
    port, var, output = free_port(), tmp / "var", tmp / "dev.out"
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "DATABASE_REPLICA_URLS", "REDIS_URL", "SMTP_URL", "SECRET_KEY")}
    # The writer makes ~20 requests a second as one user, and the drills queue a few dozen jobs.
    env.update(BCRYPT_ROUNDS="4", RATE_LIMIT_API="100000/minute", RATE_LIMIT_JOBS="1000/hour",
               MAX_ACTIVE_JOBS="100", RATE_LIMIT_AUTH_ADDRESS="1000/minute")
    with output.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "launcher.cli", "dev", "--ha", "--port", str(port),
                                    "--var", str(var), *options], cwd=tmp, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    dev = HaDev(process, f"http://127.0.0.1:{port}", var, output)
    deadline = time.monotonic() + 180
    while "Taskdeck is running" not in dev.banner():
        if process.poll() is not None or time.monotonic() > deadline:
            stop_ha_dev(dev)
            raise AssertionError("taskdeck dev --ha did not start:\n" + dev.banner()[-5000:])
        time.sleep(0.3)
    while not _ready(dev.base):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_ha_dev(dev)
            raise AssertionError("taskdeck dev --ha never became ready:\n" + dev.banner()[-5000:])
        time.sleep(0.3)
    text = dev.banner()
    assert re.search(r"^  leader    pg[12] 127\.0\.0\.1:\d+$", text, re.M), text
    dev.dsn = re.search(r"database\s+(\S+)", text).group(1).replace("***@", "postgres@")
    hosts = re.search(r"redis\s+sentinels (\S+) master", text).group(1)
    dev.sentinels = [(h, int(p)) for h, p in (pair.rsplit(":", 1) for pair in hosts.split(","))]
    return dev


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/ready", timeout=5) as response:
            body = json.loads(response.read())
    except (OSError, ValueError):
        return False
    return body["checks"]["worker"].get("alive", 0) >= 1 and all(r["status"] == "up" for r in body["checks"]["replicas"])


def stop_ha_dev(dev: HaDev) -> str:
    if dev.process.poll() is None:
        dev.process.send_signal(signal.SIGINT)
        try:
            dev.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            dev.process.kill()
            dev.process.wait()
    return dev.banner()


class Writer:
    """Creates numbered tasks in a loop, each under its own Idempotency-Key, retrying a 503 with the same key.

    Records when every write was acknowledged (201) and every status seen; ``longest_gap_after(t)`` is the longest
    time without an acknowledgement after ``t``.
    """

    def __init__(self, base: str, token: str, interval: float = 0.05) -> None:
        self.base, self.token, self.interval = base, token, interval
        self.acked: dict[str, int] = {}  # title -> task id
        self.ack_times: list[float] = []
        self.statuses: dict[int, int] = {}
        self.read_statuses: dict[int, int] = {}
        self.slowest = 0.0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.prefix = uuid.uuid4().hex[:8]

    def start(self) -> "Writer":
        self._task = asyncio.ensure_future(self._run())
        return self

    async def stop(self) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task

    async def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
            number = 0
            while not self._stop.is_set():
                number += 1
                title, key = f"{self.prefix}-{number}", uuid.uuid4().hex
                while True:  # the same key until acknowledged: an unknown outcome is settled by the replay
                    started = time.monotonic()
                    try:
                        async with session.post(f"{self.base}/api/v1/tasks", json={"title": title},
                                                headers={"Idempotency-Key": key}) as response:
                            status = response.status
                            body = await response.json(content_type=None)
                    except aiohttp.ClientError:
                        status, body = -1, None
                    self.slowest = max(self.slowest, time.monotonic() - started)
                    self.statuses[status] = self.statuses.get(status, 0) + 1
                    if status == 201:
                        self.acked[title] = body["id"]
                        self.ack_times.append(time.monotonic())
                        await self._read_back(session, body["id"])
                        break
                    await asyncio.sleep(self.interval)
                await asyncio.sleep(self.interval)

    async def _read_back(self, session: aiohttp.ClientSession, task_id: int) -> None:
        """The writer reads its write back (a replica that has it, or the primary): never a 500, never stale."""
        try:
            async with session.get(f"{self.base}/api/v1/tasks/{task_id}") as response:
                status = response.status
        except aiohttp.ClientError:
            status = -1
        self.read_statuses[status] = self.read_statuses.get(status, 0) + 1

    def longest_gap_after(self, moment: float) -> float:
        """The write downtime: the longest time without an acknowledgement from ``moment`` on (acks arrive
        every ~50 ms otherwise; a request that waited out the failover inside the server counts too)."""
        times = [moment, *(t for t in self.ack_times if t > moment)]
        return max((b - a for a, b in zip(times, times[1:])), default=float("inf"))

    async def check_every_ack(self, dsn: str) -> int:
        """Every acknowledged task is on the (new) primary, once; returns how many were checked."""
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch("SELECT id, title FROM tasks WHERE title LIKE $1", f"{self.prefix}-%")
        finally:
            await conn.close()
        titles = [row["title"] for row in rows]
        assert len(titles) == len(set(titles)), "a write was applied twice"
        found = {row["title"]: row["id"] for row in rows}
        missing = {t: i for t, i in self.acked.items() if found.get(t) != i}
        assert not missing, f"acknowledged writes missing on the primary: {sorted(missing)[:10]}"
        return len(self.acked)
