"""The client's and the staff's pages in a real browser (Chromium): accessibility by axe-core, the
progressive reveal of follow-up questions, a phone-width layout, focus after a refused form, the CSP.

One server (werkzeug in a thread, CSRF on as in production) and one browser serve the whole module;
each test opens its own browser context, so cookies and viewport never leak between tests.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import browser_helpers
import pytest
from browser_helpers import (
    BLOCKING_IMPACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    LAPTOP,
    PHONE,
    RED_FLAGS,
    SMALL_PHONE,
    WIDTHS,
    ConsoleLog,
    answer_all_no,
    axe_violations,
    choose,
    describe,
    live_server,
    require_chromium,
    set_up_second_factor,
    share,
    submit,
    submit_any_language,
    tab_to,
)
from conftest import CENTRE, give_second_factor, totp_code
from playwright.sync_api import expect, sync_playwright

from screening import create_app
from screening.store import accounts, links, second_factor, withdrawal
from screening.store import db as dbmod
from screening.store import requests as data_requests
from screening.web import requests as request_pages

SLUGS = ["decontracting-back-massage", "back-massage", "decontracting-massage", "back-and-neck-massage",
         "deep-tissue-massage"]
FORM = "/screening/decontracting-back-massage"
STAFF_EMAIL = "admin@centre.example"
STAFF_PASSWORD = "correct horse battery staple"
LANGUAGES = ["en", "ca", "es"]
SECRET_KEY = "browser-test-secret-" + "x" * 32
# SCREENSHOTS=docs/screenshots (see the README) saves what the accessibility test looked at, per language
SCREENSHOTS = os.environ.get("SCREENSHOTS")
SCREENSHOT_PAGES = {"questionnaire", "questionnaire-refused", "result-proceed-shared", "result-tell-centre",
                    "result-consult-suggestions", "result-fever", "staff-dashboard", "staff-submission",
                    "staff-account", "staff-team"}


@dataclass
class Site:
    url: str
    submission_id: int
    database: Path
    invite_token: str = ""
    reset_token: str = ""
    print_path: str = ""        # the printable page of a recorded access request (web/requests.py)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The app on a real server, with an admin account and one shared submission already stored."""
    require_chromium()
    database = tmp_path_factory.mktemp("browser") / "browser.db"
    app = create_app({"SECRET_KEY": SECRET_KEY, "DATABASE": str(database),
                      "WTF_CSRF_ENABLED": True})
    conn = dbmod.connect(database)
    try:
        # an admin sees the longest staff menu, the hardest case for a phone-width header
        admin = accounts.create_staff(conn, email=STAFF_EMAIL, password=STAFF_PASSWORD, name="Sam Admin",
                                      role="admin", centre=CENTRE)
        give_second_factor(conn, admin, app.config["SECRET_KEY"])     # admins must have one (the default)
        # the team page with a colleague who has a second factor and is throttled, and a pending
        # invitation; the pages of an invitation link and of a reset link
        colleague = accounts.create_staff(conn, email="joan@centre.example", password=STAFF_PASSWORD,
                                          name="Joan Serra", centre=CENTRE)
        conn.execute("UPDATE staff SET totp_secret = 'sealed' WHERE id = ?", [colleague["id"]])
        for _ in range(5):
            accounts.attempt_login(conn, colleague["email"], "wrong", "127.0.0.3", max_failures=5, lock_seconds=900,
                                   secret=app.config["SECRET_KEY"])
        _, invite_token = links.invite(conn, admin=admin, email="nova@centre.example", name="Nova Vidal",
                                       role="staff", language="ca", mail=False)
        _, reset_token = links.send_reset(conn, staff_id=colleague["id"], centre=CENTRE, mail=False)
        reference, _ = dbmod.store_submission(conn, nonce="browser-nonce-1", record={
            "service": "decontracting-back-massage", "outcome": "consult_professional",
            "answers": {f: "no" for f in RED_FLAGS} | {"intense_pain": "yes", "professional_cleared": "no",
                                                      "pregnant": "no", "tension_areas": ["neck"],
                                                      "preferred_intensity": "light", "notes": "Left shoulder"},
            "fired_rules": [{"rule": "intense_pain", "outcome": "consult_professional", "not_sure": False,
                             "cleared": False}],
            "suggestions": ["neck_tension"], "rules_version": "test", "locale": "en",
            "name": "Ana Client", "contact": "ana@example.org", "consent_at": dbmod.now()}, centre=CENTRE)
        submission_id = dbmod.find_by_reference(conn, reference)["number"]   # as staff URLs name it
        # a screening its client took back, so that the dashboard lists it
        with dbmod.immediate(conn):
            dbmod.audit(conn, action=withdrawal.ACTION, reference="WDRN-2345", centre=CENTRE)
        # a session on another browser, so that My account lists one with its "End" button
        limits = {"max_failures": 5, "lock_seconds": 900}
        pending = accounts.attempt_login(conn, STAFF_EMAIL, STAFF_PASSWORD, "127.0.0.2", **limits,
                                         secret=app.config["SECRET_KEY"], browser="Samsung Internet/Android")
        assert second_factor.attempt_code(conn, pending.token, totp_code(conn, STAFF_EMAIL), "127.0.0.2", **limits,
                                          key=second_factor.derive_key(app.config["SECRET_KEY"])).staff
        # a recorded access request for that screening, for its printable page
        request_id = data_requests.record_access(
            conn, data_requests.DataRequest("access", "phone", date.today(), False),
            [dbmod.find_by_reference(conn, reference)["id"]], admin, centre=CENTRE)
        with app.test_request_context():
            signature = request_pages._signature(request_id, [submission_id])
    finally:
        conn.close()
    with live_server(app) as url:
        printable = f"/staff/requests/{request_id}/print?n={submission_id}&sig={signature}"
        yield Site(url, submission_id, database, invite_token, reset_token, printable)


