"""The OpenAPI 3.1 document of the JSON API, built from the rules that are loaded.

Question ids, service slugs, rule and suggestion ids are enumerated from the RuleSet, so the
document changes with rules/ and never lists an id the server would refuse. Plain Python: the
caller (api.py) passes the mount point.
"""
from __future__ import annotations

import functools
import sys
import unicodedata
from typing import Any

from ..core import engine
from ..core.conditions import TESTS, All, Any_, Condition, Not, Test
from ..core.rules import (
    LOCALES,
    OUTCOMES,
    QUESTION_TYPES,
    SERVICE_VARS,
    YES_NO,
    YES_NO_UNSURE,
    Question,
    RuleSet,
    Text,
)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(properties: dict[str, Any], *, required: list[str] | None = None, **extra) -> dict[str, Any]:
    """A closed object: every listed property required unless `required` says otherwise."""
    return {"type": "object", "properties": properties,
            "required": list(properties) if required is None else required,
            "additionalProperties": False, **extra}


STRING = {"type": "string"}
STRINGS = {"type": "array", "items": STRING}


@functools.cache
def refused_in_text() -> str:
    """The characters the engine refuses inside a text answer, as the inside of a regex character
    class ('' when none). Found by asking the engine itself about every character of the Unicode
    categories it could refuse (control, format, separators) through its own per-answer check, so
    the document follows the engine.
    Lone surrogates (Cs) are left out: a regex cannot name them portably, and no JSON text decodes to
    one except by a lone \\u escape; the server still refuses them."""
    probe = Question(id="probe", type="text", text=Text({"en": "probe"}), help=None, required=False,
                     red_flag=False, options=(), asked_when=None, max_length=3, source="")
    refused = [cp for cp in range(sys.maxunicode + 1)
               if unicodedata.category(chr(cp)) in ("Cc", "Cf", "Zs", "Zl", "Zp")
               and engine._normalize_one(probe, f"a{chr(cp)}a", ()) in engine.ERROR_CODES]
    return _character_class(refused)


@functools.cache
def spaces() -> str:
    """The characters the engine trims from a text answer (Python's str.strip: str.isspace), as the
    inside of a regex character class. Written out rather than as \\s, whose meaning differs between
    regex dialects (ECMAScript's \\s also holds U+FEFF, which the engine keeps, then refuses)."""
    return _character_class([cp for cp in range(sys.maxunicode + 1) if chr(cp).isspace()])


def _character_class(code_points: list[int]) -> str:
    """Sorted code points as the inside of a regex character class, runs written as ranges."""
    ranges: list[list[int]] = []
    for cp in code_points:
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    return "".join(_escape(a) if a == b else f"{_escape(a)}-{_escape(b)}" for a, b in ranges)


def _escape(cp: int) -> str:
    return f"\\u{cp:04x}" if cp <= 0xFFFF else f"\\U{cp:08x}"


# What the engine reads as "not answered", like leaving the question out (engine._normalize_one).
UNANSWERED = {"enum": [None, "", []], "description": "not answered"}


def answer_schema(q: Question, *, answered: bool = False, offered: list[str] | None = None) -> dict[str, Any]:
    """What the engine accepts for one question; with `answered`, only the values that count as an
    answer (for a required question), else those or one of UNANSWERED. `offered`: the option ids of
    one service (the question's options on every service otherwise)."""
    ids = list(q.option_ids) if offered is None else offered
    if q.type in ("yes_no_unsure", "yes_no"):
        words = YES_NO_UNSURE if q.type == "yes_no_unsure" else YES_NO
        schema = {"enum": [True, False, *words], "description": "true means yes, false means no"}
    elif q.type == "single":
        schema = {"enum": ids}
    elif q.type == "multi":
        schema = {"anyOf": [{"type": "array", "items": {"enum": ids}, "minItems": 1}, {"enum": ids}],
                  "description": "a list of option ids (a single id is read as a list of one)"}
    else:
        schema = {"type": "string", "maxLength": q.max_length, "pattern": f"[^{spaces()}]",
                  "description": "free text; surrounding spaces are trimmed before the length is checked"}
        refused = refused_in_text()
        if refused:
            schema = {**schema, "allOf": [{"pattern": f"^[^{refused}]*$"}],
                      "description": schema["description"] + "; control and invisible format characters are "
                                                             "refused (line breaks and tabs are fine)"}
        if not answered:     # only spaces is not answered either
            return {"anyOf": [schema, UNANSWERED, {"type": "string", "pattern": f"^[{spaces()}]*$"}]}
    return schema if answered else {"anyOf": [schema, UNANSWERED]}


