"""One definition of rights, on every path: probing, moves, assignees, exports, the cached first page."""
from __future__ import annotations

from typing import Any

import asyncpg

from shared import rights, tasks
from tests.export_helpers import create_job, download, fetch_job, parse_csv, run_jobs
from tests.helpers import assert_problem
from tests.project_helpers import PROJECTS, TASKS, inbox_id, new_project, new_task, problem_shape, shared_project

MISSING = 9_000_000


async def test_a_non_member_probing_ids_gets_the_404_of_a_missing_id_on_every_route(
        client: Any, make_user: Any, db: asyncpg.Connection) -> None:
    ada, eve = await make_user(), await make_user()
    project = await new_project(client, ada)
    task = await new_task(client, ada, project)
    comment = await (await client.post(f"{TASKS}/{task['id']}/comments", json={"body": "hi"},
                                       headers=ada.headers)).json()
    invitation = await client.post(f"{PROJECTS}/{project['id']}/invitations",
                                   json={"email": "zed@example.com", "role": "viewer"}, headers=ada.headers)
    assert invitation.status == 202
    invitation_id = await db.fetchval("SELECT id FROM project_invitations")
    routes = [  # (method, path with {p} project, {t} task, {c} comment, {u} member, {i} invitation, body)
        ("GET", "/api/v1/projects/{p}", None), ("PATCH", "/api/v1/projects/{p}", {"name": "mine"}),
        ("DELETE", "/api/v1/projects/{p}", None), ("GET", "/api/v1/projects/{p}/members", None),
        ("PATCH", "/api/v1/projects/{p}/members/{u}", {"role": "viewer"}),
        ("DELETE", "/api/v1/projects/{p}/members/{u}", None),
        ("POST", "/api/v1/projects/{p}/invitations", {"email": "x@example.com", "role": "viewer"}),
        ("GET", "/api/v1/projects/{p}/invitations", None),
        ("DELETE", "/api/v1/projects/{p}/invitations/{i}", None),
        ("GET", "/api/v1/tasks/{t}", None), ("PATCH", "/api/v1/tasks/{t}", {"title": "mine"}),
        ("DELETE", "/api/v1/tasks/{t}", None), ("GET", "/api/v1/tasks/{t}/comments", None),
        ("POST", "/api/v1/tasks/{t}/comments", {"body": "hello?"}),
        ("PATCH", "/api/v1/comments/{c}", {"body": "mine"}), ("DELETE", "/api/v1/comments/{c}", None),
    ]
    real = {"p": project["id"], "t": task["id"], "c": comment["id"], "u": ada.id, "i": invitation_id}
    missing = {name: MISSING for name in real} | {"u": ada.id}
    for method, path, body in routes:
        foreign = await client.request(method, path.format(**real), json=body, headers=eve.headers)
        absent = await client.request(method, path.format(**missing), json=body, headers=eve.headers)
        assert problem_shape(await assert_problem(foreign, 404)) == problem_shape(await assert_problem(absent, 404)), \
            (method, path)
    # ... and in a body: a task created in, or moved to, someone else's project
    for project_id in (project["id"], MISSING):
        await assert_problem(await client.post(TASKS, json={"title": "x", "project_id": project_id},
                                               headers=eve.headers), 404)
    own = await new_task(client, eve)
    for project_id in (project["id"], MISSING):
        await assert_problem(await client.patch(f"{TASKS}/{own['id']}", json={"project_id": project_id},
                                                headers=eve.headers), 404)
    # Nothing changed for the owner.
    assert (await (await client.get(f"{TASKS}/{task['id']}", headers=ada.headers)).json())["title"] == "shared work"
    assert (await (await client.get(f"{PROJECTS}/{project['id']}", headers=ada.headers)).json())["name"] == "Launch"


