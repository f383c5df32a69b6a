"""The audit trail page: admins only, newest first, paged, filtered by reference, who did it, action and
days; every action in words; each filter read from an index."""
import html as htmllib
import re
from datetime import date, timedelta

from conftest import CENTRE, login

from screening.core.reading import AUDIT_ACTIONS
from screening.store import accounts, review
from screening.store import db as dbmod
from screening.web import auth, staff

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


# --- filters: who did it, what, which days (combined with the reference and the page links) ----------


def member_options(response):
    """The "who" filter's choices as the page offers them: {text shown: value sent}."""
    select = re.search(r'<select id="member".*?</select>', response.get_data(as_text=True), re.S).group(0)
    return {htmllib.unescape(text).strip(): value
            for value, text in re.findall(r'<option value="([^"]*)"[^>]*>(.*?)</option>', select, re.S)}


def handle_of(client, email):
    """The value the "who" filter sends for the account with this e-mail, read from the page."""
    [value] = [v for text, v in member_options(client.get("/staff/audit")).items() if email in text]
    return value


def who(rows):
    return [re.findall(r"<td[^>]*>(.*?)</td>", html, re.S)[1].replace("<wbr>", "") for _, _, html in rows]


def field_error(response, field):
    """The message shown at a field, or None."""
    m = re.search(rf'<p class="error-message" id="{field}-error">(.*?)</p>', response.get_data(as_text=True), re.S)
    return m and re.sub(r"<span class=\"visually-hidden\">.*?</span>", "", m.group(1)).strip()


def test_it_filters_by_who_did_it_chosen_from_the_centres_accounts(admin_client, staff_client, make_submission):
    sub = make_submission()
    staff_client.get(f"/staff/submissions/{sub['id']}")
    admin_client.get(f"/staff/submissions/{sub['id']}")
    options = member_options(admin_client.get("/staff/audit"))
    assert any(staff_client.staff["email"] in text for text in options)
    # the choice names the account by a handle, never its id or e-mail
    value = handle_of(admin_client, staff_client.staff["email"])
    assert value != str(staff_client.staff["id"]) and "@" not in value and len(value) == 16
    response = admin_client.get("/staff/audit", query_string={"member": value})
    assert response.status_code == 200
    rows = entries(response)
    assert rows and set(who(rows)) == {staff_client.staff["email"]}
    assert {action for _, action, _ in rows} == {"login", "view"}


def test_an_inactive_account_is_still_a_choice_and_its_entries_still_found(admin_client, make_staff, db, app):
    gone = make_staff(name="Quim Left")
    client = app.test_client()
    assert login(client, gone["email"], gone["password"]).status_code == 302
    with dbmod.immediate(db):
        db.execute("UPDATE staff SET active = 0 WHERE id = ?", [gone["id"]])
    options = member_options(admin_client.get("/staff/audit"))
    shown = f"Quim Left ({gone['email']}), inactive"
    assert shown in options
    response = admin_client.get("/staff/audit", query_string={"member": options[shown]})
    assert [action for _, action, _ in entries(response)] == ["login"]


@pytest.mark.parametrize("handle", ["abc", "0" * 16, "1", "<script>"])
def test_a_who_that_is_no_account_of_the_centre_is_refused_at_the_field(admin_client, handle):
    response = admin_client.get("/staff/audit", query_string={"member": handle})
    assert response.status_code == 400
    assert field_error(response, "member") == "Choose one of the people in the list."
    assert '<a href="#member">' in response.get_data(as_text=True) and not entries(response)


def test_another_centres_account_is_refused_like_an_unknown_one(admin_client, make_staff, app, db):
    other = make_staff(centre="canarias", email="ines@canarias.example")
    client = app.test_client()
    assert login(client, other["email"], other["password"]).status_code == 302
    with app.test_request_context():
        handle = accounts.staff_handle(auth.handle_key(), other["id"])
    response = admin_client.get("/staff/audit", query_string={"member": handle})
    assert response.status_code == 400 and field_error(response, "member")
    page = response.get_data(as_text=True)
    assert not entries(response) and "ines@canarias.example" not in page
    assert "ines@canarias.example" not in admin_client.get("/staff/audit").get_data(as_text=True)


