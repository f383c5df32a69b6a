"""The store's guarantees under concurrency, proven on both engines (screening/store/sql.py GUARANTEES).

What SQLite's single writer gives across workers (BEGIN IMMEDIATE and the writers' flock),
PostgreSQL must give across app servers (advisory locks, unique constraints, row locks, FOR UPDATE
SKIP LOCKED). Each test here makes many connections do the same thing at once, each thread with a
connection of its own (as each app server has its own), and checks what a client, a receptionist or
an operator would then see. Also: the two engines' schemas after migrating are the same, and one
table of staff searches gives the same rows on both.
"""
from __future__ import annotations

import itertools
import multiprocessing
import threading
from datetime import UTC, datetime

import psycopg
import pytest
import sqlite_utils
from conftest import CENTRE, RED_FLAGS, STAFF_PASSWORD
from sqlite_utils.utils import sqlite3

from screening.store import accounts, engine_postgres, outbox, review
from screening.store import db as dbmod

THREADS = 16
_names = itertools.count()


def record(**overrides) -> dict:
    """A shared screening as store_screening takes it; overrides replace any field."""
    base = {"service": "decontracting-back-massage", "outcome": "proceed",
            "answers": {f: "no" for f in RED_FLAGS} | {"pregnant": "no"},
            "fired_rules": [], "suggestions": [], "rules_version": "test", "locale": "en",
            "name": "Ana Client", "contact": "ana@example.org", "consent_at": dbmod.now()}
    return base | overrides


def together(target: str, work, n: int = THREADS) -> list:
    """Run work(conn, i) in n threads at once, each with a connection of its own to `target`
    (opened in the thread before they all start, closed after); the results in thread order. An
    exception in a thread is its result, so that the test sees every thread's outcome."""
    start = threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        try:
            conn = dbmod.connect(target)
        except Exception as e:      # noqa: BLE001 - the test judges it
            results[i] = e
            start.abort()
            return
        try:
            start.wait()
            results[i] = work(conn, i)
        except Exception as e:      # noqa: BLE001 - the test judges it
            results[i] = e
        finally:
            conn.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def no_errors(results: list) -> list:
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors
    return results


# --- what a client is shown exists, once -----------------------------------------------------------

def test_reference_only_after_commit(conn_target):
    """Every reference store_screening returns is at once readable by another connection (another
    worker, another app server): it was committed before it was returned."""
    def share(conn, i):
        reader = dbmod.connect(conn_target)      # another worker's connection
        try:
            missing = []
            for k in range(5):
                stored = dbmod.store_screening(conn, nonce=f"n-{i}-{k}", record=record(name=f"Client {i} {k}"),
                                               centre=CENTRE, resend_within=0)
                seen = dbmod.find_by_reference(reader, stored.reference)
                if seen is None or seen["name"] != f"Client {i} {k}":
                    missing.append(stored.reference)
            return missing
        finally:
            reader.close()

    assert no_errors(together(conn_target, share)) == [[]] * THREADS


def test_same_form_from_many_threads_is_stored_once(conn_target, conn):
    """One form (its nonce) sent by 16 requests at once is one row and one reference; and 16 threads
    sharing different screenings of one centre give it the numbers 1..N, each once."""
    same = record(name="Núria Peña", contact="nuria@example.org")
    results = no_errors(together(conn_target, lambda c, i: dbmod.store_screening(
        c, nonce="one-form", record=same, centre=CENTRE)))
    assert len({r.reference for r in results}) == 1
    assert sum(r.stored for r in results) == 1
    rows = list(conn.query("SELECT reference FROM submissions WHERE nonce = ?", ["one-form"]))
    assert rows == [{"reference": results[0].reference}]

    centre, per_thread = "numbered-centre", 5

    def share(c, i):
        return [dbmod.store_screening(c, nonce=f"num-{i}-{k}", record=record(name=f"Client {i} {k}"),
                                      centre=centre).reference for k in range(per_thread)]
    references = [ref for refs in no_errors(together(conn_target, share)) for ref in refs]
    numbers = {r["reference"]: r["number"] for r in conn.query(
        "SELECT reference, number FROM submissions WHERE centre = ?", [centre])}
    assert sorted(numbers) == sorted(references)            # every reference shown is stored, once
    assert sorted(numbers.values()) == list(range(1, THREADS * per_thread + 1))


