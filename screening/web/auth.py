"""Staff log in / log out, the server-side session cookie and the deny-by-default guard. The SQL
behind them is in store/accounts.py; the `screening staff` commands are in cli.py.

Staff pages deny by default: the staff blueprint registers `require_staff` as its
before_request, so a view that forgets a decorator still shows nothing to a stranger.
"""
from __future__ import annotations

import functools
import hashlib
import math
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, g, jsonify, redirect, render_template, request, session, url_for
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from itsdangerous import BadData, URLSafeSerializer
from wtforms import PasswordField, StringField
from wtforms.validators import InputRequired

from ..store import accounts, second_factor
from .database import get_db

COOKIE = "screening_staff"
COOKIE_PATH = "/staff"        # the staff cookie is never sent to the public pages or the API
DASHBOARD = "/staff/"
# The device cookie (OWASP's "device cookie" pattern, store/accounts.py): signed with the app's
# secret, it names the accounts this browser has logged in to and a random device token for each.
# A browser known to an account is judged on its own failed logins only.
DEVICE_COOKIE = "screening_device"
DEVICE_SALT = "screening-staff-device"
DEVICE_MAX_AGE = 365 * 24 * 3600

bp = Blueprint("auth", __name__, url_prefix="/staff")


class LoginForm(FlaskForm):
    """Email and password; the messages shown for each error are in the template."""
    email = StringField(_l("Email address"), validators=[InputRequired()])
    password = PasswordField(_l("Password"), validators=[InputRequired()])


class CodeForm(FlaskForm):
    """The login's second step: one field, `code`, for a code of the app or a recovery code (SPEC)."""
    code = StringField(_l("Code"), validators=[InputRequired()])


# --- the current staff member ------------------------------------------------------------------

def _settings() -> dict:
    """The session timeouts, as load_session and purge_expired_sessions take them."""
    return {"idle_minutes": float(current_app.config["STAFF_IDLE_MINUTES"]),
            "session_hours": float(current_app.config["STAFF_SESSION_HOURS"])}


def load_staff() -> None:
    """Set g.staff to the logged-in account (id, email, name, role, centre) or None."""
    token = request.cookies.get(COOKIE)
    g.staff = accounts.load_session(get_db(), token, **_settings()) if token else None


def staff_centre():
    """The logged-in account's centre (None when logged out, or if its file is gone)."""
    staff = g.get("staff")
    return current_app.extensions["screening.centres"].get(staff["centre"]) if staff else None


def _wants_json() -> bool:
    """A script or fetch() asking for JSON gets a 401 in JSON instead of a redirect to a login page."""
    if request.path.endswith(".json"):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]


def page_of(path: str) -> str:
    """The page a request was made from: `path` itself when it can be opened (GET), else the page
    one level up (a form's POST-only action, /staff/submissions/7/notes, is on /staff/submissions/7),
    else the dashboard. Logging in then leads back there, not to a 405."""
    adapter = current_app.create_url_adapter(request)
    for candidate in (path, path.rstrip("/").rsplit("/", 1)[0]):
        if candidate.startswith(COOKIE_PATH) and adapter.test(candidate, method="GET"):
            return candidate
    return DASHBOARD


def _refuse_anonymous():
    """The answer to a request that needs a staff login and has none."""
    if _wants_json():
        return jsonify({"error": "unauthorized", "fields": {}}), 401
    # the path only: a query may hold a client's name (?q=...), which must not travel on in URLs and logs
    return redirect(url_for("auth.login", next=page_of(request.path)))


# the pages an account that must set up a second factor may still open (logout is not guarded)
SETUP_ENDPOINTS = ("account.second_factor", "account.second_factor_confirm")


def must_set_up(staff: dict | None) -> bool:
    """Whether SCREENING_STAFF_2FA makes this account set up a second factor before any other page."""
    if not staff or staff.get("second_factor"):
        return False
    policy = current_app.config["STAFF_2FA"]
    return policy == "everyone" or (policy == "admins" and staff["role"] == "admin")


def require_staff():
    """before_request of every staff blueprint: nothing passes without a live staff session, and
    an account that must set up a second factor (SCREENING_STAFF_2FA) is sent to do that first."""
    if g.get("staff") is None:
        return _refuse_anonymous()
    if must_set_up(g.staff) and request.endpoint not in SETUP_ENDPOINTS:
        if _wants_json():
            return jsonify({"error": "second_factor_required", "fields": {}}), 403
        return redirect(url_for("account.second_factor"))
    return None


def admin_required(view):
    """A view only admins may use: strangers are sent to log in, other staff get 403."""
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if g.get("staff") is None:
            return _refuse_anonymous()
        if g.staff["role"] != "admin":
            abort(403)
        return view(*args, **kwargs)
    return wrapped


