"""/api/v1/projects, members, invitations: parse, call shared.projects / shared.invitations, answer.

Rights are decided in the shared modules (shared.rights, inside each query); handlers only pick the
connection, invalidate the changed members' caches after the commit and dispatch mails.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web
from marshmallow import Schema, fields, validate

from shared import invitations, projects, rights
from shared.mail import outbox
from web import ratelimit
from web.auth import authenticate
from web.keys import ARQ, CACHE, DB, SETTINGS
from web.openapi import api, ok
from web.request import json_response, load_json, load_query
from web.schemas import EmailField, JsonBoolean, QueryBoolean, Text, TrimmedSchema, cursor_field, limit_field

TAGS = ("projects",)
NAME, DESCRIPTION = validate.Length(1, 100), validate.Length(max=2000)
COLOR = validate.Regexp(r"^#[0-9a-f]{6}$", error="A colour like #1f6feb (lower-case hex).")
GRANTABLE = validate.OneOf(rights.ROLES)
INVITABLE = validate.OneOf(rights.ROLES[:-1])  # ownership is handed over, never invited


class ProjectCreateSchema(TrimmedSchema):
    class Meta:
        trim = ("name",)

    name = Text(required=True, validate=NAME)
    description = Text(load_default="", validate=DESCRIPTION)
    color = Text(allow_none=True, load_default=None, validate=COLOR)


class ProjectUpdateSchema(TrimmedSchema):
    class Meta:
        trim = ("name",)

    name = Text(validate=NAME)
    description = Text(validate=DESCRIPTION)
    color = Text(allow_none=True, validate=COLOR)
    archived = JsonBoolean()


class ProjectOutSchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    description = fields.String(required=True)
    color = fields.String(required=True, allow_none=True)
    is_inbox = fields.Boolean(required=True)
    owner_id = fields.Integer(required=True)
    role = fields.String(required=True, validate=GRANTABLE, metadata={"description": "Your role in it"})
    member_count = fields.Integer(required=True)
    archived_at = fields.DateTime(required=True, allow_none=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


class ProjectPageSchema(Schema):
    items = fields.List(fields.Nested(ProjectOutSchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class ProjectListQuerySchema(Schema):
    archived = QueryBoolean(metadata={"description": "true: only archived; false: only the others"})
    limit = limit_field()
    cursor = cursor_field()


class PageQuerySchema(Schema):
    limit = limit_field()
    cursor = cursor_field()


class MemberUserSchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    email = fields.String(required=True)


class MemberOutSchema(Schema):
    user = fields.Nested(MemberUserSchema, required=True)
    role = fields.String(required=True, validate=GRANTABLE)
    joined_at = fields.DateTime(required=True)


class MemberPageSchema(Schema):
    items = fields.List(fields.Nested(MemberOutSchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class RoleSchema(Schema):
    role = fields.String(required=True, validate=GRANTABLE,
                         metadata={"description": "`owner` hands the project over (the owner only)"})


class InviteSchema(Schema):
    email = EmailField(required=True)
    role = fields.String(required=True, validate=INVITABLE)


class InvitationOutSchema(Schema):
    id = fields.Integer(required=True)
    email = fields.String(required=True)
    role = fields.String(required=True, validate=INVITABLE)
    invited_by = fields.Integer(required=True, allow_none=True)
    created_at = fields.DateTime(required=True)
    expires_at = fields.DateTime(required=True)


class InvitationPageSchema(Schema):
    items = fields.List(fields.Nested(InvitationOutSchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class AcceptSchema(Schema):
    token = Text(required=True, validate=validate.Length(1, 200))


CREATE, UPDATE, LIST_QUERY, PAGE_QUERY = ProjectCreateSchema(), ProjectUpdateSchema(), ProjectListQuerySchema(), \
    PageQuerySchema()
ROLE, INVITE, ACCEPT = RoleSchema(), InviteSchema(), AcceptSchema()


def _id(request: web.Request, name: str = "id") -> int:
    return int(request.match_info[name])


def _page(items: list[Any], cursor: str | None) -> web.Response:
    return json_response({"items": items, "next_cursor": cursor})


def _project_response(row: Any, status: int = 200, **headers: str) -> web.Response:
    return json_response(projects.project_out(row), status=status, headers={"ETag": projects.etag(row), **headers})


@api(tags=TAGS, auth="user", body=ProjectCreateSchema,
     responses={201: ok("The project; you are its owner", ProjectOutSchema, headers=("Location", "ETag"))})
async def create_project(request: web.Request) -> web.Response:
    """Create a project."""
    auth = await authenticate(request)
    data = await load_json(request, CREATE)
    async with request.app[DB].write.acquire() as conn, conn.transaction():
        row = await projects.create_project(conn, owner_id=auth.user_id, data=data)
    await request.app[CACHE].invalidate(auth.user_id)
    return _project_response(row, 201, Location=f"/api/v1/projects/{row['id']}")


@api(tags=TAGS, auth="user", query=ProjectListQuerySchema,
     responses={200: ok("A page of your projects", ProjectPageSchema)})
async def list_projects(request: web.Request) -> web.Response:
    """List the projects you are a member of (your Inbox included)."""
    auth = await authenticate(request)
    query = load_query(request, LIST_QUERY)
    rows, cursor = await request.app[DB].read_as(auth.user_id, lambda conn: projects.list_projects(
        conn, user_id=auth.user_id, archived=query.get("archived"), limit=query["limit"], cursor=query.get("cursor"),
        secret=request.app[SETTINGS].secret_key))
    return _page([projects.project_out(row) for row in rows], cursor)


@api(tags=TAGS, auth="user", conditional="read",
     responses={200: ok("The project", ProjectOutSchema, headers=("ETag",))})
async def get_project(request: web.Request) -> web.Response:
    """Get a project (viewer)."""
    auth = await authenticate(request)
    row = await request.app[DB].read_as(auth.user_id, lambda conn: projects.get_project(
        conn, project_id=_id(request), user_id=auth.user_id, is_admin=auth.is_admin))
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None and projects.etag_matches(if_none_match, projects.etag(row), weak=True):
        return web.Response(status=304, headers={"ETag": projects.etag(row)})
    return _project_response(row)


@api(tags=TAGS, auth="user", body=ProjectUpdateSchema, conditional="write", errors=(403, 409),
     responses={200: ok("The project", ProjectOutSchema, headers=("ETag",))})
async def update_project(request: web.Request) -> web.Response:
    """Rename, describe, recolour, archive or unarchive a project (admin).

    The Inbox cannot be renamed or archived (409).
    """
    auth = await authenticate(request)
    changes = await load_json(request, UPDATE)
    async with request.app[DB].write.acquire() as conn:
        result = await projects.update_project(conn, project_id=_id(request), user_id=auth.user_id,
                                               is_admin=auth.is_admin, changes=changes,
                                               if_match=request.headers.get("If-Match"))
    await request.app[CACHE].invalidate(*result.audience)
    return _project_response(result.value)


@api(tags=TAGS, auth="user", conditional="write", errors=(403, 409), responses={204: ok("Deleted")})
async def delete_project(request: web.Request) -> web.Response:
    """Delete a project with its tasks and comments (owner). The Inbox cannot be deleted (409)."""
    auth = await authenticate(request)
    async with request.app[DB].write.acquire() as conn:
        result = await projects.delete_project(conn, project_id=_id(request), user_id=auth.user_id,
                                               is_admin=auth.is_admin, if_match=request.headers.get("If-Match"))
    await request.app[CACHE].invalidate(*result.audience)
    return web.Response(status=204)


@api(tags=TAGS, auth="user", query=PageQuerySchema, responses={200: ok("A page of members", MemberPageSchema)})
async def list_members(request: web.Request) -> web.Response:
    """List a project's members with their roles (viewer)."""
    auth = await authenticate(request)
    query = load_query(request, PAGE_QUERY)
    rows, cursor = await request.app[DB].read_as(auth.user_id, lambda conn: projects.list_members(
        conn, project_id=_id(request), user_id=auth.user_id, is_admin=auth.is_admin, limit=query["limit"],
        cursor=query.get("cursor"), secret=request.app[SETTINGS].secret_key))
    return _page([projects.member_out(row) for row in rows], cursor)