def test_resend_from_many_threads_is_stored_once(conn_target, conn):
    """The same screening sent from 16 forms at once (the Back button, new nonces) is stored once."""
    same = record(name="O'Brien", contact="+34 612 34 56 78")
    results = no_errors(together(conn_target, lambda c, i: dbmod.store_screening(
        c, nonce=f"resend-{i}", record=same, centre=CENTRE)))
    assert len({r.reference for r in results}) == 1
    assert sum(r.stored for r in results) == 1
    assert conn.execute("SELECT count(*) FROM submissions WHERE name = ?", ["O'Brien"]).fetchone()[0] == 1


def test_share_limit_holds_across_connections(conn_target, conn):
    """Five shares an hour from one address, whichever worker or server takes them."""
    results = together(conn_target, lambda c, i: dbmod.store_screening(
        c, nonce=f"limited-{i}", record=record(name=f"Client {i}"), centre=CENTRE,
        limit_key="address:203.0.113.9", limit=5))
    stored = [r for r in results if isinstance(r, dbmod.Stored)]
    refused = [r for r in results if isinstance(r, dbmod.ShareLimitReached)]
    assert len(stored) == 5 and len(refused) == THREADS - 5, results
    assert all(r.stored for r in stored)
    assert conn.execute("SELECT count(*) FROM submissions").fetchone()[0] == 5


def test_login_throttle_holds_across_connections(conn_target, conn):
    """Wrong passwords tried at once from many connections: no more than max_failures are checked
    before the account (or the address, or a known browser) is refused, and then the right password
    is refused too; the account's refusal does not touch a browser known to it."""
    accounts.create_staff(conn, email="sam@centre.example", password=STAFF_PASSWORD, name="Sam", role="staff",
                          centre=CENTRE)
    limits = {"max_failures": 5, "lock_seconds": 900, "secret": "a test secret"}
    # the member's browser logs in once: from then on it is known to the account
    sam = accounts.find_staff(conn, "sam@centre.example")["id"]
    device = accounts.attempt_login(conn, "sam@centre.example", STAFF_PASSWORD, "198.51.100.250", **limits).device

    # one account, from 16 addresses: the account's count holds
    results = no_errors(together(conn_target, lambda c, i: accounts.attempt_login(
        c, "sam@centre.example", f"wrong password {i}", f"198.51.100.{i}", **limits)))
    assert all(r.staff is None for r in results)
    assert sum(not r.locked for r in results) == 5, results
    right = accounts.attempt_login(conn, "sam@centre.example", STAFF_PASSWORD, "198.51.100.200", **limits)
    assert right.staff is None and right.locked

    # a browser known to the account is judged on its own failures: the strangers' do not stop it,
    # and its own wrong guesses sent at once are counted exactly too
    devices = {sam: device}
    assert accounts.attempt_login(conn, "sam@centre.example", STAFF_PASSWORD, "198.51.100.250", **limits,
                                  devices=devices).staff
    results = no_errors(together(conn_target, lambda c, i: accounts.attempt_login(
        c, "sam@centre.example", f"wrong password {i}", "198.51.100.250", **limits, devices=devices)))
    assert sum(not r.locked for r in results) == 5, results
    assert {r.kind for r in results if r.locked} == {"device"}
    assert accounts.attempt_login(conn, "sam@centre.example", STAFF_PASSWORD, "198.51.100.250", **limits,
                                  devices=devices).locked

    # one address, 16 e-mails: the address's count holds
    results = no_errors(together(conn_target, lambda c, i: accounts.attempt_login(
        c, f"guess{i}@centre.example", "wrong password", "203.0.113.50", **limits)))
    assert sum(not r.locked for r in results) == 5, results
    assert all(r.staff is None for r in results)


