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
- `lock(*keys)`: inside a transaction, wait for every other transaction holding one of the keys,
  taken in the order given (PostgreSQL: transaction-level advisory locks, all in one statement;
  SQLite: nothing, BEGIN IMMEDIATE already did);
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
     "lock('share:<address key>') then one INSERT that counts the key's shares within the window and adds "
     "this one only under the limit, in one transaction",
     "tests/test_engines.py::test_share_limit_holds_across_connections, "
     "tests/test_share_path.py::test_the_limit_holds_across_connections_with_old_attempts_present, "
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
    ("a second-factor code (of the app, or a recovery code) is accepted once, whichever server gets it",
     "a conditional UPDATE: staff.totp_last_step set only when it is NULL or lower than the code's step, "
     "recovery_codes.used_at only when NULL; the row count says which request won",
     "tests/test_second_factor.py::test_the_same_code_sent_at_once_from_many_connections_is_accepted_once"),
    ("each centre's numbers are given once, in order",
     "INSERT ... ON CONFLICT DO UPDATE ... RETURNING on centre_numbers (a row lock); unique (centre, number)",
     "tests/test_engines.py::test_same_form_from_many_threads_is_stored_once"),
    ("a reference is never given twice, not even after its screening was erased, purged or withdrawn",
     "unique index on reference, and the references kept in retired_references: the INSERT itself stores the "
     "row only when neither table holds the reference (ON CONFLICT (reference) DO NOTHING for one not yet "
     "committed), else another is drawn",
     "tests/test_storage.py, tests/test_withdrawal.py::test_a_withdrawn_reference_is_never_given_again, "
     "tests/test_share_path.py"),
    ("a withdrawal erases its screening once, and wrong pairs are counted by every server",
     "lock('withdraw:<address key>') then lock('withdraw:<reference key>'), then count, look up, and "
     "erase or count the failure, in one transaction",
     "tests/test_withdrawal.py::test_a_pair_confirmed_from_many_servers_at_once_erases_once_and_is_audited_once, "
     "tests/test_withdrawal.py::test_wrong_pairs_from_many_servers_at_once_never_pass_the_limit"),
    ("a notice is sent once by one sender at a time",
     "claim: SELECT ... FOR UPDATE SKIP LOCKED and a lease, in one transaction",
     "tests/test_engines.py::test_outbox_claims_never_overlap"),
    ("a centre keeps an active admin: its last one is never demoted or deactivated, even by two admins "
     "demoting each other at once",
     "lock('admins:<centre>'), then the acting admin checked again, the other active admins counted and the "
     "change made, in one transaction (store/team.py)",
     "tests/test_team_page.py::test_two_admins_demoting_each_other_at_once_leave_exactly_one_admin"),
    ("an account link (invitation, reset) is used once",
     "lock('link:<id>') and UPDATE ... SET used_at WHERE used_at IS NULL AND expires_at > now, in the transaction "
     "that creates the account or sets the password (store/links.py)",
     "tests/test_account_links.py::test_a_link_used_from_two_connections_at_once_works_once"),
    ("the forgotten-password limit counts every server's requests",
     "lock('forgot:<key>') on the e-mail's and the address's keys (in that order), then count and insert, "
     "in one transaction (store/links.py)",
     "tests/test_account_links.py::test_the_forgot_limit_counts_the_requests_of_every_connection"),
    ("the daily purge of expired screenings runs once a day for the whole installation",
     "claim_daily: lock('maintenance:retention'), then read and write the day's row of maintenance, in "
     "one transaction",
     "tests/test_retention_days.py::test_one_claim_a_day_however_many_workers_ask_at_once"),
    ("migrations are applied once when servers start together",
     "an advisory lock around the whole migration run (SQLite: BEGIN IMMEDIATE)",
     "tests/test_engines.py::test_servers_starting_together_migrate_once"),
)
