"""Health answers stay where the client put them: never in logs, URLs, the cookie session or caches,
and a check-only screening leaves no trace in the database.

A canary string goes into every free-text field (name, contact, notes); every log record, every
header, every link and the session cookie are searched for it.
"""
import logging
import re
import threading

import pytest
from conftest import all_no, database_of
from helpers_server import Browser, form_fields, references
from werkzeug.serving import make_server

from screening.core import engine
from screening.store import db as dbmod

CANARY = "Zq9canaryXw"
SLUG = "decontracting-back-massage"
FORM = f"/screening/{SLUG}"
QUESTION_IDS = ["intense_pain", "persistent_pain", "recent_injury", "radiating_pain", "tingling_or_weakness",
                "spinal_condition", "fever", "skin_problem_in_area", "pregnant", "pregnancy_complicated",
                "ongoing_diagnosis", "professional_cleared", "tension_areas", "preferred_intensity", "notes"]


def canary_answers(**overrides):
    """Answers whose every free-text field carries the canary; a red flag so the outcome is not the default."""
    answers = all_no(intense_pain="yes", professional_cleared="no", notes=f"my shoulder {CANARY} hurts",
                     name=f"Ana {CANARY}", contact=f"{CANARY.lower()}@example.org", consent="yes",
                     nonce="canary-nonce-" + "x" * 16)
    answers.update(overrides)
    return answers


SUBMISSIONS = {
    "check_only": canary_answers(share="no"),
    "shared": canary_answers(share="yes"),
    "refused_missing_answer": canary_answers(share="yes", fever=""),
    "refused_bad_contact": canary_answers(share="yes", contact=f"{CANARY} not a contact"),
}


@pytest.fixture
def all_logs(caplog, app):
    """Capture every log record at DEBUG, from every logger that exists once the app is built."""
    caplog.set_level(logging.DEBUG)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            caplog.set_level(logging.DEBUG, logger=name)
    caplog.set_level(logging.DEBUG, logger="werkzeug")
    return caplog


def logged_text(caplog, capfd):
    """Everything logged or printed: formatted records with their tracebacks, and raw stdout/stderr."""
    handler = logging.Formatter("%(name)s %(levelname)s %(message)s")
    records = "\n".join(handler.format(r) for r in caplog.records)
    out, err = capfd.readouterr()
    return records + out + err


def table_counts(conn):
    """Row counts of every table in the database."""
    tables = conn.table_names()        # every table, the engine's own bookkeeping and indexes included
    return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


def urls_in(page):
    """Every link, form target and resource address in a page."""
    return re.findall(r'(?:href|src|action)\s*=\s*"([^"]*)"', page)


def assert_no_answers_in(url):
    assert CANARY.lower() not in url.lower()
    assert not any(f"{qid}=" in url for qid in QUESTION_IDS)
    assert "outcome" not in url and "reference" not in url


@pytest.mark.parametrize("kind", SUBMISSIONS)
def test_no_free_text_answer_reaches_the_logs(client, all_logs, capfd, kind):
    response = client.post(FORM, data=SUBMISSIONS[kind])
    assert response.status_code == (422 if kind.startswith("refused") else 200)
    if kind.startswith("refused"):
        assert CANARY in response.text    # the client gets their own text back to fix it; the logs never do
    assert CANARY not in logged_text(all_logs, capfd)


def test_the_canary_never_reaches_the_logs_of_a_refused_or_failed_share(client, db, all_logs, capfd):
    if db.engine == "sqlite":
        db.execute("CREATE TRIGGER refuse BEFORE INSERT ON submissions BEGIN SELECT RAISE(ABORT, 'full'); END")
    else:
        db.execute("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql"
                   " AS $$ BEGIN RAISE EXCEPTION 'full'; END $$")
        db.execute("CREATE TRIGGER refuse BEFORE INSERT ON submissions FOR EACH ROW EXECUTE FUNCTION refuse()")
    assert client.post(FORM, data=SUBMISSIONS["shared"]).status_code == 503
    assert client.post("/api/v1/evaluate", json={"service": SLUG, "answers": {"notes": CANARY}}).status_code == 422
    text = logged_text(all_logs, capfd)
    assert "storage failure" in text            # the failure itself is logged...
    assert CANARY not in text                   # ...but not what the client wrote


