"""Due-soon reminders: who gets one, and exactly one per task and due time even with two workers."""
from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from arq import cron
from arq.connections import ArqRedis

from shared.db.database import Database
from worker.jobs.reminders import REMIND_JOB_NAME, remind_due_soon
from worker.settings import build_worker

from tests.export_helpers import run_jobs, seed_tasks, soon
from tests.worker_helpers import job_ctx


async def reminded(db: asyncpg.Connection) -> list[str]:
    return sorted(row["context"] for row in await db.fetch(
        "SELECT context->>'title' AS context FROM email_outbox WHERE template = 'task_due_soon'"))


async def test_only_open_tasks_due_within_a_day_of_active_verified_owners(
        db: asyncpg.Connection, make_user: Any, settings: Any, database: Database, arq_redis: ArqRedis) -> None:
    user = await make_user()
    inactive, unverified = await make_user(active=False), await make_user(verified=False)
    await seed_tasks(db, user.id, [
        {"title": "in two hours", "due_at": soon(2)},
        {"title": "in progress, tomorrow", "status": "in_progress", "due_at": soon(23.5)},
        {"title": "the day after", "due_at": soon(30)},
        {"title": "already late", "due_at": soon(-1)},
        {"title": "done already", "status": "done", "due_at": soon(2)},
        {"title": "no due date"},
    ])
    await seed_tasks(db, inactive.id, [{"title": "inactive owner", "due_at": soon(2)}])
    await seed_tasks(db, unverified.id, [{"title": "unverified owner", "due_at": soon(2)}])

    assert await remind_due_soon(job_ctx(settings, database, redis=arq_redis)) == 2

    assert await reminded(db) == ["in progress, tomorrow", "in two hours"]


async def test_the_mail_names_the_task_and_links_to_it(db: asyncpg.Connection, make_user: Any, settings: Any,
                                                       stack: Any, database: Database, arq_redis: ArqRedis) -> None:
    user = await make_user(name="Ada")
    due = soon(3)
    [task_id] = await seed_tasks(db, user.id, [{"title": "Renew <passport>", "due_at": due}])

    await remind_due_soon(job_ctx(settings, database, redis=arq_redis))
    await run_jobs(settings)

    [message] = stack.smtp.messages()
    assert message["To"] == user.email and message["Subject"] == "Due soon: Renew <passport>"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Hi Ada," in text and f"due {due:%Y-%m-%d %H:%M} UTC" in text
    assert f"http://taskdeck.test/tasks/{task_id}" in text
    assert "Renew &lt;passport&gt;" in html


async def test_one_mail_per_task_and_due_time(db: asyncpg.Connection, make_user: Any, settings: Any,
                                              stack: Any, database: Database, arq_redis: ArqRedis) -> None:
    user = await make_user()
    [task_id] = await seed_tasks(db, user.id, [{"title": "moving target", "due_at": soon(5)}])
    ctx = job_ctx(settings, database, redis=arq_redis)

    assert await remind_due_soon(ctx) == 1
    assert await remind_due_soon(ctx) == 0  # the next tick: nothing new
    await db.execute("UPDATE tasks SET due_at = due_at + interval '2 hours' WHERE id = $1", task_id)
    assert await remind_due_soon(ctx) == 1  # a new due time is a new reminder
    assert await remind_due_soon(ctx) == 0
    await run_jobs(settings)

    assert len(stack.smtp.messages()) == 2
    keys = await db.fetch("SELECT dedup_key FROM email_outbox ORDER BY id")
    assert all(row["dedup_key"].startswith(f"task-due:{task_id}:") for row in keys) and len(set(keys)) == 2


async def test_concurrent_runs_queue_each_reminder_once(db: asyncpg.Connection, make_user: Any, settings: Any,
                                                        arq_redis: ArqRedis) -> None:
    users = [await make_user() for _ in range(3)]
    for user in users:
        await seed_tasks(db, user.id, [{"title": f"task {n}", "due_at": soon(1 + n / 4)} for n in range(40)])
    # Separate pools, as two worker processes would have.
    pools = [await Database.connect(settings) for _ in range(4)]
    try:
        counts = await asyncio.gather(*(remind_due_soon(job_ctx(settings, pool, redis=arq_redis)) for pool in pools))
    finally:
        for pool in pools:
            await pool.close()

    assert sum(counts) == 120
    assert await db.fetchval("SELECT count(*) FROM email_outbox") == 120


async def test_two_workers_running_the_cron_send_each_reminder_once(db: asyncpg.Connection, make_user: Any,
                                                                    settings: Any, stack: Any) -> None:
    user = await make_user()
    titles = [f"task {n}" for n in range(25)]
    await seed_tasks(db, user.id, [{"title": title, "due_at": soon(2)} for title in titles])

    def worker() -> Any:
        # unique=False and run at start-up: both workers really run the reminder job at the same time,
        # so only the outbox's dedup key stands between them and a duplicate mail.
        job = cron(remind_due_soon, name=REMIND_JOB_NAME, run_at_startup=True, unique=False)
        return build_worker(settings, cron_jobs=[job], burst=True, poll_delay=0.05)

    workers = [worker(), worker()]
    try:
        await asyncio.gather(*(w.async_run() for w in workers))
    finally:
        for w in workers:
            await w.close()

    assert sum(w.jobs_complete for w in workers) >= 2 + len(titles)  # both cron runs, then the mails
    assert sorted(message["Subject"] for message in stack.smtp.messages()) == sorted(
        f"Due soon: {title}" for title in titles)
    assert await reminded(db) == sorted(titles)
