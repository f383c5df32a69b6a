"""Staff log in / log out, the server-side session cookie, the deny-by-default guard and the
`screening staff` CLI. The SQL behind all of it is in accounts.py.

Staff pages deny by default: the staff blueprint registers `require_staff` as its
before_request, so a view that forgets a decorator still shows nothing to a stranger.
"""
from __future__ import annotations

import functools
import sys
import time
from urllib.parse import urlsplit

import click
from flask import Blueprint, abort, current_app, g, jsonify, redirect, render_template, request, session, url_for
from flask.cli import AppGroup
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import InputRequired

from . import accounts
from .db import connect, get_db

COOKIE = "screening_staff"
COOKIE_PATH = "/staff"        # the staff cookie is never sent to the public pages or the API
DASHBOARD = "/staff/"
MAX_SLOWDOWN = 3.0            # seconds: the longest pause before answering a failed login

bp = Blueprint("auth", __name__, url_prefix="/staff")


class LoginForm(FlaskForm):
    """Email and password; the messages shown for each error are in the template."""
    email = StringField(_l("Email address"), validators=[InputRequired()])
    password = PasswordField(_l("Password"), validators=[InputRequired()])


# --- the current staff member ------------------------------------------------------------------

def _settings() -> dict:
    """The session timeouts, as load_session and purge_expired_sessions take them."""
    return {"idle_minutes": float(current_app.config["STAFF_IDLE_MINUTES"]),
            "session_hours": float(current_app.config["STAFF_SESSION_HOURS"])}


def load_staff() -> None:
    """Set g.staff to the logged-in account (id, email, name, role, centre) or None."""
    token = request.cookies.get(COOKIE)
    g.staff = accounts.load_session(get_db(), token, **_settings()) if token else None


def _wants_json() -> bool:
    """A script or fetch() asking for JSON gets a 401 in JSON instead of a redirect to a login page."""
    if request.path.endswith(".json"):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]


def _refuse_anonymous():
    """The answer to a request that needs a staff login and has none."""
    if _wants_json():
        return jsonify({"error": "unauthorized", "fields": {}}), 401
    # the path only: a query may hold a client's name (?q=...), which must not travel on in URLs and logs
    return redirect(url_for("auth.login", next=request.path))


def require_staff():
    """before_request of every staff blueprint: nothing passes without a live staff session."""
    if g.get("staff") is None:
        return _refuse_anonymous()
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


def _renew_csrf_secret() -> None:
    """Forget the session's CSRF secret (Flask-WTF keeps it in the session under the field's name),
    so that the next form gets a new one: a token seen before a login or a logout (on a public
    page, say) is no longer accepted after it."""
    name = current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token")
    session.pop(name, None)
    g.pop(name, None)       # Flask-WTF's per-request copy of the signed token


# --- views -----------------------------------------------------------------------------------------

@bp.route("/login", methods=["GET", "POST"])
def login():
    """The login form; a correct email and password start a new session and go on to the dashboard."""
    form = LoginForm()
    next_url = safe_next(request.values.get("next"))
    if request.method == "GET" and g.get("staff") is not None:
        return redirect(next_url or DASHBOARD)
    if request.method == "GET" or not form.validate_on_submit():
        status = 422 if request.method == "POST" else 200
        return render_template("staff/login.html", form=form, next_url=next_url), status

    config = current_app.config
    result = accounts.attempt_login(
        get_db(), form.email.data, form.password.data, request.remote_addr,
        max_failures=int(config["LOGIN_MAX_FAILURES"]), lock_seconds=float(config["LOGIN_LOCK_MINUTES"]) * 60,
        replaces=request.cookies.get(COOKIE))
    if result.staff is None:
        if not result.locked:
            # each failure in a row costs a little more time (0 in the tests); the lock does the rest
            time.sleep(min(float(config["LOGIN_SLOWDOWN_SECONDS"]) * result.failures, MAX_SLOWDOWN))
        form.password.data = ""
        # 200 like any re-shown form; 429 when locked, so scripts know to stop
        return render_template("staff/login.html", form=form, next_url=next_url, failed=True), (
            429 if result.locked else 200)

    accounts.purge_expired_sessions(get_db(), **_settings())     # sessions nobody came back to
    _renew_csrf_secret()
    response = redirect(next_url or DASHBOARD)
    response.set_cookie(COOKIE, result.token, **_cookie_flags())
    return response


@bp.route("/logout", methods=["POST"])
def logout():
    """End the session on the server (a copied cookie stops working) and forget the cookie."""
    accounts.end_session(get_db(), request.cookies.get(COOKIE), staff=g.get("staff"))
    _renew_csrf_secret()
    response = redirect(url_for("auth.login"))
    response.delete_cookie(COOKIE, **_cookie_flags())
    return response


# --- the `screening staff` command line ------------------------------------------------------------

