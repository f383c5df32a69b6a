"""The team page (/staff/team): an admin runs their own centre's accounts. The SQL is in
store/team.py (accounts) and store/links.py (invitations and reset links).

Admins of the centre only (auth.admin_required: other staff get 403, strangers the login), behind
the same deny-by-default guard as the other staff pages. An account is named in URLs by
accounts.staff_handle, looked up among the admin's own centre's accounts only, so another
centre's account and an unknown handle are the same 404. Every change is a POST with the CSRF
token that redirects back with a notice (post/redirect/get), with one exception: without a mail
server (or BASE_URL), an invitation or reset link is shown to the admin once, in the POST's own
response (no-store), to pass on; it is never in a URL and never stored in clear.
"""
from __future__ import annotations

from flask import Blueprint, abort, current_app, g, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectField, StringField

from ..store import accounts, links, team
from . import auth, notify, staff
from .auth import admin_required
from .database import get_db

bp = Blueprint("team", __name__, url_prefix="/staff/team")
bp.before_request(auth.require_staff)
bp.context_processor(staff.staff_helpers)      # the staff header: centre, who is logged in

LANGUAGE_NAMES = {"ca": "Català", "es": "Español", "en": "English"}
MAX_NAME = 200


class InviteForm(FlaskForm):
    """Who to invite; the messages for each error code are in the template."""
    email = StringField(_l("Email address"))
    name = StringField(_l("Name (optional)"))
    role = SelectField(_l("Role"), choices=list(accounts.ROLES), validate_choice=False)
    language = SelectField(_l("Language of the e-mail"), choices=list(links.LANGUAGES), validate_choice=False)


class RoleForm(FlaskForm):
    role = SelectField(choices=list(accounts.ROLES), validate_choice=False)


class ActionForm(FlaskForm):
    """Only the CSRF token."""


class CancelForm(FlaskForm):
    invitation = HiddenField()


NOTICES = {
    "invited": _l("Invitation sent. It stays on the list of pending invitations until it is accepted or expires."),
    "cancelled": _l("The invitation is cancelled: its link no longer works."),
    "role": _l("The role is changed."),
    "deactivated": _l("The account is deactivated: it can no longer log in, and its sessions have ended."),
    "reactivated": _l("The account is active again."),
    "reset_sent": _l("A password reset link is on its way to that address. It works for one hour."),
    "unlocked": _l("The throttle is lifted: that account can log in again from any browser."),
    "second_factor": _l("The second factor is removed, and the account's sessions have ended. "
                        "The member sets a new one at the next login when the centre requires one."),
    "unchanged": _l("Nothing changed."),
}


def _throttle_settings() -> dict:
    config = current_app.config
    return {"max_failures": int(config["LOGIN_MAX_FAILURES"]),
            "lock_seconds": float(config["LOGIN_LOCK_MINUTES"]) * 60}


def _centre_language() -> str:
    centre = auth.staff_centre()
    return centre.default_language if centre is not None else "en"


def _page(invite: InviteForm | None = None, *, errors: dict | None = None, member_errors: dict | None = None,
          shown: dict | None = None, status: int = 200):
    """The team page: the centre's accounts, its pending invitations and the invite form."""
    db = get_db()
    key = auth.handle_key()
    if invite is None:
        invite = InviteForm(formdata=None, language=_centre_language(), role="staff")
    notice = NOTICES.get(request.args.get("done", "")) if request.method == "GET" else None
    html = render_template(
        "staff/team.html", members=team.members(db, g.staff["centre"], key=key, **_throttle_settings()),
        invitations=links.pending_invitations(db, g.staff["centre"], key=key), invite=invite,
        errors=errors or {}, member_errors=member_errors or {}, shown=shown, notice=notice,
        roles=accounts.ROLES, languages=LANGUAGE_NAMES)
    return html, status


def _done(code: str):
    return redirect(url_for(".page", done=code))


def _member(handle: str) -> dict:
    """The admin's centre's account named by `handle`, else 404 (another centre's alike)."""
    member = team.find_member(get_db(), g.staff["centre"], handle, key=auth.handle_key())
    if member is None:
        abort(404)
    return member


def _checked(form: FlaskForm) -> None:
    """A form without a valid CSRF token never gets here when CSRF is on (CSRFProtect: 400)."""
    if not form.validate():
        abort(400)


def _mail() -> bool:
    return notify.account_mail_enabled(current_app.config)


def _shown(kind: str, email: str, token: str) -> dict:
    """A link shown once to the admin (no mail server): where it leads, for whom."""
    return {"kind": kind, "email": email, "url": notify.link_url(current_app.config, kind, token),
            "absolute": bool(current_app.config.get("BASE_URL"))}


@bp.get("")
@admin_required
def page():
    """The centre's accounts and pending invitations, and the forms that change them."""
    return _page()


