"""Deny by default: every route is either on the public allow-list or refuses a stranger; and
every staff route, walked as a member of one centre with another centre's ids, finds nothing.

A view added later without thinking about access, or reading the database without the centre
store, fails this test instead of leaking submissions.
"""
import html
import re
from urllib.parse import parse_qsl, urlsplit

import pytest
from conftest import CENTRE, SLUGS, STAFF_PASSWORD, add_centre, database_of, give_second_factor, login, search

from screening.store import accounts, review
from screening.store import db as dbmod
from screening.web.database import get_db

PUBLIC = [
    r"/",
    r"/services/<slug>",
    r"/screening/<slug>",
    r"/healthz",
    r"/static/<path:filename>",
    r"/api/v1/.*",
    r"/staff/login",
    r"/staff/forgot",                                        # ask for a reset link (answers alike for any address)
    r"/staff/(reset|invitation)/<token>",                    # the pages of e-mailed account links
    r"/centres",                                             # the directory of centres
    r"/withdraw",                                            # a client takes back what they sent
    r"/c/<centre>/(services/<slug>|screening/<slug>|withdraw)?",      # a centre's public pages
]
CANARY = "Zebedee Canary-Name"


def is_public(rule: str) -> bool:
    return any(re.fullmatch(pattern, rule) for pattern in PUBLIC)


def sample_url(rule, submission, centre="x"):
    """A concrete URL for a rule, pointing at a real submission where it takes a number (its
    centre's own numbering, as staff URLs do), and at `centre` where it takes a centre."""
    values = {}
    for name, converter in rule._converters.items():
        kind = type(converter).__name__
        if kind in ("IntegerConverter", "NumberConverter"):
            values[name] = submission["number"]
        elif name in ("slug", "service"):
            values[name] = SLUGS[0]
        elif name == "reference":
            values[name] = submission["reference"]
        elif name == "centre":
            values[name] = centre
        else:
            values[name] = "x"
    return rule.build(values, append_unknown=False)[1]


def refused(response) -> bool:
    if response.status_code == 401:
        return True
    return response.status_code in (302, 303) and response.headers["Location"].startswith("/staff/login")


def staff_rules(app):
    return [rule for rule in app.url_map.iter_rules() if not is_public(rule.rule)]


def test_every_route_is_public_or_refuses_a_stranger(app, client, make_submission):
    submission = make_submission(name=CANARY)
    leaks = []
    for rule in staff_rules(app):
        url = sample_url(rule, submission)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            for headers in ({"Accept": "text/html"}, {"Accept": "application/json"}):
                response = client.open(url, method=method, headers=headers, data={"status": "closed"})
                if not refused(response) or CANARY in response.get_data(as_text=True):
                    leaks.append(f"{method} {url} ({headers['Accept']}) -> {response.status_code}")
    assert leaks == []


def test_the_guard_has_something_to_guard(app):
    """Not a vacuous pass: at least the logout route is behind the guard."""
    assert "/staff/logout" in {rule.rule for rule in staff_rules(app)}


@pytest.mark.parametrize("rule", ["/staff/", "/staff/submissions/<int:number>", "/staff/export.csv",
                                  "/staff/logout", "/admin"])
def test_staff_pages_are_not_on_the_public_list(rule):
    assert not is_public(rule)


def test_nothing_public_sets_the_staff_cookie(client):
    for url in ["/", f"/services/{SLUGS[0]}", f"/screening/{SLUGS[0]}", "/healthz", "/staff/login"]:
        assert "screening_staff" not in client.get(url).headers.get("Set-Cookie", "")


# --- centres: every staff route, walked as centre A with centre B's ids (issue 9) -------------------

OTHER = "centre-b"
B_NAME = "Bartholomew Leakname"            # what A must never see: B's names, contacts, references, notes
B_EMAIL = "bart.leak@b-centre.example"
B_PHONE = "+34 699 111 222"
B_NOTE = "Private note of centre B"


