"""The audit trail page: admins only, newest first, paged, filtered by reference."""
import re

from conftest import CENTRE

from screening.store import db as dbmod

ROW_RE = re.compile(r'<tr data-audit="([^"]+)" data-action="(\w+)">(.*?)</tr>', re.S)


def entries(response):
    return ROW_RE.findall(response.get_data(as_text=True))


def older_link(response):
    m = re.search(r'<a rel="next" href="([^"]+)"', response.get_data(as_text=True))
    return m.group(1).replace("&amp;", "&") if m else None


def test_admins_see_who_did_what_newest_first(admin_client, staff_client, make_submission):
    sub = make_submission()
    staff_client.get(f"/staff/submissions/{sub['id']}")
    staff_client.post(f"/staff/submissions/{sub['id']}/status", data={"status": "reviewed", "decision": ""})
    staff_client.post(f"/staff/submissions/{sub['id']}/notes", data={"body": "private words"})
    staff_client.get("/staff/export.csv?outcome=proceed")
    response = admin_client.get("/staff/audit")
    assert response.status_code == 200
    rows = entries(response)
    actions = [action for _, action, _ in rows if action in ("view", "status", "note", "export")]
    assert actions == ["export", "note", "status", "view"]
    status_row = next(html for _, action, html in rows if action == "status")
    assert staff_client.staff["email"] in status_row.replace("<wbr>", "")   # may break before its @
    assert sub["reference"] in status_row
    assert "Changed status to Reviewed" in status_row
    assert "private words" not in response.get_data(as_text=True)


def test_staff_who_are_not_admins_get_403_and_no_link(staff_client, admin_client):
    assert staff_client.get("/staff/audit").status_code == 403
    assert 'href="/staff/audit"' not in staff_client.get("/staff/").get_data(as_text=True)
    assert 'href="/staff/audit"' in admin_client.get("/staff/").get_data(as_text=True)


def test_strangers_are_sent_to_log_in(client):
    response = client.get("/staff/audit")
    assert response.status_code == 302 and response.headers["Location"].startswith("/staff/login")


def test_it_filters_by_reference_however_it_is_typed(admin_client, make_submission):
    wanted, other = make_submission(), make_submission()
    admin_client.get(f"/staff/submissions/{wanted['id']}")
    admin_client.get(f"/staff/submissions/{other['id']}")
    typed = wanted["reference"].lower().replace("-", " ")
    response = admin_client.get("/staff/audit", query_string={"reference": typed})
    rows = entries(response)
    assert len(rows) == 1
    assert wanted["reference"] in rows[0][2] and other["reference"] not in response.get_data(as_text=True)


def test_a_reference_that_cannot_be_one_is_refused_at_the_field(admin_client):
    response = admin_client.get("/staff/audit?reference=not-a-ref")
    assert response.status_code == 400
    assert '<p class="error-message" id="reference-error">' in response.get_data(as_text=True)
    assert admin_client.get("/staff/audit?before=abc").status_code == 400


def test_it_pages_through_every_entry_once(admin_client, make_submission, db):
    sub = make_submission()
    for _ in range(120):
        admin_client.get(f"/staff/submissions/{sub['id']}")
    all_ids = [r[0] for r in db.execute("SELECT at FROM audit_log ORDER BY at DESC, id DESC").fetchall()]
    seen, url = [], "/staff/audit"
    while url:
        response = admin_client.get(url)
        page = [i for i, _, _ in entries(response)]
        assert len(page) <= 50
        seen += page
        url = older_link(response)
    # the pages themselves are not audited, so the trail did not grow while we read it
    assert seen == all_ids


import pytest  # noqa: E402


def what(html):
    """The 'What' cell of an audit row (the third)."""
    return re.findall(r"<td[^>]*>(.*?)</td>", html, re.S)[2].strip()


@pytest.mark.parametrize(("lang", "words"), [
    ("en", ["Exported 2 shared screenings", "Changed decision to Postpone the session",
            "Changed status to Contacted; Changed decision to Adapt the session", "Viewed"]),
    ("ca", ["Ha exportat 2 qüestionaris rebuts", "Ha canviat la decisió a «Ajornar la sessió»",
            "Ha canviat l'estat a «Contactat»; Ha canviat la decisió a «Adaptar la sessió»",
            "Ha consultat el qüestionari"]),
    ("es", ["Ha exportado 2 cuestionarios recibidos", "Ha cambiado la decisión a «Aplazar la sesión»",
            "Ha cambiado el estado a «Contactado»; Ha cambiado la decisión a «Adaptar la sesión»",
            "Ha consultado el cuestionario"]),
])
def test_entries_read_as_sentences_in_the_staff_members_language(admin_client, make_submission, lang, words):
    sub = make_submission(outcome="tell_centre")
    make_submission(outcome="tell_centre")
    make_submission(outcome="proceed")
    admin_client.get(f"/staff/submissions/{sub['id']}")
    url = f"/staff/submissions/{sub['id']}/status"
    admin_client.post(url, data={"status": "contacted", "decision": "adapt_session"})
    admin_client.post(url, data={"status": "contacted", "decision": "postpone"})
    admin_client.get("/staff/export.csv?outcome=tell_centre")
    rows = entries(admin_client.get(f"/staff/audit?lang={lang}"))
    said = [what(html).replace("&#39;", "'") for _, action, html in rows if action in ("view", "status", "export")]
    assert said == words


