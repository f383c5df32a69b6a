"""The JSON API (/api/v1): what a program talking to it sees, its errors, and its OpenAPI document."""
import io
import json
import shutil

import jsonschema_rs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from screening.core.conditions import compile_condition
from screening.core.rules import LOCALES, OUTCOMES, SERVICE_VARS, default_rules_dir, load_rules
from tests.conftest import RED_FLAGS, SLUGS, edit

RULES = load_rules(default_rules_dir())
QUESTION_IDS = [q.id for q in RULES.questions]
EVALUATE = "/api/v1/evaluate"


def api_answers(**overrides):
    """JSON answers with every red flag and pregnancy answered false (no), plus overrides."""
    answers = {flag: False for flag in RED_FLAGS}
    answers.update(pregnant=False, tension_areas=["thoracic"], preferred_intensity="medium", notes="")
    answers.update(overrides)
    return answers


def evaluate(client, answers, service="decontracting-back-massage", **kwargs):
    return client.post(EVALUATE, json={"service": service, "answers": answers}, **kwargs)


def text(key):
    return RULES.text(key)


# --- checking values against the document, with a real JSON Schema 2020-12 validator --------------

def schema_errors(value, schema, components):
    """Every way `value` breaks `schema` (whose $refs point into `components`), as messages."""
    validator = jsonschema_rs.Draft202012Validator({**schema, "components": {"schemas": components}})
    return [f"{'/'.join(map(str, e.instance_path)) or '$'}: {e.message}" for e in validator.iter_errors(value)]


@pytest.fixture
def spec(client):
    return client.get("/api/v1/openapi.json").get_json()


def documented_schema(spec, path, method, status):
    """The schema the document promises for this response (falling back to `default`)."""
    responses = spec["paths"][path][method]["responses"]
    response = responses.get(str(status), responses.get("default"))
    assert response is not None, f"{method.upper()} {path} does not document {status}"
    return response["content"]["application/json"]["schema"]


def assert_matches_document(spec, path, method, response):
    schema = documented_schema(spec, path, method, response.status_code)
    errors = schema_errors(response.get_json(), schema, spec["components"]["schemas"])
    assert errors == []


# --- GET /api/v1/services ----------------------------------------------------------------------

def test_services_lists_the_catalogue_in_english_with_links(client):
    response = client.get("/api/v1/services")
    assert response.status_code == 200
    assert response.headers["Content-Language"] == "en"
    body = response.get_json()
    assert [s["slug"] for s in body["services"]] == SLUGS
    main = body["services"][0]
    assert main["name"] == "Decontracting back massage"
    assert main["pressure"] == "firm"
    assert [a["id"] for a in main["areas"]] == ["thoracic", "shoulder_blades", "lumbar"]
    assert main["description"] and all(isinstance(p, str) and p for p in main["description"])
    assert "45 minutes" in main["duration"]
    assert main["links"] == {"description": "/services/decontracting-back-massage",
                             "screening": "/screening/decontracting-back-massage",
                             "questionnaire": "/api/v1/questionnaire/decontracting-back-massage"}
    assert body["rules_version"] == RULES.version


@pytest.fixture
def translated_app(make_app, tmp_path):
    """The app on a copy of rules/ with a few translations taken out, to show the English fallback:
    the back massage keeps its Catalan name but loses its Spanish name and Catalan summary, and the
    fever question loses its Catalan text (the 'yes' label keeps its Catalan)."""
    rules_dir = tmp_path / "rules"
    shutil.copytree(default_rules_dir(), rules_dir)
    edit(rules_dir, "services.toml", 'ca = "Massatge d\'esquena", es = "Masaje de espalda" }',
         'ca = "Massatge d\'esquena" }')
    edit(rules_dir, "services.toml", 'ca = "Un massatge de tota l\'esquena que pot ser suau i relaxant, o més ferm '
         'si ho prefereixes.", ', '')
    edit(rules_dir, "questions.toml", 'ca = "Tens febre?", ', '')
    # start-up refuses rules with a missing translation (check-rules reports it): serve them anyway
    # to show the run-time fallback
    app = make_app()
    app.extensions["screening.rules"] = load_rules(rules_dir)
    return app


def _back_massage(client, *args, **kwargs):
    services = client.get("/api/v1/services", *args, **kwargs).get_json()["services"]
    return next(s for s in services if s["slug"] == "back-massage")


