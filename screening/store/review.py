"""Storage for the staff review pages: the dashboard list, counts, detail, notes, status and
decision, the CSV export's rows and the audit trail listing. Only SQL and what it needs: the URL
parameters are read in web/filters.py, and what a stored screening says (re-judging, rows in
words, the CSV's cells) is core/reading.py.

No Flask here (views stay short and hold no SQL). Lists use keyset pagination on
(created_at, id), newest first, so that a page costs the same however deep it is and a row stored
while someone pages is neither skipped nor shown twice. Every WHERE below has an index in
db.m005_centres: (centre, created_at, id), and (centre, outcome | status | service, created_at, id).

Scoped in the store: every function that reads or changes submissions, notes or the audit trail
takes a mandatory keyword `centre` and narrows each statement to it, and the staff views reach
them only through `CentreStore`, built once per request from the logged-in account's centre.
Another centre's submission is then exactly as absent as one that never existed.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..core.reading import ExportWords, audit_words, neutralise
from ..core.rules import OUTCOMES
from . import accounts, retention
from . import db as dbmod

PAGE_SIZE = 50
EXPORT_PAGE_SIZE = 500
AUDIT_PAGE_SIZE = 50
NOTE_MAX = 5000
MAX_ID = 2**63 - 1
DECISIONS = ("booking_fine", "adapt_session", "postpone", "consult_professional")


# --- filters and cursors ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Filters:
    """What the dashboard (and the export) is narrowed to; empty strings mean "any"."""

    outcome: str = ""
    status: str = ""
    service: str = ""
    date_from: str = ""
    date_to: str = ""
    q: str = ""

    def params(self) -> dict[str, str]:
        """The non-personal filter as URL parameters (only those set), for links that keep it and
        for the audit. Never the search words `q` (a client's name, e-mail or phone): a link names
        them by their search id (save_search), the audit not at all."""
        names = {"date_from": "from", "date_to": "to"}
        return {names.get(k, k): v for k, v in asdict(self).items() if v and k != "q"}

    def active(self) -> bool:
        """Whether any filter is set."""
        return any(asdict(self).values())


@dataclass(frozen=True)
class Cursor:
    """A position in the newest-first order: a row's created_at and its centre's number for it,
    which is what a page link carries (the row's id would tell the installation's volume), and the
    row's id when the page that made the cursor knows it."""

    created_at: str
    number: int
    id: int | None = None

    def token(self) -> str:
        """The cursor as it travels in a page link."""
        return f"{self.created_at}_{self.number}"


def day_start(day: date, zone: str) -> str:
    """The UTC time (as stored) at which `day` begins in the time zone `zone`."""
    try:
        return datetime.combine(day, time(), ZoneInfo(zone)).astimezone(UTC).isoformat(timespec="microseconds")
    except OverflowError:   # the first or last day datetime can hold, in a zone ahead of or behind UTC
        return "" if day.year == 1 else "9999-12-31T23:59:59.999999+00:00"


def _days_between(column: str, date_from: str, date_to: str, zone: str, where: list, params: list) -> None:
    """Conditions on `column` (ISO text in UTC) from the start of the day `date_from` to the end of
    the day `date_to`, days of the centre (`zone`), either optional: the end is everything before
    the next day's midnight in the centre. The dashboard's and the audit's day filters."""
    if date_from:
        where.append(f"{column} >= ?")
        params.append(day_start(date.fromisoformat(date_from), zone))
    if date_to:
        where.append(f"{column} < ?")
        params.append(day_start(date.fromisoformat(date_to) + timedelta(days=1), zone))


def _where(db, filters: Filters, *, centre: str,
           zone: str = "UTC") -> tuple[list[str], list[Any]]:
    """SQL conditions and parameters for a filter, always within one centre (first: every index
    of the dashboard starts with it). Days are the centre's days (`zone`)."""
    where: list[str] = ["centre = ?"]
    params: list[Any] = [centre]
    for column in ("outcome", "status", "service"):
        value = getattr(filters, column)
        if value:
            where.append(f"{column} = ?")
            params.append(value)
    _days_between("created_at", filters.date_from, filters.date_to, zone, where, params)
    if filters.q:
        reference = dbmod.normalize_reference(filters.q)
        if reference and db.execute("SELECT 1 FROM submissions WHERE reference = ? AND centre = ?",
                                    [reference, centre]).fetchone():
            # a reference that exists: that submission, through its unique index (an OR with the
            # name search below would scan the whole table; measured 0.5 s at a million rows)
            where.append("reference = ?")
            params.append(reference)
        else:
            search_where, search_params = _search(db, filters.q)
            if any("$IDS" in condition for condition in search_where):
                # at most SORT_MAX rows, fetched by id and checked for the centre: with the centre
                # usable by an index, SQLite would walk all of the centre's rows instead (12 ms at
                # 45,000 rows for a name nobody has, against 0.1 ms)
                where[0] = "$NOINDEX(centre) = ?"
            where += search_where
            params += search_params
    return where, params


PHONE_RE = re.compile(r"^[0-9 +().\-/]+$")
TRIGRAM = 3     # the full-text index (db.m008_search_folded) finds pieces of 3 characters or more
# A word of this many reference characters or more may be part of a reference read over the phone
# ("UPDX" of UPDX-XDAM); shorter ones would find references by chance.
REFERENCE_PART = 4
# Above this many candidates, a search reads the newest-first index and keeps the matching rows
# (about 51 × total/candidates index entries) instead of fetching and sorting every candidate:
# at a million rows "garcia" has 24,485 candidates, and sorting them took longer than 30 ms.
SORT_MAX = 2000


def _reference_part(word: str) -> str:
    """`word` as a piece of a stored reference without its dash ('updx-x' is 'UPDXX'), or '' when
    it cannot be one."""
    piece = word.upper().replace("-", "")
    fits = REFERENCE_PART <= len(piece) <= dbmod.REFERENCE_LENGTH
    return piece if fits and all(ch in dbmod.REFERENCE_ALPHABET for ch in piece) else ""


def _search(db, q: str) -> tuple[list[str], list[Any]]:
    """SQL conditions for the staff search box (a whole reference is handled before).

    Through the engine's text indexes of the search columns (db.search_columns), in any case and
    with or without accents ("nuria" finds "Núria"): a word of letters is a piece of the name,
    apostrophes and hyphens ignored ("obrien" finds "O'Brien"); a word with '@', digits, '.', '_'
    or '+' a piece of the contact (an e-mail address whole, accents ignored); a phone number by its
    digits however it is written; a word that could be part of a reference also finds the
    references it is part of, with or without the dash. A word shorter than the index's pieces is
    the start of any word of the name ("Pe" finds "Peña"). The caller's conditions keep the answer
    to its centre; the indexes' candidates, counted across centres, only choose the plan."""
    digits = "".join(ch for ch in q if ch.isdigit())
    if PHONE_RE.match(q) and len(digits) >= TRIGRAM:
        return db.search_conditions([("search_phone", digits)], SORT_MAX)
    terms: list[tuple[str, str]] = []
    for word in q.split():
        reference = _reference_part(word)
        if "@" in word or any(ch.isdigit() or ch in "._+" for ch in word):
            column, text = "search_contact", dbmod.fold(word)
        else:
            column, text = "search_name", dbmod.fold(word).translate(dbmod.WITHOUT_NAME_IGNORED)
        if len(text) >= TRIGRAM:
            terms.append((column, text))
            if reference:
                terms.append(("or_ref", reference))
        elif column == "search_name" and any(ch.isalnum() for ch in text):
            terms.append(("search_words", text))
        # else a piece of a contact too short to look up, or only apostrophes and hyphens: no narrowing
    if not terms:
        return [NO_ROW], [[]]         # nothing that could be looked up: no row
    return db.search_conditions(terms, SORT_MAX)


NO_ROW = "id IN $IDS(?)"      # given an empty list


LIST_COLUMNS = "id, number, reference, name, contact, service, outcome, status, decision, created_at"


def _select(db, columns: str, filters: Filters, *, centre: str, zone: str = "UTC",
            before: Cursor | None = None, after: Cursor | None = None, limit: int) -> list[dict[str, Any]]:
    """Rows of `centre` matching the filter, strictly older than `before` (newest first) or
    strictly newer than `after` (oldest first)."""
    where, params = _where(db, filters, centre=centre, zone=zone)
    order = "DESC"
    for cursor, side in ((before, "<"), (after, ">")):
        if cursor is None:
            continue
        row_id = cursor.id
        if row_id is None:      # a cursor from a link: its row, through the (centre, number) index
            found = db.execute("SELECT id FROM submissions WHERE centre = ? AND number = ? AND created_at = ?",
                               [centre, cursor.number, cursor.created_at]).fetchone()
            row_id = found[0] if found else None
        if row_id is None:
            # a link to a row erased since: its time alone places it (ties are to the microsecond)
            where.append(f"created_at {side} ?")
            params.append(cursor.created_at)
        else:
            where.append(f"(created_at, id) {side} (?, ?)")
            params += [cursor.created_at, row_id]
        order = "ASC" if side == ">" else order
    sql = f"SELECT {columns} FROM submissions"   # noqa: S608 - columns and conditions are ours; values are bound
    sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY created_at {order}, id {order} LIMIT ?"
    cursor = db.execute(sql, [*params, limit])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


@dataclass
class Page:
    """One page of the dashboard, newest first, with the cursors of the neighbouring pages."""

    rows: list[dict[str, Any]]
    older: Cursor | None
    newer: Cursor | None


def list_page(db, filters: Filters, *, centre: str, zone: str = "UTC",
              before: Cursor | None = None, after: Cursor | None = None, size: int = PAGE_SIZE) -> Page:
    """A page of `centre`'s submissions: the newest ones, those just older than `before`, or those
    just newer than `after`."""
    scope = {"centre": centre, "zone": zone}
    rows = _select(db, LIST_COLUMNS, filters, **scope, before=before, after=after, limit=size + 1)
    more = len(rows) > size
    rows = rows[:size]
    if after is not None:
        rows.reverse()
    if not rows:
        return Page([], None, None)
    first, last = (Cursor(row["created_at"], row["number"], row["id"]) for row in (rows[0], rows[-1]))
    if after is not None:
        has_newer, has_older = more, bool(_select(db, "id", filters, **scope, before=last, limit=1))
    else:
        has_older = more
        has_newer = before is not None and bool(_select(db, "id", filters, **scope, after=first, limit=1))
    return Page(rows, last if has_older else None, first if has_newer else None)


def attention_counts(db, *, centre: str) -> dict[str, int]:
    """How many of `centre`'s submissions still need attention (new or reviewed, not 'proceed'),
    per outcome."""
    counts = {code: 0 for code in OUTCOMES if code != "proceed"}
    for outcome, n in db.execute(
            # without the hint SQLite walks (centre, outcome, ...) to save sorting three groups, reading
            # every row of the centre: 150 ms at 10^5 rows instead of 1 ms from this covering index
            "SELECT outcome, count(*) FROM submissions $INDEXED_BY(idx_submissions_centre_status_outcome)"
            " WHERE centre = ? AND status IN ('new', 'reviewed') AND outcome != 'proceed' GROUP BY outcome",
            [centre]).fetchall():
        counts[outcome] = n
    return counts


# --- one submission ----------------------------------------------------------------------------------

def get_submission(db, submission_id: int, *, centre: str) -> dict[str, Any] | None:
    """`centre`'s submission with its JSON columns parsed, or None (also when another centre's)."""
    if not 0 < submission_id <= MAX_ID:     # SQLite cannot even bind a larger int: no such row
        return None
    rows = list(db.query("SELECT * FROM submissions WHERE id = ? AND centre = ?", [submission_id, centre]))
    return dbmod.decode(rows[0]) if rows else None


def numbered(db, number: int, *, centre: str) -> dict[str, Any] | None:
    """`centre`'s submission with this number of the centre's own numbering (the one staff URLs and
    notices show), with its JSON columns parsed, or None. Through the unique (centre, number) index."""
    if not 0 < number <= MAX_ID:
        return None
    rows = list(db.query("SELECT * FROM submissions WHERE centre = ? AND number = ?", [centre, number]))
    return dbmod.decode(rows[0]) if rows else None


def list_notes(db, submission_id: int, *, centre: str) -> list[dict[str, Any]]:
    """The notes on one of `centre`'s submissions, oldest first, with their author's name and e-mail."""
    cursor = db.execute(
        "SELECT notes.id, notes.body, notes.created_at, staff.name AS author_name,"
        " staff.email AS author_email FROM notes JOIN submissions ON submissions.id = notes.submission_id"
        " LEFT JOIN staff ON staff.id = notes.staff_id"
        " WHERE notes.submission_id = ? AND submissions.centre = ? ORDER BY notes.created_at, notes.id",
        [submission_id, centre])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def status_history(db, submission_id: int, *, centre: str) -> list[dict[str, Any]]:
    """The changes of status and decision of one of `centre`'s submissions, oldest first, from its
    audit trail: when, who (their name now, else the e-mail the entry kept) and the new values."""
    cursor = db.execute(
        "SELECT audit_log.at, staff.name, audit_log.staff_email, audit_log.detail FROM audit_log"
        " LEFT JOIN staff ON staff.id = audit_log.staff_id"
        " WHERE audit_log.submission_id = ? AND audit_log.centre = ? AND audit_log.action = 'status'"
        " ORDER BY audit_log.id", [submission_id, centre])
    return [{"at": at, "who": name or email, "changes": audit_words({"action": "status", "detail": detail})["changes"]}
            for at, name, email, detail in cursor.fetchall()]


def record_view(db, submission: dict[str, Any], staff: dict) -> None:
    """Note in the audit trail (of the submission's centre) that a staff member opened it."""
    with dbmod.immediate(db):
        dbmod.audit(db, action="view", staff=staff, submission_id=submission["id"],
                    reference=submission["reference"], centre=submission["centre"])


def add_note(db, submission_id: int, body: str, staff: dict, *, centre: str) -> bool:
    """Add a note to one of `centre`'s submissions and audit it (not its text: a note may hold
    health details). False when the submission is gone (or another centre's)."""
    with dbmod.immediate(db):
        row = db.execute("SELECT reference FROM submissions WHERE id = ? AND centre = ?",
                         [submission_id, centre]).fetchone()
        if row is None:
            return False
        db.execute("INSERT INTO notes (submission_id, staff_id, body, created_at) VALUES (?, ?, ?, ?)",
                   [submission_id, staff["id"], body, dbmod.now()])
        dbmod.audit(db, action="note", staff=staff, submission_id=submission_id, reference=row[0], centre=centre)
    return True


def set_status(db, submission_id: int, status: str, decision: str | None,
               staff: dict, *, centre: str) -> bool | None:
    """Set status and decision of one of `centre`'s submissions; audit the change as
    'field: old -> new'. Return None when the submission is gone (or another centre's), else
    whether anything changed."""
    if status not in dbmod.STATUSES or (decision is not None and decision not in DECISIONS):
        raise ValueError("unknown status or decision")
    with dbmod.immediate(db):
        row = db.execute("SELECT reference, status, decision FROM submissions WHERE id = ? AND centre = ?",
                         [submission_id, centre]).fetchone()
        if row is None:
            return None
        reference, old_status, old_decision = row
        pairs = (("status", old_status, status), ("decision", old_decision, decision))
        changes = [f"{name}: {old or '-'} -> {new or '-'}" for name, old, new in pairs if old != new]
        if not changes:
            return False
        db.execute("UPDATE submissions SET status = ?, decision = ?, updated_at = ? WHERE id = ? AND centre = ?",
                   [status, decision, dbmod.now(), submission_id, centre])
        dbmod.audit(db, action="status", staff=staff, submission_id=submission_id, reference=reference,
                    detail="; ".join(changes), centre=centre)
    return True


# --- export ----------------------------------------------------------------------------------------


def count_matching(db, filters: Filters, *, centre: str, zone: str = "UTC") -> int:
    """How many of `centre`'s submissions the filter matches (what an export is about to write)."""
    where, params = _where(db, filters, centre=centre, zone=zone)
    sql = "SELECT count(*) FROM submissions"   # noqa: S608 - conditions are ours; values are bound
    if where:
        sql += " WHERE " + " AND ".join(where)
    return db.execute(sql, params).fetchone()[0]


# --- the search's words, kept with the staff session ------------------------------------------------

SEARCHES_PER_SESSION = 20     # the newest ones; an older search's links then say it has expired
SEARCH_ID_RE = re.compile(r"[A-Za-z0-9_-]{22}", re.ASCII)


def _search_key(token: str) -> bytes:
    """The key the session's search words are encrypted with: derived from the session's cookie
    token, which only the staff member's browser holds (the database keeps its hash), so neither
    the database file nor another session can read them."""
    return hmac.new(token.encode(), b"screening search words", hashlib.sha256).digest()


def save_search(db, token: str, words: str) -> str:
    """Keep the dashboard search's `words` with the session of cookie `token`; return the random id
    that names them in URLs. The session's oldest searches beyond SEARCHES_PER_SESSION go."""
    search_id = secrets.token_urlsafe(16)
    nonce = secrets.token_bytes(12)
    sealed = nonce + AESGCM(_search_key(token)).encrypt(nonce, words.encode(), search_id.encode())
    sid = accounts.session_id(token)
    with dbmod.immediate(db):
        db.execute("INSERT INTO search_words (id, session_id, words, created_at) VALUES (?, ?, ?, ?)",
                   [search_id, sid, base64.b64encode(sealed).decode(), dbmod.now()])
        old = db.execute("SELECT id FROM search_words WHERE session_id = ? ORDER BY created_at DESC, id",
                         [sid]).fetchall()[SEARCHES_PER_SESSION:]
        for (gone,) in old:
            db.execute("DELETE FROM search_words WHERE id = ?", [gone])
    return search_id


def load_search(db, token: str | None, search_id: str) -> str | None:
    """The words of search `search_id` if it belongs to the session of cookie `token`, else None
    (unknown, another session's, or gone with its session)."""
    if not token or not SEARCH_ID_RE.fullmatch(search_id or ""):
        return None
    row = db.execute("SELECT words FROM search_words WHERE id = ? AND session_id = ?",
                     [search_id, accounts.session_id(token)]).fetchone()
    if row is None:
        return None
    sealed = base64.b64decode(row[0])
    try:
        return AESGCM(_search_key(token)).decrypt(sealed[:12], sealed[12:], search_id.encode()).decode()
    except (InvalidTag, ValueError):
        return None


def count_searches(db) -> int:
    """How many searches are kept, all sessions together (for tests and the operator)."""
    return db.execute("SELECT COUNT(*) FROM search_words").fetchone()[0]


def record_export(db, filters: Filters, staff: dict, *, centre: str,
                  zone: str = "UTC") -> int:
    """One audit row per export, in `centre`'s trail: the non-personal filter (outcome, status,
    service, dates; whether words were searched, never the words nor a hash of them) and how many
    rows it matched (never answers). Return that count. Counted before the write lock is taken (a
    million rows take a few hundred ms, which clients sharing their answers would wait for); a row
    shared in between may be exported too."""
    count = count_matching(db, filters, centre=centre, zone=zone)
    searched = {**filters.params(), **({"q": True} if filters.q else {})}
    with dbmod.immediate(db):
        dbmod.audit(db, action="export", staff=staff,
                    detail=json.dumps({"filters": searched, "count": count}, sort_keys=True),
                    centre=centre)
    return count


def export_rows(connect, filters: Filters, words: ExportWords, page_size: int | None = None, *,
                centre: str) -> Iterator[list[str]]:
    """Every submission of `centre` matching the filter, newest first, as neutralised CSV cells in
    `words` (times in its zone, which is the centre's).

    `connect()` opens a connection, closed when done. Each page is its own short read, so no read
    transaction stays open (holding back WAL checkpoints) for the whole download.
    """
    page_size = page_size or EXPORT_PAGE_SIZE
    db = connect()
    try:
        before = None
        while True:
            rows = _select(db, "*", filters, centre=centre, zone=words.zone, before=before, limit=page_size)
            for row in rows:
                yield [neutralise(c) for c in words.cells(dbmod.decode(row))]
            if len(rows) < page_size:
                return
            before = Cursor(rows[-1]["created_at"], rows[-1]["number"], rows[-1]["id"])
    finally:
        db.close()


# --- audit trail -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilters:
    """What the audit page is narrowed to; empty (or None) means "any". Days are the centre's
    (YYYY-MM-DD, both included); `staff_id` is who did it, an account of the centre."""

    reference: str = ""
    staff_id: int | None = None
    action: str = ""
    date_from: str = ""
    date_to: str = ""


def audit_members(db, *, centre: str) -> list[dict[str, Any]]:
    """Every account of `centre`, inactive ones too (what they did stays in the trail), for the
    audit page's "who" filter: id, name, email, active; by name, then e-mail."""
    rows = db.execute("SELECT id, name, email, active FROM staff WHERE centre = ? ORDER BY id",
                      [centre]).fetchall()
    members = [{"id": i, "name": name or "", "email": email, "active": bool(active)}
               for i, name, email, active in rows]
    return sorted(members, key=lambda m: (m["name"].casefold() or m["email"], m["email"]))


def list_audit(db, *, centre: str, filters: AuditFilters | None = None, zone: str = "UTC",
               before: tuple[str, int] | None = None,
               size: int = AUDIT_PAGE_SIZE) -> tuple[list[dict[str, Any]], str | None]:
    """A page of `centre`'s audit trail, newest first, narrowed by `filters` (days in the time
    zone `zone`); return (rows, the cursor of older entries to pass as `before`, see
    parse_audit_cursor).

    Each filter has an index led by the centre and ending with the time (db.m009_audit_by_time,
    m014_audit_filters), named for SQLite (which has no statistics to choose by, and chose the
    member's index for a reference: 97 ms instead of 0.1 at 450,000 entries): a reference's few
    entries first, else the member's of the action, the member's, the action's, or the centre's,
    each narrowed by the days. A page then walks only the entries it shows, plus those of the
    reference it skips for the other filters."""
    filters = filters or AuditFilters()
    where, params = ["centre = ?"], [centre]
    if filters.reference:
        where.append("reference = ?")
        params.append(filters.reference)
    if filters.staff_id is not None:
        where.append("staff_id = ?")
        params.append(filters.staff_id)
    if filters.action:
        where.append("action = ?")
        params.append(filters.action)
    _days_between("at", filters.date_from, filters.date_to, zone, where, params)
    skip = 0
    if before is not None:
        # entries of exactly the cursor's time come first in this order: skip those already shown
        where.append("at <= ?")
        params.append(before[0])
        skip = before[1]
    if filters.reference:
        index = "idx_audit_log_centre_reference_at"
    elif filters.staff_id is not None and filters.action:
        index = "idx_audit_log_centre_staff_id_action_at"
    elif filters.staff_id is not None:
        index = "idx_audit_log_centre_staff_id_at"
    elif filters.action:
        index = "idx_audit_log_centre_action_at"
    else:
        index = "idx_audit_log_centre_at"
    # the index is one of the fixed names above, never anything the request sent
    columns = "id, at, staff_id, staff_email, action, submission_id, reference, detail, times"
    sql = f"SELECT {columns} FROM audit_log $INDEXED_BY({index}) WHERE " + " AND ".join(where)  # noqa: S608
    cursor = db.execute(sql + " ORDER BY at DESC, id DESC LIMIT ? OFFSET ?", [*params, size + 1, skip])
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    older = None
    if len(rows) > size:
        rows = rows[:size]
        last = rows[-1]["at"]
        ties = sum(row["at"] == last for row in rows) + (skip if before is not None and before[0] == last else 0)
        older = f"{last}~{ties}"
    return rows, older


# --- the staff side's one way in -------------------------------------------------------------------

class CentreStore:
    """Everything the staff pages read and change, narrowed to one centre: built once per request
    from the logged-in account's centre, so that no view can forget the scope. Another centre's
    submission is None here, exactly like one that does not exist."""

    def __init__(self, db, centre: str, zone: str = "UTC"):
        if not centre:
            raise ValueError("a centre store needs a centre")
        self.db, self.centre, self.zone = db, centre, zone

    def list_page(self, filters: Filters, *, before: Cursor | None = None, after: Cursor | None = None,
                  size: int = PAGE_SIZE) -> Page:
        """A page of the centre's dashboard (see list_page)."""
        return list_page(self.db, filters, centre=self.centre, zone=self.zone, before=before, after=after,
                         size=size)

    def attention_counts(self) -> dict[str, int]:
        """The centre's submissions that need attention, per outcome."""
        return attention_counts(self.db, centre=self.centre)

    def get_submission(self, submission_id: int) -> dict[str, Any] | None:
        """One of the centre's submissions, or None."""
        return get_submission(self.db, submission_id, centre=self.centre)

    def numbered(self, number: int) -> dict[str, Any] | None:
        """The centre's submission with this number of its own numbering, or None."""
        return numbered(self.db, number, centre=self.centre)

    def list_notes(self, submission_id: int) -> list[dict[str, Any]]:
        """The notes on one of the centre's submissions."""
        return list_notes(self.db, submission_id, centre=self.centre)

    def status_history(self, submission_id: int) -> list[dict[str, Any]]:
        """Who changed the status and decision of one of the centre's submissions, and when."""
        return status_history(self.db, submission_id, centre=self.centre)

    def record_view(self, submission: dict[str, Any], staff: dict) -> None:
        """Audit the opening of one of the centre's submissions."""
        if submission["centre"] != self.centre:
            raise LookupError("not this centre's submission")
        record_view(self.db, submission, staff)

    def add_note(self, submission_id: int, body: str, staff: dict) -> bool:
        """Add a note to one of the centre's submissions (False when there is none)."""
        return add_note(self.db, submission_id, body, staff, centre=self.centre)

    def set_status(self, submission_id: int, status: str, decision: str | None, staff: dict) -> bool | None:
        """Set status and decision of one of the centre's submissions (None when there is none)."""
        return set_status(self.db, submission_id, status, decision, staff, centre=self.centre)

    def erase(self, submission_id: int, staff: dict) -> str | None:
        """Erase one of the centre's submissions for good (None when there is none)."""
        return retention.erase_submission(self.db, submission_id, staff=staff, centre=self.centre)

    def record_export(self, filters: Filters, staff: dict) -> int:
        """Audit an export of the centre's submissions; return how many it matches."""
        return record_export(self.db, filters, staff, centre=self.centre, zone=self.zone)

    def export_rows(self, connect, filters: Filters, words: ExportWords) -> Iterator[list[str]]:
        """The centre's submissions as CSV cells in `words` (see export_rows)."""
        return export_rows(connect, filters, words, centre=self.centre)

    def list_audit(self, filters: AuditFilters | None = None, *, reference: str = "",
                   before: tuple[str, int] | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the centre's audit trail, narrowed by `filters` (or only by `reference`)."""
        filters = filters or AuditFilters(reference=reference)
        return list_audit(self.db, centre=self.centre, filters=filters, zone=self.zone, before=before)

    def audit_members(self) -> list[dict[str, Any]]:
        """The centre's accounts, inactive ones too, for the audit page's "who" filter."""
        return audit_members(self.db, centre=self.centre)
