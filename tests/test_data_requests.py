"""A person's request, handled by staff (issue 16, item 2): from a screening, every screening of
the same person at the centre; the request recorded (never who asked); then an export (CSV and a
printable page) or the erasure of them all at once. Runs on both engines."""
import csv
import html
import io
import json
import re
from datetime import date, datetime, timedelta
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
from conftest import CENTRE, RED_FLAGS, STAFF_PASSWORD, add_centre, csrf_token_from, database_of, login

from screening.store import accounts, retention, review
from screening.store import db as dbmod
from screening.store import requests as store

OTHER = "centre-b"
NAME = "Núria Ferrer-Puig"


@pytest.fixture
def app(make_app, rules_copy):
    """Two centres: the shipped one (whose staff the tests log in as) and centre-b."""
    add_centre(rules_copy, OTHER, name="Centre B")
    return make_app(RULES_DIR=str(rules_copy))


def shared(make_submission, contact, *, name=NAME, centre=CENTRE, **overrides):
    return make_submission(centre=centre, name=name, contact=contact, **overrides)


def person_refs(client, number) -> set[str]:
    """The references listed on the person page of screening `number`."""
    response = client.get(f"/staff/submissions/{number}/person")
    assert response.status_code == 200
    return set(listed_refs(response.get_data(as_text=True)))


def listed_refs(page: str) -> list[str]:
    """The references of the screenings listed on a person page, in order."""
    return re.findall(r'data-person-screening="([A-Z0-9-]+)"', page)


def csv_link(page: str) -> str:
    """The printable page's link to the CSV file."""
    return html.unescape(re.search(r'href="([^"]+)" data-request-csv', page).group(1))


def form(numbers, **fields):
    data = {"screening": [str(n) for n in numbers], "kind": "access", "channel": "phone",
            "received_on": date.today().isoformat(), "asked_by": "person"}
    data.update(fields)
    return {k: v for k, v in data.items() if v is not None}


def rows(db, table):
    return [tuple(row) for row in db.execute(f"SELECT * FROM {table}").fetchall()]  # noqa: S608


# --- the list ------------------------------------------------------------------------------------------

def test_the_list_finds_the_same_e_mail_in_any_case_and_accents_and_nothing_else(staff_client, make_submission):
    ana = shared(make_submission, "nuria.ferrer@example.org")
    again = shared(make_submission, "NÚRIA.Ferrer@Example.ORG", name="Nuria F.")
    other = shared(make_submission, "nuria.ferrer2@example.org")
    elsewhere = shared(make_submission, "nuria.ferrer@example.org", centre=OTHER)
    found = person_refs(staff_client, ana["number"])
    assert found == {ana["reference"], again["reference"]}
    assert other["reference"] not in found and elsewhere["reference"] not in found
    assert person_refs(staff_client, again["number"]) == found


def test_the_list_finds_the_same_phone_however_it_is_written(staff_client, make_submission):
    first = shared(make_submission, "612 34 56 78")
    dotted = shared(make_submission, "612.34.56.78")
    dashed = shared(make_submission, "612-345-678")
    another = shared(make_submission, "612 34 56 79")
    shared(make_submission, "612 34 56 78", centre=OTHER)
    assert person_refs(staff_client, dotted["number"]) == {first["reference"], dotted["reference"], dashed["reference"]}
    assert person_refs(staff_client, another["number"]) == {another["reference"]}


def test_a_phone_list_says_what_it_cannot_match(staff_client, make_submission):
    by_phone = shared(make_submission, "612 34 56 78")
    by_mail = shared(make_submission, "ana@example.org")
    def page(sub):
        return staff_client.get(f"/staff/submissions/{sub['number']}/person").get_data(as_text=True)

    assert "data-phone-hint" in page(by_phone) and "data-phone-hint" not in page(by_mail)


def test_a_contact_that_is_neither_matches_only_itself(staff_client, make_submission):
    one = shared(make_submission, "ask at the desk")
    shared(make_submission, "ask at the desk")
    assert person_refs(staff_client, one["number"]) == {one["reference"]}


def test_every_screening_is_listed_ticked_with_its_words(staff_client, make_submission):
    sub = shared(make_submission, "ana@example.org", outcome="consult_professional")
    page = staff_client.get(f"/staff/submissions/{sub['number']}/person").get_data(as_text=True)
    assert f'name="screening" value="{sub["number"]}" checked' in page
    assert "Decontracting back massage" in page and "data-staff-outcome=\"consult_professional\"" in page
    assert "Status: New" in page
    today = datetime.now(ZoneInfo("Europe/Madrid")).date().isoformat()       # the centre's day
    assert f'id="received_on" name="received_on" value="{today}" max="{today}"' in page


