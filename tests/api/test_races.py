"""Races a slow bcrypt opens: a password change, a login or a reset must not outlive a later reset or
deactivation; two admins must not remove each other. Each test holds a bcrypt call (or a row) open on
purpose while the competing change commits, so the interleaving is the bad one every time.
"""
from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from shared import security
from shared.security import new_token
from tests.pages.test_pages_session import sign_in
from web.session import SESSION_COOKIE

ME = "/api/v1/users/me"
LOGIN = "/api/v1/auth/login"
CONFIRM = "/api/v1/auth/password-reset/confirm"


class BcryptGate:
    """Holds the first call of bcrypt's ``function_name`` open, after bcrypt ran, until ``release`` is set:
    the caller has its answer but has not acted on it yet (the window a full bcrypt queue widens)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, function_name: str) -> None:
        self.entered, self.release = asyncio.Event(), asyncio.Event()
        original = security._in_bcrypt_pool

        async def gated(function: Any, *args: Any, **kwargs: Any) -> Any:
            result = await original(function, *args, **kwargs)
            if getattr(function, "__name__", "") == function_name and not self.entered.is_set():
                self.entered.set()
                await self.release.wait()
            return result

        monkeypatch.setattr(security, "_in_bcrypt_pool", gated)

    async def held(self) -> None:
        await asyncio.wait_for(self.entered.wait(), 15)


async def reset_token(db: asyncpg.Connection, user_id: int) -> str:
    """A live password-reset token, as the mailed link carries it."""
    token, digest = new_token()
    await db.execute("INSERT INTO one_time_tokens (token_hash, user_id, purpose, expires_at) "
                     "VALUES ($1, $2, 'password_reset', now() + interval '1 hour')", digest, user_id)
    return token


async def live_sessions(db: asyncpg.Connection, user_id: int) -> int:
    return await db.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL", user_id)


async def test_a_password_change_waiting_on_bcrypt_loses_to_a_reset(client, make_user, db, monkeypatch):
    victim = await make_user()
    gate = BcryptGate(monkeypatch, "checkpw")
    attack = asyncio.create_task(client.patch(ME, headers=victim.headers, json={
        "current_password": victim.password, "password": "the attacker's choice"}))
    await gate.held()  # the old password checked out; the new hash is not written yet
    reset = await client.post(CONFIRM, json={"token": await reset_token(db, victim.id),
                                             "password": "the victim's choice"})
    assert reset.status == 204
    gate.release.set()
    response = await attack
    assert response.status in (401, 422), await response.text()
    ok = await client.post(LOGIN, json={"email": victim.email, "password": "the victim's choice"})
    assert ok.status == 200
    stolen = await client.post(LOGIN, json={"email": victim.email, "password": "the attacker's choice"})
    assert stolen.status == 401


@pytest.mark.parametrize("how", ["api", "html"])
async def test_a_login_started_before_a_reset_gets_no_session(client, make_user, db, monkeypatch, how):
    user = await make_user()
    gate = BcryptGate(monkeypatch, "checkpw")
    login = asyncio.create_task(client.post(LOGIN, json={"email": user.email, "password": user.password})
                                if how == "api" else sign_in(client, user.email, user.password))
    await gate.held()
    reset = await client.post(CONFIRM, json={"token": await reset_token(db, user.id), "password": "brand new one"})
    assert reset.status == 204
    gate.release.set()
    response = await login
    assert response.status == 401, await response.text()
    assert SESSION_COOKIE not in response.cookies
    assert await live_sessions(db, user.id) == 0


@pytest.mark.parametrize("how", ["api", "html"])
async def test_a_login_started_before_a_deactivation_gets_no_session(client, make_user, db, monkeypatch, how):
    admin, user = await make_user(role="admin"), await make_user()
    gate = BcryptGate(monkeypatch, "checkpw")
    login = asyncio.create_task(client.post(LOGIN, json={"email": user.email, "password": user.password})
                                if how == "api" else sign_in(client, user.email, user.password))
    await gate.held()
    off = await client.patch(f"/api/v1/admin/users/{user.id}", json={"is_active": False}, headers=admin.headers)
    assert off.status == 200
    gate.release.set()
    response = await login
    assert response.status in (401, 403), await response.text()
    assert SESSION_COOKIE not in response.cookies
    assert await live_sessions(db, user.id) == 0


async def test_a_reset_hashing_while_the_account_is_deactivated_changes_nothing(client, make_user, db,
                                                                                monkeypatch):
    admin, user = await make_user(role="admin"), await make_user()
    old_hash = await db.fetchval("SELECT password_hash FROM users WHERE id = $1", user.id)
    token = await reset_token(db, user.id)
    gate = BcryptGate(monkeypatch, "hashpw")
    reset = asyncio.create_task(client.post(CONFIRM, json={"token": token, "password": "brand new one"}))
    await gate.held()
    off = await client.patch(f"/api/v1/admin/users/{user.id}", json={"is_active": False}, headers=admin.headers)
    assert off.status == 200
    gate.release.set()
    assert (await reset).status == 401
    assert await db.fetchval("SELECT password_hash FROM users WHERE id = $1", user.id) == old_hash


async def test_a_password_change_waiting_on_bcrypt_loses_to_a_deactivation(client, make_user, db, monkeypatch):
    admin, user = await make_user(role="admin"), await make_user()
    old_hash = await db.fetchval("SELECT password_hash FROM users WHERE id = $1", user.id)
    gate = BcryptGate(monkeypatch, "checkpw")
    change = asyncio.create_task(client.patch(ME, headers=user.headers, json={
        "current_password": user.password, "password": "another password"}))
    await gate.held()
    off = await client.patch(f"/api/v1/admin/users/{user.id}", json={"is_active": False}, headers=admin.headers)
    assert off.status == 200
    gate.release.set()
    assert (await change).status in (401, 403, 422)
    assert await db.fetchval("SELECT password_hash FROM users WHERE id = $1", user.id) == old_hash


# --- at least one active admin ---------------------------------------------------------------------------

async def lock_waiters(db: asyncpg.Connection, at_least: int, timeout: float = 15.0) -> None:
    """Until ``at_least`` backends of this database wait on a lock (row or advisory)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while await db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                            "AND datname = current_database()") < at_least:
        assert loop.time() < deadline, "the requests never reached the database"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("change", [{"role": "user"}, {"is_active": False}])
