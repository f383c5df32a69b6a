"""Issue 16, item 4: the staff search's words (a client's name, e-mail or phone) never reach a URL.

The dashboard's filter form is posted with its CSRF token; the words are kept with the staff session
(store/review.py: save_search) and the pages that follow name them by a random id only. Each test
searches as staff do, through the pages with CSRF on, and reads every URL the app hands out: links,
form actions and redirects.
"""
import html
import json
import re
import urllib.parse
from pathlib import Path

import pytest
from conftest import all_no, csrf_token_from, login
from helpers_server import FORM, hidden_value

from screening.store import review

NAME, EMAIL, PHONE = "Núria Peña Casals", "nuria.pena@example.org", "+34 612 34 56 78"
WORDS = ("nuria", "núria", "pena", "peña", "casals", "612", "example.org", "nuria.pena")


def urls_of(response) -> list[str]:
    """Every URL a page or redirect hands out: Location, href, action, formaction, src."""
    found = [response.headers.get("Location") or ""]
    found += [html.unescape(u) for u in re.findall(r'\b(?:href|action|formaction|src)="([^"]*)"', response.text)]
    return [u for u in found if u and not u.startswith(("mailto:", "tel:"))]


def assert_no_words(urls, words=WORDS):
    for url in urls:
        plain = urllib.parse.unquote_plus(url).casefold()
        assert not any(word in plain for word in words), url


def staff_browser(app, make_staff, role="staff"):
    client = app.test_client()
    client.staff = make_staff(role=role)
    assert login(client, client.staff["email"], client.staff["password"]).status_code == 302
    return client


def post_search(client, words, **filters):
    """Post the dashboard's form as a browser does: its CSRF token and the fields as typed."""
    page = client.get("/staff/")
    return client.post("/staff/", data={"q": words, "csrf_token": csrf_token_from(page.text), **filters})


def row_names(response) -> list[str]:
    """The name cell (the second) of each row, in any language."""
    return [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)[1]
            for row in re.findall(r"<tr data-submission=.*?</tr>", response.text, re.S)]


@pytest.fixture
def people(make_submission):
    """55 screenings of one person (more than a page), and two of others."""
    for i in range(55):
        make_submission(name=NAME, contact=EMAIL if i % 2 else PHONE,
                        outcome="tell_centre" if i < 5 else "proceed")
    make_submission(name="Pere Roca", contact="pere@example.org")
    make_submission(name="Joan Vidal", contact="+34 699 00 11 22")


def test_a_search_is_posted_paged_filtered_and_exported_with_no_words_in_any_url(csrf_app, make_staff, people,
                                                                                  db):
    client = staff_browser(csrf_app, make_staff)
    seen = []

    posted = post_search(client, "nuria pena")
    assert posted.status_code == 303
    seen += urls_of(posted)
    location = posted.headers["Location"]
    assert re.fullmatch(r"/staff/\?search=[A-Za-z0-9_-]{22}", location)

    first = client.get(location)
    assert first.status_code == 200
    seen += urls_of(first)
    assert row_names(first) == [NAME] * review.PAGE_SIZE
    assert 'value="nuria pena"' in first.text            # the words are in the page's field, not its URL

    older = re.search(r'<a rel="next" href="([^"]*)"', first.text).group(1)
    second = client.get(html.unescape(older))
    seen += urls_of(second)
    assert row_names(second) == [NAME] * 5
    # the language switch keeps the search by its id
    switch = [html.unescape(u) for u in re.findall(r'href="([^"]*)" hreflang="ca"', second.text)]
    assert switch and "search=" in switch[0]
    catalan = client.get(switch[0])
    assert catalan.status_code == 200 and row_names(catalan) == [NAME] * 5

    # another filter changed on the search's page: the form is posted again, with the words
    changed = client.post("/staff/", data={"q": "nuria pena", "outcome": "tell_centre",
                                           "csrf_token": csrf_token_from(first.text)})
    assert changed.status_code == 303
    seen += urls_of(changed)
    narrowed = client.get(changed.headers["Location"])
    seen += urls_of(narrowed)
    assert "outcome=tell_centre" in changed.headers["Location"] and row_names(narrowed) == [NAME] * 5

    # the export of the search: its form carries the id and the other filters only
    export_form = re.search(r'<form method="get" action="(/staff/export\.csv)".*?</form>', narrowed.text, re.S)
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', export_form.group(0)))
    assert set(fields) == {"search", "outcome"}
    export = client.get("/staff/export.csv", query_string={**fields, "sep": "comma"})
    assert export.status_code == 200
    lines = export.get_data().decode("utf-8-sig").splitlines()
    assert len(lines) == 6 and all(NAME in line for line in lines[1:])

    assert len(seen) > 20
    assert_no_words(seen)
    # the audit has the export's non-personal filter, and that words were searched: never the words
    detail = db.execute("SELECT detail FROM audit_log WHERE action = 'export'").fetchone()[0]
    assert json.loads(detail) == {"filters": {"outcome": "tell_centre", "q": True}, "count": 5}
    assert not any(word in detail.casefold() for word in WORDS)