def test_it_filters_by_action(admin_client, make_submission):
    sub = make_submission()
    admin_client.get(f"/staff/submissions/{sub['id']}")
    admin_client.post(f"/staff/submissions/{sub['id']}/notes", data={"body": "called back"})
    response = admin_client.get("/staff/audit", query_string={"action": "note"})
    assert [action for _, action, _ in entries(response)] == ["note"]
    # the choice is selected again, worded in the page's language, and the URL carries the code
    page = admin_client.get("/staff/audit", query_string={"action": "note", "lang": "es"}).get_data(as_text=True)
    assert '<option value="note" selected>Ha añadido una nota</option>' in page


@pytest.mark.parametrize("action", ["frobnicate", "VIEW", " view x", "<b>"])
def test_an_action_the_page_does_not_know_is_refused_at_the_field(admin_client, action):
    response = admin_client.get("/staff/audit", query_string={"action": action})
    assert response.status_code == 400
    assert field_error(response, "action") == "Choose one of the actions in the list."


def add_entry(db, at, action="view", staff=None, detail=None, reference=None, centre=CENTRE):
    db.execute("INSERT INTO audit_log (at, staff_id, staff_email, action, detail, reference, centre)"
               " VALUES (?, ?, ?, ?, ?, ?, ?)",
               [at, staff and staff["id"], staff and staff["email"], action, detail, reference, centre])


def test_days_are_the_centres_days_and_both_ends_are_included(admin_client, db):
    """Europe/Madrid is UTC+2 in June: its 2 June runs from 31 May 22:00 to 1 June 22:00... of UTC, one day on."""
    with dbmod.immediate(db):
        for n, at in enumerate(["2026-06-01T21:59:59.999999+00:00",    # 1 June 23:59:59 in Barcelona
                                "2026-06-01T22:00:00.000000+00:00",    # 2 June 00:00
                                "2026-06-02T21:59:59.000000+00:00",    # 2 June 23:59:59
                                "2026-06-02T22:00:00.000000+00:00"]):  # 3 June 00:00
            add_entry(db, at, detail=str(n), staff={"id": None, "email": f"d{n}@example.org"})

    def days(**query):
        response = admin_client.get("/staff/audit", query_string=query)
        assert response.status_code == 200
        return sorted(w for w in who(entries(response)) if w.startswith("d"))
    assert days(**{"from": "2026-06-02", "to": "2026-06-02"}) == ["d1@example.org", "d2@example.org"]
    assert days(**{"from": "2026-06-02"}) == ["d1@example.org", "d2@example.org", "d3@example.org"]
    assert days(to="2026-06-01") == ["d0@example.org"]
    assert days(**{"from": "2026-06-04"}) == []


@pytest.mark.parametrize(("query", "field", "message"), [
    ({"from": "2026-02-30"}, "from", "Enter the date as year-month-day, for example 2025-03-31."),
    ({"from": "02/03/2026"}, "from", "Enter the date as year-month-day, for example 2025-03-31."),
    ({"to": "2026-W49-1"}, "to", "Enter the date as year-month-day, for example 2025-03-31."),
    ({"to": "9999-12-31"}, "to", "Enter the date as year-month-day, for example 2025-03-31."),
    ({"from": "2026-06-02", "to": "2026-06-01"}, "to",
     "The end date must be the same as the start date or after it."),
])
def test_a_bad_day_is_refused_at_the_field(admin_client, query, field, message):
    response = admin_client.get("/staff/audit", query_string=query)
    assert response.status_code == 400
    assert field_error(response, field) == message
    # the form gives back what was typed, to correct it
    assert f'value="{query[field]}"' in response.get_data(as_text=True)


