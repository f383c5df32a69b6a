"""A person's request, handled by staff: from one screening, every screening of the same person at
the centre; staff confirm the list, record the request (kind, channel, day received, whether the
person or someone on their behalf asked: never who), then export them (access: one CSV file and a
printable page) or erase them all at once (erasure). The SQL is in store/requests.py.

Any staff member of the centre may do this, not only admins: a recorded request is what allows it
(erasing one screening outside a request stays admin-only, web/staff.py). Behind the same
deny-by-default guard as the other staff pages; every POST carries the CSRF token; every success
redirects (post/redirect/get). Another centre's screening or request is a 404 like a missing one.
"""
from __future__ import annotations

import csv
import hashlib
import hmac
import io
import re
from datetime import date, datetime
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, abort, current_app, g, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm

from ..core import reading
from ..store import requests as store
from . import auth, i18n, staff
from .database import get_db

bp = Blueprint("requests", __name__, url_prefix="/staff")
bp.before_request(auth.require_staff)
bp.context_processor(staff.staff_helpers)      # the staff header: centre, who is logged in

KIND_LABELS = {"access": _l("To see their data or get a copy"), "erasure": _l("To erase their data")}
CHANNEL_LABELS = {"phone": _l("By phone"), "email": _l("By e-mail"), "in_person": _l("In person"),
                  "post": _l("By post")}
ASKED_BY_LABELS = {"person": _l("The person themselves"), "on_behalf": _l("Someone on the person's behalf")}


# a day as the date field sends it (date.fromisoformat alone would also take '2025-W01-1')
DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class RequestForm(FlaskForm):
    """Only the CSRF token: the fields are read and checked in `_read` (the template words the errors)."""


def _today() -> date:
    """Today in the centre's time zone."""
    return datetime.now(ZoneInfo(staff.centre_zone())).date()


def _is_number(text: str) -> bool:
    """Whether `text` is a screening's number as a form or link carries it (ASCII digits: '²' is a
    digit to Python, not to int())."""
    return text.isascii() and text.isdigit() and len(text) <= 18


def _read(form, listed: dict[int, dict]) -> tuple[dict, dict[str, str]]:
    """The posted fields as typed (to show them again) and the errors by field, as codes."""
    values = {"screening": form.getlist("screening"), "kind": form.get("kind", ""),
              "channel": form.get("channel", ""), "received_on": (form.get("received_on") or "").strip(),
              "asked_by": form.get("asked_by", ""), "confirm": bool(form.get("confirm"))}
    errors: dict[str, str] = {}
    numbers = set()
    for text in values["screening"]:
        number = int(text) if _is_number(text) else None
        if number not in listed:
            errors["screening"] = "unknown"       # not in this list: another person's or centre's, or none
            break
        numbers.add(number)
    if not values["screening"]:
        errors["screening"] = "none"
    values["numbers"] = numbers
    if values["kind"] not in store.KINDS:
        errors["kind"] = "invalid"
    if values["channel"] not in store.CHANNELS:
        errors["channel"] = "invalid"
    try:
        received = date.fromisoformat(values["received_on"]) if DAY.fullmatch(values["received_on"]) else None
    except ValueError:
        received = None
    if not values["received_on"]:
        errors["received_on"] = "missing"
    elif received is None:
        errors["received_on"] = "invalid"
    elif received > _today():
        errors["received_on"] = "future"
    values["received"] = received
    if values["asked_by"] not in store.ASKED_BY:
        errors["asked_by"] = "invalid"
    if values["kind"] == "erasure" and not values["confirm"]:
        errors["confirm"] = "missing"
    return values, errors


def _page(sub: dict, listed: list[dict], *, values: dict | None = None, errors: dict | None = None,
          status: int = 200):
    """The person's screenings with the request form (all ticked on a first visit)."""
    values = values or {"screening": [str(row["number"]) for row in listed], "kind": "", "channel": "",
                        "received_on": _today().isoformat(), "asked_by": "", "confirm": False}
    return render_template("staff/person.html", sub=sub, listed=listed, values=values, errors=errors or {},
                           kinds=store.KINDS, channels=store.CHANNELS, asked_by=store.ASKED_BY,
                           kind_labels=KIND_LABELS, channel_labels=CHANNEL_LABELS, asked_by_labels=ASKED_BY_LABELS,
                           today=_today().isoformat(), limited=len(listed) >= store.MAX_SCREENINGS,
                           form=RequestForm(formdata=None)), status


