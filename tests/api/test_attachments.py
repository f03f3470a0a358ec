"""Attachments on the directory storage: the exact bytes back as a download that is never rendered, a
sanitised name, a safe content type, the limits enforced while streaming, and every bad upload refused
with nothing left in storage or the database. The file of a deleted row is removed by the job, once."""
from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from shared.db.database import Database
from tests.helpers import assert_problem
from tests.project_helpers import TASKS, new_task, shared_project
from tests.worker_helpers import job_ctx
from web.app import create_app
from worker.jobs.trash import collect_attachment_files

LIMIT, QUOTA = 64 * 1024, 160 * 1024


def _form(data: bytes, filename: str | None = "notes.txt", name: str = "file",
          content_type: str = "text/plain") -> aiohttp.FormData:
    form = aiohttp.FormData(quote_fields=False)  # as browsers send names: raw UTF-8
    form.add_field(name, data, filename=filename, content_type=content_type)
    return form


def stored(settings: Any) -> list[str]:
    root = Path(settings.export_storage)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def small_client(aiohttp_client: Any, settings: Any) -> Any:
    return await aiohttp_client(create_app(settings.with_(attachment_max_bytes=LIMIT,
                                                          attachment_quota_bytes=QUOTA)))


async def test_upload_download_delete(aiohttp_client: Any, settings: Any, make_user: Any, db: asyncpg.Connection,
                                      database: Database) -> None:
    client = await small_client(aiohttp_client, settings)
    ada = await make_user()
    task = await new_task(client, ada)
    data = os.urandom(50_000)
    created = await client.post(f"{TASKS}/{task['id']}/attachments", headers=ada.headers,
                                data=_form(data, "..\\..\\etc/re\u200bport\u202e.pdf", content_type="text/html"))
    assert created.status == 201, await created.text()
    attachment = await created.json()
    assert attachment["filename"] == "report.pdf" and attachment["content_type"] == "application/octet-stream"
    assert attachment["size_bytes"] == len(data) and attachment["uploaded_by"] == ada.id
    pdf = await (await client.post(f"{TASKS}/{task['id']}/attachments", headers=ada.headers,
                                   data=_form(b"%PDF-1.4", "r\u00e9sum\u00e9 \"x\".pdf",
                                              content_type="application/pdf"))).json()
    assert pdf["content_type"] == "application/pdf"

    download = await client.get(attachment["download_url"], headers=ada.headers)
    assert download.status == 200 and await download.read() == data
    assert download.headers["Content-Length"] == str(len(data))
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    assert download.headers["Content-Disposition"].startswith('attachment; filename="report.pdf"')
    named = await client.get(pdf["download_url"], headers=ada.headers)
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9%20_x_.pdf" in named.headers["Content-Disposition"]
    listed = await (await client.get(f"{TASKS}/{task['id']}/attachments", headers=ada.headers)).json()
    assert [a["id"] for a in listed["items"]] == [attachment["id"], pdf["id"]]
    assert (await (await client.get(f"{TASKS}/{task['id']}", headers=ada.headers)).json())["attachment_count"] == 2

    assert (await client.delete(f"/api/v1/attachments/{attachment['id']}", headers=ada.headers)).status == 204
    await assert_problem(await client.get(attachment["download_url"], headers=ada.headers), 404)
    assert len(stored(settings)) == 2  # the job removes the file, not the request
    ctx = job_ctx(settings, database)
    assert await collect_attachment_files(ctx) == 1
    assert await collect_attachment_files(ctx) == 0
    assert len(stored(settings)) == 1
    # a project's deletion takes its tasks' files along, through the same job
    await db.execute("DELETE FROM projects WHERE id = $1", task["project_id"])
    assert await collect_attachment_files(ctx) == 1 and stored(settings) == []


async def test_bad_uploads_leave_nothing(aiohttp_client: Any, settings: Any, make_user: Any,
                                         db: asyncpg.Connection) -> None:
    client = await small_client(aiohttp_client, settings)
    ada = await make_user()
    task = await new_task(client, ada)
    url = f"{TASKS}/{task['id']}/attachments"
    two = _form(b"one")
    two.add_field("file", b"two", filename="two.txt")
    cases = [
        (_form(b"x", name="other"), 422),  # no file part
        (two, 422),  # two parts
        (_form(b""), 422),  # empty file
        (_form(b"x", filename=""), 422),  # empty filename
        (_form(b"x", filename="a" * 10_000), 422),  # 10 KB filename
        (_form(b"x", filename="../.."), 422),  # nothing usable left
        (_form(os.urandom(LIMIT + 1)), 413),  # over ATTACHMENT_MAX_BYTES by one byte: found while streaming
        (_form(os.urandom(3 * LIMIT)), 413),  # a declared Content-Length far past it: refused before reading
    ]
    for number, (form, status) in enumerate(cases):
        response = await client.post(url, data=form, headers=ada.headers)
        assert response.status == status, (number, await response.text())
        await assert_problem(response, status)
    await assert_problem(await client.post(url, json={"file": "x"}, headers=ada.headers), 415)
    await assert_problem(await client.post(url, data=b"--x\r\nbroken", headers={
        **ada.headers, "Content-Type": "multipart/form-data; boundary=x"}), 400)
    assert stored(settings) == [] and await db.fetchval("SELECT count(*) FROM attachments") == 0
    assert (await (await client.get(f"{TASKS}/{task['id']}", headers=ada.headers)).json())["attachment_count"] == 0


