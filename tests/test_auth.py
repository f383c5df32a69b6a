"""Staff log in / log out over HTTP: the server-side session cookie, the generic refusal, the lock,
CSRF, and the guard that staff blueprints register (screening/web/auth.py)."""
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
from conftest import csrf_token_from, login
from flask import Blueprint, g, render_template

from screening.store import accounts
from screening.web.auth import COOKIE, admin_required, require_staff

GENERIC = "Email or password is wrong, or the account is locked for a while"


def add_probe(app):
    """A tiny staff blueprint behind the guard, so these tests do not depend on the dashboard."""
    bp = Blueprint("probe", __name__, url_prefix="/staff/probe")
    bp.before_request(require_staff)

    @bp.get("/")
    def whoami():
        return f"hello {g.staff['email']} ({g.staff['role']})"

    @bp.get("/export.json")
    def export():
        return {"rows": []}

    @bp.get("/page")
    def page():
        return render_template("staff/base.html")

    @bp.get("/admin")
    @admin_required
    def admin_only():
        return "admins only"

    app.register_blueprint(bp)
    return app


@pytest.fixture
def app(make_app):
    return add_probe(make_app(LOGIN_MAX_FAILURES=3))


@pytest.fixture
def csrf_app(make_app):
    return add_probe(make_app(WTF_CSRF_ENABLED=True))


def staff_cookie(client):
    cookie = client.get_cookie(COOKIE, path="/staff")
    return cookie.value if cookie else None


