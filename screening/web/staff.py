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
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Response,
    abort,
    after_this_request,
    current_app,
    g,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, TextAreaField
from wtforms.validators import DataRequired, Length, ValidationError

from ..core import reading
from ..core.characters import forbidden_characters
from ..core.engine import AnswerErrors, describe_condition, question_text, screen
from ..core.rules import RuleSet
from ..store import accounts, review, withdrawal
from ..store import db as dbmod
from . import auth, database, i18n, public, upkeep
from . import filters as params
from .auth import admin_required, require_staff, staff_centre
from .database import get_db

bp = Blueprint("staff", __name__, url_prefix="/staff")


@bp.before_request
def guard():
    """Deny by default: nothing passes without a live staff session (auth.require_staff). A note
    posted after the session ended is not lost: the login form comes back carrying it (a hidden
    field, never a URL or the cookie session) and posts to the submission page, which logs in and
    shows the note in its box, not yet added. Status changes and erasure are not carried: they are
    chosen again on the page (an erasure must be confirmed afresh, and a colleague may have changed
    the status meanwhile)."""
    if g.get("staff") is None and request.method == "POST" and request.endpoint in ("staff.add_note",
                                                                                     "staff.submission"):
        typed = request.form.get("body" if request.endpoint == "staff.add_note" else "note") or ""
        page = url_for(".submission", **request.view_args)
        if request.endpoint == "staff.add_note" and typed.strip():
            return auth.login_page(status=401, action=page, note=typed)
        if request.endpoint == "staff.submission":
            token = auth.check_login(away=True, action=page, note=typed)
            if not isinstance(token, str):
                return token
            after_this_request(lambda response: auth.start_session(response, token))
    return require_staff()


def ruleset() -> RuleSet:
    """The rule set of the logged-in account's centre: the shared rules plus its own, the set its
    clients are screened with (public.rules_for), so that re-judging, the rules page, the simulator
    and the CSV say what the centre's own policy says (the shared set when its file is gone)."""
    return public.rules_for(staff_centre())


# the words for the stored codes, shared by the pages and the CSV export
STATUS_LABELS = {"new": _l("New"), "reviewed": _l("Reviewed"), "contacted": _l("Contacted"), "closed": _l("Closed")}
DECISION_LABELS = {"booking_fine": _l("Booking is fine"), "adapt_session": _l("Adapt the session"),
                   "postpone": _l("Postpone the session"),
                   "consult_professional": _l("Ask the client to see a health professional")}
# the kinds of question, in words, on the rules pages
QUESTION_TYPE_LABELS = {"yes_no_unsure": _l("Yes, no or not sure"), "yes_no": _l("Yes or no"),
                        "single": _l("One choice"), "multi": _l("Several choices"), "text": _l("Free text")}
EXPORT_HEADINGS = {
    "reference": _l("Reference"), "service": _l("Service (code)"), "service_name": _l("Service"),
    "outcome": _l("Outcome (code)"), "outcome_label": _l("Outcome"), "status": _l("Status (code)"),
    "status_label": _l("Status"), "decision": _l("Decision (code)"), "decision_label": _l("Decision"),
    "name": _l("Name"), "contact": _l("E-mail or phone"), "fired_rules": _l("Rules (ids)"),
    "reasons": _l("Reasons"), "rules_version": _l("Rules version")}


def centre_zone() -> str:
    """The time zone of the logged-in account's centre (the app's TIMEZONE if its file is gone)."""
    centre = staff_centre()
    return centre.timezone if centre is not None else current_app.config["TIMEZONE"]


def store() -> review.CentreStore:
    """The one way the views reach submissions, notes, counts, export, audit and erasure: narrowed
    to the logged-in account's centre (require_staff has made sure there is one)."""
    if not g.staff.get("centre"):
        # an account written by an older version during an upgrade, before it was given a centre:
        # it may see nothing rather than everything
        abort(403)
    if "centre_store" not in g:
        g.centre_store = review.CentreStore(get_db(), g.staff["centre"], centre_zone())
    return g.centre_store


def zone_abbreviation(moment: datetime) -> str:
    """The zone of a local time as people read it: its abbreviation (CET, CEST), or its UTC offset
    when the zone has none (some write '-03')."""
    abbreviation = moment.tzname() or ""
    offset = moment.strftime("%z")
    return abbreviation if abbreviation.isalpha() else f"UTC{offset[:3]}:{offset[3:]}"


@bp.app_template_filter("staff_time")
def staff_time(iso: str | None) -> str:
    """A stored UTC time as staff read it: in their centre's time zone, with the zone named
    ('2026-12-01 23:10 CET'), so nobody has to guess."""
    moment = reading.local_time(iso, centre_zone())
    return f"{moment:%Y-%m-%d %H:%M} {zone_abbreviation(moment)}" if moment else ""


