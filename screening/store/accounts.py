"""Staff accounts, server-side staff sessions and login throttling: the storage and its rules.

No Flask here (the CLI and the views both call it). Why it is built this way (RELIABILITY.md 11-13):
- passwords are hashed with argon2id, capped in length before hashing, rehashed when the
  hasher's parameters change;
- a session cookie carries only a random token; the table keeps its SHA-256, so a copy of the
  database does not hand out live sessions, and deleting the row ends the session everywhere;
- failed logins are rows counted inside BEGIN IMMEDIATE (and lock() per key on PostgreSQL), so
  every worker and server sees the same count; an attempt is counted *before* the password is
  checked, so parallel guesses cannot slip past the limit while a slow hash runs;
- a browser that has logged in to an account is judged on its own failures only, so strangers'
  guesses cannot keep the member out (see "logging in").
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

from .db import INSTALLATION, IntegrityError, audit, immediate, now

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
        db.execute("DELETE FROM login_failures WHERE key = ?", [account_key(row["id"])])
    return get_staff(db, row["id"])


# --- logging in ----------------------------------------------------------------------------------
# OWASP's "device cookie" pattern. A browser that has logged in to an account carries a signed
# cookie naming the account and a random device token (login_devices keeps its SHA-256; a revoked
# row makes it unknown again). A known browser is judged on its own failures only ("device:<id>"):
# the right password from it gets in whatever strangers did. Any other browser is judged per
# account ("account:<id>", or "email:<keyed hash>" for an e-mail nobody has) and per address
# ("ip:<address>"). Each key may fail `max_failures` times; after that every further attempt is
# refused, without checking the password, until a deadline: FIRST_DELAY after the last failure,
# doubling with each failure after that, capped at `lock_seconds`. A refusal is counted nowhere,
# so it never moves the deadline; failures are forgotten after forget_seconds() without one.

FIRST_DELAY = 60.0          # seconds refused after the max_failures-th failure; doubles per failure after
FORGET_SECONDS = 24 * 3600  # a key's failures are forgotten after this long (at least) without one
AUDIT_WINDOW = 3600         # seconds: refused logins of one kind and account are one audit entry per hour
MAX_DEVICES = 10            # account/device pairs one browser's cookie remembers (a shared reception PC)


def account_key(staff_id: int) -> str:
    """The throttle key of an existing account, for browsers that are not known to it."""
    return f"account:{staff_id}"


def keyed_hash(secret: str | bytes, text: str) -> str:
    """A short keyed hash of what was typed as an e-mail for no account: the same text gives the
    same hash (so repeated guesses are counted and grouped) but the text cannot be read back."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, b"login-email:" + text.encode(), hashlib.sha256).hexdigest()[:24]


def email_key(secret: str | bytes, email: str) -> str:
    """The throttle key of an e-mail nobody has (guessing those is throttled like accounts)."""
    return "email:" + keyed_hash(secret, normalize_email(email)[:MAX_EMAIL])


def address_key(remote_addr: str | None) -> str:
    """The throttle key of a client address."""
    return "ip:" + (remote_addr or "unknown")


def device_key(device_id: int) -> str:
    """The throttle key of a browser known to an account."""
    return f"device:{device_id}"


def forget_seconds(max_failures: int, lock_seconds: float) -> float:
    """How long a key's failures are kept: long enough that a key refused for the longest time
    still has more than max_failures failures when it may try again (else the free tries would
    come back after every long refusal)."""
    return max(FORGET_SECONDS, lock_seconds * (max_failures + 2))


def refusal_delay(failures: int, *, max_failures: int, lock_seconds: float) -> float:
    """How long after its last failure a key with `failures` recent failures is refused: 0 below
    max_failures, then FIRST_DELAY doubling per failure, capped at lock_seconds."""
    if failures < max_failures:
        return 0.0
    return min(FIRST_DELAY * 2.0 ** min(failures - max_failures, 40), lock_seconds)


@dataclass(frozen=True)
class LoginResult:
    """What a login attempt gave: the account (None when refused), whether it was refused without
    checking the password, and how many recent failures counted against it before this attempt.
    `retry_after`: seconds until a refused browser may try again. `kind`: which throttle refused
    ('device', 'account' or 'address'). On success, `token` is the new session's and `device` the
    browser's device token (new, or the one it came with) for the device cookie."""
    staff: dict[str, Any] | None
    locked: bool
    failures: int
    token: str | None = None
    retry_after: float = 0.0
    kind: str | None = None
    device: str | None = None
    pending: bool = False       # the password was right; the second factor is still to come


