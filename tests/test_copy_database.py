"""`screening copy-database --to postgresql://...` (SPEC "Storage engines"; screening/store/copy.py):
an installation on SQLite made by the previous schema (m001 to m009), with every kind of row, moved
into PostgreSQL: every table arrives whole with its ids and references, new rows get fresh ids and
the next centre number, staff log in (and keep their sessions) on an app pointed at the copy and
find the copied screenings, a target holding data is refused and left as it was, a table that did
not arrive whole rolls the copy back, and no password is ever printed."""
import itertools
import json
import os
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
from conftest import CENTRE, RED_FLAGS, give_second_factor, login, search

from screening import create_app
from screening.store import accounts, copy, engine_sqlite
from screening.store import db as dbmod

OTHER = "exemple-girona"              # a second centre's rows (not served by the shipped rules)
KEY = "copy-test-secret-key-" + "k" * 32
PASSWORD = "a long passphrase for ana"
URL_PASSWORD = "Sekr3t-never-printed"
TOKEN = "a-session-token-from-before-the-move"
ODD_TEXT = "Asked about the injury 😊\nline two\twith a tab, a \\ and \\N"     # what COPY's text form escapes
_names = itertools.count()


# --- the databases --------------------------------------------------------------------------------------

@pytest.fixture
def fresh_database(postgres_url):
    """make() -> the URL of a new, empty PostgreSQL database (no schema), dropped after the test."""
    from postgres_server import create_database, database_url, drop_database

    from screening.store import engine_postgres
    made = []

    def make() -> str:
        name = f"copy_{os.getpid()}_{next(_names)}"
        made.append(name)
        return create_database(postgres_url, name)
    yield make
    for name in made:
        engine_postgres.close_pools(database_url(postgres_url, name))
        drop_database(postgres_url, name)


