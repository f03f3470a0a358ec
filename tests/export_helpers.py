"""Helpers for the export, report and reminder tests: the app with the job routes, workers with the job
functions, task seeding, and waiting for jobs."""
from __future__ import annotations

import asyncio
import csv
import io
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

import asyncpg
from aiohttp import web
from arq import Worker

from shared.config import Settings
from web.app import create_app
from worker.settings import build_worker

from tests.worker_helpers import run_burst

UTC = timezone.utc


def job_app(settings: Settings) -> web.Application:
    """The real app, with the export and report routes as web/routes.py wires them."""
    return create_app(settings)


async def run_jobs(settings: Settings, **overrides: Any) -> Worker:
    """A burst worker with the job functions, until the queue is empty (ready emails included)."""
    return await run_burst(settings, **overrides)


async def run_worker_until(settings: Settings, conn: asyncpg.Connection, condition: str, *args: Any,
                           timeout: float = 30.0, **overrides: Any) -> None:
    """Run a (non-burst) worker until the SQL ``condition`` is true; for queues a burst worker cannot drain."""
    worker = build_worker(settings, cron_jobs=None, poll_delay=0.05, **overrides)
    task = asyncio.create_task(worker.async_run())
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not await conn.fetchval(condition, *args):
            assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for: {condition}"
            assert not task.done(), "the worker stopped"
            await asyncio.sleep(0.05)
    finally:
        # Stop gracefully, as arq does on SIGTERM with job_completion_wait: pick nothing new, let running
        # jobs record their results, and cancel the loop only while it sleeps. Cancelling it mid-poll
        # would abandon a Redis pipeline (a ResourceWarning, an error under this suite).
        worker.allow_pick_jobs = False
        await asyncio.gather(*list(worker.tasks.values()), return_exceptions=True)
        await asyncio.sleep(0.2)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await worker.close()


async def seed_tasks(conn: asyncpg.Connection, owner_id: int, rows: Iterable[dict[str, Any]]) -> list[int]:
    """Insert tasks with the given fields (defaults as the API's); returns their ids in order."""
    ids = []
    for row in rows:
        status = row.get("status", "todo")
        ids.append(await conn.fetchval(
            "INSERT INTO tasks (owner_id, title, description, status, priority, due_at, tags, completed_at, "
            "created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, COALESCE($9, now())) RETURNING id",
            owner_id, row.get("title", "Task"), row.get("description", ""), status, row.get("priority", "medium"),
            row.get("due_at"), row.get("tags", []), row.get("completed_at") or (
                datetime.now(UTC) if status == "done" else None), row.get("created_at")))
    return ids


async def seed_many(conn: asyncpg.Connection, owner_id: int, count: int, *, description: str = "") -> None:
    """``count`` plain tasks in one statement (for size and kill tests)."""
    await conn.execute(
        "INSERT INTO tasks (owner_id, title, description, priority, tags, due_at) "
        "SELECT $1, 'Task number ' || n, $3, (ARRAY['low','medium','high','urgent'])[1 + n % 4]::task_priority, "
        "ARRAY['bulk'], now() + n * interval '1 minute' FROM generate_series(1, $2) AS n",
        owner_id, count, description)


async def create_job(client: Any, user: Any, path: str = "/api/v1/exports", **body: Any) -> dict[str, Any]:
    response = await client.post(path, json=body, headers=user.headers)
    assert response.status == 202, await response.text()
    return await response.json()


async def job_row(conn: asyncpg.Connection, job_id: int) -> asyncpg.Record:
    row = await conn.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
    assert row is not None
    return row


async def download(client: Any, user: Any, job: dict[str, Any]) -> bytes:
    response = await client.get(job["download_url"], headers=user.headers)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Disposition"].startswith("attachment; filename=")
    return await response.read()


async def fetch_job(client: Any, user: Any, job: dict[str, Any], path: str = "/api/v1/exports") -> dict[str, Any]:
    response = await client.get(f"{path}/{job['id']}", headers=user.headers)
    assert response.status == 200, await response.text()
    return await response.json()


def parse_csv(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))


def soon(hours: float) -> datetime:
    return (datetime.now(UTC) + timedelta(hours=hours)).replace(microsecond=0)