def test_the_submission_page_links_to_the_person_for_any_staff_member(staff_client, make_submission):
    sub = shared(make_submission, "ana@example.org")
    page = staff_client.get(f"/staff/submissions/{sub['number']}").get_data(as_text=True)
    assert f'href="/staff/submissions/{sub["number"]}/person"' in page


def test_another_centres_number_is_a_404_like_a_missing_one(staff_client, make_submission):
    shared(make_submission, "ana@example.org")
    for _ in range(3):
        shared(make_submission, "ana@example.org", centre=OTHER)
    assert staff_client.get("/staff/submissions/3/person").status_code == 404     # centre B's number 3
    assert staff_client.get("/staff/submissions/99/person").status_code == 404
    assert staff_client.post("/staff/submissions/3/person", data=form([3])).status_code == 404


def test_the_pages_are_not_stored_by_browsers(staff_client, make_submission):
    sub = shared(make_submission, "ana@example.org")
    page = staff_client.get(f"/staff/submissions/{sub['number']}/person")
    assert page.headers["Cache-Control"] == "no-store"
    done = staff_client.post(f"/staff/submissions/{sub['number']}/person", data=form([sub["number"]]))
    printed = staff_client.get(done.headers["Location"])
    assert printed.status_code == 200 and printed.headers["Cache-Control"] == "no-store"
    csv_link = staff_client.get(done.headers["Location"].replace("/print", "/export.csv"))
    assert csv_link.status_code == 200 and csv_link.headers["Cache-Control"] == "no-store"


def test_a_stranger_is_sent_to_the_login(client, make_submission):
    sub = shared(make_submission, "ana@example.org")
    response = client.get(f"/staff/submissions/{sub['number']}/person")
    assert response.status_code in (302, 401)


# --- access -----------------------------------------------------------------------------------------

def test_staff_record_an_access_request_and_export_answers_in_words_and_notes(staff_client, make_submission, db):
    answers = {f: "no" for f in RED_FLAGS} | {"pregnant": "no", "intense_pain": "yes", "tension_areas": ["neck"],
                                              "notes": "=HYPERLINK(\"http://x\")"}
    first = shared(make_submission, "ana@example.org", answers=answers, outcome="consult_professional",
                   fired_rules=[{"rule": "intense_pain", "outcome": "consult_professional"}])
    second = shared(make_submission, "ANA@example.org")
    review.add_note(db, first["id"], "Asked to call back =SUM(A1)", staff_client.staff, centre=CENTRE)
    review.set_status(db, first["id"], "contacted", "postpone", staff_client.staff, centre=CENTRE)
    response = staff_client.post(f"/staff/submissions/{first['number']}/person",
                                 data=form([first["number"], second["number"]], channel="email",
                                           asked_by="on_behalf"))
    assert response.status_code == 302 and "/print" in response.headers["Location"]

    page = staff_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "The request is recorded" in page
    assert first["reference"] in page and second["reference"] in page
    assert "Asked to call back =SUM(A1)" in page
    assert 'data-answer="intense_pain">Yes' in page and "Neck and base of the skull" in page
    assert "Intense pain needs a health professional" in page and "Consult a health professional" in page
    assert "Contacted" in page and "Postpone the session" in page

    link = csv_link(page)
    download = staff_client.get(link)
    assert download.status_code == 200 and "attachment" in download.headers["Content-Disposition"]
    table = list(csv.reader(io.StringIO(download.get_data(as_text=True).lstrip("\ufeff"))))
    header, cells = table[0], {row[0]: row for row in table[1:]}
    assert header[-1] == "Notes" and set(cells) == {first["reference"], second["reference"]}
    row = cells[first["reference"]]
    assert row[-1].endswith(": Asked to call back =SUM(A1)") and cells[second["reference"]][-1] == ""
    assert "Yes" in row and "Neck and base of the skull" in row     # answers in words, not codes
    assert "'=HYPERLINK(\"http://x\")" in row                      # neutralised as the dashboard export does
    assert "Consult a health professional" in row                   # the outcome
    assert "Contacted" in row and "Postpone the session" in row     # status and decision
    assert any(cell.startswith("Intense pain needs a health professional") for cell in row)    # the reasons

    recorded = db.execute("SELECT kind, channel, received_on, on_behalf, staff_id, screenings FROM data_requests"
                          ).fetchall()
    assert [tuple(r) for r in recorded] == [("access", "email", date.today().isoformat(), 1,
                                            staff_client.staff["id"], 2)]
    entries = db.execute("SELECT action, detail, reference FROM audit_log WHERE action LIKE 'data_request%'"
                         " ORDER BY id").fetchall()
    assert [e[0] for e in entries] == ["data_request", "data_request_export", "data_request_export"]
    detail = json.loads(entries[0][1])
    assert detail == {"request": detail["request"], "kind": "access", "channel": "email",
                      "received_on": date.today().isoformat(), "on_behalf": True, "count": 2}
    assert all(e[2] is None for e in entries)
    assert db.execute("SELECT count(*) FROM submissions").fetchone()[0] == 2     # nothing erased


