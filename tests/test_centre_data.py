"""Issue 9, the data side: screenings, staff and audit entries belong to a centre; the store
narrows every staff query to one; a database from before centres keeps everything, given to the
default centre; accounts, purge, notices and times per centre."""
import multiprocessing
import re

import pytest
from conftest import CENTRE, STAFF_PASSWORD, add_centre, database_of, give_second_factor, login

from screening import create_app
from screening.config import SettingsError
from screening.core import reading
from screening.store import accounts, retention, review
from screening.store import db as dbmod
from screening.web import public

OTHER = "centre-b"


def record(name="Ana Client", contact="ana@example.org", outcome="tell_centre"):
    """A shared screening as the public side stores it."""
    return {"service": "back-massage", "outcome": outcome, "answers": {"fever": "no"}, "fired_rules": [],
            "suggestions": [], "rules_version": "test", "locale": "en", "name": name, "contact": contact,
            "consent_at": dbmod.now()}


def stored(conn, centre, tag):
    """Store a screening of `centre`; return its row."""
    reference, _ = dbmod.store_submission(conn, nonce=f"nonce-{centre}-{tag}", record=record(name=tag),
                                          centre=centre)
    return dbmod.find_by_reference(conn, reference)


@pytest.fixture
def two_centres_app(make_app, rules_copy):
    add_centre(rules_copy, OTHER, name="Centre B", timezone="America/New_York", notify_to="desk@b-centre.example")
    app = make_app(RULES_DIR=str(rules_copy))
    app.rules_dir = rules_copy
    return app


# --- the store ---------------------------------------------------------------------------------------

def test_the_store_treats_another_centres_submission_as_absent(conn, conn_target, rules):
    a_staff = accounts.create_staff(conn, email="a@a.example", password=STAFF_PASSWORD, centre=CENTRE)
    b_staff = accounts.create_staff(conn, email="b@b.example", password=STAFF_PASSWORD, centre=OTHER)
    b_sub = stored(conn, OTHER, "Bea Other")
    review.add_note(conn, b_sub["id"], "B's note", b_staff, centre=OTHER)
    a = review.CentreStore(conn, CENTRE)

    assert a.get_submission(b_sub["id"]) is None
    assert a.list_notes(b_sub["id"]) == []
    assert a.add_note(b_sub["id"], "from A", a_staff) is False
    assert a.set_status(b_sub["id"], "closed", None, a_staff) is None
    assert a.erase(b_sub["id"], a_staff) is None
    assert a.list_page(review.Filters()).rows == []
    assert a.list_page(review.Filters(q=b_sub["reference"])).rows == []
    assert a.attention_counts() == {"tell_centre": 0, "consult_professional": 0}
    assert list(a.export_rows(lambda: dbmod.connect(conn_target),
                              review.Filters(), reading.ExportWords(rules, "en", "UTC", {}, {}, {}))) == []
    assert a.list_audit(reference=b_sub["reference"]) == ([], None)
    with pytest.raises(LookupError):
        a.record_view(b_sub, a_staff)

    # B's screening is untouched, and B sees it all
    b = review.CentreStore(conn, OTHER)
    assert b.get_submission(b_sub["id"])["status"] == "new"
    assert [n["body"] for n in b.list_notes(b_sub["id"])] == ["B's note"]
    assert [r["reference"] for r in b.list_page(review.Filters()).rows] == [b_sub["reference"]]
    assert [r["action"] for r in b.list_audit()[0]] == ["note"]


def test_a_screening_must_belong_to_a_centre_and_references_stay_unique_across_centres(conn):
    with pytest.raises(ValueError):
        dbmod.store_submission(conn, nonce="nonce-nobody", record=record(), centre="")
    references = {stored(conn, centre, f"n{i}")["reference"] for i in range(100) for centre in (CENTRE, OTHER)}
    assert len(references) == 200


