"""Redis for `taskdeck dev --ha`: a master, a replica and three sentinels (quorum 2).

All from the same server binary as the plain dev Redis (``--sentinel`` mode), so the versions match
(Debian's redis-sentinel may be older than the embedded Valkey). Sentinel rewrites the files it is
given, so every start writes fresh ones; data nodes get command-line options only. ``supervise()``
starts a dead data node again as a replica of the current master (a restarted master without
persistence would otherwise be empty and writable until Sentinel converts it).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from launcher.devstack import RedisServer, free_port
from launcher.ha_stack import _popen, _terminate, _wait

MASTER_NAME = "taskdeck"
SENTINEL_DOWN_AFTER_MS, SENTINEL_FAILOVER_TIMEOUT_MS = 1000, 5000


class RedisNode(RedisServer):
    """A data node of the Sentinel set: no config file (Sentinel's CONFIG REWRITE then changes nothing on disk)."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        super().__init__(data_dir, port)
        self.replica_of: int | None = None

    def start(self, timeout: float = 10.0) -> None:
        if self.replica_of is not None:
            self._extra = ["--replicaof", "127.0.0.1", str(self.replica_of)]
        else:
            self._extra = []
        super().start(timeout)

    def _args(self) -> list[str]:
        return [*super()._args(), *self._extra]

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


class Sentinel:
    def __init__(self, base: Path, index: int, master_port: int) -> None:
        self.port = free_port()
        self.dir = base / f"sentinel{index}"
        self.log = base / f"sentinel{index}.log"
        self.master_port = master_port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)  # fresh config: Sentinel rewrites what it is given
        self.dir.mkdir(parents=True)
        conf = self.dir / "sentinel.conf"
        conf.write_text("\n".join([
            f"port {self.port}", "bind 127.0.0.1", f"dir {self.dir}",
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master_port} 2",
            f"sentinel down-after-milliseconds {MASTER_NAME} {SENTINEL_DOWN_AFTER_MS}",
            f"sentinel failover-timeout {MASTER_NAME} {SENTINEL_FAILOVER_TIMEOUT_MS}", ""]))
        self.proc = _popen([str(RedisServer.binary()), str(conf), "--sentinel"], self.log)

    def master(self) -> tuple[str, int] | None:
        """(host, port) of the master this sentinel names, or None if it does not answer."""
        import redis

        try:
            client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
            try:
                host, port = client.execute_command("SENTINEL", "get-master-addr-by-name", MASTER_NAME)
            finally:
                client.close()
        except (redis.RedisError, OSError, TypeError, ValueError):
            return None
        return host.decode(), int(port)

    def stop(self) -> None:
        _terminate(self.proc)


class SentinelRedis:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.nodes = [RedisNode(base / f"redis{i}") for i in (1, 2)]
        self.nodes[1].replica_of = self.nodes[0].port
        self.sentinels = [Sentinel(base, i, self.nodes[0].port) for i in (1, 2, 3)]

    @property
    def sentinel_list(self) -> str:
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def master(self) -> RedisNode | None:
        for sentinel in self.sentinels:
            if (address := sentinel.master()) is not None:
                return next((n for n in self.nodes if n.port == address[1]), None)
        return None

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        for node in self.nodes:
            node.start()
        for sentinel in self.sentinels:
            sentinel.start()
        # Ready when every sentinel knows the replica and the other sentinels (else a failover cannot be voted).
        _wait(self._sentinels_ready, 30, "the sentinels", self.sentinels[0].log)

    def _sentinels_ready(self) -> bool:
        import redis

        for sentinel in self.sentinels:
            try:
                client = redis.Redis(port=sentinel.port, socket_timeout=0.5)
                try:
                    info = client.sentinel_master(MASTER_NAME)
                finally:
                    client.close()
            except (redis.RedisError, OSError):
                return False
            if int(info.get("num-slaves", 0)) < 1 or int(info.get("num-other-sentinels", 0)) < 2:
                return False
        return True

    def supervise(self) -> list[str]:
        restarted = []
        for node in self.nodes:
            if node.alive():
                continue
            master = self.master()
            if master is None or master is node:  # Sentinel has not promoted the other node yet
                continue
            node.replica_of = master.port  # never start empty and writable as a second master
            node.start()
            restarted.append(f"redis {node.port}")
        for sentinel in self.sentinels:
            if sentinel.proc is not None and sentinel.proc.poll() is not None:
                master = self.master()
                sentinel.master_port = master.port if master else sentinel.master_port
                sentinel.start()
                restarted.append(f"sentinel {sentinel.port}")
        return restarted

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        for node in self.nodes:
            node.stop()
