"""Recurring tasks: the RRULE subset (422 for anything else), completion moving due_at in bounded time
however old the due date, the series' end, and the due-soon reminder following the moved date."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
from arq.connections import ArqRedis

from shared import recurrence
from shared.db.database import Database
from tests.helpers import assert_problem
from tests.project_helpers import TASKS, new_task
from tests.worker_helpers import job_ctx
from worker.jobs.reminders import remind_due_soon


def _z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


async def _complete(client: Any, user: Any, task: dict) -> dict:
    response = await client.patch(f"{TASKS}/{task['id']}", json={"status": "done"}, headers=user.headers)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_rules_outside_the_subset_are_422(client: Any, make_user: Any) -> None:
    ada = await make_user()
    due = "2026-01-05T09:00:00Z"
    for rule in ("FREQ=SECONDLY", "FREQ=MINUTELY;INTERVAL=1", "FREQ=DAILY;BYSETPOS=1", "FREQ=DAILY;COUNT=100000",
                 "FREQ=DAILY;COUNT=0", "FREQ=DAILY;BYHOUR=9", "FREQ=WEEKLY;BYDAY=XX", "FREQ=DAILY;FREQ=DAILY",
                 "FREQ=DAILY;COUNT=3;UNTIL=20270101T000000Z", "FREQ=DAILY;UNTIL=2027", "INTERVAL=2", "garbage",
                 "FREQ=DAILY;INTERVAL=0", "FREQ=MONTHLY;BYMONTHDAY=40", "x" * 501, ""):
        await assert_problem(await client.post(TASKS, json={"title": "r", "due_at": due, "recurrence": rule},
                                               headers=ada.headers), 422, "recurrence")
    await assert_problem(await client.post(TASKS, json={"title": "r", "recurrence": "FREQ=DAILY"},
                                           headers=ada.headers), 422, "due_at")
    task = await new_task(client, ada, due_at=due, recurrence="rrule:freq=weekly;byday=mo,th")
    assert task["recurrence"] == "FREQ=WEEKLY;BYDAY=MO,TH"
    # leaving a recurring task without a due date
    await assert_problem(await client.patch(f"{TASKS}/{task['id']}", json={"due_at": None}, headers=ada.headers),
                         422, "due_at")
    plain = await new_task(client, ada)
    await assert_problem(await client.patch(f"{TASKS}/{plain['id']}", json={"recurrence": "FREQ=DAILY"},
                                            headers=ada.headers), 422, "due_at")
    cleared = await client.patch(f"{TASKS}/{task['id']}", json={"recurrence": None, "due_at": None},
                                 headers=ada.headers)
    assert (await cleared.json())["recurrence"] is None


async def test_completing_a_daily_task_due_20_years_ago_moves_it_to_tomorrow(client: Any, make_user: Any) -> None:
    ada = await make_user()
    now = datetime.now(timezone.utc)
    due = (now - timedelta(days=365 * 20)).replace(hour=9, minute=30, second=0, microsecond=0)
    task = await new_task(client, ada, due_at=_z(due), recurrence="FREQ=DAILY")
    done = await _complete(client, ada, task)
    moved = datetime.fromisoformat(done["due_at"])
    assert now < moved <= now + timedelta(days=1) and (moved.hour, moved.minute) == (9, 30)
    assert done["status"] == "todo" and done["completed_at"] is None
    # bounded whatever the rule: a weekly rule from year 1 answers as fast
    started = time.perf_counter()
    recurrence.next_due("FREQ=WEEKLY;BYDAY=MO,FR", datetime(1, 1, 1, 8, tzinfo=timezone.utc))
    assert time.perf_counter() - started < 0.5


async def test_a_series_ends_with_its_count(client: Any, make_user: Any) -> None:
    ada = await make_user()
    due = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=1)
    task = await new_task(client, ada, due_at=_z(due), recurrence="FREQ=WEEKLY;COUNT=2")
    second = await _complete(client, ada, task)
    assert second["due_at"] == _z(due + timedelta(weeks=1)) and second["recurrence"] == "FREQ=WEEKLY;COUNT=1"
    last = await _complete(client, ada, second)
    assert last["status"] == "done" and last["due_at"] == second["due_at"] and last["completed_at"]


async def test_the_reminder_follows_the_moved_date(client: Any, make_user: Any, db: asyncpg.Connection,
                                                   settings: Any, database: Database, arq_redis: ArqRedis) -> None:
    ada = await make_user()
    due = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=22)
    task = await new_task(client, ada, title="standup", due_at=_z(due), recurrence="FREQ=DAILY")
    ctx = job_ctx(settings, database, redis=arq_redis)
    assert await remind_due_soon(ctx) == 0  # overdue: no due-soon mail
    await _complete(client, ada, task)  # now due in about 2 hours
    assert await remind_due_soon(ctx) == 1
    assert await remind_due_soon(ctx) == 0
    keys = await db.fetch("SELECT dedup_key FROM email_outbox WHERE template = 'task_due_soon'")
    assert len(keys) == 1 and str(int((due + timedelta(days=1)).timestamp())) in keys[0]["dedup_key"]


def test_extreme_rules_end_or_answer_without_overflowing() -> None:
    start = datetime(2026, 1, 1, 9, tzinfo=timezone.utc)
    assert recurrence.next_due("FREQ=YEARLY;INTERVAL=1000", start, now=start)[0].year == 3026
    assert recurrence.next_due("FREQ=DAILY", datetime(9998, 12, 31, tzinfo=timezone.utc)) is None
    assert recurrence.next_due("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", start) is None  # never: cut off, not looped
    moved = recurrence.next_due("FREQ=MONTHLY", datetime(2006, 1, 31, 9, tzinfo=timezone.utc),
                                now=datetime(2026, 4, 1, tzinfo=timezone.utc))
    assert moved[0] == datetime(2026, 5, 31, 9, tzinfo=timezone.utc)  # the 31st kept across the jump
    assert recurrence.next_due("FREQ=DAILY;UNTIL=20260102T000000Z", start, now=start) is None