def test_the_same_form_sent_to_two_centres_is_two_screenings(conn):
    first = dbmod.store_screening(conn, nonce="same-form-nonce-1", record=record(), centre=CENTRE)
    again = dbmod.store_screening(conn, nonce="same-form-nonce-1", record=record(), centre=CENTRE)
    other = dbmod.store_screening(conn, nonce="same-form-nonce-1", record=record(), centre=OTHER)
    assert (again.reference, again.stored) == (first.reference, False)
    assert other.stored and other.reference != first.reference
    assert dbmod.find_by_reference(conn, other.reference)["centre"] == OTHER


def test_the_public_side_stores_a_shared_screening_with_the_centre_it_serves(client, db, app):
    from conftest import all_no
    form = all_no(share="yes", name="Ana Client", contact="ana@example.org", consent="yes", nonce="n" * 24)
    assert client.post("/screening/back-massage", data=form).status_code == 200
    assert [r[0] for r in db.execute("SELECT centre FROM submissions")] == [CENTRE]
    with app.test_request_context("/"):
        assert public.current_centre().slug == CENTRE
        from flask import g
        g.centre = app.extensions["screening.centres"][CENTRE]
        assert public.current_centre() is g.centre


def test_a_shared_screening_with_several_centres_and_none_chosen_is_not_stored(two_centres_app):
    from conftest import all_no
    form = all_no(share="yes", name="Ana Client", contact="ana@example.org", consent="yes", nonce="n" * 24)
    assert two_centres_app.test_client().post("/screening/back-massage", data=form).status_code == 404
    conn = dbmod.connect(database_of(two_centres_app))
    assert conn["submissions"].count == 0
    conn.close()


# --- a database from before centres --------------------------------------------------------------------

def old_database(path):
    """A database made by the schema before centres (m001 to the last one before m005), holding
    screenings, a staff admin, a note, audit entries and a queued notice, as a running
    single-centre installation would."""
    conn = dbmod.connect(path)
    with dbmod.immediate(conn):
        dbmod.migrations.apply(conn, stop_before="m005_centres")
    assert "centre" not in conn["submissions"].columns_dict
    now = dbmod.now()
    with dbmod.immediate(conn):
        for i, name in enumerate(["Old Client One", "Old Client Two", "Old Client Three"]):
            conn.execute(
                "INSERT INTO submissions (reference, nonce, service, outcome, answers, fired_rules, suggestions,"
                " rules_version, locale, name, contact, consent_at, created_at, status) VALUES (?, ?, 'back-massage',"
                " 'tell_centre', '{\"fever\": \"no\"}', '[]', '[]', 'v0', 'en', ?, ?, ?, ?, 'new')",
                [f"QQQ{i + 2}-AAAA", f"old-nonce-{i:08d}", name,
                 f"old{i}@example.org", now, now])
        conn.execute("INSERT INTO staff (email, name, role, active, password_hash, created_at, password_changed_at)"
                     " VALUES ('old@centre.example', 'Old Admin', 'admin', 1, ?, ?, ?)",
                     [accounts.hash_password(STAFF_PASSWORD), now, now])
        conn.execute("INSERT INTO notes (submission_id, staff_id, body, created_at) VALUES (1, 1, 'Old note', ?)",
                     [now])
        conn.execute("INSERT INTO audit_log (at, staff_id, staff_email, action, submission_id, reference)"
                     " VALUES (?, 1, 'old@centre.example', 'view', 1, 'QQQ2-AAAA')", [now])
        conn.execute("INSERT INTO outbox (submission_id, reference, created_at, attempts)"
                     " VALUES (2, 'QQQ3-AAAA', ?, 0)", [now])
    counts = {t: conn[t].count for t in ("submissions", "staff", "notes", "audit_log", "outbox")}
    conn.close()
    return counts


def centres_of(path):
    """({table: the centres its rows belong to}, {table: how many rows}) of a database file."""
    conn = dbmod.connect(path)
    try:
        return {t: sorted({r[0] for r in conn.execute(f"SELECT centre FROM {t}")}, key=str)  # noqa: S608
                for t in dbmod.CENTRE_TABLES}, {t: conn[t].count for t in ("submissions", "staff", "notes",
                                                                                "audit_log", "outbox")}
    finally:
        conn.close()