async def test_a_move_is_authorised_on_the_target_too(client: Any, make_user: Any, db: asyncpg.Connection) -> None:
    ada, bob = await make_user(), await make_user()
    source = await shared_project(client, db, ada, editor=bob)
    read_only = await shared_project(client, db, ada, viewer=bob)
    writable = await shared_project(client, db, ada, editor=bob)
    task = await new_task(client, bob, source)
    url = f"{TASKS}/{task['id']}"
    await assert_problem(await client.patch(url, json={"project_id": read_only["id"]}, headers=bob.headers), 403)
    moved = await client.patch(url, json={"project_id": writable["id"]}, headers=bob.headers)
    assert moved.status == 200 and (await moved.json())["project_id"] == writable["id"]
    # Moving out of a project you only view is refused at the source.
    viewed = await new_task(client, ada, read_only)
    await assert_problem(await client.patch(f"{TASKS}/{viewed['id']}", json={"project_id": writable["id"]},
                                            headers=bob.headers), 403)
    await assert_problem(await client.patch(url, json={"project_id": 0}, headers=bob.headers), 422, "project_id")
    await assert_problem(await client.patch(url, json={"project_id": None}, headers=bob.headers), 422, "project_id")


async def test_assignees_are_members_and_a_move_clears_an_outsider(client: Any, make_user: Any,
                                                                    db: asyncpg.Connection) -> None:
    ada, bob, eve = await make_user(), await make_user(), await make_user()
    team = await shared_project(client, db, ada, editor=bob)
    solo = await new_project(client, ada, "Solo")
    await assert_problem(await client.post(TASKS, json={"title": "x", "project_id": team["id"], "assignee_id": eve.id},
                                           headers=ada.headers), 422, "assignee_id")
    await assert_problem(await client.post(TASKS, json={"title": "x", "assignee_id": "bob"}, headers=ada.headers),
                         422, "assignee_id")
    task = await new_task(client, ada, team, assignee_id=bob.id)
    assert task["assignee_id"] == bob.id
    url = f"{TASKS}/{task['id']}"
    await assert_problem(await client.patch(url, json={"assignee_id": eve.id}, headers=ada.headers), 422, "assignee_id")
    # Assigning someone who is a member of the target, in the same PATCH as the move, is checked there.
    await assert_problem(await client.patch(url, json={"project_id": solo["id"], "assignee_id": bob.id},
                                            headers=ada.headers), 422, "assignee_id")
    assert (await (await client.get(url, headers=ada.headers)).json())["project_id"] == team["id"]  # unchanged
    moved = await (await client.patch(url, json={"project_id": solo["id"]}, headers=ada.headers)).json()
    assert (moved["project_id"], moved["assignee_id"]) == (solo["id"], None)
    mine = await (await client.patch(url, json={"assignee_id": ada.id}, headers=ada.headers)).json()
    assert mine["assignee_id"] == ada.id
    back = await (await client.patch(url, json={"project_id": team["id"]}, headers=ada.headers)).json()
    assert back["assignee_id"] == ada.id  # a member of the target stays assigned


async def test_assignee_filter_and_me(client: Any, make_user: Any, db: asyncpg.Connection) -> None:
    ada, bob = await make_user(), await make_user()
    team = await shared_project(client, db, ada, editor=bob)
    for_bob = await new_task(client, ada, team, assignee_id=bob.id)
    await new_task(client, ada, team)
    for who, headers in (("me", bob.headers), (str(bob.id), ada.headers)):
        page = await (await client.get(f"{TASKS}?assignee_id={who}", headers=headers)).json()
        assert [t["id"] for t in page["items"]] == [for_bob["id"]]
    await assert_problem(await client.get(f"{TASKS}?assignee_id=you", headers=ada.headers), 422, "assignee_id")
    await assert_problem(await client.get(f"{TASKS}?project_id=x", headers=ada.headers), 422, "project_id")


async def test_etag_and_if_match_follow_the_rights(client: Any, make_user: Any, db: asyncpg.Connection) -> None:
    ada, viewer, eve = await make_user(), await make_user(), await make_user()
    team = await shared_project(client, db, ada, viewer=viewer)
    task = await client.post(TASKS, json={"title": "t", "project_id": team["id"]}, headers=ada.headers)
    etag, url = task.headers["ETag"], task.headers["Location"]
    assert (await client.get(url, headers={**viewer.headers, "If-None-Match": etag})).status == 304
    await assert_problem(await client.get(url, headers={**eve.headers, "If-None-Match": etag}), 404)
    # A stale If-Match from a non-member or a viewer tells nothing about the task: 404 / 403, never 412.
    await assert_problem(await client.patch(url, json={"title": "x"}, headers={**eve.headers, "If-Match": '"0-0"'}),
                         404)
    await assert_problem(await client.patch(url, json={"title": "x"},
                                            headers={**viewer.headers, "If-Match": '"0-0"'}), 403)


