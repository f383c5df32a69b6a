"""The database: the schema as migrations, and the queries of the public side and the audit trail.

Written once for both engines (see sql.py): SQLite (engine_sqlite.py, the embedded default) and
PostgreSQL (engine_postgres.py). Read shared/RELIABILITY.md before changing anything here. In short:
- a transaction that reads and then writes is `immediate(db)` (SQLite: BEGIN IMMEDIATE behind the
  writers' flock; PostgreSQL: BEGIN with the advisory locks `db.lock()` takes);
- connections are opened after gunicorn's fork, never at import time (web.database.get_db);
- a reference is returned only after COMMIT has returned.
"""
from __future__ import annotations

import contextvars
import hashlib
import json
import re
import secrets
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlite_utils import Migrations

from . import engine_postgres, engine_sqlite
from .engine_sqlite import SQLiteDatabase, close_thread_connections, thread_connection  # noqa: F401
from .sql import (  # noqa: F401 - the store's one place to import these from
    DatabaseError,
    IntegrityError,
    OperationalError,
    StorageError,
    is_postgres,
    is_storage_failure,
    open_database,
    prepare,
)

# No 0/O, 1/I/L: a reference must survive being read over the phone.
REFERENCE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
REFERENCE_LENGTH = 8
STATUSES = ("new", "reviewed", "contacted", "closed")


def now() -> str:
    """The current UTC time as ISO 8601 text, which sorts in time order."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def connect(target: str):
    """A connection of its own to `target`, an SQLite file or a postgresql:// URL (for commands,
    tests and the background sender; requests use web.database.get_db). Close it when done."""
    if is_postgres(str(target)):
        return engine_postgres.connect(str(target))
    return engine_sqlite.connect(target)


def what_to_fix(target: str) -> str:
    """What an operator must repair by hand for the database to be written again ('' when nothing
    is seen): for an SQLite file, its folder's and files' rights."""
    return "" if is_postgres(str(target)) else engine_sqlite.what_to_fix(target)


@contextmanager
def immediate(db) -> Iterator[Any]:
    """A write transaction in which what is read stays true until the commit (see sql.py)."""
    with db.transaction():
        yield db


# --- schema ------------------------------------------------------------------------------------

migrations = Migrations("screening")


@migrations()
def m001_initial(db) -> None:
    """Every table of the first release, public and staff side."""
    db["submissions"].create({
        "id": int, "reference": str, "nonce": str, "service": str, "outcome": str,
        "answers": str, "fired_rules": str, "suggestions": str, "rules_version": str, "locale": str,
        "name": str, "contact": str, "consent_at": str, "created_at": str,
        "status": str, "decision": str, "updated_at": str,
    }, pk="id", not_null={"reference", "nonce", "service", "outcome", "answers", "fired_rules",
                          "rules_version", "name", "contact", "consent_at", "created_at", "status"},
        defaults={"status": "new"})
    db["submissions"].create_index(["reference"], unique=True)
    db["submissions"].create_index(["nonce"], unique=True)
    # the dashboard lists newest first, optionally filtered by one of these; keyset pagination on id
    db["submissions"].create_index(["created_at", "id"])
    db["submissions"].create_index(["outcome", "created_at", "id"])
    db["submissions"].create_index(["status", "created_at", "id"])
    db["submissions"].create_index(["service", "created_at", "id"])
    db.execute("CREATE INDEX idx_submissions_name ON submissions (name COLLATE NOCASE)")

    db["staff"].create({
        "id": int, "email": str, "name": str, "role": str, "active": int, "password_hash": str,
        "created_at": str, "password_changed_at": str,
    }, pk="id", not_null={"email", "role", "active", "password_hash", "created_at"}, defaults={"active": 1})
    db.execute("CREATE UNIQUE INDEX idx_staff_email ON staff (email COLLATE NOCASE)")

    db["notes"].create({
        "id": int, "submission_id": int, "staff_id": int, "body": str, "created_at": str,
    }, pk="id", not_null={"submission_id", "body", "created_at"},
        foreign_keys=[("submission_id", "submissions", "id"), ("staff_id", "staff", "id")])
    db["notes"].create_index(["submission_id"])

    # Server-side staff sessions: the cookie holds only a random token; we store its hash.
    db["staff_sessions"].create({
        "id": str, "staff_id": int, "created_at": str, "last_seen_at": str,
    }, pk="id", not_null={"staff_id", "created_at", "last_seen_at"},
        foreign_keys=[("staff_id", "staff", "id")])
    db["staff_sessions"].create_index(["staff_id"])

    # Failed logins per account and per address, counted across workers.
    db["login_failures"].create({"id": int, "key": str, "at": float}, pk="id", not_null={"key", "at"})
    db["login_failures"].create_index(["key", "at"])

    # Who did what to which submission. No foreign key: the trail outlives an erased submission.
    db["audit_log"].create({
        "id": int, "at": str, "staff_id": int, "staff_email": str, "action": str,
        "submission_id": int, "reference": str, "detail": str,
    }, pk="id", not_null={"at", "action"})
    db["audit_log"].create_index(["at"])
    db["audit_log"].create_index(["submission_id"])

    # Notices to send after the commit (never the health answers).
    db["outbox"].create({
        "id": int, "submission_id": int, "reference": str, "created_at": str, "sent_at": str,
        "attempts": int, "next_attempt_at": str, "last_error": str, "claimed_until": str,
    }, pk="id", not_null={"reference", "created_at", "attempts"}, defaults={"attempts": 0})
    db["outbox"].create_index(["sent_at", "next_attempt_at"])

    db["health"].create({"id": int, "checked_at": str}, pk="id")


@migrations()
def m002_attention_and_outbox_indexes(db) -> None:
    """Indexes the million-row benchmark asked for: the dashboard's 'needs attention' counts read
    only (status, outcome), and purge/erase find a submission's notices without a scan."""
    db["submissions"].create_index(["status", "outcome"])
    db["outbox"].create_index(["submission_id"])


