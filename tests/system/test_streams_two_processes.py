"""Two real `taskdeck web` processes: a change made through one reaches a stream held by the other within
1 s (the doorbell crosses processes), and the per-user stream cap counts the streams of both."""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

from tests.system.test_two_processes import two_webs  # noqa: F401  (the fixture)


async def _message(response: Any, timeout: float) -> dict[str, str]:
    fields: dict[str, str] = {}
    async with asyncio.timeout(timeout):
        async for raw in response.content:
            line = raw.decode().rstrip("\r\n")
            if not line and fields:
                return fields
            if line and not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
    raise EOFError("stream ended")


async def test_a_change_through_one_process_reaches_a_stream_on_the_other(two_webs: list[str],  # noqa: F811
                                                                         make_user: Any) -> None:
    ada = await make_user()
    async with aiohttp.ClientSession(headers=ada.headers) as session:
        async with session.get(f"{two_webs[1]}/api/v1/events") as stream:
            assert stream.status == 200
            await asyncio.sleep(0.3)
            for n in range(3):
                sent = time.monotonic()
                async with session.post(f"{two_webs[0]}/api/v1/tasks", json={"title": f"cross {n}"}) as created:
                    assert created.status == 201
                message = await _message(stream, 5)
                assert json.loads(message["data"])["data"]["title"] == f"cross {n}"
                assert time.monotonic() - sent < 1.0  # a ring, not the 5-second poll


async def test_the_cap_counts_streams_on_every_process(two_webs: list[str], make_user: Any) -> None:  # noqa: F811
    ada = await make_user()
    async with aiohttp.ClientSession(headers=ada.headers) as session:
        streams = [await session.get(f"{two_webs[n % 2]}/api/v1/events") for n in range(10)]  # the default cap
        try:
            assert [s.status for s in streams] == [200] * 10
            for url in two_webs:
                async with session.get(f"{url}/api/v1/events") as refused:
                    assert refused.status == 429 and refused.headers["Retry-After"]
        finally:
            for stream in streams:
                stream.close()
