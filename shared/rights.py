"""Who may do what: the one definition of effective rights in a project.

A caller's role in a project is their ``project_members`` row; a site admin acts as owner of every
project. Every query that reads or writes something inside a project joins ``MEMBER`` (or, for one
object, ``ACCESS`` and selects ``ROLE``) so the right is decided by the same statement that reads the
rows: never an extra round trip, never a second definition. Python then asks ``require`` whether that
role is enough: no role at all is 404 (exactly like a missing id), a role below the action's is 403.

Nothing here is cached: a removed member's very next query finds no row.
"""
from __future__ import annotations

from shared.errors import Forbidden, NotFound

ROLES = ("viewer", "editor", "admin", "owner")  # the enum's order: each includes the ones before
VIEWER, EDITOR, ADMIN, OWNER = ROLES

# Lists: only projects the user is a member of (a site admin's list is their own, like anyone's).
# `{project}` is the project id column, `{user}` a placeholder for the user id.
MEMBER = "JOIN project_members AS m ON m.project_id = {project} AND m.user_id = {user}"
# Lists of tasks, page by page: the same membership as MEMBER, as a FROM item (one row per project of
# the user, `{}` the user id placeholder) that each project's rows are then joined to (LATERAL).
MEMBER_PROJECTS = "(SELECT m.project_id FROM project_members AS m WHERE m.user_id = {}) AS m"
# One object: the membership if any; with ROLE and VISIBLE in the same statement.
ACCESS = "LEFT " + MEMBER
# The caller's effective role; `{admin}` is a placeholder for "the caller is a site admin".
ROLE = "CASE WHEN {admin} THEN 'owner'::project_role ELSE m.role END"
VISIBLE = "(m.role IS NOT NULL OR {admin})"


def member(project: str, user: str) -> str:
    return MEMBER.format(project=project, user=user)


def access(project: str, user: str, admin: str) -> tuple[str, str, str]:
    """(join, role expression, visibility condition) of one object's project for one caller."""
    return ACCESS.format(project=project, user=user), ROLE.format(admin=admin), VISIBLE.format(admin=admin)


def rank(role: str | None) -> int:
    return -1 if role is None else ROLES.index(role)


def require(role: str | None, needed: str, what: str = "project") -> str:
    """The Python side of every rights check: ``role`` is the effective role the query returned.

    :raises NotFound: not a member (the same answer as a missing id: existence is never revealed)
    :raises Forbidden: a member whose role is below ``needed``
    """
    if role is None:
        raise NotFound(f"No such {what}")
    if rank(role) < rank(needed):
        raise Forbidden(f"This needs the {needed} role in the project; yours is {role}")
    return role
