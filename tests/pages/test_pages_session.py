"""Cookie sessions, CSRF and the safe `next` of the HTML pages (HTTP level; the browser tests drive the UI)."""
from __future__ import annotations

import re
from typing import Any

import pytest
from yarl import URL

from tests.helpers import assert_problem
from web.session import NONCE_COOKIE, SESSION_COOKIE
from web.pages.common import safe_next

PASSWORD = "correct horse battery"


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html[:500]
    return match.group(1)


async def sign_in(client: Any, email: str, password: str = PASSWORD, next_path: str = "") -> Any:
    page = await client.get("/login")
    token = csrf_of(await page.text())
    return await client.post("/login", data={"email": email, "password": password, "csrf_token": token,
                                             "next": next_path}, allow_redirects=False)


async def test_login_sets_a_strict_cookie_and_goes_to_next(client, make_user):
    user = await make_user()
    response = await sign_in(client, user.email, next_path="/tasks?q=milk")
    assert response.status == 303 and response.headers["Location"] == "/tasks?q=milk"
    cookie = response.cookies[SESSION_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and not cookie["secure"]
    page = await client.get("/tasks")
    assert page.status == 200 and user.email in await page.text()


async def test_cookies_are_secure_when_public_url_is_https(aiohttp_client, settings, make_user):
    from web.app import create_app

    client = await aiohttp_client(create_app(settings.with_(public_url="https://taskdeck.example")))
    user = await make_user()
    page = await client.get("/login")
    nonce = page.cookies[NONCE_COOKIE]
    assert nonce["secure"] and nonce["httponly"]
    # The test client speaks plain HTTP, so it holds Secure cookies back: send the nonce by hand.
    response = await client.post("/login", data={"email": user.email, "password": PASSWORD,
                                                 "csrf_token": csrf_of(await page.text())},
                                 headers={"Cookie": f"{NONCE_COOKIE}={nonce.value}"}, allow_redirects=False)
    assert response.status == 303 and response.cookies[SESSION_COOKIE]["secure"]


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example",
                                    "javascript:alert(1)", "http:/evil.example", "/\t/evil.example", "evil.example",
                                    "/logout", ""])
def test_next_never_leaves_the_site(target):
    assert safe_next(target) == "/tasks"


@pytest.mark.parametrize("target", ["/tasks/5", "/exports#job-3", "/admin?q=a%40b"])
def test_next_keeps_same_site_paths(target):
    assert safe_next(target) == target


async def test_open_redirect_is_refused_end_to_end(client, make_user):
    user = await make_user()
    response = await sign_in(client, user.email, next_path="//evil.example/steal")
    assert response.headers["Location"] == "/tasks"


async def test_signed_out_page_sends_to_login_with_next(client):
    response = await client.get("/tasks/7?x=1", allow_redirects=False)
    location = URL(response.headers["Location"])
    assert response.status == 303 and location.path == "/login" and location.query["next"] == "/tasks/7?x=1"
    report = await client.get("/reports/summary", headers={"Accept": "text/html"}, allow_redirects=False)
    assert report.status == 303 and report.headers["Location"].startswith("/login?next=")


async def test_login_form_without_csrf_is_refused(client, make_user):
    user = await make_user()
    await client.get("/login")  # the nonce cookie exists, the token is not sent
    response = await client.post("/login", data={"email": user.email, "password": PASSWORD},
                                 headers={"Accept": "text/html"}, allow_redirects=False)
    assert response.status == 403 and "security token" in await response.text()
    assert SESSION_COOKIE not in response.cookies


async def test_login_without_cookies_explains(client, make_user):
    user = await make_user()
    client.session.cookie_jar.clear()
    response = await client.post("/login", data={"email": user.email, "password": PASSWORD, "csrf_token": "x"},
                                 headers={"Accept": "text/html"})
    assert response.status == 403 and "needs cookies" in await response.text()


async def test_wrong_password_keeps_the_email_and_says_why(client, make_user):
    user = await make_user()
    response = await sign_in(client, user.email, password="wrong password!")
    text = await response.text()
    assert response.status == 401 and "Invalid email or password" in text and f'value="{user.email}"' in text


async def test_cookie_api_unsafe_request_needs_the_csrf_token(client, make_user):
    user = await make_user()
    await sign_in(client, user.email)
    refused = await client.post("/api/v1/tasks", json={"title": "forged"})
    await assert_problem(refused, 403)
    page = await client.get("/tasks")
    token = csrf_of(await page.text())
    created = await client.post("/api/v1/tasks", json={"title": "mine"}, headers={"X-CSRF-Token": token})
    assert created.status == 201
    wrong = await client.patch(f"/api/v1/tasks/{(await created.json())['id']}", json={"status": "done"},
                               headers={"X-CSRF-Token": token[:-2] + "xx"})
    await assert_problem(wrong, 403)
    listed = await client.get("/api/v1/tasks")  # a safe request needs no token
    assert listed.status == 200 and len((await listed.json())["items"]) == 1


async def test_page_form_without_csrf_is_refused(client, make_user, db):
    user = await make_user()
    await sign_in(client, user.email)
    response = await client.post("/tasks", data={"title": "forged"}, headers={"Accept": "text/html"})
    assert response.status == 403
    assert await db.fetchval("SELECT count(*) FROM tasks") == 0


async def test_bearer_api_unchanged_even_with_a_cookie(client, make_user):
    user = await make_user()
    other = await make_user()
    await sign_in(client, other.email)
    created = await client.post("/api/v1/tasks", json={"title": "bearer"}, headers=user.headers)
    assert created.status == 201 and (await created.json())["owner_id"] == user.id


async def test_forged_cookie_is_a_401(client):
    client.session.cookie_jar.update_cookies({SESSION_COOKIE: "not-a-jwt"})
    response = await client.get("/api/v1/users/me")
    await assert_problem(response, 401)


async def test_logout_ends_the_session_row(client, make_user, db):
    user = await make_user()
    await sign_in(client, user.email)
    page = await client.get("/tasks")
    response = await client.post("/logout", data={"csrf_token": csrf_of(await page.text())}, allow_redirects=False)
    assert response.status == 303
    assert await db.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL "
                             "AND id <> $2", user.id, user.session_id) == 0


async def test_revoked_session_cookie_stops_at_once(client, make_user, db):
    """Deactivation, reset and sign-out-everywhere all revoke session rows: the cookie dies with them."""
    user = await make_user()
    response = await sign_in(client, user.email)
    stolen = response.cookies[SESSION_COOKIE].value
    assert (await client.get("/api/v1/users/me")).status == 200
    await db.execute("UPDATE sessions SET revoked_at = now() WHERE user_id = $1", user.id)
    client.session.cookie_jar.update_cookies({SESSION_COOKIE: stolen})
    await assert_problem(await client.get("/api/v1/users/me"), 401)
    again = await client.get("/tasks", allow_redirects=False)
    assert again.status == 303 and again.headers["Location"].startswith("/login")


async def test_nonce_cookie_is_http_only(client):
    response = await client.get("/login")
    assert response.cookies[NONCE_COOKIE]["httponly"]