def safe_next(target: str | None) -> str | None:
    """`target` when it is a path on this site, else None (no open redirect: no scheme, no host,
    no '//' or backslash tricks that browsers read as another host)."""
    if not target or len(target) > 2000 or not target.startswith("/") or target.startswith("//"):
        return None
    if "\\" in target or any(ord(ch) < 32 or ord(ch) == 127 for ch in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def _cookie_flags() -> dict:
    """The staff cookie's flags: the same SCREENING_SESSION_COOKIE_* settings as Flask's own cookie."""
    config = current_app.config
    return {"path": COOKIE_PATH, "httponly": config["SESSION_COOKIE_HTTPONLY"],
            "samesite": config["SESSION_COOKIE_SAMESITE"], "secure": config["SESSION_COOKIE_SECURE"]}


def handle_key() -> bytes:
    """The key of the handles that name sessions and accounts in forms and URLs
    (accounts.session_handle, accounts.staff_handle), derived from the app's secret: the same on
    every app server, and no use to anyone without it."""
    secret = str(current_app.config["SECRET_KEY"]).encode()
    return hashlib.sha256(b"screening staff session handles\0" + secret).digest()


def second_factor_key() -> bytes:
    """The key that encrypts TOTP secrets and keys recovery codes (second_factor.derive_key of the
    app's secret): another SECRET_KEY cannot read them."""
    return second_factor.derive_key(str(current_app.config["SECRET_KEY"]))


def _throttle_settings() -> dict:
    config = current_app.config
    return {"max_failures": int(config["LOGIN_MAX_FAILURES"]),
            "lock_seconds": float(config["LOGIN_LOCK_MINUTES"]) * 60}


def _device_serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=DEVICE_SALT)


def read_devices() -> list[tuple[int, str]]:
    """The (account id, device token) pairs of the browser's device cookie, newest first; none
    when there is no cookie or it was not signed by this app (tampered, or another secret)."""
    raw = request.cookies.get(DEVICE_COOKIE)
    if not raw or len(raw) > 4000:
        return []
    try:
        pairs = _device_serializer().loads(raw)
    except BadData:
        return []
    if not isinstance(pairs, list):
        return []
    return [(p[0], p[1]) for p in pairs if isinstance(p, list) and len(p) == 2
            and isinstance(p[0], int) and isinstance(p[1], str)][:accounts.MAX_DEVICES]


def _remember_device(staff_id: int, device: str) -> None:
    """After a login: the device cookie to send, this account's pair first (a reception PC
    shared by colleagues remembers up to MAX_DEVICES accounts)."""
    pairs = [[staff_id, device]] + [[s, d] for s, d in read_devices() if s != staff_id]
    g.device_cookie = _device_serializer().dumps(pairs[:accounts.MAX_DEVICES])


def _renew_csrf_secret() -> None:
    """Forget the session's CSRF secret (Flask-WTF keeps it in the session under the field's name),
    so that the next form gets a new one: a token seen before a login or a logout (on a public
    page, say) is no longer accepted after it."""
    name = current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token")
    session.pop(name, None)
    g.pop(name, None)       # Flask-WTF's per-request copy of the signed token


# the browser and the system a User-Agent names, coarse, first match wins: Edge, Opera and Samsung
# Internet also say "Chrome", Chrome also says "Safari", iPads also say "Mac OS X", Android "Linux"
_BROWSERS = (("Edg", "Edge"), ("OPR/", "Opera"), ("SamsungBrowser", "Samsung Internet"), ("Firefox/", "Firefox"),
             ("FxiOS", "Firefox"), ("CriOS", "Chrome"), ("Chrome/", "Chrome"),
             ("Safari/", "Safari"))
_SYSTEMS = (("Android", "Android"), ("iPhone", "iOS"), ("iPad", "iOS"), ("iPod", "iOS"), ("CrOS", "ChromeOS"),
            ("Windows", "Windows"), ("Macintosh", "macOS"), ("Mac OS X", "macOS"), ("Linux", "Linux"))


def browser_family(user_agent: str | None) -> str | None:
    """A session's browser family as stored: "Firefox/Android", "Chrome/" (system unknown), or None
    when neither is known. Names only (no version, no address), to tell one's sessions apart."""
    agent = (user_agent or "")[:1000]
    browser = next((name for mark, name in _BROWSERS if mark in agent), "")
    system = next((name for mark, name in _SYSTEMS if mark in agent), "")
    return f"{browser}/{system}" if browser or system else None


# --- views -----------------------------------------------------------------------------------------

def login_page(form: LoginForm | None = None, *, status: int = 200, failed: bool = False, headers=None, **page):
    """The login form as a response. `page`: `next_url` (where to go after), `action` (where the form
    posts, when not /staff/login) and `note` (a note typed when the session ended, carried in a hidden
    field: never in a URL or the cookie session)."""
    return render_template("staff/login.html", form=form or LoginForm(formdata=None), failed=failed,
                           **page), status, headers or {}


