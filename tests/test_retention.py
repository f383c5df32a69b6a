"""Purge and erasure delete submissions, their notes and notices, and their bytes on disk."""
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import CENTRE, database_of

from screening.store import db as dbmod
from screening.store import retention


@pytest.fixture
def other_connection(db_file):
    """A second connection that has read the database, like another worker of a running app."""
    conn = dbmod.connect(db_file)
    conn.execute("SELECT count(*) FROM submissions").fetchone()
    yield conn
    conn.close()


def store(conn, tag, *, days_old=0, notify=False):
    """Store a submission whose name, contact, free-text answer and note each carry a canary
    derived from `tag`; optionally backdate it. Return its id."""
    record = {"service": "back-massage", "outcome": "tell_centre",
              "answers": {"fever": "no", "notes": f"{tag}-ANSWER my shoulder"},
              "fired_rules": ["r1"], "suggestions": [], "rules_version": "test", "locale": "en",
              "name": f"{tag}-NAME", "contact": f"{tag}-CONTACT@example.org", "consent_at": dbmod.now()}
    reference, _ = dbmod.store_submission(conn, nonce=f"nonce-{tag}", record=record, centre=CENTRE,
                                          notify=notify)
    submission_id = conn.execute("SELECT id FROM submissions WHERE reference = ?", [reference]).fetchone()[0]
    with dbmod.immediate(conn):
        conn.execute("INSERT INTO notes (submission_id, body, created_at) VALUES (?, ?, ?)",
                   [submission_id, f"{tag}-NOTE called back", dbmod.now()])
        if days_old:
            created = (datetime.now(UTC) - timedelta(days=days_old)).isoformat(timespec="microseconds")
            conn.execute("UPDATE submissions SET created_at = ? WHERE id = ?", [created, submission_id])
    return submission_id


def raw_bytes(path: Path) -> bytes:
    """Everything SQLite keeps on disk for this database: the file, its WAL and its shared memory."""
    return b"".join(Path(f"{path}{suffix}").read_bytes()
                    for suffix in ("", "-wal", "-shm") if Path(f"{path}{suffix}").exists())


FIELDS = ("NAME", "CONTACT", "ANSWER", "NOTE")


def canaries(tag):
    return [f"{tag}-{field}".encode() for field in FIELDS]


@pytest.mark.sqlite_only
def test_purge_removes_the_bytes_of_old_submissions_and_keeps_recent_ones(db_file, conn, other_connection):
    store(conn, "CANARY-OLD-7Q2", days_old=400)
    store(conn, "CANARY-NEW-5ZK", days_old=2)
    on_disk = raw_bytes(db_file)
    assert all(c in on_disk for c in canaries("CANARY-OLD-7Q2"))   # the test can fail

    assert retention.purge(conn, 365) == 1

    on_disk = raw_bytes(db_file)
    assert [c for c in canaries("CANARY-OLD-7Q2") if c in on_disk] == []
    assert [c for c in canaries("CANARY-NEW-5ZK") if c not in on_disk] == []
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert other_connection.execute("SELECT count(*) FROM submissions").fetchone()[0] == 1


@pytest.mark.sqlite_only
def test_erasure_removes_the_bytes_of_one_submission_and_keeps_the_others(db_file, conn, other_connection):
    gone = store(conn, "CANARY-ERASE-3MX")
    store(conn, "CANARY-KEEP-8WD")
    assert all(c in raw_bytes(db_file) for c in canaries("CANARY-ERASE-3MX"))

    reference = retention.erase_submission(conn, gone, centre=CENTRE, staff=None)

    assert reference is not None
    on_disk = raw_bytes(db_file)
    assert [c for c in canaries("CANARY-ERASE-3MX") if c in on_disk] == []
    assert [c for c in canaries("CANARY-KEEP-8WD") if c not in on_disk] == []
    assert other_connection.execute("SELECT count(*) FROM submissions").fetchone()[0] == 1


def test_purge_deletes_notes_and_queued_notices_of_the_purged_submissions_only(conn):
    old = store(conn, "OLD", days_old=31, notify=True)
    new = store(conn, "NEW", days_old=29, notify=True)

    assert retention.purge(conn, 30) == 1

    assert [r[0] for r in conn.execute("SELECT id FROM submissions")] == [new]
    assert [r[0] for r in conn.execute("SELECT submission_id FROM notes")] == [new]
    assert [r[0] for r in conn.execute("SELECT submission_id FROM outbox")] == [new]
    assert old != new


