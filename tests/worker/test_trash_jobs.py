"""The trash's cron jobs as the worker runs them: a purge takes the files of the purged tasks along, and
each file is deleted once however often the job runs; both are registered, unique, cron jobs."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from shared.db.database import Database
from tests.project_helpers import TASKS, new_task
from tests.worker_helpers import job_ctx
from worker.jobs import trash as trash_jobs
from worker.settings import WorkerSettings


def _files(settings: Any) -> list[Path]:
    root = Path(settings.export_storage)
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


async def test_purge_then_collect_removes_each_file_once(client: Any, make_user: Any, settings: Any,
                                                         database: Database, db: asyncpg.Connection) -> None:
    ada = await make_user()
    root = await new_task(client, ada, title="old")
    child = await new_task(client, ada, title="old child", parent_id=root["id"])
    kept = await new_task(client, ada, title="kept")
    for task in (child, kept):
        form = aiohttp.FormData(quote_fields=False)
        form.add_field("file", b"bytes of " + task["title"].encode(), filename="f.txt")
        assert (await client.post(f"{TASKS}/{task['id']}/attachments", data=form, headers=ada.headers)).status == 201
    assert (await client.delete(f"{TASKS}/{root['id']}", headers=ada.headers)).status == 204
    ctx = job_ctx(settings, database)
    assert await trash_jobs.purge_trash(ctx) == 0  # not 30 days yet
    assert await trash_jobs.collect_attachment_files(ctx) == 0 and len(_files(settings)) == 2
    await db.execute("UPDATE all_tasks SET trashed_at = now() - interval '30 days 1 minute' WHERE id = $1",
                     root["id"])
    assert await trash_jobs.purge_trash(ctx) == 1
    assert await db.fetchval("SELECT count(*) FROM attachments") == 1
    assert await trash_jobs.collect_attachment_files(ctx) == 1
    assert await trash_jobs.collect_attachment_files(ctx) == 0
    assert [p.read_bytes() for p in _files(settings)] == [b"bytes of kept"]


def test_the_jobs_are_unique_cron_jobs() -> None:
    names = {job.name: job for job in WorkerSettings.cron_jobs}
    for name in (trash_jobs.PURGE_JOB_NAME, trash_jobs.COLLECT_JOB_NAME):
        assert names[name].unique
