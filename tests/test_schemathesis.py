"""The JSON API against its own OpenAPI document, with schemathesis (issue 6).

schemathesis reads /api/v1/openapi.json from the app (in process, through WSGI) and sends what the
document allows and what it forbids, to every operation. `call_and_validate` runs every check it has,
among them: not_a_server_error, response_schema_conformance, status_code_conformance (every status
is documented), content_type_conformance, positive_data_acceptance (a request the document allows
is not refused), negative_data_rejection (one it forbids is refused) and unsupported_method (405
with Allow). The document must therefore say exactly what the server does, errors included.
"""
import functools
import json
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import jsonschema_rs
import pytest
import schemathesis
from conftest import RED_FLAGS, SLUGS
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from screening import create_app
from screening.core import engine
from screening.core.conditions import compile_condition
from screening.core.rules import SERVICE_VARS, default_rules_dir, load_rules
from screening.web import openapi

EVALUATE = "/api/v1/evaluate"


# Built at import: schemathesis's lazy `from_fixture` loader fails under pytest 9 (it reads a node
# attribute pytest no longer has), and `parametrize` needs the schema when the module is collected.
# CSRF is on, as in production, to show that the API does not need it. The folder goes at the end.
_FOLDER = tempfile.mkdtemp(prefix="screening-schemathesis-")
API_APP = create_app({"TESTING": True, "SECRET_KEY": "s" * 40, "DATABASE": str(Path(_FOLDER) / "api.db"),
                      "WTF_CSRF_ENABLED": True})
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", API_APP)


@pytest.fixture(scope="module", autouse=True)
def _remove_the_folder():
    yield
    shutil.rmtree(_FOLDER, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_does_what_its_document_says(case):
    case.call_and_validate()


# --- the document's request schema says yes exactly when the server does ----------------------------

ANSWER_VALUES = st.sampled_from(["yes", "no", "not_sure", True, False, None, "", "light", "medium", "firm", "neck",
                                 ["neck", "lumbar"], "legs", ["shoulders", "thoracic"],
                                 [], 3, "  ", "x" * 1001, "a\x07b", "line\r\nbreak\tand tab",
                                 "\u202eevil", "zero\u200dwidth joiner", "\U000e0001tag"])
ALWAYS_ASKED = [*RED_FLAGS, "pregnant"]
OTHERS = ["pregnancy_complicated", "professional_cleared", "tension_areas", "preferred_intensity", "notes"]
# mostly "no", so that a third of the requests are complete, and the follow-ups are often asked
LIKELY = st.one_of(*[st.just("no")] * 6, ANSWER_VALUES)


@pytest.fixture(scope="module")
def request_validator():
    document = API_APP.test_client().get("/api/v1/openapi.json").get_json()
    return jsonschema_rs.Draft202012Validator(
        {"$ref": "#/components/schemas/EvaluateRequest", "components": document["components"]})


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
# found by the generated cases: [] is "not answered" for every type, "  " for text
@example(service=SLUGS[0], answers=dict.fromkeys(ALWAYS_ASKED, "no") | {"preferred_intensity": [], "notes": "  "})
@example(service=SLUGS[0], answers=dict.fromkeys(ALWAYS_ASKED, "no") | {"notes": "a\x1db"})   # found by schemathesis
# found by schemathesis: a byte order mark alone, which ECMAScript's \s counts as a space and the engine refuses
@example(service=SLUGS[0], answers=dict.fromkeys(ALWAYS_ASKED, "no") | {"notes": "\ufeff"})
@example(service=SLUGS[0], answers=dict.fromkeys(ALWAYS_ASKED, "no") | {"notes": "\u3000\u00a0"})
@given(service=st.sampled_from(SLUGS),
       answers=st.fixed_dictionaries({q: LIKELY for q in ALWAYS_ASKED}, optional={q: ANSWER_VALUES for q in OTHERS}))
def test_the_request_schema_allows_exactly_what_the_server_accepts(request_validator, service, answers):
    """A follow-up (pregnancy_complicated, professional_cleared) is required or read only when its
    condition holds; the document says so with if/then, so these must agree on every request."""
    body = {"service": service, "answers": answers}
    response = API_APP.test_client().post(EVALUATE, data=json.dumps(body), content_type="application/json")
    assert response.status_code in (200, 422)
    assert request_validator.is_valid(body) == (response.status_code == 200), response.get_json()


# --- and for conditions the shipped rules do not use yet ------------------------------------------

FOLLOW_UP_CONDITIONS = [
    {"all": [{"var": "service.pressure", "equals": "firm"}, {"not": {"var": "pregnant", "equals": "no"}}]},
    {"any": [{"var": "intense_pain", "not_equals": "no"}, {"var": "service.areas", "contains": "neck"}]},
    {"any": [{"var": "pregnancy_complicated", "in": ["yes"]}, {"var": "fever", "contains": "yes"}]},
]


@functools.cache
def _with_follow_up(index: int, required: bool):
    """The shipped rules with professional_cleared asked when FOLLOW_UP_CONDITIONS[index] holds (and
    `required`), and a validator of its EvaluateRequest."""
    rules = load_rules(default_rules_dir())
    known = {q.id for q in rules.questions} | set(SERVICE_VARS)
    condition = compile_condition(FOLLOW_UP_CONDITIONS[index], known)
    questions = tuple(replace(q, asked_when=condition, required=required) if q.id == "professional_cleared" else q
                      for q in rules.questions)
    rules = replace(rules, questions=questions, questions_by_id={q.id: q for q in questions})
    document = openapi.document(rules, prefix="/api/v1")
    return rules, jsonschema_rs.Draft202012Validator(
        {"$ref": "#/components/schemas/EvaluateRequest", "components": document["components"]})


@pytest.mark.parametrize("required", [False, True], ids=["optional", "required"])
@pytest.mark.parametrize("index", range(len(FOLLOW_UP_CONDITIONS)), ids=["service-and-not", "not-equals-or-areas",
                                                                       "follow-up-of-follow-up"])
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(service=st.sampled_from(SLUGS),
       answers=st.fixed_dictionaries({q: LIKELY for q in ALWAYS_ASKED}, optional={q: ANSWER_VALUES for q in OTHERS}))
def test_the_follow_up_schema_matches_the_engine_for_other_conditions(index, required, service, answers):
    """Service facts, not, not_equals, contains on a list and on a word, and a follow-up that reads
    another follow-up: the document's verdict is the engine's (which is what /evaluate applies)."""
    rules, validator = _with_follow_up(index, required)
    try:
        engine.screen(rules, service, answers, allow_unknown=False)
        accepted = True
    except engine.AnswerErrors:
        accepted = False
    assert validator.is_valid({"service": service, "answers": answers}) == accepted