@pytest.fixture(scope="module")
def browser(site):
    """Debian's Chromium, started once for the module."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def staff_state(browser, site):
    """The cookies of a staff member who logged in through the login form (a server-side session)."""
    context = browser.new_context(base_url=site.url)
    page = context.new_page()
    page.goto("/staff/login")
    page.fill("#email", STAFF_EMAIL)
    page.fill("#password", STAFF_PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
    page.fill("#code", code_of(site))         # the second factor's step
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
    assert page.url.rstrip("/").endswith("/staff"), page.url
    state = context.storage_state()
    context.close()
    return state


def code_of(site) -> str:
    """The admin's authenticator app's code, as the server will take it now."""
    conn = dbmod.connect(site.database)
    try:
        return totp_code(conn, STAFF_EMAIL)
    finally:
        conn.close()


@pytest.fixture
def open_page(browser, site):
    """open_page(viewport, staff=None, javascript=True) -> a fresh page (and its console log) in its own
    context; every context is closed after the test."""
    contexts = []

    def build(viewport=PHONE, *, staff=None, javascript=True):
        context = browser.new_context(base_url=site.url, viewport=viewport, storage_state=staff,
                                      java_script_enabled=javascript)
        contexts.append(context)
        context.set_default_timeout(5000)   # a missing element fails in seconds, not after 30
        page = context.new_page()
        return page, ConsoleLog(page)

    yield build
    for context in contexts:
        context.close()


# --- the pages, each reached the way a visitor reaches it, in a language (?lang=) ---------------------

def refused_form(page, site, lang="en"):
    """The questionnaire sent without an answer to intense_pain: the 422 page with the error summary."""
    page.goto(f"{FORM}?lang={lang}")
    answer_all_no(page, skip=("intense_pain",))
    submit_any_language(page)


def result_of(answers: dict[str, str], *, shared: bool = False, doc: str = ""):
    """A result page: every red flag "No", then `answers` clicked in order (a follow-up after the answer
    that reveals it), sent to the centre when `shared`."""
    def go(page, site, lang="en"):
        page.goto(f"{FORM}?lang={lang}")
        answer_all_no(page)
        for question, option in answers.items():
            choose(page, question, option)
        if shared:
            share(page)
        submit_any_language(page)
    go.__doc__ = doc
    return go


def visit(path):
    """A page reached by typing its address."""
    def go(page, site, lang="en"):
        page.goto(path.format(site=site) + f"?lang={lang}")
    go.__doc__ = f"GET {path}"
    return go


def withdrawing(step: str):
    """The withdrawal form filled and sent: with a pair that opens nothing ("refused"), with a
    screening's own pair (the confirmation, "confirm"), then confirmed ("done"). The screening is
    stored here, straight into the database, with a code of its own (no share limit spent)."""
    def go(page, site, lang="en"):
        reference, code = "ZZZZ-9999", withdrawal.new_code()
        if step != "refused":
            conn = dbmod.connect(site.database)
            try:
                stored = dbmod.store_screening(conn, nonce=f"withdraw-{step}-{lang}", centre=CENTRE, resend_within=0,
                                               withdrawal_key=withdrawal.key_from_secret(SECRET_KEY), record={
                    "service": "decontracting-back-massage", "outcome": "proceed", "answers": {"fever": "no"},
                    "fired_rules": [], "suggestions": [], "rules_version": "test", "locale": lang,
                    "name": "Wanda Withdraw", "contact": "wanda@example.org", "consent_at": dbmod.now()})
            finally:
                conn.close()
            reference, code = stored.reference, stored.withdrawal_code
        page.goto(f"/withdraw?lang={lang}")
        page.fill("#reference", reference)
        page.fill("#code", code)
        with page.expect_navigation():
            page.locator("#withdraw-form button.button--primary").click()
        if step == "done":
            with page.expect_navigation():
                page.locator("main form:not([hidden]) button[type=submit]").click()
    go.__doc__ = f"the withdrawal form: {step}"
    return go


def searched(page, site, lang="en"):
    """The dashboard after a posted search (issue 16): the page the redirect names by the search's id."""
    page.goto(f"/staff/?lang={lang}")
    page.fill("#q", "ana")
    with page.expect_navigation():
        page.locator("form.filters button[type=submit]").click()
    assert "search=" in page.url and "ana" not in page.url.split("?", 1)[1]


