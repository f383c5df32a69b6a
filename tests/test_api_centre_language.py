"""POST /api/v1/evaluate for a named centre answers in that centre's default language when the
caller names none, as the centre's pages do."""
import pytest
from conftest import CENTRE, add_centre, all_no

GIRONA = "agora-girona"
ANSWERS = {k: v for k, v in all_no(fever="yes").items() if v}


@pytest.fixture
def app(make_app, rules_copy):
    """The shipped centre (Catalan, the default) and one whose default language is Spanish."""
    path = add_centre(rules_copy, GIRONA, name="Àgora Girona")
    path.write_text(path.read_text().replace('default_language = "ca"', 'default_language = "es"', 1))
    return make_app(RULES_DIR=str(rules_copy), DEFAULT_CENTRE=CENTRE)


def evaluate(app, centre=None, **headers):
    body = {"service": "back-massage", "answers": ANSWERS} | ({"centre": centre} if centre else {})
    return app.test_client(accept_language=None).post("/api/v1/evaluate", json=body, headers=headers)


@pytest.mark.parametrize("centre, language", [(GIRONA, "es"), (CENTRE, "ca"), (None, "ca")])
def test_evaluate_answers_in_the_named_centres_language(app, centre, language):
    response = evaluate(app, centre)
    assert response.status_code == 200
    assert response.headers["Content-Language"] == language
    rules = app.extensions["screening.rules"]
    assert response.get_json()["outcome_label"] == rules.outcomes["consult_professional"]["label"].get(language)
    assert response.get_json()["disclaimer"] == rules.text("disclaimer", language)


def test_a_language_the_caller_names_still_wins_over_the_centres(app):
    assert evaluate(app, GIRONA, **{"Accept-Language": "en"}).headers["Content-Language"] == "en"
    response = app.test_client(accept_language=None).post(
        "/api/v1/evaluate?locale=ca", json={"service": "back-massage", "answers": ANSWERS, "centre": GIRONA})
    assert response.headers["Content-Language"] == "ca"


def test_a_refusal_for_the_named_centre_is_worded_in_its_language(app):
    response = app.test_client(accept_language=None).post(
        "/api/v1/evaluate", json={"service": "back-massage", "answers": {}, "centre": GIRONA})
    assert response.status_code == 422
    assert response.headers["Content-Language"] == "es"
    rules = app.extensions["screening.rules"]
    assert response.get_json()["fields"]["fever"] == rules.text("error_required", "es")
