"""The client's pages: services, questionnaire, result, sharing, and every refusal."""
import io
import json
import re

import pytest
from conftest import RED_FLAGS, SLUGS, all_no, edit
from markupsafe import escape

from screening.store import db as dbmod


def outcomes(html):
    return re.findall(r'data-outcome="([a-z_]+)"', html)


def reasons(html):
    return re.findall(r'data-reason="([a-z_]+)"', html)


def reference(html):
    found = re.findall(r"data-reference>([^<]+)<", html)
    return found[0] if found else None


def count(db, table="submissions"):
    return db.execute(f"select count(*) from {table}").fetchone()[0]


def shared(**overrides):
    return all_no(**{"share": "yes", "name": "Ana Client", "contact": "ana@example.org", "consent": "yes",
                     "nonce": "n" * 24, **overrides})


def test_home_lists_every_service_with_its_description_and_screening(client):
    html = client.get("/").text
    for slug in SLUGS:
        assert f'href="/services/{slug}"' in html
        assert f'href="/screening/{slug}"' in html


@pytest.mark.parametrize("slug", SLUGS)
def test_each_service_page_describes_it_and_says_it_is_not_medical(client, rules, slug):
    response = client.get(f"/services/{slug}")
    assert response.status_code == 200
    assert rules.service(slug).name.get() in response.text
    assert "not a medical" in response.text


def test_unknown_service_is_a_404_page_for_description_and_screening(client):
    for path in ("/services/no-such", "/screening/no-such"):
        response = client.get(path)
        assert response.status_code == 404
        assert "Page not found" in response.text
    assert client.post("/screening/no-such", data=all_no()).status_code == 404


def test_questionnaire_has_a_field_per_question_and_no_preselected_red_flag(client, rules):
    html = client.get("/screening/decontracting-back-massage").text
    for q in rules.questions:
        assert f'name="{q.id}"' in html
    for flag in RED_FLAGS + ["pregnant"]:
        for value in ("yes", "no", "not_sure"):
            tag = re.search(rf'<input[^>]*id="{flag}-{value}"[^>]*>', html).group(0)
            assert "checked" not in tag, f"{flag} {value} is preselected"


def test_each_question_is_a_fieldset_with_legend_and_hint(client):
    html = client.get("/screening/decontracting-back-massage").text
    block = re.search(r'id="q-fever".*?</fieldset>', html, re.S).group(0)
    assert "<legend" in block and "Do you have a fever?" in block
    assert 'aria-describedby="fever-hint"' in block


@pytest.mark.parametrize("slug", SLUGS)
def test_skin_question_names_the_areas_of_the_chosen_service(client, rules, slug):
    html = client.get(f"/screening/{slug}").text
    legend = re.search(r'id="q-skin_problem_in_area".*?<legend[^>]*>(.*?)</legend>', html, re.S).group(1)
    for area in rules.service(slug).areas:
        assert area.name.get() in legend.replace("&#39;", "'")


def _tension_choices(html):
    block = re.search(r'id="q-tension_areas".*?</fieldset>', html, re.S).group(0)
    return re.findall(r'<input type="checkbox" id="tension_areas-(\w+)".*?<label[^>]*>(.*?)</label>', block, re.S)


def test_tension_areas_match_the_service(client):
    # the general decontracting massage works neck, shoulders, back and legs: all offered, head to toe
    general = client.get("/screening/decontracting-massage?lang=en").text
    assert _tension_choices(general) == [
        ("neck", "Neck and base of the skull"), ("shoulders", "Shoulders"), ("thoracic", "Upper and middle back"),
        ("shoulder_blades", "Around the shoulder blades"), ("lumbar", "Lower back"), ("legs", "Legs")]
    assert "write it in" not in general        # no hint to put shoulders or legs in the notes any more
    # the back massages: the back, then the neck; no shoulders or legs, which they do not work
    for slug in ("decontracting-back-massage", "back-massage", "deep-tissue-massage"):
        ids = [i for i, _ in _tension_choices(client.get(f"/screening/{slug}").text)]
        assert ids == ["thoracic", "shoulder_blades", "lumbar", "neck"], slug
    ca = client.get("/screening/decontracting-massage?lang=ca").text
    assert [label for _, label in _tension_choices(ca)][1::4] == ["Espatlles", "Cames"]


