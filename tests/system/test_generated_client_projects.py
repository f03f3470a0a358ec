"""The generated client (openapi-python-client, from the live document) shares a project: create it,
invite, list members, create an assigned task in it, comment, and reads the typed errors."""
from __future__ import annotations

import importlib
from typing import Any

from tests.live_server import LiveServer
from tests.system.test_generated_client import PACKAGE, generated, live  # noqa: F401 - the fixtures


def _api(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.api.{name}")


def test_generated_client_shares_a_project(live: LiveServer, generated: Any) -> None:  # noqa: F811
    models = importlib.import_module(f"{PACKAGE}.models")
    ada = live.create_user("gen-ada@example.com", "correct horse battery")
    bea = live.create_user("gen-bea@example.com", "correct horse battery")
    token = live.bearer(ada)["Authorization"].removeprefix("Bearer ")
    with generated.AuthenticatedClient(base_url=live.url, token=token, raise_on_unexpected_status=True) as client:
        project = _api("projects.projects_create").sync(client=client, body=models.ProjectCreate(name="Gen"))
        assert isinstance(project, models.ProjectOut) and project.role.value == "owner" and not project.is_inbox
        invite = models.Invite(email="gen-bea@example.com", role=models.InviteRole("editor"))
        invited = _api("projects.project_invite").sync_detailed(client=client, id=project.id, body=invite)
        assert invited.status_code == 202
        pending = _api("projects.project_invitations").sync(client=client, id=project.id)
        assert [i.email for i in pending.items] == ["gen-bea@example.com"]
        listed = _api("projects.projects_list").sync(client=client)
        assert {p.name for p in listed.items} == {"Inbox", "Gen"}
        members = _api("projects.project_members").sync(client=client, id=project.id)
        assert [(m.user.id, m.role.value) for m in members.items] == [(ada, "owner")]
        task = _api("tasks.tasks_create").sync(client=client, body=models.TaskCreate(
            title="typed", project_id=project.id, assignee_id=ada))
        assert isinstance(task, models.TaskOut) and task.project_id == project.id and task.assignee_id == ada
        outsider = _api("tasks.tasks_create").sync(client=client, body=models.TaskCreate(
            title="typed", project_id=project.id, assignee_id=bea))
        assert isinstance(outsider, models.Problem) and outsider.status == 422
        comment = _api("comments.task_comment_create").sync(client=client, id=task.id,
                                                            body=models.CommentIn(body="first"))
        assert isinstance(comment, models.CommentOut) and comment.author.id == ada
        page = _api("comments.task_comments").sync(client=client, id=task.id)
        assert [c.body for c in page.items] == ["first"]
        missing = _api("projects.project_detail").sync(client=client, id=10**12)
        assert isinstance(missing, models.Problem) and missing.status == 404
