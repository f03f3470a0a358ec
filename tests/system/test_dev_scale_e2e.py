"""`taskdeck dev --replica --web-procs 2 --worker-procs 2` end to end, from outside, as an operator would try it.

Which database served a read is told by /metrics (`taskdeck_db_reads_total{target=...}`, merged over the
web processes): the API itself says nothing about it, and need not.
"""
from __future__ import annotations

import os
import re
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from launcher.devstack import PostgresServer
from tests.system.test_dev_e2e import _http, _wait_for, run_dev_process


def _reads(base: str, target: str) -> float:
    text = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()
    match = re.search(r'^taskdeck_db_reads_total\{target="%s"\} (\S+)$' % re.escape(target), text, re.M)
    return float(match.group(1)) if match else 0.0


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.fixture
def scaled_dev(tmp_path: Path):
    yield from run_dev_process(tmp_path, "--replica", "--web-procs", "2", "--worker-procs", "2", stop_timeout=60)


def test_the_scaled_out_topology_on_one_machine(scaled_dev):
    process, base, var = scaled_dev

    def ready():
        status, body = _http("GET", f"{base}/ready")
        checks = body.get("checks", {})
        return status == 200 and checks["worker"]["status"] == "up" and \
            [r["status"] for r in checks["replicas"]] == ["up"] and body

    _wait_for(ready, timeout=120)
    assert _http("POST", f"{base}/api/v1/auth/register",
                 {"email": "writer@example.com", "password": "correct horse battery"})[0] == 201
    writer = _http("POST", f"{base}/api/v1/auth/login",
                   {"email": "writer@example.com", "password": "correct horse battery"})[1]["access_token"]
    admin_password = (var / "dev_admin_password").read_text().strip()
    other = _http("POST", f"{base}/api/v1/auth/login",
                  {"email": "admin@taskdeck.localhost", "password": admin_password})[1]["access_token"]

    # A write is read back at once by its writer, whichever process and database answers.
    for n in range(5):
        status, task = _http("POST", f"{base}/api/v1/tasks", {"title": f"task {n}"}, token=writer)
        assert status == 201
        assert _http("GET", f"{base}/api/v1/tasks/{task['id']}", token=writer) == (200, task)
        status, page = _http("GET", f"{base}/api/v1/tasks?sort=-updated_at", token=writer)
        assert status == 200 and page["items"][0]["id"] == task["id"] and len(page["items"]) == n + 1

    # Another user's reads are served by the replica. (Not the default first page: the cache serves that,
    # and its fills read the primary.)
    on_replica = _reads(base, "replica-0")
    for _ in range(10):
        assert _http("GET", f"{base}/api/v1/tasks?sort=created_at", token=other)[0] == 200
    assert _reads(base, "replica-0") >= on_replica + 10

    # Stopping the replica leaves the API answering: not one failed request.
    PostgresServer(var / "postgres-replica").stop()
    stopped = time.monotonic()
    first_good = None
    for _ in range(20):
        for token in (writer, other):
            assert _http("GET", f"{base}/api/v1/tasks?sort=created_at", token=token)[0] == 200
            first_good = first_good or time.monotonic() - stopped
    status, body = _http("GET", f"{base}/ready")
    assert status == 200 and body["checks"]["replicas"][0]["status"] == "down"
    print(f"first good read {first_good * 1000:.0f} ms after the replica stopped")

    # Killing one web process leaves the port answering.
    web = next(pid for pid in _children(process.pid)
               if b"web" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"))
    os.kill(_children(web)[0], signal.SIGKILL)
    for _ in range(20):
        assert _http("GET", f"{base}/api/v1/tasks", token=writer)[0] == 200

    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "replica   postgresql://" in output and "2 process(es) on port" in output
    assert "2 arq process(es)" in output
    assert "Traceback" not in output, output
    assert not (var / "postgres" / "postmaster.pid").exists()
