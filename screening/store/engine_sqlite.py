"""The SQLite engine: connections, transactions, what SQLite alone has (FTS5, planner hints,
WAL checkpoints), and the connection each worker thread keeps.

Read shared/RELIABILITY.md before changing anything here. In short:
- sqlite-utils uses pysqlite3 (a current SQLite) when it is installed; WAL on an SQLite older
  than 3.51.3 can corrupt the file (the WAL-reset bug), so we refuse to start on one;
- per-connection pragmas are set in `connect()` and nowhere else;
- a transaction that reads and then writes starts with BEGIN IMMEDIATE (`transaction()`), after
  queueing on the writers' flock;
- connections are opened once per worker thread, after gunicorn's fork, never at import time, and
  reused by that thread's requests (`thread_connection`);
- a reference is returned only after COMMIT has returned.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlite_utils
from sqlite_utils.utils import sqlite3

from .sql import StorageError, indexed_piece

log = logging.getLogger(__name__)

MIN_SQLITE = (3, 51, 3)
BUSY_TIMEOUT_MS = 5000

# SQLite's primary result codes that mean the storage failed, not the statement: PERM, BUSY, LOCKED,
# READONLY, IOERR, CORRUPT, FULL, CANTOPEN, PROTOCOL, NOTADB
_STORAGE_CODES = frozenset({3, 5, 6, 8, 10, 11, 13, 14, 15, 26})


def is_storage_failure(error: Exception) -> bool:
    """True when an sqlite error says the database cannot be read or written (read-only, full, locked,
    missing, corrupt...), as opposed to a mistake in a statement such as a missing column."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is None:
        return isinstance(error, sqlite3.OperationalError)
    return code & 0xFF in _STORAGE_CODES


# --- the store's SQL, as SQLite reads it ---------------------------------------------------------
# Queries are written once (sql.py): `?` and `:name` placeholders, which SQLite takes as they are,
# and these macros for what the engines write differently.
MACROS = {
    "NOINDEX": lambda arg: f"+{arg}",           # keep the planner from using an index on a column
    "IDS": lambda arg: f"(SELECT value FROM json_each({arg}))",  # noqa: S608 - a bound list of ids
    "INDEXED_BY": lambda arg: f"INDEXED BY {arg}",
    "SKIP_LOCKED": lambda arg: "",              # BEGIN IMMEDIATE already lets one writer in at a time
    "TEXT": lambda arg: "TEXT",
    "ID_PK": lambda arg: "INTEGER PRIMARY KEY",  # an alias of the rowid: a new row gets the next id
}
_MACRO_RE = re.compile(r"\$([A-Z_]+)(?:\(([^()]*)\))?")


@lru_cache(maxsize=1024)
def expand(sql: str) -> str:
    """`sql` with the store's macros written out for SQLite."""
    return _MACRO_RE.sub(lambda m: MACROS[m.group(1)](m.group(2)), sql)


def _adapt(parameters):
    """Lists bound as JSON text (read back by json_each in $IDS)."""
    if isinstance(parameters, (list, tuple)) and any(isinstance(p, (list, tuple)) for p in parameters):
        return [json.dumps(list(p)) if isinstance(p, (list, tuple)) else p for p in parameters]
    return parameters


