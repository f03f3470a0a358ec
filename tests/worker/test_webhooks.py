"""Webhook deliveries against a real local receiver that verifies them from the Standard Webhooks spec alone.

The receiver below knows nothing of Taskdeck's code or the standardwebhooks library: it decodes the
`whsec_` secret, computes base64(HMAC-SHA256(key, "id.timestamp.body")) and compares it with each `v1,`
signature in the header, as the specification says.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from tests.project_helpers import PROJECTS, add_member, new_project, new_task
from web.app import create_app
from worker.jobs import webhooks as job

WEBHOOKS = "/api/v1/webhooks"


def verify(secret: str, headers: Any, body: bytes) -> bool:
    """Standard Webhooks, section "Verifying webhook authenticity", written from the text."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > 300:
        return False
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest())
    return any(part.startswith("v1,") and hmac.compare_digest(part[3:].encode(), expected)
               for part in headers["webhook-signature"].split(" "))


class Receiver:
    """A local HTTP receiver; ``answers`` is the queue of (status, headers, body) it replies with (then 204)."""

    def __init__(self) -> None:
        self.secret = ""
        self.received: list[dict[str, Any]] = []
        self.answers: list[tuple[int, dict[str, str], bytes]] = []
        self.redirect_target_hits = 0

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append({"headers": dict(request.headers), "body": json.loads(body),
                              "verified": verify(self.secret, request.headers, body)})
        status, headers, payload = self.answers.pop(0) if self.answers else (204, {}, b"")
        return web.Response(status=status, headers=headers, body=payload or None)

    async def slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(status=204)

    async def target(self, request: web.Request) -> web.Response:
        self.redirect_target_hits += 1
        return web.Response(status=200)


@pytest.fixture
async def receiver(aiohttp_server: Any) -> Any:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.hook)
    app.router.add_post("/elsewhere", receiver.target)
    app.router.add_post("/slow", receiver.slow)
    receiver.server = await aiohttp_server(app)
    receiver.url = str(receiver.server.make_url("/hook"))
    return receiver


@pytest.fixture
def dev_settings(settings: Any) -> Any:
    return settings.with_(webhook_allow_private=True)


@pytest.fixture
async def dev_client(aiohttp_client: Any, dev_settings: Any) -> Any:
    return await aiohttp_client(create_app(dev_settings))


async def _subscribe(client: Any, user: Any, receiver: Receiver, **body: Any) -> dict[str, Any]:
    response = await client.post(WEBHOOKS, json={"url": receiver.url, "events": ["*"], **body}, headers=user.headers)
    assert response.status == 201, await response.text()
    hook = await response.json()
    receiver.secret = hook["secret"]
    return hook


async def _tick(database: Any, settings: Any, arq_redis: Any = None) -> dict[str, int]:
    return await job.webhooks_tick({"db": database, "settings": settings, "redis": arq_redis})


async def _due_now(db: asyncpg.Connection) -> None:
    await db.execute("UPDATE webhook_deliveries SET next_attempt_at = now() WHERE status = 'pending'")


async def test_events_arrive_signed_and_verified(dev_client: Any, dev_settings: Any, database: Any, make_user: Any,
                                                db: asyncpg.Connection, receiver: Receiver) -> None:
    ada, bob = await make_user(name="Ada"), await make_user()
    project = await new_project(dev_client, ada)
    await add_member(db, project, bob, "editor")
    await _tick(database, dev_settings)  # the fan-out starts at now: history is not replayed
    hook = await _subscribe(dev_client, ada, receiver, project_id=project["id"])
    task = await new_task(dev_client, bob, project, title="hello")
    outcome = await _tick(database, dev_settings)
    assert outcome == {"queued": 1, "delivered": 1}
    [got] = receiver.received
    assert got["verified"] and got["body"]["type"] == "task.created" and got["body"]["data"] == task
    assert got["headers"]["webhook-id"] == f"msg_{await db.fetchval('SELECT max(id) FROM events')}_{hook['id']}"
    assert await _tick(database, dev_settings) == {"queued": 0}  # at least once, not twice
    log = await (await dev_client.get(f"{WEBHOOKS}/{hook['id']}/deliveries", headers=ada.headers)).json()
    [entry] = log["items"]
    assert entry["status"] == "delivered" and entry["response_status"] == 204 and entry["attempt"] == 1
    assert entry["event_id"] == got["body"]["id"]