def _throttled(db, key: str, at: float, *, max_failures: int, lock_seconds: float) -> tuple[int, float]:
    """A key's failures not yet forgotten at `at`, and how many seconds it is still refused (<= 0:
    not refused): refusal_delay after its last failure."""
    count, last = db.execute("SELECT count(*), max(at) FROM login_failures WHERE key = ? AND at > ?",
                             [key, at - forget_seconds(max_failures, lock_seconds)]).fetchone()
    return count, (last or 0.0) + refusal_delay(count, max_failures=max_failures, lock_seconds=lock_seconds) - at


def _device(db, staff_id: int, device_token: str | None) -> int | None:
    """The id of the browser's device row for this account, or None when it is not known to it
    (no token, another account's, or revoked)."""
    if not device_token or len(device_token) > 128:
        return None
    row = db.execute("SELECT id FROM login_devices WHERE token_hash = ? AND staff_id = ? AND revoked_at IS NULL",
                     [session_id(device_token), staff_id]).fetchone()
    return row[0] if row else None


REFUSED_ACTIONS = {"account": "login_locked", "address": "login_address_locked", "device": "login_device_locked"}


def audit_refusal(db, *, action: str, detail: str, centre: str | None) -> None:
    """One audit entry per action, detail and centre per AUDIT_WINDOW, with a count (`times`), so
    that a script hammering the form cannot push the real entries off the audit pages."""
    centre = centre or INSTALLATION
    db.lock(f"audit:{action}:{centre}:{detail}")
    since = (datetime.now(UTC) - timedelta(seconds=AUDIT_WINDOW)).isoformat(timespec="microseconds")
    row = db.execute("SELECT id FROM audit_log WHERE centre = ? AND at > ? AND action = ? AND detail = ?"
                     " AND staff_id IS NULL ORDER BY id DESC LIMIT 1", [centre, since, action, detail]).fetchone()
    if row:
        db.execute("UPDATE audit_log SET times = times + 1 WHERE id = ?", [row[0]])
    else:
        audit(db, action=action, detail=detail, centre=centre)


def login_keys(db, staff_id: int | None, device_token: str | None, remote_addr: str | None, *,
               unknown: str | None = None) -> tuple[int | None, dict[str, str]]:
    """What judges a login step: the browser's device row id for the account (None when it is not
    known to it) and the throttle keys, {"device": ...} for a known browser, else {"account": ...,
    "address": ...}. `unknown`: the key standing for an e-mail nobody has (staff_id None)."""
    device_id = _device(db, staff_id, device_token) if staff_id is not None else None
    if device_id is not None:
        return device_id, {"device": device_key(device_id)}
    return None, {"account": account_key(staff_id) if staff_id is not None else unknown,
                  "address": address_key(remote_addr)}


def count_attempt(db, keys: dict[str, str], *, max_failures: int, lock_seconds: float, shown: str,
                  centre: str | None, refused_actions: dict[str, str] | None = None
                  ) -> tuple[tuple[str, float] | None, int, dict[str, int]]:
    """Count one attempt (a password or a second-factor code) against `keys`, before it is checked:
    (refused, failures, pending). `refused` is (kind, seconds) when a key is still refused (the
    attempt is then counted nowhere, and audited once an hour as refused_actions[kind]); else
    `pending` holds the failure row inserted per key kind, to take back when the attempt succeeds.
    One count at a time per key, across app servers (lock('login:<key>'))."""
    refused: tuple[str, float] | None = None
    failures, pending = 0, {}
    with immediate(db):
        for key in keys.values():
            db.lock("login:" + key)
        at = time.time()            # after the locks: no failure counted before is later than this
        db.execute("DELETE FROM login_failures WHERE at <= ?", [at - forget_seconds(max_failures, lock_seconds)])
        for kind, key in keys.items():
            count, wait = _throttled(db, key, at, max_failures=max_failures, lock_seconds=lock_seconds)
            failures = max(failures, count)
            if wait > 0 and (refused is None or wait > refused[1]):
                refused = (kind, wait)
        if refused:
            audit_refusal(db, action=(refused_actions or REFUSED_ACTIONS)[refused[0]], detail=shown, centre=centre)
        else:
            pending = {kind: db.execute("INSERT INTO login_failures (key, at) VALUES (?, ?) RETURNING id",
                                        [key, at]).fetchone()[0] for kind, key in keys.items()}
    return refused, failures, pending


