"""`taskdeck dev` end to end, as a new user runs it: a real process tree, real servers, real mail."""
from __future__ import annotations

import email
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from launcher.devstack import free_port


def _http(method: str, url: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body else None)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _wait_for(predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = predicate()
        except (OSError, ValueError):
            result = None
        if result:
            return result
        time.sleep(0.3)
    raise AssertionError("timed out")


def _drain(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGINT)
    return process.communicate(timeout=30)[0]


def run_dev_process(tmp_path: Path, *options: str, stop_timeout: float = 30):
    """`taskdeck dev` as a child process on a free port, on embedded servers only (real-server variables
    removed); yields (process, base URL, var dir) and stops it with Ctrl-C (SIGINT) afterwards."""
    var = tmp_path / "var"
    tmp_path.chmod(0o755)
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "DATABASE_REPLICA_URLS", "REDIS_URL", "SMTP_URL", "SECRET_KEY")}
    env["BCRYPT_ROUNDS"] = "4"
    process = subprocess.Popen([sys.executable, "-m", "launcher.cli", "dev", "--port", str(port), "--var", str(var),
                                *options], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    try:
        yield process, f"http://127.0.0.1:{port}", var
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture
def dev_process(tmp_path: Path):
    yield from run_dev_process(tmp_path)


def test_dev_runs_the_whole_system_and_stops_cleanly(dev_process):
    process, base, var = dev_process
    ready = _wait_for(lambda: (lambda r: r if r[1]["checks"]["worker"]["status"] == "up" else None)(
        _http("GET", f"{base}/ready")))
    assert ready[0] == 200 and ready[1]["checks"]["database"]["status"] == "up"

    status, user = _http("POST", f"{base}/api/v1/auth/register",
                         {"email": "new@example.com", "password": "correct horse battery"})
    assert status == 201, _drain(process)
    mail_file = _wait_for(lambda: next(iter((var / "mail").glob("*.eml")), None))
    message = email.message_from_bytes(mail_file.read_bytes())
    assert message["To"] == "new@example.com"
    text = next(part.get_payload(decode=True).decode() for part in message.walk()
                if part.get_content_type() == "text/plain")
    token = re.search(r"verify-email\?token=([\w-]+)", text).group(1)
    assert _http("POST", f"{base}/api/v1/auth/verify-email", {"token": token})[0] == 204

    status, tokens = _http("POST", f"{base}/api/v1/auth/login",
                           {"email": "new@example.com", "password": "correct horse battery"})
    assert status == 200
    status, me = _http("GET", f"{base}/api/v1/users/me", token=tokens["access_token"])
    assert status == 200 and me["email_verified"] is True
    assert _http("POST", f"{base}/api/v1/auth/logout", token=tokens["access_token"])[0] == 204
    assert _http("GET", f"{base}/api/v1/users/me", token=tokens["access_token"])[0] == 401

    admin_password = (var / "dev_admin_password").read_text().strip()
    status, admin = _http("POST", f"{base}/api/v1/auth/login",
                          {"email": "admin@taskdeck.localhost", "password": admin_password})
    assert status == 200
    assert _http("GET", f"{base}/api/v1/admin/users", token=admin["access_token"])[0] == 200

    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "admin@taskdeck.localhost" in output and "/api/docs" in output
    assert "Traceback" not in output
    assert not (var / "postgres" / "postmaster.pid").exists()
