"""Assertions shared by the API tests."""
from __future__ import annotations

from typing import Any


async def assert_problem(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    """The response is an RFC 9457 problem with ``status`` (and a message for ``field`` or inside it, when given)."""
    body = await response.json(content_type=None)
    assert response.status == status, body
    assert response.content_type == "application/problem+json"
    assert body["status"] == status and body["title"] and body["type"] and body["detail"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert "Traceback" not in str(body)
    if "errors" in body:  # the one error shape: {"dotted.path": ["message", ...]}
        assert body["errors"] and all(isinstance(k, str) and v and isinstance(v, list) and
                                      all(isinstance(m, str) for m in v) for k, v in body["errors"].items()), body
    if field is not None:  # the field itself or something inside it (``tags`` matches ``tags.0``)
        assert any(path == field or path.startswith(field + ".") for path in body["errors"]), body
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    return body


async def register(client: Any, email: str = "ada@example.com", password: str = "correct horse battery",
                   **extra: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/auth/register", json={"email": email, "password": password, **extra})
    assert response.status == 201, await response.text()
    return await response.json()


async def login(client: Any, email: str = "ada@example.com", password: str = "correct horse battery") -> dict:
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status == 200, await response.text()
    return await response.json()


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def request_reset(client: Any, settings: Any, email: str = "ada@example.com") -> None:
    """Ask for a reset as a client does, then let a real worker look the address up and send the mail."""
    from tests.worker_helpers import run_burst

    response = await client.post("/api/v1/auth/password-reset", json={"email": email})
    assert response.status == 202, await response.text()
    await run_burst(settings)


def mailed_tokens(stack: Any, path: str) -> list[str]:
    """The tokens of the links to ``path`` in the mails the SMTP sink received, oldest first."""
    import re

    found = []
    for message in stack.smtp.messages():
        text = message.get_body(("plain",)).get_content()
        found += re.findall(re.escape(path) + r"\?token=([A-Za-z0-9_-]+)", text)
    return found


# Rate limits on but out of reach: the limiter's pipeline (web/ratelimit.py) then also reads the denylist,
# the auth version and the cached first page for the handler, a path that must be exactly as correct.
LIMITER_ON = dict(rate_limits=True, rate_limit_api="100000/minute", rate_limit_login="100000 per 15 minutes",
                  rate_limit_auth_address="100000 per 15 minutes", rate_limit_auth_email="100000/hour",
                  rate_limit_jobs="100000/hour")


async def redis_round_trips(app: Any, send: Any) -> tuple[Any, int]:
    """(the response of ``await send()``, how many Redis round trips it cost: each command or pipeline
    takes one connection from the app's pool)."""
    from web.keys import REDIS

    pool = app[REDIS].connection_pool
    original = pool.get_connection
    taken = 0

    async def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal taken
        taken += 1
        return await original(*args, **kwargs)

    pool.get_connection = counting
    try:
        response = await send()
    finally:
        pool.get_connection = original
    return response, taken
