"""A centre's team, tried in a real browser (Chromium) as a centre would, on both engines (issue 15's
"done means"): an admin, logging in with a second factor, invites a receptionist on the team page;
the invitation is read from a real SMTP server on loopback; the receptionist sets a password and,
as the centre asks everyone for one (SCREENING_STAFF_2FA=everyone), a second factor, and logs in;
she forgets her password and resets it through /staff/forgot (the old session ends), logs in with a
code, then loses her phone and logs in with a recovery code; an attacker's wrong guesses at her
e-mail lock strangers out but not her own browser; the admin deactivates her while her session is
open, which then stops working. CSRF is on, as in production.
"""
from __future__ import annotations

import re
import time

import pyotp
import pytest
from browser_helpers import CHROMIUM, CHROMIUM_ARGS, LAPTOP, live_server, require_chromium, set_up_second_factor
from conftest import CENTRE, give_second_factor
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
SECRET_KEY = "browser-team-secret-" + "x" * 32
MAX_FAILURES = 5


@pytest.fixture(scope="module")
def mail():
    s = Server()
    s.start()
    yield s
    settle()
    s.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request, tmp_path_factory, mail):
    """The app on a real server on either engine, with one admin who has a second factor (its
    TOTP secret is `site.admin_totp`)."""
    require_chromium()
    if request.param == "sqlite":
        target, drop = str(tmp_path_factory.mktemp("team") / "team.db"), None
    else:
        from postgres_server import create_database, drop_database
        server = request.getfixturevalue("postgres_url")
        template = request.getfixturevalue("postgres_template")
        target = create_database(server, "browser_team", template=template)
        drop = (drop_database, server, "browser_team")
    app = create_app({"SECRET_KEY": SECRET_KEY, "DATABASE_URL" if drop else "DATABASE": target,
                      "WTF_CSRF_ENABLED": True, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": mail.port,
                      "NOTIFY_FROM": "screening@centre.example", "STAFF_2FA": "everyone",
                      "LOGIN_MAX_FAILURES": MAX_FAILURES})
    conn = dbmod.connect(target)
    try:
        admin = accounts.create_staff(conn, email=ADMIN, password=PASSWORD, name="Sam Admin", role="admin",
                                      centre=CENTRE)
        secret = give_second_factor(conn, admin, SECRET_KEY)
    finally:
        conn.close()
    with live_server(app) as url:
        app.config["BASE_URL"] = url        # the links are built from it, as in production
        yield type("Site", (), {"url": url, "admin_totp": pyotp.TOTP(secret)})
    if drop:
        from screening.store import engine_postgres
        engine_postgres.close_pools(target)
        drop[0](drop[1], drop[2])


@pytest.fixture(scope="module")
def browser(site):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def new_page(browser, site):
    context = browser.new_context(base_url=site.url, viewport=LAPTOP, locale="en-GB")
    context.set_default_timeout(5000)
    return context.new_page()


def log_in(page, email, password):
    """The login form; returns the status of the page it leads to."""
    page.goto("/staff/login")
    page.fill("#email", email)
    page.fill("#password", password)
    with page.expect_navigation() as arrived:
        page.get_by_role("button", name="Log in").click()
    return arrived.value.status if arrived.value else None


def type_code(page, code):
    """The login's second step: the code page after a right password."""
    expect(page).to_have_url(re.compile(r"/staff/login/code"))
    page.fill("#code", code)
    page.locator("form.login-form button[type=submit]").click()


def next_link(mail, count):
    """The link in the `count`-th message the SMTP server received."""
    mail.inbox.wait_until(lambda inbox: len(inbox.messages) >= count)
    message = mail.inbox.messages[count - 1]
    assert message["To"] == RECEPTIONIST
    return re.search(r"https?://\S+", message.get_content()).group(0)


def test_a_receptionist_is_invited_sets_up_a_second_factor_resets_her_password_and_is_deactivated(
        browser, site, mail):
    sent_before = len(mail.inbox.messages)      # the module runs once per engine, on one mail server
    admin = new_page(browser, site)
    log_in(admin, ADMIN, PASSWORD)
    type_code(admin, site.admin_totp.now())
    expect(admin.get_by_text("Logged in as Sam Admin")).to_be_visible()
    admin.get_by_role("link", name="Team").click()
    admin.fill("#invite-email", RECEPTIONIST)
    admin.fill("#invite-name", "Rita Recepció")
    admin.select_option("#invite-language", "en")
    admin.get_by_role("button", name="Send the invitation").click()
    expect(admin.locator("[data-notice]")).to_contain_text("Invitation sent")
    expect(admin.locator(f"[data-invitation='{RECEPTIONIST}']")).to_be_visible()

    # the invitation, read from the mail server, opened in the receptionist's own browser
    link = next_link(mail, sent_before + 1)
    assert link.startswith(site.url + "/staff/invitation/")
    rita = new_page(browser, site)
    rita.goto(link)
    expect(rita.locator("#name")).to_have_value("Rita Recepció")
    rita.fill("#new_password", FIRST)
    rita.fill("#new_password_again", FIRST)
    rita.get_by_role("button", name="Create my account").click()
    expect(rita.locator("[data-notice]")).to_contain_text("Your account is ready")

    # her first login: the centre asks everyone for a second factor before any other page
    log_in(rita, RECEPTIONIST, FIRST)
    expect(rita.locator("[data-second-factor-required]")).to_be_visible()
    rita.goto("/staff/")
    expect(rita.locator("[data-second-factor-required]")).to_be_visible()
    totp, codes = set_up_second_factor(rita)
    rita.goto("/staff/")
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
    link = next_link(mail, sent_before + 2)
    assert link.startswith(site.url + "/staff/reset/")
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
    log_in(other, RECEPTIONIST, SECOND)         # the new password, then the app's next code
    type_code(other, totp.at(time.time() + 30))  # (the set-up used this step's: a code works once)
    expect(other.get_by_text("Logged in as Rita Recepció")).to_be_visible()

    # she loses her phone: a recovery code, typed where the code goes, gets her in
    other.get_by_role("button", name="Log out").click()
    log_in(other, RECEPTIONIST, SECOND)
    type_code(other, codes[0])
    expect(other.get_by_text("Logged in as Rita Recepció")).to_be_visible()
    other.get_by_role("button", name="Log out").click()

    # an attacker who knows her e-mail guesses from a browser of his own until he is refused...
    attacker = new_page(browser, site)
    statuses = [log_in(attacker, RECEPTIONIST, f"guess number {n}") for n in range(MAX_FAILURES + 1)]
    assert statuses[-1] == 429 and statuses[:MAX_FAILURES] == [200] * MAX_FAILURES
    # ...and even the right password from a browser the account does not know is refused now
    stranger = new_page(browser, site)
    assert log_in(stranger, RECEPTIONIST, SECOND) == 429
    # her own browser, known to her account, is judged on its own failures: she gets in
    log_in(other, RECEPTIONIST, SECOND)
    type_code(other, codes[1])
    expect(other.get_by_text("Logged in as Rita Recepció")).to_be_visible()
    admin.reload()
    expect(admin.locator(f"[data-member='{RECEPTIONIST}'] [data-throttled]")).to_be_visible()

    # the admin deactivates her while her session is open: her next page is the login
    admin.locator(f"[data-member='{RECEPTIONIST}']").get_by_role("button", name="Deactivate").click()
    expect(admin.locator("[data-notice]")).to_contain_text("The account is deactivated")
    other.goto("/staff/")
    expect(other.locator("#password")).to_be_visible()
    log_in(other, RECEPTIONIST, SECOND)
    expect(other.locator("#error-summary")).to_be_visible()
