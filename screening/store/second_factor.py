"""The staff second factor (TOTP, an authenticator app) and its recovery codes: the storage and its rules.

No Flask here (the views pass the key in: derive_key of the app's SECRET_KEY). Why it is built this way:
- the TOTP secret is stored encrypted (Fernet: AES-128-CBC with HMAC-SHA256) with a key derived
  from the app's secret by HKDF-SHA256 under a label of its own: a copy of the database alone
  gives no one the codes; another secret key cannot read it (every member then sets up again);
- a code is accepted once: staff.totp_last_step keeps the time step of the last code accepted, and
  the next one must be later, written by a conditional UPDATE whose row count says who won, so
  two app servers given the same code at once accept it once;
- recovery codes are random (10 characters of a 31-letter alphabet: about 50 bits), so a keyed
  hash (HMAC-SHA256) is enough to keep them: no slow hash needed; each is used once, by the same
  kind of conditional UPDATE;
- the secret being set up is not stored until a code from it is confirmed: the set-up form carries
  it encrypted by the same key (a Fernet token, which also says when it was made), never in a URL.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import pyotp
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from . import accounts
from .db import audit, immediate, now

RECOVERY_CODES = 10
RECOVERY_LENGTH = 10
# no 0/o, 1/l/i: a code is read off paper and typed back
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
SETUP_SECONDS = 30 * 60       # a set-up form older than this must be started again
PENDING_MINUTES = 5           # the code step must follow the password within this
ISSUER = "Screening"
CODE_ACTIONS = {kind: "login_code_locked" for kind in ("device", "account", "address")}


def derive_key(secret_key: str | bytes) -> bytes:
    """The second factor's key, derived from the app's SECRET_KEY (HKDF-SHA256, a label of its own):
    the same on every app server, useless for anything else."""
    raw = secret_key.encode() if isinstance(secret_key, str) else secret_key
    return _hkdf(raw, b"screening staff second factor")


def _hkdf(key: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(key)


def _fernet(key: bytes) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(_hkdf(key, b"totp secret")))


def _recovery_hash(key: bytes, staff_id: int, code: str) -> str:
    """The stored form of a recovery code: a keyed hash, bound to its account."""
    return hmac.new(_hkdf(key, b"recovery codes"), f"{staff_id}:{code}".encode(), hashlib.sha256).hexdigest()


def normalize(code: str | None) -> str:
    """A typed code without spaces or dashes, lower-cased (recovery codes are shown `abcde-fghij`)."""
    return re.sub(r"[\s\-]", "", code or "").lower()[:64]


def group(text: str, size: int) -> str:
    """`text` in groups of `size` separated by spaces (a key) or a dash (a recovery code, size 5)."""
    parts = [text[i:i + size] for i in range(0, len(text), size)]
    return ("-" if size == 5 else " ").join(parts)


# --- setting up ----------------------------------------------------------------------------------

def begin(key: bytes) -> tuple[str, str]:
    """A new secret for an authenticator app, and the set-up form's hidden value carrying it
    (encrypted and dated: `read_setup` gives it back within SETUP_SECONDS)."""
    secret = pyotp.random_base32()
    return secret, _fernet(key).encrypt(secret.encode()).decode()


def read_setup(key: bytes, carried: str | None) -> str | None:
    """The secret a set-up form carried, or None (tampered, another key, older than SETUP_SECONDS)."""
    if not carried or len(carried) > 500:
        return None
    try:
        return _fernet(key).decrypt(carried.encode(), ttl=SETUP_SECONDS).decode()
    except (InvalidToken, ValueError, UnicodeError):
        return None


def provisioning_uri(secret: str, email: str, issuer: str = ISSUER) -> str:
    """The otpauth:// URI an authenticator app scans (the QR code's content)."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer)


def _matching_step(secret: str, code: str, at: float | None = None) -> int | None:
    """The time step (previous, current or next: clocks drift) whose code `code` is, or None."""
    if not re.fullmatch(r"\d{6}", code):
        return None
    totp = pyotp.TOTP(secret)
    step = totp.timecode(time.time() if at is None else at)
    found = None
    for candidate in (step - 1, step, step + 1):      # all three compared: no timing hint
        if hmac.compare_digest(totp.generate_otp(candidate), code):
            found = candidate
    return found


def matches(secret: str, code: str | None) -> bool:
    """Whether `code` is a code of `secret` now (for a set-up, before anything else is checked)."""
    return _matching_step(secret, normalize(code)) is not None


def _new_codes() -> list[str]:
    return ["".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_LENGTH))
            for _ in range(RECOVERY_CODES)]


