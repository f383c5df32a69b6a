"""Retention and erasure: delete submissions so that their bytes leave the database files.

A deleted row is not gone from disk by itself. On SQLite, `secure_delete` (set when connecting)
zeroes the freed space in the pages, but in WAL mode the old page images stay in the `-wal` file
until a checkpoint copies the new pages back and the log is reset. So every deletion here commits
first and then calls `db.after_erase()`: `PRAGMA wal_checkpoint(TRUNCATE)` on SQLite
(RELIABILITY.md point 7), a VACUUM in the background on PostgreSQL (see the README for what still
holds erased rows there: WAL, base backups, standbys). A purge deletes in
batches of short write transactions, so that the public side can keep storing screenings meanwhile.

No Flask at module level: the CLI wiring is at the end, imported only when the app registers it.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from . import db as dbmod

log = logging.getLogger(__name__)

# Children first: notes have a foreign key to submissions; outbox rows would otherwise
# keep sending notices for a submission that no longer exists. First of all, the references are
# retired: store_screening never gives one again (store/withdrawal.py).
_DELETE = (
    "INSERT INTO retired_references (reference) SELECT reference FROM submissions WHERE id IN $IDS(?)"
    " ON CONFLICT (reference) DO NOTHING",
    "DELETE FROM notes WHERE submission_id IN $IDS(?)",
    "DELETE FROM outbox WHERE submission_id IN $IDS(?)",
    "DELETE FROM submissions WHERE id IN $IDS(?)",
)
# Rows per write transaction. Measured on a million submissions: one transaction deleting a year
# (~500,000 rows) held the write lock for 12 s, longer than the 5 s busy timeout, so clients
# sharing a screening meanwhile would get a 503. 5,000 rows hold it for about a tenth of a second.
PURGE_BATCH = 5000
# The largest age a purge accepts: a century is more than any retention period, and far from the
# ~739,000 days back to the year 1, where date arithmetic overflows.
MAX_DAYS = 36500


def _delete(db, ids: list[int]) -> None:
    """Delete these submissions with their notes and queued notices, and retire their references
    (inside the caller's transaction)."""
    for statement in _DELETE:
        db.execute(statement, [ids])


def cutoff(older_than_days: int, *, now: datetime | None = None) -> str:
    """The created_at value before which a submission is older than `older_than_days` days."""
    if not 0 <= older_than_days <= MAX_DAYS:
        raise ValueError(f"older_than_days must be from 0 to {MAX_DAYS}")
    return _iso((now or datetime.now(UTC)) - timedelta(days=older_than_days))


def _iso(moment: datetime) -> str:
    """The same text format as db.now(), so that text comparison is time comparison."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def centres_with_submissions(db) -> list[str]:
    """The centres that have submissions, each found by one probe of the centre-led index (no
    scan of the table, however many rows)."""
    found: list[str] = []
    while (row := db.execute("SELECT min(centre) FROM submissions WHERE centre > ?",
                             [found[-1] if found else ""]).fetchone()) and row[0] is not None:
        found.append(row[0])
    return found


def purge(db, older_than_days: int, *, centre: str | None = None,
          staff: dict | None = None, batch: int = PURGE_BATCH, now: datetime | None = None) -> int:
    """Delete the submissions created more than `older_than_days` days ago, of one centre or (with
    no `centre`) of every centre, with their notes and notices, `batch` rows per BEGIN IMMEDIATE
    transaction so that shares are never held up for long; audit each centre's total in its own
    trail with its last batch; drop share attempts that no longer count; then checkpoint. Return
    how many submissions were deleted."""
    before = cutoff(older_than_days, now=now)
    deleted = 0
    for each in [centre] if centre else centres_with_submissions(db) or [dbmod.INSTALLATION]:
        deleted += _purge_centre(db, each, before, older_than_days, staff, batch)
    _after_purge(db)
    log.info("purged %d submissions older than %d days%s", deleted, older_than_days,
             f" of centre {centre}" if centre else "")
    return deleted


def _after_purge(db) -> None:
    """What every purge ends with: share counts that count nothing any more go, then the checkpoint."""
    with dbmod.immediate(db):
        # per-address counts of shares (keyed hashes) older than the window count nothing any more;
        # store_screening deletes them too, but only with one share in db.SHARE_PRUNE_EVERY
        db.execute("DELETE FROM share_attempts WHERE at <= ?", [time.time() - dbmod.SHARE_WINDOW])
    checkpoint(db)


def purge_expired(db, days_of: Mapping[str, int], default_days: int, *, now: datetime | None = None,
                  batch: int = PURGE_BATCH, audit_none: bool = True) -> dict[str, int]:
    """Delete every centre's screenings older than its own retention: `days_of[centre]`, else
    `default_days` (a centre whose file is gone keeps the installation's). Audited in each
    centre's trail as a purge (not when nothing went and `audit_none` is false: the daily run
    would write a line a day). Return the number deleted per centre that had screenings."""
    deleted = {}
    for centre in centres_with_submissions(db):
        days = days_of.get(centre, default_days)
        deleted[centre] = _purge_centre(db, centre, cutoff(days, now=now), days, None, batch, audit_none)
    _after_purge(db)
    log.info("purged %d expired submissions", sum(deleted.values()))
    return deleted


DAILY = timedelta(days=1)
DAILY_TASK = "retention"


def claim_daily(db, *, now: datetime | None = None) -> bool:
    """Whether the caller runs today's purge of expired screenings: True at most once a day for
    the whole installation, whichever app server or worker asks first (the claim is a row of
    `maintenance`, read and written in one transaction under a lock across servers)."""
    moment = now or datetime.now(UTC)
    with dbmod.immediate(db):
        db.lock("maintenance:" + DAILY_TASK)
        row = db.execute("SELECT last_run_at FROM maintenance WHERE name = ?", [DAILY_TASK]).fetchone()
        if row is not None and row[0] > _iso(moment - DAILY):
            return False
        db.execute("INSERT INTO maintenance (name, last_run_at) VALUES (?, ?)"
                   " ON CONFLICT (name) DO UPDATE SET last_run_at = excluded.last_run_at",
                   [DAILY_TASK, _iso(moment)])
    return True


def _purge_centre(db, centre: str, before: str, older_than_days: int,
                  staff: dict | None, batch: int, audit_none: bool = True) -> int:
    """purge() for one centre, through its (centre, created_at, id) index."""
    deleted = 0
    while True:
        with dbmod.immediate(db):
            ids = [row[0] for row in db.execute(
                "SELECT id FROM submissions WHERE centre = ? AND created_at < ? ORDER BY created_at LIMIT ?",
                [centre, before, batch])]
            _delete(db, ids)
            deleted += len(ids)
            done = len(ids) < batch
            if done and (deleted or audit_none):
                # counts and days only: the audit trail outlives the data it describes
                dbmod.audit(db, action="purge", staff=staff, centre=centre,
                            detail=f"{deleted} submissions older than {older_than_days} days")
        if done:
            return deleted


def erase_submission(db, submission_id: int, *, centre: str,
                     staff: dict | None) -> str | None:
    """Delete one of `centre`'s submissions with its notes and notices (the right to erasure);
    audit it by its reference; then checkpoint. Return the reference, or None when `centre` has no
    such submission (another centre's is not touched)."""
    with dbmod.immediate(db):
        row = db.execute("SELECT reference FROM submissions WHERE id = ? AND centre = ?",
                         [submission_id, centre]).fetchone()
        if row is None:
            return None
        reference = row[0]
        _delete(db, [submission_id])
        dbmod.audit(db, action="erase", staff=staff, submission_id=submission_id, reference=reference,
                    centre=centre)
    checkpoint(db)
    log.info("erased submission %s", reference)
    return reference


def checkpoint(db) -> bool:
    """Make deleted rows leave the database's files (see db.after_erase). On SQLite, False when a
    reader kept part of the log alive; the bytes then leave at the next checkpoint."""
    return db.after_erase()
