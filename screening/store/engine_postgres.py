"""The PostgreSQL engine (14 or newer): pooled connections, the store's SQL in PostgreSQL's
dialect, the schema, migrations applied once across servers, and the staff search through pg_trgm.

- A pool per process and URL (psycopg_pool), opened on first use, so after gunicorn's fork, and
  opened without waiting: a worker that starts while the server is down starts, and its requests
  get StorageError (a 503) after waiting at most `wait` seconds for a connection; the pool keeps
  reconnecting, so the app serves again by itself once the server is back. Each connection is
  checked when taken from the pool (a server restarted meanwhile leaves broken ones behind).
- Connections are in autocommit; `transaction()` is BEGIN ... COMMIT. Reads outside a transaction
  are single statements. synchronous_commit is set on for every session: a reference is shown
  only after its COMMIT reached the server's disk.
- What SQLite's single writer gives for free, PostgreSQL gets from `lock(key)` (a transaction-level
  advisory lock), unique constraints, row locks and FOR UPDATE SKIP LOCKED: see sql.GUARANTEES.
- Text columns use the "C" collation, so that text compares and sorts as SQLite's BINARY does
  (ISO times, references, centres) whatever the database's default collation.
"""
from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
import psycopg_pool
from psycopg.conninfo import conninfo_to_dict

from .sql import StorageError, indexed_piece

log = logging.getLogger(__name__)

MIN_VERSION = 14
CONNECT_TIMEOUT = 3         # seconds for one connection attempt (libpq's connect_timeout)
MIGRATION_LOCK = 0x5C5EE9   # the advisory lock every server takes around its migrations


# --- the store's SQL, as PostgreSQL reads it ------------------------------------------------------

MACROS = {
    "NOINDEX": lambda arg: arg,       # PostgreSQL's planner chooses from its statistics
    "IDS": lambda arg: f"(SELECT unnest(CAST({arg} AS bigint[])))",
    "INDEXED_BY": lambda arg: "",
    "SKIP_LOCKED": lambda arg: "FOR UPDATE SKIP LOCKED",
    "TEXT": lambda arg: 'TEXT COLLATE "C"',
}
_MACRO_RE = re.compile(r"\$([A-Z_]+)(?:\(([^()]*)\))?")
# what the placeholder translation must see: quoted text (kept, with % doubled), '::' casts, '?'
# and ':name' placeholders, and any other '%'
_TOKEN_RE = re.compile(r"'(?:[^']|'')*'|\"[^\"]*\"|::|\?|(?<![\w:]):([A-Za-z_]\w*)|%")


@lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """The store's SQL (macros; `?` and `:name` placeholders) as psycopg takes it (%s, %(name)s)."""
    sql = _MACRO_RE.sub(lambda m: MACROS[m.group(1)](m.group(2)), sql)

    def token(m: re.Match) -> str:
        text = m.group(0)
        if text[0] in "'\"":
            return text.replace("%", "%%")
        if text == "?":
            return "%s"
        if text == "%":
            return "%%"
        if m.group(1):
            return f"%({m.group(1)})s"
        return text
    return _TOKEN_RE.sub(token, sql)