@pytest.mark.sqlite_only
def test_an_old_single_centre_database_loses_nothing_and_all_belongs_to_the_default_centre(make_app, tmp_path):
    path = tmp_path / "old.db"
    before = old_database(path)

    app = make_app(DATABASE=str(path))

    owners, after = centres_of(path)
    assert after == before
    assert owners == {t: [CENTRE] for t in dbmod.CENTRE_TABLES}
    conn = dbmod.connect(path)
    give_second_factor(conn, accounts.find_staff(conn, "old@centre.example"))   # an admin sets one up first
    conn.close()
    client = app.test_client()
    assert login(client, "old@centre.example", STAFF_PASSWORD).status_code == 302
    dashboard = client.get("/staff/").get_data(as_text=True)
    assert all(name in dashboard for name in ["Old Client One", "Old Client Two", "Old Client Three"])
    assert "Old note" in client.get("/staff/submissions/1").get_data(as_text=True)
    assert "QQQ2-AAAA" in client.get("/staff/audit?reference=QQQ2-AAAA").get_data(as_text=True)


@pytest.mark.sqlite_only
def test_an_old_database_with_several_centres_and_no_default_refuses_to_start(make_app, tmp_path, rules_copy):
    path = tmp_path / "old.db"
    before = old_database(path)
    add_centre(rules_copy, OTHER, name="Centre B")

    with pytest.raises(SettingsError) as refused:
        make_app(DATABASE=str(path), RULES_DIR=str(rules_copy))
    assert "SCREENING_DEFAULT_CENTRE" in str(refused.value)
    owners, after = centres_of(path)
    assert after == before and owners == {t: [None] for t in dbmod.CENTRE_TABLES}

    make_app(DATABASE=str(path), RULES_DIR=str(rules_copy), DEFAULT_CENTRE=OTHER)
    assert centres_of(path)[0] == {t: [OTHER] for t in dbmod.CENTRE_TABLES}


def _start_a_worker(path: str, barrier, results) -> None:
    """One gunicorn worker's start, in a process of its own (as gunicorn's are: threads would
    meet CPython 3.11's non-thread-safe AST check when Werkzeug compiles the URL rules)."""
    barrier.wait(timeout=60)
    try:
        create_app({"TESTING": True, "SECRET_KEY": "k" * 40, "DATABASE": path})
        results.put(None)
    except Exception as e:  # noqa: BLE001 - any failure is what the test reports
        results.put(repr(e))


def test_several_workers_starting_on_an_old_database_at_once_all_start(tmp_path):
    path = tmp_path / "old.db"
    before = old_database(path)
    spawn = multiprocessing.get_context("spawn")
    barrier, results = spawn.Barrier(4), spawn.Queue()
    workers = [spawn.Process(target=_start_a_worker, args=(str(path), barrier, results)) for _ in range(4)]
    for w in workers:
        w.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    assert outcomes == [None] * 4
    owners, after = centres_of(path)
    assert after == before and owners == {t: [CENTRE] for t in dbmod.CENTRE_TABLES}


# --- each centre numbers its own screenings (issue item 15) ---------------------------------------------

def numbers(conn, centre):
    return [r[0] for r in conn.execute("SELECT number FROM submissions WHERE centre = ? ORDER BY id", [centre])]


def test_a_centres_first_screening_is_number_1_whatever_other_centres_received(conn):
    for i in range(30):
        stored(conn, CENTRE, f"A client {i}")
    b_first = stored(conn, OTHER, "B client")
    assert b_first["number"] == 1 and b_first["id"] == 31
    assert numbers(conn, CENTRE) == list(range(1, 31))
    assert stored(conn, CENTRE, "A client 30")["number"] == 31 and stored(conn, OTHER, "B again")["number"] == 2


def test_a_number_is_never_given_again_after_the_newest_screening_was_erased(conn):
    stored(conn, CENTRE, "First")
    newest = stored(conn, CENTRE, "Second")
    assert retention.erase_submission(conn, newest["id"], centre=CENTRE, staff=None)
    # a page or notice about number 2 must never lead to another client's screening
    assert stored(conn, CENTRE, "Third")["number"] == 3


