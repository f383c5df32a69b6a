"""My account (/staff/account): every member of staff, whatever the role or centre, changes their
own password and sees and ends their own sessions. The SQL is in store/accounts.py.

Behind the same deny-by-default guard as the other staff pages. A member reaches only their own
account: nothing here takes an account id, and a session is named in forms by a keyed hash of its
id (accounts.session_handle), never by the id, so the page hands out no other session's id.
Every POST carries the CSRF token; every success redirects (post/redirect/get).
"""
from __future__ import annotations

import math

from flask import Blueprint, abort, current_app, g, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField
from wtforms.validators import InputRequired

from ..store import accounts
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


# the fields of the password form, as the error codes (the template words them) are keyed
CURRENT, NEW, AGAIN = "current_password", "new_password", "new_password_again"
NOTICES = {"password": _l("Your password is changed. Your other sessions have ended; this one goes on."),
           "ended": _l("That session has ended: that browser must log in again."),
           "ended_all": _l("Your other sessions have ended: those browsers must log in again."),
           "none": _l("There were no other sessions to end.")}


def _token() -> str | None:
    return request.cookies.get(auth.COOKIE)


def _page(form: PasswordForm | None = None, *, errors: dict | None = None, status: int = 200, headers=None):
    sessions = accounts.list_sessions(get_db(), g.staff["id"], current=_token(), key=auth.handle_key(),
                                      **auth._settings())
    notice = NOTICES.get(request.args.get("done", "")) if request.method == "GET" else None
    html = render_template("staff/account.html", form=form or PasswordForm(formdata=None), errors=errors or {},
                           sessions=sessions, notice=notice,
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
