"""The client's questionnaire as a Flask-WTF form, built from the questions in rules/.

The form class is composed from the question data (adding a question to rules/ needs no Python).
WTForms brings CSRF and keeps what was typed; whether the answers are complete and valid is decided
by the rule engine's `normalize`, so the web form and the JSON API refuse exactly the same things.
"""
from __future__ import annotations

import re
import secrets
import threading
from collections import OrderedDict

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, RadioField, SelectMultipleField, StringField, TextAreaField

from ..core.characters import forbidden_characters
from ..core.rules import YES_NO, YES_NO_UNSURE, RuleSet

NAME_MAX = 100
CONTACT_MAX = 120
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PHONE_RE = re.compile(r"^\+?[0-9 ().-]+$")
NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


# Every field gets an explicit label (its name): the templates write their own labels, and without
# one WTForms asks gettext for a default label per field and per request, which makes Flask-WTF load
# the WTForms catalog for the request (profiled: most of the cost of binding the form).
class _BaseScreeningForm(FlaskForm):
    """What every questionnaire has besides its questions: sharing, contact, consent, the nonce.

    No CSRF field of its own: CSRFProtect checks every POST's token app-wide before any view runs
    (screening/__init__.py), and the page writes the token itself; a second check of the same
    token per form only cost time (a tenth of a check-only POST, profiled)."""

    class Meta:
        csrf = False

    share = RadioField("share", choices=["no", "yes"], default="no", validate_choice=False)
    # the page gives them a maxlength (MAXLENGTH), and the name's hint states it
    name = StringField("name")
    contact = StringField("contact")
    consent = BooleanField("consent", false_values=("", "no", "false", "0"))
    nonce = HiddenField("nonce")


# Built once per loaded rule set, not per request: composing the class and letting WTForms sort its
# fields cost about a third of a check-only POST (profiled in tests/benchmarks/profile_post.py).
# Keyed by the RuleSet object (kept alive here, so its id is never reused); a few at most, since
# tests build many apps.
_FORM_CLASSES: OrderedDict[int, tuple[RuleSet, type[FlaskForm]]] = OrderedDict()
_FORM_CLASSES_MAX = 8
_form_classes_lock = threading.Lock()


def questionnaire_form_class(ruleset: RuleSet) -> type[FlaskForm]:
    """The form class for this rule set: one field per question, named after the question id."""
    with _form_classes_lock:
        cached = _FORM_CLASSES.get(id(ruleset))
        if cached is not None and cached[0] is ruleset:
            _FORM_CLASSES.move_to_end(id(ruleset))
            return cached[1]
    form_class = _build_form_class(ruleset)
    with _form_classes_lock:
        _FORM_CLASSES[id(ruleset)] = (ruleset, form_class)
        while len(_FORM_CLASSES) > _FORM_CLASSES_MAX:
            _FORM_CLASSES.popitem(last=False)
    return form_class


def _build_form_class(ruleset: RuleSet) -> type[FlaskForm]:
    """Compose the questionnaire form class from the questions."""
    fields = {}
    for q in ruleset.questions:
        if q.type in ("yes_no_unsure", "yes_no"):
            values = YES_NO_UNSURE if q.type == "yes_no_unsure" else YES_NO
            fields[q.id] = RadioField(q.id, choices=list(values), validate_choice=False)
        elif q.type == "single":
            fields[q.id] = RadioField(q.id, choices=list(q.option_ids), validate_choice=False)
        elif q.type == "multi":
            fields[q.id] = SelectMultipleField(q.id, choices=list(q.option_ids), validate_choice=False)
        else:
            fields[q.id] = TextAreaField(q.id)
    return type("QuestionnaireForm", (_BaseScreeningForm,), fields)


def new_nonce() -> str:
    """A one-time value carried by the form so that a resubmitted form stores nothing twice."""
    return secrets.token_urlsafe(24)


def raw_answers(form: FlaskForm, ruleset: RuleSet) -> dict:
    """The answers as the engine expects them (strings, or lists for multi questions)."""
    return {q.id: form[q.id].data for q in ruleset.questions}


# what the questionnaire says at a sharing field, by share_errors' codes (in the page's language)
SHARE_MESSAGES = {
    "share_choice": _l("Choose whether to only check or to send your answers to the centre."),
    "name_required": _l("Enter your name, so the centre knows who sent this."),
    "name_too_long": _l("Your name must be %(max)d characters or fewer.", max=NAME_MAX),
    "contact_required": _l("Enter an e-mail address or a phone number."),
    "contact_invalid": _l("Enter an e-mail address like name@example.com, or a phone number like +34 600 000 000."),
    "consent_required": _l("Tick the box to agree, or choose to only check your answers."),
    "characters": _l("This has invisible or control characters, often brought in by pasting. "
                     "Type it again without them."),
}
# the browser's limits of the sharing fields (the server refuses longer ones too)
MAXLENGTH = {"name": NAME_MAX, "contact": CONTACT_MAX}
SHARING_FIELDS = ("share", "name", "contact", "consent")


def typed(form: FlaskForm, ruleset: RuleSet) -> dict:
    """What the client typed or chose, by field (questions and the sharing part), to show again."""
    return {name: form[name].data for name in (*(q.id for q in ruleset.questions), *SHARING_FIELDS)}


def share_errors(form: FlaskForm) -> dict[str, str]:
    """{field: error code} for the sharing part; empty when checking only (SHARE_MESSAGES words them)."""
    errors: dict[str, str] = {}
    if form.share.data not in ("yes", "no"):
        errors["share"] = "share_choice"
    if form.share.data != "yes":
        return errors
    name = (form.name.data or "").strip()
    contact = (form.contact.data or "").strip()
    if not name:
        errors["name"] = "name_required"
    elif len(name) > NAME_MAX:
        errors["name"] = "name_too_long"
    elif forbidden_characters(name):
        errors["name"] = "characters"
    if not contact:
        errors["contact"] = "contact_required"
    elif forbidden_characters(contact):        # before the e-mail check, which lets NUL through
        errors["contact"] = "characters"
    elif len(contact) > CONTACT_MAX or not (EMAIL_RE.match(contact) or _is_phone(contact)):
        errors["contact"] = "contact_invalid"
    if not form.consent.data:
        errors["consent"] = "consent_required"
    return errors


def nonce_of(form: FlaskForm) -> str:
    """The form's one-time nonce, or a new one when the client did not send a usable one (a
    script that drops hidden fields): that screening is then stored once, but not deduplicated."""
    nonce = form.nonce.data or ""
    return nonce if NONCE_RE.match(nonce) else new_nonce()


def _is_phone(text: str) -> bool:
    digits = sum(ch.isdigit() for ch in text)
    return bool(PHONE_RE.match(text)) and 6 <= digits <= 15