def error_summary(response):
    """The text of the page's error summary (what a screen reader announces), or ''."""
    match = re.search(r'<div class="error-summary".*?</div>', response.get_data(as_text=True), re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", match.group(0))).strip() if match else ""


def ago(**delta):
    return (datetime.now(UTC) - timedelta(**delta)).isoformat(timespec="microseconds")


# --- the page ----------------------------------------------------------------------------------------

def test_login_page_has_labelled_fields_and_a_log_in_button(client):
    html = client.get("/staff/login").get_data(as_text=True)
    assert '<label for="email">' in html and 'id="email" name="email" type="text"' in html
    assert '<label for="password">' in html and 'id="password" name="password" type="password"' in html
    assert ">Log in</button>" in html
    assert 'name="csrf_token"' in html


class _Inputs(HTMLParser):
    """Every <input>'s attributes, in page order."""

    def __init__(self, html):
        super().__init__()
        self.found = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag == "input":
            self.found.append(dict(attrs))


def test_the_login_fields_autofill_as_the_html_standard_allows(client):
    """A password manager fills the account's name and password; the W3C checker refused
    autocomplete="username" on type="email" (only an e-mail address may be autofilled there)."""
    for lang in ("en", "ca", "es"):
        fields = {i["name"]: i for i in _Inputs(client.get(f"/staff/login?lang={lang}").text).found}
        assert fields["email"]["autocomplete"] == "username" and fields["email"]["type"] == "text"
        assert fields["email"]["inputmode"] == "email"     # a phone still shows its e-mail keyboard
        assert fields["password"]["autocomplete"] == "current-password"
        assert all(i["autocomplete"].split()[-1] == "email" for i in fields.values()
                   if i.get("type") == "email" and "autocomplete" in i)


def test_empty_fields_get_a_message_at_each_field(client):
    response = client.post("/staff/login", data={"email": "", "password": ""})
    assert response.status_code == 422
    summary = error_summary(response)
    assert "Enter your email address" in summary and "Enter your password" in summary
    html = response.get_data(as_text=True)
    assert 'href="#email"' in html and 'href="#password"' in html and 'role="alert"' in html
    assert 'aria-describedby="email-error"' in html


# --- logging in ----------------------------------------------------------------------------------------

def test_right_password_logs_in_and_goes_to_the_dashboard(client, make_staff):
    staff = make_staff()
    response = login(client, staff["email"].upper(), staff["password"])
    assert response.status_code == 302 and response.headers["Location"] == "/staff/"
    assert client.get("/staff/probe/").get_data(as_text=True) == f"hello {staff['email']} (staff)"


def test_the_cookie_carries_only_a_random_token_whose_hash_is_the_session(client, make_staff, db):
    staff = make_staff()
    login(client, staff["email"], staff["password"])
    token = staff_cookie(client)
    assert len(token) >= 40 and str(staff["id"]) != token and staff["email"] not in token
    assert db.execute("SELECT staff_id FROM staff_sessions WHERE id = ?",
                      [accounts.session_id(token)]).fetchone() == (staff["id"],)


@pytest.mark.parametrize("case", ["wrong password", "unknown email", "inactive account", "locked account"])
def test_every_refused_login_shows_the_same_message(client, make_staff, db, case):
    staff = make_staff()
    email, password = staff["email"], staff["password"]
    if case == "wrong password":
        password = "not the password"
    elif case == "unknown email":
        email = "nobody@centre.example"
    elif case == "inactive account":
        accounts.deactivate(db, email)
    else:
        for _ in range(3):
            login(client, email, "wrong guess")
    response = login(client, email, password)
    assert response.status_code == (429 if case == "locked account" else 200)
    assert error_summary(response) == f"There is a problem {GENERIC}"
    assert staff_cookie(client) is None
    assert client.get("/staff/probe/").status_code == 302


def test_the_account_is_locked_after_too_many_failures_even_for_the_right_password(client, make_staff):
    staff = make_staff()
    for _ in range(3):
        assert login(client, staff["email"], "wrong guess").status_code == 200
    response = login(client, staff["email"], staff["password"])
    assert response.status_code == 429 and GENERIC in response.get_data(as_text=True)
    assert staff_cookie(client) is None


def test_the_lock_holds_across_two_workers_on_the_same_database(make_app, make_staff):
    """Two app instances on one file stand for two gunicorn workers: failures add up."""
    first, second = make_app(LOGIN_MAX_FAILURES=4), make_app(LOGIN_MAX_FAILURES=4)
    staff = make_staff()
    for worker in (first, second, first, second):
        login(worker.test_client(), staff["email"], "wrong guess")
    for worker in (first, second):
        assert login(worker.test_client(), staff["email"], staff["password"]).status_code == 429


def test_the_lock_ends_after_the_lock_time(client, make_staff, db):
    staff = make_staff()
    for _ in range(3):
        login(client, staff["email"], "wrong guess")
    db.execute("UPDATE login_failures SET at = at - 15 * 60 - 1")
    assert login(client, staff["email"], staff["password"]).status_code == 302


def test_logins_and_failures_are_audited_without_the_password(client, make_staff, db):
    staff = make_staff()
    login(client, staff["email"], "my-guess-canary")
    login(client, staff["email"], staff["password"])
    client.post("/staff/logout")
    rows = [(r["action"], r["staff_email"], r["detail"]) for r in db["audit_log"].rows_where(order_by="id")]
    assert rows == [("login_failed", None, staff["email"]), ("login", staff["email"], None),
                    ("logout", staff["email"], None)]
    assert "my-guess-canary" not in repr(list(db["audit_log"].rows))


def test_a_new_session_id_is_issued_at_each_login(client, make_staff, db):
    staff = make_staff()
    client.set_cookie(COOKIE, "planted-by-an-attacker", path="/staff")
    login(client, staff["email"], staff["password"])
    first = staff_cookie(client)
    assert first != "planted-by-an-attacker"
    login(client, staff["email"], staff["password"])
    second = staff_cookie(client)
    assert second != first
    ids = [row[0] for row in db.execute("SELECT id FROM staff_sessions")]
    assert ids == [accounts.session_id(second)]     # the session it replaced is gone


def test_a_logged_in_visit_to_the_login_page_goes_to_the_dashboard(staff_client):
    response = staff_client.get("/staff/login")
    assert response.status_code == 302 and response.headers["Location"] == "/staff/"


# --- cookie flags -------------------------------------------------------------------------------------

def test_the_cookie_is_httponly_samesite_lax_and_scoped_to_staff_pages(client, make_staff):
    staff = make_staff()
    header = login(client, staff["email"], staff["password"]).headers["Set-Cookie"]
    assert header.startswith(f"{COOKIE}=")
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Path=/staff" in header
    assert "Secure" not in header       # off by default so http://127.0.0.1 works


def test_the_cookie_is_secure_when_configured(make_app, make_staff):
    client = make_app(SESSION_COOKIE_SECURE=True).test_client()
    staff = make_staff()
    header = login(client, staff["email"], staff["password"]).headers["Set-Cookie"]
    assert "Secure" in header and "HttpOnly" in header and "SameSite=Lax" in header


def staff_set_cookies(response):
    """The Set-Cookie headers of a response that set or delete the staff cookie."""
    return [h for h in response.headers.getlist("Set-Cookie") if h.startswith(f"{COOKIE}=")]


@pytest.mark.parametrize("settings,flags,absent", [
    ({"SESSION_COOKIE_SAMESITE": "Strict"}, ["SameSite=Strict", "HttpOnly"], ["SameSite=Lax", "Secure"]),
    ({"SESSION_COOKIE_SAMESITE": "None", "SESSION_COOKIE_SECURE": True}, ["SameSite=None", "Secure", "HttpOnly"],
     ["SameSite=Lax"]),
    ({"SESSION_COOKIE_HTTPONLY": False}, ["SameSite=Lax"], ["HttpOnly"]),
])
def test_the_staff_cookie_follows_the_cookie_settings_at_login_and_logout(make_app, make_staff, settings, flags,
                                                                          absent):
    client = make_app(**settings).test_client()
    staff = make_staff()
    [set_at_login] = staff_set_cookies(login(client, staff["email"], staff["password"]))
    [deleted_at_logout] = staff_set_cookies(client.post("/staff/logout"))
    assert "Expires=Thu, 01 Jan 1970" in deleted_at_logout
    for header in (set_at_login, deleted_at_logout):
        assert "Path=/staff" in header
        assert all(flag in header for flag in flags), header
        assert not any(flag in header for flag in absent), header


# --- ending sessions ----------------------------------------------------------------------------------

def test_logout_ends_the_session_and_a_captured_cookie_stops_working(app, client, make_staff):
    staff = make_staff()
    login(client, staff["email"], staff["password"])
    captured = staff_cookie(client)
    response = client.post("/staff/logout")
    assert response.status_code == 302 and response.headers["Location"] == "/staff/login"
    assert staff_cookie(client) is None
    thief = app.test_client()
    thief.set_cookie(COOKIE, captured, path="/staff")
    response = thief.get("/staff/probe/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/staff/login")


@pytest.mark.parametrize("change", ["reset_password", "deactivate"])
def test_password_reset_and_deactivation_end_the_accounts_sessions(staff_client, db, change):
    assert staff_client.get("/staff/probe/").status_code == 200
    if change == "reset_password":
        accounts.reset_password(db, staff_client.staff["email"], "another long passphrase")
    else:
        accounts.deactivate(db, staff_client.staff["email"])
    assert staff_client.get("/staff/probe/").status_code == 302


@pytest.mark.parametrize("column, age", [("last_seen_at", {"minutes": 31}),
                                         ("created_at", {"hours": 10, "seconds": 1})])
def test_sessions_expire_when_idle_and_after_the_absolute_limit(staff_client, db, column, age):
    assert staff_client.get("/staff/probe/").status_code == 200
    db.execute(f"UPDATE staff_sessions SET {column} = ?", [ago(**age)])
    response = staff_client.get("/staff/probe/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/staff/login")


def test_each_visit_restarts_the_idle_clock(staff_client, db):
    db.execute("UPDATE staff_sessions SET created_at = ?, last_seen_at = ?", [ago(minutes=50), ago(minutes=29)])
    assert staff_client.get("/staff/probe/").status_code == 200
    assert db.execute("SELECT last_seen_at FROM staff_sessions").fetchone()[0] > ago(minutes=1)


# --- the guard --------------------------------------------------------------------------------------

def test_strangers_are_sent_to_the_login_page_with_the_page_they_were_going_to(client):
    response = client.get("/staff/probe/?status=new")
    assert response.status_code == 302
    assert response.headers["Location"] == "/staff/login?next=/staff/probe/"


def test_a_clients_name_searched_for_never_travels_on_in_the_login_address(client, make_staff):
    response = client.get("/staff/probe/?q=Ana+Garc%C3%ADa&status=new")
    assert response.headers["Location"] == "/staff/login?next=/staff/probe/"
    login_page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Ana" not in login_page and "Garc" not in login_page
    staff = make_staff()
    assert login(client, staff["email"], staff["password"], next="/staff/probe/").headers["Location"] == \
        "/staff/probe/"


@pytest.mark.parametrize("path, headers", [("/staff/probe/", {"Accept": "application/json"}),
                                           ("/staff/probe/export.json", {})])
def test_strangers_asking_for_json_get_a_401_in_json(client, path, headers):
    response = client.get(path, headers=headers)
    assert response.status_code == 401
    assert response.get_json() == {"error": "unauthorized", "fields": {}}


def test_admin_pages_refuse_other_staff_and_open_for_admins(staff_client, admin_client, client):
    assert staff_client.get("/staff/probe/admin").status_code == 403
    assert admin_client.get("/staff/probe/admin").get_data(as_text=True) == "admins only"
    assert client.get("/staff/probe/admin").status_code == 302


def test_staff_pages_are_not_cached(staff_client):
    assert staff_client.get("/staff/probe/").headers["Cache-Control"] == "no-store"
    assert staff_client.get("/staff/login").headers["Cache-Control"] == "no-store"


# --- where a login goes next -------------------------------------------------------------------------

def test_a_login_returns_to_a_local_page(client, make_staff):
    staff = make_staff()
    response = login(client, staff["email"], staff["password"], next="/staff/probe/?status=new")
    assert response.headers["Location"] == "/staff/probe/?status=new"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/", "/\\evil.example", "\\\\evil.example",
                                    "http:/evil.example", "javascript:alert(1)", "staff/", " //evil.example",
                                    "/\t/evil.example", "/\r\nSet-Cookie: x=1"])