class PostgresDatabase:
    """One connection (usually a pool's) with the store's engine interface (see sql.py)."""

    engine = "postgresql"

    def __init__(self, conn: psycopg.Connection, url: str, pool: psycopg_pool.ConnectionPool | None = None):
        self.conn, self.url, self._pool = conn, url, pool

    def execute(self, sql: str, parameters: Any = None) -> psycopg.Cursor:
        return self.conn.execute(translate(sql), parameters if parameters is not None else ())

    def execute_many(self, sql: str, rows) -> None:
        with self.conn.cursor() as cursor:
            cursor.executemany(translate(sql), rows)

    def create_search_indexes(self) -> None:
        create_search_indexes(self)

    def query(self, sql: str, parameters: Any = None) -> Iterator[dict[str, Any]]:
        cursor = self.execute(sql, parameters)
        names = [c.name for c in cursor.description or ()]
        for row in cursor:
            yield dict(zip(names, row, strict=True))

    def __getitem__(self, table: str) -> _Table:
        return _Table(self, table)

    @contextmanager
    def transaction(self) -> Iterator[PostgresDatabase]:
        """BEGIN ... COMMIT (READ COMMITTED); `lock()` serialises what must not interleave."""
        with self.conn.transaction():
            yield self

    def lock(self, key: str) -> None:
        """Wait until no other transaction holds `key`, then hold it until this one ends."""
        self.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))

    def after_erase(self) -> bool:
        """Vacuum the erased rows' tables in the background (never inside a request): their dead
        tuples become free space at once rather than at autovacuum's next pass."""
        _vacuum_soon(self.url)     # the URL as given: conn.info.dsn has no password
        return True

    def in_transaction(self) -> bool:
        return self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def release(self) -> None:
        """The end of a request: the connection goes back to its pool (rolled back if need be)."""
        self.close()

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        if self._pool is not None:
            self._pool.putconn(conn)
        else:
            conn.close()

    def user_tables(self) -> list[str]:
        """The app's tables (not the migrations' bookkeeping)."""
        return [r[0] for r in self.conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename != 'schema_migrations'"
            " ORDER BY tablename")]

    def table_names(self) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename")]

    def what_to_fix(self) -> str:
        return ""

    # --- the staff search, through pg_trgm (db.m010_search_columns) -------------------------------

    def search_conditions(self, terms: list[tuple[str, str]], limit: int) -> tuple[list[str], list[Any]]:
        """The same rows as engine_sqlite's FTS5 conditions: a piece anywhere in a folded search
        column (LIKE, answered by the column's trigram index), or the start of a word of the name
        (a LIKE on ' ' + the words, whose space the trigram index reads as a word's start)."""
        where: list[str] = []
        params: list[Any] = []
        for column, text in terms:
            escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            if column == "search_words":
                where.append("search_words LIKE ?")
                params.append(f"% {escaped}%")
            elif column == "or_ref":
                where[-1] = f"({where[-1]} OR search_ref LIKE ?)"
                params.append(f"%{escaped}%")
            else:
                piece = indexed_piece(column, text)
                if piece == text:
                    where.append(f"{column} LIKE ?")
                    params.append(f"%{escaped}%")
                else:
                    # the index finds the rows holding the selective part; the whole piece is then
                    # checked on those rows only (strpos: the same test as LIKE '%piece%')
                    escaped_piece = piece.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                    where.append(f"({column} LIKE ? AND strpos({column}, ?) > 0)")
                    params += [f"%{escaped_piece}%", text]
        return where, params


class _Table:
    """The little of sqlite-utils' table API that tests and tools read: count, rows, rows_where."""

    def __init__(self, db: PostgresDatabase, name: str):
        if not re.fullmatch(r"[a-z_]+", name):
            raise ValueError(name)
        self.db, self.name = db, name

    @property
    def count(self) -> int:
        return self.db.execute(f"SELECT count(*) FROM {self.name}").fetchone()[0]  # noqa: S608

    def rows_where(self, where: str | None = None, params: Any = None, *, order_by: str | None = None,
                   limit: int | None = None) -> Iterator[dict[str, Any]]:
        sql = f"SELECT * FROM {self.name}"  # noqa: S608
        if where:
            sql += f" WHERE {where}"
        if order_by:
            sql += f" ORDER BY {order_by}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self.db.query(sql, params)

    @property
    def rows(self) -> Iterator[dict[str, Any]]:
        return self.rows_where()


# --- connections ---------------------------------------------------------------------------------

def describe(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(a malformed URL)"
    return f"{parts.get('user', '')}@{parts.get('host', '')}:{parts.get('port', 5432)}/{parts.get('dbname', '')}"


def check_url(url: str) -> None:
    """ValueError, naming what is wrong (never the password), when libpq cannot read the URL."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError as e:
        raise ValueError(f"not a PostgreSQL URL libpq can read ({str(e).split(':')[0]})") from None
    # libpq reads a port only when connecting: a typo there would look like a server that is down
    if not all(port.isdigit() for port in str(parts.get("port", "")).split(",") if port):
        raise ValueError("not a PostgreSQL URL libpq can read (a port that is not a number)")


def _configure(conn: psycopg.Connection) -> None:
    """Every session's settings: durable commits, UTC."""
    conn.execute("SET synchronous_commit = on")
    conn.execute("SET TIME ZONE 'UTC'")


_pools: dict[tuple[int, str], psycopg_pool.ConnectionPool] = {}
_pools_lock = threading.Lock()


def pool(url: str, *, size: int, wait: float) -> psycopg_pool.ConnectionPool:
    """This process's pool for `url`, opened on first use (after a fork: a child never uses its
    parent's connections). Opened without waiting for the server."""
    key = (os.getpid(), url)
    found = _pools.get(key)
    if found is not None:
        return found
    with _pools_lock:
        found = _pools.get(key)
        if found is None:
            found = psycopg_pool.ConnectionPool(
                url, min_size=1, max_size=max(1, size), open=False, timeout=wait, configure=_configure,
                check=psycopg_pool.ConnectionPool.check_connection, reconnect_timeout=3600 * 24 * 365,
                kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT}, name="screening")
            found.open(wait=False)
            _pools[key] = found
    return found


