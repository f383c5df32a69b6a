"""One SQLite connection per worker thread, reused by its requests (db.get_db), never inherited
through a fork; and the questionnaire form class built once per rule set."""
import os
import threading

import pytest

from screening.core.rules import default_rules_dir, load_rules
from screening.store import db as dbmod
from screening.store import engine_sqlite
from screening.web import forms
from screening.web.database import get_db


def request_connection(app):
    """The connection a request of `app` on this thread gets."""
    with app.test_request_context("/"):
        db = get_db()
    return db


def test_requests_of_a_thread_reuse_one_connection_with_every_setting(app):
    first, second = request_connection(app), request_connection(app)
    assert first is second
    settings = {name: first.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("journal_mode", "synchronous", "foreign_keys", "secure_delete", "busy_timeout")}
    assert settings == {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1, "secure_delete": 1,
                        "busy_timeout": engine_sqlite.BUSY_TIMEOUT_MS}


def test_each_thread_has_its_own_connection(app):
    mine = request_connection(app)
    theirs = []
    thread = threading.Thread(target=lambda: theirs.append(request_connection(app)))
    thread.start()
    thread.join(10)
    assert theirs and theirs[0] is not mine


def test_each_database_has_its_own_connection(make_app, tmp_path):
    one = make_app(DATABASE=str(tmp_path / "one.db"))
    two = make_app(DATABASE=str(tmp_path / "two.db"))
    assert request_connection(one) is not request_connection(two)
    assert request_connection(one).execute("PRAGMA database_list").fetchone()[2].endswith("one.db")


def test_a_thread_keeps_only_a_few_connections_open(tmp_path):
    paths = [tmp_path / f"db{i}.db" for i in range(engine_sqlite._THREAD_CONNECTIONS + 2)]
    opened = [dbmod.thread_connection(p) for p in paths]
    try:
        assert dbmod.thread_connection(paths[-1]) is opened[-1]
        assert dbmod.thread_connection(paths[0]) is not opened[0]      # the oldest was closed
    finally:
        dbmod.close_thread_connections()


def test_a_transaction_left_open_by_a_request_is_rolled_back_at_its_end(app):
    with app.test_request_context("/"):
        db = get_db()
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO health (id, checked_at) VALUES (7, 'left open')")
    assert not db.conn.in_transaction
    other = dbmod.connect(app.config["DATABASE"])
    try:
        with dbmod.immediate(other):       # the write lock is free again
            assert other.execute("SELECT count(*) FROM health WHERE id = 7").fetchone()[0] == 0
    finally:
        other.close()


def test_health_checks_and_shares_keep_working_on_the_reused_connection(client):
    assert [client.get("/healthz").status_code for _ in range(3)] == [200, 200, 200]


def test_a_forked_child_opens_its_own_connection_and_leaves_the_parents_alone(tmp_path):
    path = tmp_path / "fork.db"
    parent = dbmod.thread_connection(path)
    dbmod.migrate(parent)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:        # the child: report whether it got a new, working connection, and leave at once
        try:
            child = dbmod.thread_connection(path)
            with dbmod.immediate(child):
                child.execute("INSERT INTO health (id, checked_at) VALUES (2, 'child')")
            os.write(write, b"new" if child is not parent else b"inherited")
        except BaseException as e:      # noqa: BLE001 - anything goes back to the parent as text
            os.write(write, repr(e).encode()[:200])
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    answer = os.read(read, 300)
    os.close(read)
    try:
        assert answer == b"new"
        assert status == 0
        with dbmod.immediate(parent):     # the parent's connection still works
            parent.execute("INSERT INTO health (id, checked_at) VALUES (1, 'parent')")
        assert parent.execute("SELECT count(*) FROM health").fetchone()[0] == 2
    finally:
        dbmod.close_thread_connections()


def test_the_form_class_is_built_once_per_rule_set(app):
    rules = load_rules(default_rules_dir())
    assert forms.questionnaire_form_class(rules) is forms.questionnaire_form_class(rules)
    other = load_rules(default_rules_dir())
    assert forms.questionnaire_form_class(other) is not forms.questionnaire_form_class(rules)
    with app.test_request_context("/"):
        form = forms.questionnaire_form_class(other)(formdata=None)
    assert [f.name for f in form if f.name in other.questions_by_id] == [q.id for q in other.questions]


def test_writers_queue_on_a_lock_file_for_the_whole_transaction(conn, db_file):
    import fcntl

    other = open(f"{db_file}-writers", "a+b")
    try:
        with dbmod.immediate(conn):
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)      # free again after COMMIT
        fcntl.flock(other, fcntl.LOCK_UN)
    finally:
        other.close()


def test_a_writer_that_cannot_get_the_queue_still_ends_with_sqlites_timeout(db_file, monkeypatch):
    """Two connections nested in one thread: the inner one gives up on the queue and then on
    SQLite's lock, within the (here shortened) busy timeout, instead of hanging."""
    import time

    from screening.store.db import OperationalError

    monkeypatch.setattr(engine_sqlite, "BUSY_TIMEOUT_MS", 200)
    outer, inner = dbmod.connect(db_file), dbmod.connect(db_file)
    try:
        started = time.monotonic()
        with dbmod.immediate(outer):
            with pytest.raises(OperationalError, match="locked"):
                with dbmod.immediate(inner):
                    pass
        assert time.monotonic() - started < 5
    finally:
        outer.close()
        inner.close()
