"""Browser checks beyond the first visit: admin, sessions ending, CSRF, no JavaScript, a phone, the account."""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from tests.pages.browser_helpers import PASSWORD, check_a11y, mail_link, shot
from playwright.async_api import expect

from shared.security import hash_password

pytestmark = pytest.mark.asyncio(loop_scope="session")
PHONE = {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True}


async def make_user(live, email: str, role: str = "user", name: str = "") -> int:
    password_hash = await hash_password(PASSWORD, live.settings)
    rows = await live.sql("INSERT INTO users (email, name, password_hash, role, email_verified) "
                          "VALUES ($1, $2, $3, $4, true) RETURNING id", email, name, password_hash, role)
    return int(rows[0]["id"])


async def sign_in(page, email: str, password: str = PASSWORD) -> None:
    await page.goto("/login")
    await page.get_by_label("Email", exact=True).fill(email)
    await page.get_by_label("Password", exact=True).fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Tasks", exact=True)).to_be_visible()


async def test_admin_deactivates_a_user_whose_open_session_ends(new_page, live):
    await make_user(live, "root@example.com", role="admin", name="Root")
    bob_id = await make_user(live, "bob@example.com", name="Bob")
    for n in range(3):
        await make_user(live, f"extra{n}@example.com")
    bob = await new_page()
    await sign_in(bob, "bob@example.com")
    await bob.goto("/admin")
    await expect(bob.get_by_role("heading", name="Forbidden")).to_be_visible()  # not an admin: the 403 page
    await check_a11y(bob, "error-403")

    admin = await new_page()
    await sign_in(admin, "root@example.com")
    await admin.get_by_role("link", name="Admin").click()
    await expect(admin.locator("table.users tbody tr")).to_have_count(5)
    await check_a11y(admin, "admin")
    await admin.get_by_role("link", name="Activity report").click()  # the report's web page, by session
    await expect(admin.get_by_role("heading", level=1)).to_contain_text("ctivity")
    await check_a11y(admin, "report-admin-activity")
    await admin.go_back()
    await admin.get_by_label("Email or name contains", exact=True).fill("bob")
    await admin.get_by_role("button", name="Search").click()
    await expect(admin.locator("table.users tbody tr")).to_have_count(1)
    await admin.get_by_text("Deactivate…").click()  # a confirmation step first (a <details>, no JavaScript)
    await admin.get_by_role("button", name="Yes, deactivate bob@example.com").click()
    await expect(admin.get_by_role("status")).to_contain_text("bob@example.com is now user, deactivated")
    await expect(admin.locator(f"#user-{bob_id}")).to_contain_text("deactivated")

    await bob.goto("/tasks")  # Bob's open session ended at once
    await expect(bob).to_have_url(re.compile(r"/login"))
    await bob.get_by_label("Email", exact=True).fill("bob@example.com")
    await bob.get_by_label("Password", exact=True).fill(PASSWORD)
    await bob.get_by_role("button", name="Sign in").click()
    await expect(bob.get_by_role("alert")).to_contain_text("deactivated")

    await admin.get_by_role("button", name="Activate bob@example.com").click()
    await expect(admin.get_by_role("status")).to_contain_text("is now user, active")
    await admin.get_by_label("Role of bob@example.com").select_option("admin")
    await admin.get_by_role("button", name="Set role of bob@example.com").click()
    await expect(admin.get_by_role("status")).to_contain_text("bob@example.com is now admin")
    # The admin's own row offers neither role nor deactivation; a hand-made post is still refused.
    await admin.goto("/admin?q=root")
    await expect(admin.get_by_label("Role of root@example.com")).to_have_count(0)
    root_id = (await live.sql("SELECT id FROM users WHERE email = 'root@example.com'"))[0]["id"]
    token = await admin.locator("meta[name=csrf-token]").get_attribute("content")
    await admin.request.post(f"/admin/users/{root_id}", form={"csrf_token": token, "role": "user"},
                             max_redirects=0)
    await admin.goto("/admin?q=root")
    await expect(admin.get_by_role("alert")).to_contain_text("cannot demote or deactivate themselves")


