"""The storage layer keeps its promises: the connection settings, the SQLite it accepts, the schema,
and shared screenings stored once, acknowledged only once committed, and refused cleanly on failure."""
import json
import re

import pytest
import sqlite_utils
from conftest import CENTRE, all_no

from screening.store import db as dbmod
from screening.store import engine_sqlite

REFERENCE_RE = re.compile(r"^[A-Z0-9]{4}-[A-Z0-9]{4}$")


def record(**overrides):
    """A shared screening as the public side stores it."""
    values = {"service": "back-massage", "outcome": "proceed", "answers": {"fever": "no"}, "fired_rules": [],
              "suggestions": [], "rules_version": "test", "locale": "en", "name": "Ana", "contact": "ana@example.org",
              "consent_at": dbmod.now()}
    values.update(overrides)
    return values


def count(conn, table="submissions"):
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def shared_form(**overrides):
    return all_no(share="yes", name="Ana Client", contact="ana@example.org", consent="yes", nonce="n" * 24,
                  **overrides)


# --- the connection factory -----------------------------------------------------------------------

@pytest.mark.parametrize(("pragma", "expected"), [
    ("journal_mode", "wal"),
    ("synchronous", 2),                       # FULL: NORMAL in WAL can lose the last commits on power loss
    ("busy_timeout", engine_sqlite.BUSY_TIMEOUT_MS),
    ("foreign_keys", 1),
    ("secure_delete", 1),
])
def test_every_new_connection_has_the_settings_we_rely_on(tmp_path, pragma, expected):
    conn = dbmod.connect(tmp_path / "fresh.db")
    try:
        assert conn.execute(f"PRAGMA {pragma}").fetchone()[0] == expected
    finally:
        conn.close()


def test_the_busy_timeout_waits_a_few_seconds_but_well_under_the_worker_timeout():
    assert 2000 <= engine_sqlite.BUSY_TIMEOUT_MS <= 10000


@pytest.mark.sqlite_only
def test_the_sqlite_in_use_is_recent_enough_for_wal_with_several_processes(conn):
    assert tuple(conn.sqlite_version[:3]) >= (3, 51, 3)


@pytest.mark.parametrize("version", [(3, 40, 1), (3, 51, 2), (3, 7, 0)])
def test_an_sqlite_with_the_wal_reset_bug_is_refused(tmp_path, monkeypatch, version):
    monkeypatch.setattr(sqlite_utils.Database, "sqlite_version", property(lambda self: version))
    with pytest.raises(RuntimeError, match=r"pysqlite3") as refused:
        dbmod.connect(tmp_path / "old.db")
    assert ".".join(map(str, version)) in str(refused.value)


def test_the_first_fixed_sqlite_is_accepted(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_utils.Database, "sqlite_version", property(lambda self: (3, 51, 3)))
    dbmod.connect(tmp_path / "ok.db").close()


# --- the schema -----------------------------------------------------------------------------------

@pytest.mark.sqlite_only
def test_migrating_twice_changes_nothing(db_file, conn):
    def snapshot():
        schema = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
        applied = conn.execute("SELECT migration_set, name, applied_at FROM _sqlite_migrations ORDER BY id").fetchall()
        return schema, applied

    before = snapshot()
    dbmod.migrate(conn)
    dbmod.migrate(conn)
    assert snapshot() == before
    assert before[1] and dbmod.migrations.pending(conn) == []
    assert not conn.conn.in_transaction


# --- storing a shared screening -------------------------------------------------------------------

def test_a_returned_reference_is_committed_and_visible_to_another_connection(conn_target, conn):
    reference, stored = dbmod.store_submission(conn, nonce="nonce-a" * 3, record=record(), centre=CENTRE)
    assert stored
    assert not conn.in_transaction()
    other = dbmod.connect(conn_target)   # another worker (or app server)
    try:
        row = other.execute("SELECT reference, status FROM submissions WHERE nonce = ?", ["nonce-a" * 3]).fetchone()
    finally:
        other.close()
    assert row == (reference, "new")


def test_the_same_form_sent_twice_unchanged_stores_one_row_and_returns_the_first_reference(conn):
    first = dbmod.store_screening(conn, nonce="same-nonce-123456", record=record(name="First"), centre=CENTRE)
    second = dbmod.store_screening(conn, nonce="same-nonce-123456", record=record(name="First"), centre=CENTRE)
    assert (first.stored, second.stored, second.replaces) == (True, False, False)
    assert second.reference == first.reference
    assert conn.execute("SELECT name FROM submissions").fetchall() == [("First",)]


def stored_rows(conn):
    """{reference: (outcome, answers as JSON-decoded, name)} of every stored screening."""
    rows = conn.execute("SELECT reference, outcome, answers, name FROM submissions").fetchall()
    return {ref: (outcome, json.loads(answers), name) for ref, outcome, answers, name in rows}