def test_legs_sent_to_a_back_massage_are_refused_at_the_field_and_kept_on_the_general_one(client):
    refused = client.post("/screening/back-massage", data=all_no(tension_areas=["lumbar", "legs"]))
    assert refused.status_code == 422
    assert re.search(r'id="q-tension_areas".*?class="error-message"', refused.text, re.S)
    kept = client.post("/screening/decontracting-massage", data=all_no(tension_areas=["legs", "shoulders"]))
    assert kept.status_code == 200 and outcomes(kept.text) == ["proceed"]
    assert '<dd data-answer="tension_areas">Shoulders, Legs</dd>' in kept.text


def test_all_no_gives_proceed_with_the_service_alongside_and_the_disclaimer(client, rules):
    response = client.post("/screening/decontracting-back-massage", data=all_no(share="no"))
    assert response.status_code == 200
    assert outcomes(response.text) == ["proceed"]
    assert reasons(response.text) == []
    assert rules.service("decontracting-back-massage").summary.get() in response.text
    assert "not a medical assessment" in response.text
    assert "answer the questions again" in response.text.lower()


@pytest.mark.parametrize("flag", RED_FLAGS)
@pytest.mark.parametrize("answer", ["yes", "not_sure"])
def test_each_red_flag_yes_or_not_sure_means_consult(client, flag, answer):
    response = client.post("/screening/back-massage", data=all_no(**{flag: answer}))
    assert outcomes(response.text) == ["consult_professional"]
    assert reasons(response.text) == [flag]
    if answer == "not_sure":
        assert "a health professional can tell" in response.text


def test_fever_message_says_to_wait_until_well_even_when_cleared(client):
    response = client.post("/screening/back-massage", data=all_no(fever="yes", professional_cleared="yes"))
    assert outcomes(response.text) == ["consult_professional"]
    assert "until you are well" in response.text


def test_clearance_turns_a_red_flag_into_tell_the_centre(client):
    response = client.post("/screening/back-massage", data=all_no(recent_injury="yes", professional_cleared="yes"))
    assert outcomes(response.text) == ["tell_centre"]
    assert reasons(response.text) == ["recent_injury"]


def test_pregnancy_without_complications_is_tell_the_centre(client):
    response = client.post("/screening/back-massage", data=all_no(pregnant="yes", pregnancy_complicated="no"))
    assert outcomes(response.text) == ["tell_centre"]


def test_pregnant_without_the_follow_up_answer_is_refused_at_that_question(client):
    response = client.post("/screening/back-massage", data=all_no(pregnant="yes"))
    assert response.status_code == 422
    assert "data-outcome" not in response.text
    block = re.search(r'id="q-pregnancy_complicated".*?</fieldset>', response.text, re.S).group(0)
    assert "Choose an answer to this question." in block


def test_follow_up_answered_without_being_asked_is_ignored(client):
    response = client.post("/screening/back-massage", data=all_no(pregnancy_complicated="yes"))
    assert outcomes(response.text) == ["proceed"]


def test_light_pressure_on_firm_service_suggests_the_back_massage(client):
    response = client.post("/screening/decontracting-back-massage", data=all_no(preferred_intensity="light"))
    assert outcomes(response.text) == ["tell_centre"]
    assert 'href="/services/back-massage"' in response.text


def test_neck_tension_suggests_the_back_and_neck_combination_without_raising(client):
    data = all_no()
    data["tension_areas"] = ["lumbar", "neck"]
    response = client.post("/screening/decontracting-back-massage", data=data)
    assert outcomes(response.text) == ["proceed"]
    assert 'href="/services/back-and-neck-massage"' in response.text


@pytest.mark.parametrize("flag", RED_FLAGS + ["pregnant"])
def test_unanswered_red_flag_is_refused_never_read_as_no(client, db, flag):
    data = all_no(share="yes", name="Ana", contact="ana@example.org", consent="yes", nonce="m" * 24)
    del data[flag]
    response = client.post("/screening/decontracting-back-massage", data=data)
    assert response.status_code == 422
    assert "data-outcome" not in response.text
    assert f'href="#q-{flag}"' in response.text                    # error summary links to the question
    assert re.search(rf'id="q-{flag}"[^>]*>.*?Choose an answer', response.text, re.S)
    assert count(db) == 0


