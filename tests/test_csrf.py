"""CSRF on, as in production: a forged, missing or expired token stores nothing, and the client gets
the questionnaire back with the answers kept and a fresh token, so that sending again just works."""
import pytest
from conftest import all_no, login
from helpers_server import checked_inputs, hidden_value, references
from itsdangerous import TimestampSigner

from screening.store import db as dbmod

SLUG = "decontracting-back-massage"
FORM = f"/screening/{SLUG}"
NOTES = "Left shoulder <tight> since Monday & more"


@pytest.fixture
def client(csrf_app):
    return csrf_app.test_client()


@pytest.fixture
def conn(csrf_app):
    conn = dbmod.connect(csrf_app.config["DATABASE"])
    yield conn
    conn.close()


def rows(conn):
    """Rows in every table a screening could leave a trace in."""
    return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("submissions", "outbox", "audit_log")}


def answers():
    """A shared screening with answers that differ from the defaults, to see them come back."""
    return all_no(intense_pain="yes", fever="not_sure", professional_cleared="no", tension_areas=["neck", "lumbar"],
                  preferred_intensity="firm", notes=NOTES, share="yes", name="Ana Client",
                  contact="ana@example.org", consent="yes")


def open_form(client):
    """GET the questionnaire; return its (csrf_token, nonce)."""
    page = client.get(FORM)
    assert page.status_code == 200
    return hidden_value(page.text, "csrf_token"), hidden_value(page.text, "nonce")


def assert_answers_kept(page):
    """The refused page shows what was posted, checked and filled in."""
    chosen = checked_inputs(page)
    for expected in [("intense_pain", "yes"), ("fever", "not_sure"), ("professional_cleared", "no"),
                     ("tension_areas", "neck"), ("tension_areas", "lumbar"), ("preferred_intensity", "firm"),
                     ("share", "yes"), ("consent", "yes"), ("radiating_pain", "no")]:
        assert expected in chosen
    assert ("tension_areas", "thoracic") not in chosen
    assert "Left shoulder &lt;tight&gt; since Monday &amp; more" in page
    assert 'value="Ana Client"' in page and 'value="ana@example.org"' in page


def test_the_form_with_its_own_token_is_accepted_and_stored(client, conn):
    token, nonce = open_form(client)
    assert token and nonce
    response = client.post(FORM, data={**answers(), "csrf_token": token, "nonce": nonce})
    assert response.status_code == 200
    assert 'data-outcome="consult_professional"' in response.text
    assert len(references(response.text)) == 1
    assert rows(conn)["submissions"] == 1


def another_visitors_token(csrf_app):
    """A valid token, but of someone else's session."""
    other = csrf_app.test_client()
    page = other.get(FORM).text
    return hidden_value(page, "csrf_token")


@pytest.mark.parametrize("kind", ["missing", "forged", "another_visitors"])
def test_a_bad_token_stores_nothing_and_gives_the_answers_back_with_a_fresh_token(client, csrf_app, conn, kind):
    token, nonce = open_form(client)
    before = rows(conn)
    data = {**answers(), "nonce": nonce}
    if kind == "forged":
        data["csrf_token"] = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
    elif kind == "another_visitors":
        data["csrf_token"] = another_visitors_token(csrf_app)

    refused = client.post(FORM, data=data)

    assert refused.status_code == 400
    assert "data-reference" not in refused.text and "data-outcome" not in refused.text
    assert rows(conn) == before
    assert "Nothing was stored" in refused.text
    assert_answers_kept(refused.text)
    fresh = hidden_value(refused.text, "csrf_token")
    assert fresh and fresh != data.get("csrf_token")
    assert hidden_value(refused.text, "nonce") == nonce

    # sending the re-shown form again is all the client has to do
    again = client.post(FORM, data={**answers(), "csrf_token": fresh, "nonce": nonce})
    assert again.status_code == 200 and len(references(again.text)) == 1
    assert rows(conn)["submissions"] == before["submissions"] + 1


def later_clock(monkeypatch, seconds):
    """Make itsdangerous (which signs and checks Flask-WTF's tokens) see a clock `seconds` ahead."""
    real = TimestampSigner.get_timestamp
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: real(self) + seconds)


