"""The staff pages a stranger may open: /staff/forgot (ask for a password reset link) and the pages
of the e-mailed links, /staff/reset/<token> and /staff/invitation/<token>. The SQL is in
store/links.py.

/staff/forgot answers the same whether or not the address has an account, and is throttled per
address and per e-mail typed (429 with Retry-After). A link's token has to be in its URL (it
comes by e-mail): its pages send `Referrer-Policy: no-referrer`, so the token never leaves in a
Referer header, not even to this site's own stylesheet; they are no-store like every page. With
no Referer, Flask-WTF's HTTPS referrer check would refuse their forms, so these two views are
exempt from CSRFProtect and check the form's CSRF token themselves (FlaskForm.validate). A used,
expired, superseded or unknown token gets one and the same page, 404.
"""
from __future__ import annotations

import math

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField

from ..store import accounts, links
from . import notify
from .database import get_db

bp = Blueprint("links", __name__, url_prefix="/staff")
LINK_ENDPOINTS = ("links.reset", "links.invitation")


@bp.after_request
def no_referrer(response):
    """A page whose URL holds a token names no page in the Referer of what it loads or links to."""
    if request.endpoint in LINK_ENDPOINTS:
        response.headers["Referrer-Policy"] = "no-referrer"
    return response


class ForgotForm(FlaskForm):
    email = StringField(_l("Email address"))


class PasswordForm(FlaskForm):
    """A new password twice (an invitation also asks for a name). Messages are in the template."""
    name = StringField(_l("Your name"))
    new_password = PasswordField(_l("New password"))
    new_password_again = PasswordField(_l("New password again"))


@bp.route("/forgot", methods=["GET", "POST"])
def forgot():
    """Ask for a password reset link by e-mail address; the answer never says whether it has an account."""
    form = ForgotForm()
    if request.method == "GET":
        return render_template("staff/forgot.html", form=ForgotForm(formdata=None), error=None,
                               sent=request.args.get("done") == "sent")
    if not form.validate():
        abort(400)
    email = (form.email.data or "").strip()
    error = None
    if not email:
        error = "missing"
    elif len(email) > accounts.MAX_EMAIL or not accounts.EMAIL_RE.match(accounts.normalize_email(email)):
        error = "bad"
    if error:
        return render_template("staff/forgot.html", form=form, error=error, sent=False), 422
    mail = notify.account_mail_enabled(current_app.config)
    wait = links.forgot(get_db(), email, request.remote_addr, secret=current_app.config["SECRET_KEY"], mail=mail)
    if wait > 0:
        return (render_template("staff/forgot.html", form=form, error="throttled", sent=False), 429,
                {"Retry-After": str(max(1, math.ceil(wait)))})
    if mail:
        notify.wake(current_app._get_current_object())
    return redirect(url_for(".forgot", done="sent"))


def _gone():
    """The one answer to a link that no longer works, whatever the reason."""
    return render_template("staff/link_gone.html"), 404


def _password_errors(form: PasswordForm) -> dict:
    """The new password's problems, keyed by field, as accounts.check_password's rules."""
    new = form.new_password.data or ""
    if not new:
        return {"new_password": "missing"}
    if len(new) < accounts.MIN_PASSWORD:
        return {"new_password": "short"}
    if len(new) > accounts.MAX_PASSWORD:
        return {"new_password": "long"}
    if (form.new_password_again.data or "") != new:
        return {"new_password_again": "different"}
    return {}


def _link_page(kind: str, token: str):
    """GET: the form (or, for an invitation to an address that already has an account, why it
    cannot be used). POST: use the link."""
    link = links.find_link(get_db(), token, kind)
    if link is None:
        return _gone()
    form = PasswordForm()
    page = {"kind": kind, "link": link, "min_password": accounts.MIN_PASSWORD,
            "max_password": accounts.MAX_PASSWORD}
    if request.method == "GET" or link.get("taken"):
        return render_template("staff/link.html", form=PasswordForm(formdata=None, name=link.get("name")),
                               errors={}, **page), 409 if request.method == "POST" else 200
    if not form.validate():       # the CSRF token, checked here (see the module's docstring)
        abort(400)
    errors = _password_errors(form)
    if kind == "invite" and len(form.name.data or "") > 200:
        errors["name"] = "long"
    if not errors:
        try:
            if kind == "invite":
                links.accept_invitation(get_db(), token, name=form.name.data, password=form.new_password.data)
            else:
                links.complete_reset(get_db(), token, password=form.new_password.data)
        except links.LinkError as e:
            if e.code == "gone":
                return _gone()
            link["taken"] = e.code.removeprefix("taken_")
            return render_template("staff/link.html", form=PasswordForm(formdata=None), errors={}, **page), 409
        except accounts.AccountError:
            errors = {"new_password": "short"}
        else:
            return redirect(url_for("auth.login", done=kind))
    form.new_password.data = form.new_password_again.data = ""
    return render_template("staff/link.html", form=form, errors=errors, **page), 422


@bp.route("/reset/<token>", methods=["GET", "POST"])
def reset(token):
    """The page of a password reset link: a new password, twice."""
    return _link_page("reset", token)


@bp.route("/invitation/<token>", methods=["GET", "POST"])
def invitation(token):
    """The page of an invitation link: a name and a password, twice."""
    return _link_page("invite", token)
