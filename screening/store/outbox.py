"""The outbox of e-mail notices: every SQL statement of web/notify.py's sender.

A row is queued by db.store_screening in the same transaction as its submission. Each row is
claimed inside a write transaction (BEGIN IMMEDIATE on SQLite, FOR UPDATE SKIP LOCKED on PostgreSQL)
with a lease (`claimed_until`), so two senders, in threads or
processes, never send the same notice. Delivery is at least once: a crash after the server
accepted a message and before `sent_at` is written sends it again after the lease.
"""
from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from . import db as dbmod

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)            # far longer than one send with the SMTP timeouts
MAX_ATTEMPTS = 12                       # with the backoff below: about a day of retries
FIRST_RETRY = timedelta(minutes=1)
LONGEST_WAIT = timedelta(hours=6)
NOTICE_FIELDS = ("id", "number", "reference", "service", "outcome", "centre")


def _iso(moment: datetime) -> str:
    """The same text format as db.now(), so that text comparison is time comparison."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def backoff(attempts: int) -> timedelta:
    """How long to wait after the `attempts`-th failure: doubling from a minute, at most 6 hours."""
    return min(FIRST_RETRY * 2 ** (attempts - 1), LONGEST_WAIT)


# --- the outbox ---------------------------------------------------------------------------------

def claim(db, *, now: datetime) -> dict | None:
    """Take the oldest due notice that nobody else holds, for the length of a lease."""
    moment = _iso(now)
    with dbmod.immediate(db):
        row = db.execute(
            "SELECT id, submission_id, reference, attempts FROM outbox"
            " WHERE sent_at IS NULL AND attempts < ?"
            " AND (next_attempt_at IS NULL OR next_attempt_at <= ?)"
            " AND (claimed_until IS NULL OR claimed_until <= ?)"
            " ORDER BY id LIMIT 1 $SKIP_LOCKED", [MAX_ATTEMPTS, moment, moment]).fetchone()
        if row is None:
            return None
        db.execute("UPDATE outbox SET claimed_until = ? WHERE id = ?", [_iso(now + LEASE), row[0]])
    return dict(zip(("id", "submission_id", "reference", "attempts"), row, strict=True))


def mark_sent(db, notice_id: int, *, now: datetime) -> None:
    with dbmod.immediate(db):
        db.execute("UPDATE outbox SET sent_at = ?, claimed_until = NULL, last_error = NULL WHERE id = ?",
                   [_iso(now), notice_id])


def mark_failed(db, notice: dict, error: BaseException, *, now: datetime) -> None:
    """Count the failure and schedule the next try. The error names the SMTP problem, never
    the submission's content (the message holds none)."""
    attempts = notice["attempts"] + 1
    reason = f"{type(error).__name__}: {error}"[:300]
    with dbmod.immediate(db):
        db.execute("UPDATE outbox SET attempts = ?, last_error = ?, next_attempt_at = ?, claimed_until = NULL"
                   " WHERE id = ?", [attempts, reason, _iso(now + backoff(attempts)), notice["id"]])
    if attempts >= MAX_ATTEMPTS:
        log.error("notice for %s not sent after %d attempts; giving up (row kept): %s",
                  notice["reference"], attempts, reason)
    else:
        log.warning("notice for %s not sent (attempt %d), will retry: %s", notice["reference"], attempts, reason)


def drop(db, notice_id: int) -> None:
    """Forget a notice that must not be sent (its submission is gone, or needs no notice)."""
    with dbmod.immediate(db):
        db.execute("DELETE FROM outbox WHERE id = ?", [notice_id])


def submission_for(db, notice: dict) -> dict | None:
    """What a notice says of its submission (id, its centre's number for it, reference, service,
    outcome, centre: never the answers, the name or the contact), or None when the submission is gone."""
    row = db.execute("SELECT id, number, reference, service, outcome, centre FROM submissions WHERE id = ?",
                     [notice["submission_id"]]).fetchone()
    return dict(zip(NOTICE_FIELDS, row, strict=True)) if row is not None else None


def given_up(db) -> int:
    """How many notices are kept unsent after the last attempt."""
    return db.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL AND attempts >= ?",
                      [MAX_ATTEMPTS]).fetchone()[0]
