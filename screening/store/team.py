"""The team page's storage: a centre's accounts as its admin sees and changes them.

No Flask here. Every function takes the centre (the admin's own) and reaches only that centre's
accounts, so another centre's account is "no such account", exactly like an unknown one. An
account is named outside by accounts.staff_handle (a keyed hash of its id), never by its id.

The last active admin of a centre can be neither deactivated nor demoted (also not by
themselves): the count and the change are one transaction under lock('admins:<centre>'), so two
admins demoting each other at the same moment on two app servers cannot both succeed
(sql.GUARANTEES). The acting admin is checked again inside it: an admin demoted or deactivated a
moment ago can change nothing more.
"""
from __future__ import annotations

import hmac
import time
from typing import Any

from . import accounts
from .db import audit, immediate

MEMBER_COLUMNS = ("id", "email", "name", "role", "active", "created_at", "last_login_at", "second_factor", "centre")


class TeamError(ValueError):
    """A change the team page refuses; `code`: 'last_admin' (the centre would have no active
    admin), 'not_admin' (the acting account is no longer an active admin of the centre),
    'bad_role'."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def throttled_for(db, staff_id: int, *, max_failures: int, lock_seconds: float, at: float | None = None) -> float:
    """How many more seconds logins to the account are refused from unknown browsers or from one of
    its known browsers (the longest of them; <= 0: none is): the login's own rule
    (accounts._throttled) on 'account:<id>' and each 'device:<id>' of the account."""
    at = time.time() if at is None else at
    keys = [accounts.account_key(staff_id)] + [accounts.device_key(d) for (d,) in db.execute(
        "SELECT id FROM login_devices WHERE staff_id = ? AND revoked_at IS NULL", [staff_id]).fetchall()]
    return max(accounts._throttled(db, key, at, max_failures=max_failures, lock_seconds=lock_seconds)[1]
               for key in keys)


def members(db, centre: str, *, key: bytes, max_failures: int, lock_seconds: float) -> list[dict[str, Any]]:
    """The centre's accounts by name then e-mail, each with its `handle`, `second_factor` (a TOTP
    secret is set) and `throttled` (seconds still refused, 0 when not)."""
    rows = db.execute("SELECT id, email, name, role, active, created_at, last_login_at,"
                      " CASE WHEN totp_secret IS NULL THEN 0 ELSE 1 END, centre FROM staff WHERE centre = ?"
                      " ORDER BY active DESC, lower(coalesce(name, email)), email", [centre]).fetchall()
    at = time.time()
    found = []
    for row in rows:
        member = dict(zip(MEMBER_COLUMNS, row, strict=True))
        member["handle"] = accounts.staff_handle(key, member["id"])
        member["second_factor"] = bool(member["second_factor"])
        member["throttled"] = max(0.0, throttled_for(db, member["id"], max_failures=max_failures,
                                                     lock_seconds=lock_seconds, at=at))
        found.append(member)
    return found


def find_member(db, centre: str, handle: str, *, key: bytes) -> dict[str, Any] | None:
    """One account of `centre` named by its handle, or None (another centre's and an unknown
    handle alike)."""
    if not handle or len(handle) > 64:
        return None
    for (staff_id,) in db.execute("SELECT id FROM staff WHERE centre = ?", [centre]).fetchall():
        if hmac.compare_digest(accounts.staff_handle(key, staff_id), handle):
            return accounts.get_staff(db, staff_id)
    return None


def _check_admin(db, admin: dict[str, Any]) -> None:
    """Inside the transaction: the acting account is still an active admin of its centre."""
    row = db.execute("SELECT role, active, centre FROM staff WHERE id = ?", [admin["id"]]).fetchone()
    if row is None or row[0] != "admin" or not row[1] or row[2] != admin["centre"]:
        raise TeamError("not_admin")


def _would_leave_no_admin(db, centre: str, target_id: int) -> bool:
    """Whether the centre would have no active admin without `target_id`'s admin role."""
    others = db.execute("SELECT count(*) FROM staff WHERE centre = ? AND role = 'admin' AND active = 1 AND id != ?",
                        [centre, target_id]).fetchone()[0]
    return others == 0


