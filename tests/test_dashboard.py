"""The staff dashboard: the list of shared submissions, its filters, search, paging and counts."""
import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from conftest import CENTRE, search, search_url

from screening.store import db as dbmod
from screening.store import review
from screening.web import filters as params

ROW_RE = re.compile(r'<tr data-submission="(\d+)">(.*?)</tr>', re.S)


def rows(response):
    """The (id, row html) of each submission row on a dashboard page, top to bottom."""
    return [(int(i), html) for i, html in ROW_RE.findall(response.get_data(as_text=True))]


def ids(response):
    return [i for i, _ in rows(response)]


def set_created(db, submission_id, created_at):
    """Backdate a submission (the store always stamps 'now')."""
    db.execute("UPDATE submissions SET created_at = ? WHERE id = ?", [created_at, submission_id])
    db.conn.commit()


def link(response, rel):
    """The href of the Older (rel=next) or Newer (rel=prev) link, or None."""
    m = re.search(rf'<a rel="{rel}" href="([^"]+)"', response.get_data(as_text=True))
    return m.group(1).replace("&amp;", "&") if m else None


@pytest.mark.parametrize("url", ["/staff/", "/staff/?outcome=proceed", "/staff/export.csv",
                                 "/staff/submissions/1", "/staff/audit", "/staff/rules", "/staff/rules/simulate"])
def test_it_sends_strangers_to_the_login_page_and_shows_nothing(client, make_submission, url):
    make_submission(name="Secret Name")
    response = client.get(url)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/staff/login")
    assert b"Secret Name" not in response.data


def test_it_lists_each_shared_submission_with_reference_name_service_outcome_and_status(
        staff_client, make_submission):
    sub = make_submission(name="Marta Puig", service="back-massage", outcome="tell_centre")
    response = staff_client.get("/staff/")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    [(row_id, html)] = rows(response)
    assert row_id == sub["id"]
    assert sub["reference"] in html
    assert "Marta Puig" in html
    assert "Back massage" in html
    assert "Tell the centre" in html
    assert 'data-status="new"' in html and "New" in html
    assert f'href="/staff/submissions/{sub["id"]}"' in html


def test_the_outcome_has_a_symbol_and_text_and_leaves_data_outcome_to_the_client_page(
        staff_client, make_submission):
    make_submission(outcome="consult_professional")
    page = staff_client.get("/staff/").get_data(as_text=True)
    assert "data-outcome=" not in page
    assert re.search(r'data-staff-outcome="consult_professional"><span aria-hidden="true">✚</span> '
                     r'Consult a health professional', page)


def test_it_lists_newest_first(staff_client, make_submission, db):
    old, new, middle = make_submission(), make_submission(), make_submission()
    set_created(db, old["id"], "2025-01-01T09:00:00.000000+00:00")
    set_created(db, middle["id"], "2025-01-02T09:00:00.000000+00:00")
    set_created(db, new["id"], "2025-01-03T09:00:00.000000+00:00")
    assert ids(staff_client.get("/staff/")) == [new["id"], middle["id"], old["id"]]


def test_it_says_so_when_nothing_is_there(staff_client):
    assert "No shared screenings yet." in staff_client.get("/staff/").get_data(as_text=True)


@pytest.mark.parametrize("field,value,matching,other", [
    ("outcome", "consult_professional", {"outcome": "consult_professional"}, {"outcome": "proceed"}),
    ("service", "back-massage", {"service": "back-massage"}, {"service": "deep-tissue-massage"}),
])
def test_it_filters_by_outcome_and_service(staff_client, make_submission, field, value, matching, other):
    wanted = make_submission(**matching)
    make_submission(**other)
    response = staff_client.get("/staff/", query_string={field: value})
    assert response.status_code == 200
    assert ids(response) == [wanted["id"]]


def test_it_filters_by_status(staff_client, make_submission):
    wanted, _other = make_submission(), make_submission()
    staff_client.post(f"/staff/submissions/{wanted['id']}/status", data={"status": "contacted", "decision": ""})
    assert ids(staff_client.get("/staff/?status=contacted")) == [wanted["id"]]
    assert wanted["id"] not in ids(staff_client.get("/staff/?status=new"))


