"""Account links: invitations (72 hours) and password resets (one hour), sent by e-mail.

No Flask here. Why it is built this way:
- a link's token is random (256 bits); `account_links` keeps only its SHA-256, so a copy of the
  database opens no link. The token in clear is in `outbox.token` only until its e-mail is sent
  (store/outbox.py wipes it in the UPDATE that marks the e-mail sent, and drops it with a row
  that must not be sent); without a mail server it is never stored: the admin is shown it once;
- a new link of one kind for the same account (reset) or centre and address (invitation)
  supersedes the older unused ones (their expiry is moved to now);
- an invitation is a row here, never a staff row, until it is accepted: inviting an address
  that already has an account at another centre looks to the inviting centre exactly like any
  other invitation (one account belongs to one centre; a person working at two centres has one
  account per centre, each under its own address). Only the invitee, opening the link, is told;
- using a link (accepting, resetting) is one transaction under lock('link:<id>') with a
  conditional UPDATE of used_at, so a link works once, across app servers.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from . import accounts
from .db import IntegrityError, audit, immediate

KINDS = ("invite", "reset")
VALIDITY = {"invite": timedelta(hours=72), "reset": timedelta(hours=1)}
LANGUAGES = ("ca", "es", "en")
# /staff/forgot: at most this many requests per address, and per e-mail typed, per window
FORGOT_WINDOW = 3600.0
FORGOT_PER_EMAIL = 3
FORGOT_PER_ADDRESS = 10


class LinkError(ValueError):
    """A link could not be made or used; `code` says why ('gone': used, expired, superseded or
    unknown; 'taken_here' / 'taken_elsewhere': the invited address already has an account)."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def _iso(moment: datetime) -> str:
    """The same text format as db.now(), so that text comparison is time comparison."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def token_hash(token: str) -> str:
    """What account_links keeps of a token: its SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()


def invitation_handle(key: bytes, link_id: int) -> str:
    """How the team page names a pending invitation in its forms (a keyed hash of its id)."""
    return hmac.new(key, b"account-link:" + str(link_id).encode(), hashlib.sha256).hexdigest()[:16]


def _create(db, *, kind: str, centre: str, email: str, staff_id: int | None, name: str | None,
            role: str | None, language: str | None, by: int | None, now: datetime,
            mail: bool) -> tuple[int, str]:
    """Inside the caller's transaction: a new link, superseding the older unused ones of its kind
    for the same account or address; with `mail`, its e-mail queued in the outbox (the only
    place its token is kept in clear, until sent). Returns (link id, token)."""
    moment = _iso(now)
    if staff_id is not None:
        db.execute("UPDATE account_links SET expires_at = ? WHERE kind = ? AND staff_id = ? AND used_at IS NULL"
                   " AND expires_at > ?", [moment, kind, staff_id, moment])
    else:
        db.execute("UPDATE account_links SET expires_at = ? WHERE kind = ? AND centre = ? AND email = ?"
                   " AND used_at IS NULL AND expires_at > ?", [moment, kind, centre, email, moment])
    token = secrets.token_urlsafe(32)
    link_id = db.execute(
        "INSERT INTO account_links (kind, centre, staff_id, email, name, role, language, token_hash, created_at,"
        " expires_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        [kind, centre, staff_id, email, name, role, language, token_hash(token), moment,
         _iso(now + VALIDITY[kind]), by]).fetchone()[0]
    if mail:
        db.execute("INSERT INTO outbox (kind, link_id, token, reference, created_at, attempts, next_attempt_at)"
                   " VALUES (?, ?, ?, '', ?, 0, ?)", [kind, link_id, token, moment, moment])
    return link_id, token


# --- invitations -------------------------------------------------------------------------------

def invite(db, *, admin: dict[str, Any], email: str, name: str | None, role: str, language: str,
           mail: bool, now: datetime | None = None) -> tuple[int, str]:
    """An admin invites an address to their own centre with a role and a language; returns (link
    id, token). AccountError('bad_email' | 'bad_role'), LinkError('bad_language'), or
    LinkError('taken_here') when the address is already on this centre's team (it may say so).
    An address with an account at another centre is invited like any other: see the module."""
    email = accounts.check_email(email)
    if role not in accounts.ROLES:
        raise accounts.AccountError("bad_role")
    if language not in LANGUAGES:
        raise LinkError("bad_language")
    centre = admin["centre"]
    now = _now(now)
    with immediate(db):
        db.lock(f"invite:{centre}:{email}")
        here = db.execute("SELECT 1 FROM staff WHERE email = ? AND centre = ?", [email, centre]).fetchone()
        if here:
            raise LinkError("taken_here")
        result = _create(db, kind="invite", centre=centre, email=email, staff_id=None,
                         name=(name or "").strip()[:200] or None, role=role, language=language,
                         by=admin["id"], now=now, mail=mail)
        audit(db, action="staff_invited", staff=admin, detail=email)
    return result


