"""/api/v1/events: live events from the feed, resume, heartbeat headers, cap, revocation, shutdown."""
from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import asyncpg

from shared import tasks
from tests.helpers import assert_problem
from tests.project_helpers import add_member, new_project, new_task
from web import live
from web.api import stream
from web.app import create_app

EVENTS = "/api/v1/events"


async def next_message(response: Any, timeout: float = 5.0) -> dict[str, str]:
    """The next SSE message (comment lines skipped), as its fields."""
    fields: dict[str, str] = {}
    async with asyncio.timeout(timeout):
        while True:
            line = (await response.content.readline()).decode()
            if line == "":
                raise EOFError("stream ended")
            line = line.rstrip("\r\n")
            if not line:
                if fields:
                    return fields
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = fields[name] + "\n" + value if name in fields else value


async def test_a_collaborators_change_arrives_and_resumes(client: Any, make_user: Any, db: asyncpg.Connection) -> None:
    ada, bob = await make_user(name="Ada"), await make_user()
    project = await new_project(client, ada)
    await add_member(db, project, bob, "viewer")
    response = await client.get(EVENTS, headers=bob.headers)
    assert response.status == 200 and response.content_type == "text/event-stream"
    assert response.headers["X-Accel-Buffering"] == "no" and response.headers["Cache-Control"] == "no-cache"
    task = await new_task(client, ada, project, title="live one")
    message = await next_message(response)
    event = json.loads(message["data"])
    assert message["event"] == "task.created" and message["id"] == event["id"]
    assert event["data"] == task and event["actor"] == {"id": ada.id, "name": "Ada"}
    await new_task(client, ada, project, title="live two")
    assert json.loads((await next_message(response))["data"])["data"]["title"] == "live two"
    response.close()
    await new_task(client, ada, project, title="missed")
    resumed = await client.get(EVENTS, headers={**bob.headers, "Last-Event-ID": message["id"]})
    titles = [json.loads((await next_message(resumed))["data"])["data"]["title"] for _ in range(2)]
    assert titles == ["live two", "missed"]
    resumed.close()


async def test_a_lost_ring_costs_latency_not_the_event(client: Any, make_user: Any, stack: Any,
                                                       monkeypatch: Any) -> None:
    monkeypatch.setattr(live, "POLL_SECONDS", 0.3)
    monkeypatch.setattr(stream, "RECHECK_SECONDS", 0.3)
    ada = await make_user()
    response = await client.get(EVENTS, headers=ada.headers)
    conn = await asyncpg.connect(stack.dsn)  # a write that rings no doorbell
    try:
        async with conn.transaction():
            await tasks.create_task(conn, owner_id=ada.id, data={"title": "quiet"})
    finally:
        await conn.close()
    assert json.loads((await next_message(response))["data"])["data"]["title"] == "quiet"
    response.close()


async def test_bad_resume_points_and_no_auth(client: Any, make_user: Any) -> None:
    ada, bob = await make_user(), await make_user()
    await assert_problem(await client.get(EVENTS), 401)
    await assert_problem(await client.get(EVENTS, headers={**ada.headers, "Last-Event-ID": "forged"}), 422)
    bobs = (await (await client.get("/api/v1/changes", headers=bob.headers)).json())["next_cursor"]
    await assert_problem(await client.get(f"{EVENTS}?since={bobs}", headers=ada.headers), 422)


async def test_one_stream_more_than_the_cap_is_429(aiohttp_client: Any, settings: Any, make_user: Any) -> None:
    client = await aiohttp_client(create_app(dataclasses.replace(settings, events_max_streams=2)))
    ada = await make_user()
    first, second = await client.get(EVENTS, headers=ada.headers), await client.get(EVENTS, headers=ada.headers)
    assert first.status == second.status == 200
    refused = await client.get(EVENTS, headers=ada.headers)
    await assert_problem(refused, 429)
    assert refused.headers["Retry-After"]
    first.close()
    for _ in range(50):  # the closed stream gives its place back
        again = await client.get(EVENTS, headers=ada.headers)
        if again.status == 200:
            again.close()
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the cap never freed the closed stream's place")
    second.close()


async def test_revocation_ends_the_stream(client: Any, make_user: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(stream, "RECHECK_SECONDS", 0.2)
    ada = await make_user()
    response = await client.get(EVENTS, headers=ada.headers)
    assert response.status == 200
    assert (await client.post("/api/v1/auth/logout", json={}, headers=ada.headers)).status == 204
    async with asyncio.timeout(5):
        while await response.content.readline():
            pass  # only comments can come; the stream then ends
    assert (await client.get(EVENTS, headers=ada.headers)).status == 401


async def test_shutdown_ends_streams_with_a_retry_hint(client: Any, make_user: Any) -> None:
    ada = await make_user()
    response = await client.get(EVENTS, headers=ada.headers)
    assert response.status == 200
    await asyncio.sleep(0.1)
    client.server.app[live.HUB].shut_down()
    assert (await next_message(response)).get("retry") == str(stream.RETRY_MS)
    async with asyncio.timeout(5):
        assert await response.content.read() == b""


async def test_streams_of_one_user_woken_together_share_one_read(client: Any, make_user: Any,
                                                                 monkeypatch: Any) -> None:
    from shared import events

    ada = await make_user()
    streams = [await client.get(EVENTS, headers=ada.headers) for _ in range(5)]
    await asyncio.sleep(0.5)  # every stream has made its first read and waits for a ring
    reads = 0
    original = events.read

    async def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        return await original(*args, **kwargs)

    monkeypatch.setattr(events, "read", counting)
    await new_task(client, ada, title="once")
    for response in streams:
        assert json.loads((await next_message(response))["data"])["data"]["title"] == "once"
        response.close()
    assert 1 <= reads <= 2  # one ring, one read (a second only if a stream was still between rounds)


async def test_a_client_that_stops_reading_is_cut_off_not_buffered(client: Any, make_user: Any, settings: Any,
                                                                   db: asyncpg.Connection, monkeypatch: Any) -> None:
    from shared import events
    from shared.observability.metrics import EVENT_STREAM_ENDS

    monkeypatch.setattr(stream, "SEND_TIMEOUT", 0.5)
    ada = await make_user()
    inbox = await db.fetchval("SELECT id FROM projects WHERE owner_id = $1 AND is_inbox", ada.id)
    start = events.encode(settings.secret_key, ada.id, events.Position(0, 0))
    # 64 MB of events: far more than the socket buffers hold, so the server's writes stall.
    await db.execute("INSERT INTO events (type, project_id, actor_id, data) SELECT 'task.updated', $1, $2, "
                     "jsonb_build_object('id', g, 'title', repeat('x', 16000)) FROM generate_series(1, 4000) AS g",
                     inbox, ada.id)
    before = EVENT_STREAM_ENDS.labels("slow")._value.get()
    response = await client.get(f"{EVENTS}?since={start}", headers=ada.headers)
    assert response.status == 200
    for _ in range(300):  # the client reads nothing; the server gives up on it within SEND_TIMEOUT
        if EVENT_STREAM_ENDS.labels("slow")._value.get() > before:
            break
        await asyncio.sleep(0.1)
    else:
        from shared.observability.metrics import EVENTS_PUSHED
        raise AssertionError(f"a stalled client was never cut off; pushed {EVENTS_PUSHED._value.get()}")
    response.close()
