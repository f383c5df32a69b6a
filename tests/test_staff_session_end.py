"""When a staff session ends during a POST: a typed note comes back after the login (carried by the
login form, never by a URL or the cookie session), the login leads back to the page the form was
on (not to its POST-only action), and staff error pages lead to the dashboard. Also the locked
login's Retry-After."""
from datetime import UTC, datetime, timedelta

import pytest
from conftest import csrf_token_from, login
from flask_babel import force_locale, gettext

NOTE = "Called her: prefers Tuesdays.\nLeft knee <b>sore</b> & stiff"
ESCAPED = "Called her: prefers Tuesdays.\nLeft knee &lt;b&gt;sore&lt;/b&gt; &amp; stiff"    # as HTML holds it


@pytest.fixture
def member(csrf_app, make_staff):
    """A member logged in on the app with CSRF protection on, as in production."""
    client = csrf_app.test_client()
    client.staff = make_staff()
    assert login(client, client.staff["email"], client.staff["password"]).status_code == 302
    return client


def end_sessions(db):
    """Every staff session has been idle for longer than the limit."""
    db.execute("UPDATE staff_sessions SET last_seen_at = ?",
               [(datetime.now(UTC) - timedelta(hours=2)).isoformat(timespec="microseconds")])


def notes(db):
    return [row[0] for row in db.execute("SELECT body FROM notes")]


def test_a_note_posted_after_the_session_ended_comes_back_typed_in_after_the_login(member, make_submission, db):
    sub = make_submission()
    page = f"/staff/submissions/{sub['id']}"
    token = csrf_token_from(member.get(page).text)
    end_sessions(db)

    refused = member.post(f"{page}/notes", data={"body": NOTE, "csrf_token": token})
    assert refused.status_code == 401 and notes(db) == []
    assert 'name="password"' in refused.text and "Your session ended, so your note was not added yet" in refused.text
    assert f'action="{page}"' in refused.text
    assert f'name="note" value="{ESCAPED}"' in refused.text
    assert "Location" not in refused.headers
    assert "Tuesdays" not in refused.headers.get("Set-Cookie", "")

    back = member.post(page, data={"email": member.staff["email"], "password": member.staff["password"],
                                   "note": NOTE, "csrf_token": csrf_token_from(refused.text)})
    assert back.status_code == 200 and "screening_staff=" in back.headers["Set-Cookie"]
    assert "Tuesdays" not in back.headers["Set-Cookie"]
    assert f'data-reference="{sub["reference"]}"' in back.text
    assert "Your note is back in the note box. It is not added yet" in back.text
    assert f">{ESCAPED}</textarea>" in back.text
    assert notes(db) == []              # not saved until the member sends it again
    fresh = csrf_token_from(back.text)
    assert fresh != token

    added = member.post(f"{page}/notes", data={"body": NOTE, "csrf_token": fresh})
    assert added.status_code == 302 and notes(db) == [NOTE]


def test_a_wrong_password_keeps_the_carried_note(member, make_submission, db):
    sub = make_submission()
    page = f"/staff/submissions/{sub['id']}"
    token = csrf_token_from(member.get(page).text)
    end_sessions(db)
    refused = member.post(f"{page}/notes", data={"body": NOTE, "csrf_token": token})
    again = member.post(page, data={"email": member.staff["email"], "password": "not the password",
                                    "note": NOTE, "csrf_token": csrf_token_from(refused.text)})
    assert again.status_code == 401 and "screening_staff=" not in again.headers.get("Set-Cookie", "")
    assert "Email or password is wrong" in again.text and 'name="note" value="Called her' in again.text
    assert notes(db) == []


def test_a_stranger_posting_to_a_submission_page_sees_only_the_login_form(client, make_submission, db):
    sub = make_submission(name="Zebedee Canary")
    response = client.post(f"/staff/submissions/{sub['id']}", data={"note": "hello"})
    assert response.status_code == 401 and 'name="password"' in response.text
    assert "Zebedee" not in response.text and sub["reference"] not in response.text


@pytest.mark.parametrize("action, data", [("status", {"status": "closed"}), ("erase", {"confirm": "y"}),
                                          ("notes", {"body": "  "})])
def test_other_posts_after_the_session_ended_lead_back_to_the_page_the_form_was_on(
        member, make_submission, db, action, data):
    sub = make_submission()
    page = f"/staff/submissions/{sub['id']}"
    token = csrf_token_from(member.get(page).text)
    end_sessions(db)
    refused = member.post(f"{page}/{action}", data={**data, "csrf_token": token})
    assert refused.status_code == 302 and refused.headers["Location"] == f"/staff/login?next={page}"
    assert login(member, member.staff["email"], member.staff["password"], next=page).headers["Location"] == page
    assert db.execute("SELECT status FROM submissions").fetchone()[0] == "new"


@pytest.mark.parametrize("url, method, status", [("/staff/no-such-page", "GET", 404),
                                                 ("/staff/submissions/1/notes", "GET", 405),
                                                 ("/staff/submissions/999999", "GET", 404)])
def test_staff_error_pages_lead_to_the_dashboard(staff_client, url, method, status):
    response = staff_client.open(url, method=method)
    assert response.status_code == status
    assert '<a href="/staff/" data-staff-home>All shared screenings</a>' in response.text
    assert "See the services" not in response.text


@pytest.mark.parametrize("lang", ["ca", "es"])
def test_staff_error_pages_lead_to_the_dashboard_in_every_language(app, staff_client, lang):
    with app.test_request_context(), force_locale(lang):
        words = gettext("All shared screenings")
    assert words != "All shared screenings"
    response = staff_client.get(f"/staff/no-such-page?lang={lang}")
    assert f"data-staff-home>{words}</a>" in response.text


def test_public_error_pages_still_lead_to_the_services(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404 and "See the services" in response.text
    assert "data-staff-home" not in response.text


def test_a_locked_login_says_when_to_come_back(make_app, make_staff):
    """The first refusal lasts a minute after the last failure (accounts.FIRST_DELAY)."""
    app = make_app(LOGIN_MAX_FAILURES=2, LOGIN_LOCK_MINUTES=7)
    staff = make_staff()
    client = app.test_client()
    for _ in range(2):
        assert "Retry-After" not in login(client, staff["email"], "wrong guess").headers
    response = login(client, staff["email"], staff["password"])
    assert response.status_code == 429 and 0 < int(response.headers["Retry-After"]) <= 60
