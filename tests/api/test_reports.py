"""Reports: PDF with charts for the caller's summary and for admins' activity; the same numbers as HTML."""
from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest
from pypdf import PdfReader
from pypdf.generic import ContentStream

from shared import reports
from tests.helpers import assert_problem

from tests.export_helpers import create_job, download, fetch_job, job_app, job_row, run_jobs, seed_tasks

REPORTS = "/api/v1/reports"
UTC = timezone.utc


@pytest.fixture
async def client(aiohttp_client: Any, settings: Any) -> Any:
    return await aiohttp_client(job_app(settings))


async def seed_history(db: asyncpg.Connection, owner_id: int) -> None:
    now = datetime.now(UTC)
    await seed_tasks(db, owner_id, [
        {"title": "Old and done", "status": "done", "created_at": now - timedelta(days=20),
         "completed_at": now - timedelta(days=10)},
        {"title": "Late report", "priority": "urgent", "due_at": now - timedelta(days=3),
         "created_at": now - timedelta(days=15)},
        {"title": "Later still", "priority": "high", "due_at": now - timedelta(days=9)},
        {"title": "In flight", "status": "in_progress", "created_at": now - timedelta(days=2)},
        {"title": "Ancient", "created_at": now - timedelta(days=90)},
    ])


def pdf_text(data: bytes) -> tuple[PdfReader, str]:
    reader = PdfReader(io.BytesIO(data))
    return reader, "\n".join(page.extract_text() for page in reader.pages)


async def test_summary_report_is_a_pdf_with_charts(client: Any, make_user: Any, db: asyncpg.Connection,
                                                   settings: Any, stack: Any) -> None:
    user = await make_user()
    await seed_history(db, user.id)
    response = await client.post(REPORTS, json={"kind": "summary"}, headers=user.headers)
    assert response.status == 202
    job = await response.json()
    assert response.headers["Location"] == f"{REPORTS}/{job['id']}"
    assert (job["kind"], job["format"], job["status"]) == ("summary", "pdf", "queued")

    await run_jobs(settings)
    done = await fetch_job(client, user, job, REPORTS)
    assert done["download_url"] == f"{REPORTS}/{job['id']}/download" and done["row_count"] is None
    reader, text = pdf_text(await download(client, user, done))

    for expected in ("Task summary", "Created in period", "Overdue now", "Tasks by status", "Tasks by priority",
                     "Created vs completed per week", "Most overdue tasks", "Later still", "Late report"):
        assert expected in text
    assert "Ancient" not in text
    assert text.index("Later still") < text.index("Late report")  # most overdue first
    assert "Page 1 of" in text
    # The charts are vector drawings: pie slices are Bézier curves ("c"), bars filled rectangles ("re").
    operators = [op for _, op in ContentStream(reader.pages[0].get_contents(), reader).operations]
    assert operators.count(b"c") >= 4 and operators.count(b"re") >= 5
    [mail] = stack.smtp.messages()
    assert "summary report" in mail["Subject"]


async def test_summary_numbers(db: asyncpg.Connection, make_user: Any) -> None:
    user = await make_user()
    await seed_history(db, user.id)
    start, end = reports.default_period()

    data = await reports.summary(db, owner_id=user.id, start=start, end=end)

    assert data["created"] == 4 and data["completed"] == 1 and data["overdue"] == 2
    assert data["by_status"] == {"todo": 2, "in_progress": 1, "done": 1}
    assert data["by_priority"] == {"low": 0, "medium": 2, "high": 1, "urgent": 1}
    assert sum(week["created"] for week in data["weekly"]) == 4 and len(data["weekly"]) in (5, 6)
    assert [t["title"] for t in data["most_overdue"]] == ["Later still", "Late report"]
    assert data["most_overdue"][0]["days_overdue"] == 9


