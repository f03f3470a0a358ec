"""Production and tests run on the same event loop (shared/eventloop.py)."""
from __future__ import annotations

import asyncio
import subprocess
import sys

import uvloop


async def test_the_tests_run_on_uvloop():
    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)


def test_the_taskdeck_command_runs_on_uvloop():
    # What `taskdeck <command>` does before running the command: the loop asyncio.run/run_app create.
    code = ("import asyncio, uvloop, shared.cli as cli; cli.eventloop.install(); "
            "loop = asyncio.new_event_loop(); print(type(loop).__module__); loop.close()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().startswith("uvloop")