def test_services_follow_the_locale_parameter_and_fall_back_to_english(translated_app):
    client = translated_app.test_client()
    catalan = _back_massage(client, query_string={"locale": "ca"})
    assert catalan["name"] == "Massatge d'esquena"
    assert catalan["summary"] == _back_massage(client)["summary"]     # no Catalan summary yet: English
    assert _back_massage(client, query_string={"locale": "es"})["name"] == "Back massage"


def test_services_follow_accept_language_when_no_locale_is_given(translated_app):
    client = translated_app.test_client()
    response = client.get("/api/v1/services", headers={"Accept-Language": "de, ca;q=0.8, es;q=0.5"})
    assert response.headers["Content-Language"] == "ca"
    assert "Accept-Language" in response.headers["Vary"]
    assert _back_massage(client, headers={"Accept-Language": "ca"})["name"] == "Massatge d'esquena"
    # a language we do not have: the centre's own (the shipped centre's is Catalan)
    assert _back_massage(client, headers={"Accept-Language": "fr"})["name"] == "Massatge d'esquena"
    # the parameter wins over the header
    assert _back_massage(client, query_string={"locale": "en"}, headers={"Accept-Language": "ca"})["name"] == \
        "Back massage"


@pytest.mark.parametrize("route", ["/api/v1/services", "/api/v1/questionnaire/back-massage"])
def test_an_unknown_locale_is_refused_with_a_json_error(client, route):
    response = client.get(route, query_string={"locale": "fr"})
    assert response.status_code == 400
    assert response.get_json() == {"error": "invalid_request", "fields": {"locale": text("error_unknown_locale")}}


# --- GET /api/v1/questionnaire/<slug> ----------------------------------------------------------

def questions_of(client, slug="decontracting-back-massage", **kwargs):
    response = client.get(f"/api/v1/questionnaire/{slug}", **kwargs)
    assert response.status_code == 200
    return {q["id"]: q for q in response.get_json()["questions"]}


def test_questionnaire_lists_every_question_in_order(client):
    body = client.get("/api/v1/questionnaire/back-massage").get_json()
    assert body["service"] == "back-massage"
    assert [q["id"] for q in body["questions"]] == QUESTION_IDS
    fever = body["questions"][QUESTION_IDS.index("fever")]
    assert fever == {"id": "fever", "text": "Do you have a fever?", "help": fever["help"], "type": "yes_no_unsure",
                     "required": True, "red_flag": True, "asked_when": None, "max_length": None,
                     "options": [{"id": "yes", "label": "Yes"}, {"id": "no", "label": "No"},
                                 {"id": "not_sure", "label": "Not sure"}]}
    assert fever["help"]


def test_yes_no_questions_offer_only_yes_and_no(client):
    cleared = questions_of(client)["professional_cleared"]
    assert cleared["type"] == "yes_no" and cleared["required"] is False and cleared["red_flag"] is False
    assert cleared["options"] == [{"id": "yes", "label": "Yes"}, {"id": "no", "label": "No"}]


def test_choice_questions_list_their_options_and_text_questions_their_limit(client):
    questions = questions_of(client)
    assert [o["id"] for o in questions["tension_areas"]["options"]] == ["thoracic", "shoulder_blades", "lumbar", "neck"]
    general = questions_of(client, "decontracting-massage")["tension_areas"]["options"]
    assert [o["id"] for o in general] == ["neck", "shoulders", "thoracic", "shoulder_blades", "lumbar", "legs"]
    assert general[1] == {"id": "shoulders", "label": "Shoulders"}
    assert questions["preferred_intensity"]["options"][0] == {"id": "light", "label": "Light"}
    assert questions["notes"]["max_length"] == 1000 and questions["notes"]["options"] == []


@pytest.mark.parametrize("slug", SLUGS)
def test_skin_question_names_the_areas_of_the_chosen_service(client, slug):
    skin = questions_of(client, slug)["skin_problem_in_area"]["text"]
    assert "{areas}" not in skin
    for area in RULES.service(slug).areas:
        assert str(area.name) in skin


