"""The CSV export: the dashboard's filter as a spreadsheet, safe to open, streamed, audited."""
import csv
import io
import json
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from conftest import CENTRE, database_of, search_url

from screening.core import reading
from screening.store import db as dbmod
from screening.store import review


def read_csv(response, delimiter=","):
    """The rows of an export as a spreadsheet reads them: UTF-8 after its BOM, split on `delimiter`."""
    data = response.get_data()
    assert data.startswith("\ufeff".encode())
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig")), delimiter=delimiter))


def by_heading(response, delimiter=","):
    """Each exported row as {heading: cell}."""
    header, *rows = read_csv(response, delimiter)
    return [dict(zip(header, row, strict=True)) for row in rows]


def test_it_is_a_dated_csv_attachment_in_utf8_with_a_bom(staff_client, make_submission, rules, monkeypatch):
    make_submission()
    response = staff_client.get("/staff/export.csv")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    today = datetime.now(ZoneInfo("Europe/Madrid")).date().isoformat()
    assert response.headers["Content-Disposition"] == f'attachment; filename="shared-screenings-{today}.csv"'
    assert response.headers["Cache-Control"] == "no-store"
    header = read_csv(response)[0]
    assert header[:15] == ["Reference", "Received (Europe/Madrid)", "Service (code)", "Service", "Outcome (code)",
                           "Outcome", "Status (code)", "Status", "Decision (code)", "Decision", "Name",
                           "E-mail or phone", "Rules (ids)", "Reasons", "Rules version"]
    assert header[15:] == [q.text.get("en").replace("{areas}", "the areas the massage works") for q in rules.questions]


@pytest.mark.parametrize("lang, heading", [
    ("en", "Do you have a skin problem on the areas the massage works?"),
    ("ca", "Tens algun problema a la pell en alguna d'aquestes zones: les que treballa el massatge?"),
    ("es", "¿Tienes algún problema en la piel de alguna de estas zonas: las que trabaja el masaje?"),
])
def test_the_skin_question_heading_fits_every_service_with_no_placeholder(staff_client, make_submission, lang,
                                                                          heading):
    make_submission()
    header = read_csv(staff_client.get(f"/staff/export.csv?lang={lang}&sep=comma"))[0]
    assert heading in header
    assert not [cell for cell in header if "{" in cell or "}" in cell]


def test_the_file_is_named_for_the_day_it_is_downloaded():
    assert reading.export_file_name(date(2026, 12, 1)) == "shared-screenings-2026-12-01.csv"


def stored_at(db, sub, moment):
    """Give a stored submission another time of arrival (ISO, UTC)."""
    db.execute("UPDATE submissions SET created_at = ? WHERE id = ?", [moment, sub["id"]])
    db.conn.commit()


def test_each_shared_screening_is_one_row_with_words_beside_its_codes(staff_client, make_submission, rules, db):
    sub = make_submission(
        service="back-massage", outcome="consult_professional", name="Núria Camps", contact="nuria@example.org",
        answers={"fever": "yes", "tension_areas": ["thoracic", "neck"], "notes": "Line one\nline, two \"quoted\""},
        fired_rules=[{"rule": "fever", "outcome": "consult_professional"}], rules_version="v1")
    stored_at(db, sub, "2026-07-01T21:30:05.123456+00:00")
    staff_client.post(f"/staff/submissions/{sub['id']}/status", data={"status": "closed", "decision": "postpone"})
    [cells] = by_heading(staff_client.get("/staff/export.csv"))
    fever = next(r for r in rules.rules if r.id == "fever")
    questions = {q.id: q.text.get("en") for q in rules.questions}
    assert cells | {
        "Reference": sub["reference"], "Received (Europe/Madrid)": "2026-07-01 23:30:05",   # summer time, +2
        "Service (code)": "back-massage", "Service": rules.service("back-massage").name.get("en"),
        "Outcome (code)": "consult_professional", "Outcome": rules.outcomes["consult_professional"]["label"].get("en"),
        "Status (code)": "closed", "Status": "Closed", "Decision (code)": "postpone",
        "Decision": "Postpone the session", "Name": "Núria Camps", "E-mail or phone": "nuria@example.org",
        "Rules (ids)": "fever", "Reasons": fever.message.get("en"), "Rules version": "v1",
        questions["fever"]: "Yes", questions["notes"]: "Line one\nline, two \"quoted\"",
        questions["intense_pain"]: ""} == cells
    areas = cells[questions["tension_areas"]].split("; ")
    labels = {o.id: o.label.get("en") for o in rules.questions_by_id["tension_areas"].options}
    assert areas == [labels["thoracic"], labels["neck"]]