def code_page(page, site, lang="en"):
    """The login's code step: the right password of an account with a second factor leads there."""
    page.goto(f"/staff/login?lang={lang}")
    page.fill("#email", STAFF_EMAIL)
    page.fill("#password", STAFF_PASSWORD)
    with page.expect_navigation():
        page.locator("form.login-form button[type=submit]").click()


PUBLIC_PAGES = {
    "index": visit("/"),
    **{f"service-{slug}": visit(f"/services/{slug}") for slug in SLUGS},
    "questionnaire": visit(FORM),
    "questionnaire-refused": refused_form,
    "result-proceed-shared": result_of({}, shared=True, doc="proceed, sent to the centre: a reference"),
    "result-tell-centre": result_of({"pregnant": "yes", "pregnancy_complicated": "no"}, doc="tell the centre"),
    "result-consult-suggestions": result_of(
        {"intense_pain": "yes", "professional_cleared": "no", "tension_areas": "neck", "preferred_intensity": "light"},
        doc="consult, with both suggestions (a lighter service, the neck)"),
    "result-fever": result_of({"fever": "yes", "recent_injury": "yes", "professional_cleared": "yes"},
                              doc="fever (its own next step) and a cleared injury"),
    "directory": visit("/centres"),
    "not-found": visit("/services/no-such-massage"),
    "staff-login": visit("/staff/login"),
    "staff-login-code": code_page,
    "staff-forgot": visit("/staff/forgot"),
    "staff-invitation": visit("/staff/invitation/{site.invite_token}"),
    "staff-reset": visit("/staff/reset/{site.reset_token}"),
    "staff-link-gone": visit("/staff/reset/no-such-token"),
    "withdraw": visit("/withdraw"),
    "withdraw-refused": withdrawing("refused"),
    "withdraw-confirm": withdrawing("confirm"),
    "withdraw-done": withdrawing("done"),
}
STAFF_PAGES = {
    "staff-dashboard": visit("/staff/"),
    "staff-dashboard-search": searched,
    "staff-dashboard-search-expired": lambda page, site, lang="en": page.goto(f"/staff/?search={'A' * 22}&lang={lang}"),
    "staff-submission": visit("/staff/submissions/{site.submission_id}"),
    "staff-rules": visit("/staff/rules"),
    "staff-rules-simulate": visit("/staff/rules/simulate"),
    "staff-audit": visit("/staff/audit"),
    "staff-account": visit("/staff/account"),
    "staff-second-factor": visit("/staff/account/second-factor"),
    "staff-team": visit("/staff/team"),
    "staff-person": visit("/staff/submissions/{site.submission_id}/person"),
    "staff-person-print": lambda page, site, lang="en": page.goto(f"{site.print_path}&lang={lang}"),
}
ALL_PAGES = PUBLIC_PAGES | STAFF_PAGES


def open_named(open_page, staff_state, name, viewport=PHONE, site=None, lang="en"):
    """Open the page called `name` in `lang` (logged in for staff pages); return the page and its console log."""
    page, console = open_page(viewport, staff=staff_state if name in STAFF_PAGES else None)
    ALL_PAGES[name](page, site, lang)
    return page, console


# --- 1 and 4. every page: accessible by axe, at 320, 360 and 1280 px, with the CSP respected -----------

