"""One submission as staff see it: answers, outcome and reasons, re-judging, status, decision,
notes and erasure, with their refusals and the audit trail they leave."""
import re

import pytest
from conftest import RED_FLAGS, csrf_token_from, logged_in_client

from screening.core import engine, reading
from screening.store import db as dbmod


def judged(rules, service="decontracting-back-massage", **answers):
    """A submission record judged by the current rules, as the public side stores it."""
    raw = {f: "no" for f in RED_FLAGS} | {"pregnant": "no"} | answers
    decision = engine.screen(rules, service, raw)
    return {"service": service, "outcome": decision.outcome.code,
            "answers": {k: list(v) if isinstance(v, tuple) else v for k, v in decision.answers.items()},
            "fired_rules": [{"rule": r.rule, "outcome": r.outcome.code, "not_sure": r.not_sure,
                             "cleared": r.cleared} for r in decision.reasons],
            "suggestions": [s.id for s in decision.suggestions], "rules_version": decision.rules_version}


def audit_rows(db, action=None):
    sql = "SELECT action, staff_id, submission_id, reference, detail FROM audit_log"
    rows = db.execute(sql + " ORDER BY id").fetchall()
    return [r for r in rows if action is None or r[0] == action]


def current(db, submission_id):
    return dbmod.get_submission(db, submission_id)


def test_it_shows_every_question_as_the_client_saw_it_with_the_answers_in_words(
        staff_client, make_submission, rules):
    sub = make_submission(**judged(rules, fever="not_sure", tension_areas=["neck", "lumbar"],
                                   preferred_intensity="firm", notes="Left side hurts more"))
    page = staff_client.get(f"/staff/submissions/{sub['id']}").get_data(as_text=True)
    service = rules.service("decontracting-back-massage")
    for q in engine.asked_questions(rules, service, sub["answers"]):
        assert engine.question_text(rules, q, service, "en") in page, q.id
    assert "Do you have a skin problem on the upper and middle back" in page     # {areas} filled in
    assert '<dd data-answer="fever">Not sure</dd>' in page
    assert '<dd data-answer="intense_pain">No</dd>' in page
    assert '<dd data-answer="tension_areas">Lower back, Neck and base of the skull</dd>' in page
    assert '<dd data-answer="preferred_intensity">Firm</dd>' in page
    assert '<dd data-answer="notes">Left side hurts more</dd>' in page
    # a follow-up that was not asked is not shown
    assert 'data-answer="pregnancy_complicated"' not in page


def test_it_shows_the_outcome_reasons_rules_version_contact_and_times(staff_client, make_submission, rules):
    sub = make_submission(**judged(rules, fever="not_sure", preferred_intensity="light"),
                          name="Marta Puig", contact="+34 600 000 000")
    page = staff_client.get(f"/staff/submissions/{sub['id']}").get_data(as_text=True)
    assert 'data-staff-outcome="consult_professional"' in page
    assert "Consult a health professional" in page
    fever = re.search(r'<li data-fired-rule="fever">(.*?)</li>', page, re.S).group(1)
    assert "Please do not book while you have a fever." in fever
    assert '<li data-raised-by="fever">Do you have a fever? <strong>Not sure</strong>' in fever
    assert 'data-fired-rule="light_pressure_on_firm_service"' in page
    assert "The back massage uses broader, lighter strokes" in page       # the suggestion
    assert f"<code data-rules-version>{rules.version}</code> (the current rules)" in page
    assert "Marta Puig" in page and "+34 600 000 000" in page
    # in the centre's time zone (Europe/Madrid), named
    for stored in (sub["created_at"], sub["consent_at"]):
        local = reading.local_time(stored, "Europe/Madrid")
        assert f"{local:%Y-%m-%d %H:%M} {local.tzname()}" in page
        assert local.tzname() in ("CET", "CEST")
    assert 'data-rejudge' not in page


