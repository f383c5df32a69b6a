"""The request's database connection: the worker thread's own (store.db.thread_connection), kept in
Flask's `g` for the request and handed back at its end without a transaction left open."""
from __future__ import annotations

from flask import current_app, g

from ..store.db import thread_connection


def get_db():
    """The request's connection: this worker thread's own, opened on first use after the fork."""
    if "db" not in g:
        g.db = thread_connection(current_app.config["DATABASE"])
    return g.db


def close_db(exc=None) -> None:
    """End of request: the connection stays open for the thread's next request, but never with a
    transaction left open (it would hold back checkpoints, and the next request would inherit it)."""
    db = g.pop("db", None)
    if db is None:
        return
    if getattr(db, "_retired", False):
        db.close()
    elif db.conn.in_transaction:
        db.conn.rollback()


def init_app(app) -> None:
    """Hand each request's connection back at the end of the request."""
    app.teardown_appcontext(close_db)
