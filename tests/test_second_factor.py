"""The staff second factor (store/second_factor.py, the code step in web/auth.py, the set-up on My
account), on both engines: set up by scanning and confirming a code, a code used once (across
connections too), recovery codes, the throttled code step, and SCREENING_STAFF_2FA."""
from __future__ import annotations

import re

import pyotp
import pytest
from conftest import CODE_PAGE, STAFF_PASSWORD, TEST_SECRET_KEY, csrf_token_from, database_of, login, totp_code
from test_engines import no_errors, together

from screening.store import accounts, second_factor
from screening.store import db as dbmod

KEY = second_factor.derive_key(TEST_SECRET_KEY)


def password_step(client, staff, next=None):
    """Post the login form only: the response (a redirect to the code page for an account with a
    second factor)."""
    data = {"email": staff["email"], "password": staff["password"]}
    if next:
        data["next"] = next
    return client.post("/staff/login", data=data)


def post_code(client, code, next=None):
    data = {"code": code}
    if next:
        data["next"] = next
    return client.post(CODE_PAGE, data=data)


def setup_form(client):
    """The set-up page's key (without spaces) and the hidden field carrying it."""
    html = client.get("/staff/account/second-factor").get_data(as_text=True)
    key = re.search(r"data-setup-key>([A-Z2-7 ]+)<", html).group(1).replace(" ", "")
    carried = re.search(r'name="setup" value="([^"]+)"', html).group(1)
    return key, carried


def audit_rows(db, action):
    return db.execute("SELECT staff_email, detail, times FROM audit_log WHERE action = ? ORDER BY id",
                      [action]).fetchall()


def test_a_member_sets_up_a_second_factor_by_scanning_and_confirming_a_code(staff_client, db):
    key, carried = setup_form(staff_client)
    assert len(key) == 32

    refused = staff_client.post("/staff/account/second-factor", data={"setup": carried, "code": "000000"})
    assert refused.status_code == 422
    assert "That code is wrong" in refused.get_data(as_text=True)
    assert not second_factor.has_second_factor(db, staff_client.staff["id"])

    done = staff_client.post("/staff/account/second-factor", data={"setup": carried, "code": pyotp.TOTP(key).now()})
    html = done.get_data(as_text=True)
    assert done.status_code == 200 and done.headers["Cache-Control"] == "no-store"
    codes = re.findall(r"<li><code>([a-z2-9]{5}-[a-z2-9]{5})</code></li>", html)
    assert len(set(codes)) == 10
    assert "Keep these codes somewhere safe" in html
    assert second_factor.has_second_factor(db, staff_client.staff["id"])
    # only keyed hashes are kept
    stored = [h for (h,) in db.execute("SELECT code_hash FROM recovery_codes WHERE staff_id = ?",
                                       [staff_client.staff["id"]]).fetchall()]
    assert len(stored) == 10 and not any(c.replace("-", "") in h for c in codes for h in stored)
    assert audit_rows(db, "second_factor_set")[-1][0] == staff_client.staff["email"]

    page = staff_client.get("/staff/account").get_data(as_text=True)
    assert "data-second-factor-set" in page and "You have 10 recovery codes left." in page


def test_a_tampered_or_foreign_set_up_form_is_refused_with_a_new_code_to_scan(staff_client, db):
    key, carried = setup_form(staff_client)
    for bad in ("", "not a token", carried[:-4] + "AAAA"):
        refused = staff_client.post("/staff/account/second-factor", data={"setup": bad, "code": pyotp.TOTP(key).now()})
        assert refused.status_code == 422
        assert "scan the new code" in refused.get_data(as_text=True)
    assert not second_factor.has_second_factor(db, staff_client.staff["id"])
    # the secret is never in a URL: the set-up page's form posts to a fixed address
    html = staff_client.get("/staff/account/second-factor").get_data(as_text=True)
    assert 'action="/staff/account/second-factor"' in html


def test_the_qr_code_is_an_svg_without_any_inline_style(staff_client):
    html = staff_client.get("/staff/account/second-factor").get_data(as_text=True)
    svg = re.search(r"<svg\b.*?</svg>", html, re.S).group(0)
    assert "<path" in svg and 'role="img"' in svg and "aria-label=" in svg
    assert "style" not in svg.lower()


