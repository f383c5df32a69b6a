"""E-mail notices to the centre about new shared screenings, sent from an outbox table.

Off unless SMTP_HOST is set and there is somewhere to send to: a notice goes to its centre's
`notify_to` (rules/centres/<slug>.toml), or to NOTIFY_TO when the centre names no address.
`store.db.store_screening(..., notify=True)` queues a row in
the `outbox` table in the same transaction as the submission, so a notice can never be lost
between the commit and the send: it stays queued until an SMTP server has accepted it. After
the commit the public view calls `wake(app)`, which starts a background thread and returns at
once (a slow mail server must not slow the client's page). `screening send-notices` drains the
outbox too; run it from cron so that failed notices are retried and a notice whose worker died
is sent anyway.

The outbox's SQL (claims with a lease, so two senders never send the same notice; delivery at
least once) is in store/outbox.py.

Account e-mails (an invitation, a password reset: store/links.py) go through the same outbox,
sender, lease and retries, as rows of their own kind, to the account's address, in the account's
own language (else its centre's default language), from templates/email/invitation.txt and
reset.txt. They need SMTP_HOST and BASE_URL (their link is built from BASE_URL alone, never from a
request's Host header); without either, no row is queued and the team page shows the admin the
link once instead (account_mail_enabled). A link used, expired or superseded by the time its
e-mail is due is dropped unsent.

When a client withdraws a screening (web/withdraw.py), a 'withdrawn' row is queued in the same
transaction as the erasure, if notices are on for its centre (`enabled`). Its e-mail, from
templates/email/withdrawn.txt in the centre's default language, says that reference R was withdrawn
by the client on a date (the centre's clock) and that its answers and notes are erased: nothing
else. Its screening is gone, so it is never dropped for that; any queued notice of the erased
screening was deleted with it and is never sent.

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
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import NamedTuple
from urllib.parse import urlsplit

from flask_babel import force_locale

from ..store import links, outbox
from . import database, i18n

log = logging.getLogger(__name__)

SMTP_TIMEOUT = 10                       # seconds per network operation
THREAD_NAME = "screening-notices"
TEMPLATE = "email/notice.txt"
WITHDRAWN_TEMPLATE = "email/withdrawn.txt"
LINK_TEMPLATES = {"invite": "email/invitation.txt", "reset": "email/reset.txt"}
LINK_PATHS = {"invite": "/staff/invitation/", "reset": "/staff/reset/"}


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


def sending_enabled(app) -> bool:
    """enabled() for an app: SMTP and some centre (or NOTIFY_TO) to send to."""
    return enabled(app.config, centres=app.extensions.get("screening.centres"))


def account_mail_enabled(config) -> bool:
    """Whether account e-mails (invitations, resets) can be sent: a mail server, and BASE_URL to
    build their links from."""
    return bool(config.get("SMTP_HOST")) and bool(config.get("BASE_URL"))


def link_url(config, kind: str, token: str) -> str:
    """The address of an account link: BASE_URL and the link's path, never the request's Host.
    Without BASE_URL, the path alone (shown to an admin, whose browser completes it)."""
    return (config.get("BASE_URL") or "").rstrip("/") + LINK_PATHS[kind] + token


# --- the message --------------------------------------------------------------------------------

def compose(app, submission: dict) -> EmailMessage:
    """The notice for one submission, to its centre's address. `submission` holds only id, number,
    reference, service, outcome, centre. Needs an app context (render_template)."""
    from flask import render_template

    config = app.config
    rules = app.extensions["screening.rules"]
    service = rules.service(submission["service"])
    base = (config.get("BASE_URL") or "").rstrip("/")
    centre = app.extensions.get("screening.centres", {}).get(submission.get("centre"))
    language = centre.default_language if centre is not None else i18n.default_language()
    with force_locale(language):      # staff read notices in their centre's language
        text = render_template(
            TEMPLATE, reference=submission["reference"], outcome=submission["outcome"],
            outcome_label=rules.outcomes[submission["outcome"]]["label"].get(language),
            service_name=service.name.get(language) if service else submission["service"],
            # the centre's own number: the installation-wide id would tell its staff how many
            # screenings the other centres received
            link=f"{base}/staff/submissions/{submission['number']}")
    to = recipients(config, centre)
    if not to:
        raise LookupError(f"no address for the notices of centre {submission.get('centre')!r}")
    return _email(text, config.get("NOTIFY_FROM") or to[0], ", ".join(to))


def _email(text: str, sender_address: str, to: str) -> EmailMessage:
    """The e-mail of a rendered template: its first line is the subject, then a blank line, then
    the body. Every e-mail the app sends is built here."""
    head, _, body = text.lstrip().partition("\n\n")
    message = EmailMessage()
    message["Subject"] = head.removeprefix("Subject:").strip()
    message["From"] = sender_address
    message["To"] = to
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="screening.invalid")
    message["Auto-Submitted"] = "auto-generated"      # RFC 3834: no auto-replies, please
    message.set_content(body.strip() + "\n")
    return message


def compose_withdrawn(app, notice: dict) -> EmailMessage:
    """The notice that a client withdrew screening `notice['reference']` of `notice['centre']`, at
    `notice['created_at']`, to the centre's address, in its default language, on its clock. It holds
    the reference and the date, nothing else. Needs an app context (render_template)."""
    from flask import render_template

    from ..core.reading import local_time

    config = app.config
    centre = app.extensions.get("screening.centres", {}).get(notice.get("centre"))
    to = recipients(config, centre)
    if not to:
        raise LookupError(f"no address for the notices of centre {notice.get('centre')!r}")
    language = centre.default_language if centre is not None else i18n.default_language()
    zone = centre.timezone if centre is not None else config.get("TIMEZONE") or "UTC"
    with force_locale(language):
        text = render_template(WITHDRAWN_TEMPLATE, reference=notice["reference"],
                               when=i18n.local_datetime(local_time(notice["created_at"], zone)))
    return _email(text, config.get("NOTIFY_FROM") or to[0], ", ".join(to))


def sender(config, centre) -> str:
    """The From of an account e-mail: NOTIFY_FROM, else the centre's notice address, else
    NOTIFY_TO's first, else no-reply at BASE_URL's host."""
    if config.get("NOTIFY_FROM"):
        return config["NOTIFY_FROM"]
    to = recipients(config, centre)
    if to:
        return to[0]
    return "no-reply@" + (urlsplit(config.get("BASE_URL") or "").hostname or "localhost")


def compose_link(app, link: dict, token: str) -> EmailMessage:
    """An account e-mail (invitation or reset) to the link's address, in the account's own
    language, else the invitation's, else its centre's default. It holds the centre's name and
    the link, nothing else of anyone. Needs an app context (render_template)."""
    from flask import render_template

    config = app.config
    centre = app.extensions.get("screening.centres", {}).get(link["centre"])
    language = link.get("staff_language") or link.get("language") or (
        centre.default_language if centre is not None else i18n.default_language())
    with force_locale(language):
        text = render_template(LINK_TEMPLATES[link["kind"]], link=link_url(config, link["kind"], token),
                               centre_name=centre.name if centre is not None else link["centre"],
                               hours=int(links.VALIDITY[link["kind"]].total_seconds() // 3600))
    return _email(text, sender(config, centre), link["email"])


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
        log.warning("e-mail %s refused for %d of its recipients", message["Message-ID"], len(refused))


def drain(app, *, now: datetime | None = None) -> Drained:
    """Send every due notice once, one claimed row at a time, on a connection of its own.
    `now` lets tests move the clock past a backoff."""
    sent = failed = 0
    if not app.config.get("SMTP_HOST"):
        return Drained(sent, failed)
    conn = database.open_for(app)
    try:
        with app.app_context():
            # a failed notice is due again only after its backoff, so this loop ends
            while (notice := outbox.claim(conn, now=now or datetime.now(UTC))) is not None:
                message = _message(app, conn, notice, now=now or datetime.now(UTC))
                if message is None:
                    outbox.drop(conn, notice["id"])
                    continue
                try:
                    deliver(app.config, message())
                except Exception as e:  # any failure must leave the row queued
                    outbox.mark_failed(conn, notice, e, now=now or datetime.now(UTC))
                    failed += 1
                    continue
                outbox.mark_sent(conn, notice["id"], now=now or datetime.now(UTC))
                log.info("%s sent", outbox.describe(notice))
                sent += 1
    finally:
        conn.close()
    return Drained(sent, failed)


def _message(app, conn, notice: dict, *, now: datetime):
    """How to build a claimed row's e-mail (a function, so that a failure to build it counts as a
    failed attempt), or None when it must not be sent: a notice whose submission is gone or needs
    none, an account e-mail whose link can no longer be used or that has no token. A withdrawal
    notice has no submission (it was erased): it is always sent."""
    if notice.get("kind") == outbox.WITHDRAWN:
        return lambda: compose_withdrawn(app, notice)
    if notice.get("kind", "notice") == "notice":
        submission = outbox.submission_for(conn, notice)
        if submission is None or submission["outcome"] == "proceed":
            return None
        return lambda: compose(app, submission)
    link = outbox.link_for(conn, notice, now=now)
    if link is None or not notice.get("token") or not app.config.get("BASE_URL"):
        return None
    return lambda: compose_link(app, link, notice["token"])


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
    """Send queued e-mails in the background; return at once. Call after the COMMIT."""
    if app.config.get("SMTP_HOST"):
        app.extensions.setdefault("screening.notify", _Waker()).poke(app)


# --- wiring into Flask --------------------------------------------------------------------------

def init_app(app) -> None:
    """One background sender per app (the `send-notices` command is in cli.py)."""
    app.extensions.setdefault("screening.notify", _Waker())
