"""Every route the app serves, fed hostile input, answers below 500: never a 500, never a traceback.

The routes come from the app's own router (API, HTML pages, operations, Swagger UI's files), so a
route added later is swept without touching this file. The input names come from the code too: query
parameters from the OpenAPI document plus every ``query.get(...)`` the code makes, and the cookie,
header and form names the code reads (tests/input_names.py); every GET route gets every query name,
every form route every form name, every route every cookie (without a bearer token, which would win).
Bytes that aiohttp's client cannot send (non-UTF-8 header values) are in tests/api/test_raw_http.py.
"""
from __future__ import annotations

import io
import json
import re
from typing import Any, Iterator

import pytest
from aiohttp import web

from tests import input_names
from tests.helpers import assert_problem

HOSTILE_IDS = ("0", "-1", "9223372036854775808", "9999999999999999999", "99999999999999999999999", "abc",
               "1.5", "%00", "%C3%A9", "%ff", "..%2f..%2fetc%2fpasswd", "1%20OR%201=1", "A" * 2000)
HOSTILE_BODIES = (b"{", b"[]", b"null", b'"x"', b'{"a": NaN}', b'{"\\u0000": 1}', b"\xff\xfe{}",
                  json.dumps({"x" * 300: "y"}).encode(),
                  json.dumps({"title": {"nested": ["deep"] * 5}, "format": 5, "kind": None, "email": []}).encode(),
                  json.dumps({"from": "9999-12-31T23:59:59Z", "to": "0001-01-01", "kind": "summary"}).encode(),
                  # Nesting deeper than the parser's recursion limit (a RecursionError, not a ValueError).
                  b"[" * 200_000 + b"]" * 200_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
                  b'{"title": ' + b"[" * 5000 + b"]" * 5000 + b"}")
HOSTILE_FORMS = (b"token=%ff%fe&password=x", b"token=" + b"A" * 5000, b"token=%00&token=1", b"password=" + b"\xff" * 90,
                 b"%%%&&&==", b"csrf_token=%C3%A9&token=abc.%C3%A9")
# Query values: wrong types, non-ASCII and overlong cursors, extreme dates and offsets, encodings.
HOSTILE_VALUES = (
    "", "%00", "%ff", "%C3%A9", "abc.%C3%A9", "%C3%A9.%C3%A9", "A" * 5000, "A." + "B" * 3000, "-1", "1e309", "NaN",
    "99999999999999999999999", "true", "[]", "{}", "0001-01-01", "9999-12-31", "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z", "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00%2B14:00", "2026-01-01T00:00:00+99:99",
    "2026-13-45", "yesterday", ";drop table users", "%27%20OR%201=1--",
)
# Form values: every form field the code reads gets each of these at once (dates past what the calendar
# holds once a zone or a day is added, too).
HOSTILE_FORM_VALUES = ("", "%ff", "%C3%A9", "A" * 3000, "-1", "NaN", "9999-12-31", "9999-12-31T23:59",
                       "0001-01-01", "0001-01-01T00:00", "2026-13-45", "[]", "Pacific/Kiritimati", "Etc/GMT-14")
HOSTILE_HEADERS = ({"If-Match": "\"é\""}, {"If-None-Match": "*, W/\"" + "x" * 3000 + "\""},
                   {"Idempotency-Key": "k" * 300},
                   {"Accept": "text/html"}, {"Content-Type": "multipart/form-data; boundary="},
                   {"X-Request-ID": "../" * 50})
# Every header the code reads gets each of these.
HOSTILE_HEADER_VALUES = ("é", "\u2028", "x" * 6000, ",,,", "W/", "Bearer", "1.2.3.4, ::1, garbage", "%ff")
# Every cookie the code reads gets each of these (a forged JWT, a wrong MAC, non-ASCII, huge).
HOSTILE_COOKIE_VALUES = ("%ff", "é", "c" * 4000, "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30.x", "x.y", "..", "Europe/Nowhere",
                         "%2E%2E%2Fetc", "")