def test_a_rule_that_no_longer_exists_is_named_and_said_to_be_gone(staff_client, make_submission):
    sub = make_submission(outcome="tell_centre", rules_version="old",
                          fired_rules=[{"rule": "retired_rule", "outcome": "tell_centre"}])
    page = staff_client.get(f"/staff/submissions/{sub['id']}").get_data(as_text=True)
    item = re.search(r'<li data-fired-rule="retired_rule">(.*?)</li>', page, re.S).group(1)
    assert "This rule is no longer in the rules." in item
    assert "<code data-rules-version>old</code> (the current rules are" in page


def test_it_flags_a_submission_the_current_rules_would_judge_differently(staff_client, make_submission, rules):
    record = judged(rules, fever="yes")
    record.update(outcome="tell_centre", rules_version="older-rules",
                  fired_rules=[{"rule": "pregnancy", "outcome": "tell_centre"}])
    sub = make_submission(**record)
    page = staff_client.get(f"/staff/submissions/{sub['id']}").get_data(as_text=True)
    flag = re.search(r'<div class="warning" role="note" data-rejudge="differs">(.*?)</div>', page, re.S).group(1)
    assert "The current rules would judge this differently" in flag
    assert 'data-staff-outcome="consult_professional"' in flag
    assert 'data-current-rule="fever"' in flag
    # the rule by its words in the staff member's language, the id small beside it
    page = staff_client.get(f"/staff/submissions/{sub['id']}?lang=ca").get_data(as_text=True)
    fever = re.search(r'<li data-current-rule="fever">(.*?)</li>', page, re.S).group(1)
    message = next(r for r in rules.rules if r.id == "fever").message.get("ca")
    assert message.replace("'", "&#39;") in fever and '<span class="rule-id">(regla <code>fever</code>)' in fever


def test_same_outcome_but_other_fired_rules_is_flagged_too(staff_client, make_submission, rules):
    record = judged(rules, fever="yes")
    record["fired_rules"] = [{"rule": "intense_pain", "outcome": "consult_professional"}]
    sub = make_submission(**record)
    assert 'data-rejudge="differs"' in staff_client.get(f"/staff/submissions/{sub['id']}").get_data(as_text=True)