def test_the_export_pages_need_the_requests_own_screenings(staff_client, make_submission, db):
    ana = shared(make_submission, "ana@example.org")
    bea = shared(make_submission, "bea@example.org")
    done = staff_client.post(f"/staff/submissions/{ana['number']}/person", data=form([ana["number"]]))
    request_id = db.execute("SELECT id FROM data_requests").fetchone()[0]
    assert staff_client.get(done.headers["Location"]).status_code == 200
    sig = parse_qs(urlsplit(done.headers["Location"]).query)["sig"][0]
    for numbers in ([bea["number"]], [ana["number"], bea["number"]], [], ["x"], ["\u00b2"], ["9" * 40]):
        for query in ({"n": [str(n) for n in numbers], "sig": sig}, {"n": [str(n) for n in numbers]}):
            for page in ("print", "export.csv"):
                assert staff_client.get(f"/staff/requests/{request_id}/{page}", query_string=query).status_code == 404
    assert staff_client.get(f"/staff/requests/{request_id + 1}/print",
                            query_string={"n": ana["number"], "sig": sig}).status_code == 404
    # an erasure request has no export pages
    staff_client.post(f"/staff/submissions/{bea['number']}/person",
                      data=form([bea["number"]], kind="erasure", confirm="y"))
    assert staff_client.get(f"/staff/requests/{request_id + 1}/print",
                            query_string={"n": bea["number"], "sig": sig}).status_code == 404


def test_another_centres_member_cannot_open_a_request(app, staff_client, make_submission, db):
    ana = shared(make_submission, "ana@example.org")
    done = staff_client.post(f"/staff/submissions/{ana['number']}/person", data=form([ana["number"]]))
    accounts.create_staff(db, email="b@centre-b.example", password=STAFF_PASSWORD, centre=OTHER)
    other = app.test_client()
    assert login(other, "b@centre-b.example", STAFF_PASSWORD).status_code == 302
    assert other.get(done.headers["Location"]).status_code == 404


# --- erasure ----------------------------------------------------------------------------------------

def test_staff_erase_all_of_a_persons_screenings_through_a_recorded_request(staff_client, make_submission, db):
    contact = "Núria.Ferrer@example.org"
    first = shared(make_submission, contact)
    second = shared(make_submission, contact.lower())
    kept = shared(make_submission, "someone@example.org", name="Someone Else")
    review.add_note(db, first["id"], "Prefers mornings", staff_client.staff, centre=CENTRE)
    with dbmod.immediate(db):
        db.execute("INSERT INTO outbox (submission_id, reference, created_at, attempts, next_attempt_at)"
                   " VALUES (?, ?, ?, 0, ?)", [second["id"], second["reference"], dbmod.now(), dbmod.now()])
    assert staff_client.staff["role"] == "staff"
    response = staff_client.post(f"/staff/submissions/{first['number']}/person",
                                 data=form([first["number"], second["number"]], kind="erasure", channel="in_person",
                                           confirm="y"))
    assert response.status_code == 302 and "/staff/?" in response.headers["Location"]
    page = staff_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "2 shared screenings were erased" in page

    assert [r[0] for r in db.execute("SELECT reference FROM submissions").fetchall()] == [kept["reference"]]
    assert db.execute("SELECT count(*) FROM notes").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM outbox WHERE submission_id IN (?, ?)",
                      [first["id"], second["id"]]).fetchone()[0] == 0
    request_id, kind, channel, screenings = db.execute(
        "SELECT id, kind, channel, screenings FROM data_requests").fetchone()
    assert (kind, channel, screenings) == ("erasure", "in_person", 2)
    erased = db.execute("SELECT reference, detail, staff_id FROM audit_log WHERE action = 'erase' ORDER BY reference"
                        ).fetchall()
    assert sorted(r[0] for r in erased) == sorted([first["reference"], second["reference"]])
    assert all(json.loads(r[1]) == {"request": request_id} and r[2] == staff_client.staff["id"] for r in erased)
    assert db.execute("SELECT count(*) FROM audit_log WHERE action = 'data_request'").fetchone()[0] == 1

    # nothing of the person in what is kept of the request
    kept_text = repr(rows(db, "data_requests") + rows(db, "audit_log")).casefold()
    for piece in (NAME, contact, contact.lower(), "ferrer", "nuria", "núria"):
        assert piece.casefold() not in kept_text


