"""What every HTML page shares: rendering with the viewer, CSRF and flash; redirects; forms; time zones.

The pages call the same ``shared`` functions and load the same marshmallow schemas as the JSON API; this
module only translates between HTML forms and those calls.
"""
from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import unquote, urlencode, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiohttp_jinja2
import jinja2
from aiohttp import web
from markupsafe import Markup, escape
from marshmallow import Schema, ValidationError
from multidict import MultiDictProxy

from shared.errors import ValidationFailed
from web import session
from web.auth import AuthContext, current_user
from web.keys import AUTH, SETTINGS

logger = logging.getLogger("app.web.pages")

STATIC = Path(__file__).resolve().parent.parent / "static"
TZ_COOKIE = "tz"  # set by static/app.js to the browser's IANA zone; absent without JavaScript
UTC = ZoneInfo("UTC")
DEFAULT_NEXT = "/tasks"
_LOCAL_INPUT = re.compile(r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d)?$")
_DATE_INPUT = re.compile(r"^\d{4}-\d\d-\d\d$")


# -- rendering ---------------------------------------------------------------------------------------------

def page_context(request: web.Request) -> dict[str, Any]:
    """What every template (error pages too) gets: the viewer, the CSRF token, the flash, the zone.

    Synchronous on purpose: the viewer is whoever the handler already authenticated (``page_user``), so
    rendering never queries anything, and an error page renders even when the database cannot.
    """
    auth = request.get(AUTH)
    auth = auth if isinstance(auth, AuthContext) else None
    settings = request.app[SETTINGS]
    return {"viewer": auth.user if auth else None,
            "csrf": session.csrf_token(request, settings, auth.claims.session_id if auth else None),
            "flash": session.read_flash(request, settings), "tz": zone_name(request),
            "path": request.path}


def render(request: web.Request, template: str, context: Mapping[str, Any], status: int = 200) -> web.Response:
    response = aiohttp_jinja2.render_template(template, request, {**page_context(request), **context},
                                              status=status)
    response.headers["Cache-Control"] = "no-store"  # pages show private data
    session.finish(request, response)
    return response


def redirect(request: web.Request, location: str, flash: str | None = None, level: str = "ok") -> web.Response:
    """303 See Other (the browser follows with a GET), optionally with a message for the next page."""
    response = web.Response(status=303, headers={"Location": location})
    if flash:
        session.set_flash(response, request.app[SETTINGS], flash, level)
    session.finish(request, response)
    return response


async def page_user(request: web.Request) -> AuthContext:
    """The signed-in viewer; otherwise off to the login page, which sends them back here afterwards."""
    auth = await current_user(request)
    if auth is None:
        raise web.HTTPSeeOther(login_url(request.path_qs))
    return auth


def login_url(next_path: str) -> str:
    return "/login?" + urlencode({"next": next_path}) if next_path not in ("/", "") else "/login"


