"""Every text in rules/ is in English, Catalan and Spanish (SPEC "Languages"): a missing translation
is a check-rules problem naming the file and the entry, the API answers in the client's language,
and the translations keep the safety wording of the English."""
import pytest
from conftest import RED_FLAGS, edit

from screening.core.checker import check
from screening.core.rules import RulesError, load_rules, missing_translations

HEALTH_PROFESSIONAL = {"en": "health professional", "ca": "professional de la salut", "es": "profesional sanitario"}
TELL_THE_CENTRE = {"en": "Tell the centre", "ca": "Avisa el centre", "es": "Avisa al centro"}


def problems(folder) -> list[str]:
    """The problems check() finds in a rules folder, as the CLI prints them."""
    return [str(p) for p in check(load_rules(folder)).problems]


def test_every_shipped_text_has_catalan_and_spanish(rules):
    assert missing_translations(rules) == []
    assert check(rules).ok


# (file, piece of the shipped file, what replaces it, the problem check-rules must print)
MISSING = {
    "question help": (
        "questions.toml",
        ', ca = "Temperatura alta, o sensació de calor i calfreds, avui o en les últimes 24 hores.", '
        'es = "Temperatura alta, o sensación de calor y escalofríos, hoy o en las últimas 24 horas."', "",
        "questions.toml: question 'fever': 'help' lacks ca, es"),
    "question text as a plain English string": (
        "questions.toml", 'text = { en = "Do you have a fever?", ca = "Tens febre?", es = "¿Tienes fiebre?" }',
        'text = "Do you have a fever?"', "questions.toml: question 'fever': 'text' lacks ca, es"),
    "option label": (
        "questions.toml", 'ca = "Ferma", es = "Firme" ', 'ca = "Ferma" ',
        "questions.toml: question 'preferred_intensity' option 'firm': 'label' lacks es"),
    "rule message": (
        "rules.toml", 'ca = "No reservis mentre tinguis febre. Espera a estar bé i, si tens dubtes, parla amb un '
                      'professional de la salut.", ', "",
        "rules.toml: rule 'fever': 'message' lacks ca"),
    "suggestion message": (
        "rules.toml", ', es = "La tensión te llega hasta el cuello. Quizá te vaya mejor el masaje de espalda y '
                      'cuello."', "", "rules.toml: suggestion 'neck_tension': 'message' lacks es"),
    "service area": (
        "services.toml", 'ca = "les cames", ', "",
        "services.toml: service 'decontracting-massage' area 'legs': 'name' lacks ca"),
    "service FAQ question": (
        "services.toml", ', es = "¿Me quitará el nudo de la espalda?"', "",
        "services.toml: service 'decontracting-back-massage' faq 1: 'question' lacks es"),
    "service paragraph": (
        "services.toml", 'ca = "El centre acorda amb tu quines zones es treballen. Les zones de l\'esquena que '
                         'apareixen aquí només són un punt de partida.", ', "",
        "services.toml: service 'deep-tissue-massage': 'description[1]' lacks ca"),
    "text": (
        "texts.toml", 'list_or = { en = "or", ca = "o", es = "o" }', 'list_or = { en = "or", es = "o" }',
        "texts.toml: [texts]: 'list_or' lacks ca"),
    "outcome label": (
        "texts.toml", 'ca = "Avisa el centre", es = "Avisa al centro" }', 'ca = "Avisa el centre" }',
        "texts.toml: [outcomes.tell_centre]: 'label' lacks es"),
}


@pytest.mark.parametrize("case", MISSING)
def test_a_text_without_a_translation_is_a_problem_naming_file_and_entry(rules_copy, case):
    file, old, new, expected = MISSING[case]
    edit(rules_copy, file, old, new)
    assert problems(rules_copy) == [expected]


def test_check_rules_prints_a_missing_translation_and_exits_1(runner, rules_copy):
    file, old, new, expected = MISSING["question help"]
    edit(rules_copy, file, old, new)
    result = runner.invoke(args=["check-rules", "--rules-dir", str(rules_copy)])
    assert result.exit_code == 1
    assert expected in result.output
    assert "1 problem(s) found." in result.output


def test_a_misspelt_locale_stops_loading_rather_than_passing_as_a_translation(rules_copy):
    edit(rules_copy, "rules.toml", 'ca = "Tens un dolor intens i un professional',
         'xx = "Tens un dolor intens i un professional')
    with pytest.raises(ValueError, match="rules.toml: rule 'intense_pain': 'cleared_message' has unknown locale 'xx'"):
        load_rules(rules_copy)