class SQLiteDatabase(sqlite_utils.Database):
    """sqlite-utils' Database (its table API and Migrations stay usable) with the store's engine
    interface: `execute` with macros, `transaction`, `lock`, `after_erase`, `release`."""

    engine = "sqlite"
    _retired = False
    _writers_lock: Any = False

    def execute(self, sql, parameters=None):
        if "$" in sql:
            sql = expand(sql)
        return super().execute(sql, _adapt(parameters) if parameters is not None else None)

    def execute_many(self, sql: str, rows) -> None:
        self.conn.executemany(expand(sql), rows)

    def create_search_indexes(self) -> None:
        create_search_indexes(self)

    @contextmanager
    def transaction(self) -> Iterator[SQLiteDatabase]:
        """A write transaction that takes the write lock at once (BEGIN IMMEDIATE), so that a
        read-then-write never fails with 'database is locked' when another process writes too.

        Writers first queue on an flock of `<database>-writers` (see `_writer_queue`)."""
        with _writer_queue(self):
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self
                except BaseException:
                    self.conn.rollback()
                    raise
                try:
                    self.conn.execute("COMMIT")
                except BaseException:
                    self.conn.rollback()
                    raise
            except sqlite3.DatabaseError as e:
                if not isinstance(e, sqlite3.IntegrityError):
                    _retire(self)
                raise

    def lock(self, *keys: str) -> None:
        """Serialise the transaction with every other one that locks one of `keys`: BEGIN IMMEDIATE
        already serialises every write transaction of the file, so nothing more to do."""

    def after_erase(self) -> bool:
        """Make erased rows leave the files: copy the WAL into the database and truncate it.

        Return False when a reader kept part of the log alive; the bytes then leave at the next
        checkpoint (SQLite's own automatic one, or the next purge or erasure)."""
        busy, _log_frames, _done = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.warning("checkpoint incomplete: another connection was reading; the WAL was not truncated")
        return not busy

    def in_transaction(self) -> bool:
        return self.conn.in_transaction

    def release(self) -> None:
        """End of a request: keep the connection for the thread's next request, never with a
        transaction left open (it would hold back checkpoints); a retired one is closed."""
        if self._retired:
            self.close()
        elif self.conn.in_transaction:
            self.conn.rollback()

    def user_tables(self) -> list[str]:
        """The app's tables (not sqlite-utils' bookkeeping, not the full-text indexes' own)."""
        return [t for t in self.table_names() if not t.startswith(("_sqlite", "sqlite_", "submissions_fts",
                                                                     "submissions_words"))]

    def what_to_fix(self) -> str:
        return what_to_fix(self._path())

    def _path(self) -> str:
        return next((row[2] for row in self.conn.execute("PRAGMA database_list") if row[1] == "main"), "")

    # --- the staff search, through the FTS5 indexes (db.m010_search_columns) ---------------------

    def search_conditions(self, terms: list[tuple[str, str]], limit: int) -> tuple[list[str], list[Any]]:
        """Conditions, and their parameters, for rows whose search columns hold every term: (column,
        folded text) pairs, column one of search_name, search_contact, search_phone, search_ref
        (pieces of 3 characters or more, anywhere) or search_words (the start of a word), a
        ("search_name", text) term followed by ("or_ref", piece) meaning either.

        Up to `limit` candidates are read once from an index and fetched by id; with more, SQLite
        walks the newest-first index and keeps the rows in the index's answer, read once (the unary
        + keeps it from fetching and sorting all of them; measured at 200,000 rows, "a" took 33 ms
        for two pages this way and 79 ms with one look-up in the index per row walked)."""
        pieces, starts = [], []
        where: list[str] = []
        params: list[Any] = []
        for column, text in terms:
            piece = indexed_piece(column, text)
            phrase = '"' + piece.replace('"', '""') + '"'
            if column == "search_words":
                starts.append(f"{column} : {phrase} *")
            elif column == "or_ref":
                pieces[-1] = f"({pieces[-1]} OR search_ref : {phrase})"
            else:
                pieces.append(f"{column} : {phrase}")
                if piece != text:   # the index found the selective part; the whole is checked here
                    where.append(f"instr({column}, ?) > 0")
                    params.append(text)
        for table, found in (("submissions_fts", pieces), ("submissions_words", starts)):
            if not found:
                continue
            match = " AND ".join(found)
            ids = [row[0] for row in self.conn.execute(
                f"SELECT rowid FROM {table} WHERE {table} MATCH ? LIMIT ?", [match, limit + 1])]  # noqa: S608
            if len(ids) <= limit:
                where.append("id IN $IDS(?)")
                params.append(ids)
            else:
                where.append(f"+id IN (SELECT rowid FROM {table} WHERE {table} MATCH ?)")  # noqa: S608
                params.append(match)
        return where, params