async def test_retries_keep_the_id_and_resign(dev_client: Any, dev_settings: Any, database: Any, make_user: Any,
                                             db: asyncpg.Connection, receiver: Receiver) -> None:
    ada = await make_user()
    await _tick(database, dev_settings)
    await _subscribe(dev_client, ada, receiver)
    receiver.answers = [(500, {}, b""), (503, {"Retry-After": "7200"}, b""), (302, {"Location": "/elsewhere"}, b"")]
    await new_task(dev_client, ada, title="retry me")
    assert (await _tick(database, dev_settings)).get("retry") == 1
    row = await db.fetchrow("SELECT attempt, status, next_attempt_at - now() AS wait FROM webhook_deliveries")
    assert row["status"] == "pending" and timedelta(seconds=3) <= row["wait"] <= timedelta(seconds=7)
    await _due_now(db)
    await _tick(database, dev_settings)
    wait = await db.fetchval("SELECT next_attempt_at - now() FROM webhook_deliveries")
    assert wait >= timedelta(seconds=7000)  # Retry-After beats the 5-minute step
    await _due_now(db)
    await _tick(database, dev_settings)
    assert receiver.redirect_target_hits == 0  # a redirect is a failure, never followed
    assert "redirect 302" in await db.fetchval("SELECT error FROM webhook_deliveries")
    await _due_now(db)
    assert (await _tick(database, dev_settings)).get("delivered") == 1
    ids = {r["headers"]["webhook-id"] for r in receiver.received}
    assert len(receiver.received) == 4 and len(ids) == 1 and all(r["verified"] for r in receiver.received)


async def test_410_and_three_failing_days_disable_with_a_mail(dev_client: Any, dev_settings: Any, database: Any,
                                                             make_user: Any, db: asyncpg.Connection,
                                                             receiver: Receiver) -> None:
    ada = await make_user(name="Ada")
    await _tick(database, dev_settings)
    hook = await _subscribe(dev_client, ada, receiver)
    receiver.answers = [(410, {}, b"")]
    await new_task(dev_client, ada)
    assert (await _tick(database, dev_settings)).get("failed") == 1
    assert (await (await dev_client.get(f"{WEBHOOKS}/{hook['id']}", headers=ada.headers)).json())["active"] is False
    await new_task(dev_client, ada)
    assert await _tick(database, dev_settings) == {"queued": 0}  # inactive: nothing more
    assert await db.fetchval("SELECT count(*) FROM email_outbox WHERE template = 'webhook_disabled'") == 1
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE type = 'webhook.disabled'") == 1
    again = await dev_client.patch(f"{WEBHOOKS}/{hook['id']}", json={"active": True}, headers=ada.headers)
    assert (await again.json())["active"] is True
    await db.execute("UPDATE webhooks SET failing_since = now() - interval '3 days 1 minute'")
    receiver.answers = [(500, {}, b"")]
    await new_task(dev_client, ada)
    assert (await _tick(database, dev_settings)).get("failed") == 1
    assert await db.fetchval("SELECT disabled_reason FROM webhooks") == "deliveries failed for 3 days"


async def test_bounded_receivers(dev_client: Any, dev_settings: Any, database: Any, make_user: Any,
                                 db: asyncpg.Connection, receiver: Receiver, monkeypatch: Any) -> None:
    ada = await make_user()
    await _tick(database, dev_settings)
    await _subscribe(dev_client, ada, receiver)
    receiver.answers = [(200, {}, b"x" * 10_000_000)]  # 10 MB: read no further than MAX_RESPONSE_BYTES
    await new_task(dev_client, ada)
    assert (await _tick(database, dev_settings)).get("delivered") == 1
    monkeypatch.setattr(job, "TIMEOUT", 0.3)
    await db.execute("UPDATE webhooks SET url = $1", str(receiver.server.make_url("/slow")))
    await new_task(dev_client, ada)
    assert (await _tick(database, dev_settings)).get("retry") == 1  # never answers in time: bounded
    assert "no answer" in await db.fetchval("SELECT error FROM webhook_deliveries WHERE status = 'pending'")