def test_an_export_says_how_many_and_which_filter_in_words(admin_client, make_submission):
    make_submission(outcome="tell_centre")
    admin_client.get("/staff/export.csv?outcome=tell_centre&status=new")
    [(_, _, html)] = [r for r in entries(admin_client.get("/staff/audit?lang=es")) if r[1] == "export"]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", html, re.S)
    assert "Ha exportado 1 cuestionario recibido" in cells[2]
    assert "resultado: Avisa al centro" in cells[4]
    assert "estado: Nuevo" in cells[4]


def test_entries_written_before_the_words_still_read(db, admin_client):
    db.execute("INSERT INTO audit_log (at, action, detail, centre)"
               " VALUES ('2026-01-01T00:00:00+00:00', 'export', ?, ?)",
               ['{"outcome": "proceed"}', CENTRE])
    db.execute("INSERT INTO audit_log (at, action, detail, centre)"
               " VALUES ('2026-01-01T00:00:01+00:00', 'purge', ?, ?)",
               ["12 submissions older than 180 days", CENTRE])
    db.conn.commit()
    said = {action: what(html) for _, action, html in entries(admin_client.get("/staff/audit"))}
    assert said["export"] == "Exported to a spreadsheet"
    assert said["purge"] == "Deleted shared screenings older than 180 days: 12"


@pytest.mark.parametrize(("lang", "one_day", "days"), [("en", "1 day", "1 days"), ("ca", "1 dia", "1 dies"),
                                                      ("es", "1 día", "1 días")])
def test_a_purge_entry_says_day_or_days_as_the_number_asks(db, admin_client, lang, one_day, days):
    db.execute("INSERT INTO audit_log (at, action, detail, centre) VALUES ('2026-01-01T00:00:00+00:00', 'purge', ?, ?)",
               ["11 submissions older than 1 days", CENTRE])
    db.conn.commit()
    [said] = [what(html) for _, action, html in entries(admin_client.get(f"/staff/audit?lang={lang}"))
              if action == "purge"]
    assert one_day in said and days not in said and "11" in said
    assert lang != "ca" or not re.search(r"\bde 1\b", said)     # Catalan writes "d'1": no "de" before it


@pytest.mark.parametrize("before", ["²", "١٢", "1_000", " 12", "12 ", "+12", "-1", "0", "9" * 19,
                                    str(2**63), "0x10", "1e3"])
def test_a_page_link_that_is_not_a_plain_bounded_number_is_refused_at_the_field(admin_client, before):
    response = admin_client.get("/staff/audit", query_string={"before": before})
    assert response.status_code == 400
    assert '<p class="error-message" id="before-error">' in response.get_data(as_text=True)
    assert '<a href="#before">' in response.get_data(as_text=True) and 'id="before"' in response.get_data(as_text=True)


def test_a_cursor_far_in_the_future_is_a_usable_page_link(admin_client, make_submission):
    make_submission()
    admin_client.get("/staff/")
    response = admin_client.get("/staff/audit", query_string={"before": "9999-12-31T23:59:59.999999+00:00~0"})
    assert response.status_code == 200
    assert entries(response)


@pytest.mark.parametrize("before", ["2026-13-45T10:00:00.000000+00:00~0", "2026-12-03T10:00:00+00:00~9999999",
                                    "2026-12-03T10:00:00+00:00", "12345", "2026-12-03T10:00:00+00:00~-1"])
def test_a_cursor_that_is_not_one_is_refused(admin_client, before):
    assert admin_client.get("/staff/audit", query_string={"before": before}).status_code == 400


def test_entries_of_one_instant_are_each_shown_once_across_pages(admin_client, db):
    """Ties on the time (a purge and its entries, say) straddle a page break without loss or repeat."""
    with dbmod.immediate(db):
        for n in range(130):
            second = f"09:{n // 120:02d}:{n // 2 % 60:02d}"
            at = f"2026-12-01T{'10:00:00' if n % 2 else second}.000000+00:00"
            db.execute("INSERT INTO audit_log (at, action, centre, staff_email) VALUES (?, 'view', ?, ?)",
                       [at, CENTRE, f"s{n}@example.org"])
    expected = [r[0] for r in db.execute("SELECT staff_email FROM audit_log WHERE centre = ? AND staff_email"
                                         " LIKE 's%' ORDER BY at DESC, id DESC", [CENTRE]).fetchall()]
    seen, url, pages = [], "/staff/audit", 0
    while url:
        response = admin_client.get(url)
        assert response.status_code == 200
        seen += re.findall(r"(s\d+)<wbr>@example\.org", response.get_data(as_text=True))
        url, pages = older_link(response), pages + 1
    assert pages == 3 and seen == [e.split("@")[0] for e in expected]


def test_another_centres_activity_changes_nothing_on_a_centres_audit_page(admin_client, make_submission, db):
    """No installation-wide row id on the page (in an attribute or a link): an admin could read from
    it how busy the other centres are."""
    for _ in range(60):
        admin_client.get(f"/staff/submissions/{make_submission()['id']}")
    before = [admin_client.get("/staff/audit").get_data(as_text=True)]
    before.append(admin_client.get(older_link(admin_client.get("/staff/audit"))).get_data(as_text=True))
    with dbmod.immediate(db):
        for _ in range(500):
            dbmod.audit(db, action="view", centre="another-centre")
    after = [admin_client.get("/staff/audit").get_data(as_text=True)]
    after.append(admin_client.get(older_link(admin_client.get("/staff/audit"))).get_data(as_text=True))
    strip = lambda html: re.sub(r'name="csrf_token" value="[^"]+"', "", html)  # noqa: E731
    assert [strip(h) for h in after] == [strip(h) for h in before]