# something only the page named would show, so the checks never look at an error page or the login form
EXPECTED = {
    "index": "a[href='/services/decontracting-back-massage']",
    **{f"service-{slug}": f"a[href='/screening/{slug}']" for slug in SLUGS},
    "questionnaire": "form.questionnaire",
    "questionnaire-refused": "#error-summary",
    "result-proceed-shared": "[data-outcome=proceed] ~ * [data-reference]",
    "result-tell-centre": "[data-outcome=tell_centre]",
    "result-consult-suggestions": ".suggestions a[href='/services/back-and-neck-massage']",
    "result-fever": "[data-next-step=fever]",
    "directory": "[data-matches] ~ .centre-list [data-centre]",
    "not-found": "main > p > a[href='/']",
    "staff-login": "#password",
    "withdraw": "form#withdraw-form",
    "withdraw-refused": "#error-summary a[href='#reference']",
    "withdraw-confirm": "[data-withdraw-confirm]",
    "withdraw-done": "[data-withdrawn]",
    "staff-dashboard": "[data-withdrawn='WDRN-2345']",
    "staff-dashboard-search": "form.export-form input[name=search] ~ .field select#sep",
    "staff-dashboard-search-expired": "#error-summary a[href='#q']",
    "staff-submission": "text=ana@example.org",
    "staff-rules": "[data-rule='intense_pain']",
    "staff-rules-simulate": "select#service",
    "staff-audit": "[data-audit]",
    "staff-account": "[data-sessions] [data-session]:not([data-current]) form",
    "staff-login-code": "input#code[name=code]",
    "staff-second-factor": "[data-qr] svg[role=img]",
    "staff-forgot": "form input#email",
    "staff-invitation": "[data-link-form] #new_password_again",
    "staff-reset": "[data-link-form] #new_password_again",
    "staff-link-gone": "[data-link-gone]",
    "staff-team": "[data-member='joan@centre.example'] [data-throttled]",
    "staff-person": "[data-person-list] input[type=checkbox]:checked",
    "staff-person-print": "[data-print-screening] [data-answer=intense_pain]",
}
OVERFLOW = "() => [document.documentElement.scrollWidth, window.innerWidth]"
# the label box of every radio and checkbox on screen (follow-ups hidden by the script are skipped)
SMALL_LABELS = """() => [...document.querySelectorAll('input[type=radio], input[type=checkbox]')]
  .filter(i => i.offsetParent !== null && i.id)
  .map(i => [i.id, document.querySelector(`label[for="${i.id}"]`)])
  .map(([id, label]) => [id, label ? Math.round(label.getBoundingClientRect().height) : 0])
  .filter(([id, height]) => height < 24)"""


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("name", list(ALL_PAGES))
def test_page_is_accessible_at_every_width(open_page, staff_state, site, name, lang):
    """One visit per page and language (the result pages are POST responses and cannot be reloaded),
    then at 320, 360 and 1280 px: the page is in that language; axe-core (WCAG 2.2 A/AA) finds no
    violation at all; no sideways scrolling (a wide staff table scrolls inside its own box); on phones,
    answers big enough to tap; nothing blocked by the CSP."""
    page, console = open_named(open_page, staff_state, name, SMALL_PHONE, site, lang)
    assert page.locator(EXPECTED[name]).count() >= 1, f"{name}: not the page expected ({page.url})"
    assert page.evaluate("document.documentElement.lang") == lang

    failures = []
    for viewport in WIDTHS:
        page.set_viewport_size(viewport)
        width = viewport["width"]
        scroll_width, inner_width = page.evaluate(OVERFLOW)
        if scroll_width > inner_width:
            failures.append(f"at {width}px: {scroll_width}px wide")
        if width < LAPTOP["width"] and (small := page.evaluate(SMALL_LABELS)):
            failures.append(f"at {width}px: answer labels shorter than 24px (id, height): {small}")
        violations = axe_violations(page)
        if violations:   # any impact: minor ones too
            failures.append(f"at {width}px:\n{describe(violations)}")
        if SCREENSHOTS and name in SCREENSHOT_PAGES:
            folder = Path(SCREENSHOTS)
            folder.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(folder / f"{name}-{lang}-{width}.png"), full_page=True)
    assert not failures, f"{name} ({lang}) " + "\n".join(failures)
    assert console.csp_errors() == []


def test_axe_reports_a_field_without_a_label(open_page, site):
    """The accessibility check can fail: a text box with no label is a violation axe must report."""
    page, _ = open_page()
    page.goto(FORM)
    page.evaluate("""() => { const i = document.createElement('input'); i.type = 'text';
                             document.querySelector('form.questionnaire').prepend(i); }""")
    assert "label" in {v["id"] for v in axe_violations(page) if v["impact"] in BLOCKING_IMPACTS}


def test_axe_checks_the_wcag_2_2_rules(open_page, site):
    """WCAG 2.2's target size (24 px) is among the rules run: a 10 px button next to another is reported."""
    page, _ = open_page()
    page.goto(FORM)
    page.evaluate("""() => { const box = document.createElement('div'); box.style.cssText = 'display:flex';
                             for (const n of [1, 2]) { const b = document.createElement('button');
                               b.textContent = n; b.style.cssText = 'width:12px;height:12px;padding:0;font-size:6px';
                               box.append(b); }
                             document.querySelector('h1').after(box); }""")
    assert "target-size" in {v["id"] for v in axe_violations(page)}


@pytest.mark.parametrize("lang", LANGUAGES)
def test_at_the_smallest_width_the_whole_form_without_javascript_fits(open_page, lang):
    """Every question and sharing detail shown (no script hides the follow-ups), at 320 px."""
    page, _ = open_page(SMALL_PHONE, javascript=False)
    page.goto(f"/screening/decontracting-massage?lang={lang}")
    scroll_width, inner_width = page.evaluate(OVERFLOW)
    assert scroll_width <= inner_width
    assert page.evaluate(SMALL_LABELS) == []


# --- 2. progressive reveal -------------------------------------------------------------------------

FOLLOW_UPS = ["#q-pregnancy_complicated", "#q-professional_cleared", "#name", "#contact", "#consent"]


