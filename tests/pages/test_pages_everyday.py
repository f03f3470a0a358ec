"""What a task-manager user expects of the pages, at the HTTP level: the reset request form and its limits,
the done checkbox as a plain form, finished tasks apart, overdue marks, report pages in the layout, the favicon."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from tests.helpers import mailed_tokens
from tests.pages.test_pages_session import csrf_of, sign_in
from tests.api.test_ratelimit import limited
from tests.worker_helpers import run_burst
from web.app import create_app

HTML = {"Accept": "text/html"}


async def test_reset_password_without_a_token_is_the_request_form(client):
    for path in ("/reset-password", "/forgot-password"):
        response = await client.get(path)
        text = await response.text()
        assert response.status == 200 and "Forgot your password?" in text and 'name="email"' in text
    login = await (await client.get("/login")).text()
    assert 'href="/forgot-password"' in login and "Forgot password?" in login
    incomplete = await client.get("/reset-password?token=")  # a link cut short still says so
    assert incomplete.status == 400 and "incomplete" in await incomplete.text()


async def test_the_reset_request_form_mails_a_link_and_answers_the_same_for_anyone(client, make_user, arq_redis,
                                                                                   settings, stack):
    user = await make_user()
    csrf = csrf_of(await (await client.get("/forgot-password")).text())
    answers = []
    for email in (user.email, "nobody@example.com"):
        response = await client.post("/forgot-password", data={"csrf_token": csrf, "email": email},
                                     allow_redirects=False)
        assert response.status == 303
        answers.append(response.headers["Location"].replace(quote(email), "EMAIL"))
    assert answers[0] == answers[1] == "/login?email=EMAIL"
    queued = sorted(job.args[0] for job in await arq_redis.queued_jobs())
    assert queued == sorted([user.email, "nobody@example.com"])  # the API's path: one job each, no lookup
    await run_burst(settings)
    assert len(mailed_tokens(stack, "/reset-password")) == 1


async def test_the_reset_request_form_refuses_bad_input_and_missing_csrf(client, db):
    csrf = csrf_of(await (await client.get("/forgot-password")).text())
    for email in ("", "not an address", "x" * 300 + "@example.com"):
        response = await client.post("/forgot-password", data={"csrf_token": csrf, "email": email})
        assert response.status == 422 and 'id="email-error"' in await response.text()
    response = await client.post("/forgot-password", data={"email": "a@example.com"}, headers=HTML)
    assert response.status == 403
    assert await db.fetchval("SELECT count(*) FROM email_outbox") == 0


async def test_the_reset_request_form_shares_the_apis_limits(aiohttp_client, settings, make_user, db):
    """Per email: one API request and one form request use up "2 per hour"; the next form request is a 429."""
    user = await make_user()
    client = await aiohttp_client(create_app(limited(settings, rate_limit_auth_email="2/hour")))
    assert (await client.post("/api/v1/auth/password-reset", json={"email": user.email})).status == 202
    csrf = csrf_of(await (await client.get("/forgot-password")).text())
    first = await client.post("/forgot-password", data={"csrf_token": csrf, "email": user.email},
                              allow_redirects=False)
    assert first.status == 303
    refused = await client.post("/forgot-password", data={"csrf_token": csrf, "email": user.email}, headers=HTML)
    assert refused.status == 429 and "Retry-After" in refused.headers
    assert "Too Many Requests" in await refused.text()


async def signed_in(client, make_user, **kwargs):
    user = await make_user(**kwargs)
    await sign_in(client, user.email)
    return user, csrf_of(await (await client.get("/tasks")).text())


def item_html(page: str, task_id: int) -> str:
    start = page.rindex("<li", 0, page.index(f'id="task-{task_id}"'))
    return page[start:page.index("</li>", start)]


async def test_the_done_checkbox_is_a_form_and_finished_tasks_are_listed_apart(client, make_user, db):
    user, csrf = await signed_in(client, make_user)
    past = datetime.now(timezone.utc) - timedelta(days=2)
    ids = {}
    for title, status, due in (("Late one", "todo", past), ("Busy", "in_progress", None), ("Finished", "done", past)):
        ids[title] = await db.fetchval(
            "INSERT INTO tasks (owner_id, title, status, due_at, completed_at) VALUES ($1, $2, $3::task_status, $4, "
            "CASE WHEN $3::task_status = 'done' THEN now() END) RETURNING id", user.id, title, status, due)
    text = await (await client.get("/tasks")).text()
    open_part, done_part = text.split('id="done-h"')
    assert "Late one" in open_part and "Busy" in open_part and "Finished" not in open_part
    assert "Finished" in done_part
    late = item_html(open_part, ids["Late one"])
    assert "Overdue" in late and "overdue" in late.split(">")[0]  # a word, not only a colour
    assert 'js-overdue" hidden' in item_html(done_part, ids["Finished"])  # done: no longer overdue
    assert "Overdue" not in item_html(open_part, ids["Busy"])
    assert text.count('class="badge js-status-badge"') == 0  # the status is shown once: the select
    assert 'aria-checked="false"' in late and 'name="status" value="done"' in late

    response = await client.post(f"/tasks/{ids['Late one']}/status",  # what the checkbox submits
                                 data={"csrf_token": csrf, "status": "done", "back": "/tasks"}, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/tasks"
    assert await db.fetchval("SELECT status::text FROM tasks WHERE id = $1", ids["Late one"]) == "done"
    response = await client.post(f"/tasks/{ids['Late one']}/status",
                                 data={"csrf_token": csrf, "status": "todo", "back": "/tasks"}, allow_redirects=False)
    assert await db.fetchval("SELECT status::text FROM tasks WHERE id = $1", ids["Late one"]) == "todo"
    bad = await client.post(f"/tasks/{ids['Late one']}/status", data={"csrf_token": csrf, "status": "finished"})
    assert bad.status == 422


async def test_open_tasks_page_on_while_finished_ones_stay_on_the_first_page(client, make_user, db):
    user, _ = await signed_in(client, make_user)
    await db.execute("INSERT INTO tasks (owner_id, title, status) SELECT $1, 'open ' || n, 'todo' "
                     "FROM generate_series(1, 25) AS n", user.id)
    await db.execute("INSERT INTO tasks (owner_id, title, status, completed_at) SELECT $1, 'done ' || n, 'done', now() "
                     "FROM generate_series(1, 12) AS n", user.id)
    first = await (await client.get("/tasks")).text()
    assert first.count('class="task status-todo') == 20 and first.count('class="task status-done') == 10
    assert "All finished tasks" in first and "/tasks?status=done" in first
    next_url = first.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    second = await (await client.get(next_url)).text()
    assert second.count('class="task status-todo') == 5 and 'id="done-h"' not in second
    only_done = await (await client.get("/tasks?status=done")).text()
    assert only_done.count('class="task status-done') == 12 and 'id="done-h"' not in only_done


async def test_an_empty_title_says_a_title_is_needed(client, make_user):
    user, csrf = await signed_in(client, make_user)
    response = await client.post("/tasks", data={"csrf_token": csrf, "title": "   "})
    assert response.status == 422 and "A title is needed." in await response.text()
    api = await client.post("/api/v1/tasks", json={"title": ""}, headers=user.headers)
    assert api.status == 422 and (await api.json())["errors"] == {"title": ["A title is needed."]}
    long = await client.post("/api/v1/tasks", json={"title": "x" * 201}, headers=user.headers)
    assert long.status == 422 and "200" in (await long.json())["errors"]["title"][0]


async def test_report_pages_are_in_the_app_layout(client, make_user):
    await signed_in(client, make_user, role="admin")
    for path, back in (("/reports/summary", 'href="/exports"'), ("/reports/admin-activity", 'href="/admin"')):
        response = await client.get(path)
        text = await response.text()
        assert response.status == 200 and response.headers["Cache-Control"] == "no-store"
        assert '<nav aria-label="Main">' in text and 'href="/static/app.css"' in text
        assert f'<p class="crumbs"><a {back}>' in text
    assert (await client.get("/reports/summary?from=nonsense")).status == 422


async def test_favicon_ico(client):
    response = await client.get("/favicon.ico")
    body = await response.read()
    assert response.status == 200 and body[:4] == b"\x00\x00\x01\x00"  # an ICO header
    assert response.content_type in ("image/vnd.microsoft.icon", "image/x-icon")
    assert "max-age" in response.headers["Cache-Control"]


async def test_admin_page_offers_no_deactivation_of_oneself(client, make_user):
    admin, _ = await signed_in(client, make_user, role="admin")
    other = await make_user()
    text = await (await client.get("/admin")).text()
    own = text[text.index(f'id="user-{admin.id}"'):]
    own = own[:own.index("</tr>")]
    theirs = text[text.index(f'id="user-{other.id}"'):]
    theirs = theirs[:theirs.index("</tr>")]
    assert "Deactivate" not in own and 'name="role"' not in own and "(you)" in own
    assert '<details class="confirm">' in theirs and "Yes, deactivate" in theirs
