"""The CSV export: the dashboard's filter as a spreadsheet, safe to open, streamed, audited."""
import csv
import io
import json
from datetime import datetime

import pytest
from conftest import CENTRE

from screening import db as dbmod
from screening import review


def read_csv(response):
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def test_it_is_a_csv_attachment_with_a_header_row(staff_client, make_submission, rules):
    make_submission()
    response = staff_client.get("/staff/export.csv")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert response.headers["Cache-Control"] == "no-store"
    header = read_csv(response)[0]
    assert header[:10] == ["reference", "created_at", "service", "outcome", "status", "decision", "name",
                           "contact", "fired_rules", "rules_version"]
    assert header[10:] == [q.id for q in rules.questions]


def test_each_submission_is_one_row_with_its_answers(staff_client, make_submission):
    sub = make_submission(
        service="back-massage", outcome="consult_professional", name="Núria Camps", contact="nuria@example.org",
        answers={"fever": "yes", "tension_areas": ["thoracic", "neck"], "notes": "Line one\nline, two \"quoted\""},
        fired_rules=[{"rule": "fever", "outcome": "consult_professional"}], rules_version="v1")
    staff_client.post(f"/staff/submissions/{sub['id']}/status", data={"status": "closed", "decision": "postpone"})
    header, row = read_csv(staff_client.get("/staff/export.csv"))
    cells = dict(zip(header, row))
    assert cells | {"created_at": None} == cells | {
        "reference": sub["reference"], "service": "back-massage", "outcome": "consult_professional",
        "status": "closed", "decision": "postpone", "name": "Núria Camps", "contact": "nuria@example.org",
        "fired_rules": "fever", "rules_version": "v1", "fever": "yes", "tension_areas": "thoracic;neck",
        "notes": "Line one\nline, two \"quoted\"", "intense_pain": "", "created_at": None}
    # in the centre's time zone (Europe/Madrid), with its offset: the same moment as stored
    assert cells["created_at"] == review.local_time(sub["created_at"], "Europe/Madrid").isoformat(timespec="seconds")
    assert cells["created_at"][-6:] in ("+01:00", "+02:00")
    assert datetime.fromisoformat(cells["created_at"]) == datetime.fromisoformat(sub["created_at"]).replace(
        microsecond=0)


@pytest.mark.parametrize("dangerous", ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\rcmd"])
def test_cells_that_a_spreadsheet_would_run_as_a_formula_are_neutralised(staff_client, make_submission, dangerous):
    make_submission(name=dangerous, contact=dangerous, answers={"notes": dangerous})
    header, row = read_csv(staff_client.get("/staff/export.csv"))
    cells = dict(zip(header, row))
    for column in ("name", "contact", "notes"):
        assert cells[column] == "'" + dangerous


def test_a_phone_number_starting_with_plus_is_kept_readable(staff_client, make_submission):
    make_submission(contact="+34 600 000 000")
    header, row = read_csv(staff_client.get("/staff/export.csv"))
    assert dict(zip(header, row))["contact"] == "'+34 600 000 000"


def test_it_exports_only_what_the_filter_shows_newest_first(staff_client, make_submission):
    subs = [make_submission(outcome="tell_centre" if i % 2 else "proceed", name=f"Client {i}") for i in range(9)]
    make_submission(outcome="tell_centre", name="Someone Else")
    rows = read_csv(staff_client.get("/staff/export.csv?outcome=tell_centre&q=client"))[1:]
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
    assert json.loads(detail) == {"status": "new", "from": "2020-01-01"}
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
        conn = dbmod.connect(app.config["DATABASE"])
        opened.append(conn)
        return conn

    rows = review.export_rows(connect, review.Filters(), ["fever"], page_size=2, centre=CENTRE)
    first = next(rows)
    assert len(first) == len(review.EXPORT_COLUMNS) + 1
    # between rows no transaction is held open on the export's connection
    assert not opened[0].conn.in_transaction
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
