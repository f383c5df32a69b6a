"""Moving an installation from SQLite to PostgreSQL (`screening copy-database --to postgresql://...`).

The SQLite database is first brought to the current schema (as the app would at start-up), so is
the PostgreSQL one; then every table the store declares (TABLES) is copied, parents before the
tables that refer to them, ids and references kept, in batches (COPY ... FROM STDIN) inside one
PostgreSQL transaction, from one read snapshot of the SQLite file: a failure anywhere, or a table
that did not arrive whole, rolls it all back and leaves the target as empty as it was. The indexes
other than the primary keys are dropped for the load and made again after it, in the same
transaction (built once instead of row by row: 100,000 screenings took 39 s with INSERTs into the
indexed tables, 11 s so). Each identity sequence is then moved past the copied ids, so that the
next screening, note or account gets a fresh one. Before the COMMIT every table is read back and
compared with what was read from SQLite: its row count, and a checksum of its rows as the app reads
them (canonical JSON of every column by name).

The copy refuses a target in which any of the app's tables holds a row (it would mix two
installations), and either database holding a table it does not know (a table added by a later
migration must be added to TABLES: tests/test_copy_database.py fails until it is).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import db as dbmod
from . import engine_postgres
from .sql import is_postgres

# Every table of the app, as (name, primary key), in an order in which each table comes after the
# tables its foreign keys point at (notes -> submissions and staff; staff_sessions, login_devices,
# recovery_codes, account_links and data_requests -> staff).
TABLES: tuple[tuple[str, str], ...] = (
    ("staff", "id"),
    ("submissions", "id"),
    ("notes", "id"),
    ("staff_sessions", "id"),
    ("login_devices", "id"),
    ("recovery_codes", "id"),
    ("account_links", "id"),
    ("login_failures", "id"),
    ("audit_log", "id"),
    ("outbox", "id"),
    ("health", "id"),
    ("share_attempts", "id"),
    ("withdrawal_attempts", "id"),
    ("retired_references", "reference"),
    ("centre_numbers", "centre"),
    ("maintenance", "name"),
    ("data_requests", "id"),
    ("search_words", "id"),
)
TABLE_NAMES = tuple(name for name, _key in TABLES)
BATCH = 1000


class CopyError(RuntimeError):
    """The copy could not be made; the message is one line for the operator (never a password)."""


class TargetNotEmpty(CopyError):
    """The target already holds rows of the app's tables; nothing was written."""


class UnknownTables(CopyError):
    """A database holds a table the copy does not know, or lacks one it does; nothing was written."""


class TablesDiffer(CopyError):
    """A table read back from the target differs from the source; the copy was rolled back."""


@dataclass(frozen=True)
class Copied:
    """One table copied: its name, how many rows, and the checksum both sides agreed on."""

    table: str
    rows: int
    checksum: str


# canonical JSON: keys sorted, no spaces, text as it is (a value JSON has no form for, as its repr)
_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=repr)


class Digest:
    """A table's row count and checksum: the sum (mod 2**256) of the SHA-256 of each row's canonical
    JSON (every column by name, sorted keys, values as the engine returns them), so that it does not
    depend on the order in which either engine returns the rows."""

    def __init__(self) -> None:
        self.rows, self._sum = 0, 0

    def add(self, columns: list[str], row) -> None:
        text = _CANONICAL.encode(dict(zip(columns, row, strict=True)))
        self._sum = (self._sum + int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest())) \
            % (1 << 256)
        self.rows += 1

    @property
    def checksum(self) -> str:
        return f"{self._sum:064x}"


def _batches(conn, table: str, key: str, size: int) -> Iterator[tuple[list[str], list]]:
    """The rows of `table` as the app reads them (SELECT *), in batches of `size`, in the order of
    its primary key (keyset pagination: one index range per batch, on either engine)."""
    last: Any = None
    while True:
        if last is None:
            cursor = conn.execute(f'SELECT * FROM "{table}" ORDER BY "{key}" LIMIT ?', [size])  # noqa: S608
        else:
            cursor = conn.execute(f'SELECT * FROM "{table}" WHERE "{key}" > ? ORDER BY "{key}" LIMIT ?',  # noqa: S608
                                  [last, size])
        columns = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
        if not rows:
            return
        yield columns, rows
        if len(rows) < size:
            return
        last = rows[-1][columns.index(key)]


def digest(conn, table: str, key: str, *, batch: int = BATCH) -> Digest:
    """Row count and checksum of `table` on `conn` (either engine)."""
    found = Digest()
    for columns, rows in _batches(conn, table, key, batch):
        for row in rows:
            found.add(columns, row)
    return found


def tables_with_rows(conn, tables) -> list[str]:
    """Those of `tables` that hold at least one row."""
    return [t for t in tables if conn.execute(f'SELECT 1 FROM "{t}" LIMIT 1').fetchone()]  # noqa: S608


def check_tables(conn, where: str) -> None:
    """UnknownTables unless the app's tables on `conn` are exactly TABLES."""
    found = set(conn.user_tables())
    unknown, missing = sorted(found - set(TABLE_NAMES)), sorted(set(TABLE_NAMES) - found)
    if unknown or missing:
        raise UnknownTables(
            f"{where} " + "; ".join(
                ([f"holds tables the copy does not know: {', '.join(unknown)}"] if unknown else [])
                + ([f"lacks the tables {', '.join(missing)}"] if missing else []))
            + " (this version of the app cannot copy it; nothing was written)")


