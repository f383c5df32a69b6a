"""The shared path's one transaction, with the fewest statements its guarantees allow (issue 17,
item 3), proven on both engines: how many statements a new shared screening runs, and that each
guarantee whose statements were folded still holds (a reference never given twice, retired ones
too, even when drawn first; the share limit counting only the window's shares, with old ones still
in the table; the table kept small without pruning it on every share; the advisory locks taken
in their order from one statement)."""
from __future__ import annotations

import tempfile
import threading
import time
from contextlib import contextmanager

import pytest
from conftest import CENTRE
from test_engines import THREADS, no_errors, record, together

from screening.store import db as dbmod
from screening.store import withdrawal

KEY = withdrawal.key_from_secret("a test secret")

# What a new shared screening runs, with every option the web side uses (the share limit, the resend
# window, a notice, a withdrawal code): BEGIN; [PostgreSQL: the advisory locks, one statement]; the
# look-up of the same form and the same screening; the share counted (a conditional INSERT); the
# centre's next number; the row, stored only under a reference never given; the notice; COMMIT.
NEW_SHARE = {"sqlite": 7, "postgresql": 8}
# The same form sent again (a refresh): BEGIN; [the locks]; the look-up; COMMIT.
SENT_AGAIN = {"sqlite": 3, "postgresql": 4}


@contextmanager
def statements(conn):
    """The statements `conn` sends to its database meanwhile, as a list filled when the block ends:
    on SQLite what the library's trace reports (a trigger's program is reported again with its
    statement's text, so a run of one text counts once); on PostgreSQL every Query and Execute
    message libpq sends (a prepared statement is one Execute)."""
    sent: list[str] = []
    if conn.engine == "sqlite":
        seen: list[str] = []
        conn.conn.set_trace_callback(seen.append)
        try:
            yield sent
        finally:
            conn.conn.set_trace_callback(None)
        texts = [s for s in seen if not s.startswith("--")]
        sent += [s for k, s in enumerate(texts) if k == 0 or texts[k - 1] != s]
        return
    from psycopg import pq
    with tempfile.TemporaryFile(mode="w+") as trace:
        conn.conn.pgconn.trace(trace.fileno())
        conn.conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            yield sent
        finally:
            conn.conn.pgconn.untrace()
        trace.seek(0)
        sent += [line for line in trace.read().splitlines()
                 if line.startswith("F\t") and line.split("\t")[2] in ("Query", "Execute")]


def share(conn, nonce: str, **overrides) -> dbmod.Stored:
    """A share as the web side makes it (limit, resend window, notice, withdrawal code)."""
    options = {"centre": CENTRE, "notify": True, "limit_key": "address:203.0.113.9", "limit": 20,
               "withdrawal_key": KEY}
    options.update(overrides)
    return dbmod.store_screening(conn, nonce=nonce, record=record(name=f"Client {nonce}"), **options)


def test_a_new_shared_screening_runs_the_fewest_statements(conn, engine, monkeypatch):
    """A later change that adds a statement to the shared path fails here: say why it is needed,
    and change the count."""
    monkeypatch.setattr(dbmod, "SHARE_PRUNE_EVERY", 10**9)   # the rare share that also prunes: below
    for i in range(6):       # psycopg prepares a statement on its fifth run: count what a worker runs
        share(conn, f"warm-{i}", limit_key=f"warm-{i}")
    with statements(conn) as sent:
        stored = share(conn, "counted")
    assert stored.stored and stored.withdrawal_code
    assert len(sent) == NEW_SHARE[engine], sent
    with statements(conn) as sent:
        again = share(conn, "counted")
    assert (again.reference, again.stored) == (stored.reference, False)
    assert len(sent) == SENT_AGAIN[engine], sent
    row = dbmod.find_by_reference(conn, stored.reference)
    assert row["name"] == "Client counted" and row["number"] == 7
    assert row["withdrawal_code_hash"] == withdrawal.code_hash(KEY, stored.reference, stored.withdrawal_code)
    assert row["search_ref"] == stored.reference.replace("-", "")
    assert conn.execute("SELECT reference FROM outbox WHERE submission_id = ?", [row["id"]]).fetchall() == [
        (stored.reference,)]


# --- a reference is never given twice --------------------------------------------------------------