def test_the_audit_page_says_words_were_searched_without_them(csrf_app, make_staff, people, db):
    client = staff_browser(csrf_app, make_staff, role="admin")
    location = post_search(client, "peña casals").headers["Location"]
    assert client.get(location.replace("/staff/", "/staff/export.csv", 1)).status_code == 200
    audit = client.get("/staff/audit?action=export")
    assert "search: words not recorded" in audit.text
    assert not any(word in audit.text.casefold() for word in ("peña", "casals"))
    assert not any(word in (row[0] or "").casefold() for row in db.execute("SELECT detail FROM audit_log")
                   for word in ("peña", "casals", "pena"))


def test_another_session_cannot_use_a_search_id(csrf_app, make_staff, people):
    client = staff_browser(csrf_app, make_staff)
    location = post_search(client, "nuria pena").headers["Location"]
    # the same member in another browser, and a colleague
    same = csrf_app.test_client()
    assert login(same, client.staff["email"], client.staff["password"]).status_code == 302
    for other in (same, staff_browser(csrf_app, make_staff)):
        for url in (location, location.replace("/staff/", "/staff/export.csv", 1)):
            response = other.get(url)
            assert response.status_code == 400, url
            assert "This search has expired" in response.text
            assert NAME not in response.text and "nuria" not in response.text.casefold()
    # a made-up id reads the same
    assert client.get("/staff/?search=" + "A" * 22).status_code == 400
    assert client.get(location).status_code == 200


def test_a_q_in_a_url_is_never_read(csrf_app, make_staff, people, db):
    client = staff_browser(csrf_app, make_staff)
    dropped = client.get("/staff/?q=nuria&status=new")
    assert dropped.status_code == 303 and dropped.headers["Location"] == "/staff/?status=new"
    refused = client.get("/staff/export.csv?q=nuria")
    assert refused.status_code == 400 and "text/csv" not in refused.headers["Content-Type"]
    assert db.execute("SELECT COUNT(*) FROM audit_log WHERE action = 'export'").fetchone()[0] == 0


def test_a_post_without_its_csrf_token_keeps_nothing(csrf_app, make_staff, people, db):
    client = staff_browser(csrf_app, make_staff)
    response = client.post("/staff/", data={"q": "nuria pena"})
    assert response.status_code == 400
    assert review.count_searches(db) == 0


def test_the_words_go_with_the_session(csrf_app, make_staff, people, db):
    client = staff_browser(csrf_app, make_staff)
    for words in ("nuria", "pere roca", "699 00 11 22"):
        assert post_search(client, words).status_code == 303
    assert review.count_searches(db) == 3
    # the database holds them sealed: not the words, in any form
    stored = " ".join(row[0] for row in db.execute("SELECT words FROM search_words"))
    assert not any(word in stored.casefold() for word in ("nuria", "pere", "roca", "699"))
    logout = client.post("/staff/logout", data={"csrf_token": csrf_token_from(client.get("/staff/").text)})
    assert logout.status_code in (302, 303)
    assert review.count_searches(db) == 0


def test_a_session_keeps_its_newest_searches_only(app, make_staff, people, db):
    client = staff_browser(app, make_staff)
    first = post_search(client, "pere").headers["Location"]
    for i in range(review.SEARCHES_PER_SESSION):
        post_search(client, f"joan {i}")
    assert review.count_searches(db) == review.SEARCHES_PER_SESSION
    assert client.get(first).status_code == 400


def raw_bytes(path: Path) -> bytes:
    """Everything SQLite keeps on disk for this database: the file, its WAL and its shared memory."""
    return b"".join(Path(f"{path}{suffix}").read_bytes()
                    for suffix in ("", "-wal", "-shm") if Path(f"{path}{suffix}").exists())


