"""Projects: the Inbox, create/list/get/patch/archive/delete, roles, leaving and ownership transfer."""
from __future__ import annotations

from typing import Any

import asyncpg

from tests.helpers import assert_problem, register
from tests.project_helpers import PROJECTS, TASKS, add_member, inbox_id, new_project, new_task, shared_project


async def test_every_account_has_an_inbox_and_tasks_default_to_it(client: Any, make_user: Any,
                                                                    db: asyncpg.Connection) -> None:
    registered = await register(client, "new@example.com")
    assert await db.fetchval("SELECT count(*) FROM projects WHERE owner_id = $1 AND is_inbox", registered["id"]) == 1
    user = await make_user()  # a raw INSERT gets one too: the trigger runs in the account's own statement
    page = await (await client.get(PROJECTS, headers=user.headers)).json()
    [inbox] = page["items"]
    assert inbox | {"id": 0, "created_at": "", "updated_at": ""} == {
        "id": 0, "name": "Inbox", "description": "", "color": None, "is_inbox": True, "owner_id": user.id,
        "role": "owner", "member_count": 1, "archived_at": None, "created_at": "", "updated_at": ""}
    task = await new_task(client, user)
    assert task["project_id"] == inbox["id"] and task["assignee_id"] is None and task["comment_count"] == 0
    assert task["owner_id"] == user.id


async def test_migration_moves_existing_tasks_into_their_creators_inbox(db: asyncpg.Connection,
                                                                         make_user: Any) -> None:
    """A task inserted the way tasks were before projects (no project_id) lands in its creator's Inbox."""
    user = await make_user()
    task_project = await db.fetchval("INSERT INTO tasks (owner_id, title) VALUES ($1, 'old') RETURNING project_id",
                                     user.id)
    assert task_project == await inbox_id(db, user)


async def test_create_get_patch_archive_and_list(client: Any, make_user: Any) -> None:
    ada = await make_user()
    created = await client.post(PROJECTS, json={"name": "  Launch  ", "color": "#1f6feb"}, headers=ada.headers)
    assert created.status == 201 and created.headers["Location"].endswith(str((await created.json())["id"]))
    project = await created.json()
    assert (project["name"], project["role"], project["member_count"], project["is_inbox"]) == \
        ("Launch", "owner", 1, False)
    url = f"{PROJECTS}/{project['id']}"
    got = await client.get(url, headers=ada.headers)
    etag = got.headers["ETag"]
    assert (await client.get(url, headers={**ada.headers, "If-None-Match": etag})).status == 304
    renamed = await client.patch(url, json={"name": "Launch v2", "archived": True}, headers=ada.headers)
    assert renamed.status == 200 and (await renamed.json())["archived_at"] is not None
    await assert_problem(await client.patch(url, json={"name": "x"}, headers={**ada.headers, "If-Match": etag}), 412)
    archived = await (await client.get(PROJECTS + "?archived=true", headers=ada.headers)).json()
    active = await (await client.get(PROJECTS + "?archived=false", headers=ada.headers)).json()
    assert [p["name"] for p in archived["items"]] == ["Launch v2"]
    assert [p["name"] for p in active["items"]] == ["Inbox"]
    unarchived = await client.patch(url, json={"archived": False}, headers=ada.headers)
    assert (await unarchived.json())["archived_at"] is None


async def test_bad_project_input_is_422(client: Any, make_user: Any) -> None:
    ada = await make_user()
    for body, field in (({"name": ""}, "name"), ({"name": "x" * 101}, "name"), ({"name": 5}, "name"),
                        ({"name": "a", "color": "red"}, "color"), ({"name": "a", "owner_id": 3}, "owner_id"),
                        ({"name": "a", "description": "d" * 2001}, "description")):
        await assert_problem(await client.post(PROJECTS, json=body, headers=ada.headers), 422, field)
    await assert_problem(await client.get(PROJECTS + "?archived=maybe", headers=ada.headers), 422, "archived")


async def test_the_inbox_cannot_be_renamed_archived_deleted_or_shared(client: Any, make_user: Any,
                                                                        db: asyncpg.Connection) -> None:
    ada, bob = await make_user(), await make_user()
    url = f"{PROJECTS}/{await inbox_id(db, ada)}"
    await assert_problem(await client.patch(url, json={"name": "Mine"}, headers=ada.headers), 409)
    await assert_problem(await client.patch(url, json={"archived": True}, headers=ada.headers), 409)
    await assert_problem(await client.delete(url, headers=ada.headers), 409)
    await assert_problem(await client.post(url + "/invitations", json={"email": bob.email, "role": "viewer"},
                                           headers=ada.headers), 409)
    assert (await client.patch(url, json={"description": "my own things"}, headers=ada.headers)).status == 200


