"""/api/v1/webhooks: the secret shown once and sealed at rest, URL rules (SSRF), rights, bad input."""
from __future__ import annotations

import base64
from typing import Any

import asyncpg

from tests.helpers import assert_problem
from tests.project_helpers import add_member, new_project

WEBHOOKS = "/api/v1/webhooks"


async def test_secret_once_sealed_at_rest_and_crud(client: Any, make_user: Any, db: asyncpg.Connection) -> None:
    ada, eve = await make_user(), await make_user()
    created = await client.post(WEBHOOKS, json={"url": "https://hooks.example.com/in", "events": ["task.created"]},
                                headers=ada.headers)
    assert created.status == 201 and created.headers["Location"] == f"{WEBHOOKS}/{(await created.json())['id']}"
    hook = await created.json()
    assert hook["secret"].startswith("whsec_") and 24 <= len(base64.b64decode(hook["secret"][6:])) <= 64
    assert set(hook) == {"id", "url", "events", "project_id", "active", "created_at", "secret"}
    stored = await db.fetchval("SELECT secret_sealed FROM webhooks")
    assert hook["secret"].encode() not in stored and base64.b64decode(hook["secret"][6:]) not in stored
    url = f"{WEBHOOKS}/{hook['id']}"
    got = await (await client.get(url, headers=ada.headers)).json()
    assert "secret" not in got and got["events"] == ["task.created"]
    listed = await (await client.get(WEBHOOKS, headers=ada.headers)).json()
    assert [h["id"] for h in listed["items"]] == [hook["id"]] and "secret" not in listed["items"][0]
    patched = await client.patch(url, json={"events": ["*"], "active": False}, headers=ada.headers)
    assert (await patched.json())["events"] == ["*"] and (await patched.json())["active"] is False
    for method in ("get", "delete"):
        await assert_problem(await getattr(client, method)(url, headers=eve.headers), 404)
    await assert_problem(await client.patch(url, json={"active": True}, headers=eve.headers), 404)
    await assert_problem(await client.get(f"{url}/deliveries", headers=eve.headers), 404)
    await assert_problem(await client.post(f"{url}/ping", headers=eve.headers), 404)
    assert (await client.delete(url, headers=ada.headers)).status == 204
    await assert_problem(await client.get(url, headers=ada.headers), 404)
    assert [r["type"] for r in await db.fetch("SELECT type FROM audit_log ORDER BY id")] == [
        "webhook.created", "webhook.deleted"]
    assert hook["secret"] not in str([dict(r) for r in await db.fetch("SELECT * FROM audit_log")])


async def test_urls_that_could_reach_inside_are_refused(client: Any, make_user: Any) -> None:
    ada = await make_user()
    for url in ("http://hooks.example.com/", "https://127.0.0.1/", "https://10.1.2.3/x", "https://[::1]/",
                "https://169.254.169.254/latest", "https://localhost/", "https://[::ffff:127.0.0.1]/",
                "https://user:pw@hooks.example.com/", "ftp://hooks.example.com/", "https:///nohost", "not a url",
                "https://[::1", "https://hooks.example.com:99999/", "https://hooks.example.com:x/",
                "https://hooks.example.com/a b", "https://hooks.example.com/\n"):
        response = await client.post(WEBHOOKS, json={"url": url, "events": ["*"]}, headers=ada.headers)
        await assert_problem(response, 422, "url")


async def test_rights_and_bad_input(client: Any, make_user: Any, db: asyncpg.Connection) -> None:
    ada, ed, eve = await make_user(), await make_user(), await make_user()
    project = await new_project(client, ada)
    await add_member(db, project, ed, "editor")
    body = {"url": "https://hooks.example.com/", "events": ["*"], "project_id": project["id"]}
    await assert_problem(await client.post(WEBHOOKS, json=body, headers=ed.headers), 403)
    await assert_problem(await client.post(WEBHOOKS, json=body, headers=eve.headers), 404)
    assert (await client.post(WEBHOOKS, json=body, headers=ada.headers)).status == 201
    for bad, field in (({"events": ["nope"]}, "events"), ({"events": []}, "events"),
                       ({"events": ["*", "task.created", "x"]}, "events"), ({"url": 7}, "url"),
                       ({"url": "https://a.example/" + "x" * 3000}, "url"), ({"extra": 1}, "extra"),
                       ({"events": ["task.created", "task.created"]}, "events")):
        payload = {"url": "https://hooks.example.com/", "events": ["*"], **bad}
        await assert_problem(await client.post(WEBHOOKS, json=payload, headers=ada.headers), 422, field)
    await assert_problem(await client.get(f"{WEBHOOKS}/99999999999999999999", headers=ada.headers), 404)
    await assert_problem(await client.get(f"{WEBHOOKS}?cursor=forged", headers=ada.headers), 422)