def madrid(local: str) -> str:
    """A wall-clock time at the centre (Europe/Madrid, the shipped centre's zone) as stored: UTC text."""
    moment = datetime.fromisoformat(local).replace(tzinfo=ZoneInfo("Europe/Madrid"))
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def test_it_filters_by_date_range_with_both_ends_included(staff_client, make_submission, db):
    """The days are the centre's days (Europe/Madrid), not UTC's."""
    subs = [make_submission() for _ in range(4)]
    for sub, day in zip(subs, ["2025-03-09T23:59:59.999999", "2025-03-10T00:00:00.000000",
                               "2025-03-11T23:59:59.999999", "2025-03-12T00:00:00.000000"]):
        set_created(db, sub["id"], madrid(day))
    response = staff_client.get("/staff/?from=2025-03-10&to=2025-03-11")
    assert ids(response) == [subs[2]["id"], subs[1]["id"]]
    assert ids(staff_client.get("/staff/?from=2025-03-12")) == [subs[3]["id"]]
    assert ids(staff_client.get("/staff/?to=2025-03-09")) == [subs[0]["id"]]


def test_it_finds_a_reference_however_it_is_typed(staff_client, make_submission):
    wanted = make_submission()
    make_submission()
    typed = wanted["reference"].replace("-", " ").lower()
    assert ids(search(staff_client, typed)) == [wanted["id"]]


@pytest.mark.parametrize("q", ["marta", "MARTA P", "puig", "Puig i"])
def test_it_finds_a_name_by_its_start_or_a_word_in_it_in_any_case(staff_client, make_submission, q):
    wanted = make_submission(name="Marta Puig i Serra")
    make_submission(name="Joan Vidal")
    assert ids(search(staff_client, q)) == [wanted["id"]]


def test_search_wildcards_are_taken_literally(staff_client, make_submission):
    make_submission(name="Joan Vidal")
    assert ids(search(staff_client, "%")) == []
    assert ids(search(staff_client, "_oan")) == []


def test_filters_combine(staff_client, make_submission):
    wanted = make_submission(name="Anna Roca", outcome="tell_centre")
    make_submission(name="Anna Roca", outcome="proceed")
    make_submission(name="Pere Roca", outcome="tell_centre")
    assert ids(search(staff_client, "anna", outcome="tell_centre")) == [wanted["id"]]


@pytest.mark.parametrize("params,field,message", [
    ({"outcome": "maybe"}, "outcome", "Choose one of the outcomes in the list."),
    ({"status": "lost"}, "status", "Choose one of the statuses in the list."),
    ({"service": "hot-stones"}, "service", "Choose one of the services in the list."),
    ({"from": "2025-02-30"}, "from", "Enter the date as year-month-day"),
    ({"to": "yesterday"}, "to", "Enter the date as year-month-day"),
    ({"from": "2025-03-02", "to": "2025-03-01"}, "to", "The end date must be the same as the start date or after it."),
    ({"before": "not-a-cursor"}, "before", "This page link is broken."),
    ({"after": "2025-01-01T00:00:00+00:00_x"}, "after", "This page link is broken."),
])
def test_bad_filter_values_are_refused_with_a_message_at_the_field(staff_client, make_submission, params, field,
                                                                   message):
    make_submission(name="Ana Client")
    response = staff_client.get("/staff/", query_string=params)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert f'<p class="error-message" id="{field}-error"><span class="visually-hidden">Error:</span> {message}' in page
    assert 'role="alert"' in page
    assert rows(response) == []


def test_a_search_too_long_is_refused_at_the_field_and_kept_nowhere(staff_client, db, make_submission):
    make_submission(name="Ana Client")
    response = search(staff_client, "x" * 101)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert ('<p class="error-message" id="q-error"><span class="visually-hidden">Error:</span> '
            'Search for 100 characters or fewer.') in page
    assert rows(response) == [] and review.count_searches(db) == 0


