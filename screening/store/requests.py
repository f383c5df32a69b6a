"""A person's request to see or erase their data, answered by staff: the storage.

From one screening, staff find every screening of the same person at their centre (the same
contact, compared as the staff search compares it: an e-mail address by its folded text
`search_contact`, a phone number by its digits `search_phone`; an empty value matches nothing),
confirm the list, record the request, then export the screenings (access) or erase them all at
once (erasure). The look-ups are one probe of an index led by the centre (db.m018_data_requests).

What is recorded (`data_requests`, and the audit action 'data_request'): the kind, the channel, the
day it was received, whether the person or someone on their behalf asked, the staff member and how
many screenings. Never the requester's name, the person's contact or the screenings' references:
the record outlives the data it erased. Each erased screening is audited as staff erasure is
('erase', its reference), with the request's id in the detail.

Scoped like review.py: every function takes a mandatory keyword `centre`; another centre's
screening is exactly as absent as one that never existed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from typing import Any

from . import db as dbmod
from . import retention

KINDS = ("access", "erasure")
CHANNELS = ("phone", "email", "in_person", "post")
ASKED_BY = ("person", "on_behalf")
# more screenings than anyone sends to one centre; the list and a request stop there
MAX_SCREENINGS = 500
LIST_COLUMNS = "id, number, reference, name, service, outcome, status, decision, created_at"


class Gone(LookupError):
    """A screening of the request is no longer there (erased meanwhile); nothing was done."""


@dataclass(frozen=True)
class DataRequest:
    """What staff record of a request: never who asked, only whether it was the person."""

    kind: str
    channel: str
    received_on: date
    on_behalf: bool

    def __post_init__(self):
        if self.kind not in KINDS or self.channel not in CHANNELS:
            raise ValueError("unknown kind or channel")


def person_key(submission: dict[str, Any]) -> tuple[str, str] | None:
    """The column and value that name the person of a screening: its folded e-mail address, or
    its phone's digits; None when its contact is neither (the screening is then only itself)."""
    contact = submission.get("search_contact") or ""
    if "@" in contact:
        return "search_contact", contact
    phone = submission.get("search_phone") or ""
    # a phone number is digits once its separators are gone ("ask at the desk" is no one's key)
    return ("search_phone", phone) if phone.isdigit() else None


