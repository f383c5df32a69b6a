"""The rules pages: what the active rules are, and a simulator that stores nothing."""
import re

import pytest
from conftest import RED_FLAGS, csrf_token_from, logged_in_client
from markupsafe import escape

from screening.core.engine import describe_condition


def answers(**overrides):
    data = {f: "no" for f in RED_FLAGS} | {"pregnant": "no", "service": "decontracting-back-massage"}
    return data | overrides


def counts(db):
    return [db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("submissions", "audit_log", "notes")]


def test_the_rules_page_shows_questions_rules_suggestions_and_the_version(staff_client, rules):
    response = staff_client.get("/staff/rules")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert f"<code data-rules-version>{rules.version}</code>" in page
    for q in rules.questions:
        row = re.search(rf'<tr data-question="{q.id}">(.*?)</tr>', page, re.S).group(1)
        if q.asked_when:
            assert str(escape(describe_condition(rules, q.asked_when, "en"))) in row
        else:
            assert "always" in row
    for rule in rules.rules:
        row = re.search(rf'<tr data-rule="{rule.id}">(.*?)</tr>', page, re.S).group(1)
        assert str(escape(describe_condition(rules, rule.when, "en"))) in row
        assert f'data-staff-outcome="{rule.outcome}"' in row
        assert str(escape(rule.message.get("en"))) in row
        if rule.cleared_message:
            assert "When cleared:" in row
    for s in rules.suggestions:
        assert f'data-suggestion="{s.id}"' in page
    assert "Intensity is always adapted to the individual." in page          # a source sentence
    areas = re.search(r'<tr data-question="tension_areas">(.*?)</tr>', page, re.S).group(1)
    assert "legs = Legs (only on: Decontracting massage)" in areas
    assert "neck = Neck and base of the skull;" in areas          # offered on every service: no note


def test_the_simulator_offers_every_question_and_service(staff_client, rules):
    page = staff_client.get("/staff/rules/simulate").get_data(as_text=True)
    for q in rules.questions:
        assert f'name="{q.id}"' in page
    for s in rules.services:
        assert f'<option value="{s.slug}"' in page


def test_the_simulator_shows_outcome_and_fired_rules_and_stores_nothing(staff_client, db):
    before = counts(db)
    response = staff_client.post("/staff/rules/simulate",
                                 data=answers(fever="yes", preferred_intensity="light", tension_areas=["neck"]))
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'data-simulated-outcome="consult_professional"' in page
    assert 'data-simulated-rule="fever"' in page
    assert 'data-simulated-rule="light_pressure_on_firm_service"' in page
    assert 'data-simulated-suggestion="neck_tension"' in page
    assert "data-outcome=" not in page
    assert counts(db) == before


def test_the_simulator_keeps_the_answers_it_was_given(staff_client):
    page = staff_client.post("/staff/rules/simulate", data=answers(fever="not_sure")).get_data(as_text=True)
    assert re.search(r'<input[^>]*id="fever-not_sure"[^>]*checked', page)
    assert not re.search(r'<input[^>]*id="fever-no"[^>]*checked', page)


def test_the_simulator_applies_clearance(staff_client):
    page = staff_client.post("/staff/rules/simulate",
                             data=answers(intense_pain="yes", professional_cleared="yes")).get_data(as_text=True)
    assert 'data-simulated-outcome="tell_centre"' in page


def test_a_missing_red_flag_is_refused_at_the_question(staff_client, db):
    data = answers()
    del data["fever"]
    response = staff_client.post("/staff/rules/simulate", data=data)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert '<p class="error-message" id="fever-error">' in page
    assert "data-simulated-outcome" not in page


def test_an_unknown_service_is_refused_at_the_field(staff_client):
    response = staff_client.post("/staff/rules/simulate", data=answers(service="hot-stones"))
    assert response.status_code == 422
    assert '<p class="error-message" id="service-error">' in response.get_data(as_text=True)


