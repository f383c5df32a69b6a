"""A centre's team, tried in a real browser (Chromium) as a centre would: an admin invites a
receptionist on the team page, the invitation is read from a real SMTP server on loopback, the
receptionist sets a password and logs in, forgets it and resets it through /staff/forgot (the old
session ends), and the admin deactivates her while her session is open, which then stops working.
CSRF is on, as in production. (The second factor's part of this walk belongs to its own tests.)
"""
from __future__ import annotations

import re

import pytest
from browser_helpers import CHROMIUM, CHROMIUM_ARGS, LAPTOP, live_server, require_chromium
from conftest import CENTRE
from playwright.sync_api import expect, sync_playwright
from test_notify import Server, settle

from screening import create_app
from screening.store import accounts
from screening.store import db as dbmod

ADMIN = "admin@centre.example"
RECEPTIONIST = "recepcio@centre.example"
PASSWORD = "correct horse battery staple"
FIRST = "the receptionist's first passphrase"
SECOND = "the receptionist's second passphrase"


@pytest.fixture(scope="module")
def mail():
    s = Server()
    s.start()
    yield s
    settle()
    s.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory, mail):
    require_chromium()
    database = tmp_path_factory.mktemp("team") / "team.db"
    app = create_app({"SECRET_KEY": "browser-team-secret-" + "x" * 32, "DATABASE": str(database),
                      "WTF_CSRF_ENABLED": True, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": mail.port,
                      "NOTIFY_FROM": "screening@centre.example", "STAFF_2FA": "off"})
    conn = dbmod.connect(database)
    try:
        accounts.create_staff(conn, email=ADMIN, password=PASSWORD, name="Sam Admin", role="admin", centre=CENTRE)
    finally:
        conn.close()
    with live_server(app) as url:
        app.config["BASE_URL"] = url        # the links are built from it, as in production
        yield url


@pytest.fixture(scope="module")
def browser(site):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def new_page(browser, site):
    context = browser.new_context(base_url=site, viewport=LAPTOP, locale="en-GB")
    context.set_default_timeout(5000)
    return context.new_page()


def log_in(page, email, password):
    page.goto("/staff/login")
    page.fill("#email", email)
    page.fill("#password", password)
    page.get_by_role("button", name="Log in").click()


def next_link(mail, count):
    """The link in the `count`-th message the SMTP server received."""
    mail.inbox.wait_until(lambda inbox: len(inbox.messages) >= count)
    message = mail.inbox.messages[count - 1]
    assert message["To"] == RECEPTIONIST
    return re.search(r"https?://\S+", message.get_content()).group(0)


def test_a_receptionist_is_invited_sets_a_password_resets_it_and_is_deactivated(browser, site, mail):
    admin = new_page(browser, site)
    log_in(admin, ADMIN, PASSWORD)
    admin.get_by_role("link", name="Team").click()
    admin.fill("#invite-email", RECEPTIONIST)
    admin.fill("#invite-name", "Rita Recepció")
    admin.select_option("#invite-language", "en")
    admin.get_by_role("button", name="Send the invitation").click()
    expect(admin.locator("[data-notice]")).to_contain_text("Invitation sent")
    expect(admin.locator(f"[data-invitation='{RECEPTIONIST}']")).to_be_visible()

    # the invitation, read from the mail server, opened in the receptionist's own browser
    link = next_link(mail, 1)
    assert link.startswith(site + "/staff/invitation/")
    rita = new_page(browser, site)
    rita.goto(link)
    expect(rita.locator("#name")).to_have_value("Rita Recepció")
    rita.fill("#new_password", FIRST)
    rita.fill("#new_password_again", FIRST)
    rita.get_by_role("button", name="Create my account").click()
    expect(rita.locator("[data-notice]")).to_contain_text("Your account is ready")
    log_in(rita, RECEPTIONIST, FIRST)
    expect(rita.get_by_text("Logged in as Rita Recepció")).to_be_visible()
    admin.reload()
    expect(admin.locator(f"[data-invitation='{RECEPTIONIST}']")).to_have_count(0)
    expect(admin.locator(f"[data-member='{RECEPTIONIST}']")).to_contain_text("Staff member")

    # she forgets her password: /staff/forgot from the login page of another browser
    other = new_page(browser, site)
    other.goto("/staff/login")
    other.get_by_role("link", name="Forgotten password?").click()
    other.fill("#email", RECEPTIONIST)
    other.get_by_role("button", name="Send me a link").click()
    expect(other.locator("[data-notice]")).to_contain_text("If this address has an account")
    link = next_link(mail, 2)
    assert link.startswith(site + "/staff/reset/")
    other.goto(link)
    other.fill("#new_password", SECOND)
    other.fill("#new_password_again", "not the same passphrase")
    other.get_by_role("button", name="Set the new password").click()
    expect(other.locator("#error-summary")).to_contain_text("The two new passwords are not the same")
    other.fill("#new_password", SECOND)
    other.fill("#new_password_again", SECOND)
    other.get_by_role("button", name="Set the new password").click()
    expect(other.locator("[data-notice]")).to_contain_text("Your new password is set")
    rita.goto("/staff/")                       # the session from before the reset has ended
    expect(rita.locator("#password")).to_be_visible()
    other.goto(link)                           # the link worked once
    expect(other.locator("[data-link-gone]")).to_be_visible()
    log_in(other, RECEPTIONIST, SECOND)
    expect(other.get_by_text("Logged in as Rita Recepció")).to_be_visible()

    # the admin deactivates her while her session is open: her next page is the login
    admin.reload()
    admin.locator(f"[data-member='{RECEPTIONIST}']").get_by_role("button", name="Deactivate").click()
    expect(admin.locator("[data-notice]")).to_contain_text("The account is deactivated")
    other.goto("/staff/")
    expect(other.locator("#password")).to_be_visible()
    log_in(other, RECEPTIONIST, SECOND)
    expect(other.locator("#error-summary")).to_be_visible()
