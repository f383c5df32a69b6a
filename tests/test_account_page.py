"""My account (/staff/account): a member changes their own password and sees and ends their own
sessions (screening/web/account.py, screening/store/accounts.py). CSRF protection is on, as in
production."""
import re

import pytest
from conftest import csrf_token_from, login

from screening.store import accounts
from screening.web.auth import COOKIE, browser_family

FIREFOX_ANDROID = "Mozilla/5.0 (Android 14; Mobile; rv:121.0) Gecko/121.0 Firefox/121.0"
CHROME_WINDOWS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
                  " Chrome/120.0.0.0 Safari/537.36")
SAFARI_IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
                 " Version/17.1 Mobile/15E148 Safari/604.1")
NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def browser(csrf_app):
    """browser(account, user_agent) -> a test client of the app, logged in as `account` from a
    browser sending that User-Agent."""
    def build(account, user_agent=CHROME_WINDOWS):
        client = csrf_app.test_client()
        client.environ_base["HTTP_USER_AGENT"] = user_agent
        assert login(client, account["email"], account["password"]).status_code == 302
        client.staff = account
        return client
    return build


def token_of(client):
    cookie = client.get_cookie(COOKIE, path="/staff")
    return cookie.value if cookie else None


def is_logged_in(client) -> bool:
    return client.get("/staff/").status_code == 200


def change_password(client, current, new, again=None):
    page = client.get("/staff/account")
    return client.post("/staff/account/password", data={
        "current_password": current, "new_password": new, "new_password_again": new if again is None else again,
        "csrf_token": csrf_token_from(page.text)})


def audit_actions(db, staff):
    return [row[0] for row in db.execute("SELECT action FROM audit_log WHERE staff_id = ? ORDER BY id", [staff["id"]])]


def handles(page_text):
    return re.findall(r'name="session" value="([^"]+)"', page_text)


# --- the page ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["staff", "admin"])
def test_every_member_reaches_my_account_from_the_staff_menu(browser, make_staff, role):
    member = browser(make_staff(role=role))
    dashboard = member.get("/staff/")
    assert 'href="/staff/account"' in dashboard.text
    page = member.get("/staff/account")
    assert page.status_code == 200 and "<h1>My account</h1>" in page.text
    assert page.headers["Cache-Control"] == "no-store"


def test_a_stranger_is_sent_to_log_in(csrf_app):
    client = csrf_app.test_client()
    response = client.get("/staff/account")
    assert response.status_code == 302 and "/staff/login" in response.headers["Location"]
    assert client.post("/staff/account/sessions/end-others").status_code in (302, 400)
    assert not is_logged_in(client)


def test_posts_without_the_csrf_token_are_refused(browser, make_staff, db):
    account = make_staff()
    member, other = browser(account), browser(account, FIREFOX_ANDROID)
    assert member.post("/staff/account/sessions/end-others").status_code == 400
    assert member.post("/staff/account/password", data={
        "current_password": account["password"], "new_password": NEW_PASSWORD,
        "new_password_again": NEW_PASSWORD}).status_code == 400
    assert is_logged_in(other)
    assert accounts.verify_password(db.execute("SELECT password_hash FROM staff WHERE id = ?",
                                               [account["id"]]).fetchone()[0], account["password"])


# --- the password --------------------------------------------------------------------------------------

def test_a_wrong_current_password_is_refused_at_its_field(browser, make_staff, db):
    account = make_staff()
    member = browser(account)
    response = change_password(member, "not my password", NEW_PASSWORD)
    assert response.status_code == 422
    assert 'id="current_password-error"' in response.text and "The current password is wrong" in response.text
    assert 'href="#current_password"' in response.text          # the error summary leads to the field
    assert "not my password" not in response.text and NEW_PASSWORD not in response.text
    assert login(member.application.test_client(), account["email"], account["password"]).status_code == 302
    assert audit_actions(db, account)[-2:] == ["password_change_refused", "login"]