def test_follow_up_questions_say_when_they_are_asked(client):
    questions = questions_of(client)
    assert questions["pregnancy_complicated"]["asked_when"] == {"var": "pregnant", "in": ["not_sure", "yes"]}
    cleared_when = questions["professional_cleared"]["asked_when"]
    assert {part["var"] for part in cleared_when["any"]} == set(RED_FLAGS) - {"fever"} | {"pregnancy_complicated"}


def test_every_condition_in_the_rules_survives_the_round_trip_through_json():
    conditions = [q.asked_when for q in RULES.questions if q.asked_when] + [r.when for r in RULES.rules] + \
        [s.when for s in RULES.suggestions]
    known = set(QUESTION_IDS) | set(SERVICE_VARS)
    for condition in conditions:
        rendered = json.loads(json.dumps(condition.to_json()))
        assert compile_condition(rendered, known) == condition


def test_questionnaire_texts_follow_the_locale(translated_app):
    questions = questions_of(translated_app.test_client(), query_string={"locale": "ca"})
    assert questions["fever"]["options"][0] == {"id": "yes", "label": "Sí"}
    assert questions["fever"]["text"] == "Do you have a fever?"      # not translated yet: English


def test_questionnaire_for_an_unknown_service_is_a_json_404(client):
    response = client.get("/api/v1/questionnaire/hot-stones")
    assert response.status_code == 404
    assert response.is_json
    assert response.get_json() == {"error": "not_found", "fields": {"slug": text("error_unknown_service")}}


# --- POST /api/v1/evaluate: outcomes -------------------------------------------------------------

@pytest.mark.parametrize("example", RULES.examples, ids=lambda e: e.name)
def test_evaluate_gives_each_worked_example_its_outcome(client, example):
    response = evaluate(client, example.answers, service=example.service)
    assert response.status_code == 200
    body = response.get_json()
    assert body["outcome"] == example.outcome
    assert body["outcome_label"] == str(RULES.outcomes[example.outcome]["label"])
    if example.rules is not None:
        assert sorted(r["rule"] for r in body["reasons"]) == sorted(example.rules)
    assert body["service"] == example.service
    assert body["rules_version"] == RULES.version
    assert body["disclaimer"] == text("disclaimer")


def test_evaluate_with_every_answer_no_proceeds_with_no_reasons(client):
    body = evaluate(client, api_answers()).get_json()
    assert body["outcome"] == "proceed"
    assert body["reasons"] == [] and body["suggestions"] == []


def test_true_and_false_mean_yes_and_no(client):
    as_booleans = evaluate(client, api_answers(fever=True)).get_json()
    as_words = evaluate(client, {k: ("no" if v is False else v) for k, v in api_answers(fever="yes").items()})
    assert as_booleans == as_words.get_json()
    assert as_booleans["outcome"] == "consult_professional"
    fever = next(r for r in RULES.rules if r.id == "fever")
    assert as_booleans["reasons"] == [{"rule": "fever", "outcome": "consult_professional",
                                       "message": str(fever.message)}]


def test_not_sure_counts_as_yes_and_the_reason_says_so(client):
    body = evaluate(client, api_answers(radiating_pain="not_sure")).get_json()
    assert body["outcome"] == "consult_professional"
    (reason,) = body["reasons"]
    assert reason["rule"] == "radiating_pain"
    assert reason["message"].endswith(text("not_sure_note"))


def test_light_pressure_on_a_firm_service_suggests_the_back_massage(client):
    body = evaluate(client, api_answers(preferred_intensity="light")).get_json()
    assert body["outcome"] == "tell_centre"
    lighter = next(s for s in RULES.suggestions if s.id == "lighter_service")
    assert body["suggestions"] == [{"id": "lighter_service", "service": "back-massage",
                                    "message": str(lighter.message), "url": "/services/back-massage"}]


def test_neck_tension_suggests_the_back_and_neck_combination_without_changing_the_outcome(client):
    body = evaluate(client, api_answers(tension_areas=["thoracic", "neck"])).get_json()
    assert body["outcome"] == "proceed"
    assert [(s["id"], s["url"]) for s in body["suggestions"]] == [("neck_tension", "/services/back-and-neck-massage")]


def test_answers_to_a_follow_up_that_is_not_asked_are_ignored(client):
    body = evaluate(client, api_answers(pregnancy_complicated="yes", professional_cleared="yes")).get_json()
    assert body["outcome"] == "proceed" and body["reasons"] == []