def test_a_page_holds_fifty_submissions(staff_client, make_submission):
    for _ in range(51):
        make_submission()
    first = staff_client.get("/staff/")
    assert len(rows(first)) == review.PAGE_SIZE == 50
    assert link(first, "prev") is None
    assert link(first, "next") is not None


def test_walking_older_then_newer_shows_every_submission_once(staff_client, make_submission, db):
    subs = [make_submission(outcome="tell_centre" if i % 3 else "proceed") for i in range(120)]
    # some stored in the same microsecond: the id breaks the tie
    for sub in subs[40:50]:
        set_created(db, sub["id"], "2030-01-01T00:00:00.000000+00:00")
    expected = [s["id"] for s in sorted(subs, key=lambda s: (
        "2030-01-01T00:00:00.000000+00:00" if 40 <= subs.index(s) < 50 else s["created_at"], s["id"]), reverse=True)]

    pages, url = [], "/staff/"
    while url:
        response = staff_client.get(url)
        assert response.status_code == 200
        pages.append(ids(response))
        url = link(response, "next")
    assert [len(p) for p in pages] == [50, 50, 20]
    assert [i for p in pages for i in p] == expected

    back, url = [], link(response, "prev")
    while url:
        response = staff_client.get(url)
        back.append(ids(response))
        url = link(response, "prev")
    assert back == [pages[1], pages[0]]


def test_paging_keeps_the_filter(staff_client, make_submission):
    subs = [make_submission(outcome="tell_centre" if i % 2 else "proceed") for i in range(110)]
    wanted = [s["id"] for s in reversed(subs) if s["outcome"] == "tell_centre"]
    first = staff_client.get("/staff/?outcome=tell_centre")
    older = link(first, "next")
    assert "outcome=tell_centre" in older
    second = staff_client.get(older)
    assert ids(first) + ids(second) == wanted
    assert link(second, "next") is None


def test_a_submission_stored_while_paging_is_neither_skipped_nor_repeated(staff_client, make_submission):
    subs = [make_submission() for _ in range(60)]
    first = staff_client.get("/staff/")
    late = make_submission()
    second = staff_client.get(link(first, "next"))
    assert ids(first) + ids(second) == [s["id"] for s in reversed(subs)]
    newer = staff_client.get(link(second, "prev"))
    assert ids(newer) == [s["id"] for s in reversed(subs)][:50]
    assert ids(staff_client.get(link(newer, "prev"))) == [late["id"]]


def test_page_links_name_the_centres_own_numbers_not_row_ids(staff_client, make_submission):
    """Another centre's 40 screenings stored first: this centre's page links and rows say nothing
    of them."""
    for i in range(40):
        make_submission(centre="another-centre", name=f"Theirs {i}")
    mine = [make_submission(name=f"Mine {i}") for i in range(60)]
    first = staff_client.get("/staff/")
    older = link(first, "next")
    assert older.endswith(f"_{mine[10]['number']}") and mine[10]["id"] != mine[10]["number"]
    assert ids(first) == [s["number"] for s in reversed(mine)][:50]
    second = staff_client.get(older)
    assert ids(second) == [s["number"] for s in reversed(mine)][50:]
    assert f"_{mine[9]['number']}" in link(second, "prev")


def test_a_page_link_still_pages_after_its_row_was_erased(staff_client, make_submission, db):
    subs = [make_submission(name=f"Client {i}") for i in range(60)]
    older = link(staff_client.get("/staff/"), "next")
    db.execute("DELETE FROM submissions WHERE id = ?", [subs[10]["id"]])     # the first page's last row
    db.conn.commit()
    assert ids(staff_client.get(older)) == [s["number"] for s in reversed(subs[:10])]