def pending_invitations(db, centre: str, *, key: bytes, now: datetime | None = None) -> list[dict[str, Any]]:
    """The centre's invitations not yet accepted nor expired, newest first: handle, email, name,
    role, language, created_at, expires_at."""
    rows = db.execute("SELECT id, email, name, role, language, created_at, expires_at FROM account_links"
                      " WHERE centre = ? AND kind = 'invite' AND used_at IS NULL AND expires_at > ?"
                      " ORDER BY created_at DESC, id DESC", [centre, _iso(_now(now))]).fetchall()
    return [{"handle": invitation_handle(key, r[0]), "email": r[1], "name": r[2], "role": r[3], "language": r[4],
             "created_at": r[5], "expires_at": r[6]} for r in rows]


def cancel_invitation(db, *, admin: dict[str, Any], handle: str, key: bytes,
                      now: datetime | None = None) -> bool:
    """Cancel one of the admin's centre's pending invitations, named by its handle (its link
    stops working, its unsent e-mail is not sent); False when there is no such invitation."""
    moment = _iso(_now(now))
    with immediate(db):
        rows = db.execute("SELECT id, email FROM account_links WHERE centre = ? AND kind = 'invite'"
                          " AND used_at IS NULL AND expires_at > ?", [admin["centre"], moment]).fetchall()
        for link_id, email in rows:
            if hmac.compare_digest(invitation_handle(key, link_id), handle or ""):
                db.execute("UPDATE account_links SET expires_at = ? WHERE id = ?", [moment, link_id])
                db.execute("DELETE FROM outbox WHERE link_id = ? AND sent_at IS NULL", [link_id])
                audit(db, action="invitation_cancelled", staff=admin, detail=email)
                return True
    return False


# --- password resets ---------------------------------------------------------------------------

def send_reset(db, *, staff_id: int, centre: str, mail: bool, admin: dict[str, Any] | None = None,
               now: datetime | None = None) -> tuple[int, str] | None:
    """A password reset link for an active account of `centre`; returns (link id, token), or None
    when there is no such active account. By an admin (`admin`, audited `password_reset_sent`)
    or asked for at /staff/forgot (audited `password_reset_requested`)."""
    now = _now(now)
    with immediate(db):
        row = db.execute("SELECT id, email, language FROM staff WHERE id = ? AND centre = ? AND active = 1",
                         [staff_id, centre]).fetchone()
        if row is None:
            return None
        result = _create(db, kind="reset", centre=centre, email=row[1], staff_id=row[0], name=None, role=None,
                         language=row[2], by=admin["id"] if admin else None, now=now, mail=mail)
        audit(db, action="password_reset_sent" if admin else "password_reset_requested", staff=admin,
              detail=row[1], centre=centre)
    return result


def forgot(db, email: str, remote_addr: str | None, *, secret: str | bytes, mail: bool,
           now: datetime | None = None) -> float:
    """/staff/forgot: count this request against the address and the e-mail typed (a keyed hash
    of it), then, when the address is an active account's and `mail` is on, make it a reset link
    and queue its e-mail. Returns 0, or how many seconds this client must wait (nothing was done). The answer
    to the person is the same whether or not the address has an account."""
    email = accounts.normalize_email(email)[:accounts.MAX_EMAIL]
    keys = ("forgot-email:" + accounts.keyed_hash(secret, email), "forgot-" + accounts.address_key(remote_addr))
    limits = dict(zip(keys, (FORGOT_PER_EMAIL, FORGOT_PER_ADDRESS), strict=True))
    with immediate(db):
        for key in keys:
            db.lock("forgot:" + key)
        at = time.time()
        wait = 0.0
        for key in keys:
            db.execute("DELETE FROM login_failures WHERE key = ? AND at <= ?", [key, at - FORGOT_WINDOW])
            count, oldest = db.execute("SELECT count(*), min(at) FROM login_failures WHERE key = ?",
                                       [key]).fetchone()
            if count >= limits[key]:
                wait = max(wait, oldest + FORGOT_WINDOW - at)
        if wait > 0:
            return wait
        for key in keys:
            db.execute("INSERT INTO login_failures (key, at) VALUES (?, ?)", [key, at])
    row = db.execute("SELECT id, centre FROM staff WHERE email = ? AND active = 1", [email]).fetchone()
    # without mail nothing can reach the member, and a new link would supersede one an admin has
    # just shown them to pass on
    if row is not None and mail:
        send_reset(db, staff_id=row[0], centre=row[1], mail=True, now=now)
    return 0.0


