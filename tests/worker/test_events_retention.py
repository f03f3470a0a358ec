"""The change feed's retention cron: old events go in bounded batches, fresh ones stay, old cursors are 410."""
from __future__ import annotations

from worker.jobs import housekeeping


async def test_purge_events_deletes_only_expired_in_batches(client, make_user, database, db, settings, monkeypatch):
    user = await make_user()
    since = (await (await client.get("/api/v1/changes", headers=user.headers)).json())["next_cursor"]
    for title in ("a", "b", "c", "d", "e"):
        assert (await client.post("/api/v1/tasks", json={"title": title}, headers=user.headers)).status == 201
    await db.execute("UPDATE events SET at = now() - make_interval(days => $1 + 1) WHERE data->>'title' < 'e'",
                     settings.changes_retention_days)
    monkeypatch.setattr(housekeeping, "EVENT_BATCH", 3)
    assert await housekeeping.purge_events({"db": database, "settings": settings}) == 4
    assert [r["title"] for r in await db.fetch("SELECT data->>'title' AS title FROM events")] == ["e"]
    assert await housekeeping.purge_events({"db": database, "settings": settings}) == 0  # a retry is harmless
    gone = await client.get(f"/api/v1/changes?since={since}", headers=user.headers)
    assert gone.status == 410 and gone.content_type == "application/problem+json"