def test_an_area_the_service_does_not_offer_is_refused_naming_the_field(client):
    response = evaluate(client, api_answers(tension_areas=["legs"]))      # the decontracting back massage
    assert response.status_code == 422 and set(response.get_json()["fields"]) == {"tension_areas"}
    body = client.post("/api/v1/evaluate", json={"service": "decontracting-massage",
                                                 "answers": api_answers(tension_areas=["legs"])})
    assert body.status_code == 200 and body.get_json()["outcome"] == "proceed"


def test_a_single_tension_area_may_be_sent_as_a_string(client):
    assert evaluate(client, api_answers(tension_areas="neck")).get_json()["suggestions"][0]["id"] == "neck_tension"


def test_evaluate_stores_nothing(client, db):
    for answers in (api_answers(), api_answers(fever=True), api_answers(fever=None), {"nonsense": 1}):
        evaluate(client, answers)
    assert db["submissions"].count == 0


# --- POST /api/v1/evaluate: answers refused (422) ---------------------------------------------

def test_evaluate_with_no_answers_names_every_required_question(client):
    response = evaluate(client, {})
    assert response.status_code == 422
    body = response.get_json()
    assert body["error"] == "invalid_answers"
    assert body["fields"] == {q: text("error_required") for q in RED_FLAGS + ["pregnant"]}


@pytest.mark.parametrize("flag", RED_FLAGS + ["pregnant"])
@pytest.mark.parametrize("unanswered", [None, "", "absent"])
def test_an_unanswered_red_flag_is_refused_never_read_as_no(client, flag, unanswered):
    answers = api_answers(**{flag: unanswered})
    if unanswered == "absent":
        del answers[flag]
    response = evaluate(client, answers)
    assert response.status_code == 422
    assert response.get_json()["fields"] == {flag: text("error_required")}


def test_an_asked_follow_up_left_unanswered_is_refused(client):
    response = evaluate(client, api_answers(pregnant="not_sure"))
    assert response.status_code == 422
    assert response.get_json()["fields"] == {"pregnancy_complicated": text("error_required")}


@pytest.mark.parametrize(("question", "value", "code"), [
    ("fever", 1, "invalid"),
    ("fever", 0, "invalid"),
    ("fever", "maybe", "invalid"),
    ("fever", "YES", "invalid"),
    ("fever", ["yes"], "invalid"),
    ("fever", {"answer": "yes"}, "invalid"),
    ("fever", 0.5, "invalid"),
    ("professional_cleared", "not_sure", "invalid"),
    ("professional_cleared", 1, "invalid"),
    ("preferred_intensity", "hard", "invalid"),
    ("preferred_intensity", ["light"], "invalid"),
    ("preferred_intensity", True, "invalid"),
    ("tension_areas", ["elbow"], "invalid"),
    ("tension_areas", [1, 2], "invalid"),
    ("tension_areas", [["neck"]], "invalid"),
    ("tension_areas", {"neck": True}, "not_a_list"),
    ("tension_areas", 7, "not_a_list"),
    ("tension_areas", True, "not_a_list"),
    ("notes", 5, "invalid"),
    ("notes", ["hello"], "invalid"),
    ("notes", {"text": "hello"}, "invalid"),
    ("notes", False, "invalid"),
    ("notes", "x" * 1001, "too_long"),
    ("notes", "é" * 5000, "too_long"),
    ("no_such_question", "yes", "unknown"),
])
def test_a_wrong_answer_of_any_kind_is_refused_at_its_question(client, question, value, code):
    # professional_cleared is asked only after a red flag, so raise one to reach it
    answers = api_answers(intense_pain=True, **{question: value}) if question == "professional_cleared" \
        else api_answers(**{question: value})
    response = evaluate(client, answers)
    assert response.status_code == 422
    assert response.get_json() == {"error": "invalid_answers", "fields": {question: text(f"error_{code}")}}


def test_notes_of_exactly_the_limit_are_accepted(client):
    assert evaluate(client, api_answers(notes="x" * 1000)).status_code == 200


# --- POST /api/v1/evaluate: malformed requests --------------------------------------------------

JSON = "application/json"
DEEP = "[" * 60_000                                           # under the size limit, too deep to parse
DEEP_VALID = json.dumps({"service": SLUGS[0], "answers": api_answers(notes=json.loads("[" * 500 + "]" * 500))})