@pytest.mark.parametrize("field,value", [
    ("fever", "maybe"), ("pregnant", "yes please"), ("preferred_intensity", "extreme"),
    ("tension_areas", "knees"), ("professional_cleared", "not_sure"), ("notes", "x" * 1001),
])
def test_invalid_answers_are_refused_at_the_field_and_what_was_typed_is_kept(client, field, value):
    data = all_no(recent_injury="yes", notes="my shoulders")
    data[field] = value
    response = client.post("/screening/back-massage", data=data)
    assert response.status_code == 422
    assert re.search(rf'id="q-{field}"[^>]*>.*?class="error-message"', response.text, re.S)
    if field != "notes":
        assert "my shoulders" in response.text
    assert re.search(r'<input[^>]*id="recent_injury-yes"[^>]*checked', response.text)


def test_check_only_stores_nothing(client, db):
    client.post("/screening/back-massage", data=all_no(fever="yes", share="no"))
    assert count(db) == 0


def test_sharing_stores_the_screening_and_shows_a_reference_after_commit(client, db, rules):
    response = client.post("/screening/back-massage", data=shared(fever="yes", notes="left side"))
    assert response.status_code == 200
    ref = reference(response.text)
    assert re.fullmatch(r"[A-HJKMNP-Z2-9]{4}-[A-HJKMNP-Z2-9]{4}", ref)
    row = db.execute("select * from submissions where reference = ?", [ref]).fetchone()
    columns = [d[0] for d in db.execute("select * from submissions").description]
    stored = dict(zip(columns, row))
    assert stored["service"] == "back-massage"
    assert stored["outcome"] == "consult_professional"
    assert '"fever": "yes"' in stored["answers"] and "left side" in stored["answers"]
    assert '"fever"' in stored["fired_rules"]
    assert stored["rules_version"] == rules.version
    assert stored["name"] == "Ana Client" and stored["contact"] == "ana@example.org"
    assert stored["consent_at"] and stored["created_at"] and stored["locale"] == "en"


def test_a_refreshed_share_stores_nothing_twice(client, db):
    first = client.post("/screening/back-massage", data=shared())
    second = client.post("/screening/back-massage", data=shared())
    assert reference(first.text) == reference(second.text)
    assert "already sent" in second.text
    assert count(db) == 1


def stored(db, ref):
    """The stored screening behind a reference: outcome, answers (decoded JSON), fired rule ids."""
    outcome, answers, fired = db.execute(
        "select outcome, answers, fired_rules from submissions where reference = ?", [ref]).fetchone()
    return outcome, json.loads(answers), [f["rule"] for f in json.loads(fired)]


def test_a_resent_form_with_changed_answers_is_stored_under_a_new_reference_that_names_it(client, db):
    first = client.post("/screening/back-massage", data=shared())
    first_ref = reference(first.text)
    assert outcomes(first.text) == ["proceed"]
    # the same page sent again (same nonce), now with a fever
    second = client.post("/screening/back-massage", data=shared(fever="yes"))
    second_ref = reference(second.text)
    assert outcomes(second.text) == ["consult_professional"] and reasons(second.text) == ["fever"]
    assert second_ref and second_ref != first_ref
    assert "already sent" not in second.text
    assert "Your changed answers were sent as a new screening" in second.text
    assert "The centre also keeps the answers you sent before" in second.text
    # each reference shown names a stored screening with exactly the result shown beside it
    assert stored(db, first_ref)[0] == "proceed" and stored(db, first_ref)[1]["fever"] == "no"
    assert stored(db, second_ref) == ("consult_professional", stored(db, second_ref)[1], ["fever"])
    assert stored(db, second_ref)[1]["fever"] == "yes"
    assert count(db) == 2


def test_a_resent_form_unchanged_again_shows_its_own_reference_and_stores_nothing(client, db):
    first = client.post("/screening/back-massage", data=shared())
    changed = client.post("/screening/back-massage", data=shared(fever="yes"))
    for data, earlier in ((shared(fever="yes"), changed), (shared(), first)):
        again = client.post("/screening/back-massage", data=data)
        assert reference(again.text) == reference(earlier.text)
        assert outcomes(again.text) == outcomes(earlier.text)
        assert "Your answers were already sent" in again.text
    assert count(db) == 2