def test_follow_ups_and_sharing_details_appear_only_when_an_answer_calls_for_them(open_page):
    page, _ = open_page()
    page.goto(FORM)
    for selector in FOLLOW_UPS:
        expect(page.locator(selector)).to_be_hidden()

    choose(page, "pregnant", "yes")
    expect(page.locator("#q-pregnancy_complicated")).to_be_visible()
    expect(page.locator("#q-professional_cleared")).to_be_hidden()

    choose(page, "recent_injury", "yes")
    expect(page.locator("#q-professional_cleared")).to_be_visible()

    button = page.locator("form.questionnaire button[type=submit]")
    expect(button).to_have_text("Check my answers")
    choose(page, "share", "yes")
    for selector in ("#name", "#contact", "#consent"):
        expect(page.locator(selector)).to_be_visible()
    expect(button).to_have_text("Check and send to the centre")     # the button says what it will do

    # and they go away again when the answer changes back
    choose(page, "pregnant", "no")
    choose(page, "recent_injury", "no")
    choose(page, "share", "no")
    for selector in FOLLOW_UPS:
        expect(page.locator(selector)).to_be_hidden()
    expect(button).to_have_text("Check my answers")


def test_a_follow_up_of_a_hidden_question_hides_with_it(open_page):
    """pregnant yes, complicated yes, then pregnant no: the complication question hides, and so does the
    clearance question that its (now unasked) "yes" had brought up: the server ignores that answer too."""
    page, _ = open_page()
    page.goto(f"{FORM}?lang=es")
    answer_all_no(page)
    choose(page, "pregnant", "yes")
    choose(page, "pregnancy_complicated", "yes")
    expect(page.locator("#q-professional_cleared")).to_be_visible()
    choose(page, "pregnant", "no")
    expect(page.locator("#q-pregnancy_complicated")).to_be_hidden()
    expect(page.locator("#q-professional_cleared")).to_be_hidden()
    choose(page, "pregnant", "yes")          # and both come back with the answer kept
    expect(page.locator("#q-professional_cleared")).to_be_visible()


def test_without_javascript_every_question_and_sharing_detail_is_shown(open_page):
    page, _ = open_page(javascript=False)
    page.goto(FORM)
    for selector in FOLLOW_UPS:
        expect(page.locator(selector)).to_be_visible()


# --- 3. a client fills the form in the browser -----------------------------------------------------

@pytest.mark.parametrize("answers, outcome", [
    ({}, "proceed"),
    ({"pregnant": "yes", "pregnancy_complicated": "no"}, "tell_centre"),
    ({"recent_injury": "yes", "professional_cleared": "yes"}, "tell_centre"),
    ({"intense_pain": "yes", "professional_cleared": "no"}, "consult_professional"),
    ({"fever": "not_sure"}, "consult_professional"),
], ids=["all-no", "pregnant", "injury-cleared", "pain-not-cleared", "fever-not-sure"])
def test_a_client_answering_with_clicks_sees_one_outcome(open_page, answers, outcome):
    page, _ = open_page()
    page.goto(FORM)
    answer_all_no(page)
    for question, option in answers.items():   # in order: a follow-up appears after the answer before it
        choose(page, question, option)
    submit(page)
    assert page.locator("[data-outcome]").count() == 1
    assert page.locator("[data-outcome]").get_attribute("data-outcome") == outcome
    assert page.locator("[data-reference]").count() == 0    # only checked: nothing sent, no reference


def test_a_client_using_the_keyboard_can_send_the_answers_and_gets_a_reference(open_page):
    page, _ = open_page()
    page.goto(FORM)
    answer_all_no(page, skip=("fever",))
    # radios answer to the arrow keys: from "Yes", the right arrow moves to and chooses "No"
    page.focus("#fever-yes")
    page.keyboard.press("Space")
    page.keyboard.press("ArrowRight")
    assert page.is_checked("#fever-no")
    page.focus("#tension_areas-lumbar")
    page.keyboard.press("Space")             # a checkbox ticks with the space bar
    assert page.is_checked("#tension_areas-lumbar")
    share(page)
    with page.expect_navigation():
        page.focus("#contact")
        page.keyboard.press("Enter")         # Enter in a text box sends the form
    assert page.locator('[data-outcome="proceed"]').count() == 1
    assert page.locator("[data-outcome]").count() == 1
    reference = page.locator("[data-reference]")
    assert reference.count() == 1
    assert len(reference.inner_text().strip()) >= 6


def test_sending_again_after_the_back_button_stores_the_screening_once(open_page, site):
    """The browser's Back button brings the sent form back filled in (with a fresh form token):
    sending it again says "already sent" with the first reference, and stores nothing."""
    page, _ = open_page()
    page.goto(FORM)
    answer_all_no(page, skip=("fever",))
    choose(page, "fever", "yes")
    share(page, name="Berta Backbutton", contact="berta.back@example.org")
    submit(page)
    first = page.locator("[data-reference]").inner_text().strip()
    page.go_back()
    page.wait_for_selector("form.questionnaire")
    # Chromium restores what was typed and chosen, as a client sees it
    assert page.input_value("#name") == "Berta Backbutton" and page.input_value("#contact") == "berta.back@example.org"
    assert page.is_checked("#fever-yes") and page.is_checked("#consent")
    submit(page)
    assert page.locator("[data-reference]").inner_text().strip() == first
    assert page.get_by_text("Your answers were already sent").count() >= 1
    conn = dbmod.connect(site.database)
    try:
        assert conn.execute("SELECT reference FROM submissions WHERE name = 'Berta Backbutton'").fetchall() == [
            (first,)]
    finally:
        conn.close()