@migrations()
def m003_share_limit_and_fingerprint(db) -> None:
    """A resent form is the same screening only when it sends the same thing: deduplicate on the
    nonce *and* a fingerprint of what was sent (rows stored before have none; store_screening
    computes theirs). And count shares per client address (a keyed hash, never the address) so
    that one address cannot flood the centre; rows older than the window are pruned."""
    db["submissions"].add_column("fingerprint", str)
    db.execute("DROP INDEX idx_submissions_nonce")
    db["submissions"].create_index(["nonce", "fingerprint"], unique=True)
    db["share_attempts"].create({"id": int, "key": str, "at": float}, pk="id", not_null={"key", "at"})
    db["share_attempts"].create_index(["key", "at"])
    db["share_attempts"].create_index(["at"])


# Digits of a contact that is a phone number ('' for an e-mail address), so that "612 34 56 78",
# "612-345-678" and "+34612345678" all find each other. Deterministic: the FTS 'delete' command
# below must be given exactly the values that were indexed.
_PHONE_DIGITS = ("CASE WHEN instr(@C, '@') THEN '' ELSE replace(replace(replace(replace(replace(replace(replace("
                 "@C, ' ', ''), '-', ''), '.', ''), '(', ''), ')', ''), '+', ''), '/', '') END")
_FTS_SQL = (
    "CREATE VIEW IF NOT EXISTS submissions_search AS SELECT id, name, contact, PHONE(contact) AS phone"
    " FROM submissions",
    "CREATE VIRTUAL TABLE IF NOT EXISTS submissions_fts USING fts5(name, contact, phone,"
    " content='submissions_search', content_rowid='id', tokenize='trigram remove_diacritics 1 case_sensitive 0')",
    "INSERT INTO submissions_fts (submissions_fts, rank) VALUES ('secure-delete', 1)",
    """CREATE TRIGGER IF NOT EXISTS submissions_fts_insert AFTER INSERT ON submissions BEGIN
        INSERT INTO submissions_fts (rowid, name, contact, phone)
            VALUES (new.id, new.name, new.contact, PHONE(new.contact));
    END""",
    """CREATE TRIGGER IF NOT EXISTS submissions_fts_delete AFTER DELETE ON submissions BEGIN
        INSERT INTO submissions_fts (submissions_fts, rowid, name, contact, phone)
            VALUES ('delete', old.id, old.name, old.contact, PHONE(old.contact));
    END""",
    """CREATE TRIGGER IF NOT EXISTS submissions_fts_update AFTER UPDATE OF id, name, contact ON submissions BEGIN
        INSERT INTO submissions_fts (submissions_fts, rowid, name, contact, phone)
            VALUES ('delete', old.id, old.name, old.contact, PHONE(old.contact));
        INSERT INTO submissions_fts (rowid, name, contact, phone)
            VALUES (new.id, new.name, new.contact, PHONE(new.contact));
    END""",
    # index the rows stored before this migration
    "INSERT INTO submissions_fts (submissions_fts) VALUES ('rebuild')",
)


def _with_phone_digits(sql: str) -> str:
    """Expand PHONE(x) in `sql` to the digits expression over the column x."""
    for column in ("new.contact", "old.contact", "contact"):
        sql = sql.replace(f"PHONE({column})", _PHONE_DIGITS.replace("@C", column))
    return sql


@migrations()
def m004_search_fts(db) -> None:
    """A full-text index of names, contacts and phone digits for the staff search: substrings,
    any case, with or without accents ("nuria" finds "Núria"), answered from the index in
    milliseconds at a million rows (a LIKE over the names scanned the table: 503 ms).

    External content (a view over submissions): the index holds no second copy of the text.
    'secure-delete' makes a deleted row's entries leave the index pages at once, so that erasure
    and purge remove its bytes (with PRAGMA secure_delete and the checkpoint in retention.py);
    without it they stayed in the index until a merge. Triggers keep the index in step with every
    insert, update and delete, whatever code does it; the last statement indexes the rows stored
    before this migration."""
    for sql in _FTS_SQL:
        db.execute(_with_phone_digits(sql))


# What the staff search ignores in a name: apostrophes ("obrien" finds "O'Brien") and hyphens
# ("garcialopez" finds "García-López"). Words are still split at them for the short-word index.
APOSTROPHES = "'\u2019\u02bc"
NAME_IGNORED = APOSTROPHES + "-\u2010\u2011"


def _sql_without(column: str, characters: str) -> str:
    """SQL for `column` with each of `characters` removed."""
    for ch in characters:
        quoted = ch.replace("'", "''")
        column = f"replace({column}, '{quoted}', '')"
    return column


# Expressions the search indexes are fed with, over a column; deterministic, because the FTS
# 'delete' command must be given exactly the values that were indexed (the triggers recompute them)
_SEARCH_COLUMNS = {
    "NAME": lambda c: _sql_without(c, NAME_IGNORED),
    # the name as written and without its apostrophes: "d'Alba" is found by "Al", "O'Brien" by "Ob"
    "WORDS": lambda c: f"{c} || ' ' || {_sql_without(c, APOSTROPHES)}",
    "PHONE": lambda c: _PHONE_DIGITS.replace("@C", c),
    "REF": lambda c: f"replace({c}, '-', '')",
}
_MACRO_RE = re.compile(r"\b(NAME|WORDS|PHONE|REF)\(((?:new\.|old\.)?\w+)\)")


def _expand(sql: str) -> str:
    """`sql` with NAME(x), WORDS(x), PHONE(x) and REF(x) written out as the expressions above."""
    return _MACRO_RE.sub(lambda m: _SEARCH_COLUMNS[m.group(1)](m.group(2)), sql)


