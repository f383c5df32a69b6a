"""A client takes back what they sent: /withdraw and /c/<centre>/withdraw (SPEC "A client takes back
what they sent").

The reference and the withdrawal code of the result → what will be erased (reference, service,
date sent; no answers) → the same post with confirm=yes → erased as staff erasure erases
(store/withdrawal.py). Every other pair, whatever is wrong with it (an unknown reference, a wrong
or used code, another centre's reference on /c/<centre>/withdraw), gets the same page with the
same status and words. Wrong pairs are counted per address and per reference; over either limit,
429 with Retry-After. On the un-prefixed /withdraw any centre's screening can be withdrawn (a
reference is unique across the installation, and the code proves it was the client's); the
confirmation page names its centre.

The pages hold typed input (or, once done, what was done), so their language switch is a set of
buttons that post, as on the questionnaire: the form comes back with what was typed (never
checked, never counted), the confirmation is asked again in the new language (the pair checked
again, which a right pair passes without counting), and the done page comes back from a copy of
it signed by the app (the screening is gone: nothing to look up).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import datetime
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, current_app, g, render_template, request
from flask_wtf.csrf import CSRFError
from itsdangerous import BadData, URLSafeTimedSerializer

from ..core.characters import forbidden_characters
from ..store import db as dbmod
from ..store import withdrawal
from . import notify, public
from .database import get_db

bp = Blueprint("withdraw", __name__)
log = logging.getLogger(__name__)

TYPED_MAX = 40           # characters of a typed reference or code (spaces and dashes included)
DONE_COPY = "done_copy"
DONE_COPY_SALT = "screening.withdrawal-done"

bp.url_value_preprocessor(public.pick_centre)      # /c/<centre>/withdraw: g.centre, or a 404


@bp.url_defaults
def add_centre(endpoint, values):
    """Inside a centre's pages (/c/<centre>/...), the link to the withdrawal form stays under its prefix."""
    centre = g.get("centre") if g else None
    if centre is not None and "centre" not in values:
        values["centre"] = centre.slug


def _scope() -> str | None:
    """The centre whose screenings this page withdraws: the /c/<centre>/ one, else any."""
    return g.centre.slug if g.get("centre") is not None else None


def _typed() -> dict[str, str]:
    return {"reference": request.form.get("reference", ""), "code": request.form.get("code", "")}


def _field_errors(typed: dict[str, str]) -> dict[str, str]:
    """{field: error code} for what was typed; the words are in the template."""
    errors = {}
    for field, normalize in (("reference", dbmod.normalize_reference), ("code", withdrawal.normalize_code)):
        text = typed[field].strip()
        if not text:
            errors[field] = "required"
        elif len(text) > TYPED_MAX:
            errors[field] = "too_long"
        elif forbidden_characters(text) or not normalize(text):
            errors[field] = "invalid"
    return errors


def _limit_keys(reference: str) -> dict[str, str]:
    """The keyed hashes wrong pairs are counted under: the client's address (as the share limit
    counts it, under its own purpose) and the reference."""
    secret = str(current_app.config["SECRET_KEY"]).encode()
    ref = hmac.new(secret, b"withdraw-reference\0" + reference.encode(), hashlib.sha256).hexdigest()[:32]
    return {"address_key": "address:" + public.share_limit_key(request.remote_addr, b"withdraw-limit"),
            "reference_key": "reference:" + ref}