def _not_empty(tables: list[str]) -> TargetNotEmpty:
    return TargetNotEmpty(f"the target database already holds rows in {', '.join(tables)}: copy-database only "
                          "copies into a database without the app's rows (nothing was written)")


def copy_database(source: str | Path, target_url: str, *, default_centre: str | None, batch: int = BATCH,
                  progress: Callable[[Copied], None] | None = None) -> list[Copied]:
    """Copy the SQLite database `source` into the PostgreSQL database `target_url` (see the module's
    docstring); return what was copied, table by table. CopyError (one line, no password) when it
    is refused or fails; StorageError when a database cannot be reached; NoDefaultCentre when the
    source holds rows from before centres and there is no default centre to give them to."""
    if not is_postgres(target_url):
        raise CopyError("--to must be a postgresql:// URL")
    try:
        engine_postgres.check_url(target_url)
    except ValueError as e:
        raise CopyError(f"--to: {e}") from None
    if is_postgres(str(source)) or not Path(source).is_file():
        raise CopyError(f"SCREENING_DATABASE: there is no SQLite database at {source}")
    where = engine_postgres.describe(target_url)
    src = dbmod.connect(source)
    try:
        # the source as the app would make it at start-up: the current schema (m010's search columns
        # filled), rows from before centres given to the default centre
        dbmod.migrate(src, default_centre=default_centre)
        dbmod.adopt_orphans(src, default_centre)
        check_tables(src, f"the SQLite database {source}")
        dst = dbmod.connect(target_url)
        try:
            # before the migration writes anything there
            present = [t for t in dst.user_tables() if t in TABLE_NAMES]
            holding = tables_with_rows(dst, present)
            if holding:
                raise _not_empty(holding)
            dbmod.migrate(dst)
            check_tables(dst, f"the PostgreSQL database {where}")
            return _copy(src, dst, batch=batch, progress=progress)
        finally:
            dst.close()
    finally:
        src.close()


def _write(dst, table: str, columns: list[str], rows: list) -> None:
    """One batch into the target, through COPY (psycopg writes each value out in COPY's text form)."""
    names = ", ".join(f'"{c}"' for c in columns)
    with dst.conn.cursor() as cursor, cursor.copy(f'COPY "{table}" ({names}) FROM STDIN') as pipe:
        for row in rows:
            pipe.write_row(row)


def _copy(src, dst, *, batch: int, progress) -> list[Copied]:
    """The copy itself: one read snapshot of the source, one transaction on the target."""
    src.conn.execute("BEGIN")       # one consistent snapshot of the source, even while it is written
    try:
        with dst.transaction():
            # no other session writes the app's tables until this one ends; then, still empty?
            dst.execute("LOCK TABLE " + ", ".join(f'"{t}"' for t in TABLE_NAMES) + " IN EXCLUSIVE MODE")
            holding = tables_with_rows(dst, TABLE_NAMES)
            if holding:
                raise _not_empty(holding)
            # indexes other than the keys are built once after the load, faster than row by row (the
            # search's trigram indexes above all); dropped and made again in this transaction
            indexes = dst.execute(
                "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = current_schema()"
                " AND i.tablename = ANY(?) AND NOT EXISTS (SELECT 1 FROM pg_constraint c"
                " WHERE c.conindid = CAST(quote_ident(i.indexname) AS regclass))"
                " ORDER BY i.indexname", [list(TABLE_NAMES)]).fetchall()
            for name, _definition in indexes:
                dst.execute(f'DROP INDEX "{name}"')
            copied: list[tuple[str, str, Digest]] = []
            for table, key in TABLES:
                found = Digest()
                for columns, rows in _batches(src, table, key, batch):
                    _write(dst, table, columns, rows)
                    for row in rows:
                        found.add(columns, row)
                copied.append((table, key, found))
                if progress is not None:
                    progress(Copied(table, found.rows, found.checksum))
            for _name, definition in indexes:
                dst.execute(definition)
            for table, key, _found in copied:
                # the next row gets an id past the copied ones (tables without an identity: nothing)
                sequence = dst.execute("SELECT pg_get_serial_sequence(?, ?)", [f'"{table}"', key]).fetchone()[0]
                if sequence is not None:
                    dst.execute(f'SELECT setval(CAST(? AS regclass), max("{key}")) FROM "{table}"'  # noqa: S608
                                f' HAVING max("{key}") IS NOT NULL', [sequence]).fetchall()
            differ = []
            for table, key, found in copied:
                arrived = digest(dst, table, key, batch=batch)
                if (arrived.rows, arrived.checksum) != (found.rows, found.checksum):
                    differ.append(f"{table} ({found.rows} rows read from SQLite, {arrived.rows} in PostgreSQL"
                                  + (", other values" if arrived.rows == found.rows else "") + ")")
            if differ:
                raise TablesDiffer(f"not every table arrived whole: {'; '.join(differ)}; the copy was rolled "
                                   "back and the target holds none of it")
    finally:
        src.conn.rollback()
    return [Copied(table, found.rows, found.checksum) for table, _key, found in copied]
