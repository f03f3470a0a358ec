"""Security headers: nosniff everywhere, a strict policy on HTML, no Referer from token pages, HSTS on https."""
from __future__ import annotations

import base64
import hashlib
import shutil
from html.parser import HTMLParser

import pytest

from web.app import create_app
from web.security_headers import build_policy, inline_hashes


def directives(policy: str) -> dict[str, list[str]]:
    parsed = {}
    for part in policy.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


class Blocks(HTMLParser):
    """Every <script> and <style> of a page: (tag, attributes, inline text), plus style= attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks: list[list] = []
        self.style_attributes = 0
        self._open: list | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.style_attributes += "style" in attributes
        if any(name.startswith("on") for name in attributes):
            self.style_attributes += 1000  # inline event handlers: never allowed
        if tag in ("script", "style"):
            self._open = [tag, attributes, ""]
            self.blocks.append(self._open)

    def handle_data(self, data):
        if self._open is not None:
            self._open[2] += data

    def handle_endtag(self, tag):
        self._open = None


def sha256(text: str) -> str:
    return f"'sha256-{base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()}'"


async def assert_page_allowed_by_its_policy(response) -> None:
    """Each script/style of the page would run under the page's own Content-Security-Policy."""
    policy = directives(response.headers["Content-Security-Policy"])
    page = Blocks()
    page.feed(await response.text())
    assert page.style_attributes == 0
    for tag, attributes, text in page.blocks:
        allowed = policy[f"{tag}-src"]
        if tag == "script" and "src" in attributes:
            assert attributes["src"].startswith("/") and not attributes["src"].startswith("//"), attributes
            assert "'self'" in allowed
        else:
            assert sha256(text) in allowed, (tag, text[:80])
    assert "'unsafe-inline'" not in policy["script-src"] and "'unsafe-eval'" not in policy["script-src"]
    assert "'unsafe-inline'" not in policy["style-src"]


async def test_every_response_says_nosniff(client, make_user):
    user = await make_user()
    for path in ("/health", "/metrics", "/api/v1/openapi.json", "/api/v1/users/me", "/nope",
                 "/api/docs/static/swagger-ui.css"):
        response = await client.get(path, headers=user.headers)
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
        assert "Content-Security-Policy" not in response.headers or response.content_type == "text/html", path


async def test_html_pages_get_a_strict_policy(client, make_user):
    admin = await make_user(role="admin")
    for path in ("/api/docs", "/verify-email?token=abc", "/reset-password?token=abc", "/reports/summary",
                 "/reports/admin-activity"):
        response = await client.get(path, headers=admin.headers)
        assert response.status == 200 and response.content_type == "text/html", path
        policy = directives(response.headers["Content-Security-Policy"])
        assert policy["default-src"] == ["'self'"] and policy["frame-ancestors"] == ["'none'"]
        assert policy["object-src"] == ["'none'"] and policy["base-uri"] == ["'none'"]
        assert response.headers["X-Frame-Options"] == "DENY"
        await assert_page_allowed_by_its_policy(response)


async def test_error_pages_are_html_with_the_policy_too(client):
    response = await client.get("/no/such/page", headers={"Accept": "text/html"})
    assert response.status == 404 and response.content_type == "text/html"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    await assert_page_allowed_by_its_policy(response)


async def test_referrer_policy_hides_token_urls(client, make_user):
    user = await make_user()
    for path in ("/verify-email?token=abc", "/reset-password?token=abc", "/reset-password", "/verify-email/"):
        assert (await client.get(path)).headers["Referrer-Policy"] == "no-referrer", path
    response = await client.post("/reset-password", data={"token": "abc", "password": "x"})
    assert response.headers["Referrer-Policy"] == "no-referrer"
    for path in ("/api/docs", "/reports/summary", "/health"):
        assert (await client.get(path, headers=user.headers)).headers["Referrer-Policy"] == "same-origin", path


async def test_hsts_only_when_public_url_is_https(aiohttp_client, client, settings):
    assert "Strict-Transport-Security" not in (await client.get("/health")).headers
    https = await aiohttp_client(create_app(settings.with_(public_url="https://tasks.example.com")))
    for path in ("/health", "/api/docs", "/nope"):
        assert "max-age=31536000" in (await https.get(path)).headers["Strict-Transport-Security"], path


def test_injected_inline_blocks_are_not_hashed():
    trusted = "<style>p { color: red }</style><script>init()</script><script src='/a.js'> </script>"
    policy = directives(build_policy([trusted]))
    assert sha256("init()") in policy["script-src"] and sha256("p { color: red }") in policy["style-src"]
    assert sha256(" ") not in policy["script-src"]  # the body of a src= script is not executed
    assert sha256("alert(1)") not in policy["script-src"]
    assert inline_hashes("<script>{{ user_input }}</script>") == {"script": set(), "style": set()}


async def test_overlong_path_segment_is_404_not_500(client):
    response = await client.get("/api/docs/static/" + "A" * 300)
    assert response.status == 404


CHROMIUM = shutil.which("chromium")


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium)")
async def test_swagger_ui_renders_under_the_policy(client):
    """In a real browser: no CSP violation, and Swagger UI draws the operations of our document."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page()
            violations: list[str] = []
            page.on("console", lambda message: violations.append(message.text)
                    if "Content Security Policy" in message.text else None)
            await page.goto(str(client.make_url("/api/docs")))
            await page.wait_for_selector(".opblock-summary-path", timeout=30_000)
            assert await page.locator(".opblock").count() > 10
            assert violations == []
        finally:
            await browser.close()