SEARCH_INDEXES = (
    # pieces of 3 characters or more of the folded names, contacts, phone digits and references
    "CREATE VIRTUAL TABLE submissions_fts USING fts5(search_name, search_contact, search_phone, search_ref,"
    " content='submissions', content_rowid='id', tokenize='trigram case_sensitive 1')",
    # the words of each name, for searches of 1 or 2 characters ("pe" finds "Peña"): by prefix
    "CREATE VIRTUAL TABLE submissions_words USING fts5(search_words, content='submissions', content_rowid='id',"
    " tokenize='unicode61 remove_diacritics 0', prefix='1 2')",
    # a deleted row's entries leave the index pages at once, so that erasure and purge remove its
    # bytes (with PRAGMA secure_delete and the checkpoint in after_erase)
    "INSERT INTO submissions_fts (submissions_fts, rank) VALUES ('secure-delete', 1)",
    "INSERT INTO submissions_words (submissions_words, rank) VALUES ('secure-delete', 1)",
    """CREATE TRIGGER submissions_fts_insert AFTER INSERT ON submissions BEGIN
        INSERT INTO submissions_fts (rowid, search_name, search_contact, search_phone, search_ref)
            VALUES (new.id, new.search_name, new.search_contact, new.search_phone, new.search_ref);
        INSERT INTO submissions_words (rowid, search_words) VALUES (new.id, new.search_words);
    END""",
    """CREATE TRIGGER submissions_fts_delete AFTER DELETE ON submissions BEGIN
        INSERT INTO submissions_fts (submissions_fts, rowid, search_name, search_contact, search_phone, search_ref)
            VALUES ('delete', old.id, old.search_name, old.search_contact, old.search_phone, old.search_ref);
        INSERT INTO submissions_words (submissions_words, rowid, search_words)
            VALUES ('delete', old.id, old.search_words);
    END""",
    """CREATE TRIGGER submissions_fts_update AFTER UPDATE OF id, search_name, search_contact, search_phone,
            search_ref, search_words ON submissions BEGIN
        INSERT INTO submissions_fts (submissions_fts, rowid, search_name, search_contact, search_phone, search_ref)
            VALUES ('delete', old.id, old.search_name, old.search_contact, old.search_phone, old.search_ref);
        INSERT INTO submissions_words (submissions_words, rowid, search_words)
            VALUES ('delete', old.id, old.search_words);
        INSERT INTO submissions_fts (rowid, search_name, search_contact, search_phone, search_ref)
            VALUES (new.id, new.search_name, new.search_contact, new.search_phone, new.search_ref);
        INSERT INTO submissions_words (rowid, search_words) VALUES (new.id, new.search_words);
    END""",
    "INSERT INTO submissions_fts (submissions_fts) VALUES ('rebuild')",
    "INSERT INTO submissions_words (submissions_words) VALUES ('rebuild')",
)


def create_search_indexes(db: SQLiteDatabase) -> None:
    """Replace m008's indexes (over a view that folded in SQL) by FTS5 indexes of the search columns
    folded in Python, rebuilt from the stored rows."""
    for sql in ("DROP TRIGGER IF EXISTS submissions_fts_insert", "DROP TRIGGER IF EXISTS submissions_fts_delete",
                "DROP TRIGGER IF EXISTS submissions_fts_update", "DROP TABLE IF EXISTS submissions_fts",
                "DROP TABLE IF EXISTS submissions_words", "DROP VIEW IF EXISTS submissions_search",
                *SEARCH_INDEXES):
        db.conn.execute(sql)


# --- connections ---------------------------------------------------------------------------------

def connect(path: str | Path) -> SQLiteDatabase:
    """Open the database with every per-connection setting we rely on. A file or folder that
    cannot be opened or written raises StorageError (a 503 in a request), like a failed write."""
    try:
        db = SQLiteDatabase(str(path))
    except (sqlite3.OperationalError, sqlite3.DatabaseError) as e:
        raise StorageError(f"{path}: {e}") from e
    version = tuple(int(x) for x in db.sqlite_version[:3])
    if version < MIN_SQLITE:
        db.close()
        raise RuntimeError(
            f"SQLite {'.'.join(map(str, version))} has the WAL-reset corruption bug; install pysqlite3 "
            f"(bundles {'.'.join(map(str, MIN_SQLITE))} or newer)")
    conn = db.conn
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous = FULL")      # NORMAL in WAL can lose the last commits on power loss
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA secure_delete = ON")      # erased health data must not linger in free pages
        _ensure_wal(conn)
    except (sqlite3.OperationalError, sqlite3.DatabaseError) as e:
        db.close()
        raise StorageError(f"{path}: {e}") from e
    return db


def prepare(path: str | Path) -> None:
    """Create the database's folder when it is missing (the first start of an installation)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)


def what_to_fix(path: str | Path) -> str:
    """What an operator must repair by hand when the database's folder or files cannot be written
    by this process (the app cannot repair it, and stays at 503 until then); '' when none is seen."""
    if not path:
        return ""
    file = Path(path)
    if not file.parent.is_dir():
        return f"the folder {file.parent} is missing: create it (writable by the app's user) or fix SCREENING_DATABASE"
    files = [file.parent, file, Path(f"{file}-wal"), Path(f"{file}-shm")]
    stuck = [str(f) for f in files if f.exists() and not os.access(f, os.W_OK)]
    if not stuck:
        return ""
    return (f"not writable by this process: {', '.join(stuck)}. Every write fails (503) until that is "
            "fixed by hand: give them to the app's user or make them writable (a -wal or -shm left by "
            "another user, such as a command run as root, stays until then)")


def _ensure_wal(conn) -> None:
    """Switch to WAL (kept in the file). A brand-new file opened by several workers at once can
    answer 'locked' to the switch without waiting for the busy timeout, so retry briefly."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() == "wal":
                return
        except sqlite3.OperationalError as e:
            # only "locked" is worth waiting for; a folder or file that cannot be written is not
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise RuntimeError("could not switch the database to WAL mode")
        time.sleep(0.02)


