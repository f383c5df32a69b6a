"""Control and invisible characters in what people type, and CSV cells a spreadsheet would run
(issue 6, item 9): refused at the field, never stored, never written raw into the CSV."""
import csv
import io
import re

import pytest
from conftest import all_no

from screening.core.characters import forbidden_characters

# NUL, BEL, ESC, DEL, a C1 control (NEL), the right-to-left override, its isolate, a zero-width
# space, the byte-order mark, a line separator: each can hide or reorder what staff read
HIDDEN = ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\u202e", "\u2067", "\u200b", "\ufeff", "\u2028"]
MESSAGE = "This has invisible or control characters, often brought in by pasting."


def shared(**overrides):
    return all_no(**{"share": "yes", "name": "Ana Client", "contact": "ana@example.org", "consent": "yes",
                     "nonce": "c" * 24, **overrides})


def count(db, table="submissions"):
    return db.execute(f"select count(*) from {table}").fetchone()[0]


@pytest.mark.parametrize("char", HIDDEN)
@pytest.mark.parametrize("field,value", [("name", "Ana{}Client"), ("contact", "ana{}@example.org")])
def test_the_sharing_form_refuses_them_in_name_and_contact_at_the_field(client, db, field, value, char):
    response = client.post("/screening/back-massage", data=shared(**{field: value.format(char)}, notes="keep me"))
    assert response.status_code == 422
    html = response.text
    assert re.search(rf'<p class="error-message" id="{field}-error">.*{re.escape(MESSAGE)}', html)
    assert re.search(rf'<input[^>]*id="{field}"[^>]*aria-invalid="true"', html, re.S)
    assert "keep me" in html and re.search(r'<input[^>]*id="fever-no"[^>]*checked', html)
    assert count(db) == 0


@pytest.mark.parametrize("char", HIDDEN[:-1])     # a line separator is a line break in a note
def test_the_clients_notes_refuse_them_too_on_the_form_and_the_api(client, db, char):
    response = client.post("/screening/back-massage", data=shared(notes=f"left{char}side"))
    assert response.status_code == 422
    assert re.search(r'<p class="error-message" id="notes-error">.*invisible or control characters', response.text)
    assert count(db) == 0
    api = client.post("/api/v1/evaluate", json={"service": "back-massage",
                                                "answers": {**all_no(), "notes": f"left{char}side"}})
    assert api.status_code == 422
    assert "invisible or control characters" in api.json["fields"]["notes"]


def test_a_lone_surrogate_sent_as_json_is_refused_not_a_500(client):
    body = '{"service": "back-massage", "answers": {"notes": "a\\ud800b", "fever": "no"}}'
    response = client.post("/api/v1/evaluate", data=body, content_type="application/json")
    assert response.status_code == 422
    assert "notes" in response.json["fields"]


def test_notes_keep_their_line_breaks_and_tabs_and_names_keep_joiners(client, db):
    notes = "left side\r\n\tmore than the right\nsince May"
    response = client.post("/screening/back-massage",
                           data=shared(notes=notes, name="Mehr\u200cdad Núñez 👩\u200d⚕️"))
    assert response.status_code == 200
    assert count(db) == 1


@pytest.mark.parametrize("char", ["\x00", "\x07", "\u202e", "\u200b"])
def test_a_staff_note_refuses_them_at_the_field(staff_client, make_submission, db, char):
    sub = make_submission()
    response = staff_client.post(f"/staff/submissions/{sub['id']}/notes", data={"body": f"call{char} back"})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert ('<p class="error-message" id="body-error"><span class="visually-hidden">Error:</span> '
            'This note has invisible or control characters') in page
    assert f"call{char} back" in page           # kept to correct
    assert count(db, "notes") == 0


def test_a_staff_note_keeps_its_line_breaks_and_tabs(staff_client, make_submission, db):
    sub = make_submission()
    response = staff_client.post(f"/staff/submissions/{sub['id']}/notes", data={"body": "line one\r\n\tline two"})
    assert response.status_code == 302
    assert count(db, "notes") == 1


@pytest.mark.parametrize("text,multiline,expected", [
    ("plain text, accents: àéü ñ ç", False, False), ("a\nb", False, True), ("a\nb\tc\r\n", True, False),
    ("a\ud800b", True, True), ("a\U000e0001b", True, True), ("\u200c\u200d", False, False),
])
def test_which_characters_are_forbidden(text, multiline, expected):
    assert forbidden_characters(text, multiline=multiline) is expected


# --- the CSV ---------------------------------------------------------------------------------------

def read_csv(response):
    """The export's rows (UTF-8 after its BOM; an English staff member's export splits on ',')."""
    return list(csv.reader(io.StringIO(response.get_data().decode("utf-8-sig"))))


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠", "|", "%", "｜", "％"])
def test_every_cell_starting_as_a_formula_is_neutralised(staff_client, make_submission, rules, start):
    # stored directly: rows from before this check, or typed where no form checks them
    dangerous = start + "cmd|' /C calc'!A0"
    make_submission(name=dangerous, contact=dangerous, answers={"notes": dangerous})
    header, row = read_csv(staff_client.get("/staff/export.csv"))
    cells = dict(zip(header, row))
    for column in ("Name", "E-mail or phone", rules.questions_by_id["notes"].text.get("en")):
        assert cells[column] == "'" + dangerous
