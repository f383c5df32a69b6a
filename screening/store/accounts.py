"""Staff accounts, server-side staff sessions and login throttling: the storage and its rules.

No Flask here (the CLI and the views both call it). Why it is built this way (RELIABILITY.md 11-13):
- passwords are hashed with argon2id, capped in length before hashing, rehashed when the
  hasher's parameters change;
- a session cookie carries only a random token; the table keeps its SHA-256, so a copy of the
  database does not hand out live sessions, and deleting the row ends the session everywhere;
- failed logins are rows counted inside BEGIN IMMEDIATE, so every gunicorn worker sees the same
  count; an attempt is counted *before* the password is checked, so parallel guesses cannot
  slip past the limit while a slow hash runs.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from .db import IntegrityError, audit, immediate, now

ROLES = ("staff", "admin")
MIN_PASSWORD = 8
# argon2 takes any length; the cap keeps one login from costing much more than another
MAX_PASSWORD = 256
MAX_EMAIL = 254
# Deliberately loose: one @, something on both sides, a dot in the domain, no spaces.
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
LAST_SEEN_EVERY = 60      # seconds: a session's last_seen_at is written at most this often
MAX_BROWSER = 64          # characters of a session's browser family kept

hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
_dummy_hash: str | None = None


class AccountError(ValueError):
    """An account could not be created or changed; `code` says why (the CLI words it)."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


# --- passwords -----------------------------------------------------------------------------------

def normalize_email(email: str) -> str:
    """Emails are compared without case and stored trimmed and lower-cased."""
    return (email or "").strip().lower()


def check_email(email: str) -> str:
    """The normalised email, or AccountError('bad_email')."""
    email = normalize_email(email)
    if len(email) > MAX_EMAIL or not EMAIL_RE.match(email):
        raise AccountError("bad_email")
    return email


def check_password(password: str) -> str:
    """The password unchanged, or AccountError('short_password' / 'long_password')."""
    if len(password or "") < MIN_PASSWORD:
        raise AccountError("short_password")
    if len(password) > MAX_PASSWORD:
        raise AccountError("long_password")
    return password


def hash_password(password: str) -> str:
    """An argon2id hash of a password already checked with check_password."""
    return hasher.hash(check_password(password))