_SEARCH_SQL = (
    "CREATE VIEW submissions_search AS SELECT id, NAME(name) AS name, contact, PHONE(contact) AS phone,"
    " REF(reference) AS reference, WORDS(name) AS words FROM submissions",
    # pieces of 3 characters or more of names, contacts, phone digits and references
    "CREATE VIRTUAL TABLE submissions_fts USING fts5(name, contact, phone, reference,"
    " content='submissions_search', content_rowid='id', tokenize='trigram remove_diacritics 1 case_sensitive 0')",
    # the words of each name, for searches of 1 or 2 characters ("Pe" finds "Peña"): by prefix
    "CREATE VIRTUAL TABLE submissions_words USING fts5(words, content='submissions_search', content_rowid='id',"
    " tokenize='unicode61 remove_diacritics 2', prefix='1 2')",
    "INSERT INTO submissions_fts (submissions_fts, rank) VALUES ('secure-delete', 1)",
    "INSERT INTO submissions_words (submissions_words, rank) VALUES ('secure-delete', 1)",
    """CREATE TRIGGER submissions_fts_insert AFTER INSERT ON submissions BEGIN
        INSERT INTO submissions_fts (rowid, name, contact, phone, reference)
            VALUES (new.id, NAME(new.name), new.contact, PHONE(new.contact), REF(new.reference));
        INSERT INTO submissions_words (rowid, words) VALUES (new.id, WORDS(new.name));
    END""",
    """CREATE TRIGGER submissions_fts_delete AFTER DELETE ON submissions BEGIN
        INSERT INTO submissions_fts (submissions_fts, rowid, name, contact, phone, reference)
            VALUES ('delete', old.id, NAME(old.name), old.contact, PHONE(old.contact), REF(old.reference));
        INSERT INTO submissions_words (submissions_words, rowid, words) VALUES ('delete', old.id, WORDS(old.name));
    END""",
    """CREATE TRIGGER submissions_fts_update AFTER UPDATE OF id, name, contact, reference ON submissions BEGIN
        INSERT INTO submissions_fts (submissions_fts, rowid, name, contact, phone, reference)
            VALUES ('delete', old.id, NAME(old.name), old.contact, PHONE(old.contact), REF(old.reference));
        INSERT INTO submissions_words (submissions_words, rowid, words) VALUES ('delete', old.id, WORDS(old.name));
        INSERT INTO submissions_fts (rowid, name, contact, phone, reference)
            VALUES (new.id, NAME(new.name), new.contact, PHONE(new.contact), REF(new.reference));
        INSERT INTO submissions_words (rowid, words) VALUES (new.id, WORDS(new.name));
    END""",
    # index the rows stored before this migration
    "INSERT INTO submissions_fts (submissions_fts) VALUES ('rebuild')",
    "INSERT INTO submissions_words (submissions_words) VALUES ('rebuild')",
)


@migrations()
def m005_centres(db) -> None:
    """Screenings, staff accounts and audit entries belong to a centre (issue 9). Rows stored
    before have none (NULL) until `adopt_orphans` gives them the default centre at start-up, which
    only the app knows. The dashboard's indexes are re-led by the centre, so that every staff query,
    always narrowed to one centre, is still answered from an index at a million rows."""
    for table in CENTRE_TABLES:
        db[table].add_column("centre", str)
    centre = _default_centre.get()
    if centre:
        # before the indexes exist: giving a million rows their centre afterwards rewrote every
        # entry of six indexes (see adopt_orphans, which then finds nothing left to do)
        for table in CENTRE_TABLES:
            db.execute(f"UPDATE {table} SET centre = ? WHERE centre IS NULL", [centre])  # noqa: S608
    for index in ("idx_submissions_created_at_id", "idx_submissions_outcome_created_at_id",
                  "idx_submissions_status_created_at_id", "idx_submissions_service_created_at_id",
                  "idx_submissions_name", "idx_submissions_status_outcome"):
        db.execute(f"DROP INDEX IF EXISTS {index}")
    submissions = db["submissions"]
    submissions.create_index(["centre", "created_at", "id"])
    submissions.create_index(["centre", "outcome", "created_at", "id"])
    submissions.create_index(["centre", "status", "created_at", "id"])
    submissions.create_index(["centre", "service", "created_at", "id"])
    submissions.create_index(["centre", "status", "outcome"])
    # the search by the start of a name (review._search), within one centre
    db.execute("CREATE INDEX idx_submissions_centre_name ON submissions (centre, name COLLATE NOCASE)")
    # the audit page lists one centre's entries newest first (the rowid rides along in the index),
    # optionally for one reference
    db["audit_log"].create_index(["centre", "reference"])
    db["audit_log"].create_index(["centre"])
    db["staff"].create_index(["centre"])


@migrations()
def m006_resend_key(db) -> None:
    """A key of what makes two shares the same screening whatever the form's nonce (the browser's
    Back button re-sends a filled form with a fresh one): see `resend_key`. Looked up with the time
    of the first share, within RESEND_WINDOW; rows stored before have none and never match."""
    db["submissions"].add_column("resend_key", str)
    db["submissions"].create_index(["resend_key", "created_at"])


@migrations()
def m007_centre_numbers(db) -> None:
    """Each centre numbers its own screenings (1, 2, 3...), the number in staff URLs and notices, so
    that the installation-wide id no longer tells one centre how many screenings others received.
    Existing rows are numbered per centre in id order; `centre_numbers` keeps each centre's last
    number, so a number is never given twice even after the newest screening was erased."""
    db["submissions"].add_column("number", int)
    db.execute("UPDATE submissions SET number = t.n FROM (SELECT id, row_number() OVER"
               " (PARTITION BY centre ORDER BY id) AS n FROM submissions) AS t WHERE submissions.id = t.id")
    db["submissions"].create_index(["centre", "number"], unique=True)
    db["centre_numbers"].create({"centre": str, "last": int}, pk="centre", not_null={"last"})
    db.execute("INSERT INTO centre_numbers (centre, last) SELECT centre, max(number) FROM submissions"
               " WHERE centre IS NOT NULL GROUP BY centre")


@migrations()
def m008_search_folded(db) -> None:
    """The staff search again (see `_SEARCH_SQL`): names without apostrophes and hyphens ("obrien"
    finds "O'Brien"), references without their dash, and a second index of the words of each name
    for searches shorter than a trigram ("Pe" finds "Peña"), accent-blind. Replaces m004's index
    (and the name index of m005 that short searches used), rebuilt from the stored rows."""
    for sql in ("DROP TRIGGER IF EXISTS submissions_fts_insert", "DROP TRIGGER IF EXISTS submissions_fts_delete",
                "DROP TRIGGER IF EXISTS submissions_fts_update", "DROP TABLE IF EXISTS submissions_fts",
                "DROP VIEW IF EXISTS submissions_search", "DROP INDEX IF EXISTS idx_submissions_centre_name"):
        db.execute(sql)
    for sql in _SEARCH_SQL:
        db.execute(_expand(sql))


@migrations()
def m009_audit_by_time(db) -> None:
    """The audit page pages by time (review.list_audit), not by row id, since ids are numbered
    across the installation: its indexes are led by the centre, then the time."""
    db.execute("DROP INDEX IF EXISTS idx_audit_log_centre")
    db.execute("DROP INDEX IF EXISTS idx_audit_log_centre_reference")
    db["audit_log"].create_index(["centre", "at"])
    db["audit_log"].create_index(["centre", "reference", "at"])


