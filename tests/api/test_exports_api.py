"""The export job resource over HTTP: create, validate, list, read, download; ownership, admin, 409/410."""
from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis

from shared import exports
from shared.db.database import Database
from tests.helpers import assert_problem
from worker.jobs.cleanup import ROW_GRACE, cleanup_exports

from tests.export_helpers import create_job, download, fetch_job, job_app, job_row, parse_csv, run_jobs, seed_tasks
from tests.worker_helpers import job_ctx

EXPORTS = "/api/v1/exports"


@pytest.fixture
async def client(aiohttp_client: Any, settings: Any) -> Any:
    return await aiohttp_client(job_app(settings))


async def test_create_answers_202_with_the_job_and_location(client: Any, make_user: Any,
                                                            db: asyncpg.Connection, settings: Any) -> None:
    user = await make_user()
    response = await client.post(EXPORTS, json={"format": "csv"}, headers=user.headers)

    assert response.status == 202
    job = await response.json()
    assert response.headers["Location"] == f"{EXPORTS}/{job['id']}"
    assert set(job) == {"id", "kind", "format", "status", "progress", "row_count", "size_bytes", "error",
                        "created_at", "finished_at", "expires_at", "download_url"}
    assert (job["kind"], job["format"], job["status"], job["progress"]) == ("export", "csv", "queued", 0)
    assert job["download_url"] is None and job["created_at"].endswith("Z")
    redis = Redis.from_url(settings.redis_url)
    try:  # enqueued after the commit, under the job's own arq id
        assert await redis.zscore("arq:queue", f"job:{job['id']}") is not None
    finally:
        await redis.aclose()
    assert (await job_row(db, job["id"]))["owner_id"] == user.id


@pytest.mark.parametrize(("body", "field"), [
    ({}, "format"),
    ({"format": "xlsx"}, "format"),
    ({"format": "csv", "extra": 1}, "extra"),
    ({"format": "csv", "filters": {"colour": "red"}}, "filters"),
    ({"format": "csv", "filters": {"status": ["todo", "nope"]}}, "filters"),
    ({"format": "csv", "filters": {"due_before": "yesterday"}}, "filters"),
    ({"format": "csv", "filters": {"sort": "title"}}, "filters"),
    ({"format": "csv", "filters": "status=todo"}, "filters"),
])
async def test_invalid_requests_are_422(client: Any, make_user: Any, db: asyncpg.Connection, body: dict,
                                        field: str) -> None:
    user = await make_user()
    await assert_problem(await client.post(EXPORTS, json=body, headers=user.headers), 422, field)
    assert await db.fetchval("SELECT count(*) FROM jobs") == 0


async def test_malformed_unauthenticated_and_wrong_type_requests(client: Any, make_user: Any) -> None:
    user = await make_user()
    await assert_problem(await client.post(EXPORTS, json={"format": "csv"}), 401)
    json_headers = {**user.headers, "Content-Type": "application/json"}
    await assert_problem(await client.post(EXPORTS, data=b"{", headers=json_headers), 400)
    await assert_problem(await client.post(EXPORTS, data=b"format=csv", headers={
        **user.headers, "Content-Type": "application/x-www-form-urlencoded"}), 415)
    for path in (f"{EXPORTS}/1", f"{EXPORTS}/1/download", EXPORTS):
        await assert_problem(await client.get(path), 401)


async def test_filters_are_stored_with_the_task_list_names(client: Any, make_user: Any,
                                                           db: asyncpg.Connection) -> None:
    user = await make_user()
    job = await create_job(client, user, format="pdf", filters={
        "status": "todo", "priority": ["high", "urgent"], "tag": "home", "q": "milk", "overdue": False,
        "due_before": "2030-01-01T00:00:00+01:00", "sort": "due_at"})

    params = json.loads((await job_row(db, job["id"]))["params"])  # this raw connection has no jsonb codec
    assert params == {"status": ["todo"], "priority": ["high", "urgent"], "tag": "home", "q": "milk",
                      "overdue": False, "due_before": "2029-12-31T23:00:00+00:00", "sort": "due_at"}


async def test_idempotency_key_replays_the_first_job(client: Any, make_user: Any, db: asyncpg.Connection) -> None:
    user = await make_user()
    headers = {**user.headers, "Idempotency-Key": "export-1"}
    first = await client.post(EXPORTS, json={"format": "csv"}, headers=headers)
    again = await client.post(EXPORTS, json={"format": "csv"}, headers=headers)

    assert (first.status, again.status) == (202, 202)
    assert await first.json() == await again.json()
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await db.fetchval("SELECT count(*) FROM jobs") == 1
    other = await client.post(EXPORTS, json={"format": "pdf"}, headers=headers)
    await assert_problem(other, 422, "Idempotency-Key")
    await assert_problem(await client.post(EXPORTS, json={"format": "csv"},
                                           headers={**user.headers, "Idempotency-Key": "bad key"}), 422)
    assert await db.fetchval("SELECT count(*) FROM jobs") == 1


async def test_someone_elses_job_is_404_and_an_admin_sees_it(client: Any, make_user: Any, settings: Any) -> None:
    owner, other, admin = await make_user(), await make_user(), await make_user(role="admin")
    job = await create_job(client, owner, format="csv")
    await run_jobs(settings)

    for path in (f"{EXPORTS}/{job['id']}", f"{EXPORTS}/{job['id']}/download"):
        body = await assert_problem(await client.get(path, headers=other.headers), 404)
        missing = await assert_problem(await client.get(f"{EXPORTS}/999999" + path[len(f"{EXPORTS}/{job['id']}"):],
                                                        headers=other.headers), 404)
        assert body["detail"] == missing["detail"]  # indistinguishable from a job that does not exist
    seen = await fetch_job(client, admin, job)
    assert seen["status"] == "succeeded"
    assert parse_csv(await download(client, admin, seen)) == []
    await assert_problem(await client.get(f"{EXPORTS}/99999999999999999999", headers=owner.headers), 404)