def test_it_counts_what_needs_attention_per_outcome(staff_client, make_submission, db):
    for outcome in ["consult_professional"] * 3 + ["tell_centre"] * 2 + ["proceed"] * 4:
        make_submission(outcome=outcome)
    closed = make_submission(outcome="consult_professional")
    contacted = make_submission(outcome="tell_centre")
    reviewed = make_submission(outcome="tell_centre")
    for sub, status in [(closed, "closed"), (contacted, "contacted"), (reviewed, "reviewed")]:
        staff_client.post(f"/staff/submissions/{sub['id']}/status", data={"status": status, "decision": ""})
    page = staff_client.get("/staff/").get_data(as_text=True)
    assert re.search(r'data-attention="consult_professional">.*?Consult a health professional</span>: '
                     r'<strong>3</strong>', page, re.S)
    assert re.search(r'data-attention="tell_centre">.*?Tell the centre</span>: <strong>3</strong>', page, re.S)
    assert review.attention_counts(db, centre=CENTRE) == {"tell_centre": 3, "consult_professional": 3}
    assert review.attention_counts(db, centre="another-centre") == {"tell_centre": 0, "consult_professional": 0}


@pytest.mark.sqlite_only
def test_the_dashboard_queries_use_the_indexes(db, make_submission):
    """Every filter the dashboard offers is answered from an index that starts with the centre,
    not a scan of the table nor of every centre's rows."""
    cursor = review.Cursor("2025-01-01T00:00:00+00:00", number=5, id=5)
    reference = make_submission()["reference"]
    for filters in [review.Filters(), review.Filters(outcome="proceed"), review.Filters(status="new"),
                    review.Filters(service="back-massage"), review.Filters(date_from="2025-01-01"),
                    review.Filters(date_to="2025-01-01"), review.Filters(outcome="proceed", status="new"),
                    review.Filters(q=reference.lower().replace("-", " "))]:
        where, params = review._where(db, filters, centre=CENTRE, zone="Europe/Madrid")
        where.append("(created_at, id) < (?, ?)")
        plan = " ".join(row[-1] for row in db.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM submissions WHERE " + " AND ".join(where)
            + " ORDER BY created_at DESC, id DESC LIMIT 51", [*params, cursor.created_at, cursor.id]).fetchall())
        if filters.q:   # a reference is unique across the installation; its centre is checked on the one row
            assert re.search(r"USING (COVERING )?INDEX idx_submissions_reference \(reference=\?\)", plan), plan
        else:
            assert re.search(r"USING (COVERING )?INDEX idx_submissions_centre\w* \(centre=\?", plan), (filters, plan)
        assert "TEMP B-TREE" not in plan, (filters, plan)


def test_a_cursor_survives_its_round_trip_and_junk_is_not_a_cursor():
    cursor = review.Cursor(dbmod.now(), 42)
    assert params.parse_cursor(cursor.token()) == cursor
    for junk in ["", "42", "2025-13-45T00:00:00_1", "2025-01-01T00:00:00+00:00_-1", "x_1", "2025-01-01_1"]:
        assert params.parse_cursor(junk) is None, junk


# --- values that used to give a 500 or a wrong answer (issue 6, item 7) ----------------------------

@pytest.mark.parametrize("params,field", [
    ({"to": "9999-12-31"}, "to"),                    # the day after overflows the date type
    ({"from": "9999-12-31"}, "from"),
    ({"from": "2026-W49-1"}, "from"),                # an ISO week date: compared as text, wrong rows
    ({"to": "20260101"}, "to"),                      # ISO basic format
    ({"from": "2026-1-2"}, "from"),
    ({"from": "２０２６-０１-０２"}, "from"),             # full-width digits
    ({"to": "2026-01-02\n"}, "to"),
    ({"from": "0000-01-01"}, "from"),
    ({"before": "2025-01-01T00:00:00+00:00_１２"}, "before"),
    ({"before": "2025-01-01T00:00:00+00:00_12\n"}, "before"),
])
def test_a_date_or_cursor_not_written_exactly_is_refused_at_the_field_not_a_500(staff_client, make_submission,
                                                                                params, field):
    make_submission()
    response = staff_client.get("/staff/", query_string=params)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert f'<p class="error-message" id="{field}-error">' in page
    if field in ("from", "to"):
        assert re.search(rf'<input type="date" id="{field}"[^>]*aria-invalid="true"', page)
    # the error summary's link leads to something on the page
    assert f'<a href="#{field}">' in page and page.count(f'id="{field}"') == 1
    assert rows(response) == []


