"""Two people share a project in real Chromium: create, invite (the mail read from the sink), accept
without JavaScript, assign, comment; axe on every new page, a screenshot of each."""
from __future__ import annotations

import re

import pytest
from browser_helpers import PASSWORD, check_a11y, mail_link, shot
from playwright.async_api import expect

from tests.pages.test_browser_pages import make_user, sign_in

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_two_people_share_a_project_in_the_browser(new_page, live, stack):
    await make_user(live, "ada@example.com", name="Ada")
    await make_user(live, "bea@example.com", name="Bea")
    ada = await new_page()
    await sign_in(ada, "ada@example.com")
    await ada.get_by_role("link", name="Projects", exact=True).click()
    await expect(ada.get_by_role("heading", name="Projects", exact=True)).to_be_visible()
    await ada.get_by_label("Name", exact=True).fill("Garden")
    await ada.get_by_role("button", name="Create project").click()
    await expect(ada.get_by_role("heading", name="Garden", level=1)).to_be_visible()
    await ada.get_by_label("New task", exact=True).fill("Plant roses")
    await ada.get_by_role("button", name="Add task").click()
    await expect(ada.get_by_role("link", name="Plant roses")).to_be_visible()
    await ada.get_by_label("Email", exact=True).fill("bea@example.com")
    await ada.get_by_label("Role", exact=True).select_option("editor")
    await ada.get_by_role("button", name="Send invitation").click()
    await expect(ada.get_by_role("status")).to_contain_text("Invitation sent")
    await expect(ada.get_by_role("list", name="Pending invitations")).to_contain_text("bea@example.com")
    await check_a11y(ada, "project-owner")
    project_url = ada.url

    link = await mail_link(stack.smtp, "bea@example.com", "/invitations/accept")
    bea = await new_page(java_script_enabled=False)  # the whole acceptance works without JavaScript
    await bea.goto(link)
    await expect(bea).to_have_url(re.compile(r"/login\?next="))
    await bea.get_by_label("Email", exact=True).fill("bea@example.com")
    await bea.get_by_label("Password", exact=True).fill(PASSWORD)
    await bea.get_by_role("button", name="Sign in").click()
    await expect(bea.get_by_role("heading", name="Join a project")).to_be_visible()
    await shot(bea, "invitation-accept-no-js")  # axe needs JavaScript: it runs on the same page below
    await bea.get_by_role("button", name="Join the project").click()
    await expect(bea.get_by_role("heading", name="Garden", level=1)).to_be_visible()
    await expect(bea.get_by_text("your role: editor")).to_be_visible()
    await expect(bea.get_by_role("heading", name="Settings")).to_have_count(0)  # not offered to an editor
    await shot(bea, "project-editor-no-js")
    bea_js = await new_page()
    await sign_in(bea_js, "bea@example.com")
    await bea_js.goto(link)  # spent now: the page says so, and changes nothing
    await bea_js.get_by_role("button", name="Join the project").click()
    await expect(bea_js.get_by_role("alert")).to_contain_text("already used")
    await check_a11y(bea_js, "invitation-accept")
    await bea_js.goto(project_url)
    await check_a11y(bea_js, "project-editor")
    await bea_js.get_by_role("link", name="Projects", exact=True).click()
    await check_a11y(bea_js, "projects")

    await ada.goto(project_url)
    await ada.get_by_role("link", name="Plant roses").click()
    await ada.get_by_label("Assignee", exact=True).select_option(label="Bea")
    await ada.get_by_role("button", name="Save changes").click()
    await expect(ada.get_by_role("status")).to_contain_text("Task saved")
    await ada.get_by_label("Add a comment", exact=True).fill("Use compost, please")
    await ada.get_by_role("button", name="Comment").click()
    await expect(ada.get_by_role("article")).to_contain_text("Use compost, please")
    await check_a11y(ada, "task-with-comments")
    assigned = await mail_link(stack.smtp, "bea@example.com", "/tasks/")
    await bea.goto(assigned)
    await expect(bea.get_by_role("article")).to_contain_text("Use compost, please")
    await expect(bea.locator("dd").filter(has_text="Bea")).to_be_visible()
