"""CSV exports end to end: real worker, PostgreSQL, storage directory and SMTP sink."""
from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from arq import Retry
from arq.connections import ArqRedis

from shared.db.database import Database
from shared.task_export import CSV_COLUMNS, CSV_TEXT_CELL
from worker.jobs import exports as export_jobs
from worker.jobs.cleanup import sweep_jobs

from tests.export_helpers import create_job, download, fetch_job, job_app, job_row, parse_csv, run_jobs, seed_many, seed_tasks
from tests.worker_helpers import job_ctx

UTC = timezone.utc
PAST, FUTURE = datetime(2020, 1, 1, 12, tzinfo=UTC), datetime(2099, 1, 1, 12, tzinfo=UTC)


@pytest.fixture
async def client(aiohttp_client: Any, settings: Any) -> Any:
    return await aiohttp_client(job_app(settings))


async def export_csv(client: Any, user: Any, settings: Any, **filters: Any) -> list[dict[str, str]]:
    job = await create_job(client, user, format="csv", filters=filters)
    await run_jobs(settings)
    done = await fetch_job(client, user, job)
    assert done["status"] == "succeeded", done
    rows = parse_csv(await download(client, user, done))
    assert done["row_count"] == len(rows)
    return rows


async def test_every_task_one_row_with_a_header(client: Any, make_user: Any, db: asyncpg.Connection,
                                                settings: Any) -> None:
    user, other = await make_user(), await make_user()
    [first, second] = await seed_tasks(db, user.id, [
        {"title": "Write report", "description": "line one\nline two, with \"quotes\"", "priority": "high",
         "due_at": datetime(2026, 11, 22, 18, 30, tzinfo=UTC), "tags": ["work", "q4"]},
        {"title": "Ünïcödé ✓ 日本", "status": "done"},
    ])
    await seed_tasks(db, other.id, [{"title": "Not mine"}])

    job = await create_job(client, user, format="csv")
    await run_jobs(settings)
    data = await download(client, user, await fetch_job(client, user, job))

    assert data.decode("utf-8").startswith(",".join(CSV_COLUMNS) + "\r\n")
    rows = parse_csv(data)
    assert [row["id"] for row in rows] == [str(second), str(first)]  # default sort: newest first
    assert rows[1] | {"created_at": "", "updated_at": ""} == {
        "id": str(first), "title": "Write report", "description": "line one\nline two, with \"quotes\"",
        "status": "todo", "priority": "high", "due_at": "2026-11-22T18:30:00Z", "tags": "work, q4",
        "created_at": "", "updated_at": "", "completed_at": "",
        "project_id": str(await db.fetchval("SELECT id FROM projects WHERE owner_id = $1 AND is_inbox", user.id)),
        "assignee_id": "", "parent_id": ""}
    assert rows[0]["title"] == "Ünïcödé ✓ 日本" and rows[0]["completed_at"].endswith("Z")


async def test_filters_have_the_task_list_semantics(client: Any, make_user: Any, db: asyncpg.Connection,
                                                    settings: Any) -> None:
    user = await make_user()
    await seed_tasks(db, user.id, [
        {"title": "Buy milk", "tags": ["home"], "priority": "low", "due_at": PAST},
        {"title": "Buy bread", "description": "and MILK", "tags": ["home"], "status": "done", "due_at": PAST},
        {"title": "Ship release", "tags": ["work"], "priority": "urgent", "due_at": FUTURE},
        {"title": "100% done_ish", "priority": "high"},
    ])

    async def titles(**filters: Any) -> list[str]:
        return sorted(row["title"] for row in await export_csv(client, user, settings, **filters))

    assert await titles(q="milk") == ["Buy bread", "Buy milk"]
    assert await titles(q="milk", status=["todo"]) == ["Buy milk"]
    assert await titles(tag="home", overdue=True) == ["Buy milk"]
    assert await titles(overdue=False) == ["100% done_ish", "Buy bread", "Ship release"]
    assert await titles(priority=["urgent", "high"]) == ["100% done_ish", "Ship release"]
    assert await titles(due_after="2030-01-01T00:00:00Z") == ["Ship release"]
    assert await titles(due_before="2030-01-01T00:00:00Z") == ["Buy bread", "Buy milk"]
    assert await titles(q="100%") == ["100% done_ish"]  # LIKE wildcards are literal, as on the list
    ordered = await export_csv(client, user, settings, sort="priority")
    assert [row["priority"] for row in ordered] == ["low", "medium", "high", "urgent"]


async def csv_cell(db: asyncpg.Connection, value: str) -> str:
    """What the export's SQL makes of one free-text value, read back as a CSV reader would."""
    line = await db.fetchval("SELECT " + CSV_TEXT_CELL.format("$1::text"), value)
    [[cell]] = list(csv.reader(io.StringIO(line, newline="")))
    return cell


@pytest.mark.parametrize("value", ["=1+2", "+SUM(A1)", "-3", "@cmd", "\tx", "\rx", "=HYPERLINK(\"http://x\")"])
async def test_formula_triggers_get_a_leading_apostrophe(db: asyncpg.Connection, value: str) -> None:
    assert await csv_cell(db, value) == "'" + value