def test_a_purge_in_several_batches_deletes_every_old_submission_and_audits_once(conn):
    for i in range(5):
        store(conn, f"OLD{i}", days_old=10, notify=True)
    kept = store(conn, "NEW", days_old=1)

    assert retention.purge(conn, 5, batch=2) == 5

    assert [r[0] for r in conn.execute("SELECT id FROM submissions")] == [kept]
    assert [r[0] for r in conn.execute("SELECT submission_id FROM notes")] == [kept]
    assert conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    assert [r["detail"] for r in conn["audit_log"].rows] == ["5 submissions older than 5 days"]


def test_purge_with_zero_days_deletes_everything_stored_so_far(conn):
    store(conn, "A")
    store(conn, "B")
    assert retention.purge(conn, 0) == 2
    assert conn.execute("SELECT count(*) FROM submissions").fetchone()[0] == 0


@pytest.mark.parametrize("days", [-1, 36501, 10**9])
def test_purge_refuses_a_number_of_days_out_of_range(conn, days):
    store(conn, "A")
    with pytest.raises(ValueError, match="from 0 to 36500"):
        retention.purge(conn, days)
    assert conn.execute("SELECT count(*) FROM submissions").fetchone()[0] == 1


def test_purge_is_audited_with_a_count_and_no_personal_data(conn):
    store(conn, "SECRET-7", days_old=100)
    staff = {"id": 3, "email": "admin@example.org"}

    retention.purge(conn, 90, staff=staff)

    rows = [dict(r) for r in conn["audit_log"].rows]
    assert len(rows) == 1
    assert rows[0]["action"] == "purge"
    assert rows[0]["detail"] == "1 submissions older than 90 days"
    assert rows[0]["staff_email"] == "admin@example.org"
    assert "SECRET-7" not in repr(rows)


def test_erasure_is_audited_by_reference_only_and_deletes_notes_and_notices(conn):
    gone = store(conn, "SECRET-9", notify=True)
    kept = store(conn, "OTHER", notify=True)
    reference = conn.execute("SELECT reference FROM submissions WHERE id = ?", [gone]).fetchone()[0]

    assert retention.erase_submission(conn, gone, centre=CENTRE, staff={"id": 1, "email": "a@example.org"}) == reference

    assert [r[0] for r in conn.execute("SELECT submission_id FROM notes")] == [kept]
    assert [r[0] for r in conn.execute("SELECT submission_id FROM outbox")] == [kept]
    rows = [dict(r) for r in conn["audit_log"].rows]
    assert [(r["action"], r["reference"], r["submission_id"]) for r in rows] == [("erase", reference, gone)]
    assert "SECRET-9" not in repr(rows)


def test_erasing_an_unknown_submission_returns_none_and_audits_nothing(conn):
    assert retention.erase_submission(conn, 12345, centre=CENTRE, staff=None) is None
    assert conn["audit_log"].count == 0


# --- the command line ---------------------------------------------------------------------------

def backdate(app, days):
    """Make every stored submission `days` days old."""
    conn = dbmod.connect(database_of(app))
    created = (datetime.now(UTC) - timedelta(days=days)).isoformat(timespec="microseconds")
    with dbmod.immediate(conn):
        conn.execute("UPDATE submissions SET created_at = ?", [created])
    conn.close()


def test_purge_command_deletes_old_submissions_and_says_how_many(app, runner, make_submission):
    make_submission()
    make_submission()
    backdate(app, 40)
    make_submission()

    result = runner.invoke(args=["purge", "--older-than", "30"])

    assert result.exit_code == 0, result.output
    assert "Deleted 2 submissions older than 30 days." in result.output
    conn = dbmod.connect(database_of(app))
    assert conn.execute("SELECT count(*) FROM submissions").fetchone()[0] == 1
    conn.close()


@pytest.mark.parametrize("days", ["-1", "ten", "1.5", "", "1000000000", "36501", "9" * 40])
def test_purge_command_refuses_days_that_are_not_a_whole_number_from_0_to_36500(app, runner, make_submission, days):
    make_submission()
    backdate(app, 400)

    result = runner.invoke(args=["purge", "--older-than", days])

    assert result.exit_code == 2
    assert "Invalid value for '--older-than'" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)   # no traceback
    conn = dbmod.connect(database_of(app))
    assert conn.execute("SELECT count(*) FROM submissions").fetchone()[0] == 1
    conn.close()