def forgive_attempt(db, keys: dict[str, str], pending: dict[str, int]) -> None:
    """Inside a transaction, after a login is complete: wipe the failures of what judged it (the
    account's, or this known browser's: a member's login does not hand strangers fresh tries) and
    take back this attempt's own failure on the address, which keeps the others it made."""
    db.execute("DELETE FROM login_failures WHERE key = ?", [keys.get("device") or keys["account"]])
    if "address" in pending:
        db.execute("DELETE FROM login_failures WHERE id = ?", [pending["address"]])


def remember_device(db, staff_id: int, device_id: int | None, device_token: str | None, stamp: str) -> str:
    """Inside a transaction, after a login is complete: the browser's device token, a new one
    (stored hashed) when the browser was not known to the account."""
    if device_id is None:
        device = new_token()
        db.execute("INSERT INTO login_devices (staff_id, token_hash, created_at, last_login_at)"
                   " VALUES (?, ?, ?, ?)", [staff_id, session_id(device), stamp, stamp])
        return device
    db.execute("UPDATE login_devices SET last_login_at = ? WHERE id = ?", [stamp, device_id])
    return device_token


def attempt_login(db, email: str, password: str, remote_addr: str | None, *,
                  max_failures: int, lock_seconds: float, secret: str | bytes,
                  devices: dict[int, str] | None = None, replaces: str | None = None,
                  browser: str | None = None) -> LoginResult:
    """Check a login; on success start a new session (its token is in the result).

    Unknown email, wrong password and inactive account are refused alike and cost one argon2
    check each. `devices`: the account ids and device tokens of the browser's device cookie
    (already checked as signed by the web layer); the one for this account, when it is live, makes
    this a known browser, judged on its own failures only. The attempt is recorded as a failure
    for each key that judges it before the password is checked, and taken back when it succeeds,
    so N workers still allow `max_failures` tries in all; over that, even the right password is
    refused until the deadline (refusal_delay after the last failure). What was typed as an e-mail
    for no account is kept only as a keyed hash (`secret`), in the throttle table and the audit.
    `replaces` is the token of a session the browser already had: it is ended (fixation).
    `browser` is the browser family the session is shown with on My account ("Firefox/Android").

    When the account has a second factor, the right password starts a *pending* session only
    (`pending` in the result): it opens no staff page until the code step
    (second_factor.attempt_code) turns it into a full one. The password attempt is then taken
    back but the earlier failures stay, so that the code step is judged on them too (knowing the
    password does not buy fresh guesses at the code), and the browser becomes known only then.
    """
    email = normalize_email(email)[:MAX_EMAIL]
    row = _find(db, email)
    device_id, keys = login_keys(db, row["id"] if row else None, (devices or {}).get(row["id"]) if row else None,
                                 remote_addr, unknown=email_key(secret, email))
    # what the audit names: an account's e-mail, or only a keyed hash of what was typed
    shown = row["email"] if row else "#" + keyed_hash(secret, email)[:12]
    centre = row["centre"] if row else None
    refused, failures, pending = count_attempt(db, keys, max_failures=max_failures, lock_seconds=lock_seconds,
                                               shown=shown, centre=centre)
    if refused:
        verify_password(None, password)     # the same cost as any other refusal
        return LoginResult(None, True, failures, retry_after=refused[1], kind=refused[0])

    ok = verify_password(row["password_hash"] if row else None, password) and bool(row and row["active"])
    if not ok:
        with immediate(db):
            # in the trail of the account's centre; an e-mail nobody has belongs to no centre
            audit_refusal(db, action="login_failed", detail=shown, centre=centre)
        return LoginResult(None, False, failures)

    token = new_token()
    staff = _public(row)
    with immediate(db):
        stamp = now()
        second = db.execute("SELECT totp_secret IS NOT NULL FROM staff WHERE id = ?", [row["id"]]).fetchone()[0]
        if hasher.check_needs_rehash(row["password_hash"]):
            db.execute("UPDATE staff SET password_hash = ? WHERE id = ?", [hasher.hash(password), row["id"]])
        if replaces:
            db.execute("DELETE FROM staff_sessions WHERE id = ?", [session_id(replaces)])
        if second:
            for failure in pending.values():
                db.execute("DELETE FROM login_failures WHERE id = ?", [failure])
            db.execute("INSERT INTO staff_sessions (id, staff_id, created_at, last_seen_at, browser, pending)"
                       " VALUES (?, ?, ?, ?, ?, 1)", [session_id(token), row["id"], stamp, stamp,
                                                      (browser or None) and browser[:MAX_BROWSER]])
            return LoginResult(staff, False, failures, token, pending=True)
        forgive_attempt(db, keys, pending)
        device = remember_device(db, row["id"], device_id, (devices or {}).get(row["id"]), stamp)
        db.execute("INSERT INTO staff_sessions (id, staff_id, created_at, last_seen_at, browser)"
                   " VALUES (?, ?, ?, ?, ?)", [session_id(token), row["id"], stamp, stamp,
                                               (browser or None) and browser[:MAX_BROWSER]])
        db.execute("UPDATE staff SET last_login_at = ? WHERE id = ?", [stamp, row["id"]])
        audit(db, action="login", staff=staff)
    return LoginResult(staff, False, failures, token, device=device)