def _form(typed=None, *, errors=None, unknown=False, limited=None, expired=False, status=200):
    """The form, with what was typed and why it was refused (field errors, an unknown pair, too many
    attempts, an expired page)."""
    headers = {"Retry-After": str(limited)} if limited else {}
    if limited:
        status = 429
    return render_template("public/withdraw.html", typed=typed or {"reference": "", "code": ""},
                           errors=errors or {}, unknown=unknown, limited=limited, expired=expired,
                           minutes=-(-limited // 60) if limited else 0), status, headers


@bp.get("/withdraw")
@bp.get("/c/<centre>/withdraw")
def start():
    """The form: the reference and the withdrawal code."""
    return _form()


@bp.post("/withdraw")
@bp.post("/c/<centre>/withdraw")
def check():
    """A pair in: what it opens, to confirm; with confirm=yes, withdrawn."""
    if DONE_COPY in request.form:
        return _done(**_read_done_copy())
    typed = _typed()
    confirming = request.form.get("step") == "confirm"
    if public.SWITCH in request.form and not confirming:
        # the form's language switch: what was typed comes back, unchecked and uncounted
        shown = request.form.get("shown", "")
        return _form(typed, errors=_field_errors(typed) if shown == "errors" else None,
                     unknown=shown == "unknown", status=404 if shown == "unknown" else
                     (422 if shown == "errors" else 200))
    errors = _field_errors(typed)
    if errors:
        return _form(typed, errors=errors, status=422)
    reference = dbmod.normalize_reference(typed["reference"])
    arguments = {"reference": reference, "code": typed["code"], "centre": _scope(),
                 "key": withdrawal.key_from_secret(current_app.config["SECRET_KEY"]), **_limit_keys(reference)}
    act = withdrawal.withdraw if request.form.get("confirm") == "yes" and public.SWITCH not in request.form \
        else withdrawal.find
    if act is withdrawal.withdraw:
        # the centre's notice is queued with the erasure, when notices are on for that centre
        arguments["notify"] = _notices_on
    try:
        found = act(get_db(), **arguments)
    except withdrawal.TooManyAttempts as e:
        log.warning("withdrawal refused: too many wrong pairs from this address or for this reference")
        return _form(typed, limited=e.retry_after)
    if found is None:
        log.info("withdrawal: the pair opens nothing")
        return _form(typed, unknown=True, status=404)
    if act is withdrawal.withdraw:
        log.info("screening %s withdrawn by the client", found.reference)
        if _notices_on(found.centre):
            notify.wake(current_app._get_current_object())      # after the COMMIT
        return _done(reference=found.reference, centre=found.centre)
    return render_template("public/withdraw_confirm.html", typed=typed, found=found, **_described(found))


def _notices_on(centre: str) -> bool:
    """Whether `centre` gets e-mail notices (a mail server and an address for it)."""
    return notify.enabled(current_app.config, public.centres().get(centre))


def _described(found) -> dict:
    """The service's name and the centre, and the moment it was sent on the centre's clock."""
    centre = public.centres().get(found.centre)
    zone = ZoneInfo(centre.timezone if centre else current_app.config["TIMEZONE"])
    return {"service": public.rules_for(centre).service(found.service), "centre": centre,
            "sent_at": datetime.fromisoformat(found.created_at).astimezone(zone)}


def _done_copies() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt=DONE_COPY_SALT)


def _done(*, reference: str, centre: str):
    """The confirmation that the screening was withdrawn, with a signed copy for its language switch."""
    copy = _done_copies().dumps({"reference": reference, "centre": centre})
    return render_template("public/withdraw_done.html", reference=reference, centre=public.centres().get(centre),
                           done_copy=copy)


def _read_done_copy() -> dict:
    """The done page's signed copy; a tampered or old one is a 400 page."""
    max_age = current_app.config.get("WTF_CSRF_TIME_LIMIT") or 24 * 3600
    try:
        copy = _done_copies().loads(request.form[DONE_COPY], max_age=max_age)
        return {"reference": str(copy["reference"]), "centre": str(copy["centre"])}
    except (BadData, KeyError, TypeError):
        abort(400)


@bp.errorhandler(CSRFError)
def csrf_expired(e):
    """A missing or expired token checks nothing: the form comes back with what was typed."""
    if request.method == "POST":
        return _form(_typed(), expired=True, status=400)
    return render_template("error.html", status=400, code="csrf"), 400
