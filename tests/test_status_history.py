"""What a receptionist needs without opening each screening: the dashboard's contact (a link to
write or call) and decision columns; and on the submission page, who changed its status and
decision, and when (from the audit trail, in the centre's time)."""
import re

import pytest
from conftest import CENTRE, add_centre, login
from flask_babel import force_locale, gettext

from screening.core import reading


def row_of(page, sub):
    return re.search(rf'<tr data-submission="{sub["id"]}">(.*?)</tr>', page, re.S).group(1)


@pytest.mark.parametrize("contact, cell", [
    ("+34 600 000 000", '<a href="tel:+34600000000">+34 600 000 000</a>'),
    ("ana@example.org", '<a href="mailto:ana@example.org">ana@example.org</a>'),
    ("ring the bell", "ring the bell"),
])
def test_each_dashboard_row_shows_the_contact_to_write_or_call(staff_client, make_submission, contact, cell):
    sub = make_submission(contact=contact)
    row = row_of(staff_client.get("/staff/").text, sub)
    assert f'<td data-label="Contact" data-contact>{cell}</td>' in row


def test_each_dashboard_row_shows_the_decision(staff_client, make_submission):
    decided, undecided = make_submission(), make_submission()
    staff_client.post(f"/staff/submissions/{decided['id']}/status", data={"status": "reviewed", "decision": "postpone"})
    page = staff_client.get("/staff/").text
    assert '<td data-label="Decision" data-decision="postpone">Postpone the session</td>' in row_of(page, decided)
    assert '<td data-label="Decision" data-decision="">None yet</td>' in row_of(page, undecided)


def centre_time(iso, zone="Europe/Madrid"):
    moment = reading.local_time(iso, zone)
    return f"{moment:%Y-%m-%d %H:%M} {moment.tzname()}"


def words(html):
    """The text of a piece of HTML, its spaces collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split()).replace(" ,", ",")


def history_of(page):
    return re.findall(r'<li data-history="(\w+)"><p class="note-meta">(.*?)</p>\s*<p>(.*?)</p></li>', page, re.S)


def test_the_submission_page_shows_who_changed_status_and_decision_and_when(app, make_staff, make_submission, db):
    sub = make_submission()
    first, second = make_staff(name="Laia Recepció"), make_staff(name="Pau Massatge")
    for who, data in ((first, {"status": "reviewed", "decision": ""}),
                      (second, {"status": "contacted", "decision": "postpone"}),
                      (first, {"status": "contacted", "decision": "postpone"})):
        client = app.test_client()
        login(client, who["email"], who["password"])
        client.post(f"/staff/submissions/{sub['id']}/status", data=data)
    page = client.get(f"/staff/submissions/{sub['id']}").text
    times = [at for (at,) in db.execute("SELECT at FROM audit_log WHERE action = 'status' ORDER BY id")]
    assert len(times) == 2           # the third post changed nothing
    history = [(kind, words(meta), words(what)) for kind, meta, what in history_of(page)]
    assert history == [
        ("received", centre_time(sub["created_at"]), "Received · Status: New"),
        ("change", f"{centre_time(times[0])}, Laia Recepció", "Status: Reviewed"),
        ("change", f"{centre_time(times[1])}, Pau Massatge", "Status: Contacted · Decision: Postpone the session"),
    ]


def test_the_history_is_in_the_centres_time_zone(make_app, rules_copy, make_staff, make_submission):
    add_centre(rules_copy, "canarias", name="Centre Canàries", timezone="Atlantic/Canary")
    app = make_app(RULES_DIR=str(rules_copy), DEFAULT_CENTRE=CENTRE)
    sub = make_submission(centre="canarias")
    client = app.test_client()
    member = make_staff(centre="canarias")
    login(client, member["email"], member["password"])
    client.post(f"/staff/submissions/{sub['id']}/status", data={"status": "closed", "decision": ""})
    [received, change] = history_of(client.get(f"/staff/submissions/{sub['id']}").text)
    assert words(received[1]) == centre_time(sub["created_at"], "Atlantic/Canary")
    assert re.search(r"\d\d:\d\d WES?T, ", words(change[1]))


@pytest.mark.parametrize("lang", ["ca", "es"])
def test_the_history_and_the_new_columns_are_in_the_staff_members_language(app, staff_client, make_submission, lang):
    sub = make_submission()
    with app.test_request_context(), force_locale(lang):
        texts = [gettext("Status history"), gettext("Contact"), gettext("Decision")]
    assert "Status history" not in texts
    detail = staff_client.get(f"/staff/submissions/{sub['id']}?lang={lang}").text
    dashboard = staff_client.get(f"/staff/?lang={lang}").text
    assert f'<h3 id="history-title">{texts[0]}</h3>' in detail
    assert f'<th scope="col">{texts[1]}</th>' in dashboard and f'<th scope="col">{texts[2]}</th>' in dashboard
