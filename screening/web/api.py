"""The JSON API (/api/v1): the catalogue, the centres, the questionnaire and a stateless evaluation.

No cookies, no CSRF, nothing stored: a client sends its answers and gets the outcome back.
Every error is JSON `{"error": code, "fields": {name: message}}` (security.error_response); the
messages come from rules/texts.toml in the caller's language, like the form's.
"""
from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import flask_babel
from flask import Blueprint, current_app, g, jsonify, request
from flask_babel import lazy_gettext as _l

from ..core import engine
from ..core.centres import Centre
from ..core.rules import DEFAULT_LOCALE, LOCALES, Question, RuleSet, Service
from . import i18n, openapi, public
from .security import error_response

bp = Blueprint("api", __name__, url_prefix="/api/v1")

# What a client may send to /evaluate; anything else at the top level is refused, so that a typo
# ("answer") is reported instead of silently ignored.
EVALUATE_KEYS = ("service", "answers", "centre")


class RequestProblem(Exception):
    """The request cannot be read: becomes a JSON error with `status` and `fields` (name -> a text
    key of rules/texts.toml, or a lazy gettext message)."""

    def __init__(self, status: int, code: str, fields: dict[str, str] | None = None):
        super().__init__(code)
        self.status, self.code, self.fields = status, code, fields or {}


@bp.errorhandler(RequestProblem)
def _request_problem(e: RequestProblem):
    """Word each field's problem in the caller's language; the locale itself may be the problem."""
    locale, ruleset = _locale_or_default(), _ruleset()
    fields = {name: ruleset.text(key, locale) if isinstance(key, str) else str(key) for name, key in e.fields.items()}
    return error_response(e.status, e.code, fields=fields)


@bp.after_request
def _language_headers(response):
    """Say which language the texts are in, and that caches must key on Accept-Language."""
    response.headers["Content-Language"] = _locale_or_default()
    response.vary.add("Accept-Language")
    return response


def _ruleset() -> RuleSet:
    """The current centre's rule set, as for the pages (public.ruleset)."""
    return public.ruleset()


def _locale() -> str:
    """The request's locale; an unknown `?locale=` is refused rather than silently ignored."""
    if request.args.get("locale", DEFAULT_LOCALE) not in LOCALES:
        raise RequestProblem(400, "invalid_request", {"locale": "error_unknown_locale"})
    return _locale_or_default()


def _locale_or_default() -> str:
    """`?locale=` when it is a known one, else the best Accept-Language match, else the centre's
    default language; never fails (i18n.select_language, as for the pages, minus the cookie)."""
    return i18n.current()


def _centres() -> dict[str, Centre]:
    return current_app.extensions["screening.centres"]


def _service_links(slug: str, centre: Centre | None = None) -> dict[str, str]:
    """Where a client reads about the service, answers the form, or fetches the questions; with a
    centre, its pages under /c/<centre>/."""
    root = request.script_root
    pages = f"{root}/c/{centre.slug}" if centre is not None else root
    return {"description": f"{pages}/services/{slug}", "screening": f"{pages}/screening/{slug}",
            "questionnaire": f"{root}{bp.url_prefix}/questionnaire/{slug}"}


def _centre_json(centre: Centre, ruleset: RuleSet, locale: str) -> dict[str, Any]:
    """One centre: who it is, how to reach it, and the services it offers (with their pages there)."""
    root = request.script_root
    return {
        "slug": centre.slug, "name": centre.name, "phone": centre.phone, "email": centre.email,
        "address": centre.address, "booking_url": centre.booking_url,
        "default_language": centre.default_language, "timezone": centre.timezone,
        "services": [{"slug": slug, "name": ruleset.service(slug).name.get(locale),
                      "links": _service_links(slug, centre)} for slug in centre.services],
        "links": {"page": f"{root}/c/{centre.slug}/", "api": f"{root}{bp.url_prefix}/centres/{centre.slug}"},
    }