@pytest.mark.parametrize("nonce", [None, "", "<script>"])
def test_a_share_without_a_usable_nonce_is_still_stored_once(client, db, nonce):
    # a client that drops hidden fields still gets its reference; only refresh-deduplication is lost
    data = shared()
    if nonce is None:
        del data["nonce"]
    else:
        data["nonce"] = nonce
    response = client.post("/screening/back-massage", data=data)
    assert response.status_code == 200 and reference(response.text)
    assert count(db) == 1


def test_two_forms_of_two_people_give_two_references(client, db):
    a = client.post("/screening/back-massage", data=shared(nonce="a" * 24))
    b = client.post("/screening/back-massage", data=shared(nonce="b" * 24, name="Bea Client"))
    assert reference(a.text) != reference(b.text)
    assert count(db) == 2


@pytest.mark.parametrize("again", [
    {},                                                                   # the Back button: a fresh form token
    {"name": "  ana   CLIENT "},                                          # name trimmed and case-folded
    {"contact": "ANA@Example.org"},                                       # e-mail in any case
])
def test_the_same_screening_sent_again_from_another_form_is_already_sent(client, db, again):
    first = client.post("/screening/back-massage", data=shared(nonce="a" * 24, fever="yes"))
    second = client.post("/screening/back-massage", data=shared(nonce="b" * 24, fever="yes", **again))
    assert reference(second.text) == reference(first.text)
    assert "Your answers were already sent" in second.text
    assert count(db) == 1


def test_a_phone_written_another_way_is_the_same_contact(client, db):
    first = client.post("/screening/back-massage", data=shared(nonce="a" * 24, contact="+34 612 34 56 78"))
    second = client.post("/screening/back-massage", data=shared(nonce="b" * 24, contact="+34612-345-678"))
    assert reference(second.text) == reference(first.text) and count(db) == 1


@pytest.mark.parametrize("changed", [{"fever": "yes"}, {"name": "Bea Client"}, {"contact": "bea@example.org"}])
def test_another_answer_or_person_from_another_form_is_a_new_screening(client, db, changed):
    first = client.post("/screening/back-massage", data=shared(nonce="a" * 24))
    second = client.post("/screening/back-massage", data=shared(nonce="b" * 24, **changed))
    assert reference(second.text) != reference(first.text)
    assert "already sent" not in second.text and count(db) == 2


def test_the_same_screening_for_another_service_is_a_new_screening(client, db):
    first = client.post("/screening/back-massage", data=shared(nonce="a" * 24))
    second = client.post("/screening/decontracting-back-massage", data=shared(nonce="b" * 24))
    assert reference(second.text) != reference(first.text) and count(db) == 2


def test_the_same_screening_an_hour_later_is_a_new_screening(client, db):
    first = reference(client.post("/screening/back-massage", data=shared(nonce="a" * 24)).text)
    with dbmod.immediate(db):
        db.execute("UPDATE submissions SET created_at = ? WHERE reference = ?", ["2020-01-01T00:00:00.000000+00:00",
                                                                                 first])
    second = client.post("/screening/back-massage", data=shared(nonce="b" * 24))
    assert reference(second.text) != first and count(db) == 2


def test_an_erased_screening_never_makes_a_new_one_already_sent(client, db):
    from conftest import CENTRE

    from screening.store import retention

    first = reference(client.post("/screening/back-massage", data=shared(nonce="a" * 24)).text)
    submission_id = db.execute("SELECT id FROM submissions WHERE reference = ?", [first]).fetchone()[0]
    assert retention.erase_submission(db, submission_id, centre=CENTRE, staff=None) == first
    second = client.post("/screening/back-massage", data=shared(nonce="b" * 24))
    assert reference(second.text) not in (None, first)
    assert "already sent" not in second.text and count(db) == 1


@pytest.mark.parametrize("field,value,message", [
    ("name", "", "Enter your name"),
    ("name", "x" * 101, "100 characters or fewer"),
    ("contact", "", "Enter an e-mail address or a phone number"),
    ("contact", "not an address", "Enter an e-mail address like"),
    ("contact", "12", "Enter an e-mail address like"),
    ("consent", "", "Tick the box to agree"),
])
def test_sharing_needs_name_contact_and_consent(client, db, field, value, message):
    data = shared(notes="keep me")
    data[field] = value
    response = client.post("/screening/back-massage", data=data)
    assert response.status_code == 422
    assert message in response.text
    assert "keep me" in response.text
    assert count(db) == 0


