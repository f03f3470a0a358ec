"""The `taskdeck` console script's one-shot commands, run as real processes."""
from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import TEST_SECRET


def run(stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": stack.dsn, "REDIS_URL": stack.redis.url, "SECRET_KEY": TEST_SECRET,
           "BCRYPT_ROUNDS": "4"}
    return subprocess.run([sys.executable, "-m", "launcher.cli", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_migrate_when_up_to_date(stack):
    result = run(stack, "migrate")
    assert result.returncode == 0 and "up to date" in result.stdout


async def test_create_admin_creates_then_promotes(stack, client, make_user):
    result = run(stack, "create-admin", "--email", "Boss@Example.com", "--password", "boss password 1")
    assert result.returncode == 0 and "created admin boss@example.com" in result.stdout
    credentials = {"email": "boss@example.com", "password": "boss password 1"}
    response = await client.post("/api/v1/auth/login", json=credentials)
    token = (await response.json())["access_token"]
    assert (await client.get("/api/v1/admin/stats", headers={"Authorization": f"Bearer {token}"})).status == 200

    user = await make_user("plain@example.com")
    result = run(stack, "create-admin", "--email", "plain@example.com", "--password", "ignored password")
    assert result.returncode == 0 and "promoted" in result.stdout
    assert (await client.get("/api/v1/admin/stats", headers=user.headers)).status == 200


def test_create_admin_rejects_bad_input(stack):
    for args in (["--email", "nope", "--password", "long enough 1"], ["--email", "a@b.co", "--password", "short"]):
        result = run(stack, "create-admin", *args)
        assert result.returncode == 2 and "Traceback" not in result.stderr


def test_process_counts_must_be_whole_numbers_from_1(capsys):
    import pytest

    from launcher.cli import build_parser

    for argv in (["web", "--procs", "0"], ["web", "--procs", "two"], ["dev", "--web-procs", "-1"],
                 ["dev", "--worker-procs", "65"]):
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args(argv)
        assert exit_info.value.code == 2 and "whole number from 1 to 64" in capsys.readouterr().err
    args = build_parser().parse_args(["dev", "--replica", "--web-procs", "2", "--worker-procs", "3"])
    assert (args.replica, args.web_procs, args.worker_procs) == (True, 2, 3)
