"""The task page's subtasks (progress, add form), repeat choices with the next occurrences, the file upload
form without JavaScript (CSRF in the action URL), and the /trash page with restore — at the HTTP level."""
from __future__ import annotations

import re
from typing import Any

import aiohttp

from tests.pages.test_pages_session import csrf_of, sign_in
from tests.project_helpers import TASKS

HTML = {"Accept": "text/html"}


async def _signed_in(client: Any, make_user: Any) -> tuple[Any, str]:
    user = await make_user()
    await sign_in(client, user.email)
    return user, csrf_of(await (await client.get("/tasks")).text())


async def test_subtasks_and_repeat_on_the_task_page(client: Any, make_user: Any, db: Any) -> None:
    user, csrf = await _signed_in(client, make_user)
    parent = await (await client.post(TASKS, json={"title": "Plan trip", "due_at": "2030-01-07T09:00:00Z"},
                                      headers=user.headers)).json()
    for title in ("Book flights", "Book hotel"):
        response = await client.post(f"/tasks/{parent['id']}/subtasks", data={"csrf_token": csrf, "title": title},
                                     allow_redirects=False)
        assert response.status == 303
    refused = await client.post(f"/tasks/{parent['id']}/subtasks", data={"csrf_token": csrf, "title": ""})
    assert "Subtask not added" in await refused.text()
    assert (await client.post(f"/tasks/{parent['id']}/subtasks", data={"title": "no token"})).status == 403
    kids = await db.fetch("SELECT id, title FROM tasks WHERE parent_id = $1 ORDER BY id", parent["id"])
    assert [k["title"] for k in kids] == ["Book flights", "Book hotel"]
    await client.patch(f"{TASKS}/{kids[0]['id']}", json={"status": "done"}, headers=user.headers)
    text = await (await client.get(f"/tasks/{parent['id']}")).text()
    assert '<progress max="2" value="1"' in text and "1 of 2 done" in text and "Book hotel" in text

    page = await client.get(f"/tasks/{parent['id']}")
    etag = (await page.text()).split('name="etag" value="')[1].split('"')[0].replace("&#34;", '"')
    form = {"csrf_token": csrf, "etag": etag, "title": "Plan trip", "repeat": "weekdays", "rrule": "", "tz": "UTC"}
    assert (await client.post(f"/tasks/{parent['id']}", data=form, allow_redirects=False)).status == 303
    assert await db.fetchval("SELECT recurrence FROM tasks WHERE id = $1", parent["id"]) == \
        "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"
    text = await (await client.get(f"/tasks/{parent['id']}")).text()
    assert len(re.findall(r"<li><time", text.split('aria-label="Next occurrences"')[1].split("</ul>")[0])) == 5
    etag = text.split('name="etag" value="')[1].split('"')[0].replace("&#34;", '"')
    bad = await client.post(f"/tasks/{parent['id']}",
                            data={**form, "etag": etag, "repeat": "custom", "rrule": "FREQ=SECONDLY"})
    assert bad.status == 422 and "FREQ must be" in await bad.text()


async def test_upload_form_and_trash_page(client: Any, make_user: Any, db: Any) -> None:
    user, csrf = await _signed_in(client, make_user)
    task = await (await client.post(TASKS, json={"title": "With a file"}, headers=user.headers)).json()
    form = aiohttp.FormData(quote_fields=False)
    form.add_field("file", b"hello", filename="hello.txt", content_type="text/plain")
    response = await client.post(f"/tasks/{task['id']}/attachments?csrf_token={csrf}", data=form,
                                 allow_redirects=False)
    assert response.status == 303, await response.text()
    form = aiohttp.FormData(quote_fields=False)
    form.add_field("file", b"hello", filename="hello.txt")
    assert (await client.post(f"/tasks/{task['id']}/attachments", data=form)).status == 403  # no token
    assert await db.fetchval("SELECT count(*) FROM attachments") == 1
    text = await (await client.get(f"/tasks/{task['id']}")).text()
    assert "hello.txt" in text and 'enctype="multipart/form-data"' in text

    response = await client.post(f"/tasks/{task['id']}/delete", data={"csrf_token": csrf}, allow_redirects=False)
    assert response.status == 303
    assert (await client.get(f"/tasks/{task['id']}", headers=HTML)).status == 404
    trash = await (await client.get("/trash")).text()
    assert "With a file" in trash and f'action="/trash/{task["id"]}/restore"' in trash
    response = await client.post(f"/trash/{task['id']}/restore", data={"csrf_token": csrf}, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == f"/tasks/{task['id']}"
    assert (await client.get(f"/tasks/{task['id']}")).status == 200
    assert "The trash is empty" in await (await client.get("/trash")).text()