def check_login(*, away: bool = False, **page):
    """Log in with the posted form: the new session's token (g.staff is then the account), or a
    response: the login form again (with its errors; 429 with Retry-After when this browser is
    refused for a while), or, for an account with a second factor, the redirect to the code page
    with the pending session's cookie. `away`: the form was posted to a staff page rather than /staff/login,
    which answers a refusal with 401. Nothing waits here: a throttled browser is refused at once."""
    form = LoginForm()
    if request.method == "GET" or not form.validate_on_submit():
        status = (401 if away else 422) if request.method == "POST" else 200
        return login_page(form, status=status, **page)

    config = current_app.config
    lock_seconds = float(config["LOGIN_LOCK_MINUTES"]) * 60
    result = accounts.attempt_login(
        get_db(), form.email.data, form.password.data, request.remote_addr,
        max_failures=int(config["LOGIN_MAX_FAILURES"]), lock_seconds=lock_seconds,
        secret=config["SECRET_KEY"], devices=dict(reversed(read_devices())),
        replaces=request.cookies.get(COOKIE), browser=browser_family(request.headers.get("User-Agent")))
    if result.staff is None:
        form.password.data = ""
        if result.locked:
            # 429 so that scripts stop, and when this browser may try again
            return login_page(form, status=429, failed=True,
                              headers={"Retry-After": str(max(1, math.ceil(result.retry_after)))}, **page)
        # 200 like any re-shown form
        return login_page(form, status=401 if away else 200, failed=True, **page)

    accounts.purge_expired_sessions(get_db(), **_settings())     # sessions nobody came back to
    _renew_csrf_secret()
    if result.pending:
        # the password was right, the second factor is to come: a pending session (it opens no
        # page) and on to the code page. A note carried by an "away" login is lost here (only the
        # login form carries it); the member comes back to the page it was typed on.
        after = page.get("next_url") or (page.get("action") if away else None)
        response = redirect(url_for("auth.login_code", next=after) if after else url_for("auth.login_code"))
        response.set_cookie(COOKIE, result.token, **_cookie_flags())
        return response
    g.staff = result.staff
    _remember_device(result.staff["id"], result.device)
    return result.token


def start_session(response, token: str):
    """Give the browser the new session's cookie, and the device cookie that makes it known."""
    response.set_cookie(COOKIE, token, **_cookie_flags())
    if g.get("device_cookie"):
        response.set_cookie(DEVICE_COOKIE, g.device_cookie, max_age=DEVICE_MAX_AGE, **_cookie_flags())
    return response


@bp.route("/login", methods=["GET", "POST"])
def login():
    """The login form; a correct email and password start a new session and go on to the dashboard."""
    next_url = safe_next(request.values.get("next"))
    if request.method == "GET" and g.get("staff") is not None:
        return redirect(next_url or DASHBOARD)
    token = check_login(next_url=next_url)
    if not isinstance(token, str):
        return token
    return start_session(redirect(next_url or DASHBOARD), token)


def code_page(form: CodeForm | None = None, *, status: int = 200, failed: bool = False, headers=None,
              next_url: str | None = None):
    """The login's code page as a response."""
    return render_template("staff/login_code.html", form=form or CodeForm(formdata=None), failed=failed,
                           locked=status == 429, next_url=next_url), status, headers or {}


@bp.route("/login/code", methods=["GET", "POST"])
def login_code():
    """The login's second step, after the right password of an account with a second factor: a
    code of the authenticator app or a recovery code turns the pending session into a full one
    (under a new cookie token). Throttled as the password is: 429 with Retry-After."""
    next_url = safe_next(request.values.get("next"))
    token = request.cookies.get(COOKIE)
    if g.get("staff") is not None and request.method == "GET":
        return redirect(next_url or DASHBOARD)
    if second_factor.pending_staff(get_db(), token) is None:
        # no password step, or it was too long ago: start again
        return redirect(url_for("auth.login", next=next_url) if next_url else url_for("auth.login"))
    form = CodeForm()
    if request.method == "GET":
        return code_page(form, next_url=next_url)
    if not form.validate_on_submit():
        return code_page(form, status=422, next_url=next_url)
    result = second_factor.attempt_code(get_db(), token, form.code.data, request.remote_addr,
                                        key=second_factor_key(), devices=dict(reversed(read_devices())),
                                        **_throttle_settings())
    form.code.data = ""          # a code never comes back in a page
    if result.expired:
        return redirect(url_for("auth.login", next=next_url) if next_url else url_for("auth.login"))
    if result.locked:
        return code_page(form, status=429, failed=True, next_url=next_url,
                         headers={"Retry-After": str(max(1, math.ceil(result.retry_after)))})
    if result.staff is None:
        return code_page(form, status=200, failed=True, next_url=next_url)
    _renew_csrf_secret()
    g.staff = result.staff
    _remember_device(result.staff["id"], result.device)
    return start_session(redirect(next_url or DASHBOARD), result.token)


@bp.route("/logout", methods=["POST"])
def logout():
    """End the session on the server (a copied cookie stops working) and forget the cookie."""
    accounts.end_session(get_db(), request.cookies.get(COOKIE), staff=g.get("staff"))
    _renew_csrf_secret()
    response = redirect(url_for("auth.login"))
    response.delete_cookie(COOKIE, **_cookie_flags())
    return response


def init_app(app) -> None:
    """Register the login views and the loading of g.staff."""
    app.register_blueprint(bp)
    app.before_request(load_staff)      # every request, so any blueprint can trust g.staff
