"""Task CRUD: create/get/patch/delete, ETags and conditional requests, completed_at, ownership."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from shared import tasks
from tests.helpers import assert_problem
from web.api.tasks import TaskOutSchema

TASKS = "/api/v1/tasks"
RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


async def create(client, user, **fields):
    response = await client.post(TASKS, json={"title": "A task", **fields}, headers=user.headers)
    assert response.status == 201, await response.text()
    return await response.json(), response


async def test_create_returns_201_location_etag_and_defaults(client, make_user):
    user = await make_user()
    task, response = await create(client, user, title="  Write the report  ")
    assert response.headers["Location"] == f"{TASKS}/{task['id']}"
    assert response.headers["ETag"] == f'"{task["id"]}-1"'
    assert response.content_type == "application/json" and response.charset == "utf-8"
    assert task["title"] == "Write the report"  # trimmed
    assert (task["owner_id"], task["description"], task["status"], task["priority"]) == (user.id, "", "todo", "medium")
    assert task["due_at"] is None and task["completed_at"] is None and task["tags"] == []
    assert RFC3339_Z.match(task["created_at"]) and task["created_at"] == task["updated_at"]
    created = datetime.fromisoformat(task["created_at"])
    assert abs(created - datetime.now(timezone.utc)) < timedelta(seconds=5)


async def test_output_fields_match_the_documented_schema(client, make_user):
    user = await make_user()
    task, _ = await create(client, user, due_at="2030-01-02T03:04:05Z", tags=["a"], status="done")
    assert list(task) == list(tasks.TASK_FIELDS) == list(TaskOutSchema().fields)
    for name in ("due_at", "created_at", "updated_at", "completed_at"):
        assert RFC3339_Z.match(task[name]), (name, task[name])


async def test_create_with_every_field_normalises_due_at_to_utc(client, make_user):
    user = await make_user()
    task, _ = await create(client, user, title="Plan", description="Long text\nwith lines", status="in_progress",
                           priority="urgent", due_at="2030-06-01T10:30:15.987+02:00", tags=["work", "q3"])
    assert task["due_at"] == "2030-06-01T08:30:15Z"  # offset normalised; whole seconds kept
    assert (task["status"], task["priority"], task["tags"]) == ("in_progress", "urgent", ["work", "q3"])
    assert task["description"] == "Long text\nwith lines"


async def test_get_returns_the_task_with_etag_and_304_on_match(client, make_user):
    user = await make_user()
    task, created = await create(client, user)
    response = await client.get(f"{TASKS}/{task['id']}", headers=user.headers)
    assert response.status == 200 and await response.json() == task
    etag = response.headers["ETag"]
    assert etag == created.headers["ETag"]
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        cached = await client.get(f"{TASKS}/{task['id']}", headers={**user.headers, "If-None-Match": header})
        assert cached.status == 304 and cached.headers["ETag"] == etag
        assert await cached.read() == b""
    stale = await client.get(f"{TASKS}/{task['id']}", headers={**user.headers, "If-None-Match": '"1-0"'})
    assert stale.status == 200


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_patch_changes_only_sent_fields_and_bumps_version_and_updated_at(client, make_user, db):
    user = await make_user()
    task, _ = await create(client, user, description="keep me", tags=["x"], due_at="2030-01-01T00:00:00Z")
    # An hour into the past, so "bumped" cannot hide in the API's whole seconds.
    created_at = await db.fetchval("UPDATE tasks SET created_at = created_at - interval '1 hour', "
                                   "updated_at = updated_at - interval '1 hour' WHERE id = $1 "
                                   "RETURNING date_trunc('second', created_at)", task["id"])
    response = await client.patch(f"{TASKS}/{task['id']}", json={"title": " New ", "priority": "high"},
                                  headers=user.headers)
    assert response.status == 200, await response.text()
    updated = await response.json()
    assert response.headers["ETag"] == f'"{task["id"]}-2"'
    assert (updated["title"], updated["priority"], updated["description"]) == ("New", "high", "keep me")
    assert updated["tags"] == ["x"] and updated["due_at"] == "2030-01-01T00:00:00Z"
    # The PATCH's own now(): what the row now holds, an hour after the (moved) creation, which stays put.
    stored = await db.fetchval("SELECT date_trunc('second', updated_at) FROM tasks WHERE id = $1", task["id"])
    assert _moment(updated["updated_at"]) == stored
    assert _moment(updated["updated_at"]) - created_at >= timedelta(minutes=59)
    assert _moment(updated["created_at"]) == created_at
    row = await db.fetchrow("SELECT version, updated_at > created_at AS bumped FROM tasks WHERE id = $1", task["id"])
    assert row["version"] == 2 and row["bumped"]


async def test_patch_can_clear_due_at_and_tags(client, make_user):
    user = await make_user()
    task, _ = await create(client, user, tags=["x"], due_at="2030-01-01T00:00:00Z")
    response = await client.patch(f"{TASKS}/{task['id']}", json={"due_at": None, "tags": []}, headers=user.headers)
    assert (await response.json())["due_at"] is None and (await response.json())["tags"] == []


async def test_empty_patch_changes_nothing(client, make_user):
    user = await make_user()
    task, created = await create(client, user)
    response = await client.patch(f"{TASKS}/{task['id']}", json={}, headers=user.headers)
    assert response.status == 200 and await response.json() == task
    assert response.headers["ETag"] == created.headers["ETag"]


async def test_completed_at_follows_status(client, make_user, db):
    user = await make_user()
    task, _ = await create(client, user)
    url = f"{TASKS}/{task['id']}"
    done = await (await client.patch(url, json={"status": "done"}, headers=user.headers)).json()
    assert RFC3339_Z.match(done["completed_at"])
    # Staying done (or editing something else) keeps the first completion time.
    await db.execute("UPDATE tasks SET completed_at = '2020-01-01Z' WHERE id = $1", task["id"])
    again = await (await client.patch(url, json={"status": "done", "title": "x"}, headers=user.headers)).json()
    assert again["completed_at"] == "2020-01-01T00:00:00Z"
    reopened = await (await client.patch(url, json={"status": "in_progress"}, headers=user.headers)).json()
    assert reopened["completed_at"] is None
    created_done, _ = await create(client, user, status="done")
    assert RFC3339_Z.match(created_done["completed_at"])


async def test_if_match_guards_patch_against_lost_updates(client, make_user):
    user = await make_user()
    task, created = await create(client, user)
    url, etag = f"{TASKS}/{task['id']}", created.headers["ETag"]
    first = await client.patch(url, json={"title": "one"}, headers={**user.headers, "If-Match": etag})
    assert first.status == 200
    second = await client.patch(url, json={"title": "two"}, headers={**user.headers, "If-Match": etag})
    body = await assert_problem(second, 412)
    assert second.headers["ETag"] == first.headers["ETag"]
    assert first.headers["ETag"] in body["detail"]
    current_etag = first.headers["ETag"]
    for make_header in (lambda tag: tag, lambda tag: f'"nope", {tag}', lambda tag: "*"):
        headers = {**user.headers, "If-Match": make_header(current_etag)}
        ok = await client.patch(url, json={"title": "three"}, headers=headers)
        assert ok.status == 200, headers
        current_etag = ok.headers["ETag"]
    # If-Match uses the strong comparison: a weak tag never matches.
    weak = f"W/{ok.headers['ETag']}"
    await assert_problem(await client.patch(url, json={}, headers={**user.headers, "If-Match": weak}), 412)
    current = await (await client.get(url, headers=user.headers)).json()
    assert current["title"] == "three"


async def test_delete_is_204_then_404(client, make_user, db):
    user = await make_user()
    task, created = await create(client, user)
    url = f"{TASKS}/{task['id']}"
    await assert_problem(await client.delete(url, headers={**user.headers, "If-Match": '"0-0"'}), 412)
    response = await client.delete(url, headers={**user.headers, "If-Match": created.headers["ETag"]})
    assert response.status == 204 and await response.read() == b""
    assert await db.fetchval("SELECT count(*) FROM tasks") == 0
    for method in ("GET", "PATCH", "DELETE"):
        await assert_problem(await client.request(method, url, json={}, headers=user.headers), 404)


async def test_someone_elses_task_is_404_for_every_route(client, make_user, db):
    owner, stranger = await make_user(), await make_user()
    task, created = await create(client, owner)
    url = f"{TASKS}/{task['id']}"
    missing = await assert_problem(await client.get(f"{TASKS}/999999", headers=stranger.headers), 404)
    for method, body in (("GET", None), ("PATCH", {"title": "mine now"}), ("DELETE", None)):
        problem = await assert_problem(await client.request(method, url, json=body, headers=stranger.headers), 404)
        assert problem["detail"] == missing["detail"]  # indistinguishable from a task that does not exist
    # Even a precondition that would match reveals nothing.
    headers = {**stranger.headers, "If-Match": created.headers["ETag"]}
    await assert_problem(await client.patch(url, json={"title": "x"}, headers=headers), 404)
    assert await db.fetchval("SELECT title FROM tasks WHERE id = $1", task["id"]) == "A task"


async def test_admin_can_read_change_and_delete_any_task(client, make_user, db):
    owner, admin = await make_user(), await make_user(role="admin")
    task, _ = await create(client, owner)
    url = f"{TASKS}/{task['id']}"
    assert (await (await client.get(url, headers=admin.headers)).json())["owner_id"] == owner.id
    changed = await (await client.patch(url, json={"status": "done"}, headers=admin.headers)).json()
    assert changed["status"] == "done" and changed["owner_id"] == owner.id
    assert (await client.delete(url, headers=admin.headers)).status == 204
    assert await db.fetchval("SELECT count(*) FROM tasks") == 0


async def test_admin_creates_tasks_for_themselves(client, make_user):
    admin = await make_user(role="admin")
    task, _ = await create(client, admin)
    assert task["owner_id"] == admin.id


@pytest.mark.parametrize("method, path", [
    ("POST", TASKS), ("GET", TASKS), ("GET", f"{TASKS}/stats"), ("GET", f"{TASKS}/1"), ("PATCH", f"{TASKS}/1"),
    ("DELETE", f"{TASKS}/1"),
])
async def test_every_route_needs_a_token(client, method, path):
    await assert_problem(await client.request(method, path, json={}), 401)
    await assert_problem(await client.request(method, path, json={}, headers={"Authorization": "Bearer x.y.z"}), 401)


async def test_deleting_the_owner_deletes_their_tasks(client, make_user, db):
    user = await make_user()
    await create(client, user)
    await db.execute("DELETE FROM users WHERE id = $1", user.id)
    assert await db.fetchval("SELECT count(*) FROM tasks") == 0


async def test_database_enforces_the_completed_at_rule(client, make_user, db):
    import asyncpg

    user = await make_user()
    task, _ = await create(client, user)
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("UPDATE tasks SET status = 'done' WHERE id = $1", task["id"])