def test_answers_the_current_rules_cannot_judge_are_flagged_not_crashed_on(staff_client, make_submission):
    sub = make_submission(answers={"fever": "no"})       # a red flag now required is missing
    response = staff_client.get(f"/staff/submissions/{sub['id']}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'data-rejudge="differs"' in page
    assert "The current rules need answers this client did not give" in page
    assert "<code>intense_pain</code>" in page


def test_a_service_no_longer_in_the_rules_is_flagged(staff_client, make_submission):
    sub = make_submission(service="hot-stones")
    page = staff_client.get(f"/staff/submissions/{sub['id']}").get_data(as_text=True)
    assert "The service “hot-stones” is no longer in the rules" in page


@pytest.mark.parametrize("url", ["/staff/submissions/999", "/staff/submissions/abc", "/staff/submissions/-1",
                                 "/staff/submissions/0", "/staff/submissions/99999999999999999999999"])
def test_an_unknown_submission_is_404(staff_client, url):
    assert staff_client.get(url).status_code == 404


@pytest.mark.parametrize("action,data", [("status", {"status": "reviewed", "decision": ""}),
                                         ("notes", {"body": "Called her"}),
                                         ("erase", {"confirm": "y"})])
def test_posts_to_an_unknown_submission_are_404(admin_client, action, data):
    assert admin_client.post(f"/staff/submissions/999/{action}", data=data).status_code == 404
    assert admin_client.post(f"/staff/submissions/{10**30}/{action}", data=data).status_code == 404


def test_viewing_a_submission_is_audited(staff_client, make_submission, db):
    sub = make_submission()
    staff_client.get(f"/staff/submissions/{sub['id']}")
    assert audit_rows(db, "view") == [("view", staff_client.staff["id"], sub["id"], sub["reference"], None)]


def test_setting_status_and_decision_saves_redirects_and_is_audited(staff_client, make_submission, db):
    sub = make_submission()
    response = staff_client.post(f"/staff/submissions/{sub['id']}/status",
                                 data={"status": "contacted", "decision": "adapt_session"})
    assert response.status_code == 302
    assert response.headers["Location"] == f"/staff/submissions/{sub['id']}?saved=status"
    row = current(db, sub["id"])
    assert (row["status"], row["decision"]) == ("contacted", "adapt_session")
    assert row["updated_at"]
    assert audit_rows(db, "status") == [("status", staff_client.staff["id"], sub["id"], sub["reference"],
                                         "status: new -> contacted; decision: - -> adapt_session")]
    page = staff_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "The status and decision were saved." in page
    assert '<option value="contacted" selected>Contacted</option>' in page
    assert '<option value="adapt_session" selected>Adapt the session</option>' in page


def test_every_decision_has_a_readable_label(staff_client, make_submission):
    sub = make_submission()
    page = staff_client.get(f"/staff/submissions/{sub['id']}").get_data(as_text=True)
    for value, label in [("booking_fine", "Booking is fine"), ("adapt_session", "Adapt the session"),
                         ("postpone", "Postpone the session"),
                         ("consult_professional", "Ask the client to see a health professional")]:
        assert f'<option value="{value}">{label}</option>' in page


@pytest.mark.parametrize("data,field", [({"status": "lost", "decision": ""}, "status"),
                                        ({"status": "reviewed", "decision": "refund"}, "decision"),
                                        ({"decision": "postpone"}, "status")])
def test_a_bad_status_or_decision_is_refused_at_the_field_and_changes_nothing(
        staff_client, make_submission, db, data, field):
    sub = make_submission()
    response = staff_client.post(f"/staff/submissions/{sub['id']}/status", data=data)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert f'<p class="error-message" id="{field}-error">' in page
    assert f'aria-invalid="true" aria-describedby="{field}-error"' in page
    assert current(db, sub["id"])["status"] == "new"
    assert audit_rows(db, "status") == []


def test_notes_are_added_listed_with_author_and_time_and_audited_without_their_text(
        staff_client, make_submission, db):
    sub = make_submission()
    response = staff_client.post(f"/staff/submissions/{sub['id']}/notes", data={"body": "  Prefers mornings  "})
    assert response.status_code == 302
    assert response.headers["Location"] == f"/staff/submissions/{sub['id']}?saved=note#notes"
    page = staff_client.get(response.headers["Location"]).get_data(as_text=True)
    note = re.search(r'<li data-note="\d+">(.*?)</li>', page, re.S).group(1)
    assert '<p class="note-body">Prefers mornings</p>' in note
    assert staff_client.staff["name"] in note
    assert "<time datetime=" in note
    rows = audit_rows(db, "note")
    assert rows == [("note", staff_client.staff["id"], sub["id"], sub["reference"], None)]
    assert "Prefers" not in str(audit_rows(db))


@pytest.mark.parametrize("body,message", [("", "Write the note before you add it."),
                                          ("   ", "Write the note before you add it."),
                                          ("x" * 5001, "This note is too long.")])
def test_an_empty_or_overlong_note_is_refused_at_the_field(staff_client, make_submission, db, body, message):
    sub = make_submission()
    response = staff_client.post(f"/staff/submissions/{sub['id']}/notes", data={"body": body})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert f'<p class="error-message" id="body-error"><span class="visually-hidden">Error:</span> {message}' in page
    assert db.execute("SELECT count(*) FROM notes").fetchone()[0] == 0


def test_an_admin_erases_a_submission_with_its_notes(admin_client, make_submission, db):
    sub = make_submission(name="Erase Me")
    admin_client.post(f"/staff/submissions/{sub['id']}/notes", data={"body": "note"})
    response = admin_client.post(f"/staff/submissions/{sub['id']}/erase", data={"confirm": "y"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/staff/?notice=erased"
    assert current(db, sub["id"]) is None
    assert db.execute("SELECT count(*) FROM notes").fetchone()[0] == 0
    assert admin_client.get(f"/staff/submissions/{sub['id']}").status_code == 404
    assert "The shared screening was erased" in admin_client.get("/staff/?notice=erased").get_data(as_text=True)
    assert [r[3] for r in audit_rows(db, "erase")] == [sub["reference"]]


def test_erasing_needs_the_confirmation_box(admin_client, make_submission, db):
    sub = make_submission()
    response = admin_client.post(f"/staff/submissions/{sub['id']}/erase", data={})
    assert response.status_code == 422
    assert '<p class="error-message" id="confirm-error">' in response.get_data(as_text=True)
    assert current(db, sub["id"]) is not None


def test_staff_who_are_not_admins_cannot_erase_and_are_not_offered_to(staff_client, make_submission, db):
    sub = make_submission()
    assert "Erase this submission" not in staff_client.get(f"/staff/submissions/{sub['id']}").get_data(as_text=True)
    assert staff_client.post(f"/staff/submissions/{sub['id']}/erase", data={"confirm": "y"}).status_code == 403
    assert current(db, sub["id"]) is not None


@pytest.mark.parametrize("action,data", [("status", {"status": "closed", "decision": "postpone"}),
                                         ("notes", {"body": "hello"}), ("erase", {"confirm": "y"})])
def test_strangers_cannot_post_anything(client, make_submission, db, action, data):
    sub = make_submission()
    response = client.post(f"/staff/submissions/{sub['id']}/{action}", data=data)
    if action == "notes":
        # the typed note comes back in the login form (tests/test_staff_session_end.py), nothing else
        assert response.status_code == 401 and 'name="password"' in response.text
        assert sub["reference"] not in response.text and sub["name"] not in response.text
    else:
        assert response.status_code == 302 and response.headers["Location"].startswith("/staff/login")
    after = current(db, sub["id"])
    assert after is not None and after["status"] == "new"
    assert db.execute("SELECT count(*) FROM notes").fetchone()[0] == 0


@pytest.fixture
def csrf_admin(csrf_app, make_staff):
    """A logged-in admin on the app with CSRF protection on."""
    return logged_in_client(csrf_app, make_staff, "admin")


@pytest.mark.parametrize("action,data", [("status", {"status": "closed", "decision": "postpone"}),
                                         ("notes", {"body": "hello"}), ("erase", {"confirm": "y"})])
@pytest.mark.parametrize("token", [None, "forged-token"])
def test_a_post_without_a_valid_csrf_token_is_refused_and_changes_nothing(
        csrf_admin, make_submission, db, action, data, token):
    sub = make_submission()
    if token:
        data = {**data, "csrf_token": token}
    response = csrf_admin.post(f"/staff/submissions/{sub['id']}/{action}", data=data)
    assert response.status_code == 400
    after = current(db, sub["id"])
    assert after is not None and after["status"] == "new"
    assert db.execute("SELECT count(*) FROM notes").fetchone()[0] == 0
    assert audit_rows(db, action) == []


def test_the_forms_carry_a_token_that_works(csrf_admin, make_submission, db):
    sub = make_submission()
    page = csrf_admin.get(f"/staff/submissions/{sub['id']}").get_data(as_text=True)
    token = csrf_token_from(page)
    assert page.count(f'value="{token}"') >= 3        # status, note and erase forms
    response = csrf_admin.post(f"/staff/submissions/{sub['id']}/status",
                               data={"status": "reviewed", "decision": "booking_fine", "csrf_token": token})
    assert response.status_code == 302
    assert current(db, sub["id"])["status"] == "reviewed"


def summary_of(page):
    """The summary section at the top of the detail page."""
    return re.search(r'<section class="staff-summary".*?</section>', page, re.S).group(0)


def test_it_leads_with_the_outcome_and_the_answers_that_raised_it_before_the_full_answers(
        staff_client, make_submission, rules):
    sub = make_submission(**judged(rules, fever="yes", recent_injury="not_sure"))
    page = staff_client.get(f"/staff/submissions/{sub['id']}").get_data(as_text=True)
    summary = summary_of(page)
    assert page.index("staff-summary") < page.index('id="answers-title"')
    assert 'data-staff-outcome="consult_professional"' in summary
    fever = re.search(r'<li data-raised-by="fever">(.*?)</li>', summary, re.S).group(1)
    assert "Do you have a fever" in fever and "<strong>Yes</strong>" in fever
    injury = re.search(r'<li data-raised-by="recent_injury">(.*?)</li>', summary, re.S).group(1)
    assert "<strong>Not sure</strong>" in injury
    # questions answered "no" raised nothing and are not in the summary
    assert 'data-raised-by="intense_pain"' not in summary
    # status and notes come right after the summary (beside it on a wide screen), before the answers
    assert page.index('id="status-title"') < page.index('id="answers-title"')
    assert page.index('id="notes-title"') < page.index('id="answers-title"')


@pytest.mark.parametrize("lang", ["ca", "es"])
def test_rules_are_named_in_the_staff_members_language_with_the_id_small_beside(
        staff_client, make_submission, rules, lang):
    sub = make_submission(**judged(rules, fever="yes"), locale="en")
    page = staff_client.get(f"/staff/submissions/{sub['id']}?lang={lang}").get_data(as_text=True)
    fever_rule = next(r for r in rules.rules if r.id == "fever")
    item = re.search(r'<li data-fired-rule="fever">(.*?)<ul', summary_of(page), re.S).group(1)
    assert fever_rule.message.get(lang).replace("'", "&#39;") in item
    assert fever_rule.message.get("en") not in item
    assert '<span class="rule-id">(' in item and "<code>fever</code>" in item


@pytest.mark.parametrize(("contact", "href"), [
    ("nuria@example.org", "mailto:nuria@example.org"),
    ("+34 600 00 00 00", "tel:+34600000000"),
    ("93 123 45 67", "tel:931234567"),
    ("(+34) 600-000-000", "tel:+34600000000"),
    ("600 000", "tel:600000"),
    ("12345", None),
    ("+34 600 000 000 ext. 2", None),
    ("call me after 6", None),
    ("javascript:alert(1)", None),
])
def test_the_clients_contact_is_a_link_to_write_or_call(staff_client, make_submission, contact, href):
    sub = make_submission(contact=contact)
    page = staff_client.get(f"/staff/submissions/{sub['id']}").get_data(as_text=True)
    cell = re.search(r"<dd data-contact>(.*?)</dd>", page, re.S).group(1)
    if href is None:
        assert "<a" not in cell
    else:
        assert f'<a href="{href}">' in cell


@pytest.mark.parametrize("lang", ["en", "ca", "es"])
def test_the_staff_pages_call_them_shared_screenings_not_submissions(admin_client, make_submission, rules, lang):
    sub = make_submission(**judged(rules, fever="yes"))
    words = {"en": r"submission", "ca": r"enviament", "es": r"env[ií]o"}[lang]
    for url, params in ((f"/staff/submissions/{sub['id']}", {}), ("/staff/", {}), ("/staff/", {"outcome": "x"}),
                        ("/staff/audit", {}), ("/staff/rules", {})):
        html = admin_client.get(url, query_string={"lang": lang, **params}).get_data(as_text=True)
        text = re.sub(r"<[^>]+>", " ", re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S))
        assert not re.search(words, text, re.I), (url, re.search(words, text, re.I))


def test_the_answer_that_raised_a_rule_reads_as_the_client_saw_the_question(staff_client, make_submission, rules):
    sub = make_submission(**judged(rules, service="back-massage", skin_problem_in_area="yes"))
    page = staff_client.get(f"/staff/submissions/{sub['id']}").text
    raised = re.search(r'<li data-raised-by="skin_problem_in_area">(.*?)</li>', page, re.S).group(1)
    service = rules.service("back-massage")
    assert engine.question_text(rules, rules.questions_by_id["skin_problem_in_area"], service, "en") in raised
    assert "{areas}" not in page