def test_login_asks_for_the_code_after_the_password_and_gives_a_new_session(app, make_staff, db):
    client = app.test_client()
    admin = make_staff(role="admin")
    first = password_step(client, admin, next="/staff/rules")
    assert first.status_code == 302 and first.location.startswith(CODE_PAGE)
    pending = client.get_cookie("screening_staff", path="/staff").value
    # a pending session opens no staff page
    for path in ("/staff/", "/staff/account", "/staff/rules"):
        answer = client.get(path)
        assert answer.status_code == 302 and "/staff/login" in answer.location and CODE_PAGE not in answer.location
    page = client.get(first.location)
    assert page.status_code == 200
    assert re.findall(r'<input[^>]* name="([a-z_]+)"', page.get_data(as_text=True)).count("code") == 1

    done = post_code(client, pyotp.TOTP(admin["totp"]).now(), next="/staff/rules")
    assert done.status_code == 302 and done.location == "/staff/rules"
    full = client.get_cookie("screening_staff", path="/staff").value
    assert full != pending                                    # a new token: no fixation
    assert accounts.load_session(db, pending, idle_minutes=30, session_hours=10) is None
    assert client.get("/staff/").status_code == 200
    assert client.get_cookie("screening_device", path="/staff") is not None
    last = db.execute("SELECT last_login_at FROM staff WHERE id = ?", [admin["id"]]).fetchone()[0]
    assert last is not None


def test_a_wrong_code_is_refused_and_a_code_works_once(app, make_staff, db):
    admin = make_staff(role="admin")
    code = pyotp.TOTP(admin["totp"]).now()
    one, two = app.test_client(), app.test_client()
    password_step(one, admin)
    password_step(two, admin)
    wrong = post_code(one, "123456" if code != "123456" else "654321")
    assert wrong.status_code == 200 and "That code is wrong" in wrong.get_data(as_text=True)
    assert post_code(one, code).status_code == 302
    again = post_code(two, code)
    assert again.status_code == 200 and "That code is wrong or was already used" in again.get_data(as_text=True)
    assert two.get("/staff/").status_code == 302
    assert audit_rows(db, "login_code_failed")[-1][1:] == (admin["email"], 2)    # one row, with a count


def test_the_same_code_sent_at_once_from_many_connections_is_accepted_once(make_staff, db, app):
    admin = make_staff(role="admin")
    code = pyotp.TOTP(admin["totp"]).now()
    results = no_errors(together(database_of(app), lambda c, i: second_factor.verify(c, admin["id"], code, KEY)))
    assert results.count("totp") == 1 and results.count(None) == len(results) - 1

    codes = second_factor.enable(db, admin, admin["totp"], KEY)
    results = no_errors(together(database_of(app), lambda c, i: second_factor.verify(c, admin["id"], codes[0], KEY)))
    assert results.count("recovery") == 1 and results.count(None) == len(results) - 1


def test_a_recovery_code_works_once_in_any_case_with_or_without_its_dash(app, make_staff, db):
    admin = make_staff(role="admin")
    codes = second_factor.enable(db, admin, admin["totp"], KEY)
    typed = " " + codes[3].upper().replace("-", " ") + " "
    client = app.test_client()
    password_step(client, admin)
    assert post_code(client, typed).status_code == 302
    assert client.get("/staff/").status_code == 200
    assert audit_rows(db, "recovery_code_used")[-1][:2] == (admin["email"], "9")

    other = app.test_client()
    password_step(other, admin)
    assert post_code(other, codes[3].replace("-", "")).status_code == 200      # used already
    assert post_code(other, codes[4]).status_code == 302


def test_setting_up_again_replaces_the_secret_and_the_recovery_codes(make_staff, db):
    admin = make_staff(role="admin")
    old = second_factor.enable(db, admin, admin["totp"], KEY)
    secret = pyotp.random_base32()
    assert second_factor.confirm(db, admin, secret, "000000" if pyotp.TOTP(secret).now() != "000000" else "111111",
                                 KEY) is None
    new = second_factor.confirm(db, admin, secret, pyotp.TOTP(secret).now(), KEY)
    assert len(new) == 10
    assert second_factor.verify(db, admin["id"], old[0], KEY) is None
    assert second_factor.verify(db, admin["id"], pyotp.TOTP(admin["totp"]).now(), KEY) is None
    # the confirming code is used: it does not open a login too
    assert second_factor.verify(db, admin["id"], pyotp.TOTP(secret).now(), KEY) is None
    assert second_factor.verify(db, admin["id"], new[0], KEY) == "recovery"


def test_the_secret_is_stored_encrypted_and_another_secret_key_cannot_use_it(make_staff, db):
    admin = make_staff(role="admin")
    stored = db.execute("SELECT totp_secret FROM staff WHERE id = ?", [admin["id"]]).fetchone()[0]
    assert stored and admin["totp"] not in stored and admin["totp"].lower() not in stored.lower()
    other = second_factor.derive_key("another-secret-key-" + "y" * 32)
    assert second_factor.verify(db, admin["id"], pyotp.TOTP(admin["totp"]).now(), other) is None
    assert second_factor.verify(db, admin["id"], pyotp.TOTP(admin["totp"]).now(), KEY) == "totp"


