"""/api/v1/reports (PDF reports with charts, built by the worker) and the same numbers as HTML pages."""
from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from aiohttp import web
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from shared import exports, reports
from shared.errors import Forbidden
from web.auth import authenticate, require_admin
from web.keys import DB
from web.request import json_response, load_json, load_query
from web.views.exports import create_job_response, file_response, visible_job
from web.views.tasks import Rfc3339DateTime

CREATE_SCOPE = "POST /api/v1/reports"
_DATE = re.compile(r"^\d{4}-\d\d-\d\d$")
HTML_TYPE = "text/html"


class ReportMoment(Rfc3339DateTime):
    """An RFC 3339 date-time, or a plain date: midnight UTC (for `to`, the end of that day)."""

    def __init__(self, *, end_of_day: bool = False, **kwargs: Any) -> None:
        super().__init__(query=True, **kwargs)
        self.end_of_day = end_of_day

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if isinstance(value, str) and _DATE.match(value):
            try:
                day = date.fromisoformat(value)
            except ValueError:
                raise ValidationError("Not a valid date, e.g. 2026-11-22.") from None
            moment = datetime.combine(day, time(), timezone.utc)
            return moment + timedelta(days=1) if self.end_of_day else moment
        return super()._deserialize(value, attr, data, **kwargs)


class ReportPeriodSchema(Schema):
    from_ = ReportMoment(data_key="from", load_default=None, metadata={"description": "Default: `to` - 30 days"})
    to = ReportMoment(end_of_day=True, load_default=None, metadata={"description": "Default: now"})

    @validates_schema
    def _sensible_period(self, data: dict[str, Any], **_: Any) -> None:
        start, end = self.period(data)
        if start >= end:
            raise ValidationError("Must be before `to`.", "from")
        if end - start > reports.MAX_PERIOD:
            raise ValidationError(f"The period can be at most {reports.MAX_PERIOD.days} days.", "from")

    @staticmethod
    def period(data: dict[str, Any]) -> tuple[datetime, datetime]:
        end = data.get("to") or reports.default_period()[1]
        return data.get("from_") or end - reports.DEFAULT_PERIOD, end


class ReportCreateSchema(ReportPeriodSchema):
    kind = fields.String(required=True, validate=validate.OneOf(exports.REPORT_KINDS),
                         metadata={"description": "`admin_activity` needs the admin role"})


async def create_report(request: web.Request) -> web.Response:
    """Request a PDF report.
    ---
    summary: Request a report
    description: >-
      `summary`: your tasks over from..to (default the last 30 days): by status and priority, created vs
      completed per week, overdue now and the most overdue tasks, with charts. `admin_activity` (admins
      only): signups, active users and tasks created/completed per day. `from`/`to` take RFC 3339 times or
      dates (UTC). Poll the job at `Location`; an email says when it is ready. Idempotency-Key is honoured.
    tags: [reports]
    security: [{bearerAuth: []}]
    parameters:
      - {in: header, name: Idempotency-Key, schema: {type: string, maxLength: 255}}
    requestBody: {required: true, content: {application/json: {schema: ReportCreateSchema}}}
    responses:
      202:
        description: The job, queued
        headers: {Location: {schema: {type: string}}}
        content: {application/json: {schema: JobOutSchema}}
      400: {$ref: '#/components/responses/Problem400'}
      401: {$ref: '#/components/responses/Problem401'}
      403: {$ref: '#/components/responses/Problem403'}
      409: {$ref: '#/components/responses/Problem409'}
      415: {$ref: '#/components/responses/Problem415'}
      422: {$ref: '#/components/responses/Problem422'}
    """
    auth = await authenticate(request)
    data = await load_json(request, ReportCreateSchema())
    if data["kind"] == "admin_activity" and not auth.is_admin:
        raise Forbidden("The admin activity report needs the admin role")
    start, end = ReportPeriodSchema.period(data)
    return await create_job_response(request, auth, scope=CREATE_SCOPE, kind=data["kind"], format="pdf",
                                     params={"from": start.isoformat(), "to": end.isoformat()})


async def get_report(request: web.Request) -> web.Response:
    """One report job: status, progress and, once ready, its download_url.
    ---
    tags: [reports]
    security: [{bearerAuth: []}]
    parameters: [{in: path, name: id, required: true, schema: {type: integer}}]
    responses:
      200: {description: The job, content: {application/json: {schema: JobOutSchema}}}
      401: {$ref: '#/components/responses/Problem401'}
      404: {$ref: '#/components/responses/Problem404'}
    """
    return json_response(exports.job_out(await visible_job(request)))


async def download_report(request: web.Request) -> web.StreamResponse:
    """Download the report PDF.
    ---
    tags: [reports]
    security: [{bearerAuth: []}]
    parameters: [{in: path, name: id, required: true, schema: {type: integer}}]
    responses:
      200:
        description: The PDF, as an attachment
        content: {application/pdf: {schema: {type: string, format: binary}}}
      401: {$ref: '#/components/responses/Problem401'}
      404: {$ref: '#/components/responses/Problem404'}
      409: {$ref: '#/components/responses/Problem409'}
      410: {$ref: '#/components/responses/Problem410'}
    """
    return await file_response(request, await visible_job(request))


async def summary_page(request: web.Request) -> web.Response:
    """The caller's summary report as an HTML page (?from=&to=), computed now."""
    auth = await authenticate(request)
    start, end = ReportPeriodSchema.period(load_query(request, ReportPeriodSchema()))
    data = await request.app[DB].read_as(auth.user_id, lambda conn: reports.summary(
        conn, owner_id=auth.user_id, start=start, end=end))
    return web.Response(text=reports.render_html(data), content_type=HTML_TYPE, charset="utf-8")


async def admin_activity_page(request: web.Request) -> web.Response:
    """The admin activity report as an HTML page (?from=&to=), computed now; admins only."""
    auth = await require_admin(request)
    start, end = ReportPeriodSchema.period(load_query(request, ReportPeriodSchema()))
    data = await request.app[DB].read_as(auth.user_id, lambda conn: reports.admin_activity(conn, start=start, end=end))
    return web.Response(text=reports.render_html(data), content_type=HTML_TYPE, charset="utf-8")


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/reports", create_report, name="reports-create")
    app.router.add_get(r"/api/v1/reports/{id:\d{1,19}}", get_report, name="report-detail")
    app.router.add_get(r"/api/v1/reports/{id:\d{1,19}}/download", download_report, name="report-download")
    app.router.add_get("/reports/summary", summary_page, name="report-summary-page")
    app.router.add_get("/reports/admin-activity", admin_activity_page, name="report-admin-activity-page")