def _rows(cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _newest_first(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # sorted here, not in SQL: an ORDER BY created_at could tempt a planner into walking the
    # centre's (centre, created_at, id) index instead of probing the person's
    return sorted(rows, key=lambda row: (row["created_at"], row["id"]), reverse=True)


def same_person(db, submission: dict[str, Any], *, centre: str) -> list[dict[str, Any]]:
    """Every screening of `centre` with the same contact as `submission` (itself included), newest
    first, at most MAX_SCREENINGS; [] when `submission` is not the centre's."""
    if submission.get("centre") != centre:
        return []
    key = person_key(submission)
    if key is None:
        cursor = db.execute(f"SELECT {LIST_COLUMNS} FROM submissions WHERE centre = ? AND id = ?",  # noqa: S608
                            [centre, submission["id"]])
    else:
        column, value = key
        cursor = db.execute(f"SELECT {LIST_COLUMNS} FROM submissions"  # noqa: S608 - our column; values bound
                            f" WHERE centre = ? AND {column} = ? LIMIT ?", [centre, value, MAX_SCREENINGS])
    return _newest_first(_rows(cursor))


def same_person_sql(column: str) -> str:
    """The statement same_person runs for a person named by `column` (for the tests' EXPLAIN)."""
    return f"SELECT {LIST_COLUMNS} FROM submissions WHERE centre = ? AND {column} = ? LIMIT ?"  # noqa: S608


def _insert(db, request: DataRequest, count: int, staff: dict, centre: str) -> int:
    """Inside the caller's transaction: the request's row and its audit entry; return its id."""
    request_id = db.execute(
        "INSERT INTO data_requests (centre, kind, channel, received_on, on_behalf, staff_id, created_at, screenings)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        [centre, request.kind, request.channel, request.received_on.isoformat(), int(request.on_behalf),
         staff["id"], dbmod.now(), count]).fetchone()[0]
    # the kind, channel, day, who asked (the person or not) and the count: no name, no reference
    detail = {"request": request_id, "kind": request.kind, "channel": request.channel,
              "received_on": request.received_on.isoformat(), "on_behalf": request.on_behalf, "count": count}
    dbmod.audit(db, action="data_request", staff=staff, centre=centre, detail=json.dumps(detail, sort_keys=True))
    return request_id


def _present(db, ids: list[int], centre: str) -> list[tuple[int, str]]:
    """(id, reference) of those of `ids` that are `centre`'s screenings; Gone unless all are."""
    ids = sorted(set(ids))
    found = db.execute("SELECT id, reference FROM submissions WHERE centre = ? AND id IN $IDS(?)",
                       [centre, ids]).fetchall()
    if not ids or len(found) != len(ids):
        raise Gone("a screening of the request is not there")
    return [(row[0], row[1]) for row in found]


def record_access(db, request: DataRequest, ids: list[int], staff: dict, *, centre: str) -> int:
    """Record an access request for these screenings of `centre` (all still there, else Gone and
    nothing is stored); return its id, which the export pages name."""
    if request.kind != "access":
        raise ValueError("not an access request")
    with dbmod.immediate(db):
        present = _present(db, ids, centre)
        return _insert(db, request, len(present), staff, centre)


def erase(db, request: DataRequest, ids: list[int], staff: dict, *, centre: str) -> tuple[int, int]:
    """Record an erasure request and erase these screenings of `centre` with their notes and queued
    notices, all in one transaction (Gone, and nothing stored or erased, unless all are still
    there); each erasure audited by its reference with the request's id. Then the erased rows
    leave the files (retention.checkpoint). Return (the request's id, how many were erased)."""
    if request.kind != "erasure":
        raise ValueError("not an erasure request")
    with dbmod.immediate(db):
        present = _present(db, ids, centre)
        request_id = _insert(db, request, len(present), staff, centre)
        retention._delete(db, [row_id for row_id, _reference in present])
        for row_id, reference in present:
            dbmod.audit(db, action="erase", staff=staff, submission_id=row_id, reference=reference, centre=centre,
                        detail=json.dumps({"request": request_id}))
    retention.checkpoint(db)
    return request_id, len(present)


def get_request(db, request_id: int, *, centre: str) -> dict[str, Any] | None:
    """One of `centre`'s recorded requests, or None."""
    if not 0 < request_id <= 2**63 - 1:
        return None
    rows = _rows(db.execute("SELECT id, kind, channel, received_on, on_behalf, staff_id, created_at, screenings"
                            " FROM data_requests WHERE id = ? AND centre = ?", [request_id, centre]))
    return rows[0] if rows else None


def access_screenings(db, request_id: int, numbers: list[int], *, centre: str) -> list[dict[str, Any]] | None:
    """The screenings of a recorded access request, named by the centre's numbers, newest first,
    decoded, each with its notes (oldest first): None unless the request is `centre`'s access
    request for exactly that many screenings, and they are all there and of one person."""
    request = get_request(db, request_id, centre=centre)
    numbers = sorted(set(numbers))
    if (request is None or request["kind"] != "access" or not numbers or len(numbers) != request["screenings"]
            or any(not 0 < n <= 2**63 - 1 for n in numbers)):
        return None
    rows = _rows(db.execute("SELECT * FROM submissions WHERE centre = ? AND number IN $IDS(?)", [centre, numbers]))
    keys = {person_key(row) for row in rows}
    if len(rows) != len(numbers) or len(keys) != 1 or (None in keys and len(rows) > 1):
        return None
    notes: dict[int, list[dict[str, Any]]] = {row["id"]: [] for row in rows}
    for note in _rows(db.execute("SELECT submission_id, body, created_at FROM notes WHERE submission_id IN $IDS(?)"
                                 " ORDER BY created_at, id", [list(notes)])):
        notes[note["submission_id"]].append(note)
    return [{**dbmod.decode(row), "notes": notes[row["id"]]} for row in _newest_first(rows)]


def record_download(db, request_id: int, what: str, count: int, staff: dict, *, centre: str) -> None:
    """Audit that a recorded access request's screenings were exported ('csv') or opened to print
    ('print'): the request, the form and the count only."""
    with dbmod.immediate(db):
        dbmod.audit(db, action="data_request_export", staff=staff, centre=centre,
                    detail=json.dumps({"request": request_id, "format": what, "count": count}, sort_keys=True))