async def test_two_admins_removing_each_other_at_once_leave_one(client, make_user, db, settings, change):
    first, second = await make_user(role="admin"), await make_user(role="admin")
    blocker = await asyncpg.connect(settings.database_url)
    try:
        # Both requests pass their admin check, then meet at the same moment: the worst interleaving.
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("SELECT id FROM users WHERE id = ANY($1::bigint[]) FOR UPDATE", [first.id, second.id])
        one = asyncio.create_task(client.patch(f"/api/v1/admin/users/{second.id}", json=change,
                                               headers=first.headers))
        two = asyncio.create_task(client.patch(f"/api/v1/admin/users/{first.id}", json=change,
                                               headers=second.headers))
        await lock_waiters(db, 2)
        await transaction.rollback()
        responses = await asyncio.gather(one, two)
    finally:
        await blocker.close()
    statuses = sorted(response.status for response in responses)
    assert statuses[0] == 200 and statuses[1] in (403, 409), statuses
    assert await db.fetchval("SELECT count(*) FROM users WHERE role = 'admin' AND is_active") == 1


async def test_an_admin_report_is_not_downloadable_once_its_requester_lost_the_role(client, make_user, db):
    boss, former = await make_user(role="admin"), await make_user(role="admin")
    queued = await client.post("/api/v1/reports", json={"kind": "admin_activity"}, headers=former.headers)
    assert queued.status == 202, await queued.text()
    job_id = (await queued.json())["id"]
    demoted = await client.patch(f"/api/v1/admin/users/{former.id}", json={"role": "user"}, headers=boss.headers)
    assert demoted.status == 200
    await db.execute("UPDATE jobs SET status = 'succeeded', storage_key = 'x.pdf', finished_at = now(), "
                     "expires_at = now() + interval '1 day' WHERE id = $1", job_id)
    for path in (f"/api/v1/reports/{job_id}", f"/api/v1/reports/{job_id}/download"):
        response = await client.get(path, headers=former.headers)
        assert response.status == 404, (path, response.status)
    # Still there for an admin, and an ordinary summary stays the owner's.
    assert (await client.get(f"/api/v1/reports/{job_id}", headers=boss.headers)).status == 200
    summary = await client.post("/api/v1/reports", json={"kind": "summary"}, headers=former.headers)
    assert (await client.get(f"/api/v1/reports/{(await summary.json())['id']}", headers=former.headers)).status == 200
