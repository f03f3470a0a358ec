"""maxLength in the OpenAPI document is a limit on what is sent: white space around an over-long value does
not carry it past the limit by being trimmed first (schemathesis found a 101-character name accepted)."""
from __future__ import annotations

from tests.helpers import assert_problem


async def test_a_padded_name_over_the_limit_is_refused(client):
    response = await client.post("/api/v1/auth/register", json={
        "email": "pad@example.com", "password": "correct horse battery", "name": "\x1f" + "n" * 100})
    await assert_problem(response, 422, "name")
    fits = await client.post("/api/v1/auth/register", json={
        "email": "pad@example.com", "password": "correct horse battery", "name": " " + "n" * 99})
    assert fits.status == 201 and (await fits.json())["name"] == "n" * 99


async def test_a_padded_title_or_tag_over_the_limit_is_refused(client, make_user):
    user = await make_user()
    for body, field in (({"title": " " + "t" * 200}, "title"), ({"title": "ok", "tags": ["\t" + "g" * 50]}, "tags")):
        await assert_problem(await client.post("/api/v1/tasks", json=body, headers=user.headers), 422, field)
    fits = await client.post("/api/v1/tasks", json={"title": " " + "t" * 198 + " ", "tags": [" " + "g" * 49]},
                             headers=user.headers)
    assert fits.status == 201
    assert (await fits.json())["title"] == "t" * 198