@pytest.fixture
def two_centres(make_app, rules_copy):
    """An app with two centres (the shipped one, A, and centre-b), a member of each, and
    screenings in each: A's number 1, B's numbers 1 and 2 (B's last one, which A has no number
    for, with a note and a status)."""
    add_centre(rules_copy, OTHER, name="Centre B", timezone="America/New_York", notify_to="desk@b-centre.example")
    app = make_app(RULES_DIR=str(rules_copy))
    conn = dbmod.connect(database_of(app))
    made = {}
    for centre, names in ((CENTRE, [("Alice Ownrow", "alice@a-centre.example")]),
                          (OTHER, [("Berta Otherrow", B_PHONE), (B_NAME, B_EMAIL)])):
        for name, contact in names:
            record = {"service": SLUGS[0], "outcome": "consult_professional", "answers": {"fever": "yes"},
                      "fired_rules": [{"rule": "fever", "outcome": "consult_professional"}], "suggestions": [],
                      "rules_version": "test", "locale": "en", "name": name, "contact": contact,
                      "consent_at": dbmod.now()}
            reference, _ = dbmod.store_submission(conn, nonce=f"nonce-{name}", record=record, centre=centre)
            made.setdefault(centre, []).append(dbmod.find_by_reference(conn, reference))
    staff = {centre: accounts.create_staff(conn, email=f"admin@{centre}.example", password=STAFF_PASSWORD,
                                           role="admin", centre=centre) for centre in (CENTRE, OTHER)}
    for admin in staff.values():
        give_second_factor(conn, admin, app.config["SECRET_KEY"])
    b_sub = made[OTHER][-1]
    review.add_note(conn, b_sub["id"], B_NOTE, staff[OTHER], centre=OTHER)
    review.set_status(conn, b_sub["id"], "reviewed", "postpone", staff[OTHER], centre=OTHER)
    conn.close()
    app.made, app.staff = made, staff
    return app


def b_secrets(app):
    """Every piece of centre B's data that may not reach a member of A, as it would appear in a
    page (HTML-escaped) or a CSV."""
    pieces = [B_NAME, B_EMAIL, B_PHONE, B_NOTE, "Berta Otherrow"]
    pieces += [sub["reference"] for sub in app.made[OTHER]]
    return pieces + [html.escape(p) for p in pieces]


def b_queries(app):
    """Query strings that would show B's rows if anything were not scoped: searches by B's name,
    phone, e-mail and reference (typed so that the page's echo of the search is not B's stored
    text), filters matching B's rows, page cursors at B's rows, and the audit trail by B's reference."""
    b_phone_sub, b_sub = app.made[OTHER]
    typed_reference = b_sub["reference"].lower().replace("-", " ")
    cursor = review.Cursor(b_sub["created_at"], b_sub["number"]).token()
    return [{}, {"q": "bartholomew"}, {"q": "leakname"}, {"q": "699111222"}, {"q": "699 111 222"},
            {"q": "bart.leak@b-centre"}, {"q": typed_reference}, {"q": b_sub["reference"][5:].lower()},
            {"q": "Ba"}, {"q": "be"}, {"outcome": "consult_professional"},
            {"status": "reviewed"}, {"service": SLUGS[0], "from": "2000-01-01", "to": "9999-12-30"},
            {"before": cursor}, {"after": cursor}, {"reference": typed_reference},
            {"submission_id": str(b_sub["id"]), "id": str(b_phone_sub["id"])}]


def b_url(rule, app):
    """The rule's URL with centre B's number, reference and slug in its path: B's last screening,
    whose number A does not have (A's own numbers are A's: see test_a_number_is_each_centres_own)."""
    b_sub = app.made[OTHER][-1]
    assert all(sub["number"] < b_sub["number"] for sub in app.made[CENTRE])
    return sample_url(rule, b_sub, centre=OTHER)


def without_echo(body, query):
    """A page without the request's own query values (as typed, and as a reference once normalised):
    a page may repeat what was searched for, which is not a leak."""
    for value in query.values():
        for form in (value, dbmod.normalize_reference(value)):
            if form:
                body = body.replace(form, "").replace(html.escape(form), "")
    return body


def walk_as_a(app):
    """Every staff route with every method and every query, as an admin of centre A with B's ids;
    return the leaks found (a route whose path names a B submission must answer 404, exactly as for
    one that does not exist, and no answer may hold B's data)."""
    client = app.test_client()
    a_admin = app.staff[CENTRE]
    assert login(client, a_admin["email"], STAFF_PASSWORD).status_code == 302
    secrets = b_secrets(app)
    form = {"status": "closed", "decision": "postpone", "body": "A's note", "confirm": "y"}
    leaks = []
    rules = sorted(staff_rules(app), key=lambda r: r.endpoint == "auth.logout")   # log out last
    # a search is posted and then named by its id (issue 16): each query's words become a search
    # of A's session, which every GET then carries; the echo stripped is still what was typed
    searched = []
    for query in b_queries(app):
        if "q" in query:
            url = urlsplit(search(client, query["q"]).request.url)
            searched.append((dict(parse_qsl(url.query)), query))
        else:
            searched.append((query, query))
    for rule in rules:
        url = b_url(rule, app)
        names_b = bool(rule.arguments)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            for query, typed in searched if method == "GET" else [({}, {})]:
                response = client.open(url, method=method, query_string=query, data=form)
                body = without_echo(response.get_data(as_text=True), typed)
                seen = [s for s in secrets if s in body]
                if seen or (names_b and response.status_code != 404):
                    leaks.append(f"{method} {url} {query} -> {response.status_code} {seen}")
    return leaks