# What the staff search reads, folded once in Python when a screening is stored (search_columns),
# so that both engines' indexes hold the same text and find the same rows: FTS5 on SQLite, pg_trgm
# on PostgreSQL (neither engine's own accent folding, which do not agree, is used).
SEARCH_COLUMNS = ("search_name", "search_words", "search_contact", "search_phone", "search_ref")
WITHOUT_NAME_IGNORED = str.maketrans("", "", NAME_IGNORED)
WITHOUT_APOSTROPHES = str.maketrans("", "", APOSTROPHES)
_WORD_RE = re.compile(r"[^\W_]+")
_PHONE_SEPARATORS = re.compile(r"[ \-.()+/]")


def fold(text: str) -> str:
    """`text` as the search compares it: compatibility forms unified ('ﬁ' is 'fi'), accents
    removed ('Núria' is 'nuria'), case folded ('Straße' is 'strasse')."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def search_columns(name: str, contact: str, reference: str) -> dict[str, str]:
    """The search columns of a screening: its name without apostrophes and hyphens ("obrien" finds
    "O'Brien"), the words of its name as written and without apostrophes, after a space each
    ("d'Alba" is found by "al", "O'Brien" by "ob"), its contact, its phone digits (for a contact
    that is not an e-mail address) and its reference without the dash, all folded."""
    folded = fold(name)
    words = _WORD_RE.findall(folded) + _WORD_RE.findall(folded.translate(WITHOUT_APOSTROPHES))
    contact = contact or ""
    return {"search_name": folded.translate(WITHOUT_NAME_IGNORED),
            "search_words": "".join(" " + word for word in dict.fromkeys(words)),
            "search_contact": fold(contact),
            "search_phone": "" if "@" in contact else _PHONE_SEPARATORS.sub("", fold(contact)),
            "search_ref": (reference or "").replace("-", "")}


def m010_search_columns(db) -> None:
    """The search columns (see search_columns), filled for the rows stored before, and each
    engine's index of them (FTS5 on SQLite, replacing m008's, which folded in SQL; pg_trgm on
    PostgreSQL). Written once for both engines, as every migration from here on."""
    for column in SEARCH_COLUMNS:
        db.execute(f"ALTER TABLE submissions ADD COLUMN {column} $TEXT")
    last = 0
    while rows := db.execute("SELECT id, name, contact, reference FROM submissions WHERE id > ? ORDER BY id"
                             " LIMIT 5000", [last]).fetchall():
        db.execute_many("UPDATE submissions SET search_name = :search_name, search_words = :search_words,"
                        " search_contact = :search_contact, search_phone = :search_phone,"
                        " search_ref = :search_ref WHERE id = :id",
                        [{**search_columns(name, contact, reference), "id": row_id}
                         for row_id, name, contact, reference in rows])
        last = rows[-1][0]
    db.create_search_indexes()


def m011_session_browser(db) -> None:
    """Each staff session's browser family ("Firefox/Android": browser and system, coarse, from
    the User-Agent when the session started; NULL when unknown or older), shown on My account so
    that a member can tell their sessions apart. No address, no location."""
    db.execute("ALTER TABLE staff_sessions ADD COLUMN browser $TEXT")


def m012_login_devices(db) -> None:
    """The browsers that have logged in to an account (accounts.py: a known browser is judged on
    its own failed logins only), each revocable; and a count on audit entries, so that repeated
    refused logins are one entry rather than a flood."""
    db.execute("CREATE TABLE login_devices (id $ID_PK, staff_id BIGINT NOT NULL REFERENCES staff (id),"
               " token_hash $TEXT NOT NULL, created_at $TEXT NOT NULL, last_login_at $TEXT NOT NULL,"
               " revoked_at $TEXT)")
    db.execute("CREATE UNIQUE INDEX idx_login_devices_token_hash ON login_devices (token_hash)")
    db.execute("CREATE INDEX idx_login_devices_staff_id ON login_devices (staff_id)")
    db.execute("ALTER TABLE audit_log ADD COLUMN times INTEGER NOT NULL DEFAULT 1")


def m013_staff_accounts(db) -> None:
    """Staff accounts run from the web (issue 15): a second factor, invitation and reset links,
    account e-mails in the outbox.

    - staff.totp_secret: the TOTP secret, encrypted with a key derived from the app's secret
      (store/second_factor.py); NULL when no second factor is set. totp_set_at: when it was set.
      totp_last_step: the TOTP time step of the last code accepted, so that a code works once,
      across app servers (a conditional UPDATE). last_login_at: shown on the team page.
      language: the account's own language for its e-mails (NULL: its centre's).
    - staff_sessions.pending: 1 while the password was right and the second factor is still to
      come: such a session opens no staff page.
    - recovery_codes: ten single-use codes per account, stored as keyed hashes.
    - account_links: invitation (kind 'invite', 72 hours) and password reset ('reset', one hour)
      links; only the SHA-256 of a link's token is kept.
    - outbox.kind ('notice' for the centre's notices, else the account link's kind), link_id, and
      token: a link's token in clear only until its e-mail is sent (then wiped)."""
    for column, kind in (("totp_secret", "$TEXT"), ("totp_set_at", "$TEXT"), ("totp_last_step", "BIGINT"),
                         ("last_login_at", "$TEXT"), ("language", "$TEXT")):
        db.execute(f"ALTER TABLE staff ADD COLUMN {column} {kind}")
    db.execute("ALTER TABLE staff_sessions ADD COLUMN pending INTEGER NOT NULL DEFAULT 0")
    db.execute("CREATE TABLE recovery_codes (id $ID_PK, staff_id BIGINT NOT NULL REFERENCES staff (id),"
               " code_hash $TEXT NOT NULL, created_at $TEXT NOT NULL, used_at $TEXT)")
    db.execute("CREATE UNIQUE INDEX idx_recovery_codes_staff_id_code_hash ON recovery_codes (staff_id, code_hash)")
    db.execute("CREATE TABLE account_links (id $ID_PK, kind $TEXT NOT NULL, centre $TEXT NOT NULL,"
               " staff_id BIGINT REFERENCES staff (id), email $TEXT NOT NULL, name $TEXT, role $TEXT,"
               " language $TEXT, token_hash $TEXT NOT NULL, created_at $TEXT NOT NULL, expires_at $TEXT NOT NULL,"
               " created_by BIGINT REFERENCES staff (id), used_at $TEXT)")
    db.execute("CREATE UNIQUE INDEX idx_account_links_token_hash ON account_links (token_hash)")
    db.execute("CREATE INDEX idx_account_links_centre_kind ON account_links (centre, kind)")
    db.execute("ALTER TABLE outbox ADD COLUMN kind $TEXT NOT NULL DEFAULT 'notice'")
    db.execute("ALTER TABLE outbox ADD COLUMN link_id BIGINT")
    db.execute("ALTER TABLE outbox ADD COLUMN token $TEXT")


