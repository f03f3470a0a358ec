"""/api/v1/reports: PDF reports with charts, built by the worker (the same numbers as web pages: web/pages/reports)."""
from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from aiohttp import web
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from shared import exports, reports
from shared.errors import Forbidden
from web.auth import AuthContext, authenticate
from web.request import json_response, load_json
from web.openapi import api, ok
from web.api.exports import JOB_QUEUED, JobOutSchema, create_job_response, file_response, visible_job
from web.api.tasks import Rfc3339DateTime

CREATE_SCOPE = "POST /api/v1/reports"
_DATE = re.compile(r"^\d{4}-\d\d-\d\d$")
# Reports cover when Taskdeck can have data; the margins keep `to - 30 days` and the week grid
# (which runs a week past `to`) inside what datetime can represent.
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(9000, 1, 1, tzinfo=timezone.utc)
TAGS = ("reports",)
PDF_ATTACHMENT = ok("The PDF, as an attachment", headers=("Content-Disposition",),
                    content={"application/pdf": {"schema": {"type": "string", "format": "binary"}}})


class ReportMoment(Rfc3339DateTime):
    """An RFC 3339 date-time, or a plain date: midnight UTC (for `to`, the end of that day)."""

    def __init__(self, *, end_of_day: bool = False, **kwargs: Any) -> None:
        super().__init__(query=True, **kwargs)
        self.end_of_day = end_of_day

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        moment = self._moment(value, attr, data, **kwargs)
        if not EARLIEST <= moment <= LATEST:
            raise ValidationError(f"Must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}.")
        return moment

    def _moment(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if isinstance(value, str) and _DATE.match(value):
            try:
                day = date.fromisoformat(value)
            except ValueError:
                raise ValidationError("Not a valid date, e.g. 2026-11-22.") from None
            moment = datetime.combine(day, time(), timezone.utc)
            # Past LATEST it is refused anyway; adding the day could overflow (9999-12-31).
            return moment + timedelta(days=1) if self.end_of_day and moment < LATEST else moment
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


@api(tags=TAGS, auth="user", body=ReportCreateSchema, idempotent=True, errors=(403,), responses={202: JOB_QUEUED})
async def create_report(request: web.Request) -> web.Response:
    """Request a PDF report.

    `summary`: your tasks over from..to (default the last 30 days): by status and priority, created vs
    completed per week, overdue now and the most overdue tasks, with charts. `admin_activity` (admins
    only, else 403): signups, active users and tasks created/completed per day. `from`/`to` take RFC 3339
    times or dates (UTC). Poll the job at `Location`; an email says when it is ready. Idempotency-Key is
    honoured.
    """
    auth = await authenticate(request)
    data = await load_json(request, ReportCreateSchema())
    return await create_job_response(request, auth, scope=CREATE_SCOPE, kind=data["kind"], format="pdf",
                                     params=report_params(auth, data))


def report_params(auth: AuthContext, data: dict[str, Any]) -> dict[str, str]:
    """A loaded report request as job params; the one role check of report kinds (API and HTML pages)."""
    if data["kind"] in exports.ADMIN_ONLY_KINDS and not auth.is_admin:
        raise Forbidden("The admin activity report needs the admin role")
    start, end = ReportPeriodSchema.period(data)
    return {"from": start.isoformat(), "to": end.isoformat()}


@api(tags=TAGS, auth="user", responses={200: ok("The job", JobOutSchema)})
async def get_report(request: web.Request) -> web.Response:
    """One report job: status, progress and, once ready, its download_url."""
    return json_response(exports.job_out(await visible_job(request, exports.REPORT_KINDS)))


@api(tags=TAGS, auth="user", errors=(409, 410), responses={200: PDF_ATTACHMENT})
async def download_report(request: web.Request) -> web.StreamResponse:
    """Download the report PDF: 409 while it is not ready, 410 once expired."""
    return await file_response(request, await visible_job(request, exports.REPORT_KINDS))


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/reports", create_report, name="reports-create")
    app.router.add_get(r"/api/v1/reports/{id:\d{1,19}}", get_report, name="report-detail")
    app.router.add_get(r"/api/v1/reports/{id:\d{1,19}}/download", download_report, name="report-download")
