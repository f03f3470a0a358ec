"""Requests aiohttp's client cannot send, over a raw socket: header bytes that are not UTF-8, and requests the
HTTP parser itself refuses (too long a request line or header, broken framing). Never a 500; every
error is problem+json with the right status."""
from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests import input_names
from web.session import session_token

BAD_BYTES = (b"\xff\xfe", b"\xc3\x28", b"abc\x80def", b"Bearer \xff\xfe", b"\xed\xa0\x80")
ROUTES = (("GET", "/"), ("GET", "/login"), ("POST", "/login"), ("GET", "/tasks"), ("POST", "/tasks"),
          ("POST", "/logout"), ("GET", "/api/v1/tasks"), ("POST", "/api/v1/tasks"), ("GET", "/api/v1/users/me"),
          ("GET", "/ready"), ("GET", "/metrics"))


def raw_request(method: str, path: bytes | str, headers: list[tuple[bytes, bytes]] = (), body: bytes = b"") -> bytes:
    target = path.encode() if isinstance(path, str) else path
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: taskdeck.test", b"Connection: close"]
    lines += [name + b": " + value for name, value in headers]
    if method not in ("POST", "PATCH", "PUT"):
        body = b""
    else:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def exchange(client: Any, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` as is; the status, headers (lower-case names) and body of the answer."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(data)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 20)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def assert_raw_problem(status: int, headers: dict[str, str], body: bytes, expected: int | None = None) -> None:
    assert headers.get("content-type", "").startswith("application/problem+json"), (status, headers, body[:200])
    problem = json.loads(body)
    assert problem["status"] == status and problem["title"] and problem["detail"] and problem["type"]
    assert problem["request_id"] == headers["x-request-id"]
    assert problem["title"] != "Error", problem  # every status the service answers has its own title
    if expected is not None:
        assert status == expected, (status, problem)


@pytest.fixture
async def user_cookie(make_user, settings):
    user = await make_user()
    return user, session_token(settings, user_id=user.id, session_id=user.session_id).encode()


async def test_non_utf8_bytes_in_every_header_and_cookie_the_code_reads(client, user_cookie):
    user, cookie = user_cookie
    cases: list[tuple[bytes, bytes]] = []
    for name in input_names.header_names():
        cases += [(name.encode(), bad) for bad in BAD_BYTES]
    for name in input_names.cookie_names():
        cases += [(b"Cookie", name.encode() + b"=" + bad) for bad in BAD_BYTES]
        # next to a valid session, so that the code reading this one is reached
        cases += [(b"Cookie", b"taskdeck_session=" + cookie + b"; " + name.encode() + b"=" + bad)
                  for bad in BAD_BYTES if name != "taskdeck_session"]
    for method, path in ROUTES:
        for header in cases:
            for accept in (b"text/html", b"application/json"):
                form = (b"Content-Type", b"application/x-www-form-urlencoded")
                status, headers, body = await exchange(client, raw_request(
                    method, path, [header, (b"Accept", accept), form], b"title=x"))
                assert status < 500, (method, path, header, accept, status, body[:300])
                if status >= 400 and (path.startswith("/api/") or accept == b"application/json"):
                    assert_raw_problem(status, headers, body)


async def test_a_non_utf8_csrf_header_with_a_live_session_cookie(client, user_cookie):
    user, cookie = user_cookie
    for method, path in (("POST", "/api/v1/tasks"), ("POST", "/tasks"), ("POST", "/logout"),
                         ("PATCH", "/api/v1/users/me")):
        for bad in BAD_BYTES:
            status, headers, body = await exchange(client, raw_request(
                method, path, [(b"Cookie", b"taskdeck_session=" + cookie), (b"X-CSRF-Token", bad),
                               (b"Content-Type", b"application/json")], b'{"title": "x"}'))
            assert status in (400, 403), (method, path, bad, status, body[:300])
            assert_raw_problem(status, headers, body)


PARSER_CASES = [
    ("request line too long", raw_request("GET", "/api/v1/tasks?q=" + "a" * 40_000), 414),
    ("path too long", raw_request("GET", "/" + "a" * 33_000), 414),
    ("header too long", raw_request("GET", "/api/v1/tasks", [(b"X-Long", b"a" * 10_000)]), 431),
    ("header name too long", raw_request("GET", "/api/v1/tasks", [(b"X-" + b"a" * 10_000, b"1")]), 431),
    ("too many headers", raw_request("GET", "/api/v1/tasks", [(b"X-H%d" % i, b"1") for i in range(200)]), 431),
    ("header without a colon", b"GET /api/v1/tasks HTTP/1.1\r\nHost: x\r\nBroken header\r\n\r\n", 400),
    ("bad method", b"G@T /api/v1/tasks HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("bad version", b"GET /api/v1/tasks HTTP/9.x\r\nHost: x\r\n\r\n", 400),
    ("two content lengths", b"POST /api/v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
                            b"Content-Length: 2\r\n\r\nab", 400),
    ("bad chunk size", b"POST /api/v1/tasks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                       b"Content-Type: application/json\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", 400),
    ("non-UTF-8 path", b"GET /tasks/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("non-UTF-8 query", b"GET /api/v1/tasks?q=\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", 400),
]


@pytest.mark.parametrize(("name", "data", "expected"), PARSER_CASES, ids=[case[0] for case in PARSER_CASES])
async def test_requests_the_parser_refuses_are_problems(client, name, data, expected):
    status, headers, body = await exchange(client, data)
    assert_raw_problem(status, headers, body, expected)


async def test_a_valid_cursor_of_four_byte_characters_reaches_the_schema(client, make_user):
    """1000 characters is a cursor's documented maximum; percent-encoded 4-byte ones make a 12 KB line."""
    user = await make_user()
    bearer = (b"Authorization", user.headers["Authorization"].encode())
    status, headers, body = await exchange(client, raw_request(
        "GET", "/api/v1/tasks?cursor=" + "%F1%BA%97%B8" * 1001, [bearer]))
    assert_raw_problem(status, headers, body, 422)
    assert "cursor" in json.loads(body)["errors"]