def test_a_client_can_answer_and_send_with_the_keyboard_alone(open_page):
    """Tab, Space and the arrow keys only, from the top of the page: every answer, sharing, sending."""
    page, _ = open_page()
    page.goto(f"{FORM}?lang=ca")
    for question in [*RED_FLAGS, "pregnant"]:
        tab_to(page, f"#{question}-yes")     # Tab enters a group of radios at its first one
        page.keyboard.press("Space")          # "Sí"
        page.keyboard.press("ArrowRight")     # then "No"
    tab_to(page, "#tension_areas-neck")
    page.keyboard.press("Space")
    tab_to(page, "#share-no")
    page.keyboard.press("ArrowRight")         # "Sí, vull enviar..."
    tab_to(page, "#name")
    page.keyboard.type("Núria Client")
    tab_to(page, "#contact")
    page.keyboard.type("+34 600 000 000")
    tab_to(page, "#consent")
    page.keyboard.press("Space")
    tab_to(page, "form.questionnaire button[type=submit]")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.locator("[data-outcome]").get_attribute("data-outcome") == "proceed"
    assert page.locator("[data-suggestion], .suggestions a[href='/services/back-and-neck-massage']").count() == 1
    assert page.locator("[data-reference]").count() == 1


@pytest.mark.parametrize("name", ["result-consult-suggestions", "result-fever", "staff-submission"])
def test_the_result_and_the_staff_detail_print_on_one_page(open_page, staff_state, site, name):
    """Printed (A4, the print stylesheet), the page fits one sheet and keeps what a printout needs."""
    page, _ = open_named(open_page, staff_state, name, LAPTOP, site, "es")
    page.emulate_media(media="print")
    pdf = page.pdf(format="A4", print_background=True)
    assert pdf.count(b"/Type /Page") - pdf.count(b"/Type /Pages") == 1, f"{name} prints on several pages"
    assert page.locator("form.questionnaire, .site-header").first.is_hidden() if name != "staff-submission" else True
    if name != "staff-submission":
        for selector in ("[data-outcome]", ".answer-list", ".made-at time", ".disclaimer"):
            assert page.locator(selector).is_visible(), selector
        body, disclaimer = page.evaluate("""() => [getComputedStyle(document.body).fontSize,
                                            getComputedStyle(document.querySelector('.disclaimer')).fontSize]""")
        assert body == disclaimer


def test_answer_again_brings_back_the_form_with_the_answers_and_no_answer_in_the_url(open_page, site):
    page, _ = open_page()
    PUBLIC_PAGES["result-tell-centre"](page, site, "es")
    with page.expect_navigation():
        page.get_by_role("button", name="Volver a responder las preguntas").click()
    assert page.locator("form.questionnaire").count() == 1
    assert page.is_checked("#pregnant-yes") and page.is_checked("#pregnancy_complicated-no")
    assert page.is_checked("#tension_areas-thoracic") and page.is_checked("#fever-no")
    assert "?" not in page.url.replace("?lang=es", "") and "pregnant" not in page.url
    expect(page.locator("#q-pregnancy_complicated")).to_be_visible()


@pytest.mark.parametrize("name", ["result-proceed-shared", "result-tell-centre", "result-consult-suggestions"])
def test_a_printed_result_names_the_centre_how_to_reach_it_and_where_to_book(open_page, staff_state, site, name):
    page, _ = open_named(open_page, staff_state, name, LAPTOP, site, "ca")
    page.emulate_media(media="print")
    contact = page.locator("[data-centre-contact]")
    assert contact.is_visible()
    assert "Espai Massatge Exemple" in contact.inner_text() and contact.locator("a[href^='tel:']").is_visible()
    assert contact.locator("a[href^='mailto:']").is_visible()
    booking = page.locator("[data-booking]")
    if name != "result-consult-suggestions":       # "consult" sends no one to book
        printed = booking.evaluate("a => getComputedStyle(a, '::after').content")
        assert booking.get_attribute("href") in printed
    pdf = page.pdf(format="A4", print_background=True)
    assert pdf.count(b"/Type /Page") - pdf.count(b"/Type /Pages") == 1, f"{name} prints on several pages"


# --- the language switch on a result and on the questionnaire --------------------------------------

