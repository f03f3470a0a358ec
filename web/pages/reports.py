"""/reports/summary and /reports/admin-activity: the reports as web pages, computed now, in the app's layout.

The same numbers as the PDF the worker renders (``shared.reports``), the same period rules as the API
(``ReportPeriodSchema``) and the same rights: your own tasks; the activity report for admins only.
"""
from __future__ import annotations

from aiohttp import web

from shared import reports
from web.api.reports import ReportPeriodSchema
from web.auth import authenticate, require_admin
from web.keys import DB
from web.pages.common import render
from web.request import load_query

PERIOD_SCHEMA = ReportPeriodSchema()


async def summary_page(request: web.Request) -> web.Response:
    """The caller's summary report (?from=&to=)."""
    auth = await authenticate(request)
    start, end = ReportPeriodSchema.period(load_query(request, PERIOD_SCHEMA))
    data = await request.app[DB].read_as(auth.user_id, lambda conn: reports.summary(
        conn, owner_id=auth.user_id, start=start, end=end))
    return render(request, "reports/summary.html", {"report": data})


async def admin_activity_page(request: web.Request) -> web.Response:
    """Signups, active users and tasks per day (?from=&to=); admins only."""
    auth = await require_admin(request)
    start, end = ReportPeriodSchema.period(load_query(request, PERIOD_SCHEMA))
    data = await request.app[DB].read_as(auth.user_id, lambda conn: reports.admin_activity(conn, start=start, end=end))
    return render(request, "reports/admin_activity.html", {"report": data})


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/reports/summary", summary_page, name="report-summary-page")
    app.router.add_get("/reports/admin-activity", admin_activity_page, name="report-admin-activity-page")
