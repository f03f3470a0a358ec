"""`taskdeck dev --s3`: exports go to an embedded S3 endpoint, end to end through web and worker processes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from launcher.devstack import free_port

from test_dev_e2e import _http, _wait_for


def test_dev_with_s3_stores_exports_in_the_bucket(tmp_path: Path) -> None:
    var = tmp_path / "var"
    tmp_path.chmod(0o755)
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "SMTP_URL", "SECRET_KEY", "EXPORT_STORAGE")}
    env["BCRYPT_ROUNDS"] = "4"
    process = subprocess.Popen([sys.executable, "-m", "launcher.cli", "dev", "--s3", "--port", str(port),
                                "--var", str(var)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        ready = _wait_for(lambda: (lambda r: r if r[1]["checks"]["worker"]["status"] == "up" else None)(
            _http("GET", f"{base}/ready")))
        assert ready[0] == 200 and ready[1]["checks"]["storage"]["status"] == "up"

        password = (var / "dev_admin_password").read_text().strip()
        status, tokens = _http("POST", f"{base}/api/v1/auth/login",
                               {"email": "admin@taskdeck.localhost", "password": password})
        assert status == 200
        token = tokens["access_token"]
        status, task = _http("POST", f"{base}/api/v1/tasks", {"title": "Stored on S3"}, token=token)
        assert status == 201
        status, job = _http("POST", f"{base}/api/v1/exports", {"format": "csv"}, token=token)
        assert status == 202
        done = _wait_for(lambda: (lambda r: r[1] if r[1]["status"] == "succeeded" else None)(
            _http("GET", f"{base}/api/v1/exports/{job['id']}", token=token)))
        request = urllib.request.Request(f"{base}{done['download_url']}", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.headers["Content-Disposition"].startswith("attachment; filename=")
            assert "Stored on S3" in response.read().decode()
        # An attachment goes to the same bucket and comes back byte for byte.
        payload = os.urandom(300_000)
        body = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"notes.bin\"\r\n\r\n"
                + payload + b"\r\n--b--\r\n")
        request = urllib.request.Request(f"{base}/api/v1/tasks/{task['id']}/attachments", data=body, method="POST",
                                         headers={"Authorization": f"Bearer {token}",
                                                  "Content-Type": "multipart/form-data; boundary=b"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 201
            attachment = json.loads(response.read())
        request = urllib.request.Request(f"{base}{attachment['download_url']}",
                                         headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.read() == payload and response.headers["X-Content-Type-Options"] == "nosniff"
        assert not (var / "exports").exists()  # nothing went to the local directory
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "s3://taskdeck-exports/exports at http://127.0.0.1:" in output
    assert "Traceback" not in output


def test_without_moto_s3server_says_what_to_install(monkeypatch, tmp_path):
    import importlib.util
    import shutil

    import pytest

    from launcher.devstack import DevStackError, S3Server

    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DevStackError, match=r"pip install -e '\.\[dev\]'"):
        S3Server(tmp_path / "s3.log").start()