# --- opening and using a link ------------------------------------------------------------------

LINK_COLUMNS = ("id", "kind", "centre", "staff_id", "email", "name", "role", "language", "expires_at", "used_at")


def find_link(db, token: str | None, kind: str, *, now: datetime | None = None) -> dict[str, Any] | None:
    """The link of `token` when it is of `kind`, unused and not expired (nor superseded), else None.
    For an invitation, `taken` says whether its address already has an account: 'here' (this
    centre), 'elsewhere' (another centre) or ''."""
    if not token or len(token) > 128:
        return None
    row = db.execute(f"SELECT {', '.join(LINK_COLUMNS)} FROM account_links WHERE token_hash = ?",  # noqa: S608
                     [token_hash(token)]).fetchone()
    link = dict(zip(LINK_COLUMNS, row, strict=True)) if row else None
    if link is None or link["kind"] != kind or link["used_at"] or link["expires_at"] <= _iso(_now(now)):
        return None
    if kind == "reset":
        active = db.execute("SELECT 1 FROM staff WHERE id = ? AND active = 1", [link["staff_id"]]).fetchone()
        if not active:
            return None
    link["taken"] = ""
    if kind == "invite":
        found = db.execute("SELECT centre FROM staff WHERE email = ?", [link["email"]]).fetchone()
        if found:
            link["taken"] = "here" if found[0] == link["centre"] else "elsewhere"
    return link


def _use(db, link: dict[str, Any], now: datetime) -> None:
    """Inside a transaction: mark a link used, or LinkError('gone') when another request used it,
    or it expired, meanwhile."""
    db.lock(f"link:{link['id']}")
    moment = _iso(now)
    used = db.execute("UPDATE account_links SET used_at = ? WHERE id = ? AND used_at IS NULL AND expires_at > ?",
                      [moment, link["id"], moment]).rowcount
    if used != 1:
        raise LinkError("gone")
    db.execute("DELETE FROM outbox WHERE link_id = ? AND sent_at IS NULL", [link["id"]])


def accept_invitation(db, token: str, *, name: str | None, password: str,
                      now: datetime | None = None) -> dict[str, Any]:
    """The invitee sets a name and password: the account is made in the inviting centre with the
    invited role and language, and the link is used up. LinkError('gone' | 'taken_here' |
    'taken_elsewhere'); AccountError for a password outside the rules."""
    now = _now(now)
    link = find_link(db, token, "invite", now=now)
    if link is None:
        raise LinkError("gone")
    if link["taken"]:
        raise LinkError("taken_" + link["taken"])
    password_hash = accounts.hash_password(password)     # slow: before the transaction
    stamp = _iso(now)
    try:
        with immediate(db):
            _use(db, link, now)
            staff_id = db.execute(
                "INSERT INTO staff (email, name, role, active, password_hash, created_at, password_changed_at,"
                " centre, language) VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?) RETURNING id",
                [link["email"], (name or "").strip()[:200] or link["name"], link["role"] or "staff", password_hash,
                 stamp, stamp, link["centre"], link["language"]]).fetchone()[0]
            staff = accounts.get_staff(db, staff_id)
            audit(db, action="invitation_accepted", staff=staff, detail=link["email"])
    except IntegrityError as e:      # the address got an account meanwhile
        raise LinkError("taken_elsewhere") from e
    return staff


def complete_reset(db, token: str, *, password: str, now: datetime | None = None) -> dict[str, Any]:
    """The member sets a new password through a reset link: every session of the account ends, its
    account throttle is lifted, the link (and any other reset link of the account) is used up.
    LinkError('gone'); AccountError for a password outside the rules."""
    now = _now(now)
    link = find_link(db, token, "reset", now=now)
    if link is None:
        raise LinkError("gone")
    password_hash = accounts.hash_password(password)
    with immediate(db):
        _use(db, link, now)
        staff_id = link["staff_id"]
        if db.execute("UPDATE staff SET password_hash = ?, password_changed_at = ? WHERE id = ? AND active = 1",
                      [password_hash, _iso(now), staff_id]).rowcount != 1:
            raise LinkError("gone")
        db.execute("UPDATE account_links SET expires_at = ? WHERE kind = 'reset' AND staff_id = ?"
                   " AND used_at IS NULL AND expires_at > ?", [_iso(now), staff_id, _iso(now)])
        db.execute("DELETE FROM staff_sessions WHERE staff_id = ?", [staff_id])
        db.execute("DELETE FROM login_failures WHERE key = ?", [accounts.account_key(staff_id)])
        staff = accounts.get_staff(db, staff_id)
        audit(db, action="password_reset_done", staff=staff, detail=staff["email"])
    return staff
