"""My account (/staff/account): every member of staff, whatever the role or centre, changes their
own password, sets up a second factor and sees and ends their own sessions. The SQL is in
store/accounts.py and store/second_factor.py.

Behind the same deny-by-default guard as the other staff pages. A member reaches only their own
account: nothing here takes an account id, and a session is named in forms by a keyed hash of its
id (accounts.session_handle), never by the id, so the page hands out no other session's id.
Every POST carries the CSRF token; every success redirects (post/redirect/get).
"""
from __future__ import annotations

import math

import segno
from flask import Blueprint, abort, current_app, g, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, StringField
from wtforms.validators import InputRequired

from ..store import accounts, second_factor
from . import auth, staff
from .database import get_db

bp = Blueprint("account", __name__, url_prefix="/staff/account")
bp.before_request(auth.require_staff)
bp.context_processor(staff.staff_helpers)      # the staff header: centre, who is logged in


class PasswordForm(FlaskForm):
    """The current password, then the new one twice. The messages are in the template."""
    current_password = PasswordField(_l("Current password"), validators=[InputRequired()])
    new_password = PasswordField(_l("New password"), validators=[InputRequired()])
    new_password_again = PasswordField(_l("New password again"), validators=[InputRequired()])


class EndSessionForm(FlaskForm):
    session = HiddenField(validators=[InputRequired()])


class EndOthersForm(FlaskForm):
    """Only the CSRF token."""


class SetupForm(FlaskForm):
    """The set-up of a second factor: the new secret, carried encrypted (second_factor.begin), and
    a code of the app that scanned it; when one is set already, a code of the current one (or a
    recovery code) too, so that a stolen session cannot swap the member's factor for its own."""
    setup = HiddenField()
    code = StringField(_l("Code from the app"), validators=[InputRequired()])
    current_code = StringField(_l("A code of your current app, or a recovery code"))


class RecoveryForm(FlaskForm):
    """New recovery codes: a current code of the app (or an unused recovery code) asked."""
    code = StringField(_l("Code from the app"), validators=[InputRequired()])


# the fields of the password form, as the error codes (the template words them) are keyed
CURRENT, NEW, AGAIN = "current_password", "new_password", "new_password_again"
NOTICES = {"password": _l("Your password is changed. Your other sessions have ended; this one goes on."),
           "ended": _l("That session has ended: that browser must log in again."),
           "ended_all": _l("Your other sessions have ended: those browsers must log in again."),
           "none": _l("There were no other sessions to end.")}
# the code fields' errors, as the templates word them
CODE_ERRORS = {"missing": _l("Enter the 6-digit code from your authenticator app"),
               "wrong": _l("That code is wrong or was already used: type the code the app shows now"),
               "locked": _l("Too many wrong codes: try again later"),
               "expired": _l("This set-up was started too long ago: scan the new code below and try again"),
               "missing_current": _l("Enter a code of your current app, or one of your recovery codes"),
               "wrong_current": _l("That code of your current app is wrong or was already used")}


def _token() -> str | None:
    return request.cookies.get(auth.COOKIE)


def _page(form: PasswordForm | None = None, *, errors: dict | None = None, status: int = 200, headers=None,
          recovery_form: RecoveryForm | None = None, recovery_error: str | None = None):
    sessions = accounts.list_sessions(get_db(), g.staff["id"], current=_token(), key=auth.handle_key(),
                                      **auth._settings())
    notice = NOTICES.get(request.args.get("done", "")) if request.method == "GET" else None
    html = render_template("staff/account.html", form=form or PasswordForm(formdata=None), errors=errors or {},
                           sessions=sessions, notice=notice, code_errors=CODE_ERRORS,
                           second_factor=second_factor.status(get_db(), g.staff["id"]),
                           recovery_form=recovery_form or RecoveryForm(formdata=None),
                           recovery_error=recovery_error,
                           min_password=accounts.MIN_PASSWORD, max_password=accounts.MAX_PASSWORD)
    return html, status, headers or {}


@bp.get("")
def page():
    """The member's own account: the password form and the list of their sessions."""
    return _page()


@bp.post("/password")
def password():
    """Change the password (the current one asked; the CLI's rules); the other sessions end."""
    form = PasswordForm()
    errors = {}
    if not form.validate():         # a wrong CSRF token never gets here (CSRFProtect: 400)
        errors = {name: "missing" for name in (CURRENT, NEW, AGAIN) if form[name].errors}
    else:
        new = form.new_password.data
        if len(new) < accounts.MIN_PASSWORD:
            errors[NEW] = "short"
        elif len(new) > accounts.MAX_PASSWORD:
            errors[NEW] = "long"
        elif form.new_password_again.data != new:
            errors[AGAIN] = "different"
    headers, status = None, 422
    if not errors:
        config = current_app.config
        lock_seconds = float(config["LOGIN_LOCK_MINUTES"]) * 60
        try:
            accounts.change_password(get_db(), g.staff, form.current_password.data, form.new_password.data,
                                     keep=_token(), max_failures=int(config["LOGIN_MAX_FAILURES"]),
                                     lock_seconds=lock_seconds)
        except accounts.AccountError as e:
            if e.code == "locked":
                errors[CURRENT] = "locked"
                status, headers = 429, {"Retry-After": str(math.ceil(lock_seconds))}
            elif e.code == "wrong_password":
                errors[CURRENT] = "wrong"
            else:
                errors[NEW] = "short" if e.code == "short_password" else "long"
        else:
            return redirect(url_for(".page", done="password"))
    for field in form:              # a password never comes back in a page
        if isinstance(field, PasswordField):
            field.data = ""
    return _page(form, errors=errors, status=status, headers=headers)


