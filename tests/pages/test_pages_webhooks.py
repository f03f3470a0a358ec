"""/webhooks without JavaScript: create (the secret shown once), refused URLs, ping, delete; another user's: 404."""
from __future__ import annotations

import re

from tests.pages.test_pages_session import csrf_of, sign_in


async def test_webhooks_page(client, make_user, db):
    eve = await make_user()
    ada = await make_user()
    await sign_in(client, ada.email)
    page = await client.get("/webhooks")
    assert page.status == 200 and "No webhooks yet." in await page.text()
    csrf = csrf_of(await page.text())
    refused = await client.post("/webhooks", data={"csrf_token": csrf, "url": "http://10.0.0.1/in"})
    assert refused.status == 422 and "https" in await refused.text()
    created = await client.post("/webhooks", data={"csrf_token": csrf, "url": "https://hooks.example.com/in",
                                                   "events": ["task.created", "comment.created"]})
    html = await created.text()
    assert created.status == 201 and created.headers["Cache-Control"] == "no-store"
    secret = re.search(r"whsec_[A-Za-z0-9+/=]+", html).group(0)
    assert "task.created, comment.created" in html
    again = await (await client.get("/webhooks")).text()
    assert secret not in again and "https://hooks.example.com/in" in again
    hook_id = await db.fetchval("SELECT id FROM webhooks")
    assert (await client.post(f"/webhooks/{hook_id}/ping", data={"csrf_token": csrf})).status == 200
    assert await db.fetchval("SELECT count(*) FROM webhook_deliveries WHERE event_type = 'ping'") == 1
    await client.post("/logout", data={"csrf_token": csrf})
    await sign_in(client, eve.email)
    eve_csrf = csrf_of(await (await client.get("/webhooks")).text())
    assert (await client.post(f"/webhooks/{hook_id}/delete", data={"csrf_token": eve_csrf})).status == 404
    await client.post("/logout", data={"csrf_token": eve_csrf})
    await sign_in(client, ada.email)
    assert (await client.post(f"/webhooks/{hook_id}/delete", data={"csrf_token": csrf_of(
        await (await client.get("/webhooks")).text())})).status == 200
    assert await db.fetchval("SELECT count(*) FROM webhooks") == 0