# --- when a follow-up is asked, as JSON Schema over the EvaluateRequest ------------------------------

def _raw_values(q: Question, canonical: set) -> list:
    """Every JSON value the engine reads as one of the `canonical` answers of a yes/no or single question."""
    values = [v for v in q.option_ids if v in canonical]
    if q.type in ("yes_no_unsure", "yes_no"):
        values += [flag for flag, word in ((True, "yes"), (False, "no")) if word in canonical]
    return values


def _holds(ruleset: RuleSet, cond: Condition) -> dict[str, Any] | None:
    """A JSON Schema that an EvaluateRequest matches exactly when `cond` holds for its answers (a
    question that is not asked, or unanswered, has no value); None when it cannot be said in JSON
    Schema (the document then says less than the server checks, never more)."""
    if isinstance(cond, (All, Any_)):
        parts = [_holds(ruleset, p) for p in cond.parts]
        if any(p is None for p in parts):
            return None
        return {"allOf" if isinstance(cond, All) else "anyOf": parts}
    if isinstance(cond, Not):
        inner = _holds(ruleset, cond.inner)
        return None if inner is None else {"not": inner}
    assert isinstance(cond, Test)
    if cond.var in SERVICE_VARS:
        # a fact of the service: the condition holds for a fixed set of services
        return {"required": ["service"],
                "properties": {"service": {"enum": [s.slug for s in ruleset.services if cond(s.facts())]}}}
    q = ruleset.questions_by_id[cond.var]
    if q.type in ("yes_no_unsure", "yes_no", "single"):
        if cond.test not in ("equals", "not_equals", "in"):
            return {"not": {}}        # contains and comparisons never hold for a word
        wanted = {cond.value} if cond.test == "equals" else set(cond.value) if cond.test == "in" else (
            set(q.option_ids) - {cond.value})
        value = {"enum": _raw_values(q, wanted)}
    elif q.type == "multi" and cond.test == "contains":
        value = {"anyOf": [{"const": cond.value}, {"type": "array", "contains": {"const": cond.value}}]}
    elif q.type == "multi" and cond.test == "not_equals":
        value = answer_schema(q, answered=True)     # a list is never equal to a single value
    elif q.type == "multi":
        return {"not": {}}
    else:
        return None                   # text: trimming cannot be said in JSON Schema
    holds = {"required": ["answers"], "properties": {"answers": {"required": [q.id], "properties": {q.id: value}}}}
    if q.asked_when is None:
        return holds
    asked = _holds(ruleset, q.asked_when)
    return None if asked is None else {"allOf": [asked, holds]}


def _follow_ups(ruleset: RuleSet) -> list[dict[str, Any]]:
    """For each follow-up question: when it is asked, its answer must be valid (and given, when
    required); when it is not asked, whatever is sent for it is ignored."""
    checks = []
    for q in ruleset.questions:
        asked = _holds(ruleset, q.asked_when) if q.asked_when is not None else None
        if asked is None:
            continue
        answers = {"properties": {q.id: answer_schema(q, answered=q.required)}}
        if q.required:
            answers["required"] = [q.id]
        checks.append({"if": asked, "then": {"properties": {"answers": answers}}})
    return checks


def _service_options(ruleset: RuleSet) -> list[dict[str, Any]]:
    """For each service that offers only some options of a question (legs only on the general
    decontracting massage): when that service is asked for, the answer is one of its options."""
    checks = []
    for q in ruleset.questions:
        if not q.options or q.type not in ("single", "multi"):
            continue
        for s in ruleset.services:
            offered = [o.id for o in ruleset.options_for(q, s)]
            if set(offered) == set(q.option_ids):
                continue
            when: dict[str, Any] = {"required": ["service"], "properties": {"service": {"const": s.slug}}}
            if q.asked_when is not None:
                asked = _holds(ruleset, q.asked_when)
                if asked is None:
                    continue            # the document then says less than the server checks
                when = {"allOf": [when, asked]}
            answers = {"properties": {q.id: answer_schema(q, answered=q.required, offered=offered)}}
            checks.append({"if": when, "then": {"properties": {"answers": answers}}})
    return checks


def _answer_property(q: Question) -> dict[str, Any]:
    """The answer to a question that is always asked; for a follow-up any value, which is read only
    when the follow-up is asked (EvaluateRequest's `allOf` says what it must be then)."""
    if q.asked_when is None:
        return answer_schema(q, answered=q.required)
    return {"description": "read only when this follow-up is asked; then it must be as EvaluateRequest says"}