def m017_retention(db) -> None:
    """When each piece of the app's own upkeep last ran (store/retention.py: the daily purge of
    expired screenings claims its day here, so that one app server runs it, not each of them)."""
    db.execute("CREATE TABLE maintenance (name $TEXT PRIMARY KEY, last_run_at $TEXT NOT NULL)")


def m014_audit_filters(db) -> None:
    """The audit page's filters by who did it and by action (review.list_audit), each led by the
    centre and ending with the time like m009's, so that a page reads only the entries it shows:
    a member's, an action's, or a member's of one action, newest first from an index of their
    own. Without them a member with few entries, or a rare action, was found by walking the whole
    centre's trail (118 to 162 ms at 450,000 entries of a centre on SQLite; docs/performance.md)."""
    db.execute("CREATE INDEX idx_audit_log_centre_staff_id_at ON audit_log (centre, staff_id, at)")
    db.execute("CREATE INDEX idx_audit_log_centre_action_at ON audit_log (centre, action, at)")
    db.execute("CREATE INDEX idx_audit_log_centre_staff_id_action_at ON audit_log (centre, staff_id, action, at)")


def m016_withdrawal(db) -> None:
    """A client takes back what they sent (store/withdrawal.py).

    - submissions.withdrawal_code_hash: the keyed hash of the screening's withdrawal code (never
      the code); NULL for rows stored before, or without a code (they cannot be withdrawn by code).
    - retired_references: the references of screenings erased, purged or withdrawn, which are never
      given again (not personal data: a random code). Seeded from the audit trail's erasures.
    - withdrawal_attempts: wrong reference and code pairs per keyed hash of an address or of a
      reference, pruned after the window, as share_attempts.
    The dashboard's recent withdrawals (the audit entries of one action) are read through m014's
    (centre, action, at) index."""
    db.execute("ALTER TABLE submissions ADD COLUMN withdrawal_code_hash $TEXT")
    db.execute("CREATE TABLE retired_references (reference $TEXT PRIMARY KEY)")
    db.execute("INSERT INTO retired_references (reference) SELECT DISTINCT reference FROM audit_log"
               " WHERE action = 'erase' AND reference IS NOT NULL ON CONFLICT (reference) DO NOTHING")
    db.execute("CREATE TABLE withdrawal_attempts (id $ID_PK, key $TEXT NOT NULL, at DOUBLE PRECISION NOT NULL)")
    db.execute("CREATE INDEX idx_withdrawal_attempts_key_at ON withdrawal_attempts (key, at)")
    db.execute("CREATE INDEX idx_withdrawal_attempts_at ON withdrawal_attempts (at)")


def m018_data_requests(db) -> None:
    """A person's request to see or erase their data, answered by staff (store/requests.py).

    - data_requests: one row per recorded request: its kind ('access' or 'erasure'), the channel it
      came by ('phone', 'email', 'in_person', 'post'), the day it was received (the centre's day,
      YYYY-MM-DD), whether the person or someone on their behalf asked (on_behalf 0 or 1), the
      staff member who recorded it, when, and how many screenings it covered. Never the requester's
      name, contact or the screenings' references: it outlives what it erased.
    - indexes that find one person's screenings within a centre in one probe: by the folded e-mail
      (search_contact) and by the phone's digits (search_phone)."""
    db.execute("CREATE TABLE data_requests (id $ID_PK, centre $TEXT NOT NULL, kind $TEXT NOT NULL,"
               " channel $TEXT NOT NULL, received_on $TEXT NOT NULL, on_behalf INTEGER NOT NULL,"
               " staff_id BIGINT REFERENCES staff (id), created_at $TEXT NOT NULL, screenings INTEGER NOT NULL)")
    db.execute("CREATE INDEX idx_data_requests_centre_created_at ON data_requests (centre, created_at)")
    db.execute("CREATE INDEX idx_submissions_centre_search_contact ON submissions (centre, search_contact)")
    db.execute("CREATE INDEX idx_submissions_centre_search_phone ON submissions (centre, search_phone)")


def m019_search_words(db) -> None:
    """The dashboard search's words, kept with the staff session that typed them (store/review.py:
    save_search), so that no URL carries a client's name, e-mail or phone: the dashboard names a
    search by its random `id` only.

    - search_words: `id` (random, opaque), `session_id` (staff_sessions.id; the row goes with the
      session, ON DELETE CASCADE, at logout, expiry or when an admin ends it), `words` (encrypted
      with a key derived from the session's cookie token, which the database never holds: the file
      never shows them in clear, and no other session can read them), `created_at`."""
    db.execute("CREATE TABLE search_words (id $TEXT PRIMARY KEY,"
               " session_id $TEXT NOT NULL REFERENCES staff_sessions (id) ON DELETE CASCADE,"
               " words $TEXT NOT NULL, created_at $TEXT NOT NULL)")
    db.execute("CREATE INDEX idx_search_words_session_id ON search_words (session_id)")


def m020_withdrawal_notice(db) -> None:
    """outbox.centre: the centre a 'withdrawn' notice goes to (store/withdrawal.py queues one when a
    client withdraws; its submission is gone, so submission_id is NULL and the centre is kept here).
    Other rows leave it NULL (a notice's centre is its submission's)."""
    db.execute("ALTER TABLE outbox ADD COLUMN centre $TEXT")