def with_password(url: str, password: str = URL_PASSWORD) -> str:
    """The URL with a password (the test server trusts loopback: any password is accepted)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.username}:{password}@{parts.hostname}:{parts.port}"))


def submission(row_id: int, centre: str, number: int, name: str, contact: str, **more) -> dict:
    answers = {f: "no" for f in RED_FLAGS} | {"pregnant": "no"}
    record = {"service": "decontracting-back-massage", "outcome": "proceed", "answers": answers,
              "fired_rules": [], "name": name, "contact": contact, "centre": centre}
    return {"id": row_id, "reference": dbmod.new_reference(), "nonce": f"nonce-{row_id}",
            "service": record["service"], "outcome": "proceed", "answers": json.dumps(answers),
            "fired_rules": "[]", "suggestions": "[]", "rules_version": "2026.1", "locale": "en", "name": name,
            "contact": contact, "consent_at": "2026-11-02T09:00:00.000000+00:00",
            "created_at": f"2026-11-0{row_id % 9 + 1}T10:00:00.{row_id:06d}+00:00", "status": "new",
            "decision": None, "updated_at": None, "fingerprint": dbmod.fingerprint(record), "centre": centre,
            "resend_key": dbmod.resend_key(record), "number": number, **more}


def insert(conn, table: str, rows: list[dict]) -> None:
    for row in rows:
        conn.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                     list(row.values()))


@pytest.fixture
def old_installation(tmp_path):
    """An SQLite database made by the previous schema (up to m009: no search columns yet) holding
    rows of every table: two centres' screenings with notes, notices sent and pending, staff of both
    centres and their sessions, login failures, share attempts, audit entries, the centres' last
    numbers (the newest screenings of the centre were erased: its last number is past the rows'),
    the health row. Ids have gaps, as after erasures."""
    path = tmp_path / "old.db"
    conn = engine_sqlite.connect(path)
    dbmod.migrations.apply(conn, stop_before="m010_search_columns")
    assert "search_name" not in conn["submissions"].columns_dict
    now = dbmod.now()
    with conn.conn:
        insert(conn, "staff", [
            {"id": 1, "email": "ana@centre.example", "name": "Ana Admin", "role": "admin", "active": 1,
             "password_hash": accounts.hash_password(PASSWORD), "created_at": now, "password_changed_at": now,
             "centre": CENTRE},
            {"id": 2, "email": "joan@girona.example", "name": None, "role": "staff", "active": 1,
             "password_hash": accounts.hash_password(PASSWORD), "created_at": now, "password_changed_at": None,
             "centre": OTHER},
            {"id": 4, "email": "gone@centre.example", "name": "Gone", "role": "staff", "active": 0,
             "password_hash": accounts.hash_password(PASSWORD), "created_at": now, "password_changed_at": now,
             "centre": CENTRE}])
        insert(conn, "submissions", [
            submission(1, CENTRE, 1, "Núria Peña", "+34 612 345 678"),
            submission(2, CENTRE, 2, "Seán O'Brien", "sean@example.org", status="reviewed",
                       decision="ok to book", updated_at=now),
            submission(5, OTHER, 1, "Núria Girona", "nuria@girona.example"),
            submission(7, CENTRE, 4, "García-López", "612-000-111")])
        insert(conn, "notes", [
            {"id": 1, "submission_id": 1, "staff_id": 1, "body": "Called back: ok", "created_at": now},
            {"id": 3, "submission_id": 7, "staff_id": 1, "body": ODD_TEXT, "created_at": now},
            {"id": 4, "submission_id": 5, "staff_id": 2, "body": "Girona's note", "created_at": now},
            {"id": 6, "submission_id": 1, "staff_id": None, "body": "from an erased account", "created_at": now}])
        insert(conn, "staff_sessions", [
            {"id": accounts.session_id(TOKEN), "staff_id": 1, "created_at": now, "last_seen_at": now},
            {"id": accounts.session_id("girona's"), "staff_id": 2, "created_at": now, "last_seen_at": now}])
        insert(conn, "login_failures", [
            {"id": 3, "key": accounts.account_key("ana@centre.example"), "at": time.time() - 30},
            {"id": 8, "key": "address:somewhere", "at": 1764770001.0}])      # a float with a whole value
        insert(conn, "audit_log", [
            {"id": 1, "at": now, "staff_id": 1, "staff_email": "ana@centre.example", "action": "view",
             "submission_id": 1, "reference": "ABCD-EFGH", "detail": None, "centre": CENTRE},
            {"id": 2, "at": now, "staff_id": None, "staff_email": None, "action": "login_failed",
             "submission_id": None, "reference": None, "detail": "unknown@example.org", "centre": ""},
            {"id": 9, "at": now, "staff_id": 2, "staff_email": "joan@girona.example", "action": "erase",
             "submission_id": 3, "reference": "ERAS-EDXX", "detail": None, "centre": OTHER}])
        insert(conn, "outbox", [
            {"id": 1, "submission_id": 1, "reference": "ABCD-EFGH", "created_at": now, "sent_at": now,
             "attempts": 1, "next_attempt_at": None, "last_error": None, "claimed_until": None},
            {"id": 2, "submission_id": 7, "reference": "WXYZ-2345", "created_at": now, "sent_at": None,
             "attempts": 3, "next_attempt_at": now, "last_error": "SMTP 451: try again", "claimed_until": None}])
        insert(conn, "health", [{"id": 1, "checked_at": now}])
        insert(conn, "share_attempts", [
            {"id": 11, "key": "address:a", "at": time.time() - 5}, {"id": 12, "key": "address:b", "at": 1764770000.5}])
        insert(conn, "centre_numbers", [{"centre": CENTRE, "last": 6}, {"centre": OTHER, "last": 1}])
    conn.close()
    return path


def app_on(target: str | None = None, *, sqlite: str, elsewhere: str | None = None):
    """An app whose SQLite database is `sqlite`, on PostgreSQL `target` or `elsewhere` when given."""
    settings = {"TESTING": True, "SECRET_KEY": KEY, "WTF_CSRF_ENABLED": False, "SHARE_LIMIT_PER_HOUR": 0,
                "DATABASE": str(sqlite)}
    if target or elsewhere:
        settings["DATABASE_URL"] = target or elsewhere
    return create_app(settings)


def copy_database(source, to: str, *, elsewhere: str | None = None):
    """Run `screening copy-database --to <to>` on an app whose SQLite database is `source`."""
    app = app_on(sqlite=source, elsewhere=elsewhere)
    return app.test_cli_runner().invoke(args=["copy-database", "--to", to])


def contents(target: str) -> dict:
    """Every table's rows, by primary key, as the app reads them (either engine)."""
    conn = dbmod.connect(target)
    try:
        return {table: {row[key]: row for row in conn.query(f"SELECT * FROM {table}")}
                for table, key in copy.TABLES}
    finally:
        conn.close()


# --- the copy ----------------------------------------------------------------------------------------------

def test_an_old_installation_arrives_whole_and_the_app_runs_on_the_copy(old_installation, fresh_database, tmp_path):
    target, elsewhere = fresh_database(), fresh_database()
    # SCREENING_DATABASE_URL names another database: the SQLite file is copied all the same, and
    # the factory did not touch it (the command brings it to the current schema itself)
    result = copy_database(old_installation, with_password(target), elsewhere=elsewhere)
    assert result.exit_code == 0, result.output
    assert URL_PASSWORD not in result.output
    lines = result.output.splitlines()
    # login_devices (m012), recovery_codes and account_links (m013), withdrawal_attempts (m016),
    # maintenance (m017), data_requests (m018) and search_words (m019) came after this installation's time: they arrive
    # empty; retired_references (m016) holds the reference its audit trail says was erased
    counts = {"staff": 3, "submissions": 4, "notes": 4, "staff_sessions": 2, "login_devices": 0,
              "recovery_codes": 0, "account_links": 0, "login_failures": 2, "audit_log": 3, "outbox": 2,
              "health": 1, "share_attempts": 2, "withdrawal_attempts": 0, "retired_references": 1,
              "centre_numbers": 2, "maintenance": 0, "data_requests": 0,
              "search_words": 0}
    tables = len(copy.TABLE_NAMES)
    assert [line.strip() for line in lines[1:1 + tables]] == [
        f"{t}: {counts[t]} row{'' if counts[t] == 1 else 's'}" for t in copy.TABLE_NAMES]
    assert lines[1 + tables].startswith("checked: every table arrived whole")

    # every row, with its id, as the app reads it on either engine; the source was migrated (m010)
    source, copied = contents(str(old_installation)), contents(target)
    assert source == copied
    assert {t: len(rows) for t, rows in copied.items()} == counts
    assert sorted(copied["submissions"]) == [1, 2, 5, 7] and sorted(copied["staff"]) == [1, 2, 4]
    assert {n["id"]: (n["submission_id"], n["staff_id"]) for n in copied["notes"].values()} == {
        1: (1, 1), 3: (7, 1), 4: (5, 2), 6: (1, None)}
    assert copied["submissions"][1]["search_name"] == "nuria pena"
    assert copied["login_failures"][8]["at"] == 1764770001.0
    assert copied["notes"][3]["body"] == ODD_TEXT

    # new rows get ids past the copied ones and the centre's next number
    conn = dbmod.connect(target)
    try:
        stored = dbmod.store_screening(conn, nonce="after-the-move", centre=CENTRE, resend_within=0, notify=True,
                                       record={"service": "decontracting-back-massage", "outcome": "proceed",
                                               "answers": {f: "no" for f in RED_FLAGS}, "fired_rules": [],
                                               "name": "New Client", "contact": "new@example.org",
                                               "rules_version": "2026.1", "consent_at": dbmod.now()})
        new = dbmod.find_by_reference(conn, stored.reference)
        assert new["id"] == 8 and new["number"] == 7
        assert conn.execute("SELECT max(id) FROM outbox").fetchone()[0] == 3
        staff = accounts.create_staff(conn, email="new@centre.example", password=PASSWORD, centre=CENTRE)
        assert staff["id"] == 5
        with dbmod.immediate(conn):
            dbmod.audit(conn, action="test")
        assert conn.execute("SELECT max(id) FROM audit_log").fetchone()[0] == 10
        # the old installation's admin sets up a second factor (admins must have one, the default)
        give_second_factor(conn, accounts.find_staff(conn, "ana@centre.example"), KEY)
    finally:
        conn.close()

    # an app on the copy, with the same secret key: the session from before the move still works,
    # staff log in and find their centre's copied screenings (and only theirs), the search too
    app = app_on(target, sqlite=tmp_path / "unused.db")
    kept = app.test_client()
    kept.set_cookie("screening_staff", TOKEN, path="/staff")
    page = kept.get("/staff/")
    assert page.status_code == 200 and "Seán O&#39;Brien" in page.text
    client = app.test_client()
    assert login(client, "ana@centre.example", PASSWORD).status_code == 302
    page = client.get("/staff/").text
    assert all(name in page for name in ("Núria Peña", "Seán O&#39;Brien", "García-López", "New Client"))
    assert "Núria Girona" not in page
    found = search(client, "nuria").text
    assert "Núria Peña" in found and "García-López" not in found and "Núria Girona" not in found
    assert "García-López" in search(client, "garcialopez").text
    assert "Seán O&#39;Brien" in search(client, "obrien").text
    assert client.get("/staff/submissions/4").status_code == 200      # by its centre number, as before
    assert login(app.test_client(), "gone@centre.example", PASSWORD).status_code != 302


def test_a_target_holding_data_is_refused_and_left_as_it_was(old_installation, fresh_database):
    target = fresh_database()
    assert copy_database(old_installation, target).exit_code == 0
    before = contents(target)
    again = copy_database(old_installation, with_password(target))
    assert again.exit_code != 0
    message = again.output.splitlines()[-1]
    assert "already holds rows in" in message and "submissions" in message and "staff" in message
    assert URL_PASSWORD not in again.output
    assert contents(target) == before


def test_one_row_in_any_table_of_the_target_is_enough_to_refuse(old_installation, fresh_database):
    target = fresh_database()
    conn = dbmod.connect(target)
    try:
        dbmod.migrate(conn)
        dbmod.check_health(conn)        # an app server already answered /healthz there
    finally:
        conn.close()
    result = copy_database(old_installation, target)
    assert result.exit_code != 0
    assert "already holds rows in health:" in result.output
    assert {t: len(rows) for t, rows in contents(target).items() if rows} == {"health": 1}


def test_a_table_that_does_not_arrive_whole_rolls_the_copy_back(old_installation, fresh_database):
    """A target that changes what it is given (here a trigger) fails the check: the command says
    which table, exits non-zero, and the target holds none of the rows."""
    target = fresh_database()
    conn = dbmod.connect(target)
    try:
        dbmod.migrate(conn)
        conn.execute("CREATE FUNCTION shout() RETURNS trigger AS $$ BEGIN NEW.name := upper(NEW.name);"
                     " RETURN NEW; END $$ LANGUAGE plpgsql")
        conn.execute("CREATE TRIGGER shout BEFORE INSERT ON submissions FOR EACH ROW EXECUTE FUNCTION shout()")
    finally:
        conn.close()
    result = copy_database(old_installation, target)
    assert result.exit_code != 0
    assert "not every table arrived whole: submissions (4 rows read from SQLite, 4 in PostgreSQL, other values)" \
        in result.output
    assert "checked: every table arrived whole" not in result.output
    assert all(not rows for rows in contents(target).values())


def test_a_failure_midway_leaves_the_target_empty(old_installation, fresh_database):
    """A row PostgreSQL refuses (here text in a whole-number column, which SQLite keeps) stops the
    copy: nothing of the tables copied before it stays."""
    conn = engine_sqlite.connect(old_installation)
    with conn.conn:
        conn.execute("UPDATE outbox SET attempts = 'many' WHERE id = 2")
    conn.close()
    target = fresh_database()
    result = copy_database(old_installation, with_password(target))
    assert result.exit_code != 0
    assert "rolled back" in result.output and URL_PASSWORD not in result.output
    assert all(not rows for rows in contents(target).values())


def test_an_unreachable_or_malformed_target_is_one_line_without_the_password(old_installation, postgres_url):
    parts = urlsplit(postgres_url)
    closed = urlunsplit(parts._replace(netloc=f"postgres:{URL_PASSWORD}@127.0.0.1:1"))
    for to in (closed, f"postgresql://postgres:{URL_PASSWORD}@127.0.0.1:notaport/x", "/tmp/some.db"):
        result = copy_database(old_installation, to)
        assert result.exit_code != 0, to
        assert URL_PASSWORD not in result.output
        assert result.output.splitlines()[-1].startswith("Error: "), result.output


# --- the copy knows every table --------------------------------------------------------------------------

def test_the_copy_knows_every_table_of_both_engines(db_file, postgres_template, postgres_url):
    """Fails when a migration adds a table that copy.TABLES does not name (it would not be copied)."""
    from postgres_server import database_url
    sqlite = dbmod.connect(db_file)
    pg = dbmod.connect(database_url(postgres_url, postgres_template))
    try:
        assert sorted(sqlite.user_tables()) == sorted(copy.TABLE_NAMES)
        assert sorted(pg.user_tables()) == sorted(copy.TABLE_NAMES)
        # parents before the tables that refer to them, on either engine's foreign keys
        references = [(r[0], r[1]) for r in pg.execute(
            "SELECT c.conrelid::regclass::text, c.confrelid::regclass::text FROM pg_constraint c"
            " WHERE c.contype = 'f' AND c.connamespace = current_schema()::regnamespace")]
        references += [(t, row[2]) for t in copy.TABLE_NAMES
                       for row in sqlite.execute(f"PRAGMA foreign_key_list({t})").fetchall()]
        assert ("notes", "submissions") in references and ("staff_sessions", "staff") in references
        order = copy.TABLE_NAMES.index
        assert all(order(parent) < order(child) for child, parent in references), references
        # each table's declared key is its primary key
        for table, key in copy.TABLES:
            assert sqlite[table].pks == [key], table
    finally:
        sqlite.close()
        pg.close()


def test_a_database_with_a_table_the_copy_does_not_know_is_refused(old_installation, fresh_database):
    conn = engine_sqlite.connect(old_installation)
    with conn.conn:
        conn.execute("CREATE TABLE consents (id INTEGER PRIMARY KEY, text TEXT)")
    conn.close()
    target = fresh_database()
    result = copy_database(old_installation, target)
    assert result.exit_code != 0
    assert "holds tables the copy does not know: consents" in result.output
    conn = dbmod.connect(target)
    try:
        assert conn.user_tables() == []         # not even the schema was written
    finally:
        conn.close()


def test_rows_are_copied_in_batches_whatever_the_key(old_installation, fresh_database):
    """Batches of 2 rows: each table is read page by page after its key (whole numbers with gaps,
    session hashes, centre slugs), and every row arrives once."""
    target = fresh_database()
    seen = []
    copied = copy.copy_database(old_installation, target, default_centre=CENTRE, batch=2, progress=seen.append)
    assert [c.table for c in copied] == [c.table for c in seen] == list(copy.TABLE_NAMES)
    assert contents(str(old_installation)) == contents(target)
    assert {c.table: c.rows for c in copied}["submissions"] == 4


def test_the_copy_has_the_indexes_and_constraints_of_a_migrated_database(old_installation, fresh_database,
                                                                          postgres_url, postgres_template):
    """The indexes dropped for the load are all made again (the search's trigram ones included)."""
    from postgres_server import database_url
    target = fresh_database()
    copy.copy_database(old_installation, target, default_centre=CENTRE)

    def schema(url: str) -> tuple[list, list]:
        conn = dbmod.connect(url)
        try:
            return (conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
                                 " ORDER BY indexname").fetchall(),
                    conn.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
                                 " WHERE connamespace = current_schema()::regnamespace ORDER BY conname").fetchall())
        finally:
            conn.close()
    copied, migrated = schema(target), schema(database_url(postgres_url, postgres_template))
    assert copied == migrated
    assert "idx_submissions_search_name" in dict(copied[0])