def test_an_app_with_another_secret_key_refuses_the_codes(make_app, make_staff):
    admin = make_staff(role="admin")
    other = make_app(SECRET_KEY="another-secret-key-" + "y" * 32).test_client()
    password_step(other, admin)
    refused = post_code(other, pyotp.TOTP(admin["totp"]).now())
    assert refused.status_code == 200 and "That code is wrong" in refused.get_data(as_text=True)
    assert other.get("/staff/").status_code == 302


def test_the_code_step_is_throttled_and_a_known_browser_is_not_blocked_by_a_strangers_codes(make_app, make_staff,
                                                                                             db):
    app = make_app(LOGIN_MAX_FAILURES=3)
    admin = make_staff(role="admin")
    member = app.test_client()
    assert login(member, admin["email"], admin["password"]).status_code == 302    # now a known browser
    member.post("/staff/logout")

    # a stranger who has the password cannot guess the code
    stranger = app.test_client()
    password_step(stranger, admin)
    for _ in range(3):
        assert post_code(stranger, "000000").status_code == 200
    refused = post_code(stranger, pyotp.TOTP(admin["totp"]).now())
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "too many tries" in refused.get_data(as_text=True)
    assert stranger.get("/staff/").status_code == 302
    assert audit_rows(db, "login_code_failed")[-1][2] == 3
    assert audit_rows(db, "login_code_locked")
    # a new password step does not buy the stranger fresh guesses
    stranger2 = app.test_client()
    assert password_step(stranger2, admin).status_code == 429

    # the member's browser, known to the account, still gets in
    assert login(member, admin["email"], admin["password"]).status_code == 302
    assert member.get("/staff/").status_code == 200


def test_a_pending_session_expires_after_a_few_minutes(app, make_staff, db):
    admin = make_staff(role="admin")
    client = app.test_client()
    password_step(client, admin, next="/staff/rules")
    old = accounts._ago(minutes=second_factor.PENDING_MINUTES + 1)
    with db.transaction():
        db.execute("UPDATE staff_sessions SET created_at = ? WHERE staff_id = ? AND pending = 1", [old, admin["id"]])
    answer = post_code(client, pyotp.TOTP(admin["totp"]).now(), next="/staff/rules")
    assert answer.status_code == 302 and answer.location.startswith("/staff/login?")
    assert client.get(CODE_PAGE).status_code == 302


def test_the_code_page_without_a_password_step_leads_to_the_login(client):
    assert client.get(CODE_PAGE).location.startswith("/staff/login")
    assert post_code(client, "123456").location.startswith("/staff/login")


SETUP = "/staff/account/second-factor"


def forced(client, path) -> bool:
    answer = client.get(path)
    return answer.status_code == 302 and answer.location == SETUP


def test_with_the_default_policy_an_admin_sets_up_a_second_factor_before_any_other_page(app, make_staff, db):
    admin = make_staff(role="admin", second_factor=False)
    client = app.test_client()
    assert login(client, admin["email"], admin["password"]).status_code == 302
    # every staff page that can be opened without an id in its address (and needs a login: not
    # the login pages themselves, nor any other page for the logged out)
    stranger = app.test_client()
    paths = [rule.rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/staff")
             and "GET" in rule.methods and not rule.arguments and rule.endpoint != "account.second_factor"
             and (stranger.get(rule.rule).location or "").startswith("/staff/login?")]
    assert {"/staff/", "/staff/account", "/staff/rules", "/staff/audit"} <= set(paths)
    for path in paths:
        assert forced(client, path), path
    assert client.post("/staff/account/sessions/end-others").location == SETUP
    json = client.get("/staff/", headers={"Accept": "application/json"})
    assert json.status_code == 403 and json.get_json()["error"] == "second_factor_required"
    page = client.get(SETUP)
    assert page.status_code == 200 and "data-second-factor-required" in page.get_data(as_text=True)
    key, carried = setup_form(client)
    assert client.post(SETUP, data={"setup": carried, "code": pyotp.TOTP(key).now()}).status_code == 200
    assert client.get("/staff/").status_code == 200
    # logout always works
    client2 = app.test_client()
    other = make_staff(role="admin", second_factor=False)
    login(client2, other["email"], other["password"])
    assert client2.post("/staff/logout").location.endswith("/staff/login")
    assert client2.get("/staff/").location.startswith("/staff/login")


