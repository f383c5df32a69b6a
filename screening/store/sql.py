"""What the store's two engines have in common, and how to open either.

The store's queries are written once, as plain SQL with `?` (or `:name`) placeholders and a few
macros for what the engines spell differently (`$IDS(?)`, `$NOINDEX(col)`, `$INDEXED_BY(index)`,
`$SKIP_LOCKED`, `$TEXT`); engine_sqlite.py and engine_postgres.py each write them out in their own
dialect. A connection of either engine (`Database` below) has:

- `execute(sql, params)` -> a DB-API cursor (fetchone, fetchall, rowcount, description, iteration);
- `query(sql, params)` -> the rows as dicts;
- `transaction()`: a write transaction that reads and writes as one (SQLite: the writers' flock
  and BEGIN IMMEDIATE, one writer at a time; PostgreSQL: BEGIN ... COMMIT, READ COMMITTED, with the
  locks below);
- `lock(key)`: inside a transaction, wait for every other transaction holding the same key
  (PostgreSQL: a transaction-level advisory lock; SQLite: nothing, BEGIN IMMEDIATE already did);
- `search_conditions(terms, limit)`: the staff search through the engine's text index;
- `after_erase()`: make erased rows leave the files (SQLite: a WAL checkpoint; PostgreSQL: a
  VACUUM started in the background, never inside a request);
- `release()`: the end of a request (a pooled connection goes back to its pool), `close()`.

What holds across workers on SQLite holds across app servers on PostgreSQL; each guarantee, how
the code makes it hold, and the test that proves it on both engines is listed in GUARANTEES.
"""
from __future__ import annotations

from urllib.parse import urlsplit

import psycopg
import psycopg_pool
from sqlite_utils.utils import sqlite3


class StorageError(RuntimeError):
    """The database could not be read or written (disk full, locked for too long, read-only, a
    server that cannot be reached...): a 503, never a 500."""


# what either driver raises; `except` clauses and isinstance() take these tuples
DatabaseError = (sqlite3.DatabaseError, psycopg.Error)
OperationalError = (sqlite3.OperationalError, psycopg.OperationalError)
IntegrityError = (sqlite3.IntegrityError, psycopg.IntegrityError)
# failures of the storage rather than of a statement, whatever the engine
UNAVAILABLE = (StorageError, psycopg.OperationalError, psycopg.InterfaceError, psycopg_pool.PoolTimeout,
               psycopg.errors.AdminShutdown, psycopg.errors.CannotConnectNow)


def is_postgres(target: str) -> bool:
    """Whether a database target (a file path or a URL) names a PostgreSQL database."""
    return urlsplit(target).scheme in ("postgresql", "postgres")


def is_storage_failure(error: Exception) -> bool:
    """True when a driver's error says the database cannot be reached, read or written, as opposed
    to a mistake in a statement such as a missing column."""
    if isinstance(error, UNAVAILABLE):
        return True
    if isinstance(error, sqlite3.DatabaseError):
        from .engine_sqlite import is_storage_failure as sqlite_failure
        return sqlite_failure(error)
    # PostgreSQL: class 53 (out of disk or memory), 57 (shut down), 58 (I/O), 08 (connection)
    state = getattr(error, "sqlstate", None) or ""
    return state[:2] in ("53", "57", "58", "08")


def open_database(target: str, *, pool_size: int = 4, wait: float = 5.0):
    """A connection to `target`: an SQLite file's path, or a postgresql:// URL (a connection of
    this process's pool for it). Close it with `.close()` (a pooled one goes back)."""
    if is_postgres(target):
        from . import engine_postgres
        return engine_postgres.pooled(target, size=pool_size, wait=wait)
    from . import engine_sqlite
    return engine_sqlite.connect(target)


def request_connection(target: str, *, pool_size: int, wait: float):
    """The connection a request uses: on SQLite the worker thread's own (kept open for its next
    request), on PostgreSQL one of the process's pool. `release()` it at the request's end."""
    if is_postgres(target):
        from . import engine_postgres
        return engine_postgres.pooled(target, size=pool_size, wait=wait)
    from . import engine_sqlite
    return engine_sqlite.thread_connection(target)