def test_the_migration_numbers_existing_screenings_per_centre_in_id_order(tmp_path):
    conn = dbmod.connect(tmp_path / "old.db")
    try:
        with dbmod.immediate(conn):
            dbmod.migrations.apply(conn, stop_before="m007_centre_numbers")
        with dbmod.immediate(conn):
            for i, centre in enumerate([CENTRE, OTHER, CENTRE, OTHER, CENTRE]):
                conn.execute("INSERT INTO submissions (reference, nonce, service, outcome, answers, fired_rules,"
                             " rules_version, locale, name, contact, consent_at, created_at, centre) VALUES"
                             " (?, ?, 'back-massage', 'proceed', '{}', '[]', 't', 'en', ?, 'x@example.org', ?, ?, ?)",
                             [f"QQQQ-AAA{i + 2}", f"nonce-{i}", f"Old {i}", dbmod.now(), dbmod.now(), centre])
        dbmod.migrate(conn)
        assert numbers(conn, CENTRE) == [1, 2, 3] and numbers(conn, OTHER) == [1, 2]
        assert stored(conn, OTHER, "New B")["number"] == 3
        with pytest.raises(dbmod.IntegrityError):       # one number, one screening, per centre
            conn.execute("UPDATE submissions SET number = 1 WHERE centre = ? AND number = 2", [CENTRE])
    finally:
        conn.close()


def test_screenings_from_before_centres_are_numbered_after_the_default_centres_own(tmp_path):
    path = tmp_path / "old.db"
    old_database(path)
    conn = dbmod.connect(path)
    try:
        dbmod.migrate(conn)                      # no default centre known yet: the rows stay orphans
        stored(conn, CENTRE, "Stored meanwhile")
        assert dbmod.adopt_orphans(conn, CENTRE) > 0
        assert numbers(conn, CENTRE) == [2, 3, 4, 1]
        assert stored(conn, CENTRE, "After")["number"] == 5
    finally:
        conn.close()


# --- accounts ----------------------------------------------------------------------------------------

def test_staff_add_with_one_centre_needs_no_centre_and_list_shows_it(runner, db):
    assert runner.invoke(args=["staff", "add", "ana@centre.example"], input="a long passphrase\n").exit_code == 0
    assert accounts.find_staff(db, "ana@centre.example")["centre"] == CENTRE
    listed = runner.invoke(args=["staff", "list"]).output.splitlines()
    assert listed[0].split("\t")[4] == CENTRE


def test_staff_add_with_several_centres_takes_the_centre_named(two_centres_app):
    runner = two_centres_app.test_cli_runner()
    result = runner.invoke(args=["staff", "add", "bea@b.example", "--centre", OTHER], input="a long passphrase\n")
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["staff", "add", "ana@a.example"], input="a long passphrase\n")
    assert result.exit_code == 1 and "--centre" in result.output and OTHER in result.output
    result = runner.invoke(args=["staff", "add", "ana@a.example", "--centre", "nowhere"], input="a long passphrase\n")
    assert result.exit_code == 1 and "nowhere" in result.output and CENTRE in result.output and OTHER in result.output
    assert "Traceback" not in result.output
    listed = runner.invoke(args=["staff", "list"]).output.splitlines()
    assert [line.split("\t")[:1] + line.split("\t")[4:5] for line in listed] == [["bea@b.example", OTHER]]


def test_an_admin_administers_its_own_centre_only(two_centres_app):
    conn = dbmod.connect(database_of(two_centres_app))
    b_admin = accounts.create_staff(conn, email="bea@b.example", password=STAFF_PASSWORD, role="admin", centre=OTHER)
    give_second_factor(conn, b_admin)
    a_admin = accounts.create_staff(conn, email="ana@a.example", password=STAFF_PASSWORD, role="admin", centre=CENTRE)
    give_second_factor(conn, a_admin)
    b_sub = stored(conn, OTHER, "Bea Client")
    conn.close()
    b, a = two_centres_app.test_client(), two_centres_app.test_client()
    assert login(b, b_admin["email"], STAFF_PASSWORD).status_code == 302
    assert login(a, a_admin["email"], STAFF_PASSWORD).status_code == 302
    b.get(f"/staff/submissions/{b_sub['id']}")
    a_trail = a.get("/staff/audit").get_data(as_text=True)
    assert b_sub["reference"] not in a_trail and "bea@b.example" not in a_trail and "ana@a.example" in a_trail
    b_trail = b.get("/staff/audit").get_data(as_text=True)
    assert b_sub["reference"] in b_trail and "ana@a.example" not in b_trail
    assert a.post(f"/staff/submissions/{b_sub['id']}/erase", data={"confirm": "y"}).status_code == 404
    assert b.post(f"/staff/submissions/{b_sub['id']}/erase", data={"confirm": "y"}).status_code == 302


