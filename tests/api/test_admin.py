"""Admin routes: user list/detail/update and stats; everyone else gets 403."""
from __future__ import annotations

import pytest

from tests.helpers import assert_problem


@pytest.fixture
async def admin(make_user):
    return await make_user("root@example.com", role="admin")


@pytest.mark.parametrize("method, path", [
    ("GET", "/api/v1/admin/users"), ("GET", "/api/v1/admin/users/1"), ("PATCH", "/api/v1/admin/users/1"),
    ("GET", "/api/v1/admin/stats"),
])
async def test_non_admins_get_403_and_anonymous_401(client, make_user, method, path):
    user = await make_user()
    await assert_problem(await client.request(method, path, json={}, headers=user.headers), 403)
    await assert_problem(await client.request(method, path, json={}), 401)


async def test_list_users_newest_first_with_keyset_pages(client, admin, make_user):
    for i in range(5):
        await make_user(f"user{i}@example.com")
    seen, cursor = [], None
    while True:
        query = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = await (await client.get("/api/v1/admin/users", params=query, headers=admin.headers)).json()
        assert len(page["items"]) <= 2
        seen += [u["email"] for u in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"user{i}@example.com" for i in reversed(range(5))] + ["root@example.com"]
    assert "password_hash" not in str(page)


async def test_list_users_filters(client, admin, make_user, db):
    await make_user("grace@example.com", name="Grace Hopper")
    await make_user("linus@example.com", active=False)
    await make_user("ops@example.com", role="admin")

    async def emails(**params):
        response = await client.get("/api/v1/admin/users", params=params, headers=admin.headers)
        assert response.status == 200
        return sorted(u["email"] for u in (await response.json())["items"])

    assert await emails(q="HOPPER") == ["grace@example.com"]
    assert await emails(q="linus@") == ["linus@example.com"]
    assert await emails(q="%") == []  # LIKE wildcards are literal
    assert await emails(role="admin") == ["ops@example.com", "root@example.com"]
    assert await emails(is_active="false") == ["linus@example.com"]
    assert await emails(is_active="true", role="user") == ["grace@example.com"]


@pytest.mark.parametrize("params, field", [
    ({"limit": "0"}, "limit"), ({"limit": "101"}, "limit"), ({"limit": "abc"}, "limit"),
    ({"role": "king"}, "role"), ({"is_active": "maybe"}, "is_active"), ({"cursor": "garbage"}, "cursor"),
    ({"unknown": "1"}, "unknown"), ({"q": ""}, "q"),
])
async def test_list_users_rejects_bad_parameters(client, admin, params, field):
    await assert_problem(await client.get("/api/v1/admin/users", params=params, headers=admin.headers), 422, field)


async def test_a_cursor_from_another_filter_is_refused(client, admin, make_user):
    for _ in range(3):
        await make_user()
    page = await (await client.get("/api/v1/admin/users", params={"limit": "1"}, headers=admin.headers)).json()
    params = {"limit": "1", "role": "user", "cursor": page["next_cursor"]}
    response = await client.get("/api/v1/admin/users", params=params, headers=admin.headers)
    await assert_problem(response, 422, "cursor")


async def test_get_user_and_404(client, admin, make_user):
    user = await make_user()
    response = await client.get(f"/api/v1/admin/users/{user.id}", headers=admin.headers)
    assert response.status == 200 and (await response.json())["email"] == user.email
    await assert_problem(await client.get("/api/v1/admin/users/999999", headers=admin.headers), 404)
    await assert_problem(await client.get("/api/v1/admin/users/abc", headers=admin.headers), 404)


async def test_promote_and_deactivate(client, admin, make_user):
    user = await make_user()
    response = await client.patch(f"/api/v1/admin/users/{user.id}", json={"role": "admin"}, headers=admin.headers)
    assert (await response.json())["role"] == "admin"
    assert (await client.get("/api/v1/admin/stats", headers=user.headers)).status == 200
    response = await client.patch(f"/api/v1/admin/users/{user.id}", json={"is_active": False}, headers=admin.headers)
    assert response.status == 200 and (await response.json())["is_active"] is False
    await assert_problem(await client.get("/api/v1/users/me", headers=user.headers), 401)
    # Reactivation does not resurrect the old sessions.
    await client.patch(f"/api/v1/admin/users/{user.id}", json={"is_active": True}, headers=admin.headers)
    await assert_problem(await client.get("/api/v1/users/me", headers=user.headers), 401)


async def test_admin_cannot_lock_themselves_out(client, admin):
    for body in ({"role": "user"}, {"is_active": False}):
        response = await client.patch(f"/api/v1/admin/users/{admin.id}", json=body, headers=admin.headers)
        await assert_problem(response, 409)


@pytest.mark.parametrize("body, field", [({"role": "owner"}, "role"), ({"is_active": "nope"}, "is_active"),
                                         ({"email": "x@example.com"}, "email"), ({"role": None}, "role")])
async def test_update_user_validation(client, admin, make_user, body, field):
    user = await make_user()
    await assert_problem(await client.patch(f"/api/v1/admin/users/{user.id}", json=body, headers=admin.headers),
                         422, field)


async def test_update_unknown_user_is_404(client, admin):
    await assert_problem(await client.patch("/api/v1/admin/users/424242", json={"role": "admin"},
                                            headers=admin.headers), 404)


async def test_stats_counts_users_and_tasks_by_status(client, admin, make_user):
    user = await make_user(active=False)
    await make_user(verified=False)
    for status in ("todo", "todo", "done"):
        await client.post("/api/v1/tasks", json={"title": "t", "status": status}, headers=admin.headers)
    await client.post("/api/v1/tasks", json={"title": "t"}, headers=user.headers)  # refused: inactive
    stats = await (await client.get("/api/v1/admin/stats", headers=admin.headers)).json()
    assert stats["users"] == {"total": 3, "active": 2, "admins": 1, "verified": 2}
    assert stats["tasks"] == {"todo": 2, "in_progress": 0, "done": 1}
    assert set(stats["emails"]) == {"pending", "sending", "sent", "failed"}