def test_a_retired_or_stored_reference_drawn_first_is_never_given_again(conn, monkeypatch):
    """The check is in the INSERT itself now: a reference drawn that was retired (erased, purged,
    withdrawn) or is stored stores nothing under it, and another is drawn, with the same number."""
    live = share(conn, "live").reference
    with dbmod.immediate(conn):
        conn.execute("INSERT INTO retired_references (reference) VALUES ('RETI-RED2')")
    picks = iter(["RETI-RED2", live, "RETI-RED2", "FRES-H234"])
    monkeypatch.setattr(dbmod, "new_reference", lambda: next(picks))
    stored = share(conn, "after")
    assert stored.reference == "FRES-H234" and next(picks, None) is None
    rows = list(conn.query("SELECT reference, number, withdrawal_code_hash FROM submissions ORDER BY number"))
    assert [(r["reference"], r["number"]) for r in rows] == [(live, 1), ("FRES-H234", 2)]
    # the code's hash is bound to the reference it was finally stored under
    assert rows[1]["withdrawal_code_hash"] == withdrawal.code_hash(KEY, "FRES-H234", stored.withdrawal_code)


def test_many_connections_drawing_the_same_reference_at_once_each_get_their_own(conn_target, conn, monkeypatch):
    """Every thread draws one reference first: one of them stores it, the others draw again (on
    PostgreSQL the unique index decides between transactions that have not committed yet, and the
    loser stores nothing under it rather than failing)."""
    drawn = threading.local()

    def draw():
        if not getattr(drawn, "once", False):
            drawn.once = True
            return "SAME-REF2"
        return original()
    original = dbmod.new_reference
    monkeypatch.setattr(dbmod, "new_reference", draw)
    results = no_errors(together(conn_target, lambda c, i: share(c, f"same-ref-{i}", limit_key=None)))
    references = [r.reference for r in results]
    assert len(set(references)) == THREADS and references.count("SAME-REF2") == 1
    assert conn.execute("SELECT count(*) FROM submissions").fetchone()[0] == THREADS


def test_another_unique_clash_is_not_taken_for_a_taken_reference(conn, monkeypatch):
    """The INSERT names its conflict target (the reference): a clash on another unique index is
    still an error (here the centre's number, its counter set back by hand), never a silent retry."""
    share(conn, "first")
    with dbmod.immediate(conn):
        conn.execute("UPDATE centre_numbers SET last = 0 WHERE centre = ?", [CENTRE])
    with pytest.raises(dbmod.StorageError, match="number"):     # not "could not find a free reference"
        share(conn, "second")
    assert conn.execute("SELECT count(*) FROM submissions").fetchone()[0] == 1


# --- the share limit -------------------------------------------------------------------------------

def old_attempts(conn, key: str, n: int) -> None:
    """`n` attempts of `key` just out of the window, as a table not pruned yet holds them."""
    with dbmod.immediate(conn):
        for _ in range(n):
            conn.execute("INSERT INTO share_attempts (key, at) VALUES (?, ?)",
                         [key, time.time() - dbmod.SHARE_WINDOW - 1])


def test_the_limit_counts_only_the_windows_shares_when_old_ones_are_still_there(conn, monkeypatch):
    monkeypatch.setattr(dbmod, "SHARE_PRUNE_EVERY", 10**9)
    old_attempts(conn, "address:198.51.100.1", 10)
    for i in range(3):
        assert share(conn, f"limited-{i}", limit_key="address:198.51.100.1", limit=3).stored
    with pytest.raises(dbmod.ShareLimitReached) as refused:
        share(conn, "limited-3", limit_key="address:198.51.100.1", limit=3)
    # Retry-After from the oldest share in the window, not from the old ones (which would say 1 s)
    assert dbmod.SHARE_WINDOW - 60 < refused.value.retry_after <= dbmod.SHARE_WINDOW + 1
    assert conn.execute("SELECT count(*) FROM share_attempts").fetchone()[0] == 13
    assert conn.execute("SELECT count(*) FROM submissions").fetchone()[0] == 3