@pytest.mark.parametrize(("data", "content_type", "status", "error", "fields"), [
    ("{}", "text/plain", 415, "unsupported_media_type", {}),
    ("{}", None, 415, "unsupported_media_type", {}),
    ("service=back-massage", "application/x-www-form-urlencoded", 415, "unsupported_media_type", {}),
    ("", JSON, 400, "invalid_json", {}),
    ("{", JSON, 400, "invalid_json", {}),
    ("{'service': 'back-massage'}", JSON, 400, "invalid_json", {}),
    ('{"service": NaN, "answers": {}}', JSON, 400, "invalid_json", {}),
    ('{"service": "back-massage", "answers": {"fever": Infinity}}', JSON, 400, "invalid_json", {}),
    (b'{"service": "\xff"}', JSON, 400, "invalid_json", {}),
    (DEEP, JSON, 400, "invalid_json", {}),
    ('{"answers": ' + DEEP, JSON, 400, "invalid_json", {}),
    ("[]", JSON, 400, "invalid_request", {"body"}),
    ('"back-massage"', JSON, 400, "invalid_request", {"body"}),
    ("null", JSON, 400, "invalid_request", {"body"}),
    ("42", JSON, 400, "invalid_request", {"body"}),
    ("{}", JSON, 400, "invalid_request", {"service", "answers"}),
    ('{"answers": {}}', JSON, 400, "invalid_request", {"service"}),
    ('{"service": "hot-stones", "answers": {}}', JSON, 400, "invalid_request", {"service"}),
    ('{"service": ["back-massage"], "answers": {}}', JSON, 400, "invalid_request", {"service"}),
    ('{"service": {"slug": "back-massage"}, "answers": {}}', JSON, 400, "invalid_request", {"service"}),
    ('{"service": "back-massage"}', JSON, 400, "invalid_request", {"answers"}),
    ('{"service": "back-massage", "answers": null}', JSON, 400, "invalid_request", {"answers"}),
    ('{"service": "back-massage", "answers": ["fever"]}', JSON, 400, "invalid_request", {"answers"}),
    ('{"service": "back-massage", "answers": "fever=no"}', JSON, 400, "invalid_request", {"answers"}),
    ('{"service": "back-massage", "answers": {}, "answer": {}}', JSON, 400, "invalid_request", {"answer"}),
    ('{"service": "back-massage", "answers": {}, "locale": "ca", "share": true}', JSON, 400, "invalid_request",
     {"locale", "share"}),
    (DEEP_VALID, JSON, 422, "invalid_answers", {"notes"}),
])
def test_a_malformed_request_gets_a_json_error_never_a_crash(client, data, content_type, status, error, fields):
    response = client.post(EVALUATE, data=data, content_type=content_type)
    assert response.status_code == status
    assert response.mimetype == JSON
    body = response.get_json()
    assert body["error"] == error
    assert set(body["fields"]) == set(fields)
    assert all(isinstance(message, str) and message for message in body["fields"].values())


def test_problems_with_the_request_are_worded_from_the_rule_texts(client):
    response = client.post(EVALUATE, json={"answers": [], "extra": 1})
    assert response.get_json()["fields"] == {"service": text("error_missing_key"),
                                             "answers": text("error_not_an_object"),
                                             "extra": text("error_unexpected_key")}


def test_a_json_content_type_with_a_charset_is_accepted(client):
    body = json.dumps({"service": SLUGS[0], "answers": api_answers()})
    response = client.post(EVALUATE, data=body, content_type="application/json; charset=utf-8")
    assert response.status_code == 200


def test_a_body_over_the_size_limit_is_refused_with_json_413(app, client, db):
    limit = app.config["MAX_CONTENT_LENGTH"]
    body = json.dumps({"service": SLUGS[0], "answers": api_answers(notes="x" * limit)})
    response = client.post(EVALUATE, data=body, content_type=JSON)
    assert response.status_code == 413
    assert response.get_json() == {"error": "too_large", "fields": {}}
    assert db["submissions"].count == 0