def _service_json(service: Service, locale: str) -> dict[str, Any]:
    """One service of the catalogue, texts in `locale` (English where a translation is missing)."""
    return {
        "slug": service.slug,
        "name": service.name.get(locale),
        "summary": service.summary.get(locale),
        "description": [p.get(locale) for p in service.description],
        "areas": [{"id": a.id, "name": a.name.get(locale)} for a in service.areas],
        "pressure": service.pressure,
        "intensity": service.intensity.get(locale),
        "duration": service.duration.get(locale),
        "during": [p.get(locale) for p in service.during],
        "after": [p.get(locale) for p in service.after],
        "before_booking": [p.get(locale) for p in service.before_booking],
        "faq": [{"question": f.question.get(locale), "answer": f.answer.get(locale)} for f in service.faq],
        "links": _service_links(service.slug),
    }


def _question_json(ruleset: RuleSet, q: Question, service: Service, locale: str) -> dict[str, Any]:
    """One question as the form shows it, with the condition under which it is asked."""
    if q.type in ("yes_no_unsure", "yes_no"):
        # the loader gives yes/no/not_sure placeholder labels; their wording lives in texts.toml
        options = [{"id": o.id, "label": ruleset.text(f"answer_{o.id}", locale)} for o in q.options]
    else:
        options = [{"id": o.id, "label": o.label.get(locale)} for o in ruleset.options_for(q, service)]
    return {
        "id": q.id,
        "text": engine.question_text(ruleset, q, service, locale),
        "help": q.help.get(locale) if q.help else None,
        "type": q.type,
        "required": q.required,
        "red_flag": q.red_flag,
        "options": options,
        "asked_when": q.asked_when.to_json() if q.asked_when else None,
        "max_length": q.max_length,
    }


@bp.get("/services")
def services():
    """The catalogue."""
    locale, ruleset = _locale(), _ruleset()
    return jsonify({"locale": locale, "rules_version": ruleset.version,
                    "services": [_service_json(s, locale) for s in ruleset.services]})


@bp.get("/centres")
def centre_list():
    """The directory: every centre with its identity and services."""
    locale, ruleset = _locale(), _ruleset()
    return jsonify({"locale": locale, "centres": [_centre_json(c, ruleset, locale) for c in _centres().values()]})


@bp.get("/centres/<centre>")
def centre_detail(centre: str):
    """One centre's identity and services; an unknown centre is a 404 naming it."""
    locale, ruleset = _locale(), _ruleset()
    found = _centres().get(centre)
    if found is None:
        return error_response(404, "not_found", fields={"centre": str(UNKNOWN_CENTRE)})
    return jsonify({"locale": locale, **_centre_json(found, ruleset, locale)})


@bp.get("/questionnaire/<slug>")
def questionnaire(slug: str):
    """The questions for one service, in the order the client answers them."""
    locale, ruleset = _locale(), _ruleset()
    service = ruleset.service(slug)
    if service is None:
        unknown = ruleset.text("error_unknown_service", locale)
        return error_response(404, "not_found", fields={"slug": unknown})
    return jsonify({"service": slug, "locale": locale, "rules_version": ruleset.version,
                    "questions": [_question_json(ruleset, q, service, locale) for q in ruleset.questions]})


def _read_json_object() -> dict[str, Any]:
    """The body as a JSON object, or a RequestProblem saying what is wrong with it."""
    if not request.is_json:
        raise RequestProblem(415, "unsupported_media_type")
    # over MAX_CONTENT_LENGTH, streamed or not, security.py has already answered 413
    raw = request.get_data(cache=False)
    try:
        # strict JSON (RFC 8259): no NaN or Infinity, UTF-8 only
        body = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        # RecursionError: deeply nested arrays exhaust the decoder's stack; still just bad JSON
        raise RequestProblem(400, "invalid_json") from None
    if not isinstance(body, dict):
        raise RequestProblem(400, "invalid_request", {"body": "error_not_an_object"})
    return body


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


