"""A client takes back what they sent (SPEC "A client takes back what they sent").

Every screening stored from the web gets a withdrawal code, shown once on the result beside its
reference and kept only as a keyed hash (HMAC-SHA256 of the reference and the code, with a key
derived from the app's secret: a hash is made on every share, so no slow password hash; 74 bits
of a random code need none). A client who types the reference and the code erases the screening
as staff erasure does (retention._delete: notes and queued notices too; the engine's after_erase
removes the bytes), and the centre's audit trail says "reference R withdrawn by the client",
nothing else. Any other pair is None, whatever was wrong with it; failed pairs are counted per
address and per reference (keyed hashes the web layer makes), inside the transaction that checks
the pair, under db.lock, so the limit holds across app servers.

A reference is never given again: retention._delete keeps the references of erased, purged and
withdrawn screenings in `retired_references`, which store_screening checks when choosing one.
"""
from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from . import db as dbmod
from . import outbox, retention

# Lower case, no 0/o, 1/i/l: read aloud and typed back without doubt. 31 ** 15 is about 2 ** 74.
CODE_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
CODE_LENGTH = 15
CODE_GROUP = 5          # written as three groups of five: "k7qfm-3xabc-9dhe2"
CODE_TYPED_MAX = 40     # what a form accepts as typed (spaces, dashes) before it is refused as too long
KEY_PURPOSE = b"screening.withdrawal-code"

# failed pairs per key and window; a client who mistypes twice is far from either
ADDRESS_LIMIT = 10
REFERENCE_LIMIT = 5
WINDOW = 3600.0          # seconds

ACTION = "withdrawn"     # the audit trail's action; the entry holds the reference and nothing else


def code_bits() -> float:
    """How many bits of chance a code holds (at least 60 by the SPEC)."""
    import math
    return CODE_LENGTH * math.log2(len(CODE_ALPHABET))


def new_code() -> str:
    """A fresh random code, grouped for reading: 'k7qfm-3xabc-9dhe2'."""
    code = dbmod.random_text(CODE_ALPHABET, CODE_LENGTH)
    return "-".join(code[i:i + CODE_GROUP] for i in range(0, CODE_LENGTH, CODE_GROUP))


def normalize_code(text: str) -> str:
    """What a person types ('K7QFM 3XABC 9DHE2') as the code ('k7qfm-3xabc-9dhe2'), or '' when it
    cannot be one (a wrong length, a letter the alphabet leaves out)."""
    letters = "".join(ch for ch in (text or "").lower() if ch not in " -\t")
    if len(letters) != CODE_LENGTH or any(ch not in CODE_ALPHABET for ch in letters):
        return ""
    return "-".join(letters[i:i + CODE_GROUP] for i in range(0, CODE_LENGTH, CODE_GROUP))


def key_from_secret(secret: str | bytes) -> bytes:
    """The key of the codes' hashes, derived from the app's secret for this purpose alone (no other
    keyed hash of the app can be turned into one)."""
    secret = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(secret, KEY_PURPOSE, hashlib.sha256).digest()


def code_hash(key: bytes, reference: str, code: str) -> str:
    """The keyed hash kept for a reference's code: bound to the reference, so a code opens nothing else."""
    message = f"{reference}\0{normalize_code(code)}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


