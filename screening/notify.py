"""E-mail notices to the centre about new shared screenings, sent from an outbox table.

Off unless SMTP_HOST is set and there is somewhere to send to: a notice goes to its centre's
`notify_to` (rules/centres/<slug>.toml), or to NOTIFY_TO when the centre names no address.
`db.store_submission(..., notify=True)` queues a row in
the `outbox` table in the same transaction as the submission, so a notice can never be lost
between the commit and the send: it stays queued until an SMTP server has accepted it. After
the commit the public view calls `wake(app)`, which starts a background thread and returns at
once (a slow mail server must not slow the client's page). `screening send-notices` drains the
outbox too; run it from cron so that failed notices are retried and a notice whose worker died
is sent anyway.

Each row is claimed inside BEGIN IMMEDIATE with a lease (`claimed_until`), so two drainers, in
threads or processes, never send the same notice. Delivery is at least once: a crash after the
server accepted a message and before `sent_at` is written sends it again after the lease.

A notice carries the reference, the outcome label, the service name and a link to the staff
page: never the answers, the name, the contact or the notes (RELIABILITY.md point 18). It is
rendered from templates/email/notice.txt, which does not autoescape, so it holds only codes and
labels from rules/.
"""
from __future__ import annotations

import logging
import smtplib
import ssl
import threading
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import NamedTuple

import sqlite_utils
from flask_babel import force_locale

from . import db as dbmod
from . import i18n

log = logging.getLogger(__name__)

SMTP_TIMEOUT = 10                       # seconds per network operation
LEASE = timedelta(minutes=5)            # far longer than one send with the timeouts above
MAX_ATTEMPTS = 12                       # with the backoff below: about a day of retries
FIRST_RETRY = timedelta(minutes=1)
LONGEST_WAIT = timedelta(hours=6)
THREAD_NAME = "screening-notices"
TEMPLATE = "email/notice.txt"


class Drained(NamedTuple):
    sent: int
    failed: int


def recipients(config, centre) -> tuple[str, ...]:
    """Where a notice about one of `centre`'s screenings goes: the centre's own address(es), else
    NOTIFY_TO (the installation's), else nowhere. `centre` may be None (its file is gone)."""
    if centre is not None and centre.notify_to:
        return tuple(centre.notify_to)
    return tuple(a.strip() for a in (config.get("NOTIFY_TO") or "").split(",") if a.strip())


def enabled(config, centre=None, *, centres=None) -> bool:
    """Whether notices are on: an SMTP server, and a recipient for `centre` (or, without one, for
    any of `centres`, or NOTIFY_TO)."""
    if not config.get("SMTP_HOST"):
        return False
    if centre is not None:
        return bool(recipients(config, centre))
    return bool(config.get("NOTIFY_TO")) or any(c.notify_to for c in (centres or {}).values())


def _app_enabled(app) -> bool:
    """enabled() for an app: SMTP and some centre (or NOTIFY_TO) to send to."""
    return enabled(app.config, centres=app.extensions.get("screening.centres"))