@pytest.mark.parametrize("lang", ["ca", "es"])
def test_a_catalan_or_spanish_export_is_in_their_words_and_split_on_semicolons(staff_client, make_submission,
                                                                               rules, db, lang):
    sub = make_submission(outcome="tell_centre", name="Pau; Roca", answers={"fever": "not_sure"})
    stored_at(db, sub, "2026-01-15T09:05:00.000000+00:00")
    response = staff_client.get("/staff/export.csv", headers={"Accept-Language": lang})
    text = response.get_data().decode("utf-8-sig")
    assert text.splitlines()[0].count(";") >= 14 and "," not in text.splitlines()[0].replace(", ", "")
    [cells] = by_heading(response, ";")
    received = {"ca": "Rebut (Europe/Madrid)", "es": "Recibido (Europe/Madrid)"}[lang]
    assert cells[received] == "2026-01-15 10:05:00"            # winter time, +1
    assert cells[{"ca": "Resultat", "es": "Resultado"}[lang]] == rules.outcomes["tell_centre"]["label"].get(lang)
    assert cells[{"ca": "Estat", "es": "Estado"}[lang]] == {"ca": "Nou", "es": "Nuevo"}[lang]
    assert cells[rules.questions_by_id["fever"].text.get(lang)] == rules.text("answer_not_sure", lang)
    assert cells[{"ca": "Nom", "es": "Nombre"}[lang]] == "Pau; Roca"     # quoted, not split


@pytest.mark.parametrize(("query", "headers", "delimiter"), [
    ({"sep": "comma"}, {"Accept-Language": "ca"}, ","),
    ({"sep": "semicolon"}, {}, ";"),
    ({}, {}, ","),
])
def test_the_separator_can_be_chosen_over_the_languages_default(staff_client, make_submission, query, headers,
                                                                delimiter):
    make_submission(name="Ana, Client")
    response = staff_client.get("/staff/export.csv", query_string=query, headers=headers)
    rows = read_csv(response, delimiter)
    assert len(rows[0]) > 15 and "Ana, Client" in rows[1]


def test_the_dashboard_offers_the_separator_of_the_staff_members_language(staff_client, make_submission):
    make_submission()
    for lang, chosen in (("ca", "semicolon"), ("es", "semicolon"), ("en", "comma")):
        html = staff_client.get(f"/staff/?lang={lang}&status=new").get_data(as_text=True)
        form = html[html.index('class="export-form"'):]
        form = form[:form.index("</form>")]
        assert f'<option value="{chosen}" selected>' in form
        assert '<input type="hidden" name="status" value="new">' in form


def test_an_unknown_separator_is_refused_at_its_field_and_not_exported(staff_client, make_submission, db):
    make_submission()
    response = staff_client.get("/staff/export.csv?sep=tab")
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert '<p class="error-message" id="sep-error">' in html and 'href="#sep"' in html
    assert db.execute("SELECT count(*) FROM audit_log WHERE action = 'export'").fetchone()[0] == 0


@pytest.mark.parametrize("dangerous", ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\rcmd",
                                       "\uff1dSUM(A1)", "\uff0b1", "\uff0d1", "\uff20SUM(A1)", "|calc", "%APPDATA%",
                                       "\uff5ccalc", "\uff05x"])
def test_cells_that_a_spreadsheet_would_run_as_a_formula_are_neutralised(staff_client, make_submission, rules,
                                                                         dangerous):
    make_submission(name=dangerous, contact=dangerous, answers={"notes": dangerous})
    for delimiter, lang in ((",", "en"), (";", "es")):
        [cells] = by_heading(staff_client.get(f"/staff/export.csv?lang={lang}"), delimiter)
        names = {"en": ("Name", "E-mail or phone"), "es": ("Nombre", "Correo o teléfono")}[lang]
        for heading in (*names, rules.questions_by_id["notes"].text.get(lang)):
            assert cells[heading] == "'" + dangerous


