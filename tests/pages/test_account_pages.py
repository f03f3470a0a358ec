"""The pages opened from emailed links (no JavaScript needed)."""
from __future__ import annotations

import json

from tests.helpers import login, mailed_tokens, register, request_reset
from tests.pages.test_pages_session import csrf_of


async def _token(db, template: str) -> str:
    return json.loads(await db.fetchval("SELECT context FROM email_outbox WHERE template = $1", template))["token"]


async def test_verify_page_confirms_on_post_not_on_get(client, db):
    await register(client)
    token = await _token(db, "verify_email")
    page = await client.get(f"/verify-email?token={token}")
    assert page.status == 200 and "text/html" in page.content_type
    assert f'value="{token}"' in await page.text()
    assert await db.fetchval("SELECT email_verified FROM users") is False  # a prefetch spends nothing
    csrf = csrf_of(await page.text())
    forged = await client.post("/verify-email", data={"token": token})
    assert forged.status == 403 and await db.fetchval("SELECT email_verified FROM users") is False
    done = await client.post("/verify-email", data={"token": token, "csrf_token": csrf})
    assert done.status == 200 and "confirmed" in await done.text()
    assert await db.fetchval("SELECT email_verified FROM users") is True
    again = await client.post("/verify-email", data={"token": token, "csrf_token": csrf})
    assert again.status == 422 and "invalid, already used or expired" in await again.text()


async def test_pages_without_a_token_explain_themselves(client):
    # /reset-password with no token at all is the "Forgot your password?" form (tests/test_pages_everyday.py).
    for path in ("/verify-email", "/verify-email?token=", "/reset-password?token="):
        response = await client.get(path)
        assert response.status == 400 and "incomplete" in await response.text()


async def test_token_is_escaped_in_the_page(client):
    page = await client.get('/reset-password?token="><script>alert(1)</script>')
    assert "<script>alert(1)" not in await page.text()


async def test_reset_page_sets_the_password(client, db, settings, stack):
    await register(client)
    await request_reset(client, settings)
    [token] = mailed_tokens(stack, "/reset-password")
    csrf = csrf_of(await (await client.get(f"/reset-password?token={token}")).text())
    form = {"token": token, "csrf_token": csrf}
    short = await client.post("/reset-password", data={**form, "password": "short"})
    assert short.status == 422 and "between 8 and 128" in await short.text()
    done = await client.post("/reset-password", data={**form, "password": "fresh password 1"})
    assert done.status == 200 and "changed" in await done.text()
    assert await login(client, password="fresh password 1")
    spent = await client.post("/reset-password", data={**form, "password": "fresh password 2"})
    assert spent.status == 422