def test_outbox_claims_never_overlap(conn_target, conn):
    """Notices queued with their screenings, claimed by several senders at once: each once."""
    queued = {dbmod.store_screening(conn, nonce=f"notice-{i}", record=record(name=f"Client {i}"), centre=CENTRE,
                                    notify=True, resend_within=0).reference for i in range(60)}

    def sender(c, i):
        claimed = []
        while (notice := outbox.claim(c, now=datetime.now(UTC))) is not None:
            claimed.append(notice["reference"])
        return claimed

    results = no_errors(together(conn_target, sender, n=8))
    claimed = [ref for refs in results for ref in refs]
    assert sorted(claimed) == sorted(queued)


# --- servers starting together, and the two schemas ---------------------------------------------------

def _migrate_in_child(target: str, start) -> None:
    """A server starting: connect and migrate, at the same moment as the others."""
    start.wait(timeout=60)
    conn = dbmod.connect(target)
    try:
        dbmod.migrate(conn)
    finally:
        conn.close()


def every_migration() -> list[str]:
    return [m.name for m in dbmod.migrations.pending(sqlite_utils.Database(memory=True))]


def applied_migrations(conn) -> list[str]:
    """Every migration recorded as applied (names repeated if recorded twice)."""
    if conn.engine == "postgresql":
        sql = "SELECT name FROM schema_migrations WHERE migration_set = 'screening'"
    else:
        sql = "SELECT name FROM _sqlite_migrations WHERE migration_set = 'screening'"
    return sorted(r[0] for r in conn.execute(sql).fetchall())


def new_postgres_database(server_url: str) -> tuple[str, str]:
    from postgres_server import create_database
    name = f"fresh_{next(_names)}_{threading.get_ident() % 10**6}"
    return name, create_database(server_url, name)


def test_servers_starting_together_migrate_once(engine, request, tmp_path):
    """Four servers (processes) started at once on an empty database: all start, and each migration
    is applied and recorded once."""
    if engine == "postgresql":
        from postgres_server import drop_database
        server = request.getfixturevalue("postgres_url")
        name, target = new_postgres_database(server)
        request.addfinalizer(lambda: drop_database(server, name))
    else:
        target = str(tmp_path / "fresh.db")
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Barrier(4)
    servers = [spawn.Process(target=_migrate_in_child, args=(target, start)) for _ in range(4)]
    for p in servers:
        p.start()
    for p in servers:
        p.join(timeout=300)
    assert [p.exitcode for p in servers] == [0] * 4
    conn = dbmod.connect(target)
    try:
        assert applied_migrations(conn) == sorted(every_migration())
        assert conn.execute("SELECT count(*) FROM submissions").fetchone()[0] == 0
    finally:
        conn.close()


LOOSE_TYPES = {"text": "text", "integer": "integer", "bigint": "integer", "real": "real",
               "double precision": "real"}
SQLITE_ONLY_TABLES = ("_sqlite_migrations", "submissions_fts", "submissions_words", "sqlite_")


def sqlite_schema(path: str) -> dict:
    """{table: {"columns": {name: loose type}, "unique": {column sets}}} of an SQLite file."""
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                  if not r[0].startswith(SQLITE_ONLY_TABLES)]
        schema = {}
        for table in tables:
            info = conn.execute(f"PRAGMA table_info('{table}')").fetchall()
            columns = {r[1]: LOOSE_TYPES[r[2].lower()] for r in info}
            unique = {frozenset(r[1] for r in info if r[5])} - {frozenset()}
            for index in conn.execute(f"PRAGMA index_list('{table}')").fetchall():
                if index[2]:        # unique
                    unique.add(frozenset(r[2] for r in conn.execute(f"PRAGMA index_info('{index[1]}')")))
            schema[table] = {"columns": columns, "unique": unique}
        return schema
    finally:
        conn.close()