def _dummy() -> str:
    """A hash of nothing anyone knows, made with the current parameters, to verify against when
    the account does not exist (so an unknown email costs the same time as a wrong password)."""
    global _dummy_hash
    if _dummy_hash is None or hasher.check_needs_rehash(_dummy_hash):
        _dummy_hash = hasher.hash(secrets.token_hex(16))
    return _dummy_hash


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when the password matches; an over-long password or a missing hash costs one dummy check."""
    usable = password_hash is not None and 0 < len(password or "") <= MAX_PASSWORD
    try:
        hasher.verify(password_hash if usable else _dummy(), password if usable else "not the password")
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return usable


# --- accounts ------------------------------------------------------------------------------------

def _public(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """An account without its password hash."""
    if row is None:
        return None
    return {k: row[k] for k in ("id", "email", "name", "role", "active", "created_at", "password_changed_at",
                                "centre")}


def create_staff(db, *, email: str, password: str, centre: str, name: str | None = None,
                 role: str = "staff") -> dict[str, Any]:
    """Create an account of `centre` (a slug: the account sees that centre's screenings only, and
    an admin administers that centre only); AccountError('bad_email' | 'short_password' |
    'long_password' | 'bad_role' | 'no_centre' | 'duplicate') when it cannot be."""
    email = check_email(email)
    if role not in ROLES:
        raise AccountError("bad_role")
    if not centre:
        raise AccountError("no_centre")
    password_hash = hash_password(password)
    stamp = now()
    try:
        with immediate(db):
            staff_id = db.execute(
                "INSERT INTO staff (email, name, role, active, password_hash, created_at,"
                " password_changed_at, centre) VALUES (?, ?, ?, 1, ?, ?, ?, ?) RETURNING id",
                [email, (name or "").strip() or None, role, password_hash, stamp, stamp, centre]).fetchone()[0]
    except IntegrityError as e:
        raise AccountError("duplicate") from e
    return get_staff(db, staff_id)


COLUMNS = ("id", "email", "name", "role", "active", "password_hash", "created_at", "password_changed_at", "centre")
_SELECT = "SELECT id, email, name, role, active, password_hash, created_at, password_changed_at, centre FROM staff"


def _row(row) -> dict[str, Any] | None:
    """A fetched staff row as a dict (the connection returns plain tuples)."""
    return dict(zip(COLUMNS, row, strict=True)) if row else None


def _find(db, email: str) -> dict[str, Any] | None:
    """One account with its hash, by email in any case."""
    return _row(db.execute(f"{_SELECT} WHERE email = ?", [normalize_email(email)]).fetchone())


def get_staff(db, staff_id: int) -> dict[str, Any] | None:
    """One account by id, without its hash."""
    return _public(_row(db.execute(f"{_SELECT} WHERE id = ?", [staff_id]).fetchone()))


def find_staff(db, email: str) -> dict[str, Any] | None:
    """One account by email (any case), without its hash."""
    return _public(_find(db, email))


def list_staff(db) -> list[dict[str, Any]]:
    """Every account of every centre, by email (for the operator's CLI only)."""
    return [_public(_row(r)) for r in db.execute(f"{_SELECT} ORDER BY email").fetchall()]


def deactivate(db, email: str) -> dict[str, Any]:
    """Refuse any further login for this account and end all its sessions at once."""
    with immediate(db):
        row = _find(db, email)
        if row is None:
            raise AccountError("unknown")
        db.execute("UPDATE staff SET active = 0 WHERE id = ?", [row["id"]])
        db.execute("DELETE FROM staff_sessions WHERE staff_id = ?", [row["id"]])
    return get_staff(db, row["id"])


def reset_password(db, email: str, password: str) -> dict[str, Any]:
    """Set a new password and end all the account's sessions (a thief's cookie dies with the old password)."""
    password_hash = hash_password(password)
    with immediate(db):
        row = _find(db, email)
        if row is None:
            raise AccountError("unknown")
        db.execute("UPDATE staff SET password_hash = ?, password_changed_at = ? WHERE id = ?",
                   [password_hash, now(), row["id"]])
        db.execute("DELETE FROM staff_sessions WHERE staff_id = ?", [row["id"]])
        # a reset is also how an admin unlocks an account locked by someone guessing
        db.execute("DELETE FROM login_failures WHERE key = ?", [account_key(row["email"])])
    return get_staff(db, row["id"])


def _centre_of(db, email: str) -> str | None:
    """The centre of the account with this e-mail, or None when there is none."""
    row = db.execute("SELECT centre FROM staff WHERE email = ?", [normalize_email(email)]).fetchone()
    return row[0] if row else None


# --- logging in ----------------------------------------------------------------------------------

def account_key(email: str) -> str:
    """The throttle key of an account (also for emails nobody has: guessing them is throttled too)."""
    return "account:" + normalize_email(email)[:MAX_EMAIL]


def address_key(remote_addr: str | None) -> str:
    """The throttle key of a client address."""
    return "ip:" + (remote_addr or "unknown")


@dataclass(frozen=True)
class LoginResult:
    """What a login attempt gave: the account (None when refused), whether it was refused for being
    locked, and how many recent failures counted against it before this attempt."""
    staff: dict[str, Any] | None
    locked: bool
    failures: int
    token: str | None = None


def _recent(db, key: str, since: float) -> int:
    """How many failures a key has had since a time."""
    sql = "SELECT count(*) FROM login_failures WHERE key = ? AND at > ?"
    return db.execute(sql, [key, since]).fetchone()[0]


def attempt_login(db, email: str, password: str, remote_addr: str | None, *,
                  max_failures: int, lock_seconds: float, replaces: str | None = None,
                  browser: str | None = None) -> LoginResult:
    """Check a login; on success start a new session (its token is in the result).

    Unknown email, wrong password and inactive account are refused alike and cost one argon2
    check each. The attempt is recorded as a failure per account and per address before the
    password is checked, and taken back when it succeeds, so N workers still allow N tries in all.
    Over the limit, even the right password is refused until old failures age out.
    `replaces` is the token of a session the browser already had: it is ended (fixation).
    `browser` is the browser family the session is shown with on My account ("Firefox/Android").
    """
    email = normalize_email(email)[:MAX_EMAIL]
    keys = (account_key(email), address_key(remote_addr))
    at = time.time()
    with immediate(db):
        for key in keys:        # across app servers on PostgreSQL: one count at a time per key
            db.lock("login:" + key)
        db.execute("DELETE FROM login_failures WHERE at <= ?", [at - lock_seconds])
        failures = max(_recent(db, key, at - lock_seconds) for key in keys)
        locked = failures >= max_failures
        if locked:
            audit(db, action="login_locked", detail=email, centre=_centre_of(db, email))
        else:
            pending = [db.execute("INSERT INTO login_failures (key, at) VALUES (?, ?) RETURNING id",
                                  [key, at]).fetchone()[0] for key in keys]
    if locked:
        verify_password(None, password)     # the same cost as any other refusal
        return LoginResult(None, True, failures)

    row = _find(db, email)
    ok = verify_password(row["password_hash"] if row else None, password) and bool(row and row["active"])
    if not ok:
        with immediate(db):
            # in the trail of the account's centre; an e-mail nobody has belongs to no centre
            audit(db, action="login_failed", detail=email, centre=row["centre"] if row else None)
        return LoginResult(None, False, failures)

    token = new_token()
    with immediate(db):
        # success wipes the account's failures; the address keeps the others it made
        db.execute("DELETE FROM login_failures WHERE key = ?", [keys[0]])
        db.execute("DELETE FROM login_failures WHERE id = ?", [pending[1]])
        if hasher.check_needs_rehash(row["password_hash"]):
            db.execute("UPDATE staff SET password_hash = ? WHERE id = ?", [hasher.hash(password), row["id"]])
        if replaces:
            db.execute("DELETE FROM staff_sessions WHERE id = ?", [session_id(replaces)])
        stamp = now()
        db.execute("INSERT INTO staff_sessions (id, staff_id, created_at, last_seen_at, browser)"
                   " VALUES (?, ?, ?, ?, ?)", [session_id(token), row["id"], stamp, stamp,
                                               (browser or None) and browser[:MAX_BROWSER]])
        staff = _public(row)
        audit(db, action="login", staff=staff)
    return LoginResult(staff, False, failures, token)


# --- sessions ------------------------------------------------------------------------------------

def new_token() -> str:
    """A random session token for the cookie (256 bits)."""
    return secrets.token_urlsafe(32)


def session_id(token: str) -> str:
    """The stored id of a session: the SHA-256 of its token."""
    return hashlib.sha256(token.encode()).hexdigest()


def _ago(**delta: float) -> str:
    """The UTC time `delta` ago, as ISO text comparable with now()."""
    return (datetime.now(UTC) - timedelta(**delta)).isoformat(timespec="microseconds")


def load_session(db, token: str | None, *, idle_minutes: float,
                 session_hours: float) -> dict[str, Any] | None:
    """The account (id, email, name, role, centre) behind a cookie token, or None when the session does not
    exist, has been idle too long, has lived too long, or its account is inactive. An expired
    session is deleted. last_seen_at is written at most once a minute, to keep requests cheap."""
    if not token or len(token) > 128:
        return None
    sid = session_id(token)
    row = db.execute(
        "SELECT s.created_at, s.last_seen_at, st.id, st.email, st.name, st.role, st.active, st.centre"
        " FROM staff_sessions s JOIN staff st ON st.id = s.staff_id WHERE s.id = ?", [sid]).fetchone()
    if row is None:
        return None
    created_at, last_seen_at, staff_id, email, name, role, active, centre = row
    if not active or last_seen_at <= _ago(minutes=idle_minutes) or created_at <= _ago(hours=session_hours):
        end_session(db, token)
        return None
    if last_seen_at <= _ago(seconds=LAST_SEEN_EVERY):
        db.execute("UPDATE staff_sessions SET last_seen_at = ? WHERE id = ?", [now(), sid])
    return {"id": staff_id, "email": email, "name": name, "role": role, "centre": centre}


def end_session(db, token: str | None, *, staff: dict | None = None) -> None:
    """Delete a session (logout); with `staff`, record the logout in the audit trail."""
    if not token:
        return
    with immediate(db):
        db.execute("DELETE FROM staff_sessions WHERE id = ?", [session_id(token)])
        if staff:
            audit(db, action="logout", staff=staff)


def purge_expired_sessions(db, *, idle_minutes: float, session_hours: float) -> int:
    """Delete sessions past either timeout; return how many."""
    with immediate(db):
        cursor = db.execute("DELETE FROM staff_sessions WHERE last_seen_at <= ? OR created_at <= ?",
                            [_ago(minutes=idle_minutes), _ago(hours=session_hours)])
    return cursor.rowcount


# --- My account: the member's own password and sessions -------------------------------------------

def change_password(db, staff: dict[str, Any], current: str, new: str, *, keep: str | None,
                    max_failures: int, lock_seconds: float) -> None:
    """A member changes their own password: `current` must be right, `new` must pass check_password.
    Every other session of the account ends (a thief's copied cookie dies with the old password);
    the session whose token is `keep` (the member's own) stays. Audited, never the password.

    AccountError('locked' | 'wrong_password' | 'short_password' | 'long_password'). A wrong
    current password counts as a failed login of the account, counted before the slow check as in
    attempt_login, so that a stolen session cannot guess the password faster than the login form.
    """
    check_password(new)
    key = account_key(staff["email"])
    at = time.time()
    with immediate(db):
        db.lock("login:" + key)
        if _recent(db, key, at - lock_seconds) >= max_failures:
            audit(db, action="password_change_refused", staff=staff)
            locked = True
        else:
            locked = False
            pending = db.execute("INSERT INTO login_failures (key, at) VALUES (?, ?) RETURNING id",
                                 [key, at]).fetchone()[0]
    if locked:
        raise AccountError("locked")
    row = db.execute("SELECT password_hash FROM staff WHERE id = ? AND active = 1", [staff["id"]]).fetchone()
    if not verify_password(row[0] if row else None, current):
        with immediate(db):
            audit(db, action="password_change_refused", staff=staff)
        raise AccountError("wrong_password")
    password_hash = hash_password(new)
    with immediate(db):
        db.execute("DELETE FROM login_failures WHERE id = ?", [pending])
        db.execute("UPDATE staff SET password_hash = ?, password_changed_at = ? WHERE id = ?",
                   [password_hash, now(), staff["id"]])
        db.execute("DELETE FROM staff_sessions WHERE staff_id = ? AND id != ?",
                   [staff["id"], session_id(keep) if keep else ""])
        audit(db, action="password_changed", staff=staff)


def session_handle(key: bytes, sid: str) -> str:
    """How a form names a session: a keyed hash of its id, which says nothing of the id (the page
    must not hand out other sessions' ids) and cannot be made without the app's key."""
    return hmac.new(key, b"staff-session:" + sid.encode(), hashlib.sha256).hexdigest()[:32]


def list_sessions(db, staff_id: int, *, current: str | None, key: bytes, idle_minutes: float,
                  session_hours: float) -> list[dict[str, Any]]:
    """The account's live sessions, the current one first, then the most recently seen: `handle`
    (session_handle), `created_at`, `last_seen_at`, `browser` (family or None) and `current`."""
    own = session_id(current) if current else None
    rows = db.execute(
        "SELECT id, created_at, last_seen_at, browser FROM staff_sessions WHERE staff_id = ?"
        " AND last_seen_at > ? AND created_at > ? ORDER BY last_seen_at DESC, created_at DESC",
        [staff_id, _ago(minutes=idle_minutes), _ago(hours=session_hours)]).fetchall()
    sessions = [{"handle": session_handle(key, sid), "created_at": created_at, "last_seen_at": last_seen_at,
                 "browser": browser, "current": sid == own} for sid, created_at, last_seen_at, browser in rows]
    return sorted(sessions, key=lambda s: not s["current"])


def end_own_session(db, staff: dict[str, Any], handle: str, *, current: str | None, key: bytes) -> bool:
    """End one session of the member's own account, named by its handle; not the current one (that
    is the log out button). False when the account has no such other session (another account's
    sessions are never reached: only this account's rows are looked at)."""
    own = session_id(current) if current else None
    with immediate(db):
        for (sid,) in db.execute("SELECT id FROM staff_sessions WHERE staff_id = ?", [staff["id"]]).fetchall():
            if sid != own and hmac.compare_digest(session_handle(key, sid), handle or ""):
                db.execute("DELETE FROM staff_sessions WHERE id = ? AND staff_id = ?", [sid, staff["id"]])
                audit(db, action="session_ended", staff=staff)
                return True
    return False


def end_other_sessions(db, staff: dict[str, Any], *, current: str | None) -> int:
    """End every session of the member's account but the current one; return how many (audited
    when there were any)."""
    with immediate(db):
        count = db.execute("DELETE FROM staff_sessions WHERE staff_id = ? AND id != ?",
                           [staff["id"], session_id(current) if current else ""]).rowcount
        if count:
            audit(db, action="sessions_ended", staff=staff, detail=str(count))
    return count