# --- what the client reads ---------------------------------------------------------------------

def _evaluate(client, language, **answers):
    body = {flag: "no" for flag in RED_FLAGS} | {"pregnant": "no"} | answers
    return client.post("/api/v1/evaluate", json={"service": "decontracting-back-massage", "answers": body},
                       headers={"Accept-Language": language})


@pytest.mark.parametrize(("language", "label", "fever"), [
    ("ca", "Consulta un professional de la salut", "No reservis mentre tinguis febre."),
    ("es", "Consulta a un profesional sanitario", "No reserves mientras tengas fiebre."),
])
def test_the_api_answers_in_catalan_or_spanish_with_the_same_codes(client, language, label, fever):
    english = _evaluate(client, "en", fever="yes", preferred_intensity="light").get_json()
    response = _evaluate(client, language, fever="yes", preferred_intensity="light")
    assert response.headers["Content-Language"] == language
    body = response.get_json()
    assert body["outcome_label"] == label
    assert body["reasons"][0]["message"].startswith(fever)
    assert [(r["rule"], r["outcome"]) for r in body["reasons"]] == \
        [(r["rule"], r["outcome"]) for r in english["reasons"]]
    assert body["outcome"] == english["outcome"] == "consult_professional"
    assert [s["id"] for s in body["suggestions"]] == [s["id"] for s in english["suggestions"]] == ["lighter_service"]
    assert not {m["message"] for m in body["reasons"] + body["suggestions"]} & \
        {m["message"] for m in english["reasons"] + english["suggestions"]}


def test_a_missing_translation_falls_back_to_english_at_run_time(make_app, rules_copy):
    file, old, new, problem = MISSING["rule message"]
    edit(rules_copy, file, old, new)
    # start-up refuses such rules, as check-rules does (SPEC "Rules as data") ...
    with pytest.raises(RulesError, match=problem):
        make_app(RULES_DIR=str(rules_copy))
    # ... and were they served all the same, English would stand in at run time
    app = make_app()
    app.extensions["screening.rules"] = load_rules(rules_copy)
    client = app.test_client()
    body = _evaluate(client, "ca", fever="yes").get_json()
    assert body["reasons"][0]["message"].startswith("Please do not book while you have a fever.")
    assert body["outcome_label"] == "Consulta un professional de la salut"


def test_the_skin_question_names_the_services_areas_in_the_clients_language(client):
    questions = client.get("/api/v1/questionnaire/back-massage", headers={"Accept-Language": "ca"}).get_json()
    skin = next(q for q in questions["questions"] if q["id"] == "skin_problem_in_area")
    # everyday words only: no "zona dorsal" or "zona lumbar" for a client to decode
    assert skin["text"] == ("Tens algun problema a la pell en alguna d'aquestes zones: la part alta i mitjana de "
                            "l'esquena, la zona dels omòplats o la part baixa de l'esquena?")


# --- the translations keep the safety wording --------------------------------------------------

@pytest.mark.parametrize("locale", ["en", "ca", "es"])
def test_every_consult_message_names_a_health_professional_in_every_language(rules, locale):
    consult = [r for r in rules.rules if r.outcome == "consult_professional"]
    assert len(consult) >= 9
    for rule in consult:
        assert HEALTH_PROFESSIONAL[locale] in rule.message.get(locale), rule.id
    for key in ("label", "explanation", "next_step"):
        assert HEALTH_PROFESSIONAL[locale] in rules.outcomes["consult_professional"][key].get(locale), key


@pytest.mark.parametrize("locale", ["en", "ca", "es"])
def test_every_cleared_message_says_a_professional_agreed_and_to_tell_the_centre(rules, locale):
    for rule in (r for r in rules.rules if r.clearable):
        message = rule.cleared_message.get(locale)
        assert HEALTH_PROFESSIONAL[locale] in message and TELL_THE_CENTRE[locale] in message, rule.id


@pytest.mark.parametrize("locale", ["ca", "es"])
def test_the_not_sure_note_quotes_the_answer_the_client_chose(rules, locale):
    label = rules.text("answer_not_sure", locale)
    assert f"«{label}»" in rules.text("not_sure_note", locale)
    assert f"«{label}»" in rules.questions_by_id["pregnant"].help.get(locale)