def test_the_last_and_first_usable_days_still_work(staff_client, make_submission, db):
    sub = make_submission()
    assert ids(staff_client.get("/staff/?from=0001-01-01&to=9999-12-30")) == [sub["id"]]


def test_the_filters_fold_away_until_one_is_set_and_the_search_stays_in_sight(staff_client, make_submission):
    make_submission()
    html = staff_client.get("/staff/").get_data(as_text=True)
    details = re.search(r'<details class="filters-more"( open)?>', html)
    assert details and details.group(1) is None
    assert html.index('id="q"') < html.index('<details class="filters-more"')     # search outside the fold
    for field in ("outcome", "status", "service", "from", "to"):
        assert html.index('<details class="filters-more"') < html.index(f'id="{field}"') < html.index("</details>")
    for query in ({"status": "new"}, {"from": "2026-01-01"}, {"outcome": "everything"}):
        html = staff_client.get("/staff/", query_string=query).get_data(as_text=True)
        assert '<details class="filters-more" open>' in html, query
    # a search alone leaves the other filters folded
    assert '<details class="filters-more">' in search(staff_client, "ana").get_data(as_text=True)


@pytest.mark.parametrize("lang", ["en", "ca", "es"])
def test_each_cell_is_named_by_its_heading_for_the_phone_layout(staff_client, make_submission, lang):
    make_submission()
    html = staff_client.get(f"/staff/?lang={lang}").get_data(as_text=True)
    headings = re.findall(r'<th scope="col">(.*?)</th>', html)
    row = re.search(r"<tr data-submission=.*?</tr>", html, re.S).group(0)
    assert re.findall(r'<td data-label="([^"]*)"', row) == headings
    assert len(headings) == 8        # reference, name, contact, service, outcome, status, decision, received


@pytest.mark.parametrize(("lang", "words"), [("en", ("reference", "name", "accents", "phone", "e-mail")),
                                              ("ca", ("referència", "nom", "accents", "telèfon", "correu")),
                                              ("es", ("referencia", "nombre", "acentos", "teléfono", "correo"))])
def test_the_search_box_says_what_it_finds(staff_client, lang, words):
    html = staff_client.get(f"/staff/?lang={lang}").get_data(as_text=True)
    assert 'aria-describedby="q-hint"' in html
    hint = re.search(r'<p class="hint" id="q-hint">(.*?)</p>', html).group(1)
    assert all(word in hint for word in words), hint


@pytest.mark.parametrize(("q", "found"), [("nuria", "Núria Peña"), ("NURIA PEÑA", "Núria Peña"),
                                          ("612 34 56 78", "Jordi Vidal"), ("jordi.vidal@example", "Jordi Vidal")])
def test_what_the_search_box_says_holds_on_the_page_and_in_the_export(staff_client, make_submission, q, found):
    make_submission(name="Núria Peña", contact="nuria@example.org")
    make_submission(name="Jordi Vidal", contact="+34 612 34 56 78")
    make_submission(name="Jordi Vidal", contact="jordi.vidal@example.cat")
    make_submission(name="Pere Roca", contact="+34 699 00 11 22")
    url = search_url(staff_client, q)
    html = staff_client.get(url).get_data(as_text=True)
    rows = re.findall(r"<tr data-submission=.*?</tr>", html, re.S)
    assert len(rows) == 1 and found in rows[0]
    export = staff_client.get(url.replace("/staff/", "/staff/export.csv", 1)).get_data().decode("utf-8-sig")
    assert len(export.splitlines()) == 2 and found in export


def test_a_refused_filter_is_said_first_on_the_page(staff_client):
    html = staff_client.get("/staff/?outcome=everything").get_data(as_text=True)
    assert html.index('id="error-summary"') < html.index('class="attention"') < html.index('id="q"')
