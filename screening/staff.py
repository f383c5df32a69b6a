"""The staff review pages: the dashboard of shared submissions, one submission with its notes,
status and decision, the CSV export, the audit trail and the rules pages.

Deny by default: `require_staff` runs before every view of this blueprint, so a view added later
without a decorator still needs a login. Views validate, call review.py (which holds the SQL) and
render; every successful POST redirects (post/redirect/get).

Scoped by centre: views reach the data only through `store()`, a review.CentreStore built from the
logged-in account's centre, so another centre's submission is a 404 as if it did not exist. Every
time shown to staff goes through the `staff_time` filter, in the centre's time zone, named.
"""
from __future__ import annotations

import csv
import io
from datetime import datetime

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, TextAreaField
from wtforms.validators import DataRequired, Length, ValidationError

from . import db as dbmod
from . import i18n, review
from .auth import admin_required, require_staff
from .characters import forbidden_characters
from .engine import AnswerErrors, question_text, screen
from .rules import RuleSet

bp = Blueprint("staff", __name__, url_prefix="/staff")
bp.before_request(require_staff)


def ruleset() -> RuleSet:
    """The rules loaded (and validated) at start-up."""
    return current_app.extensions["screening.rules"]


def centre_zone() -> str:
    """The time zone of the logged-in account's centre (the app's TIMEZONE if its file is gone)."""
    staff = g.get("staff")
    centre = current_app.extensions["screening.centres"].get(staff["centre"]) if staff else None
    return centre.timezone if centre is not None else current_app.config["TIMEZONE"]


def store() -> review.CentreStore:
    """The one way the views reach submissions, notes, counts, export, audit and erasure: narrowed
    to the logged-in account's centre (require_staff has made sure there is one)."""
    if not g.staff.get("centre"):
        # an account written by an older version during an upgrade, before it was given a centre:
        # it may see nothing rather than everything
        abort(403)
    if "centre_store" not in g:
        g.centre_store = review.CentreStore(dbmod.get_db(), g.staff["centre"], centre_zone())
    return g.centre_store


def zone_name(moment: datetime) -> str:
    """The zone of a local time as people read it: its abbreviation (CET, CEST), or its UTC offset
    when the zone has none (some write '-03')."""
    abbreviation = moment.tzname() or ""
    offset = moment.strftime("%z")
    return abbreviation if abbreviation.isalpha() else f"UTC{offset[:3]}:{offset[3:]}"


@bp.app_template_filter("staff_time")
def staff_time(iso: str | None) -> str:
    """A stored UTC time as staff read it: in their centre's time zone, with the zone named
    ('2026-12-01 23:10 CET'), so nobody has to guess."""
    moment = review.local_time(iso, centre_zone())
    return f"{moment:%Y-%m-%d %H:%M} {zone_name(moment)}" if moment else ""


@bp.context_processor
def staff_helpers():
    """Staff templates read the rules and the logged-in staff member."""
    return {"rs": ruleset(), "staff": g.get("staff")}


def _strip(value):
    """Form filter: surrounding spaces are not part of a note."""
    return value.strip() if isinstance(value, str) else value


class StatusForm(FlaskForm):
    """Status and decision of a submission. Labels live in the template."""

    status = SelectField(choices=list(dbmod.STATUSES), validators=[DataRequired()])
    decision = SelectField(choices=["", *review.DECISIONS])


def _no_forbidden_characters(form, field):
    """Refuse control and invisible format characters (tab and line breaks stay): they would reach
    the pages and the CSV as typed. The message's wording lives in the template ('characters')."""
    if field.data and forbidden_characters(field.data, multiline=True):
        raise ValidationError("characters")


class NoteForm(FlaskForm):
    body = TextAreaField(filters=[_strip], validators=[DataRequired(), Length(max=review.NOTE_MAX),
                                                       _no_forbidden_characters])


class EraseForm(FlaskForm):
    confirm = BooleanField(validators=[DataRequired()])


# --- dashboard and export --------------------------------------------------------------------------

def _services() -> set[str]:
    """The service slugs a filter may name."""
    return set(ruleset().services_by_slug)


def _dashboard(filters, errors, page=None, status=200):
    """Render the dashboard; without a page (bad filter) only the form with its errors."""
    counts = store().attention_counts()
    return render_template("staff/dashboard.html", filters=filters, errors=errors, page=page, counts=counts,
                           args=request.args, statuses=dbmod.STATUSES, notice=request.args.get("notice")), status


@bp.get("/")
def dashboard():
    """Shared submissions, newest first, filtered, 50 a page."""
    filters, errors = review.parse_filters(request.args, _services())
    before, after, page_errors = review.parse_page(request.args)
    errors.update(page_errors)
    if errors:
        return _dashboard(filters, errors, status=400)
    page = store().list_page(filters, before=before, after=after)
    return _dashboard(filters, errors, page)


EXPORT_CHUNK = 64 * 1024