@pytest.mark.parametrize("change", [
    {"outcome": "consult_professional", "answers": {"fever": "yes"},
     "fired_rules": [{"rule": "fever", "outcome": "consult_professional"}]},
    {"name": "Ana Second"}, {"contact": "+34 600 000 000"}, {"service": "deep-tissue-massage"},
])
def test_the_same_form_sent_again_changed_is_a_new_screening_under_a_new_reference(conn, change):
    first = dbmod.store_screening(conn, nonce="changed-nonce-1234", record=record(), centre=CENTRE)
    second = dbmod.store_screening(conn, nonce="changed-nonce-1234", record=record(**change), centre=CENTRE)
    assert second.stored and second.replaces and second.reference != first.reference
    rows = stored_rows(conn)
    # each reference names a stored screening with exactly what was sent with it
    assert rows[first.reference] == ("proceed", {"fever": "no"}, "Ana")
    expected = record(**change)
    assert rows[second.reference] == (expected["outcome"], expected["answers"], expected["name"])
    # and sending either version again stores nothing and gives back its own reference
    again = dbmod.store_screening(conn, nonce="changed-nonce-1234", record=record(), centre=CENTRE)
    assert (again.reference, again.stored) == (first.reference, False)
    again = dbmod.store_screening(conn, nonce="changed-nonce-1234", record=record(**change), centre=CENTRE)
    assert again.reference == second.reference
    assert count(conn) == 2


def test_a_row_stored_before_fingerprints_is_still_recognised_when_resent(tmp_path):
    conn = dbmod.connect(tmp_path / "old.db")
    try:
        with dbmod.immediate(conn):
            dbmod.migrations.apply(conn, stop_before="m003_share_limit_and_fingerprint")
        created = dbmod.now()
        conn.execute(
            "INSERT INTO submissions (reference, nonce, service, outcome, answers, fired_rules, suggestions,"
            " rules_version, locale, name, contact, consent_at, created_at) VALUES ('AAAA-BBBB',"
            " 'old-nonce-1234567', 'back-massage', 'proceed', '{\"fever\": \"no\"}', '[]', '[]', 'v', 'en', 'Ana',"
            " 'ana@example.org', ?, ?)", [created, created])
        conn.conn.commit()
        dbmod.migrate(conn)
        dbmod.adopt_orphans(conn, CENTRE)     # as the app does at start-up
        assert dbmod.store_screening(conn, nonce="old-nonce-1234567", record=record(), centre=CENTRE) == \
            dbmod.Stored("AAAA-BBBB", False)
        changed = dbmod.store_screening(conn, nonce="old-nonce-1234567", record=record(name="Other"), centre=CENTRE)
        assert changed.stored and changed.replaces and count(conn) == 2
    finally:
        conn.close()


def test_a_notice_is_queued_in_the_same_transaction_only_when_asked(conn):
    quiet, _ = dbmod.store_submission(conn, nonce="quiet-nonce-123456", record=record(name="Quiet"), centre=CENTRE)
    loud, _ = dbmod.store_submission(conn, nonce="loud-nonce-1234567", record=record(name="Loud"), centre=CENTRE,
                                     notify=True)
    assert conn.execute("SELECT reference FROM outbox").fetchall() == [(loud,)]
    assert quiet != loud


def test_references_use_only_the_unambiguous_alphabet():
    assert not set("01OIL") & set(dbmod.REFERENCE_ALPHABET)
    for _ in range(2000):
        reference = dbmod.new_reference()
        assert REFERENCE_RE.match(reference)
        assert set(reference.replace("-", "")) <= set(dbmod.REFERENCE_ALPHABET)


def test_references_are_unique_across_many_submissions(conn):
    references = [dbmod.store_submission(conn, nonce=f"many-nonce-{i:06d}", record=record(name=f"Ana {i}"),
                                         centre=CENTRE)[0] for i in range(300)]
    assert len(set(references)) == 300
    assert count(conn) == 300


def test_a_reference_collision_picks_another_code(conn, monkeypatch):
    codes = iter(["AAAA-BBBB", "AAAA-BBBB", "CCCC-DDDD"])
    monkeypatch.setattr(dbmod, "new_reference", lambda: next(codes))
    first, _ = dbmod.store_submission(conn, nonce="collide-nonce-0001", record=record(name="Ana"), centre=CENTRE)
    second, _ = dbmod.store_submission(conn, nonce="collide-nonce-0002", record=record(name="Bea"), centre=CENTRE)
    assert (first, second) == ("AAAA-BBBB", "CCCC-DDDD")


@pytest.mark.sqlite_only
def test_a_write_refused_by_the_database_gives_storage_error_and_stores_nothing(conn):
    conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON submissions BEGIN SELECT RAISE(ABORT, 'disk says no'); END")
    with pytest.raises(dbmod.StorageError, match="disk says no"):
        dbmod.store_submission(conn, nonce="refused-nonce-0001", record=record(), centre=CENTRE, notify=True)
    assert not conn.conn.in_transaction
    assert count(conn) == 0 and count(conn, "outbox") == 0


