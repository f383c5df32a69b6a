"""The login throttle nobody can turn against a centre (OWASP's "device cookie" pattern,
store/accounts.py and web/auth.py): a browser that has logged in to an account is judged on its own
failures only; other browsers are refused, with Retry-After, until a deadline that grows with the
failures; what was typed as an unknown e-mail is kept only as a keyed hash; repeated refusals are
one audit entry with a count."""
import pytest
from conftest import logged_in_client, login
from itsdangerous import URLSafeSerializer

from screening.store import accounts
from screening.web.auth import COOKIE, DEVICE_COOKIE, DEVICE_SALT


@pytest.fixture
def app(make_app):
    return make_app(LOGIN_MAX_FAILURES=3, LOGIN_LOCK_MINUTES=3)


def browser(app, address):
    """A browser of its own (its own cookies) at a client address."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def known_browser(app, staff, address):
    """A browser that has logged in to the account once (and logged out): it has a device cookie."""
    client = browser(app, address)
    assert login(client, staff["email"], staff["password"]).status_code == 302
    client.post("/staff/logout")
    assert client.get_cookie(COOKIE, path="/staff") is None
    assert client.get_cookie(DEVICE_COOKIE, path="/staff") is not None
    return client


def guess(app, email, address, times):
    """A stranger (no cookie) typing wrong passwords; the statuses it got."""
    client = browser(app, address)
    return [login(client, email, f"wrong guess {n}").status_code for n in range(times)]


def test_an_attackers_guesses_do_not_stop_the_members_known_browser(app, make_staff):
    staff = make_staff()
    mine = known_browser(app, staff, "10.0.0.7")
    statuses = guess(app, staff["email"], "203.0.113.66", 10)
    assert statuses == [200] * 3 + [429] * 7
    # a browser the account does not know is refused even with the right password, from anywhere...
    assert login(browser(app, "198.51.100.1"), staff["email"], staff["password"]).status_code == 429
    # ...but the member's own browser gets in
    response = login(mine, staff["email"], staff["password"])
    assert response.status_code == 302 and mine.get("/staff/").status_code == 200


def test_a_colleagues_typos_at_a_shared_reception_address_do_not_lock_out_the_others(app, make_staff):
    ana, ben, carol = make_staff(), make_staff(), make_staff()
    desk = "192.0.2.10"      # every computer of the reception desk leaves through this address
    ana_pc, ben_pc = known_browser(app, ana, desk), known_browser(app, ben, desk)
    # carol, on a new computer, mistypes her password (and then tries other spellings of her e-mail)
    assert guess(app, carol["email"], desk, 3) == [200, 200, 200]
    assert guess(app, "carol@centre.exampel", desk, 1) == [429]     # the address is throttled now
    assert login(ana_pc, ana["email"], ana["password"]).status_code == 302
    assert login(ben_pc, ben["email"], ben["password"]).status_code == 302


def test_a_known_browsers_own_wrong_guesses_lock_only_that_browser(app, make_staff):
    staff = make_staff()
    desk_pc, home_pc = known_browser(app, staff, "192.0.2.10"), known_browser(app, staff, "192.0.2.99")
    assert [login(desk_pc, staff["email"], "wrong guess").status_code for _ in range(4)] == [200, 200, 200, 429]
    assert login(desk_pc, staff["email"], staff["password"]).status_code == 429
    assert login(home_pc, staff["email"], staff["password"]).status_code == 302
    # nor the account for browsers it does not know: its count is the desk's alone
    assert login(browser(app, "198.51.100.1"), staff["email"], staff["password"]).status_code == 302


def test_an_unknown_browser_is_refused_until_a_deadline_that_grows_with_the_failures(app, make_staff, db):
    """3 failures, then 1 minute, 2 minutes, then LOGIN_LOCK_MINUTES (3) at most."""
    staff = make_staff()
    client = browser(app, "203.0.113.66")
    deadlines = []
    for _ in range(3):
        assert login(client, staff["email"], "wrong guess").status_code == 200
    for _ in range(4):
        refused = login(client, staff["email"], staff["password"])
        assert refused.status_code == 429 and "Set-Cookie" not in refused.headers
        deadlines.append(int(refused.headers["Retry-After"]))
        # the deadline passes: one more try is judged (wrong again), and the next is refused longer
        db.execute("UPDATE login_failures SET at = at - ?", [deadlines[-1] + 1])
        assert login(client, staff["email"], "wrong guess").status_code == 200
    assert 0 < deadlines[0] <= 60 < deadlines[1] <= 120 < deadlines[2] <= 180
    assert 120 < deadlines[3] <= 180                                 # capped
    # refusals are not failures: they never move the deadline
    assert db.execute("SELECT count(*) FROM login_failures WHERE key = ?",
                      [accounts.account_key(staff["id"])]).fetchone()[0] == 3 + 4


def sign(pairs, secret):
    return URLSafeSerializer(secret, salt=DEVICE_SALT).dumps(pairs)


@pytest.mark.parametrize("case", ["another account's", "tampered", "signed with another key", "revoked"])
def test_a_device_cookie_that_is_not_this_accounts_counts_as_unknown(app, make_staff, db, case):
    ana, ben = make_staff(), make_staff()
    ana_pc, ben_pc = known_browser(app, ana, "10.0.0.1"), known_browser(app, ben, "10.0.0.2")
    ana_cookie = ana_pc.get_cookie(DEVICE_COOKIE, path="/staff").value
    guess(app, ana["email"], "203.0.113.66", 3)
    if case == "another account's":
        client = ben_pc
    elif case == "tampered":
        client = browser(app, "10.0.0.3")
        client.set_cookie(DEVICE_COOKIE, ana_cookie[:-3] + ("AAA" if not ana_cookie.endswith("AAA") else "BBB"),
                          path="/staff")
    elif case == "signed with another key":
        ((staff_id, token),) = URLSafeSerializer(app.secret_key, salt=DEVICE_SALT).loads(ana_cookie)
        client = browser(app, "10.0.0.3")
        client.set_cookie(DEVICE_COOKIE, sign([[staff_id, token]], "not the app's secret key at all"), path="/staff")
    else:
        assert accounts.revoke_devices(db, ana["id"]) == 1
        client = ana_pc
    assert login(client, ana["email"], ana["password"]).status_code == 429
    if case != "revoked":
        assert login(ana_pc, ana["email"], ana["password"]).status_code == 302


def test_an_admin_can_lift_the_throttle_of_an_account(app, make_staff, db):
    staff = make_staff()
    guess(app, staff["email"], "203.0.113.66", 3)
    assert login(browser(app, "10.0.0.1"), staff["email"], staff["password"]).status_code == 429
    assert accounts.lift_throttle(db, staff["id"]) == 3
    assert login(browser(app, "10.0.0.1"), staff["email"], staff["password"]).status_code == 302


def test_the_device_cookie_is_signed_httponly_lax_scoped_to_staff_and_long_lived(make_app, make_staff):
    staff = make_staff()
    for secure in (False, True):
        client = make_app(SESSION_COOKIE_SECURE=secure).test_client()
        headers = login(client, staff["email"], staff["password"]).headers.getlist("Set-Cookie")
        (header,) = [h for h in headers if h.startswith(f"{DEVICE_COOKIE}=")]
        assert "HttpOnly" in header and "SameSite=Lax" in header and "Path=/staff" in header
        assert f"Max-Age={365 * 24 * 3600}" in header
        assert ("Secure" in header) is secure
        assert staff["email"] not in header and staff["password"] not in header


def test_repeated_refusals_are_one_audit_entry_with_a_count(app, make_staff, db):
    staff = make_staff()
    guess(app, staff["email"], "203.0.113.66", 8)
    rows = [(r["action"], r["detail"], r["times"], r["centre"]) for r in db["audit_log"].rows_where(order_by="id")]
    assert rows == [("login_failed", staff["email"], 3, "exemple-barcelona"),
                    ("login_locked", staff["email"], 5, "exemple-barcelona")]


def test_an_e_mail_nobody_has_is_kept_in_clear_neither_in_the_audit_nor_the_throttle(app, db):
    typed = "Sup3rSecret-Passw0rd!"        # a password typed into the e-mail field
    guess(app, typed, "203.0.113.66", 5)
    audit_rows = list(db["audit_log"].rows)
    assert [(r["action"], r["times"]) for r in audit_rows] == [("login_failed", 3), ("login_locked", 2)]
    assert all(r["detail"].startswith("#") for r in audit_rows)
    keys = [row[0] for row in db.execute("SELECT key FROM login_failures")]
    assert len(keys) == 6       # 3 for the typed text, 3 for the address
    for stored in (repr(audit_rows), repr(keys)):
        assert "sup3rsecret" not in stored.lower() and "passw0rd" not in stored.lower()
    # the same text gives the same key, so guessing e-mails nobody has is throttled like accounts
    assert guess(app, typed.upper(), "198.51.100.1", 1) == [429]


def entries(client):
    """The audit page's table of entries (not its filter, which names every action)."""
    page = client.get("/staff/audit").text
    return page[page.index("<tbody>"):] if "<tbody>" in page else ""


def test_the_audit_page_says_which_throttle_refused_and_how_many_times(app, make_staff):
    staff = make_staff()
    admin = logged_in_client(app, make_staff, role="admin")
    guess(app, staff["email"], "203.0.113.66", 5)
    page = entries(admin)
    assert "Login refused: account locked" in page and "(2 times)" in page and "(3 times)" in page
    guess(app, "nobody@centre.example", "203.0.113.66", 1)      # the address is throttled now
    page = entries(admin)
    assert "Login refused: too many failures from this address" not in page    # no account: not this centre's
    guess(app, staff["email"], "203.0.113.66", 1)
    page = entries(admin)
    assert "(2 times)" not in page and page.count("(3 times)") == 2     # the same entry, counted on