def test_a_member_of_one_centre_finds_nothing_of_another_on_any_staff_route(two_centres):
    leaks = walk_as_a(two_centres)
    assert leaks == []

    # and nothing of B's changed: not erased, no note or status from A, nothing in B's trail by A
    conn = dbmod.connect(database_of(two_centres))
    try:
        b_sub = two_centres.made[OTHER][-1]
        row = conn.execute("SELECT status, decision FROM submissions WHERE id = ?", [b_sub["id"]]).fetchone()
        assert row == ("reviewed", "postpone")
        assert [r[0] for r in conn.execute("SELECT body FROM notes WHERE submission_id = ?", [b_sub["id"]])] == [B_NOTE]
        a_id = two_centres.staff[CENTRE]["id"]
        assert conn.execute("SELECT count(*) FROM audit_log WHERE staff_id = ? AND (centre = ? OR submission_id IN"
                            " (SELECT id FROM submissions WHERE centre = ?))", [a_id, OTHER, OTHER]).fetchone()[0] == 0
    finally:
        conn.close()


def test_the_walk_reaches_every_staff_route_with_data_of_the_other_centre(two_centres):
    """Not a vacuous pass: the routes that take an id are walked, and B's own admin does see B's data
    on them (so the 404s above come from the scoping, not from a wrong id)."""
    rules = {rule.rule for rule in staff_rules(two_centres)}
    assert {"/staff/submissions/<int:number>", "/staff/submissions/<int:number>/notes",
            "/staff/submissions/<int:number>/status", "/staff/submissions/<int:number>/erase",
            "/staff/export.csv", "/staff/audit", "/staff/"} <= rules
    client = two_centres.test_client()
    assert login(client, two_centres.staff[OTHER]["email"], STAFF_PASSWORD).status_code == 302
    b_sub = two_centres.made[OTHER][-1]
    page = client.get(f"/staff/submissions/{b_sub['number']}").get_data(as_text=True)
    assert B_NAME in page and B_NOTE in page
    assert B_NAME in search(client, "bartholomew").get_data(as_text=True)
    assert b_sub["reference"] in client.get("/staff/export.csv").get_data(as_text=True)


def test_a_staff_route_that_forgets_the_centre_is_caught_by_the_walk(two_centres):
    """The walk catches a view added later that reads the database without the centre store."""
    from flask import abort

    def leaky(number):
        found = get_db().execute("SELECT name FROM submissions WHERE number = ?", [number]).fetchone()  # no centre
        return found[0] if found else abort(404)

    two_centres.add_url_rule("/staff/leaky/<int:number>", "leaky", leaky)
    leaks = walk_as_a(two_centres)
    assert leaks and all("/staff/leaky/" in leak for leak in leaks)


def test_counts_and_csv_of_one_centre_never_include_the_other(two_centres):
    client = two_centres.test_client()
    assert login(client, two_centres.staff[CENTRE]["email"], STAFF_PASSWORD).status_code == 302
    page = client.get("/staff/").get_data(as_text=True)
    # A has one screening that needs attention; B has two
    assert re.search(r'data-attention="consult_professional">.*?</span>: <strong>1</strong>', page, re.S)
    lines = client.get("/staff/export.csv").get_data(as_text=True).splitlines()
    assert len(lines) == 2 and two_centres.made[CENTRE][0]["reference"] in lines[1]


def test_a_number_is_each_centres_own(two_centres):
    """Both centres have a number 1: at /staff/submissions/1 each one's staff read their own
    screening, never the other's, and a change there changes their own."""
    pages = {}
    for centre in (CENTRE, OTHER):
        client = two_centres.test_client()
        assert login(client, two_centres.staff[centre]["email"], STAFF_PASSWORD).status_code == 302
        pages[centre] = client.get("/staff/submissions/1").get_data(as_text=True)
        assert client.post("/staff/submissions/1/notes", data={"body": f"note by {centre}"}).status_code == 302
    assert "Alice Ownrow" in pages[CENTRE] and "Berta Otherrow" not in pages[CENTRE]
    assert "Berta Otherrow" in pages[OTHER] and "Alice Ownrow" not in pages[OTHER]
    conn = dbmod.connect(database_of(two_centres))
    try:
        notes = conn.execute("SELECT submissions.centre, notes.body FROM notes JOIN submissions"
                             " ON submissions.id = notes.submission_id WHERE body LIKE 'note by %'").fetchall()
    finally:
        conn.close()
    assert sorted(notes) == sorted([(CENTRE, f"note by {CENTRE}"), (OTHER, f"note by {OTHER}")])
