"""Hostile and broken requests to every route, in process (issue 6): never a 500, never half a row.

Hypothesis writes the bodies and query strings: arbitrary values, fields missing or repeated,
non-UTF-8 bytes, wrong content types, bodies over SCREENING_MAX_CONTENT_LENGTH, odd queries and
Accept-Language headers. Each test runs with CSRF off (reaching deep into the views) and on (as in
production, with a real token and nonce from a freshly fetched form). After every request:
- the status is below 500, and an error is the HTML error page or form for pages, a JSON
  {"error", "fields"} object for the API;
- the database is whole: every stored screening has all its fields and a reference, a new row
  appears only for a shared form answered with a page that shows its reference and outcome,
  checking only stores nothing, notes and erasures happen only when the page says so.
"""
import json
import re
import urllib.parse

import pytest
from conftest import RED_FLAGS, SLUGS, all_no, csrf_token_from, database_of, logged_in_client
from helpers_server import hidden_value
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from screening.core.rules import OUTCOMES, default_rules_dir, load_rules
from screening.store import db as dbmod
from screening.store.review import DECISIONS, NOTE_MAX

RULES = load_rules(default_rules_dir())
QUESTION_IDS = [q.id for q in RULES.questions]
LIMIT = 65536          # SCREENING_MAX_CONTENT_LENGTH's default, set explicitly on the apps below
REFERENCE_RE = re.compile(r"^[A-HJ-NP-Z2-9]{4}-[A-HJ-NP-Z2-9]{4}$")