# The migrations from m010 on, written once for both engines: SQLite records them with the rest
# (sqlite-utils' Migrations), PostgreSQL after its baseline (engine_postgres.migrate).
PORTABLE_MIGRATIONS = [("m010_search_columns", m010_search_columns),
                       ("m011_session_browser", m011_session_browser),
                       ("m012_login_devices", m012_login_devices),
                       ("m013_staff_accounts", m013_staff_accounts),
                       ("m014_audit_filters", m014_audit_filters),
                       ("m016_withdrawal", m016_withdrawal),
                       ("m017_retention", m017_retention),
                       ("m018_data_requests", m018_data_requests),
                       ("m019_search_words", m019_search_words),
                       ("m020_withdrawal_notice", m020_withdrawal_notice)]
for _name, _function in PORTABLE_MIGRATIONS:
    migrations(name=_name)(_function)


# tables whose rows belong to one centre; the audit trail's installation-wide entries (a failed
# login with an unknown e-mail) have the centre INSTALLATION, which no centre's admin sees
CENTRE_TABLES = ("submissions", "staff", "audit_log")
INSTALLATION = ""


class NoDefaultCentre(RuntimeError):
    """Rows from before centres existed, and no default centre to give them to."""


def adopt_orphans(db, centre: str | None) -> int:
    """Give every row stored before centres existed (centre NULL) to `centre`, the default centre,
    in one BEGIN IMMEDIATE; return how many rows. NoDefaultCentre when there are such rows and no
    default centre: they cannot be guessed. Safe when several workers start at once: the first one
    moves the rows, the others find none."""
    deadline = time.monotonic() + ORPHAN_WAIT_SECONDS
    while True:
        try:
            with immediate(db):
                db.lock("adopt-orphans")
                # NULL sorts first in the centre-led indexes: each check is one index probe
                found = [t for t in CENTRE_TABLES
                         if db.execute(f"SELECT 1 FROM {t} WHERE centre IS NULL LIMIT 1").fetchone()]  # noqa: S608
                if found and not centre:
                    raise NoDefaultCentre(", ".join(found))
                if "submissions" in found:
                    _number_orphans(db, centre)
                return sum(db.execute(f"UPDATE {t} SET centre = ? WHERE centre IS NULL",  # noqa: S608
                                      [centre]).rowcount for t in found)
        except OperationalError as e:
            # a first start after the upgrade may move a million rows while other workers wait
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise


ORPHAN_WAIT_SECONDS = 600


def _number_orphans(db, centre: str) -> None:
    """Inside adopt_orphans' transaction: number the screenings about to join `centre` after its
    last number, in id order (m007 numbered them among themselves, which could clash)."""
    row = db.execute("SELECT last FROM centre_numbers WHERE centre = ?", [centre]).fetchone()
    last = row[0] if row else 0
    count = db.execute(
        "UPDATE submissions SET number = ? + t.n FROM (SELECT id, row_number() OVER (ORDER BY id) AS n"
        " FROM submissions WHERE centre IS NULL) AS t WHERE submissions.id = t.id", [last]).rowcount
    db.execute("INSERT INTO centre_numbers (centre, last) VALUES (?, ?) ON CONFLICT (centre)"
               " DO UPDATE SET last = excluded.last", [centre, last + count])


MIGRATION_WAIT_SECONDS = 600
# the default centre's slug while migrate() runs, for m005 (a migration receives only the database)
_default_centre: contextvars.ContextVar[str | None] = contextvars.ContextVar("default_centre", default=None)


def migrate(db, *, default_centre: str | None = None) -> None:
    """Apply pending migrations. Safe when several workers or servers start at once: on SQLite
    BEGIN IMMEDIATE makes them queue, on PostgreSQL an advisory lock does, and each one that follows
    finds the migrations recorded and does nothing. A migration may take longer than the busy
    timeout (m010 folds every stored row: tens of seconds at a million), so a worker that finds
    the lock taken keeps waiting, within a bound. `default_centre` (a slug) is the centre that rows
    from before centres belong to (m005)."""
    if db.engine == "postgresql":
        engine_postgres.migrate(db, PORTABLE_MIGRATIONS)
        return
    deadline = time.monotonic() + MIGRATION_WAIT_SECONDS
    token = _default_centre.set(default_centre)
    try:
        while True:
            try:
                with immediate(db):
                    migrations.apply(db)
                return
            except OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
    finally:
        _default_centre.reset(token)


# --- public side -------------------------------------------------------------------------------

def random_text(alphabet: str, length: int) -> str:
    """`length` characters of `alphabet`, every string equally likely: the digits, in base
    len(alphabet), of one number drawn uniformly by `secrets` (one draw instead of one per
    character: a reference and a withdrawal code took 43 µs by secrets.choice, 7 µs so)."""
    number, base, digits = secrets.randbelow(len(alphabet) ** length), len(alphabet), []
    for _ in range(length):
        number, digit = divmod(number, base)
        digits.append(alphabet[digit])
    return "".join(digits)


def new_reference() -> str:
    """A short random code such as 'K7QF-M3XA'."""
    code = random_text(REFERENCE_ALPHABET, REFERENCE_LENGTH)
    return f"{code[:4]}-{code[4:]}"


def normalize_reference(text: str) -> str:
    """What a person types ('k7qf m3xa') as the stored form ('K7QF-M3XA'), or '' when it cannot be one."""
    code = "".join(ch for ch in text.upper() if ch.isalnum())
    if len(code) != REFERENCE_LENGTH or any(ch not in REFERENCE_ALPHABET for ch in code):
        return ""
    return f"{code[:4]}-{code[4:]}"


# what makes two sends of one form the same screening: who, which service, the answers, the result
FINGERPRINT_FIELDS = ("service", "outcome", "answers", "fired_rules", "name", "contact", "centre")


def fingerprint(record: dict[str, Any]) -> str:
    """SHA-256 of a record's FINGERPRINT_FIELDS in canonical JSON (answers already normalised)."""
    return _digest({k: record.get(k) for k in FINGERPRINT_FIELDS})


def _digest(data: dict[str, Any]) -> str:
    """SHA-256 of `data` in canonical JSON."""
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def fold_name(name: str) -> str:
    """A name as two shares of one person compare it: trimmed, spaces collapsed, case-folded."""
    return " ".join(unicodedata.normalize("NFKC", name or "").casefold().split())


def normal_contact(contact: str) -> str:
    """A contact as the staff search compares it: an e-mail address in any case, a phone number by
    its digits however it is written ("+34 612-345-678" is "34612345678")."""
    text = unicodedata.normalize("NFKC", contact or "").strip().casefold()
    return text if "@" in text else re.sub(r"[\s\-.()+/]", "", text)