def test_a_short_new_password_is_refused_with_the_clis_rule(browser, make_staff):
    account = make_staff()
    member = browser(account)
    response = change_password(member, account["password"], "short")
    assert response.status_code == 422 and 'id="new_password-error"' in response.text
    assert f"at least {accounts.MIN_PASSWORD} characters" in response.text
    different = change_password(member, account["password"], NEW_PASSWORD, again=NEW_PASSWORD + "!")
    assert different.status_code == 422 and 'id="new_password_again-error"' in different.text
    assert is_logged_in(member)
    assert login(member.application.test_client(), account["email"], account["password"]).status_code == 302


def test_changing_the_password_ends_the_other_sessions_but_not_this_one(browser, make_staff, db, csrf_app):
    account = make_staff()
    member, phone, other_phone = browser(account), browser(account, FIREFOX_ANDROID), browser(account, SAFARI_IPHONE)
    colleague = browser(make_staff())

    response = change_password(member, account["password"], NEW_PASSWORD)
    assert response.status_code == 302 and response.headers["Location"].startswith("/staff/account")
    assert "Your password is changed" in member.get(response.headers["Location"]).text
    assert is_logged_in(member)
    assert not is_logged_in(phone) and not is_logged_in(other_phone)
    assert is_logged_in(colleague)                     # another account's sessions are untouched

    fresh = csrf_app.test_client()
    assert login(fresh, account["email"], account["password"]).status_code == 200     # the old one: refused
    assert login(fresh, account["email"], NEW_PASSWORD).status_code == 302
    assert "password_changed" in audit_actions(db, account)
    detail = db.execute("SELECT detail FROM audit_log WHERE action = 'password_changed'").fetchone()[0]
    assert detail is None
    every_detail = " ".join(str(row[0]) for row in db.execute("SELECT detail FROM audit_log"))
    assert NEW_PASSWORD not in every_detail and account["password"] not in every_detail


def test_wrong_current_passwords_are_throttled_like_logins(make_app, make_staff):
    app = make_app(WTF_CSRF_ENABLED=True, LOGIN_MAX_FAILURES=3)
    account = make_staff()
    member = app.test_client()
    assert login(member, account["email"], account["password"]).status_code == 302
    statuses = [change_password(member, f"guess {n}", NEW_PASSWORD).status_code for n in range(4)]
    assert statuses == [422, 422, 422, 429]
    refused = change_password(member, account["password"], NEW_PASSWORD)     # even the right one, for a while
    assert refused.status_code == 429 and "Retry-After" in refused.headers
    assert "Too many wrong passwords" in refused.text


# --- the sessions --------------------------------------------------------------------------------------

def test_the_sessions_show_their_browser_family_and_no_session_id(browser, make_staff, db):
    account = make_staff()
    member, phone = browser(account), browser(account, FIREFOX_ANDROID)
    page = member.get("/staff/account").text
    assert "Chrome on Windows" in page and "Firefox on Android" in page
    assert page.index("Chrome on Windows") < page.index("Firefox on Android")     # this browser first
    assert "(this browser)" in page
    stored = [row[0] for row in db.execute("SELECT id FROM staff_sessions")]
    for secret in [*stored, token_of(phone), token_of(member)]:
        assert secret not in page
    assert len(handles(page)) == 1                       # an end button for the other session only
    assert "127.0.0.1" not in page


def test_ending_one_session_logs_that_browser_out(browser, make_staff, db):
    account = make_staff()
    member, phone, tablet = browser(account), browser(account, FIREFOX_ANDROID), browser(account, SAFARI_IPHONE)
    page = member.get("/staff/account").text
    # the form of the Firefox session
    piece = page[page.index("Firefox on Android"):]
    handle = handles(piece)[0]
    response = member.post("/staff/account/sessions/end", data={"session": handle,
                                                               "csrf_token": csrf_token_from(page)})
    assert response.status_code == 302
    assert not is_logged_in(phone) and is_logged_in(tablet) and is_logged_in(member)
    after = member.get(response.headers["Location"]).text
    assert "That session has ended" in after and "Firefox on Android" not in after
    assert "session_ended" in audit_actions(db, account)
    # the same handle again names nothing any more
    again = member.post("/staff/account/sessions/end", data={"session": handle, "csrf_token": csrf_token_from(after)})
    assert again.status_code == 404


