"""`taskdeck dev --ha`: the embedded system with no single server whose death stops it (docs/ha.md).

etcd + two Patroni-managed PostgreSQL nodes (synchronous mode) and a Redis master + replica watched by
three sentinels (shared/ha_stack.py), then the usual web and worker processes, which find the primary
through a DSN naming both nodes (target_session_attrs=read-write), the standby through the same DSN
(target_session_attrs=standby) and Redis through the sentinels. While it runs, ``HaServices.supervise``
starts a dead node again: it rejoins as the standby (or replica) of whichever took over.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg

from launcher.ha_redis import MASTER_NAME, SentinelRedis
from launcher.ha_stack import PatroniCluster


class HaServices:
    def __init__(self, var: Path) -> None:
        self.base = var / "ha"
        self.postgres = PatroniCluster(self.base / "postgres")
        self.redis = SentinelRedis(self.base / "redis")
        self._keep_ports()

    def _keep_ports(self) -> None:
        """The same PostgreSQL/etcd ports on every start: Patroni and etcd record them in their data."""
        path = self.base / "ports.json"
        parts: list[Any] = [self.postgres.etcd, *self.postgres.nodes]
        names = ["port", "peer_port", "rest_port"]
        if path.exists():
            saved = json.loads(path.read_text())
            for part, ports in zip(parts, saved):
                for name, value in ports.items():
                    setattr(part, name, value)
        else:
            self.base.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps([{n: getattr(p, n) for n in names if hasattr(p, n)} for p in parts]))

    def start(self, env: dict[str, str]) -> None:
        started = time.monotonic()
        self.postgres.start()
        leader = self.postgres.leader()
        print(f"taskdeck: PostgreSQL primary {leader.name if leader else '?'} after "
              f"{time.monotonic() - started:.1f} s; waiting for its synchronous standby", flush=True)
        asyncio.run(_create_database(self.postgres.dsn("postgres"), "taskdeck"))
        self.postgres.wait_sync()
        self.redis.start()
        print(f"taskdeck: HA services ready after {time.monotonic() - started:.1f} s", flush=True)
        env["DATABASE_URL"] = self.postgres.dsn("taskdeck")
        env["DATABASE_REPLICA_URLS"] = self.postgres.dsn("taskdeck").replace("=read-write", "=standby")
        env["REDIS_SENTINELS"] = self.redis.sentinel_list
        env["REDIS_SENTINEL_MASTER"] = MASTER_NAME
        env.pop("REDIS_URL", None)
        # A query stuck on a dead peer fails within this (503), instead of the default minute.
        env.setdefault("DB_COMMAND_TIMEOUT", "10")

    def banner_lines(self) -> list[str]:
        leader = self.postgres.leader()
        return [f"  leader    {leader.name} {leader.address}" if leader else "  leader    (none right now)",
                f"  redis     sentinels {self.redis.sentinel_list} master {MASTER_NAME}"]

    def supervise(self) -> None:
        for name in [*self.postgres.supervise(), *self.redis.supervise()]:
            print(f"taskdeck: {name} had stopped; started again", file=sys.stderr, flush=True)

    def stop(self) -> None:
        self.redis.stop()
        self.postgres.stop()


async def _create_database(dsn: str, name: str) -> None:
    for _ in range(100):  # Patroni says "primary" a moment before PostgreSQL accepts read-write sessions
        try:
            conn = await asyncpg.connect(dsn)
            break
        except (asyncpg.TargetServerAttributeNotMatched, asyncpg.CannotConnectNowError, OSError):
            await asyncio.sleep(0.2)
    else:
        conn = await asyncpg.connect(dsn)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