async def test_csrf_refusals_in_the_browser(new_page, live):
    await make_user(live, "eve@example.com")
    page = await new_page()
    await sign_in(page, "eve@example.com")
    # A form whose token was tampered with: the 403 page, nothing created.
    await page.locator("#new-task input[name=csrf_token]").evaluate("input => input.value = 'forged'")
    await page.get_by_label("Title", exact=True).fill("Forged")
    await page.get_by_role("button", name="Create task").click()
    await expect(page.get_by_role("heading", name="Forbidden")).to_be_visible()
    await expect(page.locator("main")).to_contain_text("security token")
    assert not await live.sql("SELECT 1 FROM tasks")
    # The JSON API with the session cookie but no token: 403 problem+json; with the page's token it works.
    refused = await page.evaluate("""async () => {
        const r = await fetch('/api/v1/tasks', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                                body: JSON.stringify({title: 'no token'})});
        return {status: r.status, type: r.headers.get('content-type'), body: await r.json()};
    }""")
    assert refused["status"] == 403 and refused["type"].startswith("application/problem+json")
    assert refused["body"]["status"] == 403
    await page.goto("/tasks")
    accepted = await page.evaluate("""async () => {
        const token = document.querySelector('meta[name=csrf-token]').content;
        const r = await fetch('/api/v1/tasks', {method: 'POST', body: JSON.stringify({title: 'with token'}),
                                                headers: {'Content-Type': 'application/json', 'X-CSRF-Token': token}});
        return r.status;
    }""")
    assert accepted == 201


async def test_main_forms_work_without_javascript(new_page, live):
    user_id = await make_user(live, "nojs@example.com")
    page = await new_page(java_script_enabled=False)
    await sign_in(page, "nojs@example.com")
    await page.get_by_label("Title", exact=True).fill("Water the plants")
    await page.get_by_label("Due", exact=True).fill("2030-01-02T08:00")
    await page.get_by_role("button", name="Create task").click()
    await expect(page.get_by_role("status")).to_contain_text("created")
    due = (await live.sql("SELECT due_at FROM tasks WHERE owner_id = $1", user_id))[0]["due_at"]
    assert due.isoformat() == "2030-01-02T08:00:00+00:00"  # no JavaScript: the form's zone is UTC
    await expect(page.locator("li.task time")).to_contain_text("2030-01-02 08:00 UTC")
    # Inline status: the "Set" button submits the small form.
    await page.get_by_label("Status of Water the plants").select_option("in_progress")
    await page.get_by_role("button", name="Set").click()
    await expect(page.get_by_role("status")).to_contain_text("is now in progress")
    # Edit, then delete through the confirmation page.
    await page.get_by_role("link", name="Water the plants").click()
    await page.get_by_label("Title", exact=True).fill("")
    await page.get_by_role("button", name="Save changes").click()
    await expect(page.locator("#title-error")).to_be_visible()
    await page.get_by_label("Title", exact=True).fill("Water the garden")
    await page.get_by_role("button", name="Save changes").click()
    await expect(page.get_by_role("status")).to_contain_text("Task saved.")
    # An export without JavaScript: the page offers "Reload now" (and refreshes itself through a <noscript>
    # meta refresh, which Chromium ignores when scripts are merely disabled by the test) until it is ready.
    await page.goto("/exports")
    await page.get_by_role("button", name="Request export").click()
    status = page.locator("li.job .js-job-status")
    for _ in range(100):
        if await status.text_content() == "succeeded":
            break
        await page.get_by_role("link", name="Reload now").click()
    await expect(status).to_have_text("succeeded")
    async with page.expect_download() as info:
        await page.locator("li.job").get_by_role("link", name=re.compile("Download")).click()
    rows = list(csv.DictReader(io.StringIO(Path(await (await info.value).path()).read_text(encoding="utf-8"))))
    assert [row["title"] for row in rows] == ["Water the garden"]
    await shot(page, "nojs-exports")
    await page.goto("/tasks")
    await page.get_by_role("link", name="Water the garden").click()
    await page.get_by_role("link", name="Delete…").click()
    await page.get_by_role("button", name="Delete task").click()
    await expect(page.get_by_text("No tasks yet — create one.")).to_be_visible()
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("status")).to_contain_text("signed out")