def test_ending_all_other_sessions_keeps_only_this_one(browser, make_staff, db):
    account = make_staff()
    member, phone, tablet = browser(account), browser(account, FIREFOX_ANDROID), browser(account, SAFARI_IPHONE)
    page = member.get("/staff/account").text
    response = member.post("/staff/account/sessions/end-others", data={"csrf_token": csrf_token_from(page)})
    assert response.status_code == 302
    assert is_logged_in(member) and not is_logged_in(phone) and not is_logged_in(tablet)
    after = member.get(response.headers["Location"]).text
    assert "Your other sessions have ended" in after and "You are not logged in anywhere else." in after
    assert audit_actions(db, account)[-1] == "sessions_ended"
    assert db.execute("SELECT detail FROM audit_log WHERE action = 'sessions_ended'").fetchone()[0] == "2"


def test_another_accounts_sessions_cannot_be_reached(browser, make_staff, db):
    mine, theirs = make_staff(), make_staff(role="admin")
    member = browser(mine)
    colleague, colleague_phone = browser(theirs), browser(theirs, FIREFOX_ANDROID)
    their_page = colleague.get("/staff/account").text
    their_handle = handles(their_page)[0]
    page = member.get("/staff/account").text
    assert "Firefox on Android" not in page and handles(page) == []
    token = csrf_token_from(page)
    # neither their handle, nor their session's stored id, nor the token of their cookie
    for guess in [their_handle, accounts.session_id(token_of(colleague_phone)), token_of(colleague_phone)]:
        response = member.post("/staff/account/sessions/end", data={"session": guess, "csrf_token": token})
        assert response.status_code == 404
    member.post("/staff/account/sessions/end-others", data={"csrf_token": token})
    assert is_logged_in(colleague) and is_logged_in(colleague_phone)
    assert "session_ended" not in audit_actions(db, theirs) + audit_actions(db, mine)


def test_the_current_session_is_not_ended_from_the_list(browser, make_staff, csrf_app):
    """The page offers no end button for the session in use (that is Log out); a handle of it made
    with the app's key is refused like any unknown one."""
    from screening.web.auth import handle_key
    account = make_staff()
    member = browser(account)
    with csrf_app.app_context():
        own = accounts.session_handle(handle_key(), accounts.session_id(token_of(member)))
    page = member.get("/staff/account").text
    response = member.post("/staff/account/sessions/end", data={"session": own, "csrf_token": csrf_token_from(page)})
    assert response.status_code == 404 and is_logged_in(member)


@pytest.mark.parametrize(("agent", "family", "shown"), [
    (FIREFOX_ANDROID, "Firefox/Android", "Firefox on Android"),
    (CHROME_WINDOWS, "Chrome/Windows", "Chrome on Windows"),
    (SAFARI_IPHONE, "Safari/iOS", "Safari on iOS"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1"
     " Safari/605.1.15", "Safari/macOS", "Safari on macOS"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0"
     " Safari/537.36 Edg/120.0.0.0", "Edge/Windows", "Edge on Windows"),
    ("curl/8.4.0", None, "An unknown browser"),
])
def test_the_browser_family_is_coarse(browser, make_staff, db, agent, family, shown):
    assert browser_family(agent) == family
    member = browser(make_staff(), agent)
    assert db.execute("SELECT browser FROM staff_sessions").fetchone()[0] == family
    assert shown in member.get("/staff/account").text


def test_the_page_is_in_catalan_and_spanish(browser, make_staff):
    account = make_staff()
    member, _phone = browser(account), browser(account, FIREFOX_ANDROID)
    catalan = member.get("/staff/account?lang=ca").text
    assert "El meu compte" in catalan and "Firefox a Android" in catalan
    spanish = member.get("/staff/account?lang=es").text
    assert "Mi cuenta" in spanish and "Firefox en Android" in spanish
