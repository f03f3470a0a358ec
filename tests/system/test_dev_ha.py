"""`taskdeck dev --ha` refuses combinations it cannot honour (the drills in test_ha_drills.py run it for real)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(("extra_env", "options"), [
    ({"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/taskdeck"}, []),
    ({"REDIS_URL": "redis://127.0.0.1:1/0"}, []),
    ({}, ["--replica"]),
])
def test_ha_refuses_servers_of_its_own_and_the_replica_option(tmp_path: Path, extra_env: dict[str, str],
                                                              options: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    result = subprocess.run([sys.executable, "-m", "launcher.cli", "dev", "--ha", "--var", str(tmp_path / "var"),
                             *options], env={**env, **extra_env}, capture_output=True, text=True, timeout=60,
                            cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--ha runs its own PostgreSQL pair and Redis Sentinel set" in result.stderr
    assert not (tmp_path / "var" / "ha").exists()  # nothing was started