# --- purge ---------------------------------------------------------------------------------------------

def backdate(conn, submission_id, days):
    """Make a submission `days` days old."""
    with dbmod.immediate(conn):
        conn.execute("UPDATE submissions SET created_at = ? WHERE id = ?", [retention.cutoff(days), submission_id])


def test_purge_per_centre_or_all(two_centres_app):
    conn = dbmod.connect(database_of(two_centres_app))
    try:
        old_a, old_b, new_b = stored(conn, CENTRE, "old a"), stored(conn, OTHER, "old b"), stored(conn, OTHER, "new b")
        for sub in (old_a, old_b):
            backdate(conn, sub["id"], 400)
        with dbmod.immediate(conn):
            conn.execute("INSERT INTO share_attempts (key, at) VALUES ('k', 1)")   # long past the window
        runner = two_centres_app.test_cli_runner()

        result = runner.invoke(args=["purge", "--older-than", "365", "--centre", OTHER])
        assert result.exit_code == 0 and "Deleted 1 submissions" in result.output
        assert sorted(r[0] for r in conn.execute("SELECT name FROM submissions")) == ["new b", "old a"]
        assert conn["share_attempts"].count == 0
        assert [(r["centre"], r["detail"]) for r in conn["audit_log"].rows_where("action = 'purge'")] == [
            (OTHER, "1 submissions older than 365 days")]

        result = runner.invoke(args=["purge", "--older-than", "365", "--centre", "nowhere"])
        assert result.exit_code == 1 and CENTRE in result.output and "Traceback" not in result.output

        assert runner.invoke(args=["purge", "--older-than", "365"]).exit_code == 0
        assert [r[0] for r in conn.execute("SELECT name FROM submissions")] == ["new b"]
        assert new_b["id"] == conn.execute("SELECT id FROM submissions").fetchone()[0]
    finally:
        conn.close()


# --- times ---------------------------------------------------------------------------------------------

def test_staff_read_times_in_their_centres_zone_named(two_centres_app):
    conn = dbmod.connect(database_of(two_centres_app))
    b_admin = accounts.create_staff(conn, email="bea@b.example", password=STAFF_PASSWORD, role="admin", centre=OTHER)
    give_second_factor(conn, b_admin)
    b_sub = stored(conn, OTHER, "Bea Client")
    with dbmod.immediate(conn):
        conn.execute("UPDATE submissions SET created_at = '2026-01-15T12:30:00.000000+00:00' WHERE id = ?",
                     [b_sub["id"]])
    conn.close()
    b = two_centres_app.test_client()
    assert login(b, b_admin["email"], STAFF_PASSWORD).status_code == 302
    assert "2026-01-15 07:30 EST" in b.get("/staff/").get_data(as_text=True)
    assert "2026-01-15 07:30 EST" in b.get(f"/staff/submissions/{b_sub['id']}").get_data(as_text=True)
    csv_text = b.get("/staff/export.csv").get_data(as_text=True)
    assert "Received (America/New_York)" in csv_text and "2026-01-15 07:30:00" in csv_text
    # a day of the filter is the centre's day: 07:30 in New York is on the 15th there
    assert "Bea Client" in b.get("/staff/?from=2026-01-15&to=2026-01-15").get_data(as_text=True)
    assert " EST" in b.get("/staff/audit").get_data(as_text=True)