def test_erasing_one_screening_outside_a_request_stays_for_admins(staff_client, make_submission, db):
    sub = shared(make_submission, "ana@example.org")
    assert staff_client.post(f"/staff/submissions/{sub['number']}/erase", data={"confirm": "y"}).status_code == 403
    assert db.execute("SELECT count(*) FROM submissions").fetchone()[0] == 1


def test_an_erasure_of_screenings_erased_meanwhile_does_nothing(staff_client, make_submission, db):
    one = shared(make_submission, "ana@example.org")
    two = shared(make_submission, "ana@example.org")
    request = store.DataRequest("erasure", "phone", date.today(), False)
    store.erase(db, request, [two["id"]], staff_client.staff, centre=CENTRE)
    with pytest.raises(store.Gone):
        store.erase(db, request, [one["id"], two["id"]], staff_client.staff, centre=CENTRE)
    with pytest.raises(store.Gone):
        store.erase(db, request, [one["id"]], staff_client.staff, centre=OTHER)
    assert db.execute("SELECT count(*) FROM data_requests").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM submissions").fetchone()[0] == 1


def test_a_list_that_changed_before_the_post_is_shown_again(staff_client, make_submission, db, monkeypatch):
    one = shared(make_submission, "ana@example.org")
    two = shared(make_submission, "ana@example.org")
    real_erase = store.erase

    def colleague_first(conn, request, ids, member, *, centre):
        """A colleague erases the second one between the page and this POST."""
        retention.erase_submission(conn, two["id"], centre=CENTRE, staff=None)
        return real_erase(conn, request, ids, member, centre=centre)

    monkeypatch.setattr(store, "erase", colleague_first)
    response = staff_client.post(f"/staff/submissions/{one['number']}/person",
                                 data=form([one["number"], two["number"]], kind="erasure", confirm="y"))
    assert response.status_code == 409
    page = response.get_data(as_text=True)
    assert "was erased in the meantime" in page and listed_refs(page) == [one["reference"]]
    assert db.execute("SELECT count(*) FROM data_requests").fetchone()[0] == 0
    assert db.execute("SELECT reference FROM submissions").fetchall()[0][0] == one["reference"]


# --- refusals ---------------------------------------------------------------------------------------