async def test_admin_activity_is_an_admin_only_pdf(client: Any, make_user: Any, db: asyncpg.Connection,
                                                   settings: Any) -> None:
    user, admin = await make_user(), await make_user(role="admin")
    await seed_history(db, user.id)
    today = datetime.now(UTC).date()
    body = {"kind": "admin_activity", "from": (today - timedelta(days=13)).isoformat(), "to": today.isoformat()}

    await assert_problem(await client.post(REPORTS, json=body, headers=user.headers), 403)
    assert await db.fetchval("SELECT count(*) FROM jobs") == 0
    job = await create_job(client, admin, REPORTS, **body)
    await run_jobs(settings)

    done = await fetch_job(client, admin, job, REPORTS)
    _, text = pdf_text(await download(client, admin, done))
    for expected in ("Admin activity", "Signups", "Active users", "Signups and active users per day",
                     "Tasks created and completed per day", "Per day", today.isoformat()):
        assert expected in text
    assert (await job_row(db, job["id"]))["owner_id"] == admin.id
    await assert_problem(await client.get(f"{REPORTS}/{job['id']}", headers=user.headers), 404)


async def test_admin_activity_numbers(db: asyncpg.Connection, make_user: Any) -> None:
    user = await make_user()
    await make_user()
    await seed_history(db, user.id)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start, end = today - timedelta(days=29), today + timedelta(days=1)

    data = await reports.admin_activity(db, start=start, end=end)

    assert len(data["days"]) == 30 and data["days"][-1]["day"] == today.date()
    assert data["totals"]["signups"] == 2 and data["days"][-1]["signups"] == 2
    assert data["totals"]["tasks_created"] == 4 and data["totals"]["tasks_completed"] == 1
    assert data["totals"]["active_users"] == 2  # both logged in today (make_user opens a session)
    assert data["days"][-1]["active_users"] == 2


@pytest.mark.parametrize(("body", "field"), [
    ({}, "kind"),
    ({"kind": "weekly"}, "kind"),
    ({"kind": "summary", "from": "last week"}, "from"),
    ({"kind": "summary", "from": "2026-02-30"}, "from"),
    ({"kind": "summary", "from": "2026-11-22", "to": "2026-11-01"}, "from"),
    ({"kind": "summary", "from": "2020-01-01", "to": "2026-01-01"}, "from"),
    ({"kind": "summary", "to": "2026-11-22T10:00:00"}, "to"),
    ({"kind": "summary", "format": "csv"}, "format"),
])
async def test_invalid_report_requests_are_422(client: Any, make_user: Any, body: dict, field: str) -> None:
    user = await make_user()
    await assert_problem(await client.post(REPORTS, json=body, headers=user.headers), 422, field)


async def test_period_defaults_and_dates(client: Any, make_user: Any, db: asyncpg.Connection) -> None:
    user = await make_user()
    default = await create_job(client, user, REPORTS, kind="summary")
    dated = await create_job(client, user, REPORTS, kind="summary", **{"from": "2026-11-01", "to": "2026-11-22"})

    start, end = reports.period_from_params(await _params(db, default["id"]))
    assert end - start == timedelta(days=30) and abs(datetime.now(UTC) - end) < timedelta(minutes=1)
    assert reports.period_from_params(await _params(db, dated["id"])) == (
        datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 23, tzinfo=UTC))  # `to` is inclusive of its day


async def _params(db: asyncpg.Connection, job_id: int) -> dict[str, Any]:
    return json.loads(await db.fetchval("SELECT params FROM jobs WHERE id = $1", job_id))


async def test_html_pages_show_the_same_numbers(client: Any, make_user: Any, db: asyncpg.Connection) -> None:
    user, admin = await make_user(), await make_user(role="admin")
    await seed_history(db, user.id)
    await seed_tasks(db, user.id, [{"title": "<script>alert(1)</script>", "due_at": datetime(2020, 1, 1,
                                                                                             tzinfo=UTC)}])

    response = await client.get("/reports/summary", headers=user.headers)
    assert response.status == 200 and response.content_type == "text/html"
    html = await response.text()
    assert "Task summary" in html and "Later still" in html and "&lt;script&gt;" in html and "<script>" not in html
    await assert_problem(await client.get("/reports/admin-activity", headers=user.headers), 403)
    response = await client.get("/reports/admin-activity", params={"from": "2026-01-01", "to": "2026-01-31"},
                                headers=admin.headers)
    assert response.status == 200 and "2026-01-31" in await response.text()
    await assert_problem(await client.get("/reports/summary", params={"from": "x"}, headers=user.headers), 422)