def test_an_unexpected_error_logs_where_it_happened_but_not_the_answers(client, all_logs, capfd, monkeypatch):
    def broken(ruleset, service, answers):
        raise ValueError(f"cannot evaluate {answers!r}")   # a bug whose message quotes the answers
    monkeypatch.setattr(engine, "evaluate", broken)
    response = client.post(FORM, data=SUBMISSIONS["check_only"])
    assert response.status_code == 500
    assert CANARY not in response.text
    text = logged_text(all_logs, capfd)
    assert "ValueError" in text and FORM in text
    assert CANARY not in text


@pytest.mark.slow
def test_the_request_log_of_a_real_server_holds_no_answers(app, all_logs, capfd):
    """The embedded server (werkzeug, what `flask run` uses) logs one line per request."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        browser = Browser(f"http://127.0.0.1:{server.server_port}")
        for kind in SUBMISSIONS:
            page = browser.get(FORM)
            response = browser.post(FORM, form_fields(page.text, {**SUBMISSIONS[kind], "nonce": f"nonce-{kind}" * 2}))
            assert response.status in (200, 422)
    finally:
        server.shutdown()
        thread.join()
    text = logged_text(all_logs, capfd)
    assert f"POST {FORM}" in text               # the request log was captured
    assert CANARY not in text


@pytest.mark.parametrize("kind", SUBMISSIONS)
def test_no_answer_appears_in_a_url_or_header(client, kind):
    response = client.post(FORM, data=SUBMISSIONS[kind])
    assert "Location" not in response.headers                # the result is the POST's response, not a redirect
    for name, value in response.headers.items():
        assert CANARY.lower() not in value.lower(), name
    for url in urls_in(response.text):
        assert_no_answers_in(url)


@pytest.mark.parametrize("kind", SUBMISSIONS)
def test_results_and_refused_forms_are_never_cached(client, kind):
    response = client.post(FORM, data=SUBMISSIONS[kind])
    assert "no-store" in response.headers["Cache-Control"]


def test_the_questionnaire_form_posts_to_itself_without_answers_in_the_address(client):
    page = client.get(FORM).text
    assert re.search(r'<form[^>]*method="post"', page)
    for url in urls_in(page):
        assert_no_answers_in(url)


@pytest.mark.parametrize("kind", ["check_only", "shared"])
def test_nothing_of_the_answers_or_the_outcome_is_in_the_cookie_session(csrf_app, kind):
    client = csrf_app.test_client()
    page = client.get(FORM).text
    response = client.post(FORM, data=form_fields(page, SUBMISSIONS[kind]))
    assert response.status_code == 200
    cookie = client.get_cookie(csrf_app.config["SESSION_COOKIE_NAME"])
    session = csrf_app.session_interface.get_signing_serializer(csrf_app).loads(cookie.value) if cookie else {}
    assert set(session) <= {"csrf_token"}
    dumped = repr(session) + (cookie.value if cookie else "")
    assert CANARY not in dumped and "consult_professional" not in dumped
    for reference in references(response.text):
        assert reference not in dumped
    for header in response.headers.getlist("Set-Cookie"):
        assert CANARY not in header


@pytest.mark.parametrize("kind", ["check_only", "refused_missing_answer", "refused_bad_contact"])
def test_check_only_and_refused_forms_store_nothing_anywhere(client, app, kind):
    conn = dbmod.connect(database_of(app))
    try:
        before = table_counts(conn)
        response = client.post(FORM, data=SUBMISSIONS[kind])
        assert response.status_code in (200, 422)
        assert table_counts(conn) == before
        engine = conn.engine
        if engine == "sqlite":
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    if engine != "sqlite":      # the files below are SQLite's; PostgreSQL's tables counted nothing new
        return
    # not even in free pages or the write-ahead log
    for suffix in ("", "-wal", "-shm"):
        path = database_of(app) + suffix
        try:
            data = open(path, "rb").read()
        except FileNotFoundError:
            continue
        assert CANARY.encode() not in data


def test_a_shared_screening_is_the_only_one_that_stores_and_it_says_so(client, app):
    conn = dbmod.connect(database_of(app))
    try:
        before = table_counts(conn)
        response = client.post(FORM, data=SUBMISSIONS["shared"])
        after = table_counts(conn)
    finally:
        conn.close()
    assert response.status_code == 200 and len(references(response.text)) == 1
    assert after["submissions"] == before["submissions"] + 1