@bp.context_processor
def staff_helpers():
    """Staff templates read the rules, the logged-in staff member and the words for the codes."""
    rs, centre = ruleset(), staff_centre()
    return {"rs": rs, "staff": g.get("staff"), "staff_centre": centre, "status_labels": STATUS_LABELS,
            "kept_days": upkeep.retention_days(current_app, centre),
            "decision_labels": DECISION_LABELS, "question_types": QUESTION_TYPE_LABELS,
            "describe": lambda condition: describe_condition(rs, condition, i18n.current())}


# a client's contact as a mailto: or tel: link, on the dashboard and the submission page
bp.add_app_template_filter(reading.contact_href, "contact_href")


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


def _dashboard(filters, errors, page=None, status=200, search_id=""):
    """Render the dashboard; without a page (bad filter) only the form with its errors. `keep` is
    what the page links carry: the non-personal filters and the search's id, never its words."""
    counts = store().attention_counts()
    chosen = request.args.get("sep")
    separator = chosen if chosen in reading.SEPARATORS else default_separator()
    # screenings the clients took back lately (reference and when: nothing else is left of them)
    withdrawn = withdrawal.recent(get_db(), centre=store().centre)
    keep = {**filters.params(), **({"search": search_id} if search_id and filters.q else {})}
    return render_template("staff/dashboard.html", filters=filters, errors=errors, page=page, counts=counts,
                           args=request.form if request.method == "POST" else request.args,
                           statuses=dbmod.STATUSES, notice=request.args.get("notice"),
                           separator=separator, withdrawn=withdrawn, keep=keep), status


def _session_token() -> str | None:
    """The staff session's cookie token: the search's words are kept with that session."""
    return request.cookies.get(auth.COOKIE)


def _filters_of_url():
    """The dashboard's or export's filter from the URL: the non-personal fields, and the words of
    the search the URL names by its id (`search`), read back from this session. Return (filters,
    errors, search id); a search this session does not hold is refused at the search field."""
    search_id = request.args.get("search") or ""
    words, errors = "", {}
    if search_id:
        found = review.load_search(get_db(), _session_token(), search_id)
        if found is None:
            errors["q"] = params.EXPIRED
        words = found or ""
    filters, more = params.parse_filters(request.args, _services(), words)
    errors.update(more)
    return filters, errors, search_id


@bp.get("/")
def dashboard():
    """Shared submissions, newest first, filtered, 50 a page. A URL's `q` (the old GET search, or a
    bookmark of it) is not read: the words would be in the access log; it is dropped (303)."""
    if "q" in request.args:
        keep = [(k, v) for k, v in request.args.items(multi=True) if k not in ("q", "search")]
        return redirect(url_for(".dashboard") + (f"?{urlencode(keep)}" if keep else ""), 303)
    filters, errors, search_id = _filters_of_url()
    before, after, page_errors = params.parse_page(request.args)
    errors.update(page_errors)
    if errors:
        return _dashboard(filters, errors, status=400)
    page = store().list_page(filters, before=before, after=after)
    return _dashboard(filters, errors, page, search_id=search_id)


@bp.post("/")
def search():
    """The dashboard's filter form, posted (with its CSRF token) so that the search's words (a
    client's name, e-mail or phone) never reach a URL: they are kept with the staff session and
    the dashboard is shown at a URL that names them by a random id (post/redirect/get)."""
    filters, errors = params.parse_filters(request.form, _services())
    if errors:
        return _dashboard(filters, errors, status=400)
    keep = filters.params()
    if filters.q:
        keep["search"] = review.save_search(get_db(), _session_token(), filters.q)
    return redirect(url_for(".dashboard", **keep), 303)


EXPORT_CHUNK = 64 * 1024


def default_separator() -> str:
    """The separator a spreadsheet in the staff member's language expects: Catalan and Spanish
    ones use the comma for decimals, so they split columns on ';'."""
    return "comma" if i18n.current() == "en" else "semicolon"


def export_words() -> reading.ExportWords:
    """The export's words: the staff member's language, the centre's time zone."""
    zone = centre_zone()
    headings = {key: str(text) for key, text in EXPORT_HEADINGS.items()}
    headings["created_at"] = _("Received (%(zone)s)", zone=zone)
    return reading.ExportWords(ruleset(), i18n.current(), zone, headings,
                              {k: str(v) for k, v in STATUS_LABELS.items()},
                              {k: str(v) for k, v in DECISION_LABELS.items()},
                              # the skin question's {areas}, in a column over every service
                              any_areas=_("the areas the massage works"))


