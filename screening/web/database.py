"""The request's database connection, kept in Flask's `g` for the request and handed back at its end
without a transaction left open: SQLite's is the worker thread's own (kept for its next request),
PostgreSQL's comes from the worker process's pool (and goes back to it).

Which engine is the store's business (store.sql): this module only knows the app's settings."""
from __future__ import annotations

import logging
import threading

from flask import current_app, g

from ..store import sql

log = logging.getLogger(__name__)
_prepare_lock = threading.Lock()


def target(app) -> str:
    """What the app's database is: SCREENING_DATABASE_URL when set, else the SQLite file."""
    return app.config.get("DATABASE_URL") or app.config["DATABASE"]


def open_for(app):
    """A connection of the app's database for work outside a request's own (an export's pages, the
    notice sender), from the same pool on PostgreSQL; close it when done."""
    return sql.open_database(target(app), pool_size=app.config["DATABASE_POOL_SIZE"],
                             wait=app.config["DATABASE_WAIT_SECONDS"])


def get_db():
    """The request's connection, opened on first use after the fork. When the app started while
    its database server was down, the first request after it is back prepares the schema."""
    if "db" not in g:
        app = current_app._get_current_object()
        if not app.extensions.get("screening.database_ready", True):
            _prepare_now(app)
        g.db = sql.request_connection(target(app), pool_size=app.config["DATABASE_POOL_SIZE"],
                                      wait=app.config["DATABASE_WAIT_SECONDS"])
    return g.db


def _prepare_now(app) -> None:
    """Run the start-up preparation the app could not run (StorageError, a 503, while it still fails)."""
    with _prepare_lock:
        if not app.extensions.get("screening.database_ready", True):
            try:
                app.extensions["screening.prepare_database"](app)
            except sql.DatabaseError as e:
                # reached, but the schema cannot be made (a role that may not create pg_trgm...):
                # the operator must act; clients get the same 503 as during an outage
                raise sql.StorageError(f"the database cannot be prepared: {type(e).__name__}: {e}") from e
            app.extensions["screening.database_ready"] = True
            log.info("database prepared after start-up")


def close_db(exc=None) -> None:
    """End of request: the connection is handed back, never with a transaction left open (it would
    hold back checkpoints, or a pooled connection, and the next request would inherit it)."""
    db = g.pop("db", None)
    if db is not None:
        db.release()


def init_app(app) -> None:
    """Hand each request's connection back at the end of the request."""
    app.teardown_appcontext(close_db)