def test_filters_combine_and_the_older_link_keeps_them(admin_client, make_staff, db):
    ana, bob = make_staff(email="ana@centre.example"), make_staff(email="bob@centre.example")
    with dbmod.immediate(db):
        for n in range(130):
            day = f"2026-03-{1 + n % 20:02d}T10:{n // 60:02d}:{n % 60:02d}.000000+00:00"
            add_entry(db, day, action=("view", "note")[n % 2], staff=(ana, bob)[n // 2 % 2],
                      reference="K7QF-M3XA" if n % 3 else "ABCD-EFGH")
    expected = [r[0] for r in db.execute(
        "SELECT at FROM audit_log WHERE centre = ? AND staff_id = ? AND action = 'view' AND reference = 'K7QF-M3XA'"
        " AND at >= '2026-03-02' AND at < '2026-03-19T23' ORDER BY at DESC, id DESC", [CENTRE, ana["id"]]).fetchall()]
    assert len(expected) > 2
    query = {"member": handle_of(admin_client, "ana@centre.example"), "action": "view",
             "reference": "k7qf m3xa", "from": "2026-03-03", "to": "2026-03-19"}
    seen, url, pages = [], "/staff/audit?" + "&".join(f"{k}={v}" for k, v in query.items()), 0
    while url:
        response = admin_client.get(url)
        assert response.status_code == 200
        seen += [at for at, _, _ in entries(response)]
        url, pages = older_link(response), pages + 1
        if url:
            assert f"member={query['member']}" in url and "action=view" in url and "reference=K7QF-M3XA" in url
            assert "from=2026-03-03" in url and "to=2026-03-19" in url
    # Barcelona's 3 March starts at 23:00 UTC on the 2nd; its 19th ends at 23:00 UTC on the 19th
    assert seen == expected


def test_the_filters_page_through_every_matching_entry_once(admin_client, make_staff, db):
    ana = make_staff(email="ana@centre.example")
    with dbmod.immediate(db):
        for n in range(260):
            # ties on the time, and other members' entries between hers
            add_entry(db, f"2026-04-01T10:00:{n // 4 % 60:02d}.000000+00:00", action="view",
                      staff=ana if n % 3 else None)
    expected = [r[0] for r in db.execute("SELECT at FROM audit_log WHERE centre = ? AND staff_id = ?"
                                         " ORDER BY at DESC, id DESC", [CENTRE, ana["id"]]).fetchall()]
    seen, url = [], "/staff/audit?action=view&member=" + handle_of(admin_client, ana["email"])
    while url:
        response = admin_client.get(url)
        seen += [at for at, _, _ in entries(response)]
        url = older_link(response)
    assert seen == expected and len(seen) > 150


def test_no_match_says_so_and_offers_every_entry(admin_client):
    response = admin_client.get("/staff/audit", query_string={"action": "purge"})
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "No entries match these filters." in page
    assert '<a href="/staff/audit">Show all entries</a>' in page


# --- every action in words --------------------------------------------------------------------------

DETAILS = {"status": "status: new -> reviewed", "export": '{"filters": {}, "count": 3}',
           "purge": "4 submissions older than 30 days", "recovery_code_used": "7", "sessions_ended": "2",
           "role_changed": "rita@centre.example:admin"}


def test_every_action_the_store_writes_has_words():
    """Each `action=` the store writes (and each refusal kind) is a known code, with words."""
    import pathlib
    source = "".join(p.read_text() for p in pathlib.Path(staff.__file__).parents[1].joinpath("store").glob("*.py"))
    written = set(re.findall(r'\baction="(\w+)"', source)) | set(accounts.REFUSED_ACTIONS.values())
    assert written and written <= set(AUDIT_ACTIONS)
    assert set(staff.AUDIT_ACTION_LABELS) == set(AUDIT_ACTIONS) and len(AUDIT_ACTIONS) == len(set(AUDIT_ACTIONS))


@pytest.mark.parametrize("lang", ["en", "ca", "es"])
def test_every_action_reads_in_words_in_each_language(admin_client, db, lang):
    with dbmod.immediate(db):
        for n, action in enumerate(AUDIT_ACTIONS):
            add_entry(db, f"2026-05-01T10:{n // 60:02d}:{n % 60:02d}.000000+00:00", action=action,
                      staff=admin_client.staff, detail=DETAILS.get(action, "rita@centre.example"))
    rows = entries(admin_client.get(f"/staff/audit?lang={lang}"))
    said = {action: what(html) for _, action, html in rows}
    assert set(AUDIT_ACTIONS) <= set(said)
    english = {code: str(label) for code, label in staff.AUDIT_ACTION_LABELS.items()}
    for action in AUDIT_ACTIONS:
        # never the code itself ("note" may be a word of "Added a note"; "login_failed" is no word)
        assert said[action] and said[action] != action and ("_" not in action or action not in said[action])
        if lang != "en" and action not in ("status", "export", "purge"):
            assert said[action] != english[action], (lang, action)


def test_account_actions_say_whom_they_were_done_to(admin_client, db):
    with dbmod.immediate(db):
        add_entry(db, "2026-05-01T10:00:00.000000+00:00", "role_changed", admin_client.staff,
                  "rita@centre.example:admin")
        add_entry(db, "2026-05-01T10:00:01.000000+00:00", "staff_deactivated", admin_client.staff,
                  "pau@centre.example")
        add_entry(db, "2026-05-01T10:00:02.000000+00:00", "recovery_code_used", admin_client.staff, "3")
    for lang, role, words in [("en", "Admin", "3 recovery codes left"), ("ca", "Administrador", "Queden 3 codis"),
                              ("es", "Administrador", "Quedan 3 códigos")]:
        rows = {action: html.replace("<wbr>", "") for _, action, html in
                entries(admin_client.get(f"/staff/audit?lang={lang}"))}
        assert admin_client.staff["email"] in rows["role_changed"]             # who
        assert "rita@centre.example" in rows["role_changed"] and role in rows["role_changed"]    # to whom, and how
        assert "pau@centre.example" in rows["staff_deactivated"]
        assert words in rows["recovery_code_used"]


def test_an_action_of_a_newer_version_still_shows_as_its_code(admin_client, db):
    with dbmod.immediate(db):
        add_entry(db, "2026-05-01T10:00:00.000000+00:00", "teleported", admin_client.staff, "somewhere")
    [html] = [html for _, action, html in entries(admin_client.get("/staff/audit")) if action == "teleported"]
    assert what(html) == "teleported" and "somewhere" in html


def test_repeated_refused_logins_are_one_entry_with_a_count(admin_client, make_staff, app):
    target = make_staff(email="target@centre.example")
    stranger = app.test_client()
    for _ in range(3):
        assert login(stranger, target["email"], "wrong password").status_code != 302
    response = admin_client.get("/staff/audit", query_string={"action": "login_failed", "lang": "ca"})
    [(_, _, html)] = entries(response)
    assert "target@centre.example" in html.replace("<wbr>", "") and "(3 vegades)" in html
    # nobody was logged in: not "the system", which is what purges old screenings
    assert who([(None, None, html)]) == ["Algú sense sessió iniciada"]


# --- the filtered pages stay on indexes -----------------------------------------------------------

INDEX_CASES = [
    ({}, "idx_audit_log_centre_at"),
    ({"staff_id": 3}, "idx_audit_log_centre_staff_id_at"),
    ({"staff_id": 999}, "idx_audit_log_centre_staff_id_at"),
    ({"action": "role_changed"}, "idx_audit_log_centre_action_at"),
    ({"staff_id": 1, "action": "export"}, "idx_audit_log_centre_staff_id_action_at"),
    ({"action": "export", "date_from": "2025-01-01", "date_to": "2025-03-31"}, "idx_audit_log_centre_action_at"),
    ({"staff_id": 2, "date_from": "2025-06-01"}, "idx_audit_log_centre_staff_id_at"),
    ({"date_from": "2025-06-01", "date_to": "2025-06-01"}, "idx_audit_log_centre_at"),
    ({"reference": "ABCD-EFGH", "staff_id": 1, "action": "view"}, "idx_audit_log_centre_reference_at"),
]


def test_a_filtered_page_reads_an_index_led_by_the_centre_not_the_whole_trail(conn, engine):
    """20,000 entries, most of two busy members; a rare member's and a rare action's entries must be
    read from their own index (a walk of the centre's trail cost 110 to 220 ms at 450,000 entries)."""
    rows = []
    for n in range(20_000):
        staff_id = 3 if n % 2000 == 0 else 1 + n % 2
        action = "role_changed" if n % 5000 == 0 else "export" if n % 997 == 0 else "view"
        rows.append((f"2025-{1 + n % 12:02d}-{1 + n % 28:02d}T10:00:00.{n:06d}+00:00", staff_id, action,
                     "ABCD-EFGH" if n % 4000 == 0 else None, CENTRE if n % 10 else "other-centre"))
    with dbmod.immediate(conn):
        for row in rows:
            conn.execute("INSERT INTO audit_log (at, staff_id, action, reference, centre) VALUES (?, ?, ?, ?, ?)", row)
    if engine == "postgresql":
        conn.execute("ANALYZE audit_log")
    real = conn.execute
    for filters, index in INDEX_CASES:
        statements = []

        def spy(sql, params=(), statements=statements):
            if "FROM audit_log" in sql:
                statements.append((sql, list(params)))
            return real(sql, params)
        conn.execute = spy
        try:
            page, _older = review.list_audit(conn, centre=CENTRE, filters=review.AuditFilters(**filters),
                                             zone="Europe/Madrid")
        finally:
            del conn.execute
        [(sql, params)] = statements
        if engine == "sqlite":
            plan = " ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall())
            assert f"USING INDEX {index} (centre=?" in plan and "SCAN" not in plan, (filters, plan)
        else:
            plan = " ".join(row[0] for row in conn.execute("EXPLAIN " + sql, params).fetchall())
            # the planner may prefer the time index for a common filter; never a walk of the table
            assert "Seq Scan" not in plan and "Index" in plan, (filters, plan)
        # and the page is the newest 50 of what matches (Barcelona's days: UTC+1 in winter, +2 in summer)
        start = filters.get("date_from") and review.day_start(date.fromisoformat(filters["date_from"]), "Europe/Madrid")
        end = filters.get("date_to") and review.day_start(
            date.fromisoformat(filters["date_to"]) + timedelta(days=1), "Europe/Madrid")
        expected = sorted((at for at, staff_id, action, reference, centre in rows if centre == CENTRE
                           and filters.get("staff_id", staff_id) == staff_id and filters.get("action", action) == action
                           and filters.get("reference", reference) == reference
                           and (not start or at >= start) and (not end or at < end)), reverse=True)[:50]
        assert [row["at"] for row in page] == expected, filters


@pytest.mark.parametrize(("lang", "said"), [
    ("en", ["Recorded a person's request", "to erase their data, by phone, received 2026-11-30, asked on their "
            "behalf: 2 shared screenings (request 7)", "Gave a person a copy of their screenings",
            "CSV file: 1 shared screening (request 7)", "through request 7", "Withdrawn by the client"]),
    ("ca", ["Ha registrat la petició d'una persona", "per esborrar les seves dades, per telèfon, rebuda el "
            "2026-11-30, ho ha demanat algú en nom seu", "fitxer CSV", "per la petició 7", "Retirat pel client"])])
def test_a_persons_request_and_a_withdrawal_read_in_words(db, admin_client, lang, said):
    """A person's request (store/requests.py) and a client's withdrawal (store/withdrawal.py) say what
    happened, never as JSON or a code: the request's kind, channel, day, who asked and how many."""
    rows = [("data_request", '{"channel": "phone", "count": 2, "kind": "erasure", "on_behalf": true,'
                             ' "received_on": "2026-11-30", "request": 7}', None),
            ("data_request_export", '{"count": 1, "format": "csv", "request": 7}', None),
            ("erase", '{"request": 7}', "ABCD-2345"), ("withdrawn", None, "WXYZ-2345")]
    with dbmod.immediate(db):
        for action, detail, reference in rows:
            dbmod.audit(db, action=action, detail=detail, reference=reference, centre=CENTRE)
    page = " ".join(admin_client.get(f"/staff/audit?lang={lang}").get_data(as_text=True).split())
    page = page.replace("&#39;", "'")
    for words in said:
        assert words in page
    assert '"request"' not in page and "&#34;request" not in page and ">withdrawn<" not in page