@bp.get("/export.csv")
def export():
    """The dashboard's current filter (its search named by its id) as CSV for a spreadsheet (UTF-8
    with BOM, the separator of the staff member's language unless chosen), streamed a page of rows
    at a time."""
    if "q" in request.args:     # words in a URL: refused, never read (see dashboard)
        return _dashboard(review.Filters(), {"q": params.EXPIRED}, status=400)
    filters, errors, search_id = _filters_of_url()
    separator = request.args.get("sep") or default_separator()
    if separator not in reading.SEPARATORS:
        errors["sep"] = params.INVALID
    if errors:
        page = None if set(errors) - {"sep"} else store().list_page(filters)
        return _dashboard(filters, errors, page, status=400, search_id=search_id)
    scoped = store()
    scoped.record_export(filters, g.staff)
    words = export_words()
    app = current_app._get_current_object()

    def generate():
        """CSV text in chunks of about 64 KiB, not one small write per row."""
        # the BOM tells a spreadsheet the file is UTF-8 (else accents arrive as 'NÃºria')
        buffer = io.StringIO("\ufeff")
        buffer.seek(0, io.SEEK_END)
        writer = csv.writer(buffer, delimiter=reading.SEPARATORS[separator])
        writer.writerow([reading.neutralise(h) for h in words.header()])
        # a fresh connection: each page is its own short read, none stays open for the download
        for row in scoped.export_rows(lambda: database.open_for(app), filters, words):
            writer.writerow(row)
            if buffer.tell() >= EXPORT_CHUNK:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    name = reading.export_file_name(datetime.now(ZoneInfo(words.zone)).date())
    return Response(stream_with_context(generate()), content_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


# --- one submission ---------------------------------------------------------------------------------

def _submission_or_404(number: int) -> dict:
    """The centre's submission with this number (the centre's own numbering, which says nothing of
    other centres), or a 404 page."""
    submission = store().numbered(number)
    if submission is None:
        abort(404)
    return submission


def _detail(submission, *, status_form=None, note_form=None, erase_form=None, status=200, resumed=False):
    """Render one submission; forms not given are fresh (not filled from another form's POST)."""
    rs = ruleset()
    status_form = status_form or StatusForm(formdata=None, data={
        "status": submission["status"], "decision": submission["decision"] or ""})
    return render_template(
        "staff/submission.html", sub=submission, service=rs.service(submission["service"]),
        summary=reading.summary_rows(rs, submission, i18n.current()),
        answers=reading.answer_rows(rs, submission), gone=reading.answered_questions(rs, submission)[1],
        rejudged=reading.rejudge(rs, submission),
        notes=store().list_notes(submission["id"]), history=store().status_history(submission["id"]),
        status_form=status_form,
        note_form=note_form or NoteForm(formdata=None), erase_form=erase_form or EraseForm(formdata=None),
        statuses=dbmod.STATUSES, decisions=("", *review.DECISIONS), saved=request.args.get("saved"),
        resumed=resumed), status


@bp.route("/submissions/<int:number>", methods=["GET", "POST"])
def submission(number: int):
    """Everything about one submission; the view is audited. POST (after a login that carried a
    note typed when the session ended, see guard): the same page with the note in its box, not yet
    added (the member adds it with the page's fresh token)."""
    sub = _submission_or_404(number)
    store().record_view(sub, g.staff)
    note = (request.form.get("note") or "") if request.method == "POST" else ""
    if note:
        return _detail(sub, note_form=NoteForm(formdata=None, data={"body": note}), resumed=True)
    return _detail(sub)


@bp.post("/submissions/<int:number>/status")
def set_status(number: int):
    """Save status and decision (audited), then back to the submission."""
    sub = _submission_or_404(number)
    form = StatusForm()
    if not form.validate():
        return _detail(sub, status_form=form, status=422)
    if store().set_status(sub["id"], form.status.data, form.decision.data or None, g.staff) is None:
        abort(404)
    return redirect(url_for(".submission", number=number, saved="status"))


@bp.post("/submissions/<int:number>/notes")
def add_note(number: int):
    """Add a note (audited, not its text), then back to the notes."""
    sub = _submission_or_404(number)
    form = NoteForm()
    if not form.validate():
        return _detail(sub, note_form=form, status=422)
    if not store().add_note(sub["id"], form.body.data, g.staff):
        abort(404)
    return redirect(url_for(".submission", number=number, saved="note", _anchor="notes"))


@bp.post("/submissions/<int:number>/erase")
@admin_required
def erase(number: int):
    """Erase a submission and its notes for good (the right to erasure); admins only."""
    sub = _submission_or_404(number)
    form = EraseForm()
    if not form.validate():
        return _detail(sub, erase_form=form, status=422)
    if store().erase(sub["id"], g.staff) is None:
        abort(404)
    return redirect(url_for(".dashboard", notice="erased"))


# --- audit trail -----------------------------------------------------------------------------------

# the words for every action the audit trail knows (reading.AUDIT_ACTIONS): the filter's choices,
# and the entry's "what" when its detail adds nothing to say
AUDIT_ACTION_LABELS = {
    "view": _l("Viewed"), "status": _l("Changed the status or decision"), "note": _l("Added a note"),
    "export": _l("Exported to a spreadsheet"), "erase": _l("Erased"), "purge": _l("Deleted old shared screenings"),
    "login": _l("Logged in"), "logout": _l("Logged out"), "login_failed": _l("Failed to log in"),
    "login_locked": _l("Login refused: account locked"),
    "login_address_locked": _l("Login refused: too many failures from this address"),
    "login_device_locked": _l("Login refused: too many failures from this browser"),
    "login_code_failed": _l("Wrong code from the authenticator app"),
    "login_code_locked": _l("Login refused: too many wrong codes"),
    "recovery_code_used": _l("Logged in with a recovery code"),
    "password_changed": _l("Changed their password"),
    "password_change_refused": _l("Password change refused: wrong current password"),
    "session_ended": _l("Ended one of their sessions"), "sessions_ended": _l("Ended all their other sessions"),
    "second_factor_set": _l("Set up a second factor"), "second_factor_removed": _l("Removed a second factor"),
    "password_reset_requested": _l("Asked for a password reset"),
    "password_reset_sent": _l("Sent a password reset link"),
    "password_reset_done": _l("Set a new password with a reset link"),
    "staff_invited": _l("Invited a new member"), "invitation_cancelled": _l("Cancelled an invitation"),
    "invitation_accepted": _l("Accepted an invitation"), "role_changed": _l("Changed a member's role"),
    "staff_deactivated": _l("Deactivated an account"), "staff_reactivated": _l("Reactivated an account"),
    "throttle_lifted": _l("Lifted a login throttle"),
    "withdrawn": _l("Withdrawn by the client"), "data_request": _l("Recorded a person's request"),
    "data_request_export": _l("Gave a person a copy of their screenings"),
}
# how a person's request is worded in the audit's details (store/requests.py's codes)
REQUEST_LABELS = {
    "access": _l("to see their data"), "erasure": _l("to erase their data"),
    "phone": _l("by phone"), "email": _l("by e-mail"), "in_person": _l("in person"), "post": _l("by post"),
    "csv": _l("CSV file"), "print": _l("printable page"),
}
AUDIT_GROUP_LABELS = {"screenings": _l("Shared screenings"), "logins": _l("Logging in"), "accounts": _l("Accounts")}
ROLE_LABELS = {"admin": _l("Admin"), "staff": _l("Staff member")}


@bp.get("/audit")
@admin_required
def audit():
    """The audit trail, newest first, narrowed by reference, who did it, action and days (all
    combined, and kept by the page links). Who is named by the account's handle, never its id."""
    key = auth.handle_key()
    members = store().audit_members()
    for member in members:
        member["handle"] = accounts.staff_handle(key, member["id"])
    filters, errors = params.parse_audit_filters(request.args, {m["handle"]: m["id"] for m in members})
    before_text = request.args.get("before") or ""
    before = params.parse_audit_cursor(before_text)
    if before_text and before is None:
        errors["before"] = params.INVALID
    # the form shows each field as it was sent; the page links carry the filter as understood
    shown = {name: request.args.get(name) or "" for name in ("reference", "member", "action", "from", "to")}
    keep = {name: value for name, value in (
        ("reference", filters.reference), ("member", shown["member"].strip() if filters.staff_id is not None else ""),
        ("action", filters.action), ("from", filters.date_from), ("to", filters.date_to)) if value}
    actions = [(AUDIT_GROUP_LABELS[group], [(code, AUDIT_ACTION_LABELS[code]) for code in codes])
               for group, codes in reading.AUDIT_ACTION_GROUPS]
    page = {"members": members, "actions": actions,
            "action_labels": AUDIT_ACTION_LABELS, "role_labels": ROLE_LABELS, "request_labels": REQUEST_LABELS,
            "shown": shown, "keep": keep,
            "filters": filters, "errors": errors}
    if errors:
        return render_template("staff/audit.html", rows=[], older=None, **page), 400
    rows, older = store().list_audit(filters, before=before)
    for row in rows:
        row["words"] = reading.audit_words(row)
    return render_template("staff/audit.html", rows=rows, older=older, paged=before is not None, **page)


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
        errors["service"] = params.INVALID
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