def test_with_the_default_policy_staff_may_go_without(staff_client):
    assert staff_client.get("/staff/").status_code == 200


def test_with_everyone_every_member_sets_one_up(make_app, make_staff):
    app = make_app(STAFF_2FA="everyone")
    member = make_staff(role="staff")
    client = app.test_client()
    login(client, member["email"], member["password"])
    assert forced(client, "/staff/") and forced(client, "/staff/account")


def test_with_off_it_is_optional_for_admins_too(make_app, make_staff):
    app = make_app(STAFF_2FA="off")
    admin = make_staff(role="admin", second_factor=False)
    client = app.test_client()
    login(client, admin["email"], admin["password"])
    assert client.get("/staff/").status_code == 200
    # and one set up is still asked for at login
    with_one = make_staff(role="admin")
    assert password_step(app.test_client(), with_one).location.startswith(CODE_PAGE)


def test_new_recovery_codes_need_a_current_code(app, make_staff, db):
    admin = make_staff(role="admin")
    old = second_factor.enable(db, admin, admin["totp"], KEY)
    client = app.test_client()
    login(client, admin["email"], admin["password"])
    refused = client.post("/staff/account/recovery-codes", data={"code": "nonsense"})
    assert refused.status_code == 422 and "That code is wrong" in refused.get_data(as_text=True)
    conn = dbmod.connect(database_of(app))
    try:
        code = totp_code(conn, admin["email"])
    finally:
        conn.close()
    done = client.post("/staff/account/recovery-codes", data={"code": code})
    assert done.status_code == 200 and done.headers["Cache-Control"] == "no-store"
    assert len(re.findall(r"<li><code>", done.get_data(as_text=True))) == 10
    assert second_factor.verify(db, admin["id"], old[1], KEY) is None


def test_a_note_posted_after_the_session_ended_goes_through_the_code_page(app, make_staff, make_submission):
    """The "away" login (a note re-posted after the session ended) for an account with a second
    factor: the password leads to the code page, then back to the screening (the note is not
    carried through that step)."""
    admin = make_staff(role="admin")
    sub = make_submission()
    client = app.test_client()
    page = f"/staff/submissions/{sub['id']}"
    answer = client.post(page, data={"email": admin["email"], "password": STAFF_PASSWORD, "note": "call back"})
    assert answer.status_code == 302 and answer.location.startswith(CODE_PAGE)
    done = post_code(client, pyotp.TOTP(admin["totp"]).now(), next=page)
    assert done.status_code == 302 and done.location == page
    assert client.get(page).status_code == 200


@pytest.mark.sqlite_only
def test_the_code_page_posts_with_its_csrf_token(csrf_app, make_staff):
    admin = make_staff(role="admin")
    client = csrf_app.test_client()
    assert login(client, admin["email"], admin["password"]).status_code == 302
    other = make_staff(role="admin")
    bare = csrf_app.test_client()
    html = bare.get("/staff/login").get_data(as_text=True)
    bare.post("/staff/login", data={"email": other["email"], "password": other["password"],
                                    "csrf_token": csrf_token_from(html)})
    assert bare.post(CODE_PAGE, data={"code": pyotp.TOTP(other["totp"]).now()}).status_code == 400


def test_setting_up_again_asks_for_a_code_of_the_current_factor(app, make_staff, db):
    """A stolen session cannot swap the member's second factor for its own: a code of the current
    app, or a recovery code (the phone is lost), is asked too."""
    admin = make_staff(role="admin")
    old_codes = second_factor.enable(db, admin, admin["totp"], KEY)
    client = app.test_client()
    login(client, admin["email"], admin["password"])
    key, carried = setup_form(client)
    new_code = pyotp.TOTP(key).now()
    missing = client.post(SETUP, data={"setup": carried, "code": new_code})
    assert missing.status_code == 422 and "Enter a code of your current app" in missing.get_data(as_text=True)
    wrong = client.post(SETUP, data={"setup": carried, "code": new_code, "current_code": "zzzzz-zzzzz"})
    assert wrong.status_code == 422 and "That code of your current app is wrong" in wrong.get_data(as_text=True)
    assert second_factor.verify(db, admin["id"], old_codes[1], KEY) == "recovery"    # still the old factor
    done = client.post(SETUP, data={"setup": carried, "code": new_code, "current_code": old_codes[0]})
    assert done.status_code == 200 and len(re.findall(r"<li><code>", done.get_data(as_text=True))) == 10
    assert second_factor.verify(db, admin["id"], old_codes[2], KEY) is None
    assert second_factor.verify(db, admin["id"], pyotp.TOTP(admin["totp"]).now(), KEY) is None