HOSTILE_AUTH = ("Bearer é", "Bearer " + "a" * 5000, "Bearer a.b.c", "Basic Zm9vOmJhcg==", "Bearer", "bearer  x  y")


def served_routes(app: web.Application) -> list[tuple[str, str]]:
    """(method, path template) of every route; static resources as their prefix plus ``/{tail}``."""
    found = set()
    for route in app.router.routes():
        resource = route.resource
        if resource is None or route.method == "HEAD":
            continue
        template = resource.canonical
        if isinstance(resource, web.StaticResource):
            template = template.rstrip("/") + "/{tail}"
        methods = ("GET", "POST", "PATCH", "PUT", "DELETE") if route.method == "*" else (route.method,)
        found.update((method, template) for method in methods)
    return sorted(found)


def fill(template: str, value: str) -> str:
    return re.sub(r"\{[^}]+\}", value, template)


@pytest.fixture
async def admin(make_user):
    return await make_user(role="admin")


@pytest.fixture
def fresh_admin(db, settings, admin):
    """Headers of a new session of the admin: the sweep posts to /logout and /account/sign-out-everywhere too,
    and every request after those would otherwise only test the way to the login page."""
    from shared.security import create_access_token

    async def headers() -> dict[str, str]:
        session_id = str(await db.fetchval("INSERT INTO sessions (user_id) VALUES ($1) RETURNING id", admin.id))
        token, _ = create_access_token(settings, user_id=admin.id, session_id=session_id)
        return {"Authorization": f"Bearer {token}"}

    return headers


@pytest.fixture
async def routes(client):
    routes = served_routes(client.app)
    # Guards the walk itself: it must see the API, the HTML pages, the operations and the docs.
    for expected in ("/api/v1/tasks/{id}", "/reports/summary", "/verify-email", "/metrics", "/api/docs"):
        assert any(path == expected for _, path in routes), expected
    return routes


def test_the_sweep_sees_the_names_the_code_reads():
    """Guards the name finder itself: if these went missing, the sweeps would quietly try less."""
    assert {"taskdeck_session", "taskdeck_csrf", "taskdeck_flash", "tz"} <= set(input_names.cookie_names())
    assert {"Authorization", "X-CSRF-Token", "If-Match", "If-None-Match", "Idempotency-Key",
            "X-Forwarded-For", "X-Request-ID", "Accept"} <= set(input_names.header_names())
    assert {"due_from", "due_to", "cursor", "next", "q", "sort"} <= set(input_names.query_names())
    assert {"due_at", "token", "password", "csrf_token", "from", "to", "tz"} <= set(input_names.form_names())


@pytest.fixture
async def query_names(client) -> dict[str, list[str]]:
    """Per path template, the query parameters it documents; None holds the union plus every name the code reads."""
    spec = await (await client.get("/api/v1/openapi.json")).json()
    names: dict[Any, list[str]] = {}
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "query":
                    names.setdefault(path, []).append(parameter["name"])
    names[None] = sorted({n for group in names.values() for n in group} | set(input_names.query_names()))
    return names


async def check(response: Any, *context: Any) -> None:
    """Below 500; an API error is a problem document; nothing leaks a traceback."""
    if response.status == 200 and response.content_type == "text/event-stream":
        response.close()  # the live stream never ends by itself; its status and headers are the answer
        return
    text = await response.text(errors="replace")
    assert response.status < 500, (*context, response.status, text[:300])
    assert "Traceback" not in text, context
    if response.status >= 400 and response.url.path.startswith("/api/v1/") and response.status != 405:
        await assert_problem(response, response.status)


async def send(client: Any, method: str, path: str, **kwargs: Any) -> Any:
    return await client.request(method, path, allow_redirects=False, **kwargs)


