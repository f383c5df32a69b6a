"""The staff pages' URL parameters, read and checked: the dashboard's filter and page cursors,
the audit page's filter and cursor, ids in URLs. What they become is the store's (store/review.py: Filters
and Cursor); the wording of each error code is in templates/staff/_review.html."""
from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from ..core.reading import AUDIT_ACTIONS
from ..core.rules import OUTCOMES
from ..store.db import STATUSES, normalize_reference
from ..store.review import MAX_ID, AuditFilters, Cursor, Filters

Q_MAX = 100


# error codes; their wording lives in templates/staff/_review.html
INVALID, TOO_LONG, FROM_AFTER_TO, BOTH_DIRECTIONS = "invalid", "too_long", "from_after_to", "both_directions"
EXPIRED = "expired"     # a search id this session does not hold (another's, or gone with its session)


# ASCII only and matched whole (fullmatch): \d alone also takes '²' and '١', and $ a final newline
CURSOR_RE = re.compile(r"(\d{4}-\d\d-\d\dT[0-9:.+-]+)_([1-9]\d{0,18})", re.ASCII)


DAY_RE = re.compile(r"\d{4}-\d\d-\d\d", re.ASCII)


ID_RE = re.compile(r"[1-9]\d{0,18}", re.ASCII)


def parse_cursor(text: str) -> Cursor | None:
    """A cursor from its URL form, or None when it is not one."""
    m = CURSOR_RE.fullmatch(text or "")
    if not m or parse_id(m.group(2)) is None:
        return None
    try:
        datetime.fromisoformat(m.group(1))
    except ValueError:
        return None
    return Cursor(m.group(1), int(m.group(2)))


def parse_day(text: str) -> date | None:
    """A date written exactly YYYY-MM-DD (ASCII digits) that has a next day, or None.

    date.fromisoformat alone also takes week dates ('2026-W49-1') and '20260101', which would then
    be compared as text; and the 'to' bound adds a day, which overflows on 9999-12-31.
    """
    if not DAY_RE.fullmatch(text):
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return None
    return day if day < date.max else None


def parse_id(text: str) -> int | None:
    """A row id written as plain ASCII digits, within SQLite's int64 (1 to 2**63 - 1), or None.

    int() alone also takes '١٢', '1_000', ' 12' and '+12', and str.isdigit() passes '²', which int() refuses.
    """
    if not ID_RE.fullmatch(text or ""):
        return None
    value = int(text)
    return value if value <= MAX_ID else None


def parse_filters(args: dict[str, str], services: set[str], words: str | None = None) -> tuple[Filters, dict[str, str]]:
    """Read and check the dashboard's filter parameters; return (filters, {field: error code}).

    The search's words are `words` (posted, or read back from the staff session by the search's
    id), never a URL's `q`; without `words`, `args`' own `q` (the posted form). Fields with an
    error are left out of the returned filters.
    """
    errors: dict[str, str] = {}
    values: dict[str, str] = {}
    for field, allowed in (("outcome", OUTCOMES), ("status", STATUSES), ("service", services)):
        value = (args.get(field) or "").strip()
        if value and value not in allowed:
            errors[field] = INVALID
        elif value:
            values[field] = value
    _parse_days(args, values, errors)
    q = " ".join((args.get("q") if words is None else words or "").split())
    if len(q) > Q_MAX:
        errors["q"] = TOO_LONG
    elif q:
        values["q"] = q
    return Filters(**values), errors


def _parse_days(args: dict[str, str], values: dict[str, str], errors: dict[str, str]) -> None:
    """Read the `from` and `to` days (YYYY-MM-DD, both included) into values' date_from and
    date_to, or their error codes into errors; a `to` before `from` is refused at `to`."""
    for field, key in (("from", "date_from"), ("to", "date_to")):
        value = args.get(field) or ""      # exactly as a date input sends it: not stripped
        if value and parse_day(value) is None:
            errors[field] = INVALID
        elif value:
            values[key] = value
    if "date_from" in values and "date_to" in values and values["date_from"] > values["date_to"]:
        errors["to"] = FROM_AFTER_TO
        del values["date_to"]


def parse_audit_filters(args: dict[str, str], members: dict[str, int]) -> tuple[AuditFilters, dict[str, str]]:
    """Read and check the audit page's filter; return (filters, {field: error code}).

    `members` maps the handle of each of the centre's accounts (accounts.staff_handle) to its id:
    a handle not in it (mistyped, stale, or another centre's account) is refused at the field
    like any other unknown value, so it tells nothing of whom it names. An action must be one of
    the codes the page knows. Fields with an error are left out of the returned filters.
    """
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    typed = (args.get("reference") or "").strip()
    if typed:
        reference = normalize_reference(typed)
        if reference:
            values["reference"] = reference
        else:
            errors["reference"] = INVALID
    handle = (args.get("member") or "").strip()
    if handle:
        if handle in members:
            values["staff_id"] = members[handle]
        else:
            errors["member"] = INVALID
    action = (args.get("action") or "").strip()
    if action:
        if action in AUDIT_ACTIONS:
            values["action"] = action
        else:
            errors["action"] = INVALID
    _parse_days(args, values, errors)
    return AuditFilters(**values), errors


def parse_page(args: dict[str, str]) -> tuple[Cursor | None, Cursor | None, dict[str, str]]:
    """The `before` / `after` cursors of a page link; return (before, after, {field: error code})."""
    errors: dict[str, str] = {}
    found = {}
    for field in ("before", "after"):
        text = args.get(field) or ""
        if text:
            found[field] = parse_cursor(text)
            if found[field] is None:
                errors[field] = INVALID
    if "before" in found and "after" in found:
        errors["after"] = BOTH_DIRECTIONS
    return found.get("before"), found.get("after"), errors


AUDIT_CURSOR_RE = re.compile(r"^(\d{4}-\d\d-\d\dT[0-9:.+-]{5,30})~(\d{1,6})$")


def parse_audit_cursor(text: str) -> tuple[str, int] | None:
    """An audit page's 'older' cursor: the time of the last entry shown and how many entries of
    exactly that time were shown ('2026-12-03T10:15:00.123456+00:00~1'); None when it is not one.
    Times, not row ids: the ids are numbered across the installation, and an admin reading them
    would learn how busy the other centres are."""
    m = AUDIT_CURSOR_RE.match(text)
    if not m:
        return None
    try:
        datetime.fromisoformat(m.group(1))
    except ValueError:
        return None
    return m.group(1), int(m.group(2))