# deadline=None: a request renders a template and touches the database, its time varies on a
# shared machine. The counts keep the whole file well under a minute.
settings.register_profile("fuzz_routes", deadline=None, max_examples=60,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
FUZZ = settings(settings.get_profile("fuzz_routes"))


# --- what a hostile or broken client sends --------------------------------------------------------

ODD_TEXT = st.sampled_from(["", " ", "\x00", "\x07bell", "\u202eevil", "＝1+1", "=cmd|' /C calc'!A0", "a" * 5001,
                            "9999-12-31", "0001-01-01", "2026-W49-1", "²", "١٢", "-1", "1e309", "NaN",
                            "99999999999999999999", "%", "\\", "//evil.example", "<script>x</script>",
                            "'; DROP TABLE submissions; --", "yes\nno", "🙂", "\ud7ff", "\ufffd"])
TEXT = st.text(max_size=40) | ODD_TEXT
ANSWERS = st.sampled_from(["yes", "no", "not_sure", "on", "true", "light", "medium", "firm", "neck", "thoracic",
                           "lumbar", "shoulder_blades"])
VALUES = ANSWERS | TEXT
FORM_FIELDS = [*QUESTION_IDS, "share", "name", "contact", "consent", "nonce", "csrf_token"]
NAMES = st.sampled_from(FORM_FIELDS) | st.text(max_size=12)
# 0xFF never occurs in UTF-8, and a lone 0xC3 needs a continuation byte
NON_UTF8 = st.tuples(st.binary(max_size=10), st.sampled_from([b"\xff", b"\xc3(", b"\xe2\x82"]),
                     st.binary(max_size=10)).map(b"".join)
QUERY_KEYS = st.sampled_from(["outcome", "status", "service", "from", "to", "q", "before", "after", "reference",
                              "next", "locale", "notice", "saved", "page", "share", "csrf_token"]) | st.text(max_size=8)
QUERIES = st.lists(st.tuples(QUERY_KEYS, VALUES | NON_UTF8), max_size=6)


def query_string(pairs):
    """Pairs as a query string, bytes that are not UTF-8 percent-encoded as they are."""
    return "&".join(f"{urllib.parse.quote(k)}={urllib.parse.quote(v)}" for k, v in pairs)


@st.composite
def form_bodies(draw, base: dict):
    """(pairs, how to send them, query string): `base` with fields dropped, changed and repeated,
    extra pairs, sometimes values that are not UTF-8 at all, sometimes an odd query string."""
    pairs = [(k, v) for k, v in base.items() if not draw(st.booleans()) or draw(st.integers(0, 4))]
    pairs += draw(st.lists(st.tuples(NAMES, VALUES), max_size=8))
    if draw(st.booleans()):
        pairs = draw(st.permutations(pairs))
    if draw(st.integers(0, 4)) == 0:
        pairs += draw(st.lists(st.tuples(NAMES, NON_UTF8), min_size=1, max_size=3))
    how = draw(st.sampled_from(["urlencoded", "urlencoded", "multipart", "json", "text", "none", "huge"]))
    return pairs, how, query_string(draw(QUERIES)) if draw(st.integers(0, 3)) == 0 else ""


def send(client, path, pairs, how, query="", headers=None):
    """POST `pairs` to `path` (with a query string, if any) the way `how` says."""
    headers = headers or {}
    path = f"{path}?{query}" if query else path
    if how == "urlencoded":
        body = urllib.parse.urlencode([(k, v) for k, v in pairs], doseq=False).encode()
        return client.post(path, data=body, content_type="application/x-www-form-urlencoded", headers=headers)
    if how == "multipart":
        data = MultiDict([(k, v.decode("latin-1") if isinstance(v, bytes) else v) for k, v in pairs])
        return client.post(path, data=data, content_type="multipart/form-data", headers=headers)
    if how == "json":
        body = json.dumps({k: v.decode("latin-1") if isinstance(v, bytes) else v for k, v in pairs})
        return client.post(path, data=body, content_type="application/json", headers=headers)
    if how in ("text", "none"):
        body = urllib.parse.urlencode([(k, v) for k, v in pairs]).encode() + b"\xff\xfe"
        content_type = "text/plain; charset=utf-8" if how == "text" else None
        return client.post(path, data=body, content_type=content_type, headers=headers)
    # over the limit: the same form, padded
    body = urllib.parse.urlencode([(k, v) for k, v in pairs] + [("notes", "x" * LIMIT)]).encode()
    return client.post(path, data=body, content_type="application/x-www-form-urlencoded", headers=headers)


ACCEPT_LANGUAGE = st.sampled_from(["", "es", "ca-ES,ca;q=0.9", "xx", "*", "en;q=abc", ";;;", "zh-Hant-TW"])


# --- what must hold after every request -----------------------------------------------------------

def assert_page(response):
    """Never a 500; an error is an HTML page with a heading, never a traceback or JSON."""
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    if response.status_code >= 400:
        assert response.mimetype == "text/html"
        text = response.get_data(as_text=True)
        assert "<h1" in text and "Traceback" not in text


def assert_api(response):
    """Never a 500; an error is a JSON object with an error code and a fields object."""
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    if response.status_code >= 400:
        body = response.get_json(silent=True)
        assert isinstance(body, dict) and isinstance(body.get("error"), str) and isinstance(body.get("fields"), dict)


def snapshot(path):
    """Every row the fuzzed routes could touch, by table."""
    conn = dbmod.connect(path)
    try:
        return {table: {row["id"]: row for row in conn[table].rows} for table in ("submissions", "notes", "outbox")}
    finally:
        conn.close()


def assert_whole(path):
    """Every stored screening has all of its fields; notes and notices belong to a stored one."""
    conn = dbmod.connect(path)
    try:
        rows = [dbmod.decode(dict(r)) for r in conn["submissions"].rows]
        ids = {r["id"] for r in rows}
        for r in rows:
            assert REFERENCE_RE.match(r["reference"]), r["reference"]
            assert r["service"] in SLUGS and r["outcome"] in OUTCOMES
            assert r["nonce"] and r["rules_version"] and r["consent_at"] and r["created_at"]
            assert r["name"].strip() and r["contact"].strip()
            assert isinstance(r["answers"], dict) and set(r["answers"]) <= set(QUESTION_IDS)
            assert set(RED_FLAGS) - {"pregnancy_complicated"} <= set(r["answers"])
            assert isinstance(r["fired_rules"], list) and isinstance(r["suggestions"], list)
            assert r["status"] in dbmod.STATUSES and r["decision"] in (None, *DECISIONS)
        for (sid,) in conn.execute("SELECT submission_id FROM notes UNION ALL SELECT submission_id FROM outbox"):
            assert sid in ids
        if conn.engine == "sqlite":      # PostgreSQL checks its pages as it reads them
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()


def sent_value(pairs, how, name):
    """The value the form reads for `name`: the first of repeated form fields, the last of repeated
    JSON keys (Flask-WTF reads a JSON body as the form), nothing from the other bodies."""
    if how in ("urlencoded", "multipart"):
        return next((v for k, v in pairs if k == name), None)
    return dict(pairs).get(name) if how == "json" else None


# --- apps and clients ---------------------------------------------------------------------------------

@pytest.fixture(params=[False, True], ids=["csrf-off", "csrf-on"])
def fuzz_app(make_app, request):
    return make_app(WTF_CSRF_ENABLED=request.param, MAX_CONTENT_LENGTH=LIMIT)


@pytest.fixture
def admin(fuzz_app, make_staff):
    """An admin logged in through the login form, for every example of one test."""
    return logged_in_client(fuzz_app, make_staff, "admin")


def with_token(client, page_path):
    """The csrf_token (when CSRF is on) of a freshly fetched page, as form pairs."""
    token = csrf_token_from(client.get(page_path).get_data(as_text=True))
    return [("csrf_token", token)] if token else []


# --- the public questionnaire -----------------------------------------------------------------------

@FUZZ
@given(slug=st.sampled_from(SLUGS), share=st.sampled_from(["yes", "no"]), data=st.data(),
       language=ACCEPT_LANGUAGE)
def test_public_questionnaire_posts(fuzz_app, slug, share, data, language):
    client = fuzz_app.test_client()
    path = f"/screening/{slug}"
    page = client.get(path).get_data(as_text=True)
    hidden = {n: v for n in ("csrf_token", "nonce") if (v := hidden_value(page, n))}
    base = {**hidden, **all_no(share=share, name="Ana Client", contact="ana@example.org", consent="yes")}
    pairs, how, query = data.draw(form_bodies(base))
    before = snapshot(database_of(fuzz_app))
    response = send(client, path, pairs, how, query, headers={"Accept-Language": language})
    after = snapshot(database_of(fuzz_app))

    assert_page(response)
    assert_whole(database_of(fuzz_app))
    new = [after["submissions"][i] for i in after["submissions"].keys() - before["submissions"].keys()]
    assert before["submissions"].keys() <= after["submissions"].keys()      # a POST never deletes
    text = response.get_data(as_text=True)
    shown = re.findall(r"data-reference>\s*([^<\s]+)", text)
    if new:
        # stored only when the client shared, and the page shows that very screening
        assert len(new) == 1 and sent_value(pairs, how, "share") == "yes"
        assert response.status_code == 200
        stored = new[0]
        assert shown == [stored["reference"]]
        assert f'data-outcome="{stored["outcome"]}"' in text
    elif shown:
        # a reference without a new row: the same form sent again, naming a screening stored before
        assert shown[0] in {row["reference"] for row in after["submissions"].values()}
    if how == "huge":
        assert response.status_code == 413 and not new


# --- GET routes with odd query strings ----------------------------------------------------------------

PUBLIC_GETS = ["/", "/healthz", "/services/back-massage", "/screening/back-massage", "/services/nope",
               "/staff/login"]
STAFF_GETS = ["/staff/", "/staff/export.csv", "/staff/audit", "/staff/rules", "/staff/rules/simulate",
              "/staff/submissions/1", "/staff/submissions/99999999999999999999"]
API_GETS = ["/api/v1/services", "/api/v1/questionnaire/back-massage", "/api/v1/questionnaire/nope",
            "/api/v1/openapi.json"]


@FUZZ
# the 500s issue 6 (item 7) reported, always tried
@example(path="/staff/", query=[("to", "9999-12-31")], language="", raw="")
@example(path="/staff/export.csv", query=[("to", "9999-12-31")], language="", raw="")
@example(path="/staff/audit", query=[("before", "²")], language="", raw="")
@example(path="/staff/", query=[("from", "2026-W49-1"), ("after", "9999-12-31T00:00:00_99999999999999999999")],
         language="", raw="")
@given(path=st.sampled_from(PUBLIC_GETS + STAFF_GETS + API_GETS), query=QUERIES, language=ACCEPT_LANGUAGE,
       raw=st.sampled_from(["", "&", "=&=", "%", "%zz", "a=%ff%fe", "a&a&a", ";", "x=1;y=2"]))
def test_get_routes_with_odd_query_strings(fuzz_app, admin, path, query, language, raw):
    client = admin
    before = snapshot(database_of(fuzz_app))
    response = client.get(f"{path}?{query_string(query)}{raw}", headers={"Accept-Language": language})
    if response.status_code == 200 and path == "/staff/export.csv":
        response.get_data()             # run the streamed export to its end
    (assert_api if path.startswith("/api/") else assert_page)(response)
    assert snapshot(database_of(fuzz_app))["submissions"] == before["submissions"]


# --- the JSON API ------------------------------------------------------------------------------------------

@FUZZ
@given(body=st.binary(max_size=200) | NON_UTF8 | st.just(b"{}") | st.integers(LIMIT + 1, LIMIT + 999).map(
           lambda n: b'{"service": "' + b"x" * n + b'"}'),
       content_type=st.sampled_from(["application/json", "application/json; charset=latin-1", "text/plain",
                                     "application/x-www-form-urlencoded", "multipart/form-data", "",
                                     "application/merge-patch+json"]),
       query=QUERIES)
def test_evaluate_with_any_body_and_content_type(fuzz_app, body, content_type, query):
    before = snapshot(database_of(fuzz_app))
    response = fuzz_app.test_client().post(f"/api/v1/evaluate?{query_string(query)}", data=body,
                                           content_type=content_type or None)
    assert_api(response)
    if len(body) > LIMIT:               # too large, or (not JSON) refused before it is read
        assert response.status_code == 413 or (response.status_code == 415 and "json" not in content_type)
    assert snapshot(database_of(fuzz_app)) == before       # the API stores nothing


# --- staff: login, the submission forms, the simulator ----------------------------------------------

@FUZZ
@given(data=st.data())
def test_staff_login_posts(fuzz_app, make_staff, data):
    client = fuzz_app.test_client()
    token = with_token(client, "/staff/login")
    staff = make_staff() if not hasattr(fuzz_app, "fuzz_staff") else fuzz_app.fuzz_staff
    fuzz_app.fuzz_staff = staff
    base = dict(token) | {"email": staff["email"], "password": "wrong " + staff["password"], "next": "/staff/"}
    pairs, how, query = data.draw(form_bodies(base))
    response = send(client, "/staff/login", pairs, how, query)
    assert_page(response)
    # nobody gets in without the password
    assert response.status_code != 302 or "screening_staff=" not in response.headers.get("Set-Cookie", "")


STAFF_FORMS = {"status": {"status": "reviewed", "decision": "booking_fine"}, "notes": {"body": "Called back."},
               "erase": {"confirm": "y"}}


@FUZZ
@given(form=st.sampled_from(sorted(STAFF_FORMS)), target=st.sampled_from(["existing", "missing", "huge"]),
       data=st.data())
def test_staff_submission_forms(fuzz_app, admin, make_submission, form, target, data):
    client = admin
    sub = make_submission()
    sid = {"existing": sub["number"], "missing": sub["number"] + 1000, "huge": 2**64}[target]
    token = with_token(client, f"/staff/submissions/{sub['number']}")
    pairs, how, query = data.draw(form_bodies(dict(token) | STAFF_FORMS[form]))
    before = snapshot(database_of(fuzz_app))
    response = send(client, f"/staff/submissions/{sid}/{form}", pairs, how, query)
    after = snapshot(database_of(fuzz_app))

    assert_page(response)
    assert_whole(database_of(fuzz_app))
    done = response.status_code == 302
    assert not done or target == "existing"
    if form == "notes":
        new = after["notes"].keys() - before["notes"].keys()
        assert len(new) == int(done)
        for note_id in new:
            body = after["notes"][note_id]["body"]
            assert body == body.strip() and 0 < len(body) <= NOTE_MAX
    elif form == "erase":
        assert (sub["id"] in after["submissions"]) != done
        assert not done or not any(n["submission_id"] == sub["id"] for n in after["notes"].values())
    if not done:                        # a refused form changes nothing
        assert (after["submissions"], after["notes"]) == (before["submissions"], before["notes"])


@FUZZ
@given(logged_in=st.booleans(), data=st.data())
def test_staff_submission_page_posts(fuzz_app, admin, make_submission, logged_in, data):
    """POST /staff/submissions/<id> (the page again with a note carried through a login): the page
    or the login form, never a 500, never a note stored, never a session without the password."""
    sub = make_submission()
    client = admin if logged_in else fuzz_app.test_client()
    page = f"/staff/submissions/{sub['id']}"
    token = with_token(client, page if logged_in else "/staff/login")
    base = dict(token) | {"email": admin.staff["email"], "password": "wrong " + admin.staff["password"],
                          "note": "Called back."}
    pairs, how, query = data.draw(form_bodies(base))
    before = snapshot(database_of(fuzz_app))
    response = send(client, page, pairs, how, query)
    assert_page(response)
    assert snapshot(database_of(fuzz_app))["notes"] == before["notes"]
    assert logged_in or "screening_staff=" not in response.headers.get("Set-Cookie", "")


@FUZZ
@given(slug=st.sampled_from([*SLUGS, "nope", ""]), data=st.data())
def test_staff_rule_simulator_posts(fuzz_app, admin, slug, data):
    client = admin
    token = with_token(client, "/staff/rules/simulate")
    pairs, how, query = data.draw(form_bodies(dict(token) | {"service": slug} | all_no()))
    before = snapshot(database_of(fuzz_app))
    response = send(client, "/staff/rules/simulate", pairs, how, query)
    assert_page(response)
    assert snapshot(database_of(fuzz_app)) == before        # the simulator stores nothing


@FUZZ
@given(data=st.data())
def test_staff_logout_posts(fuzz_app, make_staff, data):
    client = fuzz_app.test_client()
    token = with_token(client, "/staff/login")
    pairs, how, query = data.draw(form_bodies(dict(token)))
    assert_page(send(client, "/staff/logout", pairs, how, query))


# --- what the fuzzing found, kept as plain tests -------------------------------------------------------

@pytest.mark.parametrize("path", ["/screening/back-massage", "/staff/login", "/staff/logout"])
def test_a_multipart_field_whose_name_cannot_be_read_is_a_400_not_a_500(fuzz_app, path):
    """Werkzeug gives such a part the name None; Flask-WTF's token search then raised AttributeError."""
    client = fuzz_app.test_client()
    response = client.post(path, data=MultiDict([("\r", "yes")]), content_type="multipart/form-data")
    assert response.status_code == 400
    assert_page(response)
    assert snapshot(database_of(fuzz_app))["submissions"] == {}
