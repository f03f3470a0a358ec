"""Each domain module registers its own routes; this only lists the domains."""
from __future__ import annotations

from aiohttp import web

from web import openapi
from web.api import comments, projects
from web.pages import projects as pages_projects
from web.views import (
    account_pages,
    admin,
    auth,
    exports,
    ops,
    pages,
    pages_admin,
    pages_auth,
    pages_exports,
    pages_tasks,
    reports,
    tasks,
    users,
)


def setup_routes(app: web.Application) -> None:
    for module in (ops, auth, users, admin, tasks, projects, comments, exports, reports, account_pages):
        module.setup_routes(app)
    # HTML pages (server-rendered, cookie sessions): static files, template helpers, then the pages.
    pages.setup(app)
    for module in (pages_auth, pages_tasks, pages_projects, pages_exports, pages_admin):
        module.setup_routes(app)
    openapi.setup_routes(app)