@bp.post("/sessions/end")
def end_session():
    """End one of the member's other sessions, named by its handle; 404 for any other handle."""
    form = EndSessionForm()
    if not form.validate():
        abort(400)
    if not accounts.end_own_session(get_db(), g.staff, form.session.data, current=_token(), key=auth.handle_key()):
        abort(404)
    return redirect(url_for(".page", done="ended", _anchor="sessions"))


@bp.post("/sessions/end-others")
def end_others():
    """End every session of the member's account but this one."""
    if not EndOthersForm().validate():
        abort(400)
    count = accounts.end_other_sessions(get_db(), g.staff, current=_token())
    return redirect(url_for(".page", done="ended_all" if count else "none", _anchor="sessions"))


# --- the second factor ---------------------------------------------------------------------------

def _qr_svg(uri: str) -> str:
    """The QR code of `uri` as an inline SVG: paths with presentation attributes, no style
    attribute or element (our CSP forbids inline styles), named for screen readers."""
    # a viewBox and no size: the stylesheet sizes it to fit a phone
    svg = segno.make(uri, error="l").svg_inline(scale=4, border=4, dark="#000", light="#fff", omitsize=True)
    return svg.replace("<svg ", '<svg role="img" aria-label="{}" '.format(
        str(_l("QR code to scan with your authenticator app")).replace('"', "")), 1)


def _setup_page(secret: str, carried: str, form: SetupForm | None = None, *, errors: dict | None = None,
                status: int = 200):
    centre = auth.staff_centre()
    issuer = f"{second_factor.ISSUER} ({centre.name})" if centre is not None else second_factor.ISSUER
    form = form or SetupForm(formdata=None)
    form.setup.data = carried
    form.code.data = form.current_code.data = ""        # a code never comes back in a page
    return render_template("staff/second_factor.html", form=form, errors=errors or {}, code_errors=CODE_ERRORS,
                           qr=_qr_svg(second_factor.provisioning_uri(secret, g.staff["email"], issuer)),
                           key=second_factor.group(secret, 4),
                           status=second_factor.status(get_db(), g.staff["id"]),
                           required=auth.must_set_up(g.staff)), status


@bp.get("/second-factor", endpoint="second_factor")
def setup_page():
    """Set up a second factor (or set it up again): a new secret, as a QR code and as text, and a
    code of the app to confirm that it was scanned. Nothing is stored until then."""
    secret, carried = second_factor.begin(auth.second_factor_key())
    return _setup_page(secret, carried)


@bp.post("/second-factor")
def second_factor_confirm():
    """Confirm the set-up with a code of the app: the recovery codes are shown, once, in this
    response (no URL, no copy kept: only their keyed hashes are stored)."""
    form = SetupForm()
    key = auth.second_factor_key()
    secret = second_factor.read_setup(key, form.setup.data)
    if secret is None:              # tampered with, or too old: a new secret to scan
        secret, carried = second_factor.begin(key)
        return _setup_page(secret, carried, form, errors={"code": "expired"}, status=422)
    replacing = second_factor.has_second_factor(get_db(), g.staff["id"])
    if not form.validate() or (replacing and not (form.current_code.data or "").strip()):
        missing = {"code": "missing"} if form.code.errors else {}
        if replacing and not (form.current_code.data or "").strip():
            missing["current_code"] = "missing_current"
        return _setup_page(secret, form.setup.data, form, errors=missing, status=422)
    if not second_factor.matches(secret, form.code.data):
        return _setup_page(secret, form.setup.data, form, errors={"code": "wrong"}, status=422)
    if replacing:           # checked last: a recovery code typed here is used up
        ok, wait = second_factor.check_current(get_db(), g.staff, form.current_code.data, key,
                                               **auth._throttle_settings())
        if not ok:
            page = _setup_page(secret, form.setup.data, form, status=429 if wait else 422,
                               errors={"current_code": "locked" if wait else "wrong_current"})
            return (*page, {"Retry-After": str(max(1, math.ceil(wait)))}) if wait else page
    codes = second_factor.confirm(get_db(), g.staff, secret, form.code.data, key)
    if codes is None:
        return _setup_page(secret, form.setup.data, form, errors={"code": "wrong"}, status=422)
    return _codes_page(codes, first=True)


def _codes_page(codes: list[str], *, first: bool):
    return render_template("staff/recovery_codes.html", codes=codes, first=first), 200, \
        {"Cache-Control": "no-store"}


@bp.post("/recovery-codes")
def recovery_codes():
    """New recovery codes in place of the old ones (a current code of the app asked), shown once
    in this response. Wrong codes count as failed logins of the account, as a wrong current
    password does here, so that a stolen session cannot guess faster than the login form."""
    form = RecoveryForm()
    if not form.validate():
        return _page(recovery_form=form, recovery_error="missing", status=422)
    codes, retry_after = second_factor.new_recovery_codes(get_db(), g.staff, form.code.data,
                                                          auth.second_factor_key(), **auth._throttle_settings())
    form.code.data = ""
    if retry_after:
        return _page(recovery_form=form, recovery_error="locked", status=429,
                     headers={"Retry-After": str(max(1, math.ceil(retry_after)))})
    if codes is None:
        return _page(recovery_form=form, recovery_error="wrong", status=422)
    return _codes_page(codes, first=False)