@pytest.mark.sqlite_only
def test_a_failure_at_commit_gives_no_reference_and_stores_nothing(conn):
    # A deferred foreign key is checked only at COMMIT: the insert succeeds, the COMMIT fails.
    conn.execute("CREATE TABLE guard (ref TEXT REFERENCES nowhere(id) DEFERRABLE INITIALLY DEFERRED)")
    conn.execute("CREATE TABLE nowhere (id TEXT PRIMARY KEY)")
    conn.execute("CREATE TRIGGER at_commit AFTER INSERT ON submissions BEGIN"
                 " INSERT INTO guard VALUES (NEW.reference); END")
    with pytest.raises(dbmod.StorageError, match="FOREIGN KEY"):
        dbmod.store_submission(conn, nonce="commit-nonce-00001", record=record(), centre=CENTRE)
    assert not conn.conn.in_transaction
    assert count(conn) == 0


@pytest.mark.sqlite_only
def test_a_read_only_database_fails_the_health_check(conn):
    conn.execute("PRAGMA query_only = ON")
    with pytest.raises(dbmod.StorageError):
        dbmod.check_health(conn)


@pytest.mark.parametrize("reference", ["K7QF-M3XA", "k7qf-m3xa", "k7qf m3xa", " K7QFM3XA ", "k7 qf m3 xa"])
def test_a_reference_typed_any_usual_way_is_understood(reference):
    assert dbmod.normalize_reference(reference) == "K7QF-M3XA"


@pytest.mark.parametrize("text", ["", "K7QF-M3X", "K7QF-M3XAB", "K0QF-M3XA", "KOQF-M3XA", "K1QF-M3XA"])
def test_text_that_cannot_be_a_reference_normalizes_to_nothing(text):
    assert dbmod.normalize_reference(text) == ""


# --- what the client sees when storage fails -------------------------------------------------------

def _refuse_inserts(conn):
    conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON submissions BEGIN SELECT RAISE(ABORT, 'no'); END")


def _read_only_connections(monkeypatch):
    real_connect = engine_sqlite.connect

    def connect(path):
        conn = real_connect(path)
        conn.execute("PRAGMA query_only = ON")   # every write on it fails, as on a read-only disk
        return conn
    monkeypatch.setattr(engine_sqlite, "connect", connect)


@pytest.mark.sqlite_only
@pytest.mark.parametrize("failure", ["trigger", "read_only"])
def test_a_failed_write_shows_a_503_page_without_reference_and_stores_nothing(client, db, monkeypatch, failure):
    if failure == "trigger":
        _refuse_inserts(db)
    else:
        _read_only_connections(monkeypatch)
    response = client.post("/screening/back-massage", data=shared_form())
    assert response.status_code == 503
    assert "data-reference" not in response.text
    assert "Nothing was stored" in response.text
    assert "Traceback" not in response.text and "query_only" not in response.text
    assert count(db) == 0 and count(db, "outbox") == 0


@pytest.mark.sqlite_only
def test_healthz_is_503_while_the_database_cannot_be_written(client, monkeypatch):
    _read_only_connections(monkeypatch)
    assert client.get("/healthz").status_code == 503


@pytest.mark.sqlite_only
def test_the_same_screening_from_a_fresh_form_is_found_through_an_index(conn):
    first = dbmod.store_screening(conn, nonce="first-form-nonce-01", record=record(name="Marta Puig"), centre=CENTRE)
    again = dbmod.store_screening(conn, nonce="back-button-nonce-1", record=record(name=" marta puig"), centre=CENTRE)
    assert again == dbmod.Stored(first.reference, stored=False) and count(conn) == 1
    plan = " ".join(row[-1] for row in conn.execute(
        "EXPLAIN QUERY PLAN SELECT reference FROM submissions WHERE resend_key = ? AND created_at >= ?"
        " ORDER BY created_at LIMIT 1", ["x", "y"]).fetchall())
    assert "USING INDEX idx_submissions_resend_key_created_at" in plan, plan


def test_the_same_screening_for_another_centre_is_stored_for_it(conn):
    first = dbmod.store_screening(conn, nonce="first-form-nonce-01", record=record(), centre=CENTRE)
    other = dbmod.store_screening(conn, nonce="other-form-nonce-01", record=record(), centre="centre-b")
    assert other.stored and other.reference != first.reference


def test_rows_stored_before_the_resend_key_never_match(tmp_path):
    conn = dbmod.connect(tmp_path / "old.db")
    try:
        with dbmod.immediate(conn):
            dbmod.migrations.apply(conn, stop_before="m006_resend_key")
        with dbmod.immediate(conn):     # as the schema of the time stored it
            conn.execute("INSERT INTO submissions (reference, nonce, service, outcome, answers, fired_rules,"
                         " rules_version, locale, name, contact, consent_at, created_at, centre) VALUES"
                         " ('AAAA-BBBB', 'n-old-1', 'back-massage', 'proceed', '{\"fever\": \"no\"}', '[]', 't',"
                         " 'en', 'Ana', 'ana@example.org', ?, ?, ?)", [dbmod.now(), dbmod.now(), CENTRE])
        dbmod.migrate(conn)
        stored = dbmod.store_screening(conn, nonce="new-form-nonce-0001", record=record(), centre=CENTRE)
        assert stored.stored and stored.reference != "AAAA-BBBB"
        assert conn.execute("SELECT number FROM submissions ORDER BY id").fetchall() == [(1,), (2,)]
    finally:
        conn.close()