def _retire(db: SQLiteDatabase) -> None:
    """A write failed in the database itself (a read-only -shm, a folder gone, a full disk...): this
    thread's next request opens a fresh connection, which sees the fix once an operator has made
    it, instead of reusing one that opened the files in a broken state. Closed at the request's end."""
    db._retired = True
    connections = getattr(_local, "connections", None) or {}
    for key in [k for k, v in connections.items() if v is db]:
        del connections[key]


@contextmanager
def _writer_queue(db: SQLiteDatabase) -> Iterator[None]:
    """Hold an exclusive flock on `<database>-writers` for the whole write transaction.

    SQLite's busy handler polls for a taken write lock with growing sleeps (1, 2, 5 ... 100 ms), so
    under several writers one of them can lose every round: measured with 4 processes storing
    screenings on this machine, p99 2.8 s (near the 5 s busy timeout, i.e. a 503), against 55 ms
    when they wait here, retrying every half millisecond. Same throughput (the disk's fsync bounds
    it either way). Without a usable lock file (an in-memory
    database, a read-only folder) the transaction just relies on SQLite's lock as before."""
    lock = _lock_file(db)
    held = lock is not None and _take(lock)
    try:
        yield
    finally:
        if held:
            fcntl.flock(lock, fcntl.LOCK_UN)


WRITER_POLL_SECONDS = 0.0005


def _take(lock) -> bool:
    """Take the writers' flock, retrying every half millisecond (no growing back-off) for up to
    the busy timeout; False when that passes (the caller then falls back on SQLite's own lock and
    its timeout, as without a lock file: a thread that nests two connections' writes cannot hang)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(WRITER_POLL_SECONDS)


def _lock_file(db: SQLiteDatabase):
    """The connection's open `<database>-writers` file (opened once per connection), or None."""
    lock = db._writers_lock
    if lock is False:
        lock = None
        path = db._path()
        if path:
            try:
                lock = open(f"{path}-writers", "a+b")  # noqa: SIM115 - lives as long as the connection
            except OSError:
                lock = None
        db._writers_lock = lock
    return lock


# One connection per worker thread and database file, opened on first use after the fork and
# reused by every request of that thread. Opening (version check, pragmas, WAL) cost ~0.4 ms a
# request and closing ~0.8 ms (the last connection to close checkpoints the WAL). Keyed by path,
# because one process may serve several apps (the tests build hundreds): a thread keeps at most
# _THREAD_CONNECTIONS of them and closes the least recently used one beyond that.
_THREAD_CONNECTIONS = 4
_local = threading.local()
# Connections a forked child inherited from its parent's forking thread: never used and never
# closed in the child (closing them there could disturb the parent's locks), only kept referenced
# so that garbage collection does not close them either.
_inherited: list[SQLiteDatabase] = []


def _forget_inherited_connections() -> None:
    """In a forked child: set the forking thread's connections aside (see `_inherited`)."""
    connections = getattr(_local, "connections", None)
    if connections:
        _inherited.extend(connections.values())
        connections.clear()


os.register_at_fork(after_in_child=_forget_inherited_connections)


def thread_connection(path: str | Path) -> SQLiteDatabase:
    """This thread's connection to `path` in this process, opened on first use."""
    connections: OrderedDict[tuple[int, str], SQLiteDatabase] | None = getattr(_local, "connections", None)
    if connections is None:
        connections = _local.connections = OrderedDict()
    key = (os.getpid(), str(path))
    db = connections.get(key)
    if db is not None:
        connections.move_to_end(key)
        return db
    for other in [k for k in connections if k[0] != key[0]]:  # a fork the hook did not see: set aside
        _inherited.append(connections.pop(other))
    db = connections[key] = connect(path)
    while len(connections) > _THREAD_CONNECTIONS:
        _key, oldest = connections.popitem(last=False)
        oldest.close()
    return db


def close_thread_connections() -> None:
    """Close this thread's connections (for a test, or a thread that is about to end)."""
    connections = getattr(_local, "connections", None)
    while connections:
        _key, db = connections.popitem()
        if _key[0] == os.getpid():
            db.close()
        else:
            _inherited.append(db)
