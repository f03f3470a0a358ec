"""The event loop every Taskdeck process runs on, and the test session too: uvloop.

Measured with bench/hotpath.py (docs/performance.md): the same Taskdeck on uvloop spends less CPU
per request and serves more requests/s than on asyncio's default loop. The tests run on it through
the same factory (tests/conftest.py), so what is tested is what runs.
"""
from __future__ import annotations

import asyncio

import uvloop

new_event_loop = uvloop.new_event_loop


def install() -> None:
    """Make asyncio.run / aiohttp's run_app create uvloop loops in this process."""
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