def test_an_expired_token_stores_nothing_and_keeps_the_answers(client, csrf_app, conn, monkeypatch):
    token, nonce = open_form(client)
    before = rows(conn)
    later_clock(monkeypatch, csrf_app.config["WTF_CSRF_TIME_LIMIT"] + 60)

    refused = client.post(FORM, data={**answers(), "csrf_token": token, "nonce": nonce})

    assert refused.status_code == 400
    assert "This page had expired" in refused.text
    assert "data-reference" not in refused.text and "data-outcome" not in refused.text
    assert rows(conn) == before
    assert_answers_kept(refused.text)
    again = client.post(FORM, data={**answers(), "csrf_token": hidden_value(refused.text, "csrf_token"),
                                    "nonce": hidden_value(refused.text, "nonce")})
    assert again.status_code == 200 and len(references(again.text)) == 1


def test_a_token_still_within_its_time_limit_is_accepted(client, csrf_app, conn, monkeypatch):
    token, nonce = open_form(client)
    later_clock(monkeypatch, csrf_app.config["WTF_CSRF_TIME_LIMIT"] - 60)
    response = client.post(FORM, data={**answers(), "csrf_token": token, "nonce": nonce})
    assert response.status_code == 200 and rows(conn)["submissions"] == 1


def test_check_only_without_a_token_is_refused_too(client, conn):
    open_form(client)
    refused = client.post(FORM, data=all_no(share="no"))
    assert refused.status_code == 400
    assert "data-outcome" not in refused.text
    assert rows(conn) == {"submissions": 0, "outbox": 0, "audit_log": 0}


def test_a_bad_token_on_an_unknown_service_is_a_plain_400_page(client):
    response = client.post("/screening/no-such-service", data=all_no())
    assert response.status_code == 400
    assert "This page has expired" in response.text and "data-outcome" not in response.text


def test_the_json_api_needs_no_token_because_it_takes_no_cookies(client):
    response = client.post("/api/v1/evaluate", json={"service": SLUG, "answers": {
        "intense_pain": False, "persistent_pain": False, "recent_injury": False, "radiating_pain": False,
        "tingling_or_weakness": False, "spinal_condition": False, "fever": False, "skin_problem_in_area": False,
        "ongoing_diagnosis": False, "pregnant": False}})
    assert response.status_code == 200
    assert response.get_json()["outcome"] == "proceed"


# --- the CSRF secret is renewed at login and at logout ------------------------------------------------

def count_notes(conn):
    return conn.execute("SELECT count(*) FROM notes").fetchone()[0]


def test_a_token_from_a_public_page_before_login_is_refused_on_staff_forms_after_it(client, make_staff,
                                                                                   make_submission, conn):
    submission = make_submission()
    before_login, _ = open_form(client)
    staff = make_staff()
    assert login(client, staff["email"], staff["password"]).status_code == 302
    note = f"/staff/submissions/{submission['id']}/notes"

    refused = client.post(note, data={"body": "Called back", "csrf_token": before_login})

    assert refused.status_code == 400 and count_notes(conn) == 0
    fresh = hidden_value(client.get(f"/staff/submissions/{submission['id']}").text, "csrf_token")
    assert fresh and fresh != before_login
    assert client.post(note, data={"body": "Called back", "csrf_token": fresh}).status_code == 302
    assert count_notes(conn) == 1


def test_a_token_from_a_staff_page_before_logout_is_refused_after_it(client, make_staff):
    staff = make_staff()
    assert login(client, staff["email"], staff["password"]).status_code == 302
    before_logout = hidden_value(client.get("/staff/").text, "csrf_token")
    assert client.post("/staff/logout", data={"csrf_token": before_logout}).status_code == 302

    again = client.post("/staff/login", data={"email": staff["email"], "password": staff["password"],
                                              "csrf_token": before_logout})

    assert again.status_code == 400 and client.get_cookie("screening_staff", path="/staff") is None
    assert login(client, staff["email"], staff["password"]).status_code == 302   # the page's new token works
