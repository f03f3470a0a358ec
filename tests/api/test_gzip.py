"""gzip for JSON and HTML over ~1 KiB when accepted; never for downloads; always Vary: Accept-Encoding."""
from __future__ import annotations

import gzip
from typing import Any

from tests.export_helpers import create_job, run_jobs, seed_many
from shared.config import Settings

GZIP = {"Accept-Encoding": "gzip"}
IDENTITY = {"Accept-Encoding": "identity"}


async def raw(client: Any, path: str, headers: dict[str, str]) -> tuple[Any, bytes]:
    """The bytes as sent (aiohttp's client would otherwise inflate them for us)."""
    response = await client.get(path, headers=headers, auto_decompress=False)
    return response, await response.read()


async def test_a_large_task_page_is_gzipped_when_accepted(client: Any, make_user: Any, db: Any) -> None:
    user = await make_user()
    await seed_many(db, user.id, 100, description="x" * 200)
    response, body = await raw(client, "/api/v1/tasks?limit=100", {**user.headers, **GZIP})
    assert response.status == 200
    assert response.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in response.headers["Vary"]
    plain = gzip.decompress(body)
    assert len(plain) > 30_000 and len(body) < len(plain) / 4
    assert plain.startswith(b'{"items":[')

    response, body = await raw(client, "/api/v1/tasks?limit=100", {**user.headers, **IDENTITY})
    assert "Content-Encoding" not in response.headers
    assert "Accept-Encoding" in response.headers["Vary"]
    assert body == plain
    refused, _ = await raw(client, "/api/v1/tasks?limit=100", {**user.headers, "Accept-Encoding": "gzip;q=0"})
    assert "Content-Encoding" not in refused.headers


async def test_small_responses_are_not_compressed(client: Any, make_user: Any) -> None:
    user = await make_user()
    response, body = await raw(client, "/api/v1/users/me", {**user.headers, **GZIP})
    assert response.status == 200 and len(body) < 1024
    assert "Content-Encoding" not in response.headers
    assert "Accept-Encoding" in response.headers["Vary"]


async def test_html_is_compressed(client: Any, make_user: Any) -> None:
    user = await make_user()
    response, body = await raw(client, "/reports/summary", {**user.headers, **GZIP})
    assert response.status == 200 and response.content_type == "text/html"
    assert response.headers["Content-Encoding"] == "gzip"
    assert b"<html" in gzip.decompress(body).lower()


async def test_downloads_are_sent_as_they_are(client: Any, settings: Settings, make_user: Any, db: Any) -> None:
    user = await make_user()
    await seed_many(db, user.id, 300)
    jobs = [await create_job(client, user, format=fmt) for fmt in ("csv", "pdf")]
    await run_jobs(settings)
    for job in jobs:
        detail = await (await client.get(f"/api/v1/exports/{job['id']}", headers=user.headers)).json()
        response, body = await raw(client, detail["download_url"], {**user.headers, **GZIP})
        assert response.status == 200
        assert "Content-Encoding" not in response.headers
        assert len(body) > 1024
        if job["format"] == "pdf":
            assert body.startswith(b"%PDF")
        else:
            assert body.count(b"\n") > 300