def safe_next(value: str | None) -> str:
    """A same-site path to go to after login; anything else (other hosts, schemes, //evil) is /tasks."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return DEFAULT_NEXT
    if any(ch in value for ch in "\\\r\n\t") or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return DEFAULT_NEXT
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or value.startswith(("/login", "/logout")):
        return DEFAULT_NEXT
    return value


# -- forms -------------------------------------------------------------------------------------------------

async def form_data(request: web.Request) -> MultiDictProxy[Any]:
    return await request.post()


def load_form(schema: Schema, data: Mapping[str, Any], errors: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
    """Load form values with the API's schema; problems (and ``errors`` found while reading the form, e.g.
    an unreadable date) become one ValidationFailed with per-field messages, so every field says what is wrong.
    """
    try:
        loaded = schema.load(data)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        raise ValidationFailed({**messages, **(errors or {})}) from None
    if errors:
        raise ValidationFailed(dict(errors))
    return loaded


def field_errors(exc: ValidationFailed) -> dict[str, list[str]]:
    """{form field: [message, ...]} for the template: the API's dotted paths (``tags.0``,
    ``filters.status.1``) shown at the form field they belong to (the export form's filters are top-level)."""
    flat: dict[str, list[str]] = {}
    for path, messages in (exc.errors or {}).items():
        parts = str(path).split(".")
        field = parts[1] if parts[0] == "filters" and len(parts) > 1 else parts[0]
        flat.setdefault(field, []).extend(_flatten(messages))
    return flat


def _flatten(messages: Any) -> list[str]:
    if isinstance(messages, dict):
        return [m for value in messages.values() for m in _flatten(value)]
    if isinstance(messages, (list, tuple)):
        return [m for value in messages for m in _flatten(value)]
    return [str(messages)]


def present(form: Mapping[str, Any], *names: str) -> dict[str, Any]:
    """The named single-valued fields that were filled in (an empty filter means "no filter")."""
    return {name: str(form[name]).strip() for name in names if str(form.get(name, "")).strip()}


def chosen(form: MultiDictProxy[Any], name: str) -> list[str]:
    return [str(value) for value in form.getall(name, []) if str(value)]


def split_tags(text: str) -> list[str]:
    return [tag.strip() for tag in text.split(",") if tag.strip()]


# -- time zones ------------------------------------------------------------------------------------------

def zone_name(request: web.Request, override: str | None = None) -> str:
    """The viewer's IANA zone (from a form's ``tz`` field or the cookie app.js sets), UTC without either."""
    for candidate in (override, unquote(request.cookies.get(TZ_COOKIE, ""))):
        if candidate and len(candidate) <= 64:
            try:
                ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
            return candidate
    return "UTC"


def parse_local(text: str, zone: str, field: str, errors: dict[str, list[str]]) -> str | None:
    """A datetime-local (or date) input in ``zone`` as RFC 3339 UTC for the API schemas; '' is None.

    An unreadable value is recorded in ``errors`` (and None returned), for ``load_form`` to report.
    """
    text = text.strip()
    if not text:
        return None
    try:
        if _DATE_INPUT.match(text):
            moment = datetime.fromisoformat(text + "T00:00")
        elif _LOCAL_INPUT.match(text):
            moment = datetime.fromisoformat(text.replace(" ", "T"))
        else:
            raise ValueError(text)
        moment = moment.replace(tzinfo=ZoneInfo(zone)).astimezone(timezone.utc)
    except (ValueError, OverflowError):
        example = "2026-11-22" if _DATE_INPUT.match(text) or len(text) <= 10 else "2026-11-22 18:30"
        errors[field] = [f"Enter a valid date{'' if len(example) == 10 else ' and time'}, e.g. {example}."]
        return None
    return _utc_text(moment)


def _utc_text(moment: datetime) -> str:
    # isoformat, not strftime: glibc's %Y writes the year 1 as "1", which nothing parses back.
    return moment.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def next_day(rfc3339: str) -> str | None:
    """The end of a day-long range whose start ``parse_local`` returned; None when that day is the calendar's
    last (the range then has no end: nothing can be due after it)."""
    try:
        return _utc_text(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")) + timedelta(days=1))
    except OverflowError:
        return None


def _moment(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _local(moment: datetime, zone: str | None) -> datetime:
    """``moment`` in ``zone``; in UTC when the zone's offset would carry it past the calendar's first or last
    day (a task due 9999-12-31 23:30 UTC is already in the year 10000 in Tokyo, which datetime cannot hold)."""
    try:
        return moment.astimezone(ZoneInfo(zone or "UTC"))
    except OverflowError:
        return moment.astimezone(timezone.utc)


@jinja2.pass_context
def when(context: Any, value: Any, missing: str = "—") -> Markup:
    """A <time> in the viewer's zone; app.js re-renders it in the browser's own zone at once."""
    moment = _moment(value)
    if moment is None:
        return Markup(escape(missing))
    local = _local(moment, context.get("tz"))
    text = f"{local.replace(tzinfo=None).isoformat(sep=' ', timespec='minutes')} {local.tzname()}"
    return Markup('<time datetime="{}">{}</time>').format(_utc_text(moment), text)


@jinja2.pass_context
def local_input(context: Any, value: Any) -> str:
    """A timestamp as a datetime-local value in the viewer's zone (what the form posts back, with tz)."""
    moment = _moment(value)
    if moment is None:
        return ""
    return _local(moment, context.get("tz")).replace(tzinfo=None).isoformat(timespec="minutes")


def task_dict(body: str) -> dict[str, Any]:
    """A task as PostgreSQL rendered it for the API (the pages show exactly what the API returns)."""
    return dict(json.loads(body))


async def favicon(request: web.Request) -> web.FileResponse:
    """/favicon.ico, which browsers (and bookmarks, feed readers) ask for whatever the page links."""
    return web.FileResponse(STATIC / "favicon.ico", headers={"Cache-Control": "public, max-age=86400"})


def setup(app: web.Application) -> None:
    """Static files, the favicon and template helpers."""
    env = aiohttp_jinja2.get_env(app)
    env.filters.update(when=when, local_input=local_input,
                       member_option=lambda user: (str(user["id"]), user["name"] or user["email"]),
                       id_option=lambda pair: (str(pair[0]), pair[1]))
    env.globals["zip"] = zip
    app.router.add_static("/static/", STATIC, name="static")
    app.router.add_get("/favicon.ico", favicon, name="favicon")