@bp.route("/submissions/<int:number>/person", methods=["GET", "POST"])
def person(number: int):
    """This person's screenings at the centre; POST records a request and answers it."""
    sub = staff._submission_or_404(number)
    listed = store.same_person(get_db(), sub, centre=staff.store().centre)
    if request.method == "GET":
        return _page(sub, listed)
    if not RequestForm().validate():        # a wrong CSRF token never gets here (CSRFProtect: 400)
        abort(400)
    by_number = {row["number"]: row for row in listed}
    values, errors = _read(request.form, by_number)
    if errors:
        return _page(sub, listed, values=values, errors=errors, status=422)
    data = store.DataRequest(values["kind"], values["channel"], values["received"],
                             values["asked_by"] == "on_behalf")
    ids = [by_number[n]["id"] for n in values["numbers"]]
    try:
        if data.kind == "erasure":
            _request_id, count = store.erase(get_db(), data, ids, g.staff, centre=staff.store().centre)
            return redirect(url_for("staff.dashboard", notice="request_erased", count=count))
        request_id = store.record_access(get_db(), data, ids, g.staff, centre=staff.store().centre)
    except store.Gone:
        # erased by someone else between the page and the POST: the list is read again
        listed = store.same_person(get_db(), sub, centre=staff.store().centre)
        return _page(sub, listed, values=values, errors={"screening": "gone"}, status=409)
    numbers = sorted(values["numbers"])
    return redirect(url_for(".printable", request_id=request_id, n=numbers, sig=_signature(request_id, numbers),
                            recorded=1))


def _signature(request_id: int, numbers) -> str:
    """A keyed hash of a request and the numbers of its screenings: the export pages' links carry
    it, so that a request's pages show the screenings ticked for it and no others (the request
    itself keeps only their count)."""
    message = f"data-request:{request_id}:{','.join(str(n) for n in sorted(numbers))}"
    return hmac.new(str(current_app.config["SECRET_KEY"]).encode(), message.encode(), hashlib.sha256).hexdigest()[:32]


def _access(request_id: int) -> list[dict]:
    """The screenings of a recorded access request named by the URL's numbers, or a 404."""
    numbers = request.args.getlist("n")
    if not numbers or not all(_is_number(n) for n in numbers):
        abort(404)
    if not hmac.compare_digest(request.args.get("sig", ""), _signature(request_id, {int(n) for n in numbers})):
        abort(404)
    rows = store.access_screenings(get_db(), request_id, [int(n) for n in numbers], centre=staff.store().centre)
    if rows is None:
        abort(404)
    return rows


@bp.get("/requests/<int:request_id>/print")
def printable(request_id: int):
    """Every screening of an access request to read or print: answers in words, outcome, reasons,
    status, decision and notes; and the link to the same as a CSV file. Audited."""
    rows = _access(request_id)
    rs, locale = staff.ruleset(), i18n.current()
    screenings = [{"sub": row, "service": rs.service(row["service"]),
                   "summary": reading.summary_rows(rs, row, locale), "answers": reading.answer_rows(rs, row),
                   "gone": reading.answered_questions(rs, row)[1]} for row in rows]
    store.record_download(get_db(), request_id, "print", len(rows), g.staff, centre=staff.store().centre)
    return render_template("staff/person_print.html", screenings=screenings, request_id=request_id,
                           numbers=[row["number"] for row in rows], sig=request.args["sig"],
                           recorded=request.args.get("recorded") == "1")


def _notes_cell(notes: list[dict], zone: str) -> str:
    """A screening's notes in one cell: each with its time, oldest first, a blank line between."""
    return "\n\n".join(f"{reading.spreadsheet_time(note['created_at'], zone)}: {note['body']}" for note in notes)


@bp.get("/requests/<int:request_id>/export.csv")
def export(request_id: int):
    """Every screening of an access request as one CSV file (the dashboard export's columns, in
    words, then the notes), in the staff member's language and spreadsheet separator. Audited."""
    rows = _access(request_id)
    words = staff.export_words()
    buffer = io.StringIO("\ufeff")      # the BOM: a spreadsheet then reads the file as UTF-8
    buffer.seek(0, io.SEEK_END)
    writer = csv.writer(buffer, delimiter=reading.SEPARATORS[staff.default_separator()])
    writer.writerow([reading.neutralise(h) for h in [*words.header(), str(_l("Notes"))]])
    for row in rows:
        # neutralised like the dashboard export: a cell that a spreadsheet would run as a formula is not
        writer.writerow([reading.neutralise(c) for c in [*words.cells(row), _notes_cell(row["notes"], words.zone)]])
    store.record_download(get_db(), request_id, "csv", len(rows), g.staff, centre=staff.store().centre)
    name = f"request-{request_id}-{datetime.now(ZoneInfo(words.zone)).date().isoformat()}.csv"
    return Response(buffer.getvalue(), content_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