@pytest.mark.sqlite_only
def test_after_a_search_an_erasure_a_withdrawal_and_logout_the_files_hold_no_name_or_contact(csrf_app, make_staff,
                                                                                            db):
    """Two clients share through the form; one takes their answers back with the code, staff search
    for the other by name and erase it, then log out: neither name nor contact is left in the
    database's files."""
    people = {"withdrawn": ("Zoraida Quintanilla", "zoraida.q@example.net"),
              "erased": ("Wenceslao Ybarra", "+34 655 43 21 09")}
    public = csrf_app.test_client()
    pairs = {}
    for key, (name, contact) in people.items():
        page = public.get(FORM).text
        result = public.post(FORM, data=all_no(share="yes", name=name, contact=contact, consent="yes",
                                                notes="my left shoulder", nonce=hidden_value(page, "nonce"),
                                                csrf_token=hidden_value(page, "csrf_token")))
        assert result.status_code == 200
        pairs[key] = (re.search(r"data-reference>([^<]+)<", result.text).group(1),
                      re.search(r"data-withdrawal-code>([^<]+)<", result.text).group(1))

    reference, code = pairs["withdrawn"]
    form = public.get("/withdraw")
    confirm = public.post("/withdraw", data={"reference": reference, "code": code,
                                             "csrf_token": csrf_token_from(form.text)})
    done = public.post("/withdraw", data={"reference": reference, "code": code, "step": "confirm",
                                          "confirm": "yes", "csrf_token": csrf_token_from(confirm.text)})
    assert done.status_code == 200

    admin = staff_browser(csrf_app, make_staff, role="admin")
    found = admin.get(post_search(admin, "wenceslao ybarra").headers["Location"])
    assert row_names(found) == ["Wenceslao Ybarra"]
    number = re.search(r'<tr data-submission="(\d+)"', found.text).group(1)
    page = admin.get(f"/staff/submissions/{number}")
    erased = admin.post(f"/staff/submissions/{number}/erase", data={"confirm": "y",
                                                                    "csrf_token": csrf_token_from(page.text)})
    assert erased.status_code == 302
    admin.post("/staff/logout", data={"csrf_token": csrf_token_from(admin.get("/staff/").text)})
    assert review.count_searches(db) == 0
    assert db.execute("SELECT COUNT(*) FROM submissions").fetchone()[0] == 0

    path = db.execute("PRAGMA database_list").fetchone()[2]
    data = raw_bytes(Path(path))
    for name, contact in people.values():
        for text in (name, contact, *name.split(), contact.replace(" ", "")):
            assert text.encode() not in data, text
            assert text.lower().encode() not in data, text


def test_the_rows_are_gone_after_erasure_withdrawal_and_logout(csrf_app, make_staff, make_submission, db):
    """On either engine: after the search, an erasure and the end of the session, no row holds the
    name or contact (PostgreSQL promises no more than that: README, "Erasure on PostgreSQL")."""
    make_submission(name="Wenceslao Ybarra", contact="+34 655 43 21 09")
    admin = staff_browser(csrf_app, make_staff, role="admin")
    found = admin.get(post_search(admin, "ybarra").headers["Location"])
    number = re.search(r'<tr data-submission="(\d+)"', found.text).group(1)
    page = admin.get(f"/staff/submissions/{number}")
    assert admin.post(f"/staff/submissions/{number}/erase",
                      data={"confirm": "y", "csrf_token": csrf_token_from(page.text)}).status_code == 302
    admin.post("/staff/logout", data={"csrf_token": csrf_token_from(admin.get("/staff/").text)})
    for table in ("submissions", "notes", "search_words", "audit_log", "outbox"):
        for row in db.execute(f"SELECT * FROM {table}").fetchall():  # noqa: S608
            text = " ".join(str(value) for value in row).casefold()
            assert "ybarra" not in text and "655432109" not in text.replace(" ", ""), table


