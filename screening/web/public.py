"""The client's side: the services, the questionnaire, and the result next to the service.

Every page exists twice: un-prefixed for the default centre (SCREENING_DEFAULT_CENTRE, or the only
one) and under /c/<centre>/ for any centre. Each view has both rules under one endpoint, so
url_for('public.service', ...) inside a centre's page stays under its prefix (add_centre), and
templates never need to know which form they were reached by. /centres is the directory.

The result is the response to the POST and has no URL of its own: nothing of it is kept in the
cookie session or reachable later. Check only stores nothing and is never limited; sharing stores
once per form and content (nonce + fingerprint), at most SHARE_LIMIT_PER_HOUR times per address.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
import unicodedata
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

from babel.dates import get_timezone_name
from flask import Blueprint, abort, current_app, g, has_request_context, render_template, request
from flask_wtf.csrf import CSRFError
from itsdangerous import BadData, URLSafeTimedSerializer
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import NotFound

from ..core import engine
from ..core.rules import LOCALES, RuleSet
from ..store import db, withdrawal
from . import database, forms, i18n, notify, parts, upkeep
from .database import get_db

bp = Blueprint("public", __name__)
log = logging.getLogger(__name__)


def rules_for(centre=None) -> RuleSet:
    """The rule set a centre screens with: the shared rules plus its own, built once at start-up
    (screening/core/centres.py rule_sets); the shared rules when there is no centre."""
    if centre is None or not centre.extra:      # no rules of its own: the shared set itself
        return current_app.extensions["screening.rules"]
    return current_app.extensions["screening.centre_rules"][centre.slug]


def ruleset() -> RuleSet:
    """The current centre's rule set (its own rules added to the shared ones)."""
    return rules_for(current_centre())


def current_centre():
    """The centre this request serves: g.centre on the /c/<centre>/ routes, else the default
    centre (SCREENING_DEFAULT_CENTRE, or the only one), else None."""
    centre = g.get("centre")
    if isinstance(centre, str):     # a slug rather than the Centre itself
        centre = current_app.extensions["screening.centres"].get(centre)
    return centre if centre is not None else current_app.extensions.get("screening.default_centre")


def locale() -> str:
    """The page's language (i18n.select_language); rule texts missing in it fall back to English."""
    return i18n.current()


def centres() -> dict:
    """Every centre, by slug, in the order of their names (screening/core/centres.py)."""
    return current_app.extensions["screening.centres"]


class NotOffered(NotFound):
    """A service that exists, but not at this centre (or no centre was chosen): a 404 page that
    links to the centres that offer it."""

    def __init__(self, service, offering):
        super().__init__()
        self.service, self.offering = service, offering


def service_or_404(slug: str):
    """The service, when the current centre offers it; else a 404 (NotOffered when it exists)."""
    service = ruleset().service(slug)
    if service is None:
        abort(404)
    centre = current_centre()
    if centre is None or not centre.offers(slug):
        raise NotOffered(service, [c for c in centres().values() if c.offers(slug)])
    return service


@bp.url_value_preprocessor
def pick_centre(endpoint, values):
    """/c/<centre>/...: the centre goes to g.centre (views never see it); an unknown one is a 404."""
    if values and "centre" in values:
        slug = values.pop("centre")
        centre = centres().get(slug)
        if centre is None:
            g.unknown_centre = True     # its 404 page must not show the default centre as this one
            abort(404)
        g.centre = centre


@bp.url_defaults
def add_centre(endpoint, values):
    """Inside /c/<centre>/ pages, every link to a public page stays under that centre's prefix."""
    centre = g.get("centre") if g else None
    if centre is not None and "centre" not in values and endpoint in PREFIXED:
        values["centre"] = centre.slug


@bp.app_errorhandler(NotOffered)
def not_offered(e: NotOffered):
    """The 404 page for a service this centre does not offer, with links to the centres that do."""
    return render_template("error.html", status=404, code="not_offered", service=e.service,
                           offering=e.offering), 404