def test_phone_numbers_are_accepted_as_contact(client, db):
    response = client.post("/screening/back-massage", data=shared(contact="+34 600 123 456"))
    assert reference(response.text)
    assert count(db) == 1


def test_the_result_has_no_url_of_its_own(client, app):
    response = client.post("/screening/back-massage", data=shared())
    assert response.status_code == 200 and "Location" not in response.headers
    rules_paths = [r.rule for r in app.url_map.iter_rules()]
    assert not any("result" in p for p in rules_paths)


def test_healthz_says_ok_while_the_database_works(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.text == "ok"


def test_the_form_page_is_not_cached_and_loads_no_third_party_assets(client):
    response = client.get("/screening/back-massage")
    assert response.headers["Cache-Control"] == "no-store"
    assert not re.search(r'(src|href)="https?://', response.text)


def test_follow_ups_carry_their_condition_for_progressive_reveal(client):
    html = client.get("/screening/back-massage").text
    block = re.search(r'id="q-pregnancy_complicated"[^>]*>', html).group(0)
    assert "data-asked-when" in block and "pregnant" in block


@pytest.mark.parametrize("streamed", [False, True])
def test_a_body_over_the_size_limit_is_refused_with_413_and_nothing_is_stored(client, db, streamed):
    # gunicorn hands a chunked body over as a stream with no length; Werkzeug would cut it, not refuse it
    from urllib.parse import urlencode
    body = urlencode(shared(notes="x" * 70_000)).encode()
    extra = ({"input_stream": io.BytesIO(body), "headers": {"Transfer-Encoding": "chunked"},
              "environ_overrides": {"wsgi.input_terminated": True}} if streamed else {"data": body})
    response = client.post("/screening/back-massage", content_type="application/x-www-form-urlencoded", **extra)
    assert response.status_code == 413
    assert "too large" in response.text
    assert count(db) == 0


@pytest.mark.parametrize("zone,offset", [("Asia/Tokyo", "+09:00"), ("UTC", "+00:00")])
def test_the_result_shows_when_it_was_made_on_the_centres_clock(make_app, rules_copy, zone, offset):
    edit(rules_copy, "centres/exemple-barcelona.toml", 'timezone = "Europe/Madrid"', f'timezone = "{zone}"')
    client = make_app(RULES_DIR=str(rules_copy)).test_client()
    html = client.post("/screening/back-massage", data=all_no()).text
    stamp = re.search(r'<time datetime="([^"]+)"', html).group(1)
    assert stamp.endswith(offset)


# --- the result says exactly what to do ---------------------------------------------------------

def hidden_fields(html):
    """The hidden inputs of the result's form that "Answer again" and the language switch post."""
    form = re.search(r'<form method="post" id="language-form"[^>]*>(.*?)</form>', html, re.S).group(1)
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form))


def test_reasons_read_most_severe_first_and_a_cleared_one_never_leads_under_consult(client):
    # the cleared injury (tell the centre) comes before fever in the rules; fever (consult) must lead
    html = client.post("/screening/back-massage",
                       data=all_no(recent_injury="yes", fever="yes", professional_cleared="yes")).text
    assert outcomes(html) == ["consult_professional"]
    assert reasons(html) == ["fever", "recent_injury"]
    why, also = html.index(">Why<"), html.index(">Also tell the centre<")
    assert why < html.index('data-reason="fever"') < also < html.index('data-reason="recent_injury"')


def test_health_reasons_read_before_a_preference_at_the_same_level(client):
    # a cleared injury and light pressure on a firm massage both say "tell the centre": the injury leads
    html = client.post("/screening/decontracting-back-massage",
                       data=all_no(recent_injury="yes", professional_cleared="yes", preferred_intensity="light")).text
    assert outcomes(html) == ["tell_centre"]
    assert reasons(html) == ["recent_injury", "light_pressure_on_firm_service"]