# what makes a share the same screening as one sent a little before, whatever the form's nonce
RESEND_FIELDS = ("centre", "service", "answers", "outcome", "fired_rules")
RESEND_WINDOW = 3600.0    # seconds


def resend_key(record: dict[str, Any]) -> str:
    """SHA-256 of the centre, service, answers and result of a record with its name folded and its
    contact normalised: equal for the same person sending the same screening again (the browser's
    Back button and a second send), different as soon as any answer, the person or the centre is."""
    return _digest({**{k: record.get(k) for k in RESEND_FIELDS}, "name": fold_name(record.get("name", "")),
                    "contact": normal_contact(record.get("contact", ""))})


# what a record given to store_screening may hold (a missing one is stored as NULL)
STORED_FIELDS = ("service", "outcome", "answers", "fired_rules", "suggestions", "rules_version", "locale", "name",
                 "contact", "consent_at")


@dataclass(frozen=True)
class Stored:
    """What store_screening did: the reference to show (always of a stored row with exactly this
    screening), whether a row was written now, and whether the same form (nonce) had already sent
    other answers, which stay stored under their own reference."""

    reference: str
    stored: bool
    replaces: bool = False
    # the withdrawal code, in clear only here, on the way to the result page (only its keyed hash is
    # stored); None when nothing was stored now ("already sent": it was shown then) or without a key
    withdrawal_code: str | None = None


class ShareLimitReached(Exception):
    """Too many shares from one client address within the window; nothing was stored."""

    def __init__(self, retry_after: int):
        super().__init__(f"share limit reached; retry after {retry_after} s")
        self.retry_after = retry_after


SHARE_WINDOW = 3600.0     # seconds over which shares per address are counted


def store_screening(db, *, nonce: str, record: dict[str, Any], centre: str,
                    notify: bool = False, limit_key: str | None = None, limit: int = 0,
                    window: float = SHARE_WINDOW, resend_within: float = RESEND_WINDOW,
                    withdrawal_key: bytes | None = None) -> Stored:
    """Store a shared screening once per (nonce, fingerprint); the reference exists only after COMMIT.

    The same form sent again with the same content (a refresh) stores nothing and returns the first
    reference; sent again with other answers, it is a new screening with a new reference. Any form
    (a browser's Back button brings the filled form back with a fresh nonce) that sends the same
    screening (`resend_key`) as one stored less than `resend_within` seconds ago stores nothing and
    returns that one's reference; an erased screening is deleted, so it never matches. The new row
    gets the next of its centre's numbers (`centre_numbers`). With
    `limit_key` and `limit` > 0, at most `limit` new screenings per key are stored per `window`
    seconds, counted inside the same BEGIN IMMEDIATE so every worker sees one count; over it,
    ShareLimitReached and nothing is stored. With `notify`, a notice is queued in the transaction.
    The screening belongs to `centre` (a slug; its staff alone see it); the centre is part of the
    fingerprint, so the same form sent to two centres is two screenings. With `withdrawal_key`
    (withdrawal.key_from_secret), a new row gets a withdrawal code: its keyed hash is stored, the
    code itself only returned. A reference is never one that was given before (retired ones too).

    One transaction of as few statements as these guarantees allow (tests/test_share_path.py counts
    them): [PostgreSQL: the advisory locks, one statement], the look-up of the same form and of the
    same screening, the share counted and added in one INSERT, the centre's next number, the row
    (whose INSERT itself refuses a reference given before), the notice.
    """
    from . import withdrawal  # it imports this module
    if not centre:
        raise ValueError("a screening must belong to a centre")
    record = {**record, "centre": centre}
    json_fields = ("answers", "fired_rules", "suggestions")
    row = {k: (json.dumps(v, ensure_ascii=False) if k in json_fields else v) for k, v in record.items()}
    mark, same = fingerprint(record), resend_key(record)
    limited = bool(limit_key and limit > 0)
    # what needs no database is made before the write lock is taken, so that it is held for the
    # statements alone: the search columns, the withdrawal code, and a first reference with the
    # code's hash for it (another is drawn inside only when that one is taken)
    code = withdrawal.new_code() if withdrawal_key else None
    values = {**{k: None for k in STORED_FIELDS}, **row, "nonce": nonce, "fingerprint": mark, "resend_key": same,
              **search_columns(record.get("name", ""), record.get("contact", ""), "")}
    reference = new_reference()
    hashed = withdrawal.code_hash(withdrawal_key, reference, code) if code else None
    locks = ["nonce:" + nonce] + ["resend:" + same] * (resend_within > 0) + ["share:" + str(limit_key)] * limited
    try:
        with immediate(db):
            # across app servers on PostgreSQL, what SQLite's single writer gives (see sql.GUARANTEES):
            # taken in this order, always, so that no two transactions wait for each other; in a
            # statement of their own, since a READ COMMITTED statement reads what was committed
            # when it started, and the look-ups below must start once the locks are held
            db.lock(*locks)
            # the same form (nonce) and, within the window, the same screening (resend_key): one
            # statement, each row marked by which of the two found it
            since = (datetime.now(UTC) - timedelta(seconds=resend_within)).isoformat(timespec="microseconds")
            found = db.execute(_LOOK_UP if resend_within > 0 else _LOOK_UP_NONCE,
                               {"nonce": nonce, "same": same, "since": since}).fetchall()
            earlier = [columns for by_nonce, *columns in found if by_nonce]
            for known_reference, known, *columns in earlier:
                if (known or _row_fingerprint(columns)) == mark:
                    return Stored(known_reference, False)
            resent = [columns[0] for by_nonce, *columns in found if not by_nonce]
            if resent:
                return Stored(resent[0], False)
            if limited:
                _count_share(db, str(limit_key), limit, window)
            created_at = now()
            number = db.execute("INSERT INTO centre_numbers (centre, last) VALUES (?, 1) ON CONFLICT (centre)"
                                " DO UPDATE SET last = centre_numbers.last + 1 RETURNING last", [centre]).fetchone()[0]
            values.update(number=number, created_at=created_at)
            for attempt in range(10):
                if attempt:
                    reference = new_reference()
                    hashed = withdrawal.code_hash(withdrawal_key, reference, code) if code else None
                # inserted only when the reference was never given: neither a stored screening's nor
                # an erased or withdrawn one's; no row back when it was (or when another transaction
                # stores it at this moment: the unique index decides), and another is drawn
                inserted = db.execute(_INSERT_SUBMISSION, {**values, "reference": reference,
                                                           "search_ref": reference.replace("-", ""),
                                                           "withdrawal_code_hash": hashed}).fetchone()
                if inserted is not None:
                    break
            else:  # pragma: no cover - 10 collisions in a space of 31^8
                raise StorageError("could not find a free reference")
            if notify:
                db.execute("INSERT INTO outbox (submission_id, reference, created_at, attempts, next_attempt_at)"
                           " VALUES (?, ?, ?, 0, ?)", [inserted[0], reference, created_at, created_at])
    except DatabaseError as e:
        raise StorageError(str(e)) from e
    return Stored(reference, True, replaces=bool(earlier), withdrawal_code=code)


