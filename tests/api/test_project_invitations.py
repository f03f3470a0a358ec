"""Invitations: by email through the outbox, token stored hashed and scrubbed, single use, 7 days, limits."""
from __future__ import annotations

import hashlib
import re
from typing import Any

import asyncpg

from tests.export_helpers import run_jobs
from tests.helpers import assert_problem, mailed_tokens
from tests.project_helpers import PROJECTS, new_project, shared_project

ACCEPT = "/api/v1/invitations/accept"
LINK_PATH = "/invitations/accept"


def tokens_by_recipient(stack: Any) -> dict[str, str]:
    """The newest invitation token mailed to each address (mails arrive in any order)."""
    found = {}
    for message in stack.smtp.messages():
        text = message.get_body(("plain",)).get_content()
        found[str(message["To"])] = re.findall(re.escape(LINK_PATH) + r"\?token=([A-Za-z0-9_-]+)", text)[0]
    return found


async def _invite(client: Any, inviter: Any, project: dict[str, Any], email: str, role: str = "editor") -> Any:
    return await client.post(f"{PROJECTS}/{project['id']}/invitations", json={"email": email, "role": role},
                             headers=inviter.headers)


async def _members(db: asyncpg.Connection, project: dict[str, Any]) -> dict[int, str]:
    return dict(await db.fetch("SELECT user_id, role::text FROM project_members WHERE project_id = $1", project["id"]))


async def test_invite_by_mail_then_accept_end_to_end(client: Any, make_user: Any, db: asyncpg.Connection,
                                                     settings: Any, stack: Any) -> None:
    ada, bob = await make_user(name="Ada"), await make_user("Bob@Example.com")
    project = await new_project(client, ada)
    response = await _invite(client, ada, project, "BOB@example.com")
    assert response.status == 202
    pending = await (await client.get(f"{PROJECTS}/{project['id']}/invitations", headers=ada.headers)).json()
    [invitation] = pending["items"]
    assert (invitation["email"], invitation["role"], invitation["invited_by"]) == ("bob@example.com", "editor", ada.id)
    await run_jobs(settings)
    [token] = mailed_tokens(stack, LINK_PATH)
    [message] = stack.smtp.messages()
    assert "Launch" in message["Subject"] and message["To"] == "bob@example.com"
    # Stored only hashed; the outbox row no longer holds the token or the link once sent.
    assert await db.fetchval("SELECT token_hash FROM project_invitations") == hashlib.sha256(token.encode()).digest()
    assert token not in str(await db.fetchval("SELECT context::text FROM email_outbox"))
    accepted = await client.post(ACCEPT, json={"token": token}, headers=bob.headers)
    assert accepted.status == 200
    assert ((await accepted.json())["id"], (await accepted.json())["role"]) == (project["id"], "editor")
    assert (await _members(db, project))[bob.id] == "editor"
    assert (await (await client.get(f"{PROJECTS}/{project['id']}/invitations", headers=ada.headers)).json())[
        "items"] == []
    await assert_problem(await client.post(ACCEPT, json={"token": token}, headers=bob.headers), 404)  # spent


async def test_inviting_yourself_or_a_member_is_409(client: Any, make_user: Any, db: asyncpg.Connection) -> None:
    ada, bob = await make_user(), await make_user()
    project = await shared_project(client, db, ada, viewer=bob)
    await assert_problem(await _invite(client, ada, project, ada.email), 409)
    await assert_problem(await _invite(client, ada, project, bob.email.upper()), 409)
    for body, field in (({"email": "not-an-address", "role": "viewer"}, "email"),
                        ({"email": "z@example.com", "role": "owner"}, "role"),
                        ({"email": "z@example.com"}, "role"),
                        ({"email": "z@example.com", "role": "viewer", "extra": 1}, "extra")):
        await assert_problem(await client.post(f"{PROJECTS}/{project['id']}/invitations", json=body,
                                               headers=ada.headers), 422, field)
    assert await db.fetchval("SELECT count(*) FROM project_invitations") == 0


async def test_an_admin_invites_only_below_their_role(client: Any, make_user: Any, db: asyncpg.Connection) -> None:
    ada, admin = await make_user(), await make_user()
    project = await shared_project(client, db, ada, admin=admin)
    await assert_problem(await _invite(client, admin, project, "z@example.com", "admin"), 403)
    assert (await _invite(client, admin, project, "z@example.com", "editor")).status == 202
    assert (await _invite(client, ada, project, "y@example.com", "admin")).status == 202


