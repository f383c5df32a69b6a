"""The staff search through the full-text index (db.m004_search_fts): accents, case, phone numbers,
e-mail addresses, an index kept in step with the table, and query plans that never scan the table."""
import re

import pytest
from conftest import CENTRE
from conftest import search as post_search

from screening.store import db as dbmod
from screening.store import retention, review


def ids(response):
    """Submission ids listed on a dashboard page, in order."""
    assert response.status_code == 200
    return [int(i) for i in re.findall(r'href="/staff/submissions/(\d+)"', response.get_data(as_text=True))]


def search(db, q):
    """Ids the search finds, newest first."""
    return [row["id"] for row in review.list_page(db, review.Filters(q=q), centre=CENTRE).rows]


@pytest.mark.parametrize("q", ["nuria", "NÚRIA", "núria pena", "Peña", "pena", "uri"])
def test_names_are_found_whatever_the_accents_and_case(db, make_submission, q):
    wanted = make_submission(name="Núria Peña")
    make_submission(name="Joan Vidal")
    assert search(db, q) == [wanted["id"]]


def test_a_name_typed_with_accents_finds_it_stored_without(db, make_submission):
    wanted = make_submission(name="Nuria Pena")
    assert search(db, "Núria Peña") == [wanted["id"]]


@pytest.mark.parametrize("q", ["612345678", "612 34 56 78", "+34 612-345-678", "345 678", "(612) 345"])
def test_a_phone_number_is_found_however_it_is_written(db, make_submission, q):
    wanted = make_submission(name="Anna Roca", contact="+34 612 34 56 78")
    make_submission(name="Pere Roca", contact="+34 699 00 11 22")
    assert search(db, q) == [wanted["id"]]


@pytest.mark.parametrize("q", ["marta.puig@example.org", "MARTA.PUIG@EXAMPLE.ORG", "marta.puig", "puig@exa"])
def test_an_email_address_is_found_whole_or_in_part(db, make_submission, q):
    wanted = make_submission(name="Marta Puig", contact="marta.puig@example.org")
    make_submission(name="Marta Serra", contact="marta.serra@example.org")
    assert search(db, q) == [wanted["id"]]


# --- the receptionist's searches of the staff review (December 2026, item 11) -----------------------

@pytest.mark.parametrize("q,found", [("nu", ["Nuria Pena", "Núria Peña"]), ("NÚ", ["Nuria Pena", "Núria Peña"]),
                                     ("nú", ["Nuria Pena", "Núria Peña"]), ("Pe", ["Nuria Pena", "Núria Peña"]),
                                     ("pé", ["Nuria Pena", "Núria Peña"]), ("N P", ["Nuria Pena", "Núria Peña"]),
                                     ("núria p", ["Nuria Pena", "Núria Peña"]), ("ña", []), ("Vi", ["Joan Vidal"])])
def test_short_words_fold_accents_and_find_the_start_of_any_word_of_the_name(db, make_submission, q, found):
    ids = {name: make_submission(name=name)["id"] for name in ("Núria Peña", "Joan Vidal", "Nuria Pena")}
    assert search(db, q) == [ids[name] for name in found]


def test_a_short_word_is_the_start_of_a_word_not_any_piece_of_it(db, make_submission):
    wanted = make_submission(name="Anna Roca")
    make_submission(name="Joana Vidal")
    assert search(db, "an") == [wanted["id"]]
    assert search(db, "ro") == [wanted["id"]]


@pytest.mark.parametrize("q", ["UPDX", "XDAM", "updx", "xdam", "PDX-XD", "pdxxd", "UPDXXDA", "DX-XDAM"])
def test_part_of_a_reference_finds_it_with_or_without_the_dash(db, make_submission, monkeypatch, q):
    references = iter(["UPDX-XDAM", "K7QF-M3XA"])
    monkeypatch.setattr(dbmod, "new_reference", lambda: next(references))
    wanted = make_submission(name="Ana Client")
    make_submission(name="Joan Vidal")
    assert search(db, q) == [wanted["id"]]


@pytest.mark.parametrize("q,name", [("obrien", "O'Brien"), ("O'Brien", "OBrien"), ("obrien", "Sean O’Brien"),
                                    ("garcia lopez", "María García-López"), ("garcialopez", "García-López"),
                                    ("García-López", "Garcia-Lopez Serra"), ("dalba", "Pere d'Alba"),
                                    ("Al", "Pere d'Alba"), ("ob", "O'Brien"), ("br", "O'Brien")])
def test_apostrophes_and_hyphens_are_ignored(db, make_submission, q, name):
    wanted = make_submission(name=name)
    make_submission(name="Joan Vidal")
    assert search(db, q) == [wanted["id"]]


@pytest.mark.parametrize("q", ["nuria.0@mail.example.org", "NÚRIA.0@MAIL.EXAMPLE.ORG", "núria.0@mail", "uria.0@"])
def test_an_email_address_is_found_whatever_its_accents(db, make_submission, q):
    wanted = make_submission(name="Núria Peña", contact="núria.0@mail.example.org")
    make_submission(name="Nuria Pena", contact="nuria.1@mail.example.org")
    assert search(db, q) == [wanted["id"]]