def fold(text: str) -> str:
    """Text for matching: case and accents ignored ("Núria" and "NURIA" both give "nuria")."""
    return "".join(ch for ch in unicodedata.normalize("NFKD", text.casefold()) if not unicodedata.combining(ch))


@bp.app_context_processor
def template_helpers():
    """Let templates read translated texts: t(text) for a Text, txt('key') for rules/texts.toml."""
    current = current_centre()       # once per render, as the language: every page of a result reads them
    loc, rs = locale(), rules_for(current)
    centre = _page_centre(current)
    return {"t": lambda text: text.get(loc) if text is not None else "",
            "txt": lambda key: rs.texts[key].get(loc), "locale": loc, "ruleset": rs,
            "page_centre": centre, "several_centres": len(centres()) > 1,
            # how many days the page's centre keeps a shared screening (the consent and the result say it)
            "kept_days": upkeep.retention_days(current_app, centre)}


def _page_centre(current):
    """The centre whose name and contact the page shows: the current one on public pages (error
    pages included), none on staff pages (they say whose staff they are) or without a request."""
    if not has_request_context():
        return None
    path = request.path
    if path.startswith(("/staff", "/api/")):
        return None
    if request.endpoint == "public.directory" or g.get("unknown_centre"):
        return None                     # the directory speaks for no one centre
    return current


@bp.get("/")
@bp.get("/c/<centre>/")
def index():
    """The services of the current centre; with several centres and no default, the directory."""
    centre = current_centre()
    if centre is None:
        return directory()
    return render_template("public/index.html", services=[s for s in ruleset().services if centre.offers(s.slug)])


DIRECTORY_PAGE = 50      # centres per page of the directory (an installation may list a thousand)


