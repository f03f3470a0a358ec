"""Report numbers: a user's task summary and the admin activity report.

One set of queries feeds both renderings: the PDF the worker builds (``shared.documents.report_pdf``) and the
web page inside the app's layout (``web/api/reports.py``, templates ``templates/reports/<kind>.html``).
All dates are UTC; a period is ``[start, end)``.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

import asyncpg

from shared import rights, tasks

DEFAULT_PERIOD = timedelta(days=30)
MAX_PERIOD = timedelta(days=366)
MOST_OVERDUE = 10

# A user's summary covers the tasks of every project they are a member of (the rights join).
MEMBER_TASKS = "tasks AS t " + rights.member("t.project_id", "$1")
# Tasks created in the period, by their current status and priority.
SUMMARY_BREAKDOWN = f"""
SELECT t.status::text AS status, t.priority::text AS priority, count(*) AS n
FROM {MEMBER_TASKS}
WHERE t.created_at >= $2 AND t.created_at < $3
GROUP BY t.status, t.priority
"""
SUMMARY_WEEKLY = f"""
SELECT x.week, count(*) FILTER (WHERE x.what = 'created') AS created,
       count(*) FILTER (WHERE x.what = 'completed') AS completed
FROM (
    SELECT 'created' AS what, date_trunc('week', t.created_at AT TIME ZONE 'UTC')::date AS week
    FROM {MEMBER_TASKS} WHERE t.created_at >= $2 AND t.created_at < $3
    UNION ALL
    SELECT 'completed' AS what, date_trunc('week', t.completed_at AT TIME ZONE 'UTC')::date AS week
    FROM {MEMBER_TASKS} WHERE t.completed_at >= $2 AND t.completed_at < $3
) AS x
GROUP BY x.week
"""
# Overdue is "now", as on the task list (the same WHERE fragment, served by the owner/due index).
SUMMARY_OVERDUE_COUNT = f"SELECT count(*) FROM {MEMBER_TASKS} WHERE {tasks.WHERE_OVERDUE}"
SUMMARY_MOST_OVERDUE = f"""
SELECT t.id, t.title, t.priority::text AS priority, t.status::text AS status, t.due_at
FROM {MEMBER_TASKS}
WHERE {tasks.WHERE_OVERDUE}
ORDER BY {tasks.DUE_KEY}, t.id
LIMIT $2
"""
# Active user: logged in, or created, changed or completed a task that day.
ACTIVITY = """
    SELECT (s.created_at AT TIME ZONE 'UTC')::date AS day, s.user_id FROM sessions AS s
    WHERE s.created_at >= $1 AND s.created_at < $2
    UNION
    SELECT (t.created_at AT TIME ZONE 'UTC')::date, t.owner_id FROM tasks AS t
    WHERE t.created_at >= $1 AND t.created_at < $2
    UNION
    SELECT (t.updated_at AT TIME ZONE 'UTC')::date, t.owner_id FROM tasks AS t
    WHERE t.updated_at >= $1 AND t.updated_at < $2
    UNION
    SELECT (t.completed_at AT TIME ZONE 'UTC')::date, t.owner_id FROM tasks AS t
    WHERE t.completed_at >= $1 AND t.completed_at < $2
"""
ADMIN_DAILY = f"""
WITH activity AS ({ACTIVITY}),
days AS (SELECT d::date AS day FROM generate_series($3::date, $4::date, interval '1 day') AS d),
signups AS (SELECT (u.created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n FROM users AS u
            WHERE u.created_at >= $1 AND u.created_at < $2 GROUP BY 1),
created AS (SELECT (t.created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n FROM tasks AS t
            WHERE t.created_at >= $1 AND t.created_at < $2 GROUP BY 1),
completed AS (SELECT (t.completed_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n FROM tasks AS t
              WHERE t.completed_at >= $1 AND t.completed_at < $2 GROUP BY 1),
active AS (SELECT a.day, count(DISTINCT a.user_id) AS n FROM activity AS a GROUP BY a.day)
SELECT d.day, COALESCE(s.n, 0) AS signups, COALESCE(a.n, 0) AS active_users,
       COALESCE(c.n, 0) AS tasks_created, COALESCE(k.n, 0) AS tasks_completed
FROM days AS d
LEFT JOIN signups AS s ON s.day = d.day
LEFT JOIN active AS a ON a.day = d.day
LEFT JOIN created AS c ON c.day = d.day
LEFT JOIN completed AS k ON k.day = d.day
ORDER BY d.day
"""
ADMIN_ACTIVE_TOTAL = f"SELECT count(DISTINCT a.user_id) FROM ({ACTIVITY}) AS a"


def default_period(now: datetime | None = None) -> tuple[datetime, datetime]:
    end = now or datetime.now(timezone.utc)
    return end - DEFAULT_PERIOD, end


def period_from_params(params: dict[str, Any]) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(params["from"]), datetime.fromisoformat(params["to"])


def _last_day(end: datetime) -> date:
    return (end - timedelta(microseconds=1)).astimezone(timezone.utc).date()


def _weeks(start: datetime, end: datetime) -> list[date]:
    first = start.astimezone(timezone.utc).date()
    week = first - timedelta(days=first.weekday())  # Monday, as date_trunc('week') does
    weeks = []
    while week <= _last_day(end):
        weeks.append(week)
        week += timedelta(days=7)
    return weeks


async def summary(conn: asyncpg.Connection, *, owner_id: int, start: datetime, end: datetime) -> dict[str, Any]:
    """The numbers of a user's summary report over ``[start, end)``; overdue counts are as of now."""
    by_status = {status: 0 for status in tasks.STATUSES}
    by_priority = {priority: 0 for priority in tasks.PRIORITIES}
    for row in await conn.fetch(SUMMARY_BREAKDOWN, owner_id, start, end):
        by_status[row["status"]] += row["n"]
        by_priority[row["priority"]] += row["n"]
    weekly = {row["week"]: row for row in await conn.fetch(SUMMARY_WEEKLY, owner_id, start, end)}
    now = datetime.now(timezone.utc)
    most_overdue = [{**dict(row), "days_overdue": (now - row["due_at"]).days}
                    for row in await conn.fetch(SUMMARY_MOST_OVERDUE, owner_id, MOST_OVERDUE)]
    return {
        "kind": "summary", "start": start, "end": end, "generated_at": now,
        "created": sum(by_status.values()), "by_status": by_status, "by_priority": by_priority,
        "weekly": [{"week": week, "created": weekly[week]["created"] if week in weekly else 0,
                    "completed": weekly[week]["completed"] if week in weekly else 0} for week in _weeks(start, end)],
        "completed": sum(row["completed"] for row in weekly.values()),
        "overdue": await conn.fetchval(SUMMARY_OVERDUE_COUNT, owner_id),
        "most_overdue": most_overdue,
    }


async def admin_activity(conn: asyncpg.Connection, *, start: datetime, end: datetime) -> dict[str, Any]:
    """Signups, active users and tasks created/completed per UTC day over ``[start, end)``, with totals."""
    first, last = start.astimezone(timezone.utc).date(), _last_day(end)
    days = [dict(row) for row in await conn.fetch(ADMIN_DAILY, start, end, first, last)]
    totals = {name: sum(day[name] for day in days) for name in ("signups", "tasks_created", "tasks_completed")}
    totals["active_users"] = await conn.fetchval(ADMIN_ACTIVE_TOTAL, start, end)
    return {"kind": "admin_activity", "start": start, "end": end, "generated_at": datetime.now(timezone.utc),
            "days": days, "totals": totals}