async def test_the_quota_is_per_user_and_named(aiohttp_client: Any, settings: Any, make_user: Any,
                                               db: asyncpg.Connection) -> None:
    client = await small_client(aiohttp_client, settings)
    ada, bob = await make_user(), await make_user()
    task = await new_task(client, ada)
    url = f"{TASKS}/{task['id']}/attachments"
    for _ in range(2):
        assert (await client.post(url, data=_form(os.urandom(LIMIT)), headers=ada.headers)).status == 201
    problem = await assert_problem(await client.post(url, data=_form(os.urandom(LIMIT)), headers=ada.headers), 413)
    assert "quota" in problem["detail"] and "160 KiB" in problem["detail"]
    assert len(stored(settings)) == 2 and await db.fetchval("SELECT count(*) FROM attachments") == 2
    bobs = await new_task(client, bob)
    assert (await client.post(f"{TASKS}/{bobs['id']}/attachments", data=_form(os.urandom(LIMIT)),
                              headers=bob.headers)).status == 201


async def test_rights_and_the_trash(client: Any, make_user: Any, db: asyncpg.Connection) -> None:
    ada, viewer, stranger = await make_user(), await make_user(), await make_user()
    project = await shared_project(client, db, ada, viewer=viewer)
    task = await new_task(client, ada, project)
    url = f"{TASKS}/{task['id']}/attachments"
    await assert_problem(await client.post(url, data=_form(b"x"), headers=viewer.headers), 403)
    await assert_problem(await client.post(url, data=_form(b"x"), headers=stranger.headers), 404)
    attachment = await (await client.post(url, data=_form(b"hello"), headers=ada.headers)).json()
    assert (await client.get(attachment["download_url"], headers=viewer.headers)).status == 200
    await assert_problem(await client.get(attachment["download_url"], headers=stranger.headers), 404)
    await assert_problem(await client.delete(f"/api/v1/attachments/{attachment['id']}", headers=viewer.headers), 403)
    assert (await client.delete(f"{TASKS}/{task['id']}", headers=ada.headers)).status == 204
    await assert_problem(await client.get(attachment["download_url"], headers=ada.headers), 404)
    await assert_problem(await client.get(url, headers=ada.headers), 404)


async def test_a_vanished_file_is_410(client: Any, settings: Any, make_user: Any) -> None:
    ada = await make_user()
    task = await new_task(client, ada)
    attachment = await (await client.post(f"{TASKS}/{task['id']}/attachments", data=_form(b"hello"),
                                          headers=ada.headers)).json()
    for path in Path(settings.export_storage).rglob("*"):
        if path.is_file():
            path.unlink()
    await assert_problem(await client.get(attachment["download_url"], headers=ada.headers), 410)


async def test_a_body_cut_off_mid_stream_leaves_nothing(client: Any, settings: Any, make_user: Any,
                                                        db: asyncpg.Connection) -> None:
    ada = await make_user()
    task = await new_task(client, ada)
    head = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cut.bin\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n" + b"x" * 300_000)
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(f"POST {TASKS}/{task['id']}/attachments HTTP/1.1\r\nHost: x\r\n"
                 f"Authorization: {ada.headers['Authorization']}\r\n"
                 f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 1000000\r\n\r\n".encode() + head)
    await writer.drain()
    writer.write_eof()  # the client stops sending mid-file, but still listens
    status_line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    # A half-closed connection is closed by aiohttp (no answer can be read), or answered 400.
    assert status_line == b"" or status_line.split()[1] == b"400", status_line
    await asyncio.sleep(0.5)  # the handler's cleanup runs after the connection went
    assert stored(settings) == [] and await db.fetchval("SELECT count(*) FROM attachments") == 0


async def test_a_cookie_session_needs_the_csrf_header(client: Any, make_user: Any, db: asyncpg.Connection) -> None:
    from tests.pages.test_pages_session import csrf_of, sign_in
    ada = await make_user()
    task = await new_task(client, ada)
    await sign_in(client, ada.email)
    csrf = csrf_of(await (await client.get("/tasks")).text())
    url = f"{TASKS}/{task['id']}/attachments"
    await assert_problem(await client.post(url, data=_form(b"x")), 403)
    assert (await client.post(url, data=_form(b"x"), headers={"X-CSRF-Token": csrf})).status == 201
    assert await db.fetchval("SELECT count(*) FROM attachments") == 1
