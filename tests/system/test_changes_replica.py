"""The read rule with a lagging replica: an event a user was sent reads back at once, whichever replica."""
from __future__ import annotations

from tests.project_helpers import add_member, new_project, new_task
from tests.replica_helpers import set_apply_delay
from web.app import create_app


async def test_an_event_sent_reads_back_through_a_lagging_replica(aiohttp_client, replica, replica_settings,
                                                                  make_user, db):
    client = await aiohttp_client(create_app(replica_settings.with_(replica_max_lag_seconds=3600)))
    ada, bob = await make_user(), await make_user()
    project = await new_project(client, ada)
    await add_member(db, project, bob, "viewer")
    since = (await (await client.get("/api/v1/changes", headers=bob.headers)).json())["next_cursor"]
    await set_apply_delay(replica, "30s")
    task = await new_task(client, ada, project, title="fresh")
    page = await (await client.get(f"/api/v1/changes?since={since}", headers=bob.headers)).json()
    assert [e["type"] for e in page["items"]] == ["task.created"]
    got = await client.get(f"/api/v1/tasks/{task['id']}", headers=bob.headers)  # bob never wrote anything
    assert got.status == 200 and (await got.json())["title"] == "fresh"
    listed = await (await client.get(f"/api/v1/projects/{project['id']}/activity", headers=bob.headers)).json()
    assert [e["type"] for e in listed["items"]][:1] == ["task.created"]