@pytest.mark.parametrize("lang", ["en", "ca", "es"])
def test_not_sure_is_explained_once_and_each_reason_it_raised_says_so(client, rules, lang):
    unsure = {flag: "not_sure" for flag in RED_FLAGS} | {"pregnant": "not_sure", "pregnancy_complicated": "not_sure"}
    html = client.post(f"/screening/back-massage?lang={lang}", data=all_no(**unsure)).text
    label = rules.text("answer_not_sure", lang)
    items = dict(re.findall(r'<li data-reason="([^"]+)">(.*?)</li>', html, re.S))
    assert len(items) >= 10
    for rule, text in items.items():
        assert "data-not-sure>" in text and label in text, rule       # which answer was "not sure"
    assert html.count("data-not-sure-note") == 1                    # why it counts as yes: once
    assert rules.text("not_sure_note", lang) not in html
    checked = client.post(f"/screening/back-massage?lang={lang}", data=all_no(fever="yes")).text
    assert "data-not-sure" not in checked


def test_the_booking_button_is_read_once_on_proceed(client):
    html = client.post("/screening/back-massage", data=all_no()).text
    assert outcomes(html) == ["proceed"]
    assert html.count("Book at Espai Massatge Exemple") == 1
    assert 'class="visually-hidden">Book at' not in html


def test_fever_has_its_own_next_step_postpone_and_answer_again_when_well(client):
    html = client.post("/screening/back-massage", data=all_no(fever="yes")).text
    step = re.search(r'data-next-step="fever">([^<]+)<', html).group(1)
    assert step == "When you are well again, answer these questions again before you book."
    assert html.count("not book") == 1      # the reason says it once; the next step adds what comes after
    # the generic "ask a doctor whether a massage is right for you" would contradict "postpone"
    assert "whether a massage is right for you now" not in html
    both = client.post("/screening/back-massage", data=all_no(fever="yes", intense_pain="yes")).text
    assert 'data-next-step="fever"' in both and "whether a massage is right for you now" in both


@pytest.mark.parametrize("lang", ["en", "ca", "es"])
@pytest.mark.parametrize("answers", [{}, {"pregnant": "yes", "pregnancy_complicated": "no"}, {"fever": "yes"}])
def test_no_sentence_points_below_or_at_a_control_the_result_lacks(client, lang, answers):
    html = client.post(f"/screening/back-massage?lang={lang}", data=all_no(**answers)).text
    text = re.sub(r"<[^>]+>", " ", html).lower()
    for words in ("below", "a continuació", "a continuación", "with this page", "des d'aquesta pàgina",
                  "desde esta página"):
        assert words not in text, (lang, words)


def test_after_sharing_the_result_says_the_centre_has_the_answers(client):
    html = client.post("/screening/back-massage", data=shared(pregnant="yes", pregnancy_complicated="no")).text
    assert "The centre has your answers now" in html
    assert "To send your answers to the centre" not in html
    checked = client.post("/screening/back-massage", data=all_no(pregnant="yes", pregnancy_complicated="no")).text
    assert "The centre has your answers" not in checked
    assert "To send your answers to the centre, choose “Answer the questions again”" in checked


def test_the_title_names_the_service_the_time_its_zone_and_the_headline_is_plain(client):
    html = client.post("/screening/back-massage", data=all_no()).text
    title = re.search(r"<title>([^<]+)</title>", html).group(1)
    assert "You can book" in title and "Back massage" in title
    assert re.search(r"<h1[^>]*>.*You can book</h1>", html)
    assert "Proceed" not in html
    assert re.search(r"</time> \(Central European (Standard|Summer) Time\)", html)
    ca = client.post("/screening/back-massage?lang=ca", data=all_no()).text
    assert re.search(r"</time> \(hora (estàndard|d&#39;estiu) d&#39;Europa central\)", ca)   # the catalogs' apostrophe


def test_the_result_lists_the_answers_the_client_gave(client):
    html = client.post("/screening/back-massage",
                       data=all_no(tension_areas=["lumbar", "neck"], notes="Left shoulder")).text
    assert '<dd data-answer="tension_areas">Lower back, Neck and base of the skull</dd>' in html
    assert '<dd data-answer="notes">Left shoulder</dd>' in html
    assert '<dd data-answer="fever">No</dd>' in html
    assert 'data-answer="pregnancy_complicated"' not in html      # not asked, not listed


