"""/exports: request CSV/PDF exports and PDF reports, follow their progress, download them.

Jobs are created with the API's schemas and ``shared.exports``; downloads and the progress that app.js
polls are the API's own routes, which accept the browser session (read-only requests need no CSRF token).
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from shared import exports, tasks
from shared.errors import ValidationFailed
from shared.task_export import filters_to_params
from web import ratelimit
from web.auth import AuthContext
from web.keys import ARQ, DB, SETTINGS
from web.api.exports import ExportCreateSchema
from web.pages.common import field_errors, form_data, load_form, page_user, present, redirect, render, zone_name
from web.pages.tasks import SORT_LABELS, filter_input
from web.api.reports import ReportCreateSchema, report_params

EXPORT_SCHEMA, REPORT_SCHEMA = ExportCreateSchema(), ReportCreateSchema()
PAGE_SIZE = 20
REPORT_PAGES = {"summary": "/reports/summary", "admin_activity": "/reports/admin-activity"}


def job_view(job: Any) -> dict[str, Any]:
    """The API's job, plus the links a page shows: its status URL (for app.js) and the report's web page."""
    out = exports.job_out(job)
    out["status_url"] = exports.resource_path(job)
    params = job["params"] or {}
    if job["kind"] in REPORT_PAGES and "from" in params:
        period = {"from": params["from"][:10], "to": params["to"][:10]}
        out["page_url"] = REPORT_PAGES[job["kind"]] + "?" + urlencode(period)
        out["period"] = period
    return out


async def _context(request: web.Request, auth: AuthContext) -> dict[str, Any]:
    cursor = request.query.get("cursor") or None
    async with request.app[DB].write.acquire() as conn:  # primary: a job created a moment ago must show
        jobs, next_cursor = await exports.list_jobs(conn, owner_id=auth.user_id, limit=PAGE_SIZE, cursor=cursor,
                                                    secret=request.app[SETTINGS].secret_key)
    next_url = "/exports?cursor=" + next_cursor if next_cursor else None
    return {"jobs": [job_view(job) for job in jobs], "next_url": next_url,
            "sorts": SORT_LABELS, "statuses": tasks.STATUSES, "priorities": tasks.PRIORITIES,
            "pending": any(job["status"] in ("queued", "running") for job in jobs),
            "export_values": {}, "report_values": {}, "is_admin": auth.is_admin}


async def show_exports(request: web.Request) -> web.Response:
    auth = await page_user(request)
    return render(request, "exports.html", await _context(request, auth))


async def _start(request: web.Request, auth: AuthContext, kind: str, format: str, params: dict[str, Any]) -> int:
    """The API's limits apply to the pages too: the per-user jobs tier and the cap on active jobs."""
    await ratelimit.hit(request, "jobs", str(auth.user_id))
    async with request.app[DB].write.acquire() as conn:
        job = await exports.create_job(conn, owner_id=auth.user_id, kind=kind, format=format, params=params,
                                       max_active=request.app[SETTINGS].max_active_jobs)
    await exports.enqueue(request.app[ARQ], job)
    return int(job["id"])


async def create_export(request: web.Request) -> web.Response:
    auth = await page_user(request)
    form = await form_data(request)
    errors: dict[str, list[str]] = {}
    try:
        filters = filter_input(form, zone_name(request, form.get("tz")), errors)
        data = load_form(EXPORT_SCHEMA, {**present(form, "format"), "filters": filters}, errors)
    except ValidationFailed as exc:
        context = await _context(request, auth)
        errors = field_errors(exc)
        return render(request, "exports.html", {**context, "export_values": form, "export_errors": errors}, 422)
    job_id = await _start(request, auth, exports.EXPORT, data["format"], filters_to_params(data["filters"]))
    return redirect(request, f"/exports#job-{job_id}",
                    f"Your {data['format'].upper()} export is queued; this page shows when it is ready.")


async def create_report(request: web.Request) -> web.Response:
    auth = await page_user(request)
    form = await form_data(request)
    try:
        data = load_form(REPORT_SCHEMA, present(form, "kind", "from", "to"))
        params = report_params(auth, data)
    except ValidationFailed as exc:
        context = await _context(request, auth)
        return render(request, "exports.html", {**context, "report_values": form, "report_errors": field_errors(exc)},
                      422)
    job_id = await _start(request, auth, data["kind"], "pdf", params)
    return redirect(request, f"/exports#job-{job_id}", "Your report is queued; this page shows when it is ready.")


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/exports", show_exports, name="page-exports")
    app.router.add_post("/exports", create_export)
    app.router.add_post("/exports/report", create_report, name="page-report-create")