async def test_list_is_the_callers_jobs_newest_first_with_a_cursor(client: Any, make_user: Any) -> None:
    user, other = await make_user(), await make_user()
    created = [await create_job(client, user, format="csv") for _ in range(5)]
    report = await create_job(client, user, "/api/v1/reports", kind="summary")
    await create_job(client, other, format="csv")

    response = await client.get(EXPORTS, params={"limit": 4}, headers=user.headers)
    page = await response.json()
    rest = await (await client.get(EXPORTS, params={"limit": 4, "cursor": page["next_cursor"]},
                                   headers=user.headers)).json()

    ids = [job["id"] for job in page["items"] + rest["items"]]
    assert ids == [report["id"]] + [job["id"] for job in reversed(created)]
    assert rest["next_cursor"] is None
    await assert_problem(await client.get(EXPORTS, params={"cursor": "forged.x"}, headers=user.headers), 422,
                         "cursor")
    await assert_problem(await client.get(EXPORTS, params={"limit": 0}, headers=user.headers), 422, "limit")
    assert (await (await client.get(EXPORTS, headers=other.headers)).json())["items"][0]["id"] > report["id"]


async def test_download_is_409_until_ready_then_the_file(client: Any, make_user: Any, db: asyncpg.Connection,
                                                         settings: Any) -> None:
    user = await make_user()
    await seed_tasks(db, user.id, [{"title": "Buy milk"}])
    job = await create_job(client, user, format="csv")

    response = await client.get(f"{EXPORTS}/{job['id']}/download", headers=user.headers)
    body = await assert_problem(response, 409)
    assert "not ready" in body["detail"]
    await db.execute("UPDATE jobs SET status = 'running', progress = 0.5 WHERE id = $1", job["id"])
    assert "50%" in (await assert_problem(await client.get(f"{EXPORTS}/{job['id']}/download",
                                                           headers=user.headers), 409))["detail"]
    await db.execute("UPDATE jobs SET status = 'queued', progress = 0 WHERE id = $1", job["id"])

    await run_jobs(settings)
    done = await fetch_job(client, user, job)
    assert done["download_url"] == f"{EXPORTS}/{job['id']}/download"
    assert (done["status"], done["progress"], done["row_count"]) == ("succeeded", 1, 1)
    response = await client.get(done["download_url"], headers=user.headers)
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    name = f"taskdeck-tasks-{done['created_at'][:10]}-{job['id']}.csv"
    assert response.headers["Content-Disposition"] == f'attachment; filename="{name}"'
    data = await response.read()
    assert len(data) == done["size_bytes"] and parse_csv(data)[0]["title"] == "Buy milk"


async def test_expired_is_410_then_cleanup_removes_file_and_row(client: Any, make_user: Any,
                                                                db: asyncpg.Connection, settings: Any,
                                                                database: Database) -> None:
    user = await make_user()
    job = await create_job(client, user, format="csv")
    await run_jobs(settings)
    path = (await job_row(db, job["id"]))["storage_key"]
    stored = settings.export_storage + "/" + path
    await db.execute("UPDATE jobs SET expires_at = now() - interval '1 second' WHERE id = $1", job["id"])

    await assert_problem(await client.get(f"{EXPORTS}/{job['id']}/download", headers=user.headers), 410)
    assert (await fetch_job(client, user, job))["download_url"] is None

    assert await cleanup_exports(job_ctx(settings, database)) == {"files": 1, "rows": 0, "partials": 0}
    assert not os.path.exists(stored)
    await assert_problem(await client.get(f"{EXPORTS}/{job['id']}/download", headers=user.headers), 410)
    await db.execute("UPDATE jobs SET expires_at = now() - $2::interval WHERE id = $1", job["id"],
                     ROW_GRACE + timedelta(minutes=1))
    assert (await cleanup_exports(job_ctx(settings, database)))["rows"] == 1
    await assert_problem(await client.get(f"{EXPORTS}/{job['id']}", headers=user.headers), 404)


async def test_job_counts_by_status_for_admin_stats(client: Any, make_user: Any, db: asyncpg.Connection) -> None:
    user = await make_user()
    for _ in range(3):
        await create_job(client, user, format="csv")
    await db.execute("UPDATE jobs SET status = 'failed' WHERE id = (SELECT min(id) FROM jobs)")

    assert await exports.job_counts_by_status(db) == {"queued": 2, "running": 0, "succeeded": 0, "failed": 1}


async def test_each_path_serves_only_its_own_kind_of_job(client: Any, make_user: Any, settings: Any) -> None:
    user, admin = await make_user(), await make_user(role="admin")
    export = await create_job(client, user, format="csv")
    report = await create_job(client, user, "/api/v1/reports", kind="summary")
    await run_jobs(settings)
    for caller in (user, admin):
        assert (await client.get(f"{EXPORTS}/{export['id']}", headers=caller.headers)).status == 200
        assert (await client.get(f"/api/v1/reports/{report['id']}", headers=caller.headers)).status == 200
        assert (await client.get(f"/api/v1/reports/{report['id']}/download", headers=caller.headers)).status == 200
        for wrong in (f"/api/v1/reports/{export['id']}", f"/api/v1/reports/{export['id']}/download",
                      f"{EXPORTS}/{report['id']}", f"{EXPORTS}/{report['id']}/download"):
            body = await assert_problem(await client.get(wrong, headers=caller.headers), 404)
            assert body["detail"] == "No such job"
