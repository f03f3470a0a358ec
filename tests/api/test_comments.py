"""Comments (who may do what) and the collaboration mails: one per event, none when opted out, never twice."""
from __future__ import annotations

from typing import Any

import asyncpg

from shared.mail import outbox
from tests.export_helpers import run_jobs
from tests.helpers import assert_problem
from tests.project_helpers import TASKS, new_task, shared_project


async def _comment(client: Any, user: Any, task: dict[str, Any], body: str = "Looks good") -> Any:
    return await client.post(f"{TASKS}/{task['id']}/comments", json={"body": body}, headers=user.headers)


async def test_comments_follow_the_roles(client: Any, make_user: Any, db: asyncpg.Connection) -> None:
    ada, editor, viewer, admin = (await make_user(name="Ada"), await make_user(name="Ed"), await make_user(),
                                  await make_user())
    project = await shared_project(client, db, ada, editor=editor, viewer=viewer, admin=admin)
    task = await new_task(client, ada, project)
    created = await _comment(client, editor, task, "  first  ")
    assert created.status == 201
    comment = await created.json()
    assert comment | {"id": 0, "created_at": "", "updated_at": ""} == {
        "id": 0, "task_id": task["id"], "author": {"id": editor.id, "name": "Ed"}, "body": "  first  ",
        "created_at": "", "updated_at": ""}
    await assert_problem(await _comment(client, viewer, task), 403)
    await _comment(client, ada, task, "second")
    page = await (await client.get(f"{TASKS}/{task['id']}/comments?limit=1", headers=viewer.headers)).json()
    assert [c["body"] for c in page["items"]] == ["  first  "] and page["next_cursor"]
    rest = await (await client.get(f"{TASKS}/{task['id']}/comments?cursor={page['next_cursor']}",
                                   headers=viewer.headers)).json()
    assert [c["body"] for c in rest["items"]] == ["second"] and rest["next_cursor"] is None
    got = await client.get(f"{TASKS}/{task['id']}", headers=ada.headers)
    assert (await got.json())["comment_count"] == 2 and got.headers["ETag"] != f'"{task["id"]}-1"'
    url = f"/api/v1/comments/{comment['id']}"
    await assert_problem(await client.patch(url, json={"body": "not mine"}, headers=ada.headers), 403)
    edited = await client.patch(url, json={"body": "edited"}, headers=editor.headers)
    assert edited.status == 200 and (await edited.json())["body"] == "edited"
    await assert_problem(await client.delete(url, headers=viewer.headers), 403)
    assert (await client.delete(url, headers=admin.headers)).status == 204  # a project admin removes any
    assert (await (await client.get(f"{TASKS}/{task['id']}", headers=ada.headers)).json())["comment_count"] == 1


async def test_bad_comment_bodies_are_422(client: Any, make_user: Any) -> None:
    ada = await make_user()
    task = await new_task(client, ada)
    for body, field in (({"body": "x" * 10001}, "body"), ({"body": ""}, "body"), ({"body": 7}, "body"),
                        ({}, "body"), ({"body": "ok", "pinned": True}, "pinned")):
        await assert_problem(await client.post(f"{TASKS}/{task['id']}/comments", json=body, headers=ada.headers),
                             422, field)
    assert (await _comment(client, ada, task, "x" * 10000)).status == 201
    await assert_problem(await client.post(f"{TASKS}/{task['id']}/comments", data="{", headers={
        **ada.headers, "Content-Type": "application/json"}), 400)
    assert (await (await client.get(f"{TASKS}/{task['id']}", headers=ada.headers)).json())["comment_count"] == 1


async def test_assignment_and_comment_mails(client: Any, make_user: Any, db: asyncpg.Connection, settings: Any,
                                            stack: Any) -> None:
    ada, bob = await make_user(name="Ada"), await make_user(name="Bob")
    project = await shared_project(client, db, ada, editor=bob)
    task = await new_task(client, ada, project, title="Ship the release", assignee_id=bob.id)
    await new_task(client, ada, project, title="Ada's own", assignee_id=ada.id)  # yourself: no mail
    await _comment(client, ada, task, "Please hurry")
    await _comment(client, bob, task, "On it")  # the assignee's own comment: no mail to them
    await run_jobs(settings)
    messages = sorted(stack.smtp.messages(), key=lambda m: str(m["Subject"]))
    assert [(m["To"], m["Subject"]) for m in messages] == [
        (bob.email, "Assigned to you: Ship the release"), (bob.email, "New comment on Ship the release")]
    text = messages[1].get_body(("plain",)).get_content()
    assert "Ada commented" in text and "Please hurry" in text and f"/tasks/{task['id']}" in text


async def test_no_mail_when_notifications_are_off(client: Any, make_user: Any, db: asyncpg.Connection,
                                                  settings: Any, stack: Any) -> None:
    ada, bob = await make_user(), await make_user()
    response = await client.patch("/api/v1/users/me", json={"email_notifications": False}, headers=bob.headers)
    assert response.status == 200 and (await response.json())["email_notifications"] is False
    await assert_problem(await client.patch("/api/v1/users/me", json={"email_notifications": "no"},
                                            headers=bob.headers), 422, "email_notifications")
    project = await shared_project(client, db, ada, editor=bob)
    task = await new_task(client, ada, project, assignee_id=bob.id)
    await _comment(client, ada, task)
    await run_jobs(settings)
    assert stack.smtp.messages() == []
    assert await db.fetchval("SELECT count(*) FROM email_outbox") == 0


async def test_one_mail_per_event_even_when_retried(client: Any, make_user: Any, db: asyncpg.Connection,
                                                    settings: Any, stack: Any, arq_redis: Any) -> None:
    ada, bob, cat = await make_user(), await make_user(), await make_user()
    project = await shared_project(client, db, ada, editor=bob, viewer=cat)
    task = await new_task(client, ada, project)
    url = f"{TASKS}/{task['id']}"
    assert (await client.patch(url, json={"assignee_id": bob.id}, headers=ada.headers)).status == 200
    assert (await client.patch(url, json={"assignee_id": bob.id}, headers=ada.headers)).status == 200  # no change
    assert (await client.patch(url, json={"title": "renamed"}, headers=ada.headers)).status == 200  # still Bob's
    # An idempotent retry of a create with an assignee replays, it does not assign again.
    headers = {**ada.headers, "Idempotency-Key": "assign-once"}
    body = {"title": "retried", "project_id": project["id"], "assignee_id": cat.id}
    for _ in range(2):
        assert (await client.post(TASKS, json=body, headers=headers)).status == 201
    # Jobs run twice (a duplicate enqueue, a worker crash): still one mail each.
    ids = [row["id"] for row in await db.fetch("SELECT id FROM email_outbox ORDER BY id")]
    await run_jobs(settings)
    for outbox_id in ids:
        await arq_redis.enqueue_job("send_email", outbox_id, _job_id=f"again:{outbox_id}")
    await outbox.dispatch(arq_redis, ids)
    await run_jobs(settings)
    assert sorted(m["To"] for m in stack.smtp.messages()) == sorted([bob.email, cat.email])
