"""Many writers per list: a change by any member reaches every member's cached first page and stats at once,
whichever of two real web processes served the write and whichever serves the read."""
from __future__ import annotations

from typing import Any

import aiohttp
import asyncpg

from tests.project_helpers import add_member, new_project
from tests.system.test_two_processes import two_webs  # noqa: F401 - the fixture
from web.app import create_app

PATHS = ("/api/v1/tasks", "/api/v1/tasks/stats")


async def test_a_members_write_on_one_process_is_read_at_once_by_the_other_member_on_the_other(
        two_webs: list[str], aiohttp_client: Any, settings: Any, make_user: Any,  # noqa: F811
        db: asyncpg.Connection) -> None:
    oracle = await aiohttp_client(create_app(settings.with_(cache=False)))
    ada, bob = await make_user(), await make_user()
    project = await new_project(oracle, ada)
    await add_member(db, project, bob, "editor")
    ids: list[int] = []
    sessions = {user.id: aiohttp.ClientSession(headers=user.headers) for user in (ada, bob)}
    try:
        async def read(user: Any, base: str | None) -> list[Any]:
            """List and stats as ``user`` from a process (its URL), or from the uncached oracle (None)."""
            answers = []
            for path in PATHS:
                response = await (oracle.get(path, headers=user.headers) if base is None
                                  else sessions[user.id].get(base + path))
                assert response.status == 200
                answers.append(await response.json())
            return answers

        for step in range(24):
            writer, reader = (ada, bob) if step % 2 == 0 else (bob, ada)
            via, other = two_webs[step % 2], two_webs[(step // 2 + 1) % 2]
            for user in (ada, bob):  # every member's caches filled on both processes before the write
                await read(user, two_webs[0]), await read(user, two_webs[1])
            session = sessions[writer.id]
            if step % 4 == 3:
                async with session.delete(f"{via}/api/v1/tasks/{ids.pop(0)}") as response:
                    assert response.status == 204
            elif step % 4 == 2:
                async with session.patch(f"{via}/api/v1/tasks/{ids[-1]}", json={"status": "done"}) as response:
                    assert response.status == 200
            elif step % 8 == 1:
                async with session.post(f"{via}/api/v1/tasks/{ids[-1]}/comments", json={"body": "c"}) as response:
                    assert response.status == 201  # comment_count is on the cached page too
            else:
                async with session.post(f"{via}/api/v1/tasks", json={"title": f"t{step}",
                                                                      "project_id": project["id"]}) as response:
                    assert response.status == 201
                    ids.append((await response.json())["id"])
            expected = await read(reader, None)
            assert await read(reader, other) == expected, step
            assert await read(reader, via) == expected, step
            assert await read(writer, other) == await read(writer, None), step
        # Removing a member revokes what their cache holds, at once, on both processes.
        async with sessions[ada.id].delete(f"{two_webs[0]}/api/v1/projects/{project['id']}/members/{bob.id}") as r:
            assert r.status == 204
        for base in two_webs:
            listing, stats = await read(bob, base)
            assert listing["items"] == [] and sum(stats["by_status"].values()) == 0
    finally:
        for session in sessions.values():
            await session.close()