@bp.post("/evaluate")
def evaluate():
    """Screen the answers for one service and return the outcome; nothing is stored."""
    _locale()                   # an unknown ?locale= is refused before the body is read
    body = _read_json_object()
    _speak_for(body.get("centre"))
    locale, ruleset = _locale_or_default(), _ruleset()
    problems = {key: "error_unexpected_key" for key in body if key not in EVALUATE_KEYS}
    slug, answers = body.get("service"), body.get("answers")
    if slug is None:
        problems["service"] = "error_missing_key"
    elif not isinstance(slug, str) or ruleset.service(slug) is None:
        problems["service"] = "error_unknown_service"
    if answers is None:
        problems["answers"] = "error_missing_key"
    elif not isinstance(answers, dict):
        problems["answers"] = "error_not_an_object"
    if problems:
        raise RequestProblem(400, "invalid_request", problems)
    centre = _centre_for(body.get("centre", ABSENT), slug)
    ruleset = public.rules_for(centre)              # the shared rules plus the centre's own
    pages = centre if "centre" in body else None    # links to the named centre's pages; else unchanged
    try:
        decision = engine.screen(ruleset, slug, answers, allow_unknown=False)
    except engine.AnswerErrors as e:
        fields = {qid: ruleset.text(f"error_{code}", locale) for qid, code in e.errors.items()}
        return error_response(422, "invalid_answers", fields=fields)
    # suggest only what this centre offers, as the result page does
    decision = replace(decision, suggestions=tuple(s for s in decision.suggestions if centre.offers(s.service)))
    code = decision.outcome.code
    return jsonify({
        "outcome": code,
        "outcome_label": ruleset.outcomes[code]["label"].get(locale),
        "reasons": [{"rule": r.rule, "outcome": r.outcome.code, "message": r.text(ruleset, locale)}
                    for r in decision.reasons],
        "suggestions": [{"id": s.id, "service": s.service, "message": s.message.get(locale),
                         "url": _service_links(s.service, pages)["description"]} for s in decision.suggestions],
        "service": decision.service,
        "centre": centre.slug,
        "rules_version": decision.rules_version,
        "disclaimer": ruleset.text("disclaimer", locale),
    })


UNKNOWN_CENTRE = _l("There is no centre with this name.")


def _speak_for(slug: Any) -> None:
    """A centre named in the body is the one this request serves: when the caller names no language
    (?locale=, Accept-Language), the answer is in that centre's default language, as its pages are,
    not the default centre's. Flask-Babel forgets the language it may have chosen already."""
    centre = _centres().get(slug) if isinstance(slug, str) else None
    if centre is not None:
        g.centre = centre
        flask_babel.refresh()


ABSENT = object()      # "centre" left out (null is not leaving it out: it is not a centre)


def _centre_for(slug: Any, service: str) -> Centre:
    """The centre an evaluation is for: the one named, else the default centre. An unknown centre,
    none when there are several and no default, or a service it does not offer: 422 naming the field."""
    if slug is ABSENT:
        centre = current_app.extensions.get("screening.default_centre")
        if centre is None:
            raise RequestProblem(422, "invalid_request",
                                 {"centre": _l("Name the centre: there are several and none is the default.")})
    else:
        centre = _centres().get(slug) if isinstance(slug, str) else None
        if centre is None:
            raise RequestProblem(422, "invalid_request", {"centre": UNKNOWN_CENTRE})
    if not centre.offers(service):
        raise RequestProblem(422, "invalid_request", {"service": _l("This centre does not offer this service.")})
    return centre


@bp.get("/openapi.json")
def openapi_document():
    """The OpenAPI 3.1 description of this API, with the ids of the rules actually loaded."""
    own = [r.id for rs in current_app.extensions["screening.centre_rules"].values() for r in rs.rules]
    return jsonify(openapi.document(_ruleset(), prefix=bp.url_prefix, server=request.script_root,
                                    centres=tuple(_centres()), centre_rules=own))