def _target(db, centre: str, staff_id: int) -> dict[str, Any]:
    row = db.execute("SELECT role, active, email FROM staff WHERE id = ? AND centre = ?", [staff_id, centre]).fetchone()
    if row is None:
        raise LookupError(staff_id)
    return {"role": row[0], "active": row[1], "email": row[2]}


def change_role(db, *, admin: dict[str, Any], staff_id: int, role: str) -> bool:
    """Give an account of the admin's centre the role `role`; False when it already has it.
    TeamError('bad_role' | 'last_admin' | 'not_admin'). Audited `role_changed` (`email:role`)."""
    if role not in accounts.ROLES:
        raise TeamError("bad_role")
    centre = admin["centre"]
    with immediate(db):
        db.lock("admins:" + centre)
        _check_admin(db, admin)
        target = _target(db, centre, staff_id)
        if target["role"] == role:
            return False
        if target["role"] == "admin" and target["active"] and _would_leave_no_admin(db, centre, staff_id):
            raise TeamError("last_admin")
        db.execute("UPDATE staff SET role = ? WHERE id = ? AND centre = ?", [role, staff_id, centre])
        audit(db, action="role_changed", staff=admin, detail=f"{target['email']}:{role}")
    return True


def set_active(db, *, admin: dict[str, Any], staff_id: int, active: bool) -> bool:
    """Deactivate (every session of the account ends at once) or reactivate an account of the
    admin's centre; False when it already was. TeamError('last_admin' | 'not_admin').
    Audited `staff_deactivated` / `staff_reactivated`."""
    centre = admin["centre"]
    with immediate(db):
        db.lock("admins:" + centre)
        _check_admin(db, admin)
        target = _target(db, centre, staff_id)
        if bool(target["active"]) == active:
            return False
        if not active and target["role"] == "admin" and _would_leave_no_admin(db, centre, staff_id):
            raise TeamError("last_admin")
        db.execute("UPDATE staff SET active = ? WHERE id = ? AND centre = ?", [1 if active else 0, staff_id, centre])
        if not active:
            db.execute("DELETE FROM staff_sessions WHERE staff_id = ?", [staff_id])
        audit(db, action="staff_reactivated" if active else "staff_deactivated", staff=admin, detail=target["email"])
    return True


def lift_throttle(db, *, admin: dict[str, Any] | None, staff_id: int, centre: str) -> int:
    """Lift every throttle of an account of `centre` (accounts.lift_throttle); audited
    `throttle_lifted` (by `admin`, or by the operator's CLI when None). Returns the failures forgotten."""
    target = _target(db, centre, staff_id)
    count = accounts.lift_throttle(db, staff_id)
    with immediate(db):
        audit(db, action="throttle_lifted", staff=admin, detail=target["email"], centre=centre)
    return count


def remove_second_factor(db, *, admin: dict[str, Any] | None, staff_id: int, centre: str) -> bool:
    """Remove a lost second factor of an account of `centre`: its TOTP secret and recovery codes
    go, and its sessions end (the member sets a new one at the next login when the policy asks for
    one). The team page and `screening staff reset-2fa` both call this. False when none was set.
    Audited `second_factor_removed` (by `admin`, or by the operator when None)."""
    with immediate(db):
        target = _target(db, centre, staff_id)
        had = db.execute("SELECT 1 FROM staff WHERE id = ? AND totp_secret IS NOT NULL", [staff_id]).fetchone()
        codes = db.execute("DELETE FROM recovery_codes WHERE staff_id = ?", [staff_id]).rowcount
        if not had and not codes:
            return False
        db.execute("UPDATE staff SET totp_secret = NULL, totp_set_at = NULL, totp_last_step = NULL WHERE id = ?",
                   [staff_id])
        db.execute("DELETE FROM staff_sessions WHERE staff_id = ?", [staff_id])
        audit(db, action="second_factor_removed", staff=admin, detail=target["email"], centre=centre)
    return True