async def test_owner_who_left_gets_nothing_more(dev_client: Any, dev_settings: Any, database: Any, make_user: Any,
                                               db: asyncpg.Connection, receiver: Receiver) -> None:
    ada, bob = await make_user(), await make_user()
    project = await new_project(dev_client, ada)
    await add_member(db, project, bob, "editor")
    await _tick(database, dev_settings)
    await _subscribe(dev_client, bob, receiver)
    await new_task(dev_client, ada, project, title="queued before leaving")
    async with database.write.acquire() as conn:
        await job.fan_out(conn)
    assert (await dev_client.delete(f"{PROJECTS}/{project['id']}/members/{bob.id}", headers=bob.headers)).status == 204
    await new_task(dev_client, ada, project, title="after leaving")
    outcome = await _tick(database, dev_settings)
    assert outcome.get("skipped") == 1  # the queued one is not sent: bob can no longer read the project
    assert [r["body"]["type"] for r in receiver.received] == ["member.removed"]


async def test_ping(dev_client: Any, dev_settings: Any, database: Any, make_user: Any, receiver: Receiver) -> None:
    ada = await make_user()
    hook = await _subscribe(dev_client, ada, receiver, events=["task.deleted"])
    assert (await dev_client.post(f"{WEBHOOKS}/{hook['id']}/ping", headers=ada.headers)).status == 202
    await _tick(database, dev_settings)
    [got] = receiver.received
    assert got["verified"] and got["body"]["type"] == "ping"


async def test_rebinding_is_refused_when_connecting(settings: Any, database: Any, make_user: Any,
                                                   db: asyncpg.Connection, receiver: Receiver,
                                                   monkeypatch: Any) -> None:
    """A name that passed the API's check but resolves to a private address when delivering: never sent."""
    from aiohttp.resolver import DefaultResolver

    from shared import tasks, webhooks

    async def rebinding(self: Any, host: str, port: int = 0, family: Any = 0) -> list[dict[str, Any]]:
        # The only stub here is DNS itself (outside the system): it answers 127.0.0.1 for any name.
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": 2, "proto": 0, "flags": 0}]

    monkeypatch.setattr(DefaultResolver, "resolve", rebinding)
    ada = await make_user()
    await _tick(database, settings)
    url = f"http://rebind.example:{receiver.server.port}/hook"
    await db.execute("INSERT INTO webhooks (owner_id, url, events, secret_sealed) VALUES ($1, $2, '{*}', $3)",
                     ada.id, url, webhooks.seal(settings.secret_key, webhooks.new_secret()))
    async with database.write.acquire() as conn, conn.transaction():
        await tasks.create_task(conn, owner_id=ada.id, data={"title": "x"})
    assert (await _tick(database, settings)).get("retry") == 1
    assert receiver.received == []
    assert "non-public" in await db.fetchval("SELECT error FROM webhook_deliveries")


async def test_a_failing_backlog_does_not_hold_up_other_webhooks(dev_settings: Any, database: Any, make_user: Any,
                                                                  db: asyncpg.Connection, receiver: Receiver) -> None:
    from shared import webhooks
    from launcher.devstack import free_port

    ada, bob = await make_user(), await make_user()
    dead = f"http://127.0.0.1:{free_port()}/nobody-listens"
    seal = webhooks.seal(dev_settings.secret_key, webhooks.new_secret())
    insert = "INSERT INTO webhooks (owner_id, url, events, secret_sealed) VALUES ($1, $2, '{*}', $3) RETURNING id"
    failing = await db.fetchval(insert, ada.id, dead, seal)
    receiver.secret = webhooks.new_secret()
    good = await db.fetchval(insert, bob.id, receiver.url, webhooks.seal(dev_settings.secret_key, receiver.secret))
    await db.execute("INSERT INTO webhook_deliveries (webhook_id, event_type, msg_id, payload) "
                     "SELECT $1, 'ping', 'msg_dead_' || g, jsonb_build_object('type', 'ping') "
                     "FROM generate_series(1, 1000) AS g",
                     failing)
    await db.execute("INSERT INTO webhook_deliveries (webhook_id, event_type, msg_id, payload) "
                     "VALUES ($1, 'ping', 'msg_good', jsonb_build_object('type', 'ping'))", good)
    outcome = await job.deliver_due({"db": database, "settings": dev_settings, "redis": None})
    assert outcome == {"retry": job.PER_WEBHOOK, "delivered": 1}  # one tick: the healthy one is not queued behind
    assert len(receiver.received) == 1 and receiver.received[0]["verified"]