@pytest.mark.parametrize("url", ["/staff/rules", "/staff/rules/simulate"])
def test_strangers_are_sent_to_log_in(client, url):
    response = client.get(url)
    assert response.status_code == 302 and response.headers["Location"].startswith("/staff/login")


def test_the_simulator_post_needs_a_csrf_token(csrf_app, make_staff):
    c = logged_in_client(csrf_app, make_staff)
    assert c.post("/staff/rules/simulate", data=answers()).status_code == 400
    token = csrf_token_from(c.get("/staff/rules/simulate").get_data(as_text=True))
    assert c.post("/staff/rules/simulate", data=answers(csrf_token=token)).status_code == 200


# --- the rules pages in Catalan and Spanish ------------------------------------------------------

ENGLISH_CONNECTORS = re.compile(r"is one of| and | or |includes|\bnot\b|\bis\b|yes_no|not_sure|service\.")


def condition_cells(page: str) -> list[str]:
    """The texts that say when a question is asked, a rule fires or a suggestion shows, and each
    question's type (the 3rd and 4th cells of the questions table, the 2nd of the others)."""
    cells = []
    for kind, rows in (("question", 0), ("rule", 1), ("suggestion", 1)):
        for row in re.findall(rf'<tr data-{kind}="[^"]+">(.*?)</tr>', page, re.S):
            tds = re.findall(r"<td>(.*?)</td>", row, re.S)
            cells += tds[2:4] if kind == "question" else tds[1:2]
    return cells


@pytest.mark.parametrize("lang", ["ca", "es"])
def test_conditions_and_types_are_in_the_page_language(staff_client, rules, lang):
    page = staff_client.get(f"/staff/rules?lang={lang}").get_data(as_text=True)
    cells = condition_cells(page)
    assert len(cells) >= len(rules.questions) * 2 + len(rules.rules)
    assert [c for c in cells if ENGLISH_CONNECTORS.search(c)] == []
    pregnancy = re.search(r'<tr data-question="pregnancy_complicated">(.*?)</tr>', page, re.S).group(1)
    # the answers in the words the client chose them by (texts.toml), not as codes
    for code in ("yes", "not_sure"):
        assert str(escape(f"«{rules.text('answer_' + code, lang)}»")) in pregnancy
    neck = re.search(r'<tr data-suggestion="neck_tension">(.*?)</tr>', page, re.S).group(1)
    neck_label = next(o.label for o in rules.questions_by_id["tension_areas"].options if o.id == "neck")
    assert str(escape(neck_label.get(lang))) in neck


@pytest.mark.parametrize("lang", ["ca", "es"])
def test_the_simulator_says_when_a_follow_up_is_asked_in_the_page_language(staff_client, lang):
    page = staff_client.get(f"/staff/rules/simulate?lang={lang}").get_data(as_text=True)
    hints = re.findall(r'<p class="hint asked-when">(.*?)</p>', page, re.S)
    assert hints and [h for h in hints if ENGLISH_CONNECTORS.search(h)] == []


def test_the_english_source_sentences_are_marked_as_english(staff_client):
    page = staff_client.get("/staff/rules?lang=ca").get_data(as_text=True)
    quotes = re.findall(r"<q[^>]*>", page)
    assert quotes and all('lang="en"' in q for q in quotes)


@pytest.mark.parametrize(("lang", "cleared"), [("ca", "autoritzada"), ("es", "autorizada")])
def test_the_clearance_sentence_uses_no_participle_as_a_noun(staff_client, rules, lang, cleared):
    page = staff_client.get(f"/staff/rules?lang={lang}").get_data(as_text=True)
    sentence = re.search(r'<section aria-labelledby="rules-title">.*?<p>(.*?)</p>', page, re.S).group(1)
    assert f'data-staff-outcome="{rules.clearance.outcome}"' in sentence
    assert not re.search(rf"\bd(e |&#39;|')\s*{cleared}", sentence), sentence   # "missatge d'autoritzada"