def test_purge_command_says_the_range_of_days_it_takes(runner):
    result = runner.invoke(args=["purge", "--older-than", "1000000000"])
    assert "1000000000 is not in the range 0<=x<=36500" in result.output
    assert runner.invoke(args=["purge", "--older-than", "36500"]).exit_code == 0


def test_purge_command_needs_the_number_of_days(runner):
    result = runner.invoke(args=["purge"])
    assert result.exit_code == 2
    assert "--older-than" in result.output


@pytest.mark.sqlite_only
def test_purge_command_on_a_database_it_cannot_open_is_one_clean_line(make_app, tmp_path):
    (tmp_path / "data").mkdir()
    app = make_app(DATABASE=str(tmp_path / "data" / "screening.db"))
    (tmp_path / "data").rename(tmp_path / "moved")      # the folder is gone under the running app

    result = app.test_cli_runner().invoke(args=["purge", "--older-than", "30"])

    assert result.exit_code == 1
    assert result.output.startswith("Error: the purge stopped: the database cannot be written (")
    assert "unable to open database file" in result.output and "Traceback" not in result.output


# --- the search index (db.m004_search_fts) --------------------------------------------------------

def trigrams(text):
    """The pieces the trigram index stores for `text` (lower case), as bytes."""
    text = text.lower()
    return {text[i:i + 3].encode() for i in range(len(text) - 2)}


def index_pieces(gone_tag, kept_tag):
    """Index pieces only the erased submission's name and contact produce."""
    gone = trigrams(f"{gone_tag}-NAME") | trigrams(f"{gone_tag}-CONTACT@example.org")
    kept = trigrams(f"{kept_tag}-NAME") | trigrams(f"{kept_tag}-CONTACT@example.org")
    return gone - kept


@pytest.mark.sqlite_only
@pytest.mark.parametrize("how", ["erase", "purge"])
def test_the_search_index_loses_the_bytes_of_erased_and_purged_submissions(db_file, conn, other_connection, how):
    gone = store(conn, "QZX-7WJ", days_old=400)
    store(conn, "KEEP-2HB")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pieces = [p for p in index_pieces("QZX-7WJ", "KEEP-2HB") if p in raw_bytes(db_file)]
    assert pieces, "the test can fail: some pieces of the erased name are stored in the index"
    assert [row[0] for row in conn.execute(
        "SELECT rowid FROM submissions_fts WHERE submissions_fts MATCH '\"qzx-7wj\"'")] == [gone]

    if how == "erase":
        retention.erase_submission(conn, gone, centre=CENTRE, staff=None)
    else:
        retention.purge(conn, 365)

    on_disk = raw_bytes(db_file)
    assert [p for p in pieces if p in on_disk] == []
    assert conn.execute("SELECT count(*) FROM submissions_fts WHERE submissions_fts MATCH '\"keep-2hb\"'"
                        ).fetchone()[0] == 1
    conn.execute("INSERT INTO submissions_fts (submissions_fts) VALUES ('integrity-check')")


@pytest.mark.sqlite_only
@pytest.mark.parametrize("how", ["erase", "purge"])
def test_the_index_of_name_words_loses_the_words_of_erased_and_purged_names(db_file, conn, other_connection, how):
    """The short-word search's index (db.m008_search_folded) holds each word of a name, folded:
    those of an erased name leave the files too."""
    gone = store(conn, "WQZXV-JKMWVQ", days_old=400)
    store(conn, "KEEP-2HB")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    words = [b"wqzxv", b"jkmwvq"]
    assert all(w in raw_bytes(db_file) for w in words), "the test can fail: the words are stored in the index"
    assert [row[0] for row in conn.execute(
        "SELECT rowid FROM submissions_words WHERE submissions_words MATCH 'jk*'")] == [gone]

    if how == "erase":
        retention.erase_submission(conn, gone, centre=CENTRE, staff=None)
    else:
        retention.purge(conn, 365)

    on_disk = raw_bytes(db_file)
    assert [w for w in words if w in on_disk] == []
    kept = "SELECT count(*) FROM submissions_words WHERE submissions_words MATCH 'keep'"
    assert conn.execute(kept).fetchone()[0] == 1
    conn.execute("INSERT INTO submissions_words (submissions_words) VALUES ('integrity-check')")