@pytest.mark.parametrize("q", ["'", "-", "' -", "a@"])
def test_a_search_of_nothing_searchable_finds_nothing_and_never_fails(db, make_submission, q):
    make_submission(name="O'Brien")
    assert search(db, q) == []


def test_search_through_the_dashboard_page(staff_client, make_submission):
    wanted = make_submission(name="Àngels Martí", outcome="tell_centre")
    make_submission(name="Àngels Martí", outcome="proceed")
    assert ids(post_search(staff_client, "angels marti", outcome="tell_centre")) == [
        wanted["id"]]


def test_fts_syntax_in_the_search_is_taken_literally(db, make_submission):
    make_submission(name="Joan Vidal")
    for q in ['joan" OR "vidal', "NEAR(joan vidal)", "joan*", "name:joan", '"', "{name} : joan"]:
        assert search(db, q) == [], q


def test_the_index_follows_erasure_and_changes_of_name(db, make_submission):
    gone = make_submission(name="Ona Ribas")
    renamed = make_submission(name="Pau Soler")
    retention.erase_submission(db, gone["id"], centre=CENTRE, staff=None)
    with dbmod.immediate(db):
        # names are folded in Python when stored (db.search_columns); a change writes them again
        db.execute("UPDATE submissions SET name = :name, search_name = :search_name, search_words = :search_words"
                   " WHERE id = :id", {**dbmod.search_columns("Pau Llobet", renamed["contact"], renamed["reference"]),
                                       "name": "Pau Llobet", "id": renamed["id"]})
    assert search(db, "ribas") == []
    assert search(db, "soler") == []
    assert search(db, "llobet") == [renamed["id"]]
    if db.engine == "sqlite":     # the FTS5 index agrees with its table
        db.execute("INSERT INTO submissions_fts (submissions_fts) VALUES ('integrity-check')")


def test_many_matches_come_newest_first_and_page_without_gaps(db, make_submission):
    """Above review.SORT_MAX candidates the search walks the newest-first index instead of sorting;
    both ways give the same rows in the same order."""
    made = [make_submission(name=f"Laia Garcia {i}", nonce=f"n-{i}")["id"] for i in range(60)]
    original = review.SORT_MAX
    seen = {}
    for sort_max in (1000, 5):
        review.SORT_MAX = sort_max
        try:
            first = review.list_page(db, review.Filters(q="garcia"), centre=CENTRE)
            second = review.list_page(db, review.Filters(q="garcia"), before=first.older, centre=CENTRE)
        finally:
            review.SORT_MAX = original
        seen[sort_max] = [r["id"] for r in first.rows + second.rows]
    assert seen[1000] == seen[5] == made[::-1]


@pytest.mark.parametrize("q", ["garcia", "nuria pena", "612 345 678", "marta.puig@example.org", "Al", "ma p",
                               "updx", "7QDD-QV", "obrien", "o'brien pe"])
@pytest.mark.sqlite_only
@pytest.mark.parametrize("sort_max", [0, 10**6])
def test_searches_never_scan_the_table(db, make_submission, monkeypatch, q, sort_max):
    make_submission(name="Maria Garcia")
    monkeypatch.setattr(review, "SORT_MAX", sort_max)
    where, params = review._where(db, review.Filters(q=q), centre=CENTRE)
    plan = [row[-1] for row in db.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM submissions WHERE " + " AND ".join(where)
        + " ORDER BY created_at DESC, id DESC LIMIT 51", params).fetchall()]
    scans = [step for step in plan if step.startswith("SCAN submissions") and "INDEX" not in step]
    assert scans == [], plan


def test_the_migration_indexes_the_rows_stored_before_it(tmp_path):
    path = tmp_path / "old.db"
    conn = dbmod.connect(path)
    try:
        with dbmod.immediate(conn):
            dbmod.migrations.apply(conn, stop_before="m004_search_fts")
        assert not conn["submissions_fts"].exists()
        with dbmod.immediate(conn):     # as the schema of the time stored it
            conn.execute("INSERT INTO submissions (reference, nonce, service, outcome, answers, fired_rules,"
                         " rules_version, locale, name, contact, consent_at, created_at) VALUES ('AAAA-BBBB',"
                         " 'n-old-1', 'back-massage', 'proceed', '{}', '[]', 't', 'en', 'Núria Peña',"
                         " '612 345 678', ?, ?)", [dbmod.now(), dbmod.now()])
        dbmod.migrate(conn)
        dbmod.migrate(conn)       # idempotent: a second worker finds it applied
        dbmod.adopt_orphans(conn, CENTRE)
        assert len(search(conn, "nuria")) == 1
        assert len(search(conn, "612345678")) == 1
        assert len(search(conn, "Pe")) == 1 and len(search(conn, "bbbb")) == 1     # m008's indexes too
        conn.execute("INSERT INTO submissions_fts (submissions_fts) VALUES ('integrity-check')")
    finally:
        conn.close()
