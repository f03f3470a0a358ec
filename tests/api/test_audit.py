"""The site audit log: the listed actions recorded with their origin, append-only, retention, admins only,
never a secret, and failed logins written only after the rate limits let the attempt through."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest

from shared import audit
from tests.helpers import assert_problem
from tests.project_helpers import PROJECTS, add_member, new_project
from web.app import create_app

AUDIT = "/api/v1/admin/audit"
PASSWORD = "correct horse battery"


async def _types(db: asyncpg.Connection) -> list[str]:
    return [r["type"] for r in await db.fetch("SELECT type FROM audit_log ORDER BY id")]


async def test_security_actions_are_recorded_without_secrets(client: Any, make_user: Any,
                                                            db: asyncpg.Connection) -> None:
    root = await make_user(role="admin")
    ada, bob = await make_user(), await make_user()
    headers = {"User-Agent": "audit-test/1.0", "X-Request-ID": "req-audit-1"}
    bad = await client.post("/api/v1/auth/login", json={"email": ada.email, "password": "wrong password!"},
                            headers=headers)
    assert bad.status == 401
    await client.post("/api/v1/auth/login", json={"email": "nobody@example.com", "password": "whatever1"})
    tokens = await (await client.post("/api/v1/auth/login", json={"email": ada.email, "password": PASSWORD})).json()
    spent = tokens["refresh_token"]
    assert (await client.post("/api/v1/auth/refresh", json={"refresh_token": spent})).status == 200
    assert (await client.post("/api/v1/auth/refresh", json={"refresh_token": spent})).status == 401  # reuse
    new_password = "another horse battery"
    changed = await client.patch("/api/v1/users/me", json={"password": new_password, "current_password": PASSWORD},
                                 headers=ada.headers)
    assert changed.status == 200
    promoted = await client.patch(f"/api/v1/admin/users/{bob.id}", json={"role": "admin"}, headers=root.headers)
    assert promoted.status == 200
    assert (await client.patch(f"/api/v1/admin/users/{bob.id}", json={"is_active": False},
                               headers=root.headers)).status == 200
    project = await new_project(client, ada)
    await add_member(db, project, root, "editor")
    members = f"{PROJECTS}/{project['id']}/members/{root.id}"
    assert (await client.patch(members, json={"role": "viewer"}, headers=ada.headers)).status == 200
    assert (await client.patch(members, json={"role": "owner"}, headers=ada.headers)).status == 200
    assert (await client.delete(f"{PROJECTS}/{project['id']}/members/{ada.id}", headers=root.headers)).status == 204
    assert (await client.delete(f"{PROJECTS}/{project['id']}", headers=root.headers)).status == 204
    assert (await client.post("/api/v1/auth/logout", json={}, headers=root.headers)).status == 204
    assert await _types(db) == [
        "auth.login_failed", "auth.login_failed", "auth.login", "auth.refresh_reuse", "user.password_changed",
        "user.role_changed", "user.active_changed", "member.updated", "project.owner_changed", "member.updated",
        "member.removed", "project.deleted", "auth.logout"]
    first = await db.fetchrow("SELECT * FROM audit_log ORDER BY id LIMIT 1")
    assert (first["user_agent"], first["request_id"], first["ip"]) == ("audit-test/1.0", "req-audit-1", "127.0.0.1")
    assert first["subject_id"] == ada.id and json.loads(first["detail"])["email"] == ada.email
    everything = str([dict(r) for r in await db.fetch("SELECT * FROM audit_log")])
    for secret in (PASSWORD, new_password, "wrong password!", spent, tokens["access_token"]):
        assert secret not in everything


async def test_the_api_lists_filters_and_pages_for_admins_only(client: Any, make_user: Any,
                                                              db: asyncpg.Connection) -> None:
    root, ada = await make_user(role="admin"), await make_user()
    for _ in range(3):
        await client.post("/api/v1/auth/login", json={"email": ada.email, "password": PASSWORD})
    await client.post("/api/v1/auth/login", json={"email": ada.email, "password": "not it at all"})
    page = await (await client.get(f"{AUDIT}?limit=2", headers=root.headers)).json()
    assert [e["type"] for e in page["items"]] == ["auth.login_failed", "auth.login"] and page["next_cursor"]
    rest = await (await client.get(f"{AUDIT}?limit=2&cursor={page['next_cursor']}", headers=root.headers)).json()
    assert [e["type"] for e in rest["items"]] == ["auth.login", "auth.login"] and rest["next_cursor"] is None
    assert set(page["items"][0]) == {"id", "type", "actor_id", "subject_type", "subject_id", "ip", "user_agent",
                                     "request_id", "at", "detail"}
    logins = await (await client.get(f"{AUDIT}?type=auth.login&actor_id={ada.id}", headers=root.headers)).json()
    assert len(logins["items"]) == 3
    later = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (await (await client.get(f"{AUDIT}?since={later}", headers=root.headers)).json())["items"] == []
    assert len((await (await client.get(f"{AUDIT}?until={later}", headers=root.headers)).json())["items"]) == 4
    await assert_problem(await client.get(AUDIT, headers=ada.headers), 403)
    for query in ("type=nope", "actor_id=x", "since=yesterday", "cursor=forged", "limit=0",
                  "since=2026-01-01T00:00:00"):
        await assert_problem(await client.get(f"{AUDIT}?{query}", headers=root.headers), 422)


async def test_append_only_and_retention(client: Any, make_user: Any, database: Any, db: asyncpg.Connection) -> None:
    ada = await make_user()
    await client.post("/api/v1/auth/login", json={"email": ada.email, "password": PASSWORD})
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await db.execute("UPDATE audit_log SET type = 'auth.logout'")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await db.execute("DELETE FROM audit_log")
    async with database.write.acquire() as conn:
        assert await audit.delete_expired(conn, older_than=datetime.now(timezone.utc) - timedelta(days=1),
                                          batch=10) == 0
        assert await audit.delete_expired(conn, older_than=datetime.now(timezone.utc) + timedelta(days=1),
                                          batch=10) == 1
    with pytest.raises(asyncpg.InsufficientPrivilegeError):  # the retention's permission ended with its transaction
        await db.execute("INSERT INTO audit_log (type) VALUES ('auth.logout'); DELETE FROM audit_log")


async def test_failed_logins_are_audited_only_after_the_rate_limit(aiohttp_client: Any, settings: Any,
                                                                   make_user: Any, db: asyncpg.Connection) -> None:
    client = await aiohttp_client(create_app(settings.with_(rate_limits=True, rate_limit_login="3 per 15 minutes")))
    ada = await make_user()
    statuses = [(await client.post("/api/v1/auth/login", json={"email": ada.email, "password": "guess guess"})).status
                for _ in range(10)]
    assert statuses.count(429) >= 7
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE type = 'auth.login_failed'") == 3