def _store_codes(db, staff_id: int, key: bytes, stamp: str) -> list[str]:
    """Inside a transaction: replace the account's recovery codes by new ones; return them grouped."""
    codes = _new_codes()
    db.execute("DELETE FROM recovery_codes WHERE staff_id = ?", [staff_id])
    for code in codes:
        db.execute("INSERT INTO recovery_codes (staff_id, code_hash, created_at) VALUES (?, ?, ?)",
                   [staff_id, _recovery_hash(key, staff_id, code), stamp])
    return [group(code, 5) for code in codes]


def enable(db, staff: dict[str, Any], secret: str, key: bytes, *, step: int | None = None) -> list[str]:
    """Make `secret` the account's second factor (replacing any before, and its recovery codes);
    return the new recovery codes, the only time they exist in clear. `step`: the time step of
    the code that confirmed it, which may not be used again. Audited as second_factor_set."""
    with immediate(db):
        stamp = now()
        db.execute("UPDATE staff SET totp_secret = ?, totp_set_at = ?, totp_last_step = ? WHERE id = ?",
                   [_fernet(key).encrypt(secret.encode()).decode(), stamp, step, staff["id"]])
        codes = _store_codes(db, staff["id"], key, stamp)
        audit(db, action="second_factor_set", staff=staff)
    return codes


def confirm(db, staff: dict[str, Any], secret: str, code: str, key: bytes) -> list[str] | None:
    """Set up the second factor when `code` is the current code of `secret` (the member's app has
    it): the recovery codes, else None."""
    step = _matching_step(secret, normalize(code))
    if step is None:
        return None
    return enable(db, staff, secret, key, step=step)


# --- using it ------------------------------------------------------------------------------------

def has_second_factor(db, staff_id: int) -> bool:
    """Whether the account has a second factor set."""
    row = db.execute("SELECT totp_secret IS NOT NULL FROM staff WHERE id = ?", [staff_id]).fetchone()
    return bool(row and row[0])


def status(db, staff_id: int) -> dict[str, Any]:
    """What My account shows: `set_at` (None when not set) and how many recovery codes are left."""
    row = db.execute("SELECT totp_set_at FROM staff WHERE id = ? AND totp_secret IS NOT NULL", [staff_id]).fetchone()
    left = db.execute("SELECT count(*) FROM recovery_codes WHERE staff_id = ? AND used_at IS NULL",
                      [staff_id]).fetchone()[0]
    return {"set_at": row[0] if row else None, "recovery_left": left if row else 0}


def _secret(db, staff_id: int, key: bytes) -> tuple[str | None, int | None]:
    """The account's TOTP secret in clear and its last accepted step; (None, None) when none is set
    or it cannot be read with this key (the app's secret key changed)."""
    row = db.execute("SELECT totp_secret, totp_last_step FROM staff WHERE id = ?", [staff_id]).fetchone()
    if not row or not row[0]:
        return None, None
    try:
        return _fernet(key).decrypt(row[0].encode()).decode(), row[1]
    except (InvalidToken, ValueError, UnicodeError):
        return None, None


def verify(db, staff_id: int, code: str | None, key: bytes) -> str | None:
    """Check a typed code: 'totp' (a code of the app, of a later time step than the last one
    accepted), 'recovery' (an unused recovery code, now used: audited with how many remain), or
    None. Each code is accepted once, across app servers: the conditional UPDATE's row count decides."""
    typed = normalize(code)
    secret, _last = _secret(db, staff_id, key)
    if secret is None:
        return None
    step = _matching_step(secret, typed)
    if step is not None:
        with immediate(db):
            won = db.execute("UPDATE staff SET totp_last_step = ? WHERE id = ? AND totp_secret IS NOT NULL"
                             " AND (totp_last_step IS NULL OR totp_last_step < ?)", [step, staff_id, step]).rowcount
        return "totp" if won == 1 else None
    if len(typed) != RECOVERY_LENGTH or any(ch not in RECOVERY_ALPHABET for ch in typed):
        return None
    with immediate(db):
        used = db.execute("UPDATE recovery_codes SET used_at = ? WHERE staff_id = ? AND code_hash = ?"
                          " AND used_at IS NULL", [now(), staff_id, _recovery_hash(key, staff_id, typed)]).rowcount
        if used != 1:
            return None
        left = db.execute("SELECT count(*) FROM recovery_codes WHERE staff_id = ? AND used_at IS NULL",
                          [staff_id]).fetchone()[0]
        audit(db, action="recovery_code_used", staff=accounts.get_staff(db, staff_id), detail=str(left))
    return "recovery"


