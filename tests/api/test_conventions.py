"""Contract conventions: request ids, problem+json for every error, body limits, content types."""
from __future__ import annotations

import io
import json
import logging

import pytest
from aiohttp import web

from shared.observability.logs import RequestIdFilter
from tests.helpers import assert_problem
from web.app import create_app

REGISTER = "/api/v1/auth/register"


async def test_request_id_is_generated_or_echoed(client):
    generated = await client.get("/health")
    assert len(generated.headers["X-Request-ID"]) == 32
    echoed = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["X-Request-ID"] == "abc-123"
    # A hostile id (header injection, huge) is replaced, not echoed.
    hostile = await client.get("/health", headers={"X-Request-ID": "x" * 500})
    assert hostile.headers["X-Request-ID"] != "x" * 500


async def test_errors_carry_the_request_id(client):
    response = await client.post(REGISTER, data=b"{", headers={"Content-Type": "application/json",
                                                               "X-Request-ID": "req-42"})
    body = await assert_problem(response, 400)
    assert body["request_id"] == "req-42"


@pytest.mark.parametrize("payload", [b"{", b"{'a': 1}", b"[1,", b"\xff\xfe", b'{"a": NaN}', b"nul"])
async def test_malformed_json_is_400(client, payload):
    response = await client.post(REGISTER, data=payload, headers={"Content-Type": "application/json"})
    await assert_problem(response, 400)


@pytest.mark.parametrize("payload", [b"[]", b'"text"', b"42", b"null"])
async def test_json_that_is_not_an_object_is_422(client, payload):
    response = await client.post(REGISTER, data=payload, headers={"Content-Type": "application/json"})
    await assert_problem(response, 422, "_schema")


async def test_non_json_body_is_415(client):
    response = await client.post(REGISTER, data=b"email=a@b.c", headers={"Content-Type":
                                                                         "application/x-www-form-urlencoded"})
    await assert_problem(response, 415)
    response = await client.post(REGISTER, data=b'{"email": "a@b.c"}', headers={"Content-Type": "text/plain"})
    await assert_problem(response, 415)


async def test_body_over_one_mib_is_413(client):
    big = io.BytesIO(b'{"email": "' + b"a" * (1024 * 1024) + b'"}')
    await assert_problem(await client.post(REGISTER, data=big, headers={"Content-Type": "application/json"}), 413)


async def test_chunked_body_over_one_mib_is_413(client):
    async def chunks():
        yield b'{"email": "'
        for _ in range(130):
            yield b"a" * 8192
        yield b'"}'

    response = await client.post(REGISTER, data=chunks(), headers={"Content-Type": "application/json"})
    await assert_problem(response, 413)


async def test_unknown_route_is_404_problem_and_wrong_method_405(client):
    await assert_problem(await client.get("/api/v1/nothing-here"), 404)
    response = await client.delete("/api/v1/auth/login")
    await assert_problem(response, 405)
    assert "POST" in response.headers["Allow"]


async def test_unknown_fields_are_422(client):
    response = await client.post(REGISTER, json={"email": "a@example.com", "password": "long enough", "x": 1})
    await assert_problem(response, 422, "x")


async def test_an_unexpected_error_is_a_500_problem_without_internals(aiohttp_client, settings, caplog):
    app = create_app(settings)

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("SELECT secret FROM vault -- password=hunter2")

    app.router.add_get("/boom", boom)
    client = await aiohttp_client(app)
    caplog.handler.addFilter(RequestIdFilter())  # what configure_logging installs on the real handler
    with caplog.at_level(logging.ERROR, logger="app.web"):
        response = await client.get("/boom", headers={"X-Request-ID": "trace-me"})
    body = await assert_problem(response, 500)
    assert "hunter2" not in str(body) and "SELECT" not in str(body)
    assert any("trace-me" == getattr(r, "request_id", None) for r in caplog.records)


async def test_browsers_get_an_html_error_page_outside_the_api(client):
    response = await client.get("/no-such-page", headers={"Accept": "text/html,application/xhtml+xml"})
    assert response.status == 404 and response.content_type == "text/html"
    text = await response.text()
    assert "404" in text and response.headers["X-Request-ID"] in text
    api = await client.get("/api/v1/no-such-thing", headers={"Accept": "text/html"})
    await assert_problem(api, 404)


@pytest.mark.parametrize("path, body, field", [
    (REGISTER, {"email": "a@example.com", "password": "long enough", "name": "nul\u0000byte"}, "name"),
    (REGISTER, {"email": "a@example.com", "password": "lone \ud800 surrogate"}, "password"),
    (REGISTER, {"email": "a@example.com", "password": "nul\u0000 in password"}, "password"),
    (REGISTER, {"email": "a\u0000@example.com", "password": "long enough"}, "email"),
    ("/api/v1/auth/login", {"email": "a@example.com", "password": "\udfff"}, "password"),
])
async def test_text_postgres_cannot_store_is_422_not_500(client, path, body, field):
    raw = json.dumps(body).encode()  # json.dumps escapes lone surrogates as \\ud800, as a client would
    response = await client.post(path, data=raw, headers={"Content-Type": "application/json"})
    await assert_problem(response, 422, field)


async def test_admin_query_text_postgres_cannot_store_is_422(client, make_user):
    admin = await make_user(role="admin")
    for query in ("q=a%00b", "cursor=%ff", "cursor=a%00.b"):
        response = await client.get(f"/api/v1/admin/users?{query}", headers=admin.headers)
        await assert_problem(response, 422)
    # Invalid UTF-8 in a query string is decoded with replacement characters: a search, not an error.
    response = await client.get("/api/v1/admin/users?q=%ed%a0%80", headers=admin.headers)
    assert response.status == 200