@api(tags=TAGS, auth="user", body=RoleSchema, errors=(403, 409), responses={200: ok("The member", MemberOutSchema)})
async def change_role(request: web.Request) -> web.Response:
    """Change a member's role (admin: roles below your own).

    `owner` hands the project over: only the owner can, and becomes an admin.
    """
    auth = await authenticate(request)
    data = await load_json(request, ROLE)
    async with request.app[DB].write.acquire() as conn:
        result = await projects.change_role(conn, project_id=_id(request), user_id=auth.user_id,
                                            is_admin=auth.is_admin, member_id=_id(request, "user_id"),
                                            role=data["role"])
    await request.app[CACHE].invalidate(*result.audience)
    return json_response(result.value)


@api(tags=TAGS, auth="user", errors=(403, 409), responses={204: ok("Removed")})
async def remove_member(request: web.Request) -> web.Response:
    """Remove a member (admin), or leave (your own id). The owner can do neither (409)."""
    auth = await authenticate(request)
    async with request.app[DB].write.acquire() as conn:
        result = await projects.remove_member(conn, project_id=_id(request), user_id=auth.user_id,
                                              is_admin=auth.is_admin, member_id=_id(request, "user_id"))
    await request.app[CACHE].invalidate(*result.audience)
    return web.Response(status=204)