def check_current(db, staff: dict[str, Any], code: str | None, key: bytes, *, max_failures: int,
                  lock_seconds: float) -> tuple[bool, float]:
    """Before a change to the second factor (new recovery codes, setting it up again): whether
    `code` is a current code of the account's app or an unused recovery code (then used), and
    how long the account is still refused (0.0 when not). A wrong code counts as a failed login of
    the account (as a wrong current password does on My account), so that a stolen session
    cannot guess codes faster than the login form."""
    keys = {"account": accounts.account_key(staff["id"])}
    refused, _failures, pending = accounts.count_attempt(
        db, keys, max_failures=max_failures, lock_seconds=lock_seconds, shown=staff["email"],
        centre=staff["centre"], refused_actions=CODE_ACTIONS)
    if refused:
        return False, refused[1]
    if verify(db, staff["id"], code, key) is None:
        return False, 0.0
    with immediate(db):
        accounts.forgive_attempt(db, keys, pending)
    return True, 0.0


def new_recovery_codes(db, staff: dict[str, Any], code: str, key: bytes, *, max_failures: int,
                       lock_seconds: float) -> tuple[list[str] | None, float]:
    """New recovery codes in place of the old ones, when `code` passes check_current: (codes, 0);
    else (None, 0), or (None, seconds) while the account is refused."""
    ok, wait = check_current(db, staff, code, key, max_failures=max_failures, lock_seconds=lock_seconds)
    if not ok:
        return None, wait
    with immediate(db):
        codes = _store_codes(db, staff["id"], key, now())
        audit(db, action="second_factor_set", staff=staff, detail="recovery codes")
    return codes, 0.0


# --- the login's code step -------------------------------------------------------------------------

def pending_staff(db, token: str | None, *, minutes: float = PENDING_MINUTES) -> dict[str, Any] | None:
    """The account behind a pending session (the password was right, the code is to come), or None
    when there is none, it is older than `minutes` or the account is inactive."""
    if not token or len(token) > 128:
        return None
    row = db.execute("SELECT st.id FROM staff_sessions s JOIN staff st ON st.id = s.staff_id"
                     " WHERE s.id = ? AND s.pending = 1 AND s.created_at > ? AND st.active = 1",
                     [accounts.session_id(token), accounts._ago(minutes=minutes)]).fetchone()
    return accounts.get_staff(db, row[0]) if row else None


@dataclass(frozen=True)
class CodeResult:
    """What a code step gave: the account on success (then `token`, the new full session's, and
    `device`, for the device cookie); `expired` when there was no pending session to complete;
    `locked` with `retry_after` when this browser is refused for a while."""
    staff: dict[str, Any] | None
    expired: bool = False
    locked: bool = False
    retry_after: float = 0.0
    token: str | None = None
    device: str | None = None
    kind: str | None = None        # 'totp' or 'recovery'


def attempt_code(db, token: str | None, code: str | None, remote_addr: str | None, *, key: bytes,
                 max_failures: int, lock_seconds: float, devices: dict[int, str] | None = None,
                 minutes: float = PENDING_MINUTES) -> CodeResult:
    """The login's second step: the pending session of `token` becomes a full one under a new token
    (no fixation) when `code` is right. Throttled as the password is (accounts.count_attempt, the
    same keys: a known browser on its own failures, else the account and the address): a wrong
    code is a failed login, audited once an hour with a count (login_code_failed)."""
    staff = pending_staff(db, token, minutes=minutes)
    if staff is None:
        return CodeResult(None, expired=True)
    device_token = (devices or {}).get(staff["id"])
    device_id, keys = accounts.login_keys(db, staff["id"], device_token, remote_addr)
    refused, _failures, pending = accounts.count_attempt(
        db, keys, max_failures=max_failures, lock_seconds=lock_seconds, shown=staff["email"],
        centre=staff["centre"], refused_actions=CODE_ACTIONS)
    if refused:
        return CodeResult(None, locked=True, retry_after=refused[1])
    kind = verify(db, staff["id"], code, key)
    if kind is None:
        with immediate(db):
            accounts.audit_refusal(db, action="login_code_failed", detail=staff["email"], centre=staff["centre"])
        return CodeResult(None)
    new = accounts.new_token()
    with immediate(db):
        stamp = now()
        browser = db.execute("SELECT browser FROM staff_sessions WHERE id = ?",
                             [accounts.session_id(token)]).fetchone()
        if db.execute("DELETE FROM staff_sessions WHERE id = ? AND pending = 1",
                      [accounts.session_id(token)]).rowcount != 1:
            return CodeResult(None, expired=True)      # another request completed it first: nothing written
        accounts.forgive_attempt(db, keys, pending)
        device = accounts.remember_device(db, staff["id"], device_id, device_token, stamp)
        db.execute("INSERT INTO staff_sessions (id, staff_id, created_at, last_seen_at, browser)"
                   " VALUES (?, ?, ?, ?, ?)", [accounts.session_id(new), staff["id"], stamp, stamp,
                                               browser[0] if browser else None])
        db.execute("UPDATE staff SET last_login_at = ? WHERE id = ?", [stamp, staff["id"]])
        audit(db, action="login", staff=staff)
    return CodeResult(staff, token=new, device=device, kind=kind)
