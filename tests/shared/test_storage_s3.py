"""S3 export storage against a real S3 HTTP endpoint (moto's server mode, started by the session)."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shared.config import S3Config, Settings
from launcher.devstack import S3Server, free_port
from shared.storage import StorageError, storage_from_settings
from shared.storage.s3 import S3Storage
from tests.conftest import TEST_SECRET
from web.app import create_app
from worker.jobs.cleanup import cleanup_exports

from tests.export_helpers import create_job, download, fetch_job, parse_csv, run_jobs, seed_many
from tests.worker_helpers import job_ctx

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
PART = 5 * MiB  # S3's (and moto's) smallest allowed part


def objects(server: S3Server, bucket: str) -> dict[str, int]:
    listing = server.client().list_objects_v2(Bucket=bucket)
    return {item["Key"]: item["Size"] for item in listing.get("Contents", [])}


def uploads(server: S3Server, bucket: str) -> list[str]:
    return [u["Key"] for u in server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


@pytest.fixture
async def s3_storage(s3_settings: Settings) -> Any:
    assert s3_settings.s3 is not None
    storage = S3Storage(s3_settings.s3, part_size=PART)
    yield storage
    await storage.close()


async def test_a_multipart_file_appears_only_when_complete(s3_storage: S3Storage, s3_server: S3Server) -> None:
    bucket, chunk = s3_storage.bucket, os.urandom(256 * 1024)
    async with s3_storage.create("jobs/1/out.csv") as pending:
        for _ in range(50):  # 12.5 MiB in 256 KiB writes: two full parts, then the rest at commit
            await pending.write(chunk)
        assert uploads(s3_server, bucket) == ["exports/jobs/1/out.csv"]  # parts are uploaded already...
        assert objects(s3_server, bucket) == {}  # ...but no object exists yet
        assert await s3_storage.size("jobs/1/out.csv") is None

    assert objects(s3_server, bucket) == {"exports/jobs/1/out.csv": 50 * len(chunk)}
    assert uploads(s3_server, bucket) == []
    assert pending.size == await s3_storage.size("jobs/1/out.csv") == 50 * len(chunk)
    head = s3_server.client().head_object(Bucket=bucket, Key="exports/jobs/1/out.csv")
    assert head["ETag"].strip('"').endswith("-3")  # S3's mark of a 3-part upload
    assert b"".join([c async for c in s3_storage.chunks("jobs/1/out.csv")]) == chunk * 50


async def test_a_small_file_is_one_put_and_a_thread_may_write_the_file(s3_storage: S3Storage,
                                                                        s3_server: S3Server) -> None:
    async with s3_storage.create("jobs/2/out.pdf") as pending:
        await asyncio.to_thread(pending.file.write, b"%PDF-1.4 tiny")
        pending.file.write(b"!")  # on the loop thread: buffered
    assert objects(s3_server, s3_storage.bucket) == {"exports/jobs/2/out.pdf": 14}
    download = await s3_storage.open_download("jobs/2/out.pdf")
    assert download is not None and download.size == 14
    assert b"".join([c async for c in download.chunks]) == b"%PDF-1.4 tiny!"
    assert await s3_storage.open_download("jobs/404/out.pdf") is None


async def test_a_failed_write_aborts_the_upload_and_keeps_the_old_object(s3_storage: S3Storage,
                                                                         s3_server: S3Server) -> None:
    async with s3_storage.create("jobs/3/out.csv") as pending:
        await pending.write(b"first")
    with pytest.raises(RuntimeError):
        async with s3_storage.create("jobs/3/out.csv") as pending:
            await pending.write(os.urandom(PART + 10))  # one part is up: a real multipart upload to abort
            assert uploads(s3_server, s3_storage.bucket)
            raise RuntimeError("worker crashed")
    assert uploads(s3_server, s3_storage.bucket) == []
    assert b"".join([c async for c in s3_storage.chunks("jobs/3/out.csv")]) == b"first"
    await s3_storage.delete("jobs/3/out.csv")
    await s3_storage.delete("jobs/3/out.csv")  # twice is fine
    assert objects(s3_server, s3_storage.bucket) == {}


async def test_upload_memory_stays_flat_whatever_the_size(s3_storage: S3Storage) -> None:
    chunk = os.urandom(MiB)

    async def peak_for(mib: int) -> int:
        tracemalloc.start()
        try:
            async with s3_storage.create(f"jobs/{mib}/big.csv") as pending:
                for _ in range(mib):
                    await pending.write(chunk)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            assert pending.size == mib * MiB

    await peak_for(1)  # the client's one-time set-up is not per upload
    small, big = await peak_for(16), await peak_for(64)
    assert big < small + MiB, f"peak {small / MiB:.1f} MiB for 16 MiB, {big / MiB:.1f} MiB for 64 MiB"
    assert big < 4 * PART  # a part being filled, one being sent, and the HTTP layer's copy


async def test_discard_partials_aborts_abandoned_uploads_by_age_and_prefix(s3_storage: S3Storage,
                                                                           s3_server: S3Server) -> None:
    client = s3_server.client()
    for key in ("exports/jobs/5/.x", "exports/jobs/6/.y", "elsewhere/jobs/5/.z"):
        client.create_multipart_upload(Bucket=s3_storage.bucket, Key=key)  # a SIGKILLed worker's leftovers
    # moto reports one fixed `Initiated` date for every upload, so "too fresh" is relative to that date.
    initiated = client.list_multipart_uploads(Bucket=s3_storage.bucket)["Uploads"][0]["Initiated"].timestamp()
    assert await s3_storage.discard_partials("jobs/", older_than=time.time() - initiated + 3600) == 0
    assert await s3_storage.discard_partials("jobs/5/") == 1
    assert sorted(uploads(s3_server, s3_storage.bucket)) == ["elsewhere/jobs/5/.z", "exports/jobs/6/.y"]
    assert await s3_storage.discard_partials("jobs/") == 1


async def test_an_export_round_trip_through_web_worker_and_s3(aiohttp_client: Any, s3_settings: Settings,
                                                              s3_server: S3Server, make_user: Any,
                                                              db: asyncpg.Connection, database: Any,
                                                              monkeypatch: Any) -> None:
    """CSV bigger than two parts through the real job, download streamed back with the usual headers."""
    monkeypatch.setattr("shared.storage.s3.PART_SIZE", PART)
    client = await aiohttp_client(create_app(s3_settings))
    user = await make_user()
    await seed_many(db, user.id, 60_000, description="x" * 150)  # ~13 MiB of CSV
    job = await create_job(client, user, format="csv")
    worker = await run_jobs(s3_settings)
    assert worker.jobs_failed == 0
    done = await fetch_job(client, user, job)
    assert done["status"] == "succeeded", done
    key = f"exports/jobs/{job['id']}/"
    [(name, size)] = [(k, v) for k, v in objects(s3_server, s3_settings.s3.bucket).items() if k.startswith(key)]
    assert size == done["size_bytes"] > 2 * PART
    parts = -(-size // PART)  # the CSV's size decides how many parts (its columns grew with project_id)
    assert parts >= 3
    assert s3_server.client().head_object(Bucket=s3_settings.s3.bucket, Key=name)["ETag"].strip('"').endswith(
        f"-{parts}")

    response = await client.get(done["download_url"], headers=user.headers)
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/csv")
    assert response.headers["Content-Disposition"].startswith('attachment; filename="')
    assert int(response.headers["Content-Length"]) == size
    rows = parse_csv(await response.read())
    assert len(rows) == 60_000

    # Expired: 410, then the cleanup cron deletes the object; the download stays 410.
    await db.execute("UPDATE jobs SET expires_at = now() - interval '1 minute' WHERE id = $1", job["id"])
    assert (await client.get(done["download_url"], headers=user.headers)).status == 410
    storage = storage_from_settings(s3_settings)
    try:
        result = await cleanup_exports(job_ctx(s3_settings, database, storage=storage))
    finally:
        await storage.close()
    assert result["files"] == 1 and objects(s3_server, s3_settings.s3.bucket) == {}
    assert (await client.get(done["download_url"], headers=user.headers)).status == 410


async def test_download_codes_with_s3(aiohttp_client: Any, s3_settings: Settings, s3_server: S3Server,
                                      make_user: Any, db: asyncpg.Connection) -> None:
    client = await aiohttp_client(create_app(s3_settings))
    owner, other = await make_user(), await make_user()
    job = await create_job(client, owner, format="csv")
    url = f"/api/v1/exports/{job['id']}/download"
    assert (await client.get(url, headers=owner.headers)).status == 409  # not ready
    await run_jobs(s3_settings)
    assert (await client.get(url, headers=other.headers)).status == 404  # not yours
    assert (await client.get(url)).status == 401
    assert parse_csv(await download(client, owner, await fetch_job(client, owner, job))) == []
    # The object vanished behind our back (bucket lifecycle, operator): 410, not a 500.
    s3_server.client().delete_object(Bucket=s3_settings.s3.bucket, Key=f"exports/jobs/{job['id']}/"
                                     + (await db.fetchval("SELECT storage_key FROM jobs")).rsplit("/", 1)[1])
    assert (await client.get(url, headers=owner.headers)).status == 410


def s3_config(server: S3Server, bucket: str) -> S3Config:
    return S3Config(bucket=bucket, endpoint_url=server.url, access_key_id="test", secret_access_key="test")


async def test_a_missing_bucket_is_a_clear_error_at_start_and_in_ready(aiohttp_client: Any, settings: Settings,
                                                                       s3_server: S3Server) -> None:
    storage = S3Storage(s3_config(s3_server, "no-such-bucket"))
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
        await storage.check()
    await storage.close()

    # /ready: the bucket disappears while the app runs.
    s3_server.create_bucket("short-lived")
    app_settings = settings.with_(export_storage="s3://short-lived", s3=s3_config(s3_server, "short-lived"),
                                  metrics_token="ops-token-0123456789abcdef")
    client = await aiohttp_client(create_app(app_settings))
    assert (await client.get("/ready")).status == 200
    s3_server.client().delete_bucket(Bucket="short-lived")
    assert (await (await client.get("/ready")).json())["checks"]["storage"] == {"status": "down"}  # no detail
    response = await client.get("/ready", headers={"Authorization": "Bearer ops-token-0123456789abcdef"})
    body = await response.json()
    # Reported, but not a reason to leave the load balancer: only downloads need the bucket.
    assert response.status == 200 and body["checks"]["storage"]["status"] == "down"
    assert "'short-lived' does not exist" in body["checks"]["storage"]["detail"]


async def test_refused_credentials_are_a_clear_error_at_start(tmp_path: Path) -> None:
    server = S3Server(tmp_path / "moto-auth.log")
    server.start()
    try:
        server.create_bucket("guarded")
        server.require_auth()  # from now on it checks signatures; no key is known to it
        storage = S3Storage(s3_config(server, "guarded"))
        with pytest.raises(StorageError, match="refused the credentials"):
            await storage.check()
        await storage.close()
    finally:
        server.stop()


@pytest.mark.parametrize("role", ["worker", "web"])
def test_the_processes_exit_at_start_with_the_storage_error(role: str, stack: Any, s3_server: S3Server) -> None:
    env = {**os.environ, "TASKDECK_ENV": "test", "DATABASE_URL": stack.dsn, "REDIS_URL": stack.redis.url,
           "SECRET_KEY": TEST_SECRET, "EXPORT_STORAGE": "s3://no-such-bucket/x", "AWS_ENDPOINT_URL": s3_server.url,
           "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    extra = ["--port", str(free_port())] if role == "web" else []
    proc = subprocess.run([sys.executable, "-m", "launcher.cli", role, *extra], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "export storage error: bucket 'no-such-bucket' does not exist" in proc.stderr



async def test_a_pdf_export_is_rendered_into_the_bucket(aiohttp_client: Any, s3_settings: Settings,
                                                        s3_server: S3Server, make_user: Any,
                                                        db: asyncpg.Connection) -> None:
    client = await aiohttp_client(create_app(s3_settings))
    user = await make_user()
    await seed_many(db, user.id, 50)
    job = await create_job(client, user, format="pdf")
    await run_jobs(s3_settings)
    body = await download(client, user, await fetch_job(client, user, job))
    assert body.startswith(b"%PDF-") and body.rstrip().endswith(b"%%EOF")
    assert list(objects(s3_server, s3_settings.s3.bucket).values()) == [len(body)]