def _schemas(ruleset: RuleSet, centres: list[str], centre_rules=()) -> dict[str, Any]:
    rule_ids = list(dict.fromkeys([*(r.id for r in ruleset.rules), *centre_rules]))     # shared ones first
    question_ids = [q.id for q in ruleset.questions]
    slugs = [s.slug for s in ruleset.services]
    # required questions that are always asked; follow-ups become required only when asked
    always_required = [q.id for q in ruleset.questions if q.required and q.asked_when is None]
    test = {"type": "object", "required": ["var"], "minProperties": 2, "maxProperties": 2,
            "additionalProperties": False,
            "properties": {"var": {"enum": [*question_ids, *SERVICE_VARS]},
                           **{t: {} for t in TESTS}}}
    centre = {
        "slug": {"enum": centres}, "name": STRING, "phone": STRING,
        "email": STRING, "address": STRING,
        "booking_url": {**STRING, "description": "an http(s) address where clients book"},
        "default_language": {"enum": list(LOCALES)},
        "timezone": {**STRING, "description": "an IANA time zone"},
        "services": {"type": "array", "items": _ref("CentreService"),
                     "description": "the services this centre offers, with its pages for each"},
        "links": _obj({"page": STRING, "api": STRING}),
    }
    return {
        "Error": _obj({
            "error": {**STRING, "description": "a stable code (invalid_answers, not_found...)"},
            "fields": {"type": "object", "additionalProperties": STRING,
                       "description": "what is wrong with each named field, in the request's language"},
        }),
        "Links": _obj({"description": STRING, "screening": STRING, "questionnaire": STRING}),
        "Service": _obj({
            "slug": {"enum": slugs}, "name": STRING, "summary": STRING,
            "description": {**STRINGS, "description": "paragraphs"},
            "areas": {"type": "array", "items": _obj({"id": STRING, "name": STRING})},
            "pressure": STRING, "intensity": STRING, "duration": STRING,
            "during": STRINGS, "after": STRINGS, "before_booking": STRINGS,
            "faq": {"type": "array", "items": _obj({"question": STRING, "answer": STRING})},
            "links": _ref("Links"),
        }),
        "ServiceList": _obj({"locale": {"enum": list(LOCALES)}, "rules_version": STRING,
                             "services": {"type": "array", "items": _ref("Service")}}),
        "CentreService": _obj({"slug": {"enum": slugs}, "name": STRING, "links": _ref("Links")}),
        "Centre": _obj(centre),
        "CentreDetail": _obj({"locale": {"enum": list(LOCALES)}, **centre},
                             description="one centre, and the language of its texts"),
        "CentreList": _obj({"locale": {"enum": list(LOCALES)},
                            "centres": {"type": "array", "items": _ref("Centre")}}),
        "Condition": {
            "description": "when a question is asked, in the condition language of rules/ "
                           "(see screening/core/conditions.py)",
            "oneOf": [
                _obj({"all": {"type": "array", "minItems": 1, "items": _ref("Condition")}}),
                _obj({"any": {"type": "array", "minItems": 1, "items": _ref("Condition")}}),
                _obj({"not": _ref("Condition")}),
                test,
            ],
        },
        "Question": _obj({
            "id": {"enum": question_ids},
            "text": STRING,
            "help": {"type": ["string", "null"]},
            "type": {"enum": list(QUESTION_TYPES)},
            "required": {"type": "boolean", "description": "must be answered whenever it is asked"},
            "red_flag": {"type": "boolean"},
            "options": {"type": "array", "items": _obj({"id": STRING, "label": STRING})},
            "asked_when": {"anyOf": [_ref("Condition"), {"type": "null"}],
                           "description": "null: always asked"},
            "max_length": {"type": ["integer", "null"]},
        }),
        "Questionnaire": _obj({"service": {"enum": slugs}, "locale": {"enum": list(LOCALES)},
                               "rules_version": STRING,
                               "questions": {"type": "array", "items": _ref("Question")}}),
        "Answers": _obj({q.id: _answer_property(q) for q in ruleset.questions},
                        required=always_required,
                        description="answers by question id; answers to questions that are not asked "
                                    "(a follow-up whose condition does not hold) are ignored"),
        "EvaluateRequest": _obj({"service": {"enum": slugs}, "answers": _ref("Answers"),
                                 "centre": {"enum": centres, "description": "the centre (its slug); left out: the "
                                            "default centre. A service it does not offer is a 422"}},
                                required=["service", "answers"],
                                allOf=_follow_ups(ruleset) + _service_options(ruleset)),
        "Reason": _obj({"rule": {"enum": rule_ids}, "outcome": {"enum": list(OUTCOMES)},
                        "message": STRING}),
        "Suggestion": _obj({"id": {"enum": [s.id for s in ruleset.suggestions]}, "service": {"enum": slugs},
                            "message": STRING, "url": STRING}),
        "Evaluation": _obj({
            "outcome": {"enum": list(OUTCOMES), "description": "the most severe outcome of the reasons"},
            "outcome_label": STRING,
            "reasons": {"type": "array", "items": _ref("Reason")},
            "suggestions": {"type": "array", "items": _ref("Suggestion")},
            "service": {"enum": slugs},
            "centre": {"enum": centres, "description": "the centre the answers were screened for"},
            "rules_version": STRING,
            "disclaimer": STRING,
        }),
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    words = {400: "the request is malformed (see `fields`), or the locale is unknown",
             404: "no such service or centre", 413: "the body is larger than the server accepts",
             415: "the body is not application/json",
             422: "some answers are missing or invalid (`error` = invalid_answers, `fields` names each), or the "
                  "centre is unknown or does not offer the service (`error` = invalid_request, `fields` names it)"}
    responses = {str(c): _json(_ref("Error"), words[c]) for c in codes}
    responses["default"] = _json(_ref("Error"), "any other error (405, 500, 503...)")
    return responses


def document(ruleset: RuleSet, *, prefix: str, server: str = "", centres: list[str] | tuple[str, ...] = (),
             centre_rules: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """The whole OpenAPI document: `prefix` is the API's path, `server` where the app is mounted,
    `centres` the slugs of the centres loaded, `centre_rules` the ids of the rules centres add to
    the shared ones (an evaluate for such a centre may name them)."""
    centres = list(centres)
    centre = {"name": "centre", "in": "path", "required": True, "schema": {**STRING, "pattern": "^[a-z0-9-]+$"},
              "description": "the centre's slug (its file name in rules/centres/)"}
    locale = {"name": "locale", "in": "query", "required": False, "schema": {"enum": list(LOCALES)},
              "description": "language of the texts; otherwise Accept-Language decides, then the "
                             "centre's default language (for evaluate, the centre it names), then English"}
    slug = {"name": "slug", "in": "path", "required": True,
            "schema": {"enum": [s.slug for s in ruleset.services]}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Pre-booking screening API",
            "version": f"1 (rules {ruleset.version})",
            "description": "Check, before booking a massage, whether the service suits you today. "
                           "This is a self-check for a wellness service, not a medical assessment. "
                           "Nothing sent to this API is stored, and it sets no cookies.",
        },
        "servers": [{"url": server or "/"}],
        "paths": {
            f"{prefix}/services": {"get": {
                "operationId": "listServices", "summary": "The services catalogue", "parameters": [locale],
                "responses": {"200": _json(_ref("ServiceList"), "the catalogue"), **_errors(400)},
            }},
            f"{prefix}/centres": {"get": {
                "operationId": "listCentres", "summary": "The centres, with their contact and services",
                "parameters": [locale],
                "responses": {"200": _json(_ref("CentreList"), "every centre"), **_errors(400)},
            }},
            f"{prefix}/centres/{{centre}}": {"get": {
                "operationId": "getCentre", "summary": "One centre: who it is, how to reach it, what it offers",
                "parameters": [centre, locale],
                "responses": {"200": _json(_ref("CentreDetail"), "the centre"), **_errors(400, 404)},
            }},
            f"{prefix}/questionnaire/{{slug}}": {"get": {
                "operationId": "getQuestionnaire", "summary": "The questions for one service",
                "parameters": [slug, locale],
                "responses": {"200": _json(_ref("Questionnaire"), "the questions, in order"),
                              **_errors(400, 404)},
            }},
            f"{prefix}/evaluate": {"post": {
                "operationId": "evaluate", "summary": "Screen answers for one service (stores nothing)",
                "parameters": [locale],
                "requestBody": {"required": True,
                                "content": {"application/json": {"schema": _ref("EvaluateRequest")}}},
                "responses": {"200": _json(_ref("Evaluation"), "the outcome, its reasons and suggestions"),
                              **_errors(400, 413, 415, 422)},
            }},
            f"{prefix}/openapi.json": {"get": {
                "operationId": "getOpenApi", "summary": "This document",
                "responses": {"200": _json({"type": "object"}, "the OpenAPI 3.1 document")},
            }},
        },
        "components": {"schemas": _schemas(ruleset, centres, centre_rules)},
    }