async def test_deleting_a_project_takes_its_tasks(client: Any, make_user: Any, db: asyncpg.Connection) -> None:
    ada, bob = await make_user(), await make_user()
    project = await shared_project(client, db, ada, admin=bob)
    task = await new_task(client, ada, project)
    await assert_problem(await client.delete(f"{PROJECTS}/{project['id']}", headers=bob.headers), 403)
    assert (await client.delete(f"{PROJECTS}/{project['id']}", headers=ada.headers)).status == 204
    await assert_problem(await client.get(f"{TASKS}/{task['id']}", headers=ada.headers), 404)
    assert await db.fetchval("SELECT count(*) FROM tasks WHERE id = $1", task["id"]) == 0


async def test_members_see_each_others_tasks_and_stats(client: Any, make_user: Any, db: asyncpg.Connection) -> None:
    ada, bob, eve = await make_user(), await make_user(), await make_user()
    project = await shared_project(client, db, ada, viewer=bob)
    task = await new_task(client, ada, project)
    await new_task(client, ada)  # Ada's Inbox: not Bob's business
    listed = await (await client.get(TASKS, headers=bob.headers)).json()
    assert [t["id"] for t in listed["items"]] == [task["id"]]
    filtered = await (await client.get(f"{TASKS}?project_id={project['id']}", headers=ada.headers)).json()
    assert [t["id"] for t in filtered["items"]] == [task["id"]]
    stats = await (await client.get(f"{TASKS}/stats", headers=bob.headers)).json()
    assert stats["by_status"]["todo"] == 1
    assert (await (await client.get(TASKS, headers=eve.headers)).json())["items"] == []
    members = await (await client.get(f"{PROJECTS}/{project['id']}/members", headers=bob.headers)).json()
    assert [(m["user"]["id"], m["role"]) for m in members["items"]] == [(ada.id, "owner"), (bob.id, "viewer")]


async def test_viewers_read_and_editors_write(client: Any, make_user: Any, db: asyncpg.Connection) -> None:
    ada, viewer, editor = await make_user(), await make_user(), await make_user()
    project = await shared_project(client, db, ada, viewer=viewer, editor=editor)
    task = await new_task(client, editor, project)
    url = f"{TASKS}/{task['id']}"
    assert (await client.get(url, headers=viewer.headers)).status == 200
    await assert_problem(await client.patch(url, json={"title": "x"}, headers=viewer.headers), 403)
    await assert_problem(await client.delete(url, headers=viewer.headers), 403)
    await assert_problem(await client.post(TASKS, json={"title": "x", "project_id": project["id"]},
                                           headers=viewer.headers), 403)
    assert (await client.patch(url, json={"status": "done"}, headers=editor.headers)).status == 200
    assert (await client.delete(url, headers=editor.headers)).status == 204


async def test_admin_actions_need_the_admin_role(client: Any, make_user: Any, db: asyncpg.Connection) -> None:
    ada, viewer, editor, other = await make_user(), await make_user(), await make_user(), await make_user()
    project = await shared_project(client, db, ada, viewer=viewer, editor=editor)
    await add_member(db, project, other, "viewer")
    url = f"{PROJECTS}/{project['id']}"
    for user in (viewer, editor):
        await assert_problem(await client.patch(url, json={"name": "x"}, headers=user.headers), 403)
        await assert_problem(await client.post(url + "/invitations", json={"email": "z@example.com", "role": "viewer"},
                                               headers=user.headers), 403)
        await assert_problem(await client.get(url + "/invitations", headers=user.headers), 403)
        await assert_problem(await client.patch(f"{url}/members/{other.id}", json={"role": "editor"},
                                                headers=user.headers), 403)
        await assert_problem(await client.delete(f"{url}/members/{other.id}", headers=user.headers), 403)
        await assert_problem(await client.delete(url, headers=user.headers), 403)
    assert await db.fetchval("SELECT role::text FROM project_members WHERE project_id = $1 AND user_id = $2",
                             project["id"], other.id) == "viewer"


