"""The app's own upkeep: once a day, shared screenings older than their centre's retention are
deleted, without cron (`screening purge` still works for those who prefer it).

Every worker looks at most once an hour, after a request, whether the day's purge is due; the
first to claim it in the database (store/retention.claim_daily: one claim a day for the whole
installation, across app servers) runs it in a background thread of its own, on its own
connection, so that no client waits for it. Off with SCREENING_AUTO_PURGE=false.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

from ..store import db, retention
from . import database

log = logging.getLogger(__name__)

CHECK_EVERY = 3600.0            # seconds between one worker's looks at whether the day's purge is due
THREAD_NAME = "screening-upkeep"


def retention_days(app, centre) -> int:
    """How many days `centre` keeps a shared screening: its own retention_days, else the
    installation's RETENTION_DAYS (also for None: a centre whose file is gone)."""
    own = getattr(centre, "retention_days", None)
    return own if own is not None else int(app.config["RETENTION_DAYS"])


def run_daily(app, *, now: datetime | None = None) -> dict[str, int] | None:
    """Run the day's purge of expired screenings if nobody has yet: the number deleted per centre,
    or None when the day's run was already claimed. `now` lets tests move the clock."""
    centres = app.extensions.get("screening.centres", {})
    conn = database.open_for(app)
    try:
        if not retention.claim_daily(conn, now=now):
            return None
        return retention.purge_expired(conn, {slug: retention_days(app, c) for slug, c in centres.items()},
                                       int(app.config["RETENTION_DAYS"]), now=now, audit_none=False)
    finally:
        conn.close()


class _Upkeep:
    """One look an hour per process and app, one run at a time."""

    def __init__(self):
        self.lock = threading.Lock()
        self.next_look = 0.0
        self.running = False

    def poke(self, app) -> None:
        moment = time.monotonic()
        if moment < self.next_look:          # the cost of almost every request: one comparison
            return
        with self.lock:
            if self.running or moment < self.next_look:
                return
            self.running, self.next_look = True, moment + CHECK_EVERY
        threading.Thread(target=self._run, args=(app,), name=THREAD_NAME, daemon=True).start()

    def _run(self, app) -> None:
        try:
            deleted = run_daily(app)
            if deleted:
                log.info("daily purge: %d expired screenings deleted", sum(deleted.values()))
        except Exception as e:
            # nothing is lost: the day stays claimed or not, and the next look (or cron) tries again
            if db.is_storage_failure(e):    # said in one line, as the pages' 503s are
                log.warning("daily purge not run: the database cannot be written (%s: %s)", type(e).__name__, e)
            else:
                log.exception("daily purge failed")
        finally:
            with self.lock:
                self.running = False


def init_app(app) -> None:
    """Look after each request whether the day's purge is due (when AUTO_PURGE is on)."""
    if not app.config["AUTO_PURGE"]:
        return
    upkeep = app.extensions.setdefault("screening.upkeep", _Upkeep())

    @app.after_request
    def look(response):
        upkeep.poke(app)
        return response