@api(tags=TAGS, auth="user", body=InviteSchema, errors=(403, 409),
     responses={202: ok("Invited (an email is on its way)")})
async def invite(request: web.Request) -> web.Response:
    """Invite someone by email (admin), with a role below your own.

    202 whether or not the address has an account. Limited per project and per inviter
    (`RATE_LIMIT_INVITES`).
    """
    auth = await authenticate(request)
    data = await load_json(request, INVITE)
    project_id = _id(request)
    async with request.app[DB].write.acquire() as conn:
        # The rights first: a non-member's probe is a 404, never a 429 that would tell the project exists.
        await projects.get_project(conn, project_id=project_id, user_id=auth.user_id, is_admin=auth.is_admin,
                                   needed=rights.ADMIN)
        await ratelimit.hit(request, "invites", f"project:{project_id}")
        await ratelimit.hit(request, "invites", f"inviter:{auth.user_id}")
        mail_id = await invitations.invite(conn, request.app[SETTINGS], project_id=project_id, user_id=auth.user_id,
                                           is_admin=auth.is_admin, user_email=auth.user["email"], email=data["email"],
                                           role=data["role"])
    await outbox.dispatch(request.app[ARQ], [mail_id])
    return web.Response(status=202)


@api(tags=TAGS, auth="user", query=PageQuerySchema, errors=(403,),
     responses={200: ok("A page of pending invitations", InvitationPageSchema)})
async def list_invitations(request: web.Request) -> web.Response:
    """List a project's pending invitations (admin)."""
    auth = await authenticate(request)
    query = load_query(request, PAGE_QUERY)
    rows, cursor = await request.app[DB].read_as(auth.user_id, lambda conn: invitations.list_pending(
        conn, project_id=_id(request), user_id=auth.user_id, is_admin=auth.is_admin, limit=query["limit"],
        cursor=query.get("cursor"), secret=request.app[SETTINGS].secret_key))
    return _page([invitations.invitation_out(row) for row in rows], cursor)


@api(tags=TAGS, auth="user", errors=(403,), responses={204: ok("Revoked")})
async def revoke_invitation(request: web.Request) -> web.Response:
    """Revoke a pending invitation (admin): its link stops working."""
    auth = await authenticate(request)
    async with request.app[DB].write.acquire() as conn:
        await invitations.revoke(conn, project_id=_id(request), invitation_id=_id(request, "invitation_id"),
                                 user_id=auth.user_id, is_admin=auth.is_admin)
    return web.Response(status=204)


@api(tags=TAGS, auth="user", body=AcceptSchema, errors=(403, 404, 409, 410),
     responses={200: ok("The project you joined", ProjectOutSchema, headers=("ETag",))})
async def accept_invitation(request: web.Request) -> web.Response:
    """Accept an invitation with its token, signed in with the invited (verified) address.

    Another account or an unverified address: 403; a member already: 409; a spent, revoked or unknown
    token: 404; an expired one: 410. A refused attempt changes nothing.
    """
    auth = await authenticate(request)
    data = await load_json(request, ACCEPT)
    async with request.app[DB].write.acquire() as conn:
        result = await invitations.accept(conn, token=data["token"], user_id=auth.user_id)
    await request.app[CACHE].invalidate(*result.audience)
    return _project_response(result.value)


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/projects", create_project, name="projects-create")
    app.router.add_get("/api/v1/projects", list_projects, name="projects-list")
    app.router.add_get(r"/api/v1/projects/{id:\d+}", get_project, name="project-detail")
    app.router.add_patch(r"/api/v1/projects/{id:\d+}", update_project, name="project-update")
    app.router.add_delete(r"/api/v1/projects/{id:\d+}", delete_project, name="project-delete")
    app.router.add_get(r"/api/v1/projects/{id:\d+}/members", list_members, name="project-members")
    app.router.add_patch(r"/api/v1/projects/{id:\d+}/members/{user_id:\d+}", change_role,
                         name="project-member-update")
    app.router.add_delete(r"/api/v1/projects/{id:\d+}/members/{user_id:\d+}", remove_member,
                          name="project-member-delete")
    app.router.add_post(r"/api/v1/projects/{id:\d+}/invitations", invite, name="project-invite")
    app.router.add_get(r"/api/v1/projects/{id:\d+}/invitations", list_invitations, name="project-invitations")
    app.router.add_delete(r"/api/v1/projects/{id:\d+}/invitations/{invitation_id:\d+}", revoke_invitation,
                          name="project-invitation-delete")
    app.router.add_post("/api/v1/invitations/accept", accept_invitation, name="invitations-accept")