async def test_phone_viewport(new_page, live):
    user_id = await make_user(live, "phone@example.com", role="admin")
    await live.sql("INSERT INTO tasks (owner_id, title, priority, tags, due_at) VALUES "
                   "($1, 'A rather long task title that has to wrap on a small phone screen', 'urgent', "
                   "ARRAY['phone','wrap'], now() + interval '2 days')", user_id)
    page = await new_page(**PHONE)
    await page.goto("/login")
    await check_a11y(page, "phone-login")
    await sign_in(page, "phone@example.com")
    for path, name in (("/tasks", "phone-tasks"), ("/exports", "phone-exports"), ("/admin", "phone-admin"),
                       ("/account", "phone-account")):
        await page.goto(path)
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 360, f"{path} scrolls sideways on a phone ({width}px)"
        await check_a11y(page, name)
    task_id = (await live.sql("SELECT id FROM tasks"))[0]["id"]
    await page.goto(f"/tasks/{task_id}")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 360
    await check_a11y(page, "phone-task")


async def test_account_page_and_password_reset(new_page, live, stack):
    await make_user(live, "carol@example.com", name="Carol")
    other = await new_page()
    await sign_in(other, "carol@example.com")
    page = await new_page()
    await sign_in(page, "carol@example.com")
    await page.get_by_role("link", name="Account").click()
    await check_a11y(page, "account")
    await page.get_by_label("Name", exact=True).fill("Carol Danvers")
    await page.get_by_role("button", name="Save name").click()
    await expect(page.get_by_role("status")).to_contain_text("Your name is saved.")
    await expect(page.get_by_label("Name", exact=True)).to_have_value("Carol Danvers")
    await page.get_by_label("Current password", exact=True).fill("not my password")
    await page.get_by_label("New password", exact=True).fill("a brand new password")
    await page.get_by_role("button", name="Change password").click()
    await expect(page.locator("#current_password-error")).to_contain_text("Incorrect password")
    await page.get_by_label("Current password", exact=True).fill(PASSWORD)
    await page.get_by_label("New password", exact=True).fill("a brand new password")
    await page.get_by_role("button", name="Change password").click()
    await expect(page.get_by_role("status")).to_contain_text("other sessions were signed out")
    await other.goto("/tasks")  # the other browser's session ended with the password change
    await expect(other).to_have_url(re.compile(r"/login"))

    await page.goto("/logout")
    await check_a11y(page, "logout")
    await page.goto("/account")
    await page.get_by_role("button", name="Sign out everywhere").click()
    await expect(page.get_by_role("status")).to_contain_text("signed out on every device")
    await page.goto("/account")
    await expect(page).to_have_url(re.compile(r"/login\?next="))

    # The reset link from the mail opens a page in the same layout and ends every session.
    await page.request.post("/api/v1/auth/password-reset", data={"email": "carol@example.com"})
    link = await mail_link(stack.smtp, "carol@example.com", "/reset-password")
    await page.goto(link)
    await check_a11y(page, "reset-password")
    await page.get_by_label("New password", exact=True).fill("reset password 123")
    await page.get_by_role("button", name="Set new password").click()
    await expect(page.get_by_role("status")).to_contain_text("Your password has been changed")
    await sign_in(page, "carol@example.com", "reset password 123")


async def test_register_page_and_not_found(new_page, live):
    page = await new_page()
    await page.goto("/register")
    await check_a11y(page, "register")
    await page.goto("/no-such-page")
    await expect(page.get_by_role("heading", name="Not Found")).to_be_visible()
    await check_a11y(page, "error-404-signed-out")


async def test_keyboard_only_sign_in_and_task(new_page, live):
    await make_user(live, "keys@example.com")
    page = await new_page()
    await page.goto("/login")
    await expect(page.get_by_label("Email")).to_be_focused()  # autofocus lands after load: wait for it
    await page.keyboard.press("Tab")  # focus starts in the email field (autofocus); a Tab moves on
    await page.keyboard.press("Shift+Tab")
    await page.keyboard.type("keys@example.com")
    await page.keyboard.press("Tab")
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Tasks", exact=True)).to_be_visible()
    await page.goto("/tasks")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
    await page.get_by_label("Title", exact=True).focus()
    await page.keyboard.type("Typed, never clicked")
    await page.keyboard.press("Enter")  # Enter in a text field submits its form
    await expect(page.get_by_role("status")).to_contain_text("Typed, never clicked")