def test_every_staff_page_names_the_centre_whose_staff_is_logged_in(two_centres_app):
    conn = dbmod.connect(database_of(two_centres_app))
    b_admin = accounts.create_staff(conn, email="bea@b.example", password=STAFF_PASSWORD, role="admin", centre=OTHER)
    give_second_factor(conn, b_admin)
    b_sub = stored(conn, OTHER, "Bea Client")
    conn.close()
    b = two_centres_app.test_client()
    assert login(b, b_admin["email"], STAFF_PASSWORD).status_code == 302
    for path in ("/staff/", f"/staff/submissions/{b_sub['id']}", "/staff/audit", "/staff/rules",
                 "/staff/rules/simulate"):
        html = b.get(path).get_data(as_text=True)
        assert f'<p class="staff-centre" data-staff-centre="{OTHER}">Staff of Centre B</p>' in html, path
        assert "Exemple" not in html, path           # the other centre is named nowhere
    assert "Equip del centre Centre B" in b.get("/staff/?lang=ca").get_data(as_text=True)


def test_an_account_without_a_centre_sees_nothing(app, db, make_staff, make_submission):
    """One written by an older version mid-upgrade: refused (403), never shown every centre's data."""
    sub = make_submission(name="Hidden From Nobody")
    staff = make_staff()
    with dbmod.immediate(db):
        db.execute("UPDATE staff SET centre = NULL WHERE id = ?", [staff["id"]])
    client = app.test_client()
    assert login(client, staff["email"], staff["password"]).status_code == 302
    for url in ["/staff/", f"/staff/submissions/{sub['id']}", "/staff/export.csv"]:
        response = client.get(url)
        assert response.status_code == 403 and b"Hidden From Nobody" not in response.data, url


@pytest.mark.sqlite_only
def test_the_centres_audit_trail_and_counts_are_read_from_indexes_led_by_the_centre(conn):
    """At a million rows a scan of every centre's entries would be slow; each statement starts
    with the centre in an index."""
    statements = []
    conn.conn.set_trace_callback(statements.append)
    try:
        store = review.CentreStore(conn, CENTRE)
        store.list_audit()
        store.list_audit(reference="AAAA-BBBB", before=("2026-12-01T10:00:00.000000+00:00", 1))
        store.attention_counts()
        retention.purge(conn, 30, centre=CENTRE)
    finally:
        conn.conn.set_trace_callback(None)
    # the store's own reads (not those of the full-text index's triggers)
    reads = [s for s in statements if re.match(r"SELECT .* FROM (audit_log|submissions)( INDEXED BY \w+)? WHERE", s)]
    assert len(reads) >= 4
    for sql in reads:
        plan = " ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql).fetchall())
        assert "INDEX idx_" in plan and "(centre=?" in plan and "SCAN" not in plan, (sql, plan)


@pytest.mark.parametrize("sort_max", [0, 10**6])      # both ways the full-text search reads its index
@pytest.mark.parametrize("q", ["garcia", "laia garcia", "La", "612 345 678", "laia@exam", "laia@example.org"])
def test_the_full_text_search_finds_only_the_centres_own(conn, monkeypatch, q, sort_max):
    monkeypatch.setattr(review, "SORT_MAX", sort_max)
    for centre in (CENTRE, OTHER):
        for contact in ("612 345 678", "laia@example.org"):
            dbmod.store_submission(conn, nonce=f"n-{centre}-{contact}", centre=centre,
                                   record=record(name=f"Laia Garcia {centre}", contact=contact))
    found = review.CentreStore(conn, CENTRE).list_page(review.Filters(q=q)).rows
    assert {row["name"] for row in found} == {f"Laia Garcia {CENTRE}"}


@pytest.mark.sqlite_only
def test_a_search_with_few_matches_fetches_them_by_id_not_by_walking_the_centre(conn):
    """With the centre usable by an index, SQLite walked every row of the centre to check each
    against the few the full-text index found (12 ms at 45,000 rows for a name nobody has)."""
    stored(conn, CENTRE, "Laia Garcia")
    where, params = review._where(conn, review.Filters(q="zzyzx"), centre=CENTRE)
    plan = [row[3] for row in conn.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM submissions WHERE " + " AND ".join(where)
        + " ORDER BY created_at DESC, id DESC LIMIT 51", params)]
    assert plan[0] == "SEARCH submissions USING INTEGER PRIMARY KEY (rowid=?)", plan
