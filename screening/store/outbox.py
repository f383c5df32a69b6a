"""The outbox of e-mails: every SQL statement of web/notify.py's sender.

Two sorts of rows share the sender, the lease and the retries (`kind`): a notice to the centre
('notice', queued by db.store_screening in the same transaction as its submission), and an
account e-mail ('invite' or 'reset', queued by store/links.py with its link: `link_id`, and
`token`, the link's token in clear, kept only until the e-mail is sent: the UPDATE that marks
it sent wipes it, and a row given up or dropped keeps no token either), and a notice to the
centre that a client withdrew a screening ('withdrawn', queued by store/withdrawal.py in the
transaction that erases it: the screening is gone, so submission_id is NULL and the row holds
only the reference, the centre and, as created_at, the moment of the withdrawal). Each row is
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
    """Take the oldest due e-mail that nobody else holds, for the length of a lease: id,
    submission_id, reference, attempts, kind, link_id, token, centre, created_at."""
    moment = _iso(now)
    with dbmod.immediate(db):
        row = db.execute(
            "SELECT id, submission_id, reference, attempts, kind, link_id, token, centre, created_at FROM outbox"
            " WHERE sent_at IS NULL AND attempts < ?"
            " AND (next_attempt_at IS NULL OR next_attempt_at <= ?)"
            " AND (claimed_until IS NULL OR claimed_until <= ?)"
            " ORDER BY id LIMIT 1 $SKIP_LOCKED", [MAX_ATTEMPTS, moment, moment]).fetchone()
        if row is None:
            return None
        db.execute("UPDATE outbox SET claimed_until = ? WHERE id = ?", [_iso(now + LEASE), row[0]])
    return dict(zip(CLAIMED, row, strict=True))


CLAIMED = ("id", "submission_id", "reference", "attempts", "kind", "link_id", "token", "centre", "created_at")
WITHDRAWN = "withdrawn"     # the kind of a row telling a centre that a client withdrew a screening


def queue_withdrawn(db, *, reference: str, centre: str, at: str) -> None:
    """Queue the notice that the client withdrew screening `reference` of `centre` at `at` (db.now()
    text). Call inside the transaction that erases it: both happen or neither."""
    db.execute("INSERT INTO outbox (kind, submission_id, reference, centre, created_at, attempts, next_attempt_at)"
               " VALUES (?, NULL, ?, ?, ?, 0, ?)", [WITHDRAWN, reference, centre, at, at])


def mark_sent(db, notice_id: int, *, now: datetime) -> None:
    """The e-mail was accepted: mark it sent and wipe its link's token in the same UPDATE."""
    with dbmod.immediate(db):
        db.execute("UPDATE outbox SET sent_at = ?, claimed_until = NULL, last_error = NULL, token = NULL"
                   " WHERE id = ?", [_iso(now), notice_id])


def mark_failed(db, notice: dict, error: BaseException, *, now: datetime) -> None:
    """Count the failure and schedule the next try. The error names the SMTP problem, never
    the submission's content (the message holds none)."""
    attempts = notice["attempts"] + 1
    reason = f"{type(error).__name__}: {error}"[:300]
    with dbmod.immediate(db):
        # given up: the row is kept, its link's token is not (nobody will send it now)
        db.execute("UPDATE outbox SET attempts = ?, last_error = ?, next_attempt_at = ?, claimed_until = NULL,"
                   " token = CASE WHEN ? THEN NULL ELSE token END WHERE id = ?",
                   [attempts, reason, _iso(now + backoff(attempts)), attempts >= MAX_ATTEMPTS, notice["id"]])
    what = describe(notice)
    if attempts >= MAX_ATTEMPTS:
        log.error("%s not sent after %d attempts; giving up (row kept): %s", what, attempts, reason)
    else:
        log.warning("%s not sent (attempt %d), will retry: %s", what, attempts, reason)


def describe(notice: dict) -> str:
    """How the log names an e-mail: a notice by its reference, an account e-mail by its row id
    (never its address or its token)."""
    if notice.get("kind", "notice") == "notice":
        return f"notice for {notice['reference']}"
    if notice["kind"] == WITHDRAWN:
        return f"withdrawal notice for {notice['reference']}"
    return f"{notice['kind']} e-mail {notice['id']}"


def drop(db, notice_id: int) -> None:
    """Forget an e-mail that must not be sent (its submission is gone or needs no notice; its link
    is used, expired or superseded), token and all."""
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


LINK_FIELDS = ("id", "kind", "centre", "email", "staff_id", "language", "expires_at", "staff_language")


def link_for(db, notice: dict, *, now: datetime) -> dict | None:
    """What an account e-mail needs of its link (kind, centre, address, the language it was made
    with, the account's own language), or None when the link can no longer be used (used,
    expired, superseded, or its account deactivated): the e-mail is then dropped."""
    row = db.execute(
        "SELECT l.id, l.kind, l.centre, l.email, l.staff_id, l.language, l.expires_at, s.language"
        " FROM account_links l LEFT JOIN staff s ON s.id = l.staff_id"
        " WHERE l.id = ? AND l.used_at IS NULL AND l.expires_at > ? AND (l.staff_id IS NULL OR s.active = 1)",
        [notice["link_id"], _iso(now)]).fetchone()
    return dict(zip(LINK_FIELDS, row, strict=True)) if row is not None else None