def _iso(moment: datetime) -> str:
    """The same text format as db.now(), so that text comparison is time comparison."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def backoff(attempts: int) -> timedelta:
    """How long to wait after the `attempts`-th failure: doubling from a minute, at most 6 hours."""
    return min(FIRST_RETRY * 2 ** (attempts - 1), LONGEST_WAIT)


# --- the outbox ---------------------------------------------------------------------------------

def claim(db: sqlite_utils.Database, *, now: datetime) -> dict | None:
    """Take the oldest due notice that nobody else holds, for the length of a lease."""
    moment = _iso(now)
    with dbmod.immediate(db):
        row = db.execute(
            "SELECT id, submission_id, reference, attempts FROM outbox"
            " WHERE sent_at IS NULL AND attempts < ?"
            " AND (next_attempt_at IS NULL OR next_attempt_at <= ?)"
            " AND (claimed_until IS NULL OR claimed_until <= ?)"
            " ORDER BY id LIMIT 1", [MAX_ATTEMPTS, moment, moment]).fetchone()
        if row is None:
            return None
        db.execute("UPDATE outbox SET claimed_until = ? WHERE id = ?", [_iso(now + LEASE), row[0]])
    return dict(zip(("id", "submission_id", "reference", "attempts"), row, strict=True))


def _mark_sent(db, notice_id: int, *, now: datetime) -> None:
    with dbmod.immediate(db):
        db.execute("UPDATE outbox SET sent_at = ?, claimed_until = NULL, last_error = NULL WHERE id = ?",
                   [_iso(now), notice_id])


def _mark_failed(db, notice: dict, error: BaseException, *, now: datetime) -> None:
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


def _drop(db, notice_id: int) -> None:
    """Forget a notice that must not be sent (its submission is gone, or needs no notice)."""
    with dbmod.immediate(db):
        db.execute("DELETE FROM outbox WHERE id = ?", [notice_id])


# --- the message --------------------------------------------------------------------------------

def compose(app, submission: dict) -> EmailMessage:
    """The notice for one submission, to its centre's address. `submission` holds only id,
    reference, service, outcome, centre. Needs an app context (render_template)."""
    from flask import render_template

    config = app.config
    rules = app.extensions["screening.rules"]
    service = rules.service(submission["service"])
    base = (config.get("BASE_URL") or "").rstrip("/")
    language = i18n.default_language()
    with force_locale(language):      # staff read notices in the centre's language
        text = render_template(
            TEMPLATE, reference=submission["reference"], outcome=submission["outcome"],
            outcome_label=rules.outcomes[submission["outcome"]]["label"].get(language),
            service_name=service.name.get(language) if service else submission["service"],
            link=f"{base}/staff/submissions/{submission['id']}")
    # the template's first line is the subject, then a blank line, then the body
    head, _, body = text.lstrip().partition("\n\n")
    to = recipients(config, app.extensions.get("screening.centres", {}).get(submission.get("centre")))
    if not to:
        raise LookupError(f"no address for the notices of centre {submission.get('centre')!r}")
    message = EmailMessage()
    message["Subject"] = head.removeprefix("Subject:").strip()
    message["From"] = config.get("NOTIFY_FROM") or to[0]
    message["To"] = ", ".join(to)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="screening.invalid")
    message["Auto-Submitted"] = "auto-generated"      # RFC 3834: no auto-replies, please
    message.set_content(body.strip() + "\n")
    return message


def deliver(config, message: EmailMessage) -> None:
    """Hand one message to the SMTP server; raise unless it accepted it."""
    smtp = smtplib.SMTP(config["SMTP_HOST"], int(config.get("SMTP_PORT") or 25), timeout=SMTP_TIMEOUT)
    try:
        if config.get("SMTP_STARTTLS"):
            smtp.starttls(context=ssl.create_default_context())
        if config.get("SMTP_USERNAME"):
            smtp.login(config["SMTP_USERNAME"], config.get("SMTP_PASSWORD") or "")
        refused = smtp.send_message(message)
    finally:
        # not `with SMTP(...)`: its exit raises when QUIT fails, which after an accepted message
        # would count as a failure and send the notice twice
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()
    if refused:
        log.warning("notice %s refused for %d of its recipients", message["Subject"], len(refused))


def drain(app, *, now: datetime | None = None) -> Drained:
    """Send every due notice once, one claimed row at a time, on a connection of its own.
    `now` lets tests move the clock past a backoff."""
    sent = failed = 0
    if not _app_enabled(app):
        return Drained(sent, failed)
    conn = dbmod.connect(app.config["DATABASE"])
    try:
        with app.app_context():
            # a failed notice is due again only after its backoff, so this loop ends
            while (notice := claim(conn, now=now or datetime.now(UTC))) is not None:
                row = conn.execute("SELECT id, reference, service, outcome, centre FROM submissions WHERE id = ?",
                                   [notice["submission_id"]]).fetchone()
                if row is None or row[3] == "proceed":
                    _drop(conn, notice["id"])
                    continue
                try:
                    deliver(app.config, compose(app, dict(zip(("id", "reference", "service", "outcome", "centre"),
                                                              row, strict=True))))
                except Exception as e:  # any failure must leave the row queued
                    _mark_failed(conn, notice, e, now=now or datetime.now(UTC))
                    failed += 1
                    continue
                _mark_sent(conn, notice["id"], now=now or datetime.now(UTC))
                log.info("notice sent for %s", notice["reference"])
                sent += 1
    finally:
        conn.close()
    return Drained(sent, failed)


def given_up(db: sqlite_utils.Database) -> int:
    """How many notices are kept unsent after the last attempt."""
    return db.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL AND attempts >= ?",
                      [MAX_ATTEMPTS]).fetchone()[0]


# --- waking a background sender -----------------------------------------------------------------

class _Waker:
    """At most one sender thread per process and app; a wake while it runs makes it go round once
    more, so a notice queued during a pass is not left for cron."""

    def __init__(self):
        self.lock = threading.Lock()
        self.pending = False
        self.running = False

    def poke(self, app) -> None:
        with self.lock:
            self.pending = True
            if self.running:
                return
            self.running = True
        threading.Thread(target=self._run, args=(app,), name=THREAD_NAME, daemon=True).start()

    def _run(self, app) -> None:
        while True:
            with self.lock:
                if not self.pending:
                    self.running = False
                    return
                self.pending = False
            try:
                drain(app)
            except Exception:
                # the rows stay queued; cron's send-notices or the next wake sends them
                log.exception("notice sender failed")


def wake(app) -> None:
    """Send queued notices in the background; return at once. Call after the COMMIT."""
    if _app_enabled(app):
        app.extensions.setdefault("screening.notify", _Waker()).poke(app)


# --- wiring into Flask --------------------------------------------------------------------------

def init_app(app) -> None:
    """Register `screening send-notices`."""
    import click
    from flask.cli import with_appcontext

    app.extensions.setdefault("screening.notify", _Waker())

    @click.command("send-notices")
    @with_appcontext
    def send_notices_command() -> None:
        """Send the queued e-mail notices that are due, once; exit 1 if one could not be sent
        (it stays queued and is retried later). Run it from cron to retry failed notices.

        Example (crontab): */5 * * * * screening send-notices
        """
        from flask import current_app

        app = current_app._get_current_object()
        if not _app_enabled(app):
            click.echo("Notices are off: set SCREENING_SMTP_HOST, and notify_to in the centres' files or "
                       "SCREENING_NOTIFY_TO, to turn them on.")
            return
        result = drain(app)
        conn = dbmod.connect(app.config["DATABASE"])
        try:
            stuck = given_up(conn)
        finally:
            conn.close()
        click.echo(f"Sent {result.sent} notices; {result.failed} failed and stay queued.")
        if stuck:
            click.echo(f"{stuck} notices were given up after {MAX_ATTEMPTS} attempts (kept in the outbox table).")
        if result.failed:
            raise SystemExit(1)

    app.cli.add_command(send_notices_command)
