"""bench/bare.py, the baseline of bench/hotpath.py, answers what Taskdeck answers (behaviour, not speed)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from web.app import create_app

spec = importlib.util.spec_from_file_location("bench_bare", Path(__file__).resolve().parents[2] / "bench" / "bare.py")
assert spec is not None and spec.loader is not None
bare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bare)
TASK = {"title": "Write the report", "description": "by Friday", "priority": "high", "tags": ["work", "q4"],
        "due_at": "2030-01-01T12:00:00Z"}


@pytest.fixture
async def both(aiohttp_client, settings):
    return (await aiohttp_client(create_app(settings)),
            await aiohttp_client(await bare.make_app(settings.database_url, settings.secret_key)))


async def _json(client, method, path, user, **kwargs):
    response = await client.request(method, path, headers=user.headers, **kwargs)
    assert response.status in (200, 201), await response.text()
    return await response.json()


async def test_bare_lists_gets_and_inserts_the_same_rows_as_taskdeck(both, make_user):
    taskdeck, baseline = both
    user, other = await make_user(), await make_user()
    for i in range(5):
        await _json(taskdeck, "POST", "/api/v1/tasks", user, json={**TASK, "title": f"Task {i}"})
        await _json(baseline, "POST", "/api/v1/tasks", user, json={**TASK, "title": f"Bare task {i}"})
    await _json(taskdeck, "POST", "/api/v1/tasks", other, json=TASK)
    for limit in (3, 20, 100):
        ours = await _json(taskdeck, "GET", f"/api/v1/tasks?limit={limit}", user)
        theirs = await _json(baseline, "GET", f"/api/v1/tasks?limit={limit}", user)
        assert ours["items"] == theirs["items"] and len(ours["items"]) == min(limit, 10)
        assert (ours["next_cursor"] is None) == (theirs["next_cursor"] is None)
    task_id = ours["items"][4]["id"]
    assert (await _json(taskdeck, "GET", f"/api/v1/tasks/{task_id}", user)
            == await _json(baseline, "GET", f"/api/v1/tasks/{task_id}", user))
    # Someone else's task is not found by either.
    assert (await baseline.get(f"/api/v1/tasks/{task_id}", headers=other.headers)).status == 404