class TooManyAttempts(Exception):
    """Too many wrong pairs from this address or for this reference; nothing was checked."""

    def __init__(self, retry_after: int):
        super().__init__(f"too many withdrawal attempts; retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Withdrawable:
    """What the confirmation page shows of a screening about to be withdrawn: no answers."""

    reference: str
    service: str
    centre: str
    created_at: str


def find(db, *, reference: str, code: str, key: bytes, centre: str | None,
         address_key: str, reference_key: str) -> Withdrawable | None:
    """The screening that `reference` and `code` open (of `centre` when one is named), or None.
    A wrong pair is counted against both keys; over either limit, TooManyAttempts."""
    try:
        with dbmod.immediate(db):
            found = _open(db, reference, code, key, centre, address_key, reference_key)
            return None if found is None else Withdrawable(*found[1:])
    except dbmod.DatabaseError as e:
        raise dbmod.StorageError(str(e)) from e


def withdraw(db, *, reference: str, code: str, key: bytes, centre: str | None,
             address_key: str, reference_key: str,
             notify: Callable[[str], bool] | None = None) -> Withdrawable | None:
    """Erase the screening that `reference` and `code` open, as staff erasure does (notes and queued
    notices with it, its reference retired), record "withdrawn" in its centre's audit trail, then
    make the bytes leave the files. None (and a failure counted) when the pair opens nothing.

    When `notify(centre)` says the centre gets e-mail notices, a 'withdrawn' row is queued in the
    outbox in the same transaction (the reference and the centre, nothing else); the caller wakes
    the sender after this returns."""
    try:
        with dbmod.immediate(db):
            found = _open(db, reference, code, key, centre, address_key, reference_key)
            if found is None:
                return None
            row_id, *shown = found
            retention._delete(db, [row_id])
            dbmod.audit(db, action=ACTION, reference=shown[0], centre=shown[2])
            if notify is not None and notify(shown[2]):
                outbox.queue_withdrawn(db, reference=shown[0], centre=shown[2], at=dbmod.now())
    except dbmod.DatabaseError as e:
        raise dbmod.StorageError(str(e)) from e
    retention.checkpoint(db)
    return Withdrawable(*shown)


def _open(db, reference: str, code: str, key: bytes, centre: str | None, address_key: str,
          reference_key: str) -> tuple | None:
    """Inside the transaction: the limits checked (TooManyAttempts), then the row the pair opens
    (id, reference, service, centre, created_at), or None with the failure counted against both keys."""
    _lock_and_check_limits(db, address_key, reference_key)
    found = _match(db, reference, code, key, centre)
    if found is None:
        _count_failure(db, address_key, reference_key)
    return found


def _lock_and_check_limits(db, address_key: str, reference_key: str) -> None:
    """Inside the transaction: take the keys' locks (always the address first), prune old failures
    and raise TooManyAttempts when either key is at its limit."""
    db.lock("withdraw:" + address_key)
    db.lock("withdraw:" + reference_key)
    at = time.time()
    db.execute("DELETE FROM withdrawal_attempts WHERE at <= ?", [at - WINDOW])
    waits = []
    for key, limit in ((address_key, ADDRESS_LIMIT), (reference_key, REFERENCE_LIMIT)):
        count, oldest = db.execute("SELECT count(*), min(at) FROM withdrawal_attempts WHERE key = ?",
                                   [key]).fetchone()
        if count >= limit:
            waits.append(max(1, int(oldest + WINDOW - at) + 1))
    if waits:
        raise TooManyAttempts(max(waits))


def _count_failure(db, address_key: str, reference_key: str) -> None:
    at = time.time()
    db.execute_many("INSERT INTO withdrawal_attempts (key, at) VALUES (:key, :at)",
                    [{"key": address_key, "at": at}, {"key": reference_key, "at": at}])


def _match(db, reference: str, code: str, key: bytes, centre: str | None) -> tuple | None:
    """(id, reference, service, centre, created_at) of the screening the pair opens, or None."""
    reference, code = dbmod.normalize_reference(reference), normalize_code(code)
    if not reference or not code:
        return None
    row = db.execute("SELECT id, reference, service, centre, created_at, withdrawal_code_hash FROM submissions"
                     " WHERE reference = ?", [reference]).fetchone()
    # the hash is compared even for no row, so that an unknown reference takes as long as a wrong code
    stored = (row[5] if row is not None else None) or ""
    matches = hmac.compare_digest(stored.encode(), code_hash(key, reference, code).encode())
    if row is None or not stored or not matches or (centre is not None and row[3] != centre):
        return None
    return tuple(row[:5])


def recent(db, *, centre: str, days: int = 30, limit: int = 10) -> list[dict]:
    """The centre's withdrawals of the last `days` days, newest first: reference and when."""
    since = (datetime.now(UTC) - timedelta(days=days)).isoformat(timespec="microseconds")
    return list(db.query("SELECT reference, at FROM audit_log WHERE centre = ? AND action = ? AND at >= ?"
                         " ORDER BY at DESC LIMIT ?", [centre, ACTION, since, limit]))


def is_retired(db, reference: str) -> bool:
    """Whether `reference` belonged to a screening that was erased, purged or withdrawn."""
    return db.execute("SELECT 1 FROM retired_references WHERE reference = ?", [reference]).fetchone() is not None
