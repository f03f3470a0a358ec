"""Each domain module registers its own routes; this only lists them: the JSON API, then the HTML pages."""
from __future__ import annotations

from aiohttp import web

from web import openapi
from web.api import (admin, attachments, audit, auth, changes, comments, exports, ops, projects, reports, stream,
                     tasks, trash, users, webhooks)
from web.pages import account
from web.pages import admin as admin_pages
from web.pages import auth as auth_pages
from web.pages import common
from web.pages import webhooks as webhook_pages
from web.pages import exports as export_pages
from web.pages import projects as project_pages
from web.pages import reports as report_pages
from web.pages import tasks as task_pages


def setup_routes(app: web.Application) -> None:
    for module in (ops, auth, users, admin, audit, tasks, trash, projects, comments, attachments, changes, stream,
                   webhooks, exports, reports):
        module.setup_routes(app)
    # HTML pages (server-rendered, cookie sessions): static files, template helpers, then the pages.
    common.setup(app)
    for module in (account, auth_pages, task_pages, project_pages, export_pages, report_pages, admin_pages,
                   webhook_pages):
        module.setup_routes(app)
    openapi.setup_routes(app)