async def test_an_admin_cannot_grant_owner_or_a_role_at_or_above_their_own(client: Any, make_user: Any,
                                                                             db: asyncpg.Connection) -> None:
    ada, admin, peer, viewer = await make_user(), await make_user(), await make_user(), await make_user()
    project = await shared_project(client, db, ada, admin=admin, viewer=viewer)
    await add_member(db, project, peer, "admin")
    members = f"{PROJECTS}/{project['id']}/members"
    await assert_problem(await client.patch(f"{members}/{viewer.id}", json={"role": "owner"}, headers=admin.headers),
                         403)
    await assert_problem(await client.patch(f"{members}/{viewer.id}", json={"role": "admin"}, headers=admin.headers),
                         403)
    await assert_problem(await client.patch(f"{members}/{peer.id}", json={"role": "viewer"}, headers=admin.headers),
                         403)
    await assert_problem(await client.delete(f"{members}/{peer.id}", headers=admin.headers), 403)
    await assert_problem(await client.patch(f"{members}/{viewer.id}", json={"role": "boss"}, headers=admin.headers),
                         422, "role")
    changed = await client.patch(f"{members}/{viewer.id}", json={"role": "editor"}, headers=admin.headers)
    assert changed.status == 200 and (await changed.json())["role"] == "editor"
    roles = dict(await db.fetch("SELECT user_id, role::text FROM project_members WHERE project_id = $1", project["id"]))
    assert roles == {ada.id: "owner", admin.id: "admin", peer.id: "admin", viewer.id: "editor"}


async def test_the_owner_can_neither_leave_nor_be_removed(client: Any, make_user: Any, db: asyncpg.Connection) -> None:
    ada, admin = await make_user(), await make_user()
    project = await shared_project(client, db, ada, admin=admin)
    members = f"{PROJECTS}/{project['id']}/members"
    await assert_problem(await client.delete(f"{members}/{ada.id}", headers=ada.headers), 409)
    await assert_problem(await client.delete(f"{members}/{ada.id}", headers=admin.headers), 409)
    await assert_problem(await client.patch(f"{members}/{ada.id}", json={"role": "admin"}, headers=ada.headers), 409)
    assert await db.fetchval("SELECT count(*) FROM project_members WHERE project_id = $1", project["id"]) == 2


async def test_leaving_and_removal_end_access_and_unassign(client: Any, make_user: Any,
                                                            db: asyncpg.Connection) -> None:
    ada, bob, cat = await make_user(), await make_user(), await make_user()
    project = await shared_project(client, db, ada, editor=bob, viewer=cat)
    task = await new_task(client, ada, project, assignee_id=bob.id)
    assert (await client.get(TASKS, headers=bob.headers)).status == 200  # Bob's first page is now cached
    assert (await client.delete(f"{PROJECTS}/{project['id']}/members/{bob.id}", headers=ada.headers)).status == 204
    await assert_problem(await client.get(f"{TASKS}/{task['id']}", headers=bob.headers), 404)
    assert (await (await client.get(TASKS, headers=bob.headers)).json())["items"] == []  # not the cached page
    assert (await (await client.get(f"{TASKS}/{task['id']}", headers=ada.headers)).json())["assignee_id"] is None
    assert (await client.delete(f"{PROJECTS}/{project['id']}/members/{cat.id}", headers=cat.headers)).status == 204
    await assert_problem(await client.get(f"{PROJECTS}/{project['id']}", headers=cat.headers), 404)


async def test_ownership_transfer(client: Any, make_user: Any, db: asyncpg.Connection) -> None:
    ada, bob = await make_user(), await make_user()
    project = await shared_project(client, db, ada, editor=bob)
    members = f"{PROJECTS}/{project['id']}/members"
    await assert_problem(await client.patch(f"{members}/{ada.id}", json={"role": "owner"}, headers=bob.headers), 403)
    moved = await client.patch(f"{members}/{bob.id}", json={"role": "owner"}, headers=ada.headers)
    assert moved.status == 200 and (await moved.json())["role"] == "owner"
    got = await (await client.get(f"{PROJECTS}/{project['id']}", headers=ada.headers)).json()
    assert (got["owner_id"], got["role"]) == (bob.id, "admin")
    assert (await client.delete(f"{members}/{ada.id}", headers=ada.headers)).status == 204  # now she may leave
    assert (await client.delete(f"{PROJECTS}/{project['id']}", headers=bob.headers)).status == 204


async def test_a_site_admin_acts_as_owner_everywhere(client: Any, make_user: Any, db: asyncpg.Connection) -> None:
    ada, root = await make_user(), await make_user(role="admin")
    project = await new_project(client, ada)
    task = await new_task(client, ada, project)
    assert (await client.get(f"{TASKS}/{task['id']}", headers=root.headers)).status == 200
    assert (await client.patch(f"{PROJECTS}/{project['id']}", json={"name": "Audited"},
                               headers=root.headers)).status == 200
    assert (await (await client.get(TASKS + f"?owner_id={ada.id}", headers=root.headers)).json())["items"]
    # ... but their own listing is their own projects, like anyone's
    assert (await (await client.get(TASKS, headers=root.headers)).json())["items"] == []