def lift_throttle(db, staff_id: int) -> int:
    """End every throttle of an account (unknown browsers' and each of its browsers'); return how
    many failures were forgotten. The address throttle is not the account's to lift."""
    with immediate(db):
        keys = [account_key(staff_id)] + [device_key(d) for (d,) in db.execute(
            "SELECT id FROM login_devices WHERE staff_id = ?", [staff_id]).fetchall()]
        return sum(db.execute("DELETE FROM login_failures WHERE key = ?", [key]).rowcount for key in keys)


def revoke_devices(db, staff_id: int) -> int:
    """Make every browser known to an account unknown again (a lost or shared computer); return how many."""
    with immediate(db):
        return db.execute("UPDATE login_devices SET revoked_at = ? WHERE staff_id = ? AND revoked_at IS NULL",
                          [now(), staff_id]).rowcount


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
    """The account (id, email, name, role, centre, second_factor: whether one is set) behind a
    cookie token, or None when the session does not exist, is pending (the second factor is still
    to come: second_factor.pending_staff reads those), has been idle too long, has lived too long,
    or its account is inactive. An expired session is deleted. last_seen_at is written at most
    once a minute, to keep requests cheap."""
    if not token or len(token) > 128:
        return None
    sid = session_id(token)
    row = db.execute(
        "SELECT s.created_at, s.last_seen_at, st.id, st.email, st.name, st.role, st.active, st.centre,"
        " st.totp_secret IS NOT NULL FROM staff_sessions s JOIN staff st ON st.id = s.staff_id"
        " WHERE s.id = ? AND s.pending = 0", [sid]).fetchone()
    if row is None:
        return None
    created_at, last_seen_at, staff_id, email, name, role, active, centre, second_factor = row
    if not active or last_seen_at <= _ago(minutes=idle_minutes) or created_at <= _ago(hours=session_hours):
        end_session(db, token)
        return None
    if last_seen_at <= _ago(seconds=LAST_SEEN_EVERY):
        db.execute("UPDATE staff_sessions SET last_seen_at = ? WHERE id = ?", [now(), sid])
    return {"id": staff_id, "email": email, "name": name, "role": role, "centre": centre,
            "second_factor": bool(second_factor)}


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
    key = account_key(staff["id"])
    with immediate(db):
        db.lock("login:" + key)
        at = time.time()
        if _throttled(db, key, at, max_failures=max_failures, lock_seconds=lock_seconds)[1] > 0:
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


def staff_handle(key: bytes, staff_id: int) -> str:
    """How URLs and forms name an account (/staff/team/<handle>, the audit page's filter): a keyed
    hash of its id, which says nothing of how many accounts other centres have, and cannot be made
    without the app's key. Look an account up by handle among its centre's accounts only."""
    return hmac.new(key, b"staff-account:" + str(staff_id).encode(), hashlib.sha256).hexdigest()[:16]


def list_sessions(db, staff_id: int, *, current: str | None, key: bytes, idle_minutes: float,
                  session_hours: float) -> list[dict[str, Any]]:
    """The account's live sessions, the current one first, then the most recently seen: `handle`
    (session_handle), `created_at`, `last_seen_at`, `browser` (family or None) and `current`."""
    own = session_id(current) if current else None
    rows = db.execute(
        "SELECT id, created_at, last_seen_at, browser FROM staff_sessions WHERE staff_id = ? AND pending = 0"
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