# store_screening's look-up: the rows of the same form (1, and their fingerprints' fields) and the
# first screening with the same resend key within the window (0)
_LOOK_UP_NONCE = ("SELECT 1, reference, fingerprint, service, outcome, answers, fired_rules, name, contact, centre"
                  " FROM submissions WHERE nonce = :nonce")
_LOOK_UP = (_LOOK_UP_NONCE + " UNION ALL SELECT * FROM (SELECT 0, reference, NULL, NULL, NULL,"  # noqa: S608 - constants
            " NULL, NULL, NULL, NULL, NULL FROM submissions WHERE resend_key = :same AND created_at >= :since"
            " ORDER BY created_at LIMIT 1) AS resent")
_SUBMISSION_COLUMNS = ("reference", "nonce", "fingerprint", "resend_key", "number", "service", "outcome", "answers",
                       "fired_rules", "suggestions", "rules_version", "locale", "name", "contact", "consent_at",
                       "created_at", "centre", *SEARCH_COLUMNS, "withdrawal_code_hash")
# a new screening's row, stored only under a reference never given (see store_screening). The conflict
# target is named: a clash on any other unique index ((nonce, fingerprint), (centre, number)) still fails.
_INSERT_SUBMISSION = (
    f"INSERT INTO submissions ({', '.join(_SUBMISSION_COLUMNS)}, status)"  # noqa: S608 - column names above
    f" SELECT {', '.join(':' + c for c in _SUBMISSION_COLUMNS)}, 'new'"
    " WHERE NOT EXISTS (SELECT 1 FROM submissions WHERE reference = :reference)"
    " AND NOT EXISTS (SELECT 1 FROM retired_references WHERE reference = :reference)"
    " ON CONFLICT (reference) DO NOTHING RETURNING id")


def _row_fingerprint(columns: list) -> str:
    """The fingerprint of a row stored before fingerprints were (columns as FINGERPRINT_FIELDS)."""
    record = dict(zip(FINGERPRINT_FIELDS, columns, strict=True))
    for key in ("answers", "fired_rules"):
        record[key] = json.loads(record[key]) if record[key] is not None else None
    return fingerprint(record)


# One new share in this many (by its row's id) also deletes every address's attempts that have left
# the window: the count below reads only the window's rows, so old ones no longer need to go at once.
# The table thus holds the window's shares plus at most about this many more; the daily purge
# (retention._after_purge) deletes them too.
SHARE_PRUNE_EVERY = 64


def _count_share(db, key: str, limit: int, window: float) -> None:
    """Inside the caller's transaction (after lock('share:<key>')): count this share, in the same
    statement that counts the key's shares within the window, or raise ShareLimitReached (the
    caller's rollback then stores nothing)."""
    at = time.time()
    counted = db.execute("INSERT INTO share_attempts (key, at) SELECT :key, :at WHERE (SELECT count(*)"
                         " FROM share_attempts WHERE key = :key AND at > :since) < :limit RETURNING id",
                         {"key": key, "at": at, "since": at - window, "limit": limit}).fetchone()
    if counted is None:
        oldest = db.execute("SELECT min(at) FROM share_attempts WHERE key = ? AND at > ?",
                            [key, at - window]).fetchone()[0]
        raise ShareLimitReached(max(1, int(oldest + window - at) + 1))
    if counted[0] % SHARE_PRUNE_EVERY == 0:
        db.execute("DELETE FROM share_attempts WHERE at <= ?", [at - window])


def store_submission(db, *, nonce: str, record: dict[str, Any], centre: str,
                     notify: bool = False) -> tuple[str, bool]:
    """store_screening without a limit, as (reference, newly stored): for callers that need no more."""
    result = store_screening(db, nonce=nonce, record=record, centre=centre, notify=notify)
    return result.reference, result.stored


def check_health(db) -> None:
    """Raise unless the database can be read and written."""
    try:
        with immediate(db):
            db.execute("INSERT INTO health (id, checked_at) VALUES (1, ?)"
                       " ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at", [now()])
        db.execute("SELECT 1 FROM submissions LIMIT 1").fetchone()
    except DatabaseError as e:
        raise StorageError(str(e)) from e


def decode(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A submissions row with its JSON columns parsed."""
    if row is None:
        return None
    row = dict(row)
    for key in ("answers", "fired_rules", "suggestions"):
        if row.get(key) is not None:
            row[key] = json.loads(row[key])
    return row


def get_submission(db, submission_id: int) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM submissions WHERE id = ?", [submission_id]))
    return decode(rows[0]) if rows else None


def find_by_reference(db, reference: str) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM submissions WHERE reference = ?", [normalize_reference(reference)]))
    return decode(rows[0]) if rows else None


# --- audit trail --------------------------------------------------------------------------------

def audit(db, *, action: str, staff: dict | None = None, submission_id: int | None = None,
          reference: str | None = None, detail: str | None = None, centre: str | None = None) -> None:
    """Record who did what to which submission. Joins the caller's transaction when one is open.

    The entry belongs to `centre`, else to the staff member's centre, else to the installation
    (INSTALLATION: no centre's admin sees it). `detail` must never hold health answers: it
    outlives an erased submission.
    """
    if centre is None:
        centre = (staff or {}).get("centre") or INSTALLATION
    db.execute(
        "INSERT INTO audit_log (at, staff_id, staff_email, action, submission_id, reference, detail, centre)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [now(), staff["id"] if staff else None, staff["email"] if staff else None, action, submission_id,
         reference, detail, centre])