@bp.get("/centres")
def directory():
    """The directory of centres, searchable by name, address (town, postcode) and the name of any
    massage they offer, in any of our languages, and by service; a GET form."""
    rs = ruleset()
    query = (request.args.get("q") or "").strip()[:100]
    service = request.args.get("service") or ""
    if rs.service(service) is None:
        service = ""                     # an unknown service in the URL: no filter, not an error
    words = search_key(query).split()
    found = []
    for centre in centres().values():
        if service and not centre.offers(service):
            continue
        if all(word in _directory_text(centre) for word in words):
            found.append((centre, [rs.service(slug) for slug in centre.services]))
    pages = max(1, -(-len(found) // DIRECTORY_PAGE))
    page = request.args.get("page", "1")
    page = min(int(page), pages) if page.isdigit() and int(page) >= 1 else 1
    return render_template("public/centres.html", found=found[(page - 1) * DIRECTORY_PAGE:page * DIRECTORY_PAGE],
                           matches=len(found), page=page, pages=pages, query=query, service=service,
                           services=rs.services, total=len(centres()))


def search_key(text: str) -> str:
    """Text as the directory compares it: folded (case and accents), the Catalan middle dot,
    apostrophes and dots dropped, hyphens as spaces, and doubled letters written once, so that
    "masatge" finds "massatge", "col·legi" finds "colegio"'s "coleg" and "lhospitalet" finds
    "L'Hospitalet"."""
    folded = fold(text).translate(_DROPPED)
    return _DOUBLED.sub(r"\1", folded)


_DROPPED = str.maketrans({"·": "", ".": "", "'": "", "’": "", "-": " "})
_DOUBLED = re.compile(r"(\w)\1+")


def _directory_text(centre) -> str:
    """What a centre is found by: its name, its address and the names of the massages it offers in
    every language (a client who reads the page in Spanish may still type "massatge"). Built once
    per centre and rule set."""
    rs = ruleset()
    cache = current_app.extensions.setdefault("screening.directory_text", {})
    key = (centre.slug, id(rs))
    if key not in cache:
        names = [rs.service(slug).name.get(loc) for slug in centre.services for loc in LOCALES]
        cache[key] = search_key(" ".join([centre.name, centre.address, *names]))
    return cache[key]


@bp.get("/services/<slug>")
@bp.get("/c/<centre>/services/<slug>")
def service(slug):
    # the same for every client of the centre, in each language: rendered once (parts.page)
    return parts.page("public/service.html", static={"service": service_or_404(slug)}, client={}, dynamic=())


@bp.get("/healthz")
def healthz():
    db.check_health(get_db())   # StorageError becomes a 503 in security.py
    return "ok", 200, {"Content-Type": "text/plain; charset=utf-8"}


def _render_form(service, form=None, *, errors=None, status=200, expired=False):
    """The questionnaire: blank (no `form`: a new nonce), or shown again with what the client
    typed in `form` (its nonce kept), its errors, or after an expired page. A blank one is the
    client's only in its tokens; one shown again also in its questions and notices (parts.page)."""
    rs, loc = ruleset(), locale()
    static = {"service": service, "maxlength": forms.MAXLENGTH,
              "questions": [(q, engine.question_text(rs, q, service, loc)) for q in rs.questions],
              "offered": {q.id: rs.options_for(q, service) for q in rs.questions if q.options}}
    if form is None:
        static.update(values={}, errors={}, expired=False)
        return parts.page("public/questionnaire.html", static=static, client={"nonce": forms.new_nonce()},
                          dynamic=BLANK_FORM_BLOCKS), status
    client = {"nonce": forms.nonce_of(form), "values": forms.typed(form, rs), "errors": errors or {},
              "expired": expired, "share_messages": forms.SHARE_MESSAGES}
    return parts.page("public/questionnaire.html", static=static, client=client, dynamic=FILLED_FORM_BLOCKS), status


# the questionnaire's blocks that are the client's (templates/public/questionnaire.html)
BLANK_FORM_BLOCKS = ("form_tokens",)
FILLED_FORM_BLOCKS = ("title", "notices", "form_tokens", "health_questions", "wish_questions", "share_part")


@bp.get("/screening/<slug>")
@bp.get("/c/<centre>/screening/<slug>")
def questionnaire(slug):
    return _render_form(service_or_404(slug))


@bp.post("/screening/<slug>")
@bp.post("/c/<centre>/screening/<slug>")
def submit(slug):
    service = service_or_404(slug)
    rs = ruleset()
    if RESULT_COPY in request.form:
        if request.form.get("edit"):
            # "Answer the questions again" on a result posts the page's signed copy: the form comes
            # back filled in from it, judged and stored nowhere
            return _render_form(service, forms.questionnaire_form_class(rs)(formdata=_answers_in_copy(service)))
        # the language switch on a result: the same result again, from the page's signed copy alone
        return _render_result(service, **_read_result_copy(service))
    # the form's fields read the POST as they are made (CSRF was already checked app-wide; whether
    # the answers are valid is the engine's to say, in _checked)
    form = forms.questionnaire_form_class(rs)()
    switching = SWITCH in request.form
    if request.form.get("edit") or switching:
        # the language switch on the questionnaire posts what was typed (and so did "Answer again"
        # on results before it posted their copy): the form comes back filled in, from this POST
        # alone (never from storage, never in a URL); nothing is judged or stored
        # a form shown with its errors comes back with them, in the new language
        errors = _checked(rs, service, form)[1] if switching and request.form.get("errors_shown") else {}
        return _render_form(service, form, errors=errors, status=422 if errors else 200)
    answers, errors = _checked(rs, service, form)
    if errors:
        return _render_form(service, form, errors=errors, status=422)

    centre = current_centre()
    decision = engine.evaluate(rs, service, answers)
    # suggest only services this centre offers: a link to another centre's massage would be a 404
    decision = replace(decision, suggestions=tuple(s for s in decision.suggestions if centre.offers(s.service)))
    made_at = datetime.now(ZoneInfo(centre.timezone))
    # what "Answer the questions again" brings back besides the answers (kept in the page's copy)
    again = {"nonce": form.nonce.data or "", "share": form.share.data}
    if form.share.data == "yes":
        again.update(name=form.name.data or "", contact=form.contact.data or "")
    sent, not_sent, status, headers = None, None, 200, {}
    if form.share.data == "yes":
        try:
            stored = _store(form, decision)
            # the withdrawal code is in clear only here and in the page's signed copy (its language
            # switch): None on an "already sent" page, which says it was shown when it was sent
            sent = {"reference": stored.reference, "stored": stored.stored, "replaces": stored.replaces,
                    "withdrawal_code": stored.withdrawal_code}
        except db.ShareLimitReached as e:
            # the client still sees the result (it may say "consult"); the page says it was not sent
            not_sent, status, headers = "limited", 429, {"Retry-After": str(e.retry_after)}
        except db.StorageError as e:
            # the same for an outage: the result, a box saying it was not sent, and when to retry
            fix = db.what_to_fix(database.target(current_app))
            log.error("shared screening not stored: storage failure: %s%s", e, f"; {fix}" if fix else "")
            not_sent, status, headers = "unavailable", 503, {"Retry-After": str(STORAGE_RETRY_AFTER)}
    response = _render_result(service, decision=decision, made_at=made_at, sent=sent, not_sent=not_sent,
                              again=again)
    return response, status, headers


def _checked(rs, service, form) -> tuple[dict, dict[str, str]]:
    """The normalized answers, and {field: message or code} for the answers and the sharing part."""
    answers, answer_errors = engine.normalize(rs, service, forms.raw_answers(form, rs))
    errors = {qid: rs.text(f"error_{code}", locale()) for qid, code in answer_errors.items()}
    return answers, {**errors, **forms.share_errors(form)}


STORAGE_RETRY_AFTER = 120      # seconds: an outage a retry can outlast (a full disk, a lock) rarely ends sooner

# The language switch on a result posts a copy of what the page shows, signed by the app (SPEC
# "Language switch on a result"): the result has no URL and nothing of it is kept, so the page
# itself carries it, and the signature keeps a client from having a result they were not given
# shown under the centre's name. Its own salt: no other signed value of the app (the session, CSRF
# tokens) can be passed off as one. It lives as long as the page's CSRF token (WTF_CSRF_TIME_LIMIT,
# 4 hours by default): an older copy could only come with an expired token, which is refused anyway.
RESULT_COPY = "result_copy"            # the form field that holds the signed copy
SWITCH = "switch_language"             # the name of the language switch's buttons
RESULT_COPY_SALT = "screening.result-copy"


def _result_copies() -> URLSafeTimedSerializer:
    """The app's serializer of result copies (made once: it derives its key when made)."""
    copies = current_app.extensions.get("screening.result_copies")
    if copies is None:
        copies = URLSafeTimedSerializer(current_app.secret_key, salt=RESULT_COPY_SALT)
        current_app.extensions["screening.result_copies"] = copies
    return copies


def _read_result_copy(service) -> dict:
    """What a posted result copy shows, as _render_result's arguments; a copy that was tampered
    with, is too old, or belongs to another centre or service is a 400 page (never a 500)."""
    max_age = current_app.config.get("WTF_CSRF_TIME_LIMIT") or 24 * 3600
    try:
        copy = _result_copies().loads(request.form[RESULT_COPY], max_age=max_age)
        if not _of_this_page(copy, service):
            abort(400)
        return {"decision": engine.decision_from_record(ruleset(), copy["decision"]),
                "made_at": datetime.fromisoformat(copy["made_at"]).astimezone(ZoneInfo(current_centre().timezone)),
                "sent": copy["sent"], "not_sent": copy["not_sent"], "again": dict(copy["again"])}
    except (BadData, KeyError, TypeError, ValueError, AttributeError):
        log.warning("result copy refused: unreadable, too old or not ours")
        abort(400)


def _of_this_page(copy: dict, service) -> bool:
    """Whether a result copy is of this centre and service (a copy posted elsewhere is refused)."""
    return copy["centre"] == current_centre().slug and copy["decision"]["service"] == service.slug


def _answers_in_copy(service=None) -> MultiDict | None:
    """The answers and sharing details in a posted result copy, as the questionnaire's form data;
    None without a readable one. Only its signature is checked, not its age: it only refills the
    form of the client who posts it, and judges, shows or stores nothing. With `service` ("Answer
    again"), a copy that is unreadable or of another centre or service is a 400 page instead."""
    try:
        copy = _result_copies().loads(request.form[RESULT_COPY])
        if service is not None and not _of_this_page(copy, service):
            abort(400)
        answers = copy["decision"]["answers"].items()
        return MultiDict([*((k, v) for k, vs in answers for v in (vs if isinstance(vs, list) else [vs])),
                          *copy["again"].items()])
    except (BadData, KeyError, TypeError, ValueError, AttributeError):
        if service is not None:
            log.warning("result copy refused: unreadable or not ours")
            abort(400)
        return None


def _render_result(service, *, decision, made_at, sent, not_sent, again):
    """The result page, with its signed copy for the language switch. `sent`: the reference, whether
    it was stored now and whether it replaces other answers; `not_sent`: "limited" or "unavailable"
    when sharing failed; `again`: what "Answer the questions again" brings back besides the answers
    (the nonce, and the name and contact when sharing), kept in the copy."""
    rs, loc = ruleset(), locale()
    copy = _result_copies().dumps({"centre": current_centre().slug, "decision": engine.decision_record(decision),
                                   "made_at": made_at.isoformat(), "sent": sent, "not_sent": not_sent,
                                   "again": again})
    code = decision.outcome.code
    reasons = [(r, r.message.get(loc)) for r in engine.reading_order(rs, decision.reasons)]
    # reasons at the outcome's own level, then the lower ones (a cleared reason is one of those)
    top_reasons = [item for item in reasons if item[0].outcome == decision.outcome]
    # fever has its own next step: postpone, and answer again once well (a clearance never lowers it)
    fever = "fever" in decision.fired_rules
    client = {"decision": decision, "reasons": reasons, "top_reasons": top_reasons,
              "other_reasons": [item for item in reasons if item[0].outcome != decision.outcome],
              "fever": fever,
              "other_consult": [item for item in top_reasons if item[0].rule != "fever"]
              if code == "consult_professional" else [],
              "answered": [(q, engine.question_text(rs, q, service, loc), value, engine.answer_words(rs, q, value, loc))
                           for q in rs.questions if (value := decision.answers.get(q.id)) not in (None, ())],
              "made_at": made_at, "zone": zone_name(made_at), "result_copy": copy}
    # the outcome and the share's state are a few values each (the key): the title, the outcome, the
    # "not sent" box and the box saying what was sent are kept per value; only the reference and the
    # withdrawal code in that box are the client's
    shared = {"stored": sent["stored"], "replaces": sent["replaces"],
              "with_code": bool(sent.get("withdrawal_code"))} if sent else None
    if sent:
        client.update(reference=sent["reference"], withdrawal_code=sent.get("withdrawal_code"))
    static = {"service": service, "services": rs.services_by_slug, "code": code, "outcome_texts": rs.outcomes[code],
              "not_sent": not_sent, "shared": shared}
    return parts.page("public/result.html", static=static, client=client,
                      dynamic=RESULT_BLOCKS + (SHARED_BLOCKS if sent else ()),
                      key=(code, not_sent, tuple(shared.values()) if shared else None))


# the result page's blocks that are the client's (templates/public/result.html); the rest is kept
# per outcome and share state
RESULT_BLOCKS = ("reasons", "next_steps", "suggestions", "answers", "made_at", "result_copy")
SHARED_BLOCKS = ("reference", "withdrawal_code")


def zone_name(moment: datetime) -> str:
    """The time zone in words, as read inside a sentence: "Central European Standard Time", and in
    Catalan and Spanish without the capital CLDR gives it ("hora estàndard d'Europa central").
    Looked up once per zone, offset, summer time or not, and language (about 50 µs each time)."""
    key = (str(moment.tzinfo), moment.utcoffset(), moment.dst(), locale())
    name = _ZONE_NAMES.get(key)
    if name is None:
        name = i18n.straight_apostrophes(get_timezone_name(moment, "long", locale=key[-1]))
        name = name if key[-1] == "en" else name[:1].lower() + name[1:]
        if len(_ZONE_NAMES) < 1024:      # zones come from centres' files: a few, but bounded anyway
            _ZONE_NAMES[key] = name
    return name


_ZONE_NAMES: dict[tuple, str] = {}


def share_limit_key(remote_addr: str | None, purpose: bytes = b"share-limit") -> str:
    """The client's address as a keyed hash (an address is personal data; the table never holds
    it). IPv6 counts per /64, the block one subscriber usually gets, so that hopping between its
    addresses does not escape the limit. `purpose` keeps one limit's keys from being another's
    (the withdrawal form's attempts: web/withdraw.py)."""
    try:
        address = ipaddress.ip_address(remote_addr or "")
    except ValueError:
        network = "unknown"
    else:
        if address.version == 6 and address.ipv4_mapped:
            address = address.ipv4_mapped
        network = str(ipaddress.IPv6Network((int(address), 64), strict=False) if address.version == 6 else address)
    secret = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(secret, purpose + b"\0" + network.encode(), hashlib.sha256).hexdigest()[:32]


def _store(form, decision) -> db.Stored:
    """Store the shared screening; the reference exists only once COMMIT has returned.
    Raises db.ShareLimitReached (nothing stored) when this address has shared too often."""
    record = {
        **engine.decision_record(decision), "locale": locale(),
        "name": form.name.data.strip(), "contact": form.contact.data.strip(), "consent_at": db.now(),
    }
    centre = current_centre()
    if centre is None:      # several centres and none chosen: the screening would belong to nobody
        abort(404)
    wants_notice = notify.enabled(current_app.config, centre) and decision.outcome.code != "proceed"
    try:
        result = db.store_screening(get_db(), nonce=forms.nonce_of(form), record=record, centre=centre.slug,
                                    notify=wants_notice,
                                    limit_key=share_limit_key(request.remote_addr),
                                    limit=current_app.config["SHARE_LIMIT_PER_HOUR"],
                                    withdrawal_key=withdrawal.key_from_secret(current_app.config["SECRET_KEY"]))
    except db.ShareLimitReached:
        log.warning("shared screening refused: share limit per address reached; nothing stored")
        raise
    if not result.stored:
        log.info("shared screening resubmitted unchanged; nothing stored")
    else:
        log.info("shared screening stored%s", " (the same form sent other answers before)" if result.replaces else "")
    if result.stored and wants_notice:
        notify.wake(current_app._get_current_object())
    return result


@bp.errorhandler(CSRFError)
def csrf_expired(e):
    """A missing or expired token stores nothing; the questionnaire comes back with the answers kept."""
    if request.method == "POST" and request.endpoint == "public.submit":
        service = ruleset().service(request.view_args.get("slug", ""))
        centre = current_centre()
        if service is not None and centre is not None and centre.offers(service.slug):
            # the posted answers (or those of a result's copy, when its language switch came too
            # late), and a fresh token
            form = forms.questionnaire_form_class(ruleset())(formdata=_answers_in_copy() or request.form)
            return _render_form(service, form, status=400, expired=True)
    return render_template("error.html", status=400, code="csrf"), 400


# the endpoints that also exist under /c/<centre>/ (add_centre keeps their links there)
PREFIXED = {f"{bp.name}.{name}" for name in ("index", "service", "questionnaire", "submit")}