TOMORROW = (date.today() + timedelta(days=2)).isoformat()


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"screening": []}, "screening", "Tick at least one shared screening."),
    ({"screening": ["OTHER"]}, "screening", "Tick only shared screenings from this list."),
    ({"screening": ["B"]}, "screening", "Tick only shared screenings from this list."),
    ({"screening": ["999"]}, "screening", "Tick only shared screenings from this list."),
    ({"screening": ["-1"]}, "screening", "Tick only shared screenings from this list."),
    ({"screening": ["\u00b2"]}, "screening", "Tick only shared screenings from this list."),
    ({"screening": ["1" * 40]}, "screening", "Tick only shared screenings from this list."),
    ({"kind": "delete"}, "kind", "Choose what the person asks for."),
    ({"kind": None}, "kind", "Choose what the person asks for."),
    ({"channel": "fax"}, "channel", "Choose how the request came."),
    ({"received_on": "31/12/2025"}, "received_on", "Enter the date as year-month-day"),
    ({"received_on": "2025-02-30"}, "received_on", "Enter the date as year-month-day"),
    ({"received_on": "2025-W01-1"}, "received_on", "Enter the date as year-month-day"),
    ({"received_on": ""}, "received_on", "Enter the date the request was received."),
    ({"received_on": TOMORROW}, "received_on", "The date cannot be in the future."),
    ({"asked_by": "Maria Ferrer"}, "asked_by", "Choose who asked."),
    ({"kind": "erasure"}, "confirm", "Tick the box to confirm that these shared screenings must be erased."),
])
def test_bad_input_is_refused_at_its_field_and_nothing_is_stored(staff_client, make_submission, db, change, field,
                                                                  message):
    ana = shared(make_submission, "ana@example.org")
    other = shared(make_submission, "other@example.org")
    b_subs = [shared(make_submission, "ana@example.org", centre=OTHER) for _ in range(3)]
    assert b_subs[-1]["number"] > other["number"]       # a number of centre B's that centre A does not have
    names = {"OTHER": str(other["number"]), "B": str(b_subs[-1]["number"])}
    data = form([ana["number"]], **change)
    if "screening" in change:
        data["screening"] = [names.get(n, n) for n in change["screening"]]
    response = staff_client.post(f"/staff/submissions/{ana['number']}/person", data=data)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert f'id="{field}-error"' in page and message in page
    assert db.execute("SELECT count(*) FROM data_requests").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM submissions").fetchone()[0] == 5
    assert db.execute("SELECT count(*) FROM audit_log WHERE action LIKE 'data_request%' OR action = 'erase'"
                      ).fetchone()[0] == 0


def test_every_post_needs_the_csrf_token(make_app, rules_copy, make_submission, make_staff):
    add_centre(rules_copy, OTHER, name="Centre B")
    app = make_app(RULES_DIR=str(rules_copy), WTF_CSRF_ENABLED=True)
    sub = shared(make_submission, "ana@example.org")
    member = make_staff()
    client = app.test_client()
    assert login(client, member["email"], member["password"]).status_code == 302
    url = f"/staff/submissions/{sub['number']}/person"
    data = form([sub["number"]], kind="erasure", confirm="y")
    assert client.post(url, data=data).status_code == 400
    token = csrf_token_from(client.get(url).get_data(as_text=True))
    assert token
    assert client.post(url, data={**data, "csrf_token": token}).status_code == 302
    conn = dbmod.connect(database_of(app))
    try:
        assert conn.execute("SELECT count(*) FROM submissions").fetchone()[0] == 0
    finally:
        conn.close()


# --- one index probe at a million rows --------------------------------------------------------------------

@pytest.mark.parametrize(("column", "index"), [("search_contact", "idx_submissions_centre_search_contact"),
                                               ("search_phone", "idx_submissions_centre_search_phone")])
def test_the_person_is_found_through_an_index_led_by_the_centre(db, engine, column, index):
    sql = store.same_person_sql(column)
    params = [CENTRE, "ana@example.org", store.MAX_SCREENINGS]
    if engine == "sqlite":
        plan = " ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall())
        assert f"USING INDEX {index} (centre=? AND {column}=?)" in plan, plan
    else:
        # PostgreSQL plans by its statistics: 20,000 rows of two centres, analysed as autovacuum
        # does, where one person has a screening or two (a million rows only lengthen the scan)
        with db.transaction():
            db.execute(
                "INSERT INTO submissions (reference, nonce, service, outcome, answers, fired_rules, rules_version,"
                " name, contact, consent_at, created_at, status, centre, number, search_contact, search_phone)"
                " SELECT 'R' || g, 'n' || g, 's', 'proceed', '{}', '[]', 'v', 'x', '', '', '', 'new',"
                " CASE WHEN g % 2 = 0 THEN ? ELSE 'b' END, g, CASE WHEN g % 3 = 0 THEN 'p' || (g / 2) || '@e.org'"
                " ELSE CAST(600000000 + g / 2 AS text) END, CASE WHEN g % 3 = 0 THEN '' ELSE"
                " CAST(600000000 + g / 2 AS text) END FROM generate_series(1, 20000) AS g", [CENTRE])
        db.execute("ANALYZE submissions")
        params[1] = "p42@e.org" if column == "search_contact" else "600000042"
        plan = " ".join(row[0] for row in db.execute("EXPLAIN " + sql, params).fetchall())
        assert f"Index Scan using {index}" in plan or f"Bitmap Index Scan on {index}" in plan, plan
        assert f"Index Cond: ((centre = 'exemple-barcelona'::text) AND ({column} = " in plan, plan