def postgres_schema(url: str) -> dict:
    """The same description of a PostgreSQL database (its current schema)."""
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename != 'schema_migrations'")]
        schema = {}
        for table in tables:
            columns = {name: LOOSE_TYPES[kind] for name, kind in conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = %s", [table])}
            unique = {frozenset(r[0]) for r in conn.execute(
                "SELECT array_agg(a.attname::text) FROM pg_index i"
                " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
                " WHERE i.indrelid = %s::regclass AND i.indisunique GROUP BY i.indexrelid", [table])}
            schema[table] = {"columns": columns, "unique": unique}
        return schema


@pytest.mark.sqlite_only     # run once: it migrates one database of each engine itself
def test_both_engines_have_the_same_schema(tmp_path, postgres_url):
    """After migrating, the same tables, columns (loosely typed), unique keys and applied migrations
    on both engines: no migration exists for one engine only."""
    from postgres_server import drop_database
    path = str(tmp_path / "schema.db")
    name, url = new_postgres_database(postgres_url)
    try:
        for target in (path, url):
            conn = dbmod.connect(target)
            try:
                dbmod.migrate(conn)
                applied = applied_migrations(conn)
            finally:
                conn.close()
            if target == path:
                on_sqlite = applied
            else:
                on_postgres = applied
        assert on_sqlite == on_postgres == sorted(every_migration())
        sqlite, postgres = sqlite_schema(path), postgres_schema(url)
        assert sorted(sqlite) == sorted(postgres)
        for table in sqlite:
            assert sqlite[table]["columns"] == postgres[table]["columns"], table
            assert sqlite[table]["unique"] == postgres[table]["unique"], table
    finally:
        engine_postgres.close_pools(url)
        drop_database(postgres_url, name)


# --- one table of staff searches, the same rows on both engines ------------------------------------------

PEOPLE = {
    "nuria": ("Núria Peña", "nuria.pena@example.org"),
    "nuria2": ("Nuria Pena", "+34 699 00 11 22"),
    "obrien": ("Sean O'Brien", "sean@example.ie"),
    "garcia": ("María García-López", "+34 612 34 56 78"),
    "dalba": ("Jordi d'Alba", "jordi.dalba@correu.example.cat"),
    "vidal": ("Joan Vidal", "joan.vidal@example.org"),
}
SEARCHES = [
    ("nuria", {"nuria", "nuria2"}),
    ("NÚRIA PEÑA", {"nuria", "nuria2"}),
    ("peña", {"nuria", "nuria2"}),
    ("obrien", {"obrien"}),
    ("O'Brien", {"obrien"}),
    ("o’brien", {"obrien"}),
    ("garcia lopez", {"garcia"}),
    ("GarcíaLópez", {"garcia"}),
    ("dalba", {"dalba"}),
    ("d'Alba", {"dalba"}),
    ("612 34 56 78", {"garcia"}),
    ("612345678", {"garcia"}),
    ("+34 699-001-122", {"nuria2"}),
    ("nuria.pena@example.org", {"nuria"}),
    ("@example.org", {"nuria", "vidal"}),
    ("JOAN.VIDAL", {"vidal"}),
    ("Vi", {"vidal"}),
    ("ma g", {"garcia"}),
    ("nobody", set()),
    ("%", set()),
    ("_", set()),
    ("'", set()),
]


def test_the_same_searches_find_the_same_rows_on_both_engines(conn):
    ids = {}
    for key, (name, contact) in PEOPLE.items():
        stored = dbmod.store_screening(conn, nonce=f"search-{key}", record=record(name=name, contact=contact),
                                       centre=CENTRE, resend_within=0)
        ids[key] = dbmod.find_by_reference(conn, stored.reference)["id"]
        ids[stored.reference] = ids[key]
    store = review.CentreStore(conn, CENTRE)
    by_id = {v: k for k, v in ids.items() if k in PEOPLE}
    for q, wanted in SEARCHES:
        found = {by_id[row["id"]] for row in store.list_page(review.Filters(q=q)).rows}
        assert found == wanted, q
    # a reference, with or without its dash, in either case
    reference = next(k for k in ids if k not in PEOPLE and ids[k] == ids["vidal"])
    for q in (reference, reference.lower(), reference.replace("-", "")):
        assert [by_id[row["id"]] for row in store.list_page(review.Filters(q=q)).rows] == ["vidal"], q