def prepare(target: str) -> None:
    """What must exist before the first connection (SQLite: its folder)."""
    if not is_postgres(target):
        from . import engine_sqlite
        engine_sqlite.prepare(target)


def indexed_piece(column: str, text: str) -> str:
    """The part of a search piece that the trigram index should look up. For an e-mail address, its
    local part with the '@': the domain's trigrams ("example", "org", "gmail") are in most rows, and
    an index reads each of their long lists of rows whole (measured at 10^6 rows on PostgreSQL: 65 ms
    for a whole address, against a few ms for its local part; on SQLite 41 ms). Anything else: the
    piece itself."""
    if column == "search_contact" and "@" in text:
        local = text.split("@", 1)[0]
        if len(local) >= 3:
            return local + "@"
    return text


# Every guarantee the SQLite store gives across workers, given across app servers on PostgreSQL:
# (what holds, how, the tests that prove it on both engines). Each later feature adds its own.
# tests/test_servers_postgres.py proves them again end to end: two gunicorn servers on one
# PostgreSQL, 16 clients, one server killed, PostgreSQL stopped mid-load.
GUARANTEES = (
    ("a reference is shown only after COMMIT returned (synchronous commit on)",
     "store_screening returns after the transaction; PostgreSQL sessions set synchronous_commit=on",
     "tests/test_engines.py::test_reference_only_after_commit, tests/test_crash_safety.py"),
    ("one form sent twice (same nonce and fingerprint) is stored once",
     "lock('nonce:...') then the look-up, in one transaction; unique (nonce, fingerprint)",
     "tests/test_engines.py::test_same_form_from_many_threads_is_stored_once"),
    ("the same screening sent again within the hour (the Back button) is stored once",
     "lock('resend:...') then the look-up of resend_key, in one transaction",
     "tests/test_engines.py::test_resend_from_many_threads_is_stored_once"),
    ("the share limit counts every server's shares",
     "lock('share:<address key>') then count and insert, in one transaction",
     "tests/test_engines.py::test_share_limit_holds_across_connections, "
     "tests/test_servers_postgres.py::test_the_share_limit_counts_the_shares_of_both_servers"),
    ("the login throttle counts every server's failures",
     "lock('login:<key>') on the account's and the address's keys (in that order), or on the known "
     "browser's key alone, then count, take the last failure's time and insert",
     "tests/test_engines.py::test_login_throttle_holds_across_connections, "
     "tests/test_servers_postgres.py::test_the_login_throttle_counts_the_failures_of_both_servers"),
    ("a browser known to an account is judged on its own failures only (strangers cannot lock it out)",
     "a live login_devices row for the signed device cookie's account makes 'device:<id>' the only key "
     "counted and checked for that login",
     "tests/test_engines.py::test_login_throttle_holds_across_connections, tests/test_login_devices.py"),
    ("each centre's numbers are given once, in order",
     "INSERT ... ON CONFLICT DO UPDATE ... RETURNING on centre_numbers (a row lock); unique (centre, number)",
     "tests/test_engines.py::test_same_form_from_many_threads_is_stored_once"),
    ("a reference is never given twice",
     "unique index on reference, checked before the insert",
     "tests/test_storage.py"),
    ("a notice is sent once by one sender at a time",
     "claim: SELECT ... FOR UPDATE SKIP LOCKED and a lease, in one transaction",
     "tests/test_engines.py::test_outbox_claims_never_overlap"),
    ("the daily purge of expired screenings runs once a day for the whole installation",
     "claim_daily: lock('maintenance:retention'), then read and write the day's row of maintenance, in "
     "one transaction",
     "tests/test_retention_days.py::test_one_claim_a_day_however_many_workers_ask_at_once"),
    ("migrations are applied once when servers start together",
     "an advisory lock around the whole migration run (SQLite: BEGIN IMMEDIATE)",
     "tests/test_engines.py::test_servers_starting_together_migrate_once"),
)
