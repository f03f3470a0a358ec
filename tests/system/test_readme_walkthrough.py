"""The README's "first walk through the API", run as written against a live `taskdeck dev`.

The shell blocks are taken from README.md itself, so the README cannot drift from the service again: the only
change made to them is the port (the test's `taskdeck dev` listens on a free one, not 8080). The same run
checks what the banner promises: it appears only once the system answers, its database URL names the user,
and stopping prints no socket errors.
"""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from tests.system.test_dev_e2e import run_dev_process

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## A first walk through the API"


def walkthrough_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return re.findall(r"```sh\n(.*?)```", text[start:end], re.S)


def read_banner(process: subprocess.Popen) -> list[str]:
    """The output up to the banner's last line (the admin line); the process keeps running."""
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("  admin "):
            return lines
    raise AssertionError("taskdeck dev ended before its banner:\n" + "".join(lines))


def test_the_readme_blocks_are_there():
    blocks = walkthrough_blocks()
    assert len(blocks) == 2 and "BASE=http://127.0.0.1:8080" in blocks[0]
    assert "…" not in "".join(blocks)  # no placeholder a shell would send as is


def test_readme_walkthrough_against_taskdeck_dev(tmp_path: Path):
    # Two web processes: the gunicorn path, whose processes used to log "Error while closing socket" on stop.
    with contextmanager(run_dev_process)(tmp_path, "--web-procs", "2") as (process, base, var):
        banner = "".join(read_banner(process))
        # "running" is printed only once the port answers and the worker has a heartbeat: no waiting here.
        with urllib.request.urlopen(f"{base}/ready", timeout=5) as response:
            ready = json.load(response)
        assert ready["status"] == "ok" and ready["checks"]["worker"]["status"] == "up", banner
        assert re.search(r"database  postgresql://postgres@127\.0\.0\.1:\d+/taskdeck", banner), banner
        assert "***" not in banner

        # The blocks run where a user pastes them: beside var/ and the .venv that ./scripts/dev made (here, the
        # virtualenv running the tests, which scripts/test made).
        (tmp_path / ".venv").symlink_to(sys.prefix)
        port = base.rsplit(":", 1)[1]
        script = "\n".join(walkthrough_blocks()).replace("127.0.0.1:8080", f"127.0.0.1:{port}")
        walk = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)
        out = walk.stdout
        assert walk.returncode == 0, f"README walk failed:\n{out}\n{walk.stderr}"
        assert walk.stderr == "", walk.stderr
        assert "application/problem" not in out and '"status":4' not in out.replace(" ", ""), out
        # Output: the registration, the mail (decoded), the verification's status, then one JSON per call.
        lines = out.splitlines()
        verified = lines.index("204")  # the verify-email call answered 204 (ValueError: it did not)
        registered, mail = json.loads(lines[0]), "\n".join(lines[1:verified])
        me, created, listed, stats = (json.loads(line) for line in lines[verified + 1:] if line.strip())
        assert "To: ada@example.com" in mail and re.search(r"/verify-email\?token=[\w-]{20,}(\n|$)", mail), mail
        assert registered["email"] == "ada@example.com"
        assert me["email"] == "ada@example.com" and me["email_verified"] is True
        assert created["title"] == "Write the report" and created["priority"] == "high"
        assert [task["title"] for task in listed["items"]] == ["Write the report"]
        assert stats["by_status"]["todo"] == 1 and stats["by_priority"]["high"] == 1, stats
        # The decoded text beside the .eml has the link on one line (the .eml itself is quoted-printable).
        texts = sorted((var / "mail").glob("*.txt"))
        assert len(texts) == 1 and re.search(r"/verify-email\?token=[\w-]{20,}\n", texts[0].read_text())

        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
        assert process.returncode == 0, rest
        assert "Errno 9" not in rest and "Error while closing socket" not in rest, rest
        assert "Traceback" not in rest, rest


def test_no_banner_when_a_process_dies_while_starting(capsys):
    """Nothing answers on the port and the web process exits: its code is returned, "running" never printed."""
    from launcher.dev import _wait_until_running
    from launcher.devstack import free_port

    dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)", "web"])  # args[3]: the role, as _spawn
    dead.wait()
    assert _wait_until_running(f"http://127.0.0.1:{free_port()}", [dead], 1) == 3
    assert "the web process exited with code 3 while starting" in capsys.readouterr().err