def test_a_login_never_redirects_to_another_site(client, make_staff, target):
    staff = make_staff()
    response = login(client, staff["email"], staff["password"], next=target)
    assert response.status_code == 302
    assert response.headers["Location"] == "/staff/"


# --- CSRF (on, as in production) -----------------------------------------------------------------------

def test_a_login_without_a_valid_csrf_token_is_refused_and_starts_nothing(csrf_app, make_staff, db):
    client = csrf_app.test_client()
    staff = make_staff()
    client.get("/staff/login")
    for token in (None, "forged"):
        data = {"email": staff["email"], "password": staff["password"]}
        if token:
            data["csrf_token"] = token
        assert client.post("/staff/login", data=data).status_code == 400
    assert staff_cookie(client) is None
    assert db["staff_sessions"].count == 0 and db["audit_log"].count == 0


def test_a_logout_without_a_valid_csrf_token_is_refused_and_the_session_lives_on(csrf_app, make_staff, db):
    client = csrf_app.test_client()
    staff = make_staff()
    assert login(client, staff["email"], staff["password"]).status_code == 302
    assert client.post("/staff/logout", data={"csrf_token": "forged"}).status_code == 400
    assert client.get("/staff/probe/").status_code == 200
    assert db["staff_sessions"].count == 1


def test_the_log_out_button_works_with_csrf_on(csrf_app, make_staff):
    client = csrf_app.test_client()
    staff = make_staff()
    login(client, staff["email"], staff["password"])
    page = client.get("/staff/probe/page").get_data(as_text=True)
    assert ">Log out</button>" in page
    assert client.post("/staff/logout", data={"csrf_token": csrf_token_from(page)}).status_code == 302
    assert client.get("/staff/probe/").status_code == 302