async def test_refused_accepts_change_nothing(client: Any, make_user: Any, db: asyncpg.Connection, settings: Any,
                                              stack: Any) -> None:
    ada, bob, eve = await make_user(), await make_user(), await make_user()
    unverified = await make_user(verified=False)
    project = await new_project(client, ada)
    for email in (bob.email, unverified.email, "late@example.com", "gone@example.com"):
        assert (await _invite(client, ada, project, email)).status == 202
    await run_jobs(settings)
    tokens = tokens_by_recipient(stack)
    before = await _members(db, project)
    # Another account: 403; the right address but unverified: 403.
    await assert_problem(await client.post(ACCEPT, json={"token": tokens[bob.email]}, headers=eve.headers), 403)
    await assert_problem(await client.post(ACCEPT, json={"token": tokens[unverified.email]},
                                           headers=unverified.headers), 403)
    # Expired: 410. Revoked, unknown: 404.
    late = await make_user("late@example.com")
    await db.execute("UPDATE project_invitations SET expires_at = now() - interval '1 second' "
                     "WHERE email = 'late@example.com'")
    await assert_problem(await client.post(ACCEPT, json={"token": tokens["late@example.com"]}, headers=late.headers),
                         410)
    gone = await make_user("gone@example.com")
    gone_id = await db.fetchval("SELECT id FROM project_invitations WHERE email = 'gone@example.com'")
    assert (await client.delete(f"{PROJECTS}/{project['id']}/invitations/{gone_id}", headers=ada.headers)).status == 204
    await assert_problem(await client.delete(f"{PROJECTS}/{project['id']}/invitations/{gone_id}",
                                             headers=ada.headers), 404)
    await assert_problem(await client.post(ACCEPT, json={"token": tokens["gone@example.com"]}, headers=gone.headers),
                         404)
    await assert_problem(await client.post(ACCEPT, json={"token": "made-up"}, headers=bob.headers), 404)
    await assert_problem(await client.post(ACCEPT, json={"token": ""}, headers=bob.headers), 422, "token")
    assert await _members(db, project) == before
    assert await db.fetchval("SELECT count(*) FROM project_invitations WHERE accepted_at IS NOT NULL") == 0
    # The refused one still works for its own account; twice is 404; a member already is 409.
    assert (await client.post(ACCEPT, json={"token": tokens[bob.email]}, headers=bob.headers)).status == 200
    await assert_problem(await client.post(ACCEPT, json={"token": tokens[bob.email]}, headers=bob.headers), 404)
    assert (await _invite(client, ada, project, "z@example.com")).status == 202
    await db.execute("UPDATE users SET email = 'z@example.com' WHERE id = $1", eve.id)  # eve now is z, and a member
    await db.execute("INSERT INTO project_members (project_id, user_id, role) VALUES ($1, $2, 'viewer')",
                     project["id"], eve.id)
    await run_jobs(settings)
    token = tokens_by_recipient(stack)["z@example.com"]
    await assert_problem(await client.post(ACCEPT, json={"token": token}, headers=eve.headers), 409)
    assert (await _members(db, project))[eve.id] == "viewer"


async def test_a_newer_invitation_replaces_the_older(client: Any, make_user: Any, settings: Any, stack: Any,
                                                     db: asyncpg.Connection) -> None:
    ada, bob = await make_user(), await make_user()
    project = await new_project(client, ada)
    await _invite(client, ada, project, bob.email, "viewer")
    await _invite(client, ada, project, bob.email, "editor")
    await run_jobs(settings)
    revoked = await db.fetchval("SELECT token_hash FROM project_invitations WHERE revoked_at IS NOT NULL")
    old, new = sorted(mailed_tokens(stack, LINK_PATH), key=lambda t: hashlib.sha256(t.encode()).digest() != revoked)
    await assert_problem(await client.post(ACCEPT, json={"token": old}, headers=bob.headers), 404)
    assert (await (await client.post(ACCEPT, json={"token": new}, headers=bob.headers)).json())["role"] == "editor"


async def test_invitations_are_limited_per_project_and_per_inviter(aiohttp_client: Any, settings: Any,
                                                                   make_user: Any, db: asyncpg.Connection) -> None:
    from web.app import create_app

    client = await aiohttp_client(create_app(settings.with_(rate_limits=True, rate_limit_invites="2/day",
                                                            rate_limit_api="1000/minute")))
    ada, bob, cat = await make_user(), await make_user(), await make_user()
    first = await shared_project(client, db, ada, admin=bob)
    second = await new_project(client, cat)
    for i in range(2):
        response = await _invite(client, ada, first, f"a{i}@example.com")
        assert response.status == 202 and response.headers["RateLimit-Remaining"] == str(1 - i)
    over = await _invite(client, ada, first, "a2@example.com")
    await assert_problem(over, 429)
    assert int(over.headers["Retry-After"]) > 0
    await assert_problem(await _invite(client, bob, first, "b@example.com"), 429)  # per project: Bob too
    assert (await _invite(client, cat, second, "c0@example.com")).status == 202  # another project, inviter
    await db.execute("INSERT INTO project_members (project_id, user_id, role) VALUES ($1, $2, 'admin')",
                     second["id"], ada.id)
    await assert_problem(await _invite(client, ada, second, "a3@example.com"), 429)  # per inviter: Ada anywhere
    assert await db.fetchval("SELECT count(*) FROM project_invitations") == 3