def pooled(url: str, *, size: int, wait: float) -> PostgresDatabase:
    """A connection of this process's pool for `url`; StorageError when none comes within `wait`."""
    the_pool = pool(url, size=size, wait=wait)
    try:
        return PostgresDatabase(the_pool.getconn(timeout=wait), url, the_pool)
    except psycopg_pool.PoolTimeout as e:
        raise StorageError(f"no connection to PostgreSQL ({describe(url)}) within {wait:g} s") from e


def connect(url: str) -> PostgresDatabase:
    """A connection of its own (no pool), for commands; StorageError when the server cannot be reached."""
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
    except psycopg.OperationalError as e:
        raise StorageError(f"cannot connect to PostgreSQL ({describe(url)}): {e}") from e
    _configure(conn)
    return PostgresDatabase(conn, url)


def close_pools(url: str | None = None) -> None:
    """Close this process's pools (of one URL, or all): for tests and at exit."""
    with _pools_lock:
        for key in [k for k in _pools if url is None or k[1] == url]:
            the_pool = _pools.pop(key)
            if key[0] == os.getpid():
                the_pool.close(timeout=1)


def server_version(db: PostgresDatabase) -> int:
    """The server's major version (14, 15...)."""
    return db.conn.info.server_version // 10000


class TooOld(RuntimeError):
    """A PostgreSQL server older than MIN_VERSION."""


_vacuums: dict[str, bool] = {}      # URL -> another erasure came while its VACUUM ran
_vacuums_lock = threading.Lock()
ERASED_TABLES = ("submissions", "notes", "outbox")


def _vacuum_soon(url: str) -> None:
    """VACUUM the tables erasure and purge delete from, on a connection of its own in a thread (a
    VACUUM cannot run in a transaction, and must not hold up the request). One at a time per
    database: erasures that come while one runs are covered by one more run after it."""
    with _vacuums_lock:
        if url in _vacuums:
            _vacuums[url] = True
            return
        _vacuums[url] = False

    def run() -> None:
        while True:
            try:
                with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
                    for table in ERASED_TABLES:
                        conn.execute(f"VACUUM {table}")
            except psycopg.Error as e:      # autovacuum will do it later
                log.warning("background VACUUM after an erasure failed (autovacuum will do it): %s",
                            type(e).__name__)
            with _vacuums_lock:
                if not _vacuums.pop(url):
                    return
                _vacuums[url] = False
    threading.Thread(target=run, name="screening-vacuum", daemon=True).start()


# --- the schema --------------------------------------------------------------------------------------

# The same tables, columns, keys and indexes as SQLite's migrations m001 to m009 (db.py) make, in
# one script: a PostgreSQL database starts at that schema, and every later migration is written
# once for both engines. tests/test_engines.py compares the two schemas after migrating.
T = 'TEXT COLLATE "C"'
BASELINE = f"""
CREATE TABLE staff (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, email {T} NOT NULL, name {T}, role {T} NOT NULL,
    active INTEGER NOT NULL DEFAULT 1, password_hash {T} NOT NULL, created_at {T} NOT NULL,
    password_changed_at {T}, centre {T});
CREATE UNIQUE INDEX idx_staff_email ON staff (email);
CREATE INDEX idx_staff_centre ON staff (centre);

CREATE TABLE submissions (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, reference {T} NOT NULL, nonce {T} NOT NULL,
    service {T} NOT NULL, outcome {T} NOT NULL, answers {T} NOT NULL, fired_rules {T} NOT NULL, suggestions {T},
    rules_version {T} NOT NULL, locale {T}, name {T} NOT NULL, contact {T} NOT NULL, consent_at {T} NOT NULL,
    created_at {T} NOT NULL, status {T} NOT NULL DEFAULT 'new', decision {T}, updated_at {T},
    fingerprint {T}, centre {T}, resend_key {T}, number BIGINT);
CREATE UNIQUE INDEX idx_submissions_reference ON submissions (reference);
CREATE UNIQUE INDEX idx_submissions_nonce_fingerprint ON submissions (nonce, fingerprint);
CREATE INDEX idx_submissions_centre_created_at_id ON submissions (centre, created_at, id);
CREATE INDEX idx_submissions_centre_outcome_created_at_id ON submissions (centre, outcome, created_at, id);
CREATE INDEX idx_submissions_centre_status_created_at_id ON submissions (centre, status, created_at, id);
CREATE INDEX idx_submissions_centre_service_created_at_id ON submissions (centre, service, created_at, id);
CREATE INDEX idx_submissions_centre_status_outcome ON submissions (centre, status, outcome);
CREATE INDEX idx_submissions_resend_key_created_at ON submissions (resend_key, created_at);
CREATE UNIQUE INDEX idx_submissions_centre_number ON submissions (centre, number);

CREATE TABLE notes (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    submission_id BIGINT NOT NULL REFERENCES submissions (id), staff_id BIGINT REFERENCES staff (id),
    body {T} NOT NULL, created_at {T} NOT NULL);
CREATE INDEX idx_notes_submission_id ON notes (submission_id);

CREATE TABLE staff_sessions (
    id {T} PRIMARY KEY, staff_id BIGINT NOT NULL REFERENCES staff (id), created_at {T} NOT NULL,
    last_seen_at {T} NOT NULL);
CREATE INDEX idx_staff_sessions_staff_id ON staff_sessions (staff_id);

CREATE TABLE login_failures (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, key {T} NOT NULL, at DOUBLE PRECISION NOT NULL);
CREATE INDEX idx_login_failures_key_at ON login_failures (key, at);

CREATE TABLE audit_log (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, at {T} NOT NULL, staff_id BIGINT, staff_email {T},
    action {T} NOT NULL, submission_id BIGINT, reference {T}, detail {T}, centre {T});
CREATE INDEX idx_audit_log_at ON audit_log (at);
CREATE INDEX idx_audit_log_submission_id ON audit_log (submission_id);
CREATE INDEX idx_audit_log_centre_at ON audit_log (centre, at);
CREATE INDEX idx_audit_log_centre_reference_at ON audit_log (centre, reference, at);

CREATE TABLE outbox (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, submission_id BIGINT, reference {T} NOT NULL,
    created_at {T} NOT NULL, sent_at {T}, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at {T},
    last_error {T}, claimed_until {T});
CREATE INDEX idx_outbox_sent_at_next_attempt_at ON outbox (sent_at, next_attempt_at);
CREATE INDEX idx_outbox_submission_id ON outbox (submission_id);

CREATE TABLE health (id BIGINT PRIMARY KEY, checked_at {T});

CREATE TABLE share_attempts (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, key {T} NOT NULL, at DOUBLE PRECISION NOT NULL);
CREATE INDEX idx_share_attempts_key_at ON share_attempts (key, at);
CREATE INDEX idx_share_attempts_at ON share_attempts (at);

CREATE TABLE centre_numbers (centre {T} PRIMARY KEY, last BIGINT NOT NULL);
"""
BASELINE_MIGRATIONS = ("m001_initial", "m002_attention_and_outbox_indexes", "m003_share_limit_and_fingerprint",
                       "m004_search_fts", "m005_centres", "m006_resend_key", "m007_centre_numbers",
                       "m008_search_folded", "m009_audit_by_time")

