"""Attachments on S3 (moto's server mode, a real HTTP endpoint): a multipart upload fed while the body
streams in, the exact bytes back, an upload that dies when S3 stops halfway (multipart upload aborted,
nothing kept), and a vanished object (410)."""
from __future__ import annotations

import io
import os
from typing import Any

import aiohttp
import asyncpg
from botocore.exceptions import ClientError

from launcher.devstack import S3Server
from shared.storage import s3 as s3_module
from tests.helpers import assert_problem
from tests.project_helpers import TASKS, new_task
from web.app import create_app

MiB = 1024 * 1024


def objects(server: S3Server, bucket: str) -> dict[str, int]:
    listing = server.client().list_objects_v2(Bucket=bucket)
    return {item["Key"]: item["Size"] for item in listing.get("Contents", [])}


def uploads(server: S3Server, bucket: str) -> list[str]:
    return [u["Key"] for u in server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def _form(data: bytes) -> aiohttp.FormData:
    form = aiohttp.FormData(quote_fields=False)
    form.add_field("file", io.BytesIO(data), filename="big.bin", content_type="application/octet-stream")
    return form


async def test_round_trip_and_a_vanished_object(aiohttp_client: Any, s3_settings: Any, s3_server: S3Server,
                                                make_user: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(s3_module, "PART_SIZE", 5 * MiB)
    client = await aiohttp_client(create_app(s3_settings))
    ada = await make_user()
    task = await new_task(client, ada)
    data = os.urandom(12 * MiB)  # three parts
    created = await client.post(f"{TASKS}/{task['id']}/attachments", data=_form(data), headers=ada.headers)
    assert created.status == 201, await created.text()
    attachment = await created.json()
    bucket = s3_settings.s3.bucket
    assert list(objects(s3_server, bucket).values()) == [len(data)] and uploads(s3_server, bucket) == []
    download = await client.get(attachment["download_url"], headers=ada.headers)
    assert download.headers["Content-Length"] == str(len(data)) and await download.read() == data
    assert download.headers["Content-Disposition"].startswith("attachment;")
    for key in objects(s3_server, bucket):
        s3_server.client().delete_object(Bucket=bucket, Key=key)
    await assert_problem(await client.get(attachment["download_url"], headers=ada.headers), 410)


async def test_s3_stopping_halfway_aborts_the_multipart_upload(aiohttp_client: Any, s3_settings: Any,
                                                               s3_server: S3Server, make_user: Any,
                                                               db: asyncpg.Connection, monkeypatch: Any) -> None:
    monkeypatch.setattr(s3_module, "PART_SIZE", 5 * MiB)
    real_send = s3_module._Upload._send_part
    sent: list[int] = []

    async def send_then_fail(self: Any, body: bytes) -> None:
        if sent:  # the endpoint goes away after the first part
            raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "gone"}}, "UploadPart")
        sent.append(len(body))
        await real_send(self, body)

    monkeypatch.setattr(s3_module._Upload, "_send_part", send_then_fail)
    client = await aiohttp_client(create_app(s3_settings))
    ada = await make_user()
    task = await new_task(client, ada)
    response = await client.post(f"{TASKS}/{task['id']}/attachments", data=_form(os.urandom(12 * MiB)),
                                 headers=ada.headers)
    await assert_problem(response, 503)
    bucket = s3_settings.s3.bucket
    assert sent == [5 * MiB]  # one part had reached S3...
    assert uploads(s3_server, bucket) == [] and objects(s3_server, bucket) == {}  # ...and was aborted
    assert await db.fetchval("SELECT count(*) FROM attachments") == 0