def test_a_phone_number_starting_with_plus_is_kept_readable(staff_client, make_submission):
    make_submission(contact="+34 600 000 000")
    [cells] = by_heading(staff_client.get("/staff/export.csv"))
    assert cells["E-mail or phone"] == "'+34 600 000 000"


def test_it_exports_only_what_the_filter_shows_newest_first(staff_client, make_submission):
    subs = [make_submission(outcome="tell_centre" if i % 2 else "proceed", name=f"Client {i}") for i in range(9)]
    make_submission(outcome="tell_centre", name="Someone Else")
    rows = read_csv(staff_client.get(search_url(staff_client, "client", outcome="tell_centre")
                                   .replace("/staff/", "/staff/export.csv", 1)))[1:]
    assert [r[0] for r in rows] == [s["reference"] for s in reversed(subs) if s["outcome"] == "tell_centre"]


def test_a_bad_filter_is_refused_and_not_exported(staff_client, make_submission, db):
    make_submission()
    response = staff_client.get("/staff/export.csv?outcome=everything")
    assert response.status_code == 400
    assert "Choose one of the outcomes in the list." in response.get_data(as_text=True)
    assert db.execute("SELECT count(*) FROM audit_log WHERE action = 'export'").fetchone()[0] == 0


def test_the_export_is_audited_once_with_the_filter_and_no_answers(staff_client, make_submission, db):
    for _ in range(3):
        make_submission(answers={"notes": "CANARY-ANSWER"})
    staff_client.get("/staff/export.csv?status=new&from=2020-01-01")
    rows = db.execute("SELECT action, staff_id, detail FROM audit_log WHERE action = 'export'").fetchall()
    assert len(rows) == 1
    action, staff_id, detail = rows[0]
    assert staff_id == staff_client.staff["id"]
    assert json.loads(detail) == {"filters": {"status": "new", "from": "2020-01-01"}, "count": 3}
    assert "CANARY" not in str(db.execute("SELECT * FROM audit_log").fetchall())


def test_a_long_export_comes_in_pages_with_nothing_lost_or_repeated(staff_client, make_submission, db,
                                                                    monkeypatch):
    monkeypatch.setattr(review, "EXPORT_PAGE_SIZE", 4)
    subs = [make_submission() for _ in range(11)]
    # two stored in the same microsecond, across a page boundary
    for sub in subs[6:8]:
        db.execute("UPDATE submissions SET created_at = ? WHERE id = ?", [subs[6]["created_at"], sub["id"]])
    db.conn.commit()
    rows = read_csv(staff_client.get("/staff/export.csv"))[1:]
    assert sorted(r[0] for r in rows) == sorted(s["reference"] for s in subs)
    assert len(rows) == 11


def test_each_page_is_its_own_read_on_a_connection_closed_at_the_end(app, make_submission):
    for _ in range(5):
        make_submission()
    opened = []

    def connect():
        conn = dbmod.connect(database_of(app))
        opened.append(conn)
        return conn

    with app.test_request_context():
        words = reading.ExportWords(app.extensions["screening.rules"], "en", "UTC", {}, {}, {})
    rows = review.export_rows(connect, review.Filters(), words, page_size=2, centre=CENTRE)
    first = next(rows)
    assert len(first) == len(reading.EXPORT_COLUMNS) + len(words.ruleset.questions)
    # between rows no transaction is held open on the export's connection
    assert not opened[0].in_transaction()
    assert len(list(rows)) == 4
    assert len(opened) == 1
    with pytest.raises(Exception):
        opened[0].execute("SELECT 1")     # closed


def test_strangers_get_no_csv(client, make_submission):
    make_submission(name="Hidden Person")
    response = client.get("/staff/export.csv")
    assert response.status_code in (302, 401)
    assert b"Hidden Person" not in response.data


@pytest.mark.parametrize("params", [{"to": "9999-12-31"}, {"from": "2026-W49-1"}, {"from": "9999-12-31"}])
def test_a_date_that_cannot_be_used_is_a_400_and_not_audited_as_an_export(staff_client, make_submission, db, params):
    make_submission()
    response = staff_client.get("/staff/export.csv", query_string=params)
    assert response.status_code == 400
    assert "Enter the date as year-month-day" in response.get_data(as_text=True)
    assert db.execute("SELECT count(*) FROM audit_log WHERE action = 'export'").fetchone()[0] == 0