SEARCH_INDEXES = (
    # trusted since PostgreSQL 13: a database owner may create it (see the README)
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX idx_submissions_search_name ON submissions USING gin (search_name gin_trgm_ops)",
    "CREATE INDEX idx_submissions_search_contact ON submissions USING gin (search_contact gin_trgm_ops)",
    "CREATE INDEX idx_submissions_search_phone ON submissions USING gin (search_phone gin_trgm_ops)",
    "CREATE INDEX idx_submissions_search_ref ON submissions USING gin (search_ref gin_trgm_ops)",
    "CREATE INDEX idx_submissions_search_words ON submissions USING gin (search_words gin_trgm_ops)",
)


def create_search_indexes(db: PostgresDatabase) -> None:
    """Trigram indexes of the search columns, which answer LIKE '%piece%' (see search_conditions)."""
    for sql in SEARCH_INDEXES:
        db.conn.execute(sql)


def migrate(db: PostgresDatabase, migrations: list[tuple[str, Any]]) -> list[str]:
    """Bring the database to the current schema: the baseline (SQLite's m001 to m009) on an empty
    database, then each of `migrations` (name, function of the database) not applied yet, all in one
    transaction under an advisory lock, so that servers starting together apply each once (the
    others wait, then find them applied). Return the names applied now."""
    if server_version(db) < MIN_VERSION:
        raise TooOld(f"PostgreSQL {db.conn.info.server_version // 10000} is older than {MIN_VERSION}")
    applied_now: list[str] = []
    with db.transaction():
        db.conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        db.conn.execute(f"CREATE TABLE IF NOT EXISTS schema_migrations (migration_set {T} NOT NULL, name {T} NOT NULL,"
                        f" applied_at {T} NOT NULL, PRIMARY KEY (migration_set, name))")
        done = {r[0] for r in db.conn.execute("SELECT name FROM schema_migrations WHERE migration_set = 'screening'")}
        todo: list[tuple[str, Any]] = []
        if BASELINE_MIGRATIONS[0] not in done:
            todo += [(name, None) for name in BASELINE_MIGRATIONS]
        todo += [(name, fn) for name, fn in migrations if name not in done]
        for name, fn in todo:
            if name == BASELINE_MIGRATIONS[0]:
                db.conn.execute(BASELINE)
            elif fn is not None:
                fn(db)
            db.conn.execute("INSERT INTO schema_migrations (migration_set, name, applied_at)"
                            " VALUES ('screening', %s, now()::text)", (name,))
            applied_now.append(name)
    return applied_now