@pytest.mark.parametrize("value", ["plain", "", "a=b", " =spaced", "'quoted", "with, comma", 'say "hi"',
                                   "two\nlines", "日本語 ✓"])
async def test_other_text_is_kept_exactly(db: asyncpg.Connection, value: str) -> None:
    assert await csv_cell(db, value) == value


async def test_formula_cells_are_neutralised_in_the_file(client: Any, make_user: Any, db: asyncpg.Connection,
                                                         settings: Any) -> None:
    user = await make_user()
    await seed_tasks(db, user.id, [{"title": "=cmd|' /C calc'!A0", "description": "@SUM(1+1)",
                                    "tags": ["-2", "ok"]}, {"title": "+1", "description": "\tindent"}])

    rows = await export_csv(client, user, settings, sort="created_at")

    assert [(row["title"], row["description"], row["tags"]) for row in rows] == [
        ("'=cmd|' /C calc'!A0", "'@SUM(1+1)", "'-2, ok"), ("'+1", "'\tindent", "")]


async def test_ready_email_is_sent_once_with_the_link(client: Any, make_user: Any, settings: Any, stack: Any,
                                                      db: asyncpg.Connection, database: Database,
                                                      arq_redis: ArqRedis) -> None:
    user = await make_user(name="Ada")
    job = await create_job(client, user, format="csv")
    await run_jobs(settings)
    # A duplicate run of the finished job (a stray re-enqueue) changes nothing and mails nobody.
    assert await export_jobs.run_export(job_ctx(settings, database, redis=arq_redis), job["id"]) == "skipped"
    await run_jobs(settings)

    [message] = stack.smtp.messages()
    assert message["To"] == user.email and message["Subject"] == "Your Taskdeck CSV export of your tasks is ready"
    text = message.get_body(("plain",)).get_content()
    assert f"http://taskdeck.test/api/v1/exports/{job['id']}/download" in text and "Hi Ada," in text
    assert await db.fetchval("SELECT count(*) FROM email_outbox WHERE dedup_key = $1", f"job-ready:{job['id']}") == 1


async def test_large_export_streams_with_progress_and_leaves_one_file(client: Any, make_user: Any, settings: Any,
                                                                      db: asyncpg.Connection, database: Database,
                                                                      arq_redis: ArqRedis) -> None:
    user = await make_user()
    await seed_many(db, user.id, 12_000)
    job = await create_job(client, user, format="csv")
    seen: list[float] = []
    original = export_jobs.JobRun.report

    async def recording(run: Any, progress: float) -> None:  # the real report, also remembered
        seen.append(progress)
        await original(run, progress)

    export_jobs.JobRun.report = recording  # type: ignore[method-assign]
    try:
        assert await export_jobs.run_export(job_ctx(settings, database, redis=arq_redis), job["id"]) == "succeeded"
    finally:
        export_jobs.JobRun.report = original  # type: ignore[method-assign]

    row = await job_row(db, job["id"])
    assert (row["status"], row["row_count"], row["progress"]) == ("succeeded", 12_000, 1)
    assert seen == [5000 / 12000, 10000 / 12000]  # every PROGRESS_EVERY rows, not per row
    files = [p for p in Path(settings.export_storage).rglob("*") if p.is_file()]
    assert [p.name for p in files] == [Path(row["storage_key"]).name] and files[0].stat().st_size == row["size_bytes"]


async def test_storage_failure_retries_with_backoff_then_succeeds(client: Any, make_user: Any, settings: Any,
                                                                  db: asyncpg.Connection, database: Database,
                                                                  tmp_path: Path) -> None:
    user = await make_user()
    job = await create_job(client, user, format="csv")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the storage directory should be")
    broken = job_ctx(settings.with_(export_storage=str(blocker / "exports")), database)

    with pytest.raises(Retry) as retry:
        await export_jobs.run_export(broken, job["id"])

    assert retry.value.defer_score == 5000
    row = await job_row(db, job["id"])
    assert (row["status"], row["attempts"], row["error"]) == ("queued", 1, None)
    await run_jobs(settings)  # the queued entry runs once the storage is back: one file, no failure
    assert (await job_row(db, job["id"]))["status"] == "succeeded"


async def test_a_lost_enqueue_is_found_by_the_sweeper(client: Any, make_user: Any, settings: Any, stack: Any,
                                                      db: asyncpg.Connection, database: Database,
                                                      arq_redis: ArqRedis) -> None:
    user = await make_user()
    job = await create_job(client, user, format="csv")
    await arq_redis.flushdb()  # as if the web process died right after the commit, or Redis lost the queue
    ctx = job_ctx(settings, database, redis=arq_redis)

    assert await sweep_jobs(ctx) == 0  # a fresh row is given GRACE for its own enqueue
    await db.execute("UPDATE jobs SET created_at = now() - interval '5 minutes' WHERE id = $1", job["id"])
    assert await sweep_jobs(ctx) == 1
    assert await sweep_jobs(ctx) == 0  # already back in the queue
    await run_jobs(settings)

    row = await job_row(db, job["id"])
    assert (row["status"], row["enqueues"], row["attempts"]) == ("succeeded", 1, 1)
    assert len(stack.smtp.messages()) == 1
