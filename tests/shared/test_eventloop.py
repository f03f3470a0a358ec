"""Production and tests run on the same event loop (shared/eventloop.py)."""
from __future__ import annotations

import asyncio
import subprocess
import sys

import uvloop


async def test_the_tests_run_on_uvloop():
    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)


def test_the_taskdeck_command_runs_on_uvloop():
    # `taskdeck migrate` with the command replaced by a probe: the loop asyncio.run / run_app would create.
    code = ("import asyncio, launcher.cli as cli; "
            "cli.cmd_migrate = lambda args: print(type(asyncio.new_event_loop()).__module__); cli.main(['migrate'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().startswith("uvloop")
