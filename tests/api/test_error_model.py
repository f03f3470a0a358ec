"""Every 422 has one shape, errors: {"dotted.path": ["message", ...]}, whatever the nesting."""
from __future__ import annotations

import asyncio

import pytest

from tests.helpers import assert_problem


async def test_a_bad_list_item_is_reported_by_its_index(client, make_user):
    user = await make_user()
    response = await client.post("/api/v1/tasks", json={"title": "t", "tags": ["ok", "x" * 51, ""]},
                                 headers=user.headers)
    body = await assert_problem(response, 422)
    assert set(body["errors"]) == {"tags.1", "tags.2"}
    assert all(isinstance(m, str) for m in body["errors"]["tags.1"])


async def test_nested_export_filters_are_dotted(client, make_user):
    user = await make_user()
    response = await client.post("/api/v1/exports", headers=user.headers, json={
        "format": "csv", "filters": {"status": ["todo", "nope"], "no_such_filter": 1}})
    body = await assert_problem(response, 422)
    assert set(body["errors"]) == {"filters.status.1", "filters.no_such_filter"}
    wrong_type = await client.post("/api/v1/exports", headers=user.headers, json={"format": "csv", "filters": 5})
    assert set((await assert_problem(wrong_type, 422))["errors"]) == {"filters"}


async def test_a_query_list_item_is_dotted_too(client, make_user):
    user = await make_user()
    response = await client.get("/api/v1/tasks?status=todo&status=bogus", headers=user.headers)
    body = await assert_problem(response, 422)
    assert set(body["errors"]) == {"status.1"}


async def test_the_whole_body_is_underscore_schema(client):
    response = await client.post("/api/v1/auth/login", json=["not", "an", "object"])
    body = await assert_problem(response, 422)
    assert body["errors"] == {"_schema": ["Expected a JSON object"]}


async def _raw(client, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),  # a header over 8190 bytes
    (b"GET /" + b"a" * 33000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),                  # a request line over 32 KiB
    (b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
])
async def test_requests_the_http_parser_refuses_are_problems_too(client, request_bytes, status):
    """aiohttp answers these itself before the application runs; web/protocol.py makes that answer a
    problem (more cases in tests/api/test_raw_http.py)."""
    response = await _raw(client, request_bytes)
    head = response.split(b"\r\n\r\n", 1)[0].decode()
    assert head.startswith(f"HTTP/1.0 {status} ") and "Content-Type: application/problem+json" in head, head
    assert "X-Request-ID: " in head
    assert b"Traceback" not in response