@pytest.mark.slow
def test_the_access_log_of_a_real_server_holds_no_name_contact_or_answer(tmp_path):
    """gunicorn with its access log (the default format, which also logs the Referer): clients
    share, one takes their answers back with the code, staff search by name, e-mail and phone, page,
    switch language, export the search and erase a screening. No line holds a name, a contact or an
    answer, however encoded."""
    from helpers_server import Browser, form_fields, gunicorn_server

    from screening.store import accounts
    from screening.store import db as dbmod

    database = tmp_path / "app.db"
    access_log = tmp_path / "access.log"
    people = [("Zoraida Quintanilla", "zoraida.q@example.net"), ("Wenceslao Ybarra", "+34 655 43 21 09"),
              ("Bartolomé Úbeda", "bart.ubeda@example.com")]
    answer = "shoulder-canary-pain"
    with gunicorn_server(tmp_path, database=database, workers=2, env={"SCREENING_STAFF_2FA": "off"},
                         args=["--access-logfile", str(access_log)]) as server:
        conn = dbmod.connect(str(database))
        try:
            admin = accounts.create_staff(conn, email="admin@centre.example", password="a long pass phrase 1",
                                          centre="exemple-barcelona", name="Ada Admin", role="admin")
        finally:
            conn.close()
        assert admin

        client = Browser(server.url)
        pairs = []
        for name, contact in people:
            page = client.get(FORM)
            result = client.post(FORM, form_fields(page.text, all_no(share="yes", name=name, contact=contact,
                                                                     consent="yes", notes=answer)))
            assert result.status == 200
            pairs.append((re.search(r"data-reference>([^<]+)<", result.text).group(1),
                          re.search(r"data-withdrawal-code>([^<]+)<", result.text).group(1)))

        reference, code = pairs[0]
        form = client.get("/withdraw")
        confirm = client.post("/withdraw", {"reference": reference, "code": code,
                                            "csrf_token": hidden_value(form.text, "csrf_token")})
        assert confirm.status == 200
        done = client.post("/withdraw", {"reference": reference, "code": code, "step": "confirm", "confirm": "yes",
                                         "csrf_token": hidden_value(confirm.text, "csrf_token")})
        assert done.status == 200 and f'data-withdrawn="{reference}"' in done.text

        staff = Browser(server.url)
        page = staff.get("/staff/login")
        assert staff.post("/staff/login", {"email": "admin@centre.example", "password": "a long pass phrase 1",
                                           "csrf_token": hidden_value(page.text, "csrf_token")}).status == 302
        for words in ("wenceslao ybarra", "655 43 21 09", "bart.ubeda@example.com"):
            dashboard = staff.get("/staff/")
            posted = staff.post("/staff/", {"q": words, "csrf_token": hidden_value(dashboard.text, "csrf_token")})
            assert posted.status == 303
            location = posted.headers["Location"]
            found = staff.get(location)
            assert found.status == 200 and len(re.findall(r"<tr data-submission=", found.text)) == 1
            switch = re.search(r'href="([^"]*)" hreflang="es"', found.text).group(1)
            assert staff.get(html.unescape(switch)).status == 200
            export = staff.get(location.replace("/staff/", "/staff/export.csv", 1) + "&sep=comma")
            assert export.status == 200 and answer in export.text     # in the body, never the log
        number = re.search(r'<tr data-submission="(\d+)"', staff.get(location).text).group(1)
        page = staff.get(f"/staff/submissions/{number}")
        assert page.status == 200
        erased = staff.post(f"/staff/submissions/{number}/erase",
                            {"confirm": "y", "csrf_token": hidden_value(page.text, "csrf_token")})
        assert erased.status == 302
        assert staff.get(erased.headers["Location"]).status == 200

    log = access_log.read_text()
    assert "POST /withdraw" in log and "GET /staff/?search=" in log and "GET /staff/export.csv?search=" in log
    plain = urllib.parse.unquote_plus(urllib.parse.unquote_plus(log)).casefold()
    for name, contact in people:
        for text in (*name.split(), contact, contact.replace(" ", ""), contact.split("@")[0], contact[-8:]):
            assert text.casefold() not in plain, text
    assert answer not in plain
    assert "ybarra" not in plain and "wenceslao" not in plain


def test_the_words_go_when_the_session_expires_or_is_ended_by_its_member(csrf_app, make_staff, people, db):
    from screening.store import accounts
    from screening.store import db as dbmod
    from screening.web import auth

    idle = csrf_app.test_client()
    idle.staff = make_staff()
    assert login(idle, idle.staff["email"], idle.staff["password"]).status_code == 302
    assert post_search(idle, "nuria").status_code == 303
    # the same member elsewhere ends their other sessions from My account
    here = csrf_app.test_client()
    assert login(here, idle.staff["email"], idle.staff["password"]).status_code == 302
    assert post_search(here, "pere").status_code == 303
    assert review.count_searches(db) == 2
    current = here.get_cookie(auth.COOKIE, path=auth.COOKIE_PATH).value
    assert accounts.end_other_sessions(db, idle.staff, current=current) == 1
    assert review.count_searches(db) == 1
    # and the remaining session expires
    with dbmod.immediate(db):
        db.execute("UPDATE staff_sessions SET last_seen_at = ?", ["2000-01-01T00:00:00.000000+00:00"])
    assert accounts.purge_expired_sessions(db, idle_minutes=30, session_hours=12) == 1
    assert review.count_searches(db) == 0