def ids_for(routes: list[tuple[str, str]]) -> Iterator[tuple[str, str]]:
    for method, template in routes:
        if "{" in template:
            for bad in HOSTILE_IDS:
                yield method, fill(template, bad)


async def test_hostile_path_ids_are_4xx(client, admin, routes):
    for method, path in ids_for(routes):
        response = await send(client, method, path, headers=admin.headers, json={})
        await check(response, method, path)
        if path.startswith("/api/v1/"):
            assert response.status >= 400, (method, path, response.status)


async def test_hostile_bodies_are_4xx(client, fresh_admin, routes):
    for method, template in routes:
        if method not in ("POST", "PATCH", "PUT", "DELETE"):
            continue
        path = fill(template, "1")
        headers = await fresh_admin()
        for body in HOSTILE_BODIES:
            response = await send(client, method, path, data=body,
                                  headers={**headers, "Content-Type": "application/json"})
            await check(response, method, path, body[:40])
            if path.startswith("/api/v1/"):
                assert response.status >= 400, (method, path, body[:40], response.status)
        for body in HOSTILE_FORMS:
            response = await send(client, method, path, data=body,
                                  headers={**headers, "Content-Type": "application/x-www-form-urlencoded"})
            await check(response, method, path, body[:40])


async def test_hostile_values_in_every_form_field(client, fresh_admin, routes):
    # Filter forms (the export's) read their fields with the same code as the list's query string.
    names = sorted(set(input_names.form_names()) | set(input_names.query_names()))
    for method, template in routes:
        if method != "POST" or template.startswith("/api/"):
            continue
        path = fill(template, "1")
        for value in HOSTILE_FORM_VALUES:
            for extra in ({}, {"action": "password"}, {"format": "pdf", "kind": "summary"}):
                form = {**{name: value for name in names}, **extra}
                headers = await fresh_admin()
                response = await send(client, method, path, data=form, headers=headers)
                await check(response, path, value[:40])
                # Signed in all along: never sent to sign in first (which would test nothing of this route).
                assert response.status != 303 or "/login?next=" not in response.headers["Location"], (path, value)


async def test_hostile_query_values_on_every_get_route(client, admin, routes, query_names):
    """Each value in every known parameter at once, on every route; then each documented parameter alone."""
    every = query_names[None]
    for method, template in routes:
        if method != "GET":
            continue
        path = fill(template, "1")
        for value in HOSTILE_VALUES:
            if len(value) > 100:  # all names at once would pass aiohttp's 8 KiB request line (a plain 400)
                continue
            query = "&".join(f"{name}={value}" for name in every)
            await check(await send(client, "GET", f"{path}?{query}", headers=admin.headers), path, value[:40])
        for name in query_names.get(template, ()):
            for value in HOSTILE_VALUES:
                response = await send(client, "GET", f"{path}?{name}={value}", headers=admin.headers)
                await check(response, path, name, value[:40])
                if response.status < 400 and value in ("abc.%C3%A9", "A" * 5000) and name == "cursor":
                    pytest.fail(f"{path}: a forged cursor was accepted")


async def test_non_ascii_and_overlong_cursors_are_422(client, admin, query_names):
    for template, names in query_names.items():
        if template is None or "cursor" not in names:
            continue
        for cursor in ("abc.%C3%A9", "%C3%A9.abc", "A" * 5000, "eyJ4Ijox.", ".", "A." + "B" * 900):
            response = await send(client, "GET", f"{fill(template, '1')}?cursor={cursor}", headers=admin.headers)
            await assert_problem(response, 422, "cursor")


@pytest.mark.parametrize("query", ["to=9999-12-31T23:59:59Z", "to=9999-12-31", "from=0001-01-01&to=0001-01-05",
                                   "to=0001-01-02T00:00:00Z", "from=9998-12-01&to=9999-12-31",
                                   "to=2026-01-01T00:00:00-14:00&from=2025-12-31T23:59:59%2B14:00"])