@bp.post("/invite")
@admin_required
def invite():
    """Invite an address to this centre: e-mail, optional name, role, language of the e-mail."""
    form = InviteForm()
    _checked(form)
    errors = {}
    email = (form.email.data or "").strip()
    if not email:
        errors["email"] = "missing"
    elif len(email) > accounts.MAX_EMAIL or not accounts.EMAIL_RE.match(accounts.normalize_email(email)):
        errors["email"] = "bad"
    if form.role.data not in accounts.ROLES:
        errors["role"] = "bad"
    if form.language.data not in links.LANGUAGES:
        errors["language"] = "bad"
    if len(form.name.data or "") > MAX_NAME:
        errors["name"] = "long"
    if not errors:
        try:
            _link_id, token = links.invite(get_db(), admin=g.staff, email=email, name=form.name.data,
                                           role=form.role.data, language=form.language.data, mail=_mail())
        except links.LinkError as e:
            errors["email"] = "here" if e.code == "taken_here" else "bad"
        except accounts.AccountError:
            errors["email"] = "bad"
        else:
            if _mail():
                notify.wake(current_app._get_current_object())
                return _done("invited")
            return _page(shown=_shown("invite", accounts.normalize_email(email), token))
    return _page(form, errors=errors, status=409 if errors.get("email") == "here" else 422)


@bp.post("/invitations/cancel")
@admin_required
def cancel():
    """Cancel a pending invitation of this centre, named by its handle; 404 for any other."""
    form = CancelForm()
    _checked(form)
    if not links.cancel_invitation(get_db(), admin=g.staff, handle=form.invitation.data or "", key=auth.handle_key()):
        abort(404)
    return _done("cancelled")


def _team_change(handle: str, change):
    """Run one change of an account; the last-admin rule answers 409 with the reason at its row."""
    member = _member(handle)
    try:
        changed = change(member)
    except team.TeamError as e:
        if e.code == "not_admin":
            abort(403)
        return _page(member_errors={handle: e.code}, status=409 if e.code == "last_admin" else 422)
    return changed


@bp.post("/<handle>/role")
@admin_required
def role(handle):
    """Make an account of this centre staff or admin (never the centre's last active admin staff)."""
    form = RoleForm()
    _checked(form)
    member = _member(handle)
    if form.role.data not in accounts.ROLES:
        return _page(member_errors={handle: "bad_role"}, status=422)
    result = _team_change(handle, lambda m: team.change_role(get_db(), admin=g.staff, staff_id=member["id"],
                                                             role=form.role.data))
    if not isinstance(result, bool):
        return result
    return _done("role" if result else "unchanged")


@bp.post("/<handle>/deactivate")
@admin_required
def deactivate(handle):
    """Deactivate an account of this centre: its sessions end at once (never the last active admin)."""
    return _set_active(handle, False)


@bp.post("/<handle>/reactivate")
@admin_required
def reactivate(handle):
    """Let a deactivated account of this centre log in again."""
    return _set_active(handle, True)


def _set_active(handle: str, active: bool):
    """Deactivate or reactivate an account of this centre, then back to the team page."""
    _checked(ActionForm())
    result = _team_change(handle, lambda m: team.set_active(get_db(), admin=g.staff, staff_id=m["id"], active=active))
    if not isinstance(result, bool):
        return result
    return _done(("reactivated" if active else "deactivated") if result else "unchanged")


@bp.post("/<handle>/reset")
@admin_required
def reset(handle):
    """Send an active account of this centre a password reset link (or show it once, without mail)."""
    _checked(ActionForm())
    member = _member(handle)
    made = links.send_reset(get_db(), staff_id=member["id"], centre=g.staff["centre"], mail=_mail(), admin=g.staff)
    if made is None:        # a deactivated account: reactivate it first
        return _page(member_errors={handle: "inactive"}, status=409)
    if _mail():
        notify.wake(current_app._get_current_object())
        return _done("reset_sent")
    return _page(shown=_shown("reset", member["email"], made[1]))


@bp.post("/<handle>/unlock")
@admin_required
def unlock(handle):
    """Lift every throttle of an account of this centre (its known browsers' and unknown ones')."""
    _checked(ActionForm())
    member = _member(handle)
    team.lift_throttle(get_db(), admin=g.staff, staff_id=member["id"], centre=g.staff["centre"])
    return _done("unlocked")


@bp.post("/<handle>/remove-second-factor")
@admin_required
def remove_second_factor(handle):
    """Remove a lost second factor of an account of this centre; its sessions end."""
    _checked(ActionForm())
    member = _member(handle)
    removed = team.remove_second_factor(get_db(), admin=g.staff, staff_id=member["id"], centre=g.staff["centre"])
    return _done("second_factor" if removed else "unchanged")