def test_copy_and_print_come_from_a_script_file_and_the_reference_stays_text(client):
    html = client.post("/screening/back-massage", data=shared()).text
    assert '<script src="/static/result.js" defer></script>' in html
    assert re.search(r'<p class="reference-tools no-print" data-reference-tools hidden', html)
    assert re.search(r'<strong class="reference" data-reference>[A-Z0-9-]+</strong>', html)
    assert client.get("/static/result.js").status_code == 200


def test_answer_again_posts_the_pages_copy_and_the_form_comes_back_filled(client, db):
    html = client.post("/screening/back-massage",
                       data=shared(recent_injury="yes", professional_cleared="yes", tension_areas=["lumbar", "neck"],
                                   notes="Left shoulder")).text
    # the button posts the page's signed copy (the language switch's form): a POST, no answers in a URL
    assert re.search(r'<button type="submit" form="language-form" name="edit" value="yes"', html)
    assert re.search(r'<form method="post" id="language-form" action="/screening/back-massage" hidden>', html)
    stored = count(db)

    again = client.post("/screening/back-massage", data={**hidden_fields(html), "edit": "yes"})
    assert again.status_code == 200
    assert outcomes(again.text) == [] and 'class="questionnaire"' in again.text
    assert re.search(r'id="recent_injury-yes"[^>]*value="yes" checked', again.text)
    assert re.search(r'id="tension_areas-neck"[^>]*value="neck" checked', again.text)
    assert re.search(r'id="tension_areas-lumbar"[^>]*value="lumbar" checked', again.text)
    assert "Left shoulder</textarea>" in again.text
    assert re.search(r'id="share-yes" name="share" value="yes" checked', again.text)      # for a retry
    assert 'id="name" name="name" value="Ana Client"' in again.text and 'value="ana@example.org"' in again.text
    assert 'name="nonce" value="' + "n" * 24 + '"' in again.text     # sent again, it replaces, never doubles
    assert 'id="consent" name="consent" value="yes" checked' not in again.text   # consent is given again
    assert count(db) == stored                                                   # nothing judged or stored


def test_answer_again_with_another_services_or_a_forged_copy_is_a_400(client):
    html = client.post("/screening/back-massage", data=all_no()).text
    fields = hidden_fields(html)
    assert client.post("/screening/decontracting-back-massage", data={**fields, "edit": "yes"}).status_code == 400
    forged = {**fields, "result_copy": fields["result_copy"][:-2] + "xx", "edit": "yes"}
    assert client.post("/screening/back-massage", data=forged).status_code == 400


def test_the_error_summary_is_a_count_and_one_short_link_per_question(client):
    html = client.post("/screening/back-massage", data={"share": "no"}).text
    summary = re.search(r'<div class="error-summary".*?</div>', html, re.S).group(0)
    assert re.search(r"There are \d+ problems", summary)
    assert "Choose an answer to this question." not in summary     # the message is at each field only
    assert '<a href="#q-intense_pain">Do you have intense pain right now?</a>' in summary


@pytest.mark.parametrize("lang", ["en", "ca", "es"])
def test_a_list_of_areas_starts_with_a_capital_though_the_names_are_written_for_a_sentence(client, rules, lang):
    service = rules.service("back-massage")
    first = service.areas[0].name.get(lang)
    assert first[0].islower()            # written for "… a skin problem on the upper and middle back"
    pages = [client.get(f"/services/back-massage?lang={lang}").text,
             client.post(f"/screening/back-massage?lang={lang}", data=all_no()).text]
    for page in pages:
        areas = re.findall(r"<dd>([^<]*;[^<]*)</dd>", page)
        assert areas and all(a.startswith(escape(first[0].upper() + first[1:])) for a in areas), areas


def test_the_name_hint_states_its_length_limit_in_each_language(client):
    """The browser stops typing at the limit (maxlength), so the hint says it before a name is cut."""
    from screening.web.forms import NAME_MAX
    hints = set()
    for lang in ("en", "ca", "es"):
        html = client.get(f"/screening/back-massage?lang={lang}").text
        hint = re.search(r'<p class="hint" id="name-hint">([^<]*)</p>', html).group(1)
        assert str(NAME_MAX) in hint, (lang, hint)
        assert re.search(rf'id="name" name="name"[^>]*maxlength="{NAME_MAX}"\s[^>]*aria-describedby="name-hint"', html)
        hints.add(hint)
    assert len(hints) == 3