def test_switching_to_catalan_on_a_shared_result_keeps_its_reference_and_outcome(open_page):
    page, console = open_page()
    page.goto(f"{FORM}?lang=en")
    answer_all_no(page, skip=("recent_injury",))
    choose(page, "recent_injury", "yes")
    choose(page, "professional_cleared", "no")
    share(page)
    submit(page)
    reference = page.locator("[data-reference]").inner_text().strip()
    reasons = page.locator("[data-reason]").evaluate_all("items => items.map(li => li.dataset.reason)")
    with page.expect_navigation():
        page.get_by_role("button", name="Català").click()
    assert page.locator("html").get_attribute("lang") == "ca"
    assert page.locator("[data-outcome]").get_attribute("data-outcome") == "consult_professional"
    assert page.locator("[data-reference]").inner_text().strip() == reference
    assert page.locator("[data-reason]").evaluate_all("items => items.map(li => li.dataset.reason)") == reasons
    expect(page.locator("#reference-title")).to_have_text("Hem enviat les teves respostes al centre")
    assert page.url.endswith(f"{FORM}?lang=ca")          # only the language in the address
    assert console.csp_errors() == []
    page.goto("/")                                         # and the choice is remembered
    assert page.locator("html").get_attribute("lang") == "ca"


@pytest.mark.parametrize("javascript", [True, False])
def test_switching_language_on_a_half_filled_form_keeps_what_was_typed(open_page, javascript):
    page, _ = open_page(javascript=javascript)
    page.goto(f"{FORM}?lang=en")
    choose(page, "fever", "not_sure")
    choose(page, "pregnant", "yes")
    choose(page, "tension_areas", "neck")
    page.fill("#notes", "Left shoulder")
    with page.expect_navigation():
        page.get_by_role("button", name="Español").click()
    assert page.locator("html").get_attribute("lang") == "es"
    assert page.is_checked("#fever-not_sure") and page.is_checked("#pregnant-yes")
    assert page.is_checked("#tension_areas-neck") and page.input_value("#notes") == "Left shoulder"
    assert page.locator("[data-outcome]").count() == 0 and page.locator("#error-summary").count() == 0
    assert page.url.endswith(f"{FORM}?lang=es")


def test_the_reference_has_copy_and_print_buttons_with_javascript_and_stays_text_without(open_page, site):
    page, console = open_page()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    PUBLIC_PAGES["result-proceed-shared"](page, site, "ca")
    reference = page.locator("[data-reference]").inner_text().strip()
    page.get_by_role("button", name="Copia la referència").click()
    expect(page.locator(".copy-status")).to_have_text("Referència copiada")
    assert page.evaluate("navigator.clipboard.readText()") == reference
    expect(page.get_by_role("button", name="Imprimeix aquesta pàgina")).to_be_visible()
    assert console.csp_errors() == []

    page, _ = open_page(javascript=False)
    PUBLIC_PAGES["result-proceed-shared"](page, site, "ca")
    assert page.locator("[data-reference-tools] button").count() == 0
    expect(page.locator("[data-reference-tools]")).to_be_hidden()
    assert page.locator("[data-reference]").inner_text().strip()


# --- 5. focus after a refused form -----------------------------------------------------------------

SUMMARY_TARGETS = """() => [...document.querySelectorAll('#error-summary a')]
  .map(a => a.getAttribute('href'))
  .map(href => [href, href.startsWith('#') && document.getElementById(href.slice(1)) !== null])"""


def test_a_refused_form_puts_focus_on_the_error_summary_whose_links_lead_to_the_fields(open_page):
    page, _ = open_page()
    page.goto(FORM)
    answer_all_no(page, skip=("intense_pain",))
    choose(page, "pregnant", "yes")          # and leave the follow-up unanswered
    choose(page, "share", "yes")             # and leave the name, the contact and the consent empty
    submit(page)
    assert page.evaluate("document.activeElement.id") == "error-summary"
    targets = page.evaluate(SUMMARY_TARGETS)
    hrefs = [href for href, _ in targets]
    assert {"#q-intense_pain", "#q-pregnancy_complicated", "#q-name", "#q-contact", "#q-consent"} <= set(hrefs), hrefs
    assert [href for href, exists in targets if not exists] == []


# the legend (or label) of the question a link leads to, and its error message, are on screen
QUESTION_IN_VIEW = """id => { const box = document.getElementById('q-' + id);
  const inView = el => { const r = el.getBoundingClientRect(); return r.top >= 0 && r.bottom <= window.innerHeight; };
  return [inView(box.querySelector('legend, label.question-text')), inView(box.querySelector('.error-message'))]; }"""


