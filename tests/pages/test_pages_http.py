"""The HTML pages' rules at the HTTP level: same owner checks, validation and errors as the API."""
from __future__ import annotations

from aiohttp import web

from tests.pages.test_pages_session import csrf_of, sign_in
from web.app import create_app

HTML = {"Accept": "text/html"}


async def signed_in(client, make_user, **kwargs):
    user = await make_user(**kwargs)
    await sign_in(client, user.email)
    page = await client.get("/tasks")
    return user, csrf_of(await page.text())


async def test_someone_elses_task_is_a_404_page(client, make_user, db):
    other = await make_user()
    task_id = await db.fetchval("INSERT INTO tasks (owner_id, title) VALUES ($1, 'secret') RETURNING id", other.id)
    _, csrf = await signed_in(client, make_user)
    for path in (f"/tasks/{task_id}", f"/tasks/{task_id}/delete"):
        response = await client.get(path, headers=HTML)
        assert response.status == 404 and "secret" not in await response.text()
    response = await client.post(f"/tasks/{task_id}/delete", data={"csrf_token": csrf}, headers=HTML)
    assert response.status == 404
    assert await db.fetchval("SELECT count(*) FROM tasks") == 1


async def test_create_form_errors_keep_the_typed_values(client, make_user, db):
    _, csrf = await signed_in(client, make_user)
    response = await client.post("/tasks", data={"csrf_token": csrf, "title": "x" * 201, "tags": "a, a",
                                                 "due_at": "tomorrow", "description": "kept text"})
    text = await response.text()
    assert response.status == 422
    assert 'id="title-error"' in text and 'id="due_at-error"' in text and 'id="tags-error"' in text
    assert "kept text" in text and 'value="a, a"' in text
    assert await db.fetchval("SELECT count(*) FROM tasks") == 0


async def test_edit_with_a_stale_etag_is_a_conflict_not_an_overwrite(client, make_user, db):
    user, csrf = await signed_in(client, make_user)
    task_id = await db.fetchval("INSERT INTO tasks (owner_id, title) VALUES ($1, 'v1') RETURNING id", user.id)
    page = await client.get(f"/tasks/{task_id}")
    etag = (await page.text()).split('name="etag" value="')[1].split('"')[0].replace("&#34;", '"')
    await db.execute("UPDATE tasks SET title = 'changed elsewhere', version = version + 1 WHERE id = $1", task_id)
    form = {"csrf_token": csrf, "etag": etag, "title": "mine", "status": "todo", "priority": "low",
            "due_at": "", "tags": "", "description": "", "tz": "UTC"}
    response = await client.post(f"/tasks/{task_id}", data=form)
    text = await response.text()
    assert response.status == 409 and "Someone changed this task" in text and 'value="mine"' in text
    assert await db.fetchval("SELECT title FROM tasks WHERE id = $1", task_id) == "changed elsewhere"


async def test_list_filter_errors_are_shown_not_a_500(client, make_user):
    await signed_in(client, make_user)
    response = await client.get("/tasks?sort=nonsense&cursor=garbage&due_to=2026-02-30")
    text = await response.text()
    assert response.status == 422 and 'id="f-sort-error"' in text and 'id="f-due_to-error"' in text


async def test_admin_report_and_admin_page_are_for_admins(client, make_user, db):
    _, csrf = await signed_in(client, make_user)
    response = await client.post("/exports/report", data={"csrf_token": csrf, "kind": "admin_activity"},
                                 headers=HTML)
    assert response.status == 403
    assert (await client.get("/admin", headers=HTML)).status == 403
    assert (await client.get("/reports/admin-activity", headers=HTML)).status == 403
    assert await db.fetchval("SELECT count(*) FROM jobs") == 0


async def test_export_form_creates_the_api_job(client, make_user, db):
    _, csrf = await signed_in(client, make_user)
    response = await client.post("/exports", data={"csrf_token": csrf, "format": "pdf", "status": "done",
                                                   "q": "milk", "tz": "UTC"}, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"].startswith("/exports#job-")
    job = await db.fetchrow("SELECT kind, format, params FROM jobs")
    assert (job["kind"], job["format"]) == ("export", "pdf")
    bad = await client.post("/exports", data={"csrf_token": csrf, "format": "docx", "q": "w " * 11,
                                              "due_from": "someday"})
    text = await bad.text()
    assert bad.status == 422 and 'id="format-error"' in text and 'id="e-q-error"' in text
    assert 'id="e-due_from-error"' in text and await db.fetchval("SELECT count(*) FROM jobs") == 1


async def test_unexpected_error_is_a_500_page_in_the_layout(aiohttp_client, settings):
    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("database password is hunter2")

    app = create_app(settings)
    app.router.add_get("/boom", boom)
    client = await aiohttp_client(app)
    response = await client.get("/boom", headers=HTML)
    text = await response.text()
    assert response.status == 500 and "/static/app.css" in text and "Internal Server Error" in text
    assert "hunter2" not in text


async def test_static_files_are_served_locally(client):
    for path, kind in (("/static/app.css", "text/css"), ("/static/app.js", "javascript")):
        response = await client.get(path)
        assert response.status == 200 and kind in response.content_type


async def test_editing_other_fields_leaves_a_due_date_with_seconds_alone(client, make_user, db):
    user, csrf = await signed_in(client, make_user)
    task_id = await db.fetchval("INSERT INTO tasks (owner_id, title, due_at) VALUES ($1, 't', "
                                "'2030-01-01T10:30:15Z') RETURNING id", user.id)
    page = await (await client.get(f"/tasks/{task_id}")).text()
    shown = page.split('name="due_at_shown" value="')[1].split('"')[0]
    assert shown == "2030-01-01T10:30"
    form = {"csrf_token": csrf, "title": "renamed", "status": "todo", "priority": "medium", "tags": "",
            "description": "", "tz": "UTC", "due_at": shown, "due_at_shown": shown}
    assert (await client.post(f"/tasks/{task_id}", data=form)).status == 200
    row = await db.fetchrow("SELECT title, due_at FROM tasks WHERE id = $1", task_id)
    assert row["title"] == "renamed" and row["due_at"].second == 15
    form["due_at"] = "2030-01-02T08:00"
    await client.post(f"/tasks/{task_id}", data=form)
    assert (await db.fetchval("SELECT due_at FROM tasks WHERE id = $1", task_id)).isoformat() == \
        "2030-01-02T08:00:00+00:00"


def test_page_templates_have_no_inline_script_or_style():
    """A strict Content-Security-Policy (self only) must not break any page: external files only."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "templates"
    inline = re.compile(r"<style|\sstyle=|<script(?![^>]*\ssrc=)|\son[a-z]+=", re.I)
    for path in [*root.glob("pages/*.html"), *root.glob("errors/*.html"), *root.glob("reports/*.html")]:
        assert not inline.search(path.read_text()), f"{path.name} has an inline script, style or handler"