async def test_an_idempotent_replay_needs_the_right_still(client: Any, make_user: Any, db: asyncpg.Connection) -> None:
    ada, bob = await make_user(), await make_user()
    team = await shared_project(client, db, ada, editor=bob)
    headers = {**bob.headers, "Idempotency-Key": "k-1"}
    body = {"title": "once", "project_id": team["id"]}
    first = await client.post(TASKS, json=body, headers=headers)
    assert first.status == 201
    again = await client.post(TASKS, json=body, headers=headers)
    assert again.status == 201 and again.headers["Idempotent-Replayed"] == "true"
    await db.execute("DELETE FROM project_members WHERE project_id = $1 AND user_id = $2", team["id"], bob.id)
    await assert_problem(await client.post(TASKS, json=body, headers=headers), 404)
    assert await db.fetchval("SELECT count(*) FROM tasks WHERE title = 'once'") == 1


async def test_exports_cover_the_members_projects_and_their_filters(client: Any, make_user: Any, settings: Any,
                                                                     db: asyncpg.Connection) -> None:
    ada, bob, eve = await make_user(), await make_user(), await make_user()
    team = await shared_project(client, db, ada, viewer=bob)
    shared = await new_task(client, ada, team, title="shared")
    await new_task(client, ada, title="ada's own")
    await new_task(client, eve, title="eve's own")
    job = await create_job(client, bob, format="csv")
    filtered = await create_job(client, ada, format="csv", filters={"project_id": team["id"]})
    foreign = await create_job(client, eve, format="csv", filters={"project_id": team["id"]})
    await run_jobs(settings)
    rows = parse_csv(await download(client, bob, await fetch_job(client, bob, job)))
    assert [(r["id"], r["project_id"]) for r in rows] == [(str(shared["id"]), str(team["id"]))]
    assert [r["title"] for r in parse_csv(await download(client, ada, await fetch_job(client, ada, filtered)))] == \
        ["shared"]
    assert parse_csv(await download(client, eve, await fetch_job(client, eve, foreign))) == []


async def test_the_list_query_reads_each_project_through_the_membership_join(db: asyncpg.Connection,
                                                                              make_user: Any) -> None:
    """The rights are part of the one list statement: a user with no membership row sees nothing at all."""
    ada = await make_user()
    await db.execute("INSERT INTO tasks (owner_id, title) VALUES ($1, 'a')", ada.id)
    sql, args = tasks.page_query(ada.id, tasks.TaskFilters(), "-created_at", 21, None)
    assert rights.MEMBER_PROJECTS.format("$1") in sql
    assert len(await db.fetch(sql, *args)) == 1
    await db.execute("DELETE FROM project_members WHERE user_id = $1", ada.id)
    assert await db.fetch(sql, *args) == []
    assert (await db.fetchrow(tasks.SELECT_STATS, ada.id))["status_todo"] == 0
    assert await inbox_id(db, ada)  # the project is still there; only the membership went


async def test_the_summary_report_covers_the_members_projects(client: Any, make_user: Any,
                                                              db: asyncpg.Connection) -> None:
    from datetime import datetime, timedelta, timezone

    from shared import reports

    ada, bob, eve = await make_user(), await make_user(), await make_user()
    team = await shared_project(client, db, ada, viewer=bob)
    await new_task(client, ada, team, due_at="2020-01-01T00:00:00Z")
    await new_task(client, eve)
    now = datetime.now(timezone.utc)
    for user, created in ((bob, 1), (ada, 1), (eve, 1)):
        data = await reports.summary(db, owner_id=user.id, start=now - timedelta(days=1), end=now + timedelta(days=1))
        assert data["created"] == created and data["overdue"] == (0 if user is eve else 1), user
    await db.execute("DELETE FROM project_members WHERE project_id = $1 AND user_id = $2", team["id"], bob.id)
    data = await reports.summary(db, owner_id=bob.id, start=now - timedelta(days=1), end=now + timedelta(days=1))
    assert data["created"] == 0 and data["most_overdue"] == []