@bp.get("/export.csv")
def export():
    """The dashboard's current filter as CSV, streamed a page of rows at a time."""
    filters, errors = review.parse_filters(request.args, _services())
    if errors:
        return _dashboard(filters, errors, status=400)
    scoped = store()
    scoped.record_export(filters, g.staff)
    question_ids = [q.id for q in ruleset().questions]
    path = current_app.config["DATABASE"]

    def generate():
        """CSV text in chunks of about 64 KiB, not one small write per row."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(review.export_header(question_ids))
        # a fresh connection: each page is its own short read, none stays open for the download
        for row in scoped.export_rows(lambda: dbmod.connect(path), filters, question_ids):
            writer.writerow(row)
            if buffer.tell() >= EXPORT_CHUNK:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    return Response(stream_with_context(generate()), content_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="submissions.csv"'})


# --- one submission ---------------------------------------------------------------------------------

def _submission_or_404(submission_id: int) -> dict:
    """The centre's submission, or a 404 page (also when it is another centre's)."""
    submission = store().get_submission(submission_id)
    if submission is None:
        abort(404)
    return submission


def _detail(submission, *, status_form=None, note_form=None, erase_form=None, status=200):
    """Render one submission; forms not given are fresh (not filled from another form's POST)."""
    rs = ruleset()
    status_form = status_form or StatusForm(formdata=None, data={
        "status": submission["status"], "decision": submission["decision"] or ""})
    return render_template(
        "staff/submission.html", sub=submission, service=rs.service(submission["service"]),
        answers=review.answer_rows(rs, submission), gone=review.answered_questions(rs, submission)[1],
        fired=review.fired_rows(rs, submission), rejudged=review.rejudge(rs, submission),
        notes=store().list_notes(submission["id"]), status_form=status_form,
        note_form=note_form or NoteForm(formdata=None), erase_form=erase_form or EraseForm(formdata=None),
        statuses=dbmod.STATUSES, decisions=("", *review.DECISIONS), saved=request.args.get("saved")), status


@bp.get("/submissions/<int:submission_id>")
def submission(submission_id: int):
    """Everything about one submission; the view is audited."""
    sub = _submission_or_404(submission_id)
    store().record_view(sub, g.staff)
    return _detail(sub)


@bp.post("/submissions/<int:submission_id>/status")
def set_status(submission_id: int):
    """Save status and decision (audited), then back to the submission."""
    sub = _submission_or_404(submission_id)
    form = StatusForm()
    if not form.validate():
        return _detail(sub, status_form=form, status=422)
    if store().set_status(submission_id, form.status.data, form.decision.data or None, g.staff) is None:
        abort(404)
    return redirect(url_for(".submission", submission_id=submission_id, saved="status"))


@bp.post("/submissions/<int:submission_id>/notes")
def add_note(submission_id: int):
    """Add a note (audited, not its text), then back to the notes."""
    sub = _submission_or_404(submission_id)
    form = NoteForm()
    if not form.validate():
        return _detail(sub, note_form=form, status=422)
    if not store().add_note(submission_id, form.body.data, g.staff):
        abort(404)
    return redirect(url_for(".submission", submission_id=submission_id, saved="note", _anchor="notes"))


@bp.post("/submissions/<int:submission_id>/erase")
@admin_required
def erase(submission_id: int):
    """Erase a submission and its notes for good (the right to erasure); admins only."""
    sub = _submission_or_404(submission_id)
    form = EraseForm()
    if not form.validate():
        return _detail(sub, erase_form=form, status=422)
    if store().erase(submission_id, g.staff) is None:
        abort(404)
    return redirect(url_for(".dashboard", notice="erased"))


# --- audit trail -----------------------------------------------------------------------------------

@bp.get("/audit")
@admin_required
def audit():
    """The audit trail, newest first, optionally for one reference."""
    errors = {}
    typed = (request.args.get("reference") or "").strip()
    reference = dbmod.normalize_reference(typed) if typed else ""
    if typed and not reference:
        errors["reference"] = review.INVALID
    before_text = request.args.get("before") or ""
    before_id = review.parse_id(before_text)
    if before_text and before_id is None:
        errors["before"] = review.INVALID
    if errors:
        return render_template("staff/audit.html", rows=[], older=None, errors=errors, typed=typed,
                               reference=reference), 400
    rows, older = store().list_audit(reference=reference, before_id=before_id)
    return render_template("staff/audit.html", rows=rows, older=older, errors=errors, typed=typed,
                           reference=reference, paged=before_id is not None)


# --- rules -----------------------------------------------------------------------------------------

@bp.get("/rules")
def rules():
    """The active questions, rules and suggestions, with the rules_version they make."""
    return render_template("staff/rules.html", rs=ruleset())


@bp.route("/rules/simulate", methods=["GET", "POST"])
def simulate():
    """Try answers on the current rules; stores nothing, audits nothing (no client data)."""
    rs = ruleset()
    slug = request.values.get("service") or rs.services[0].slug
    service = rs.service(slug)
    decision, errors, status = None, {}, 200
    if service is None:
        errors["service"] = review.INVALID
        service, status = rs.services[0], 422
    raw = {q.id: (request.form.getlist(q.id) if q.type == "multi" else request.form.get(q.id))
           for q in rs.questions}
    if request.method == "POST" and not errors:
        try:
            decision = screen(rs, slug, raw)
        except AnswerErrors as e:
            errors, status = e.errors, 422
    questions = [(q, question_text(rs, q, service, i18n.current())) for q in rs.questions]
    return render_template("staff/simulate.html", rs=rs, service=service, questions=questions,
                           raw=raw if request.method == "POST" else {}, errors=errors,
                           decision=decision), status