@pytest.mark.parametrize("javascript", [True, False], ids=["script", "no-script"])
@pytest.mark.parametrize("viewport", [PHONE, LAPTOP], ids=lambda v: f"{v['width']}px")
def test_an_error_summary_link_shows_the_question_and_its_message(open_page, viewport, javascript):
    """Several questions left unanswered; the link to one in the middle brings its question text and
    its message into view (a link to its "Yes" radio used to leave both above the screen); with the
    script, the question's first answer also gets the focus (without choosing it)."""
    page, _ = open_page(viewport, javascript=javascript)
    page.goto(f"{FORM}?lang=ca")
    answer_all_no(page, skip=("intense_pain", "fever", "skin_problem_in_area"))
    submit_any_language(page)
    links = page.locator("#error-summary a")
    assert links.count() == 3
    links.nth(1).click()                     # fever, between intense pain and skin problems
    assert page.evaluate(QUESTION_IN_VIEW, "fever") == [True, True]
    if javascript:
        assert page.evaluate("document.activeElement.id") == "fever-yes"
        assert not page.is_checked("#fever-yes")


def test_errors_on_fields_a_client_cannot_change_still_link_to_an_existing_element(open_page):
    # a stale or hand-made page can send what no click can: the summary must still lead somewhere
    page, _ = open_page()
    page.goto(FORM)
    answer_all_no(page)
    share(page)
    page.evaluate("document.querySelector('[name=share]:checked').value = 'maybe'")
    submit(page)
    targets = page.evaluate(SUMMARY_TARGETS)
    assert targets, "no error summary"
    assert [href for href, exists in targets if not exists] == []


def test_after_javascript_is_off_the_refused_form_still_leads_to_the_fields(open_page):
    page, _ = open_page(javascript=False)
    page.goto(FORM)
    answer_all_no(page, skip=("intense_pain",))
    submit(page)
    assert page.locator("#error-summary").count() == 1
    assert [href for href, exists in page.evaluate(SUMMARY_TARGETS) if not exists] == []


# --- 6. the Content Security Policy ----------------------------------------------------------------

def test_the_questionnaire_script_runs_within_the_content_security_policy(open_page):
    """The reveal script is the one script of the site: it loads, runs and sends without a CSP report.
    (Every page is also checked for CSP reports in test_page_is_accessible_at_every_width.)"""
    page, console = open_page()
    page.goto(FORM)
    answer_all_no(page)
    choose(page, "pregnant", "yes")
    expect(page.locator("#q-pregnancy_complicated")).to_be_visible()   # the script did run
    choose(page, "pregnancy_complicated", "no")
    submit(page)
    assert page.locator('[data-outcome="tell_centre"]').count() == 1
    assert console.csp_errors() == []


def test_a_blocked_inline_script_is_reported(open_page):
    """The CSP check can fail: an inline script (which the policy forbids) shows up in the console."""
    page, console = open_page()
    page.goto(FORM)
    page.evaluate("""() => { const s = document.createElement('script'); s.textContent = 'window.ran = 1';
                             document.body.append(s); }""")
    expect(page.locator("body")).to_be_visible()
    assert page.evaluate("window.ran") is None
    assert console.csp_errors(), console.messages


# --- never silently skipped in CI ------------------------------------------------------------------

def test_without_chromium_the_browser_tests_skip_locally_but_fail_in_ci(monkeypatch, tmp_path):
    monkeypatch.setattr(browser_helpers, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="install Debian's `chromium`"):
        browser_helpers.require_chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        browser_helpers.require_chromium()


def test_a_member_sets_up_a_second_factor_then_logs_in_with_a_code_and_with_a_recovery_code(open_page, site):
    """The second factor in a real browser (CSRF on): set up from My account by typing the key shown
    as text into an app (pyotp here), the recovery codes shown once; then a login asks for the
    code after the password, and a recovery code, typed in capitals, also works."""
    conn = dbmod.connect(site.database)
    try:
        accounts.create_staff(conn, email="nil@centre.example", password=STAFF_PASSWORD, name="Nil Puig",
                              centre=CENTRE)
    finally:
        conn.close()
    page, console = open_page(LAPTOP)

    def log_in():
        page.goto("/staff/login?lang=en")
        page.fill("#email", "nil@centre.example")
        page.fill("#password", STAFF_PASSWORD)
        page.locator("form.login-form button[type=submit]").click()

    log_in()
    expect(page.get_by_text("Logged in as Nil Puig")).to_be_visible()
    page.goto("/staff/account")
    page.get_by_role("link", name="Set up a second factor").click()
    totp, codes = set_up_second_factor(page)
    page.get_by_role("button", name="Log out").click()

    log_in()
    expect(page).to_have_url(re.compile(r"/staff/login/code"))
    page.fill("#code", totp.at(time.time() + 30))         # the next step: the set-up used this one
    page.locator("form.login-form button[type=submit]").click()
    expect(page.get_by_text("Logged in as Nil Puig")).to_be_visible()
    page.get_by_role("button", name="Log out").click()

    log_in()
    page.fill("#code", codes[0].upper())
    page.locator("form.login-form button[type=submit]").click()
    expect(page.get_by_text("Logged in as Nil Puig")).to_be_visible()
    page.goto("/staff/account")
    expect(page.locator("[data-second-factor-set]")).to_contain_text("You have 9 recovery codes left.")
    assert console.csp_errors() == []          # the QR code's SVG included