def test_the_attempts_table_never_holds_more_than_the_window_and_a_few_more(conn):
    """Old attempts are deleted by one share in SHARE_PRUNE_EVERY (and by the daily purge), not by
    every share: with a window so short that every earlier attempt is out of it at once, the table
    never holds more than SHARE_PRUNE_EVERY rows, whatever the number of shares."""
    sizes = []
    for i in range(2 * dbmod.SHARE_PRUNE_EVERY + 5):
        share(conn, f"bounded-{i}", limit_key=f"address:{i}", limit=1, window=1e-6, notify=False)
        sizes.append(conn.execute("SELECT count(*) FROM share_attempts").fetchone()[0])
    assert max(sizes) <= dbmod.SHARE_PRUNE_EVERY
    assert min(sizes[dbmod.SHARE_PRUNE_EVERY:]) == 1          # a prune leaves the share just counted


def test_the_limit_holds_across_connections_with_old_attempts_present(conn_target, conn, monkeypatch):
    monkeypatch.setattr(dbmod, "SHARE_PRUNE_EVERY", 10**9)
    old_attempts(conn, "address:203.0.113.50", 30)
    results = together(conn_target, lambda c, i: share(c, f"many-{i}", limit_key="address:203.0.113.50", limit=5))
    stored = [r for r in results if isinstance(r, dbmod.Stored)]
    refused = [r for r in results if isinstance(r, dbmod.ShareLimitReached)]
    assert len(stored) == 5 and len(refused) == THREADS - 5, results


# --- the advisory locks, in one statement --------------------------------------------------------------

def test_locks_taken_in_one_statement_are_taken_in_their_order(conn_target, conn, engine):
    """On PostgreSQL lock(a, b) is one statement: a is taken first and held while b is waited for,
    and b is not taken while a is waited for, as with one statement per key (deadlock freedom
    depends on every transaction taking its keys in one order). SQLite's lock() runs nothing:
    BEGIN IMMEDIATE already serialised the transaction."""
    if engine == "sqlite":
        with dbmod.immediate(conn), statements(conn) as sent:
            conn.lock("order:a", "order:b")
        assert sent == []
        return
    holder, watcher = dbmod.connect(conn_target), dbmod.connect(conn_target)
    try:
        for held, taken_while_waiting, free_while_waiting in (("order:b", "order:a", None),
                                                               ("order:a", None, "order:b")):
            done = threading.Event()
            with holder.transaction():
                holder.lock(held)

                def take(done=done):
                    other = dbmod.connect(conn_target)
                    try:
                        with other.transaction():
                            other.lock("order:a", "order:b")
                    finally:
                        other.close()
                        done.set()
                thread = threading.Thread(target=take)
                thread.start()
                deadline = time.monotonic() + 10
                while not watcher.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                                          " AND NOT granted").fetchone()[0]:
                    assert time.monotonic() < deadline, "the other transaction never waited"
                    time.sleep(0.01)
                if taken_while_waiting:
                    assert not try_lock(watcher, taken_while_waiting)
                if free_while_waiting:
                    assert try_lock(watcher, free_while_waiting)
                assert not done.is_set()
            thread.join(10)
            assert done.is_set()
    finally:
        holder.close()
        watcher.close()


def try_lock(conn, key: str) -> bool:
    """Whether `key` is free: taken and let go at once, in a transaction of its own."""
    with conn.transaction():
        return conn.execute("SELECT pg_try_advisory_xact_lock(hashtextextended(?, 0))", [key]).fetchone()[0]


# --- the random codes, drawn in one go ---------------------------------------------------------------

@pytest.mark.parametrize(("alphabet", "length", "draw"), [
    (dbmod.REFERENCE_ALPHABET, dbmod.REFERENCE_LENGTH, lambda: dbmod.new_reference().replace("-", "")),
    (withdrawal.CODE_ALPHABET, withdrawal.CODE_LENGTH, lambda: withdrawal.new_code().replace("-", "")),
])
def test_references_and_codes_are_uniform_in_every_position(alphabet, length, draw):
    """One number drawn by `secrets` and written in base len(alphabet): every character of the
    alphabet equally likely in every position (expected 200 of each per position here; the bounds
    are more than 5 standard deviations away, so the test fails only on a real bias)."""
    draws = [draw() for _ in range(200 * len(alphabet))]
    assert all(len(d) == length and set(d) <= set(alphabet) for d in draws)
    for position in range(length):
        seen = [d[position] for d in draws]
        counts = [seen.count(ch) for ch in alphabet]
        assert 120 <= min(counts) and max(counts) <= 280, (position, counts)