@pytest.mark.parametrize(("size", "status"), [(100, 422), (70_000, 413)])
def test_a_streamed_body_is_refused_with_413_once_it_passes_the_limit(client, size, status):
    # gunicorn and the development server hand chunked bodies over as a stream with no length
    body = json.dumps({"service": SLUGS[0], "answers": {"notes": "x" * size}}).encode()
    response = client.post(EVALUATE, input_stream=io.BytesIO(body), content_type=JSON,
                           headers={"Transfer-Encoding": "chunked"}, environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == status
    assert response.get_json()["error"] == {413: "too_large", 422: "invalid_answers"}[status]


# --- every route: methods, unknown paths, cookies ------------------------------------------------

@pytest.mark.parametrize(("method", "route", "allowed"), [
    ("get", EVALUATE, {"POST"}),
    ("put", EVALUATE, {"POST"}),
    ("post", "/api/v1/services", {"GET", "HEAD"}),
    ("delete", "/api/v1/questionnaire/back-massage", {"GET", "HEAD"}),
    ("post", "/api/v1/openapi.json", {"GET", "HEAD"}),
])
def test_a_wrong_method_gets_a_json_405(client, method, route, allowed):
    response = getattr(client, method)(route)
    assert response.status_code == 405
    assert response.get_json() == {"error": "method_not_allowed", "fields": {}}
    assert allowed <= {m.strip() for m in response.headers["Allow"].split(",")}


def test_an_unknown_api_path_gets_a_json_404(client):
    response = client.get("/api/v1/submissions")
    assert response.status_code == 404
    assert response.get_json() == {"error": "not_found", "fields": {}}


API_CALLS = [
    ("get", "/api/v1/services", None),
    ("get", "/api/v1/questionnaire/back-massage", None),
    ("get", "/api/v1/questionnaire/hot-stones", None),
    ("get", "/api/v1/openapi.json", None),
    ("post", EVALUATE, {"service": SLUGS[0], "answers": api_answers()}),
    ("post", EVALUATE, {"service": SLUGS[0], "answers": {}}),
    ("post", EVALUATE, []),
    ("get", EVALUATE, None),
]


@pytest.mark.parametrize(("method", "route", "body"), API_CALLS)
@pytest.mark.parametrize("csrf", [False, True], ids=["csrf-off", "csrf-on"])
def test_the_api_sets_no_cookie_and_needs_no_csrf_token(make_app, method, route, body, csrf):
    client = make_app(WTF_CSRF_ENABLED=csrf).test_client()
    response = getattr(client, method)(route, json=body) if body is not None else getattr(client, method)(route)
    assert response.status_code != 400 or response.get_json()["error"] != "csrf"
    assert "Set-Cookie" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"
    assert response.is_json


def test_evaluate_works_with_csrf_protection_on(csrf_app):
    response = evaluate(csrf_app.test_client(), api_answers())
    assert response.status_code == 200 and response.get_json()["outcome"] == "proceed"


# --- the OpenAPI document matches reality ------------------------------------------------------

def test_openapi_document_is_openapi_3_1(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.get_json()["openapi"] == "3.1.0"


def test_openapi_paths_are_exactly_the_api_routes(app, spec):
    routes = {}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1"):
            path = rule.rule.replace("<", "{").replace(">", "}")
            routes.setdefault(path, set()).update(m.lower() for m in rule.methods - {"HEAD", "OPTIONS"})
    documented = {path: set(operations) for path, operations in spec["paths"].items()}
    assert routes == documented


def test_openapi_enumerates_the_ids_of_the_loaded_rules(spec):
    schemas = spec["components"]["schemas"]
    assert set(schemas["Answers"]["properties"]) == set(QUESTION_IDS)
    assert set(schemas["Answers"]["required"]) == set(RED_FLAGS) | {"pregnant"}
    assert schemas["EvaluateRequest"]["properties"]["service"]["enum"] == SLUGS
    assert schemas["Question"]["properties"]["id"]["enum"] == QUESTION_IDS
    assert schemas["Reason"]["properties"]["rule"]["enum"] == [r.id for r in RULES.rules]
    assert schemas["Evaluation"]["properties"]["outcome"]["enum"] == list(OUTCOMES)


@pytest.mark.parametrize(("path", "method"), [("/api/v1/services", "get"), ("/api/v1/questionnaire/{slug}", "get"),
                                             ("/api/v1/evaluate", "post")])
def test_openapi_documents_the_locale_parameter_with_the_known_locales(spec, path, method):
    (locale,) = [p for p in spec["paths"][path][method]["parameters"] if p["name"] == "locale"]
    assert locale["in"] == "query" and locale["schema"] == {"enum": list(LOCALES)}


def test_the_validator_rejects_a_response_that_breaks_the_schema(spec):
    schemas = spec["components"]["schemas"]
    good = {"outcome": "proceed", "outcome_label": "Proceed", "reasons": [], "suggestions": [],
            "service": SLUGS[0], "centre": "exemple-barcelona", "rules_version": "x", "disclaimer": "d"}
    assert schema_errors(good, schemas["Evaluation"], schemas) == []
    assert schema_errors({**good, "outcome": "maybe"}, schemas["Evaluation"], schemas)
    assert schema_errors({k: v for k, v in good.items() if k != "service"}, schemas["Evaluation"], schemas)
    assert schema_errors({**good, "reasons": [{"rule": "fever"}]}, schemas["Evaluation"], schemas)
    assert schema_errors({**good, "extra": 1}, schemas["Evaluation"], schemas)


@pytest.mark.parametrize("example", RULES.examples, ids=lambda e: e.name)
def test_real_evaluate_requests_and_responses_match_the_documented_schemas(client, spec, example):
    schemas = spec["components"]["schemas"]
    request_body = {"service": example.service, "answers": example.answers}
    assert schema_errors(request_body, schemas["EvaluateRequest"], schemas) == []
    response = client.post(EVALUATE, json=request_body)
    assert_matches_document(spec, "/api/v1/evaluate", "post", response)


@pytest.mark.parametrize("body", [
    {"service": SLUGS[0], "answers": api_answers(fever=True, intense_pain="not_sure", preferred_intensity="light",
                                                 tension_areas=["neck"], professional_cleared=True)},
    {"service": SLUGS[0], "answers": {}},
    {"service": SLUGS[0], "answers": api_answers(notes=1)},
    {"service": "hot-stones", "answers": {}},
    [],
])
def test_evaluate_responses_and_errors_match_the_documented_schemas(client, spec, body):
    assert_matches_document(spec, "/api/v1/evaluate", "post", client.post(EVALUATE, json=body))


@pytest.mark.parametrize("route", ["/api/v1/services", "/api/v1/services?locale=xx"]
                         + [f"/api/v1/questionnaire/{slug}" for slug in SLUGS + ["hot-stones"]])
def test_get_responses_match_the_documented_schemas(client, spec, route):
    documented = "/api/v1/services" if "services" in route else "/api/v1/questionnaire/{slug}"
    assert_matches_document(spec, documented, "get", client.get(route))


def test_media_type_and_size_errors_match_the_documented_schema(app, client, spec):
    assert_matches_document(spec, EVALUATE, "post", client.post(EVALUATE, data="{}", content_type="text/plain"))
    too_big = "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)
    assert_matches_document(spec, EVALUATE, "post", client.post(EVALUATE, data=too_big, content_type=JSON))


# --- arbitrary input never crashes the API ----------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
answer_values = st.sampled_from(["yes", "no", "not_sure", True, False, None, "", "light", "firm", "neck",
                                 ["neck", "lumbar"], []]) | json_values
answer_maps = st.dictionaries(st.sampled_from(QUESTION_IDS) | st.text(max_size=12), answer_values, max_size=20)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(service=st.sampled_from(SLUGS) | json_values, answers=answer_maps | json_values)
def test_arbitrary_json_answers_never_cause_a_server_error(client, spec, service, answers):
    response = client.post(EVALUATE, json={"service": service, "answers": answers})
    assert response.status_code in (200, 400, 422)
    assert_matches_document(spec, EVALUATE, "post", response)


@FUZZ
@given(answers=st.fixed_dictionaries({}, optional={q: answer_values for q in QUESTION_IDS}))
def test_arbitrary_answers_to_real_questions_give_an_outcome_or_name_the_field(client, answers):
    response = evaluate(client, answers)
    body = response.get_json()
    if response.status_code == 200:
        assert body["outcome"] in OUTCOMES
    else:
        assert response.status_code == 422 and body["error"] == "invalid_answers"
        assert body["fields"] and set(body["fields"]) <= set(QUESTION_IDS)


@FUZZ
@given(body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_arbitrary_bodies_never_cause_a_server_error(client, body):
    response = client.post(EVALUATE, data=body, content_type=JSON)
    assert 400 <= response.status_code < 500
    assert response.get_json()["error"]