# Operator-facing CLI messages, keyed by accounts.AccountError codes.
CLI_ERRORS = {
    "bad_email": "That is not an email address.",
    "short_password": f"The password must have at least {accounts.MIN_PASSWORD} characters.",
    "long_password": f"The password must have at most {accounts.MAX_PASSWORD} characters.",
    "bad_role": f"The role must be one of: {', '.join(accounts.ROLES)}.",
    "duplicate": "An account with that email already exists.",
    "unknown": "There is no account with that email.",
    "no_password": "No password was given on standard input.",
    "mismatch": "The two passwords differ.",
    "no_centre": "An account must belong to a centre.",
}


def _fail(code: str):
    """Stop the command with a clean message and exit code 1."""
    raise click.ClickException(CLI_ERRORS[code])


def _read_password() -> str:
    """The first line of standard input when it is not a terminal (scripts), else a hidden prompt, twice."""
    if not sys.stdin.isatty():
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            _fail("no_password")
        return line
    first = click.prompt("Password", hide_input=True, err=True)
    if click.prompt("Password again", hide_input=True, err=True) != first:
        _fail("mismatch")
    return first


def _db():
    """A connection for a CLI command (inside the app context)."""
    return connect(current_app.config["DATABASE"])


staff_cli = AppGroup("staff", help="Manage staff accounts (there is no default account).")


def _centre_slug(given: str | None) -> str:
    """The centre a new account belongs to: the one named, or the only one; else a clean error
    that lists the centres."""
    centres = current_app.extensions["screening.centres"]
    listing = ", ".join(centres)
    if given is None:
        if len(centres) == 1:
            return next(iter(centres))
        raise click.ClickException(f"There are several centres: choose one with --centre (one of: {listing}).")
    if given not in centres:
        raise click.ClickException(f"There is no centre {given!r}. The centres are: {listing}.")
    return given


@staff_cli.command("add")
@click.argument("email")
@click.option("--name", default=None, help="The name shown on the staff pages.")
@click.option("--role", default="staff", show_default=True, help="staff or admin (admin of its centre only).")
@click.option("--centre", default=None, metavar="SLUG",
              help="The centre the account belongs to (may be left out when there is one centre).")
def add_command(email, name, role, centre):
    """Create a staff account of one centre; the password is read from standard input.

    \b
    Example: echo 'a long passphrase' | screening staff add ana@centre.example --name Ana --role admin
             echo 'a long passphrase' | screening staff add joan@centre.example --centre exemple-barcelona
    """
    if role not in accounts.ROLES:
        _fail("bad_role")
    slug = _centre_slug(centre)
    try:
        accounts.check_email(email)
        password = _read_password()
        db = _db()
        try:
            staff = accounts.create_staff(db, email=email, password=password, name=name, role=role, centre=slug)
        finally:
            db.close()
    except accounts.AccountError as e:
        _fail(e.code)
    click.echo(f"Created {staff['role']} account {staff['email']} of centre {slug}.")


@staff_cli.command("list")
def list_command():
    """List the staff accounts: email, name, role, state, centre, created.

    \b
    Example: screening staff list
    """
    db = _db()
    try:
        rows = accounts.list_staff(db)
    finally:
        db.close()
    if not rows:
        click.echo("No staff accounts yet. Create one with: screening staff add EMAIL")
    for row in rows:
        state = "active" if row["active"] else "inactive"
        click.echo(f"{row['email']}\t{row['name'] or '-'}\t{row['role']}\t{state}\t{row['centre'] or '-'}\t"
                   f"{row['created_at']}")


@staff_cli.command("deactivate")
@click.argument("email")
def deactivate_command(email):
    """Stop an account from logging in and end its sessions now.

    \b
    Example: screening staff deactivate ana@centre.example
    """
    db = _db()
    try:
        staff = accounts.deactivate(db, email)
    except accounts.AccountError as e:
        _fail(e.code)
    finally:
        db.close()
    click.echo(f"Deactivated {staff['email']}; its sessions have ended.")


@staff_cli.command("reset-password")
@click.argument("email")
def reset_password_command(email):
    """Set a new password (read like `add` does), end the account's sessions and clear its lock.

    \b
    Example: echo 'a new long passphrase' | screening staff reset-password ana@centre.example
    """
    db = _db()
    try:
        if accounts.find_staff(db, email) is None:
            _fail("unknown")
        staff = accounts.reset_password(db, email, _read_password())
    except accounts.AccountError as e:
        _fail(e.code)
    finally:
        db.close()
    click.echo(f"New password set for {staff['email']}; its sessions have ended.")


def init_app(app) -> None:
    """Register the login views, the `screening staff` commands and the loading of g.staff."""
    app.register_blueprint(bp)
    app.before_request(load_staff)      # every request, so any blueprint can trust g.staff
    app.cli.add_command(staff_cli)