async def test_extreme_report_dates_are_422(client, admin, query):
    for path in ("/reports/summary", "/reports/admin-activity"):
        response = await send(client, "GET", f"{path}?{query}", headers=admin.headers)
        if query.startswith("to=2026"):
            assert response.status == 200, (path, query, await response.text())  # huge offsets, sane moments
        else:
            await assert_problem(response, 422)
    body = dict(part.split("=") for part in query.replace("%2B", "+").split("&"))
    response = await client.post("/api/v1/reports", json={"kind": "summary", **body}, headers=admin.headers)
    assert response.status == (202 if query.startswith("to=2026") else 422), (query, await response.text())


async def test_hostile_headers_and_credentials(client, admin, routes):
    for method, template in routes:
        path = fill(template, "1")
        for headers in HOSTILE_HEADERS:
            await check(await send(client, method, path, headers={**admin.headers, **headers}), method, path, headers)
        for name in input_names.header_names():
            for value in HOSTILE_HEADER_VALUES:
                headers = {name: value} if name == "Authorization" else {**admin.headers, name: value}
                await check(await send(client, method, path, headers=headers), method, path, name, value[:20])
        for auth in HOSTILE_AUTH:
            await check(await send(client, method, path, headers={"Authorization": auth}), method, path, auth[:20])


async def test_hostile_cookies_without_a_bearer_token(client, routes):
    """The cookies the code reads, under their real names, alone (a bearer header would be read instead)."""
    for method, template in routes:
        path = fill(template, "1")
        for name in input_names.cookie_names():
            for value in HOSTILE_COOKIE_VALUES:
                for accept in ("text/html", "application/json"):
                    cookie = f"{name}={value}; " + "; ".join(f"{other}=x" for other in input_names.cookie_names()
                                                              if other != name)
                    response = await send(client, method, path, headers={"Cookie": cookie, "Accept": accept,
                                                                         "X-CSRF-Token": value})
                    await check(response, method, path, name, value[:20])


@pytest.mark.parametrize("zone", ["Asia/Tokyo", "Pacific/Kiritimati", "UTC", "America/Los_Angeles"])
async def test_a_task_due_at_the_end_of_the_calendar_shows_in_any_zone(client, admin, db, zone):
    task_id = await db.fetchval("INSERT INTO tasks (owner_id, title, due_at) VALUES ($1, 'last', "
                                "'9999-12-31 23:30:00+00') RETURNING id", admin.id)
    await db.execute("INSERT INTO tasks (owner_id, title, due_at) VALUES ($1, 'first', '0001-01-01 00:10:00+00')",
                     admin.id)
    cookie = {"Cookie": f"tz={zone}", **admin.headers}
    for path in ("/tasks", f"/tasks/{task_id}", f"/tasks/{task_id}/delete", "/tasks?sort=due_at",
                 "/tasks?due_from=9999-12-31&due_to=9999-12-31", "/exports"):
        response = await send(client, "GET", path, headers=cookie)
        assert response.status == 200, (path, zone, response.status, (await response.text())[:300])
    for path in (f"/api/v1/tasks/{task_id}", "/api/v1/tasks?sort=due_at"):
        assert (await send(client, "GET", path, headers=admin.headers)).status == 200


async def test_oversized_bodies_are_413_everywhere(client, admin, routes):
    for method, template in routes:
        if method not in ("POST", "PATCH", "PUT"):
            continue
        if template.endswith("/attachments"):  # streamed uploads have their own limit (test_attachments.py)
            continue
        api = template.startswith("/api/")
        big = io.BytesIO((b'{"title": "' if api else b"token=") + b"a" * (1024 * 1024 + 10) + (b'"}' if api else b""))
        kind = "application/json" if api else "application/x-www-form-urlencoded"
        response = await send(client, method, fill(template, "1"), data=big,
                              headers={**admin.headers, "Content-Type": kind})
        assert response.status == 413, (method, template, response.status)
        if template.startswith("/api/v1/"):
            await assert_problem(response, 413)
