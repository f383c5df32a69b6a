"""Reading a stored screening for staff: what the current rules say of its answers (re-judging),
its answers and reasons as rows in the staff member's language, its contact as a link, its audit
entries as data for a sentence, and its row of the CSV export. Plain Python over the rules: no
Flask, no database."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

from .engine import AnswerErrors, Decision, answer_label, asked_questions, question_text, screen
from .rules import RuleSet

# a spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection"):
# = + - @, tab and CR, their full-width forms (some spreadsheets read ＝ as =), and | and % (DDE)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20", "|", "%",
                  "\uff5c", "\uff05")


FORMULA_FIRST = frozenset(FORMULA_STARTS)       # each is one character: a set lookup per cell


def fired_rule_ids(fired: list) -> list[str]:
    """Rule ids from a stored fired_rules list (ids, or {"rule": id, ...} as the public side stores)."""
    return [f["rule"] if isinstance(f, dict) else str(f) for f in fired or []]


@dataclass
class Rejudgement:
    """What the current rules say about stored answers, and whether that differs."""

    decision: Decision | None
    errors: dict[str, str]         # answers the current rules refuse ({question id: error code})
    unknown_service: bool
    differs: bool


def rejudge(ruleset: RuleSet, submission: dict[str, Any]) -> Rejudgement:
    """Run the current rules on the stored answers and compare outcome and fired rules."""
    try:
        decision = screen(ruleset, submission["service"], submission["answers"] or {})
    except KeyError:
        return Rejudgement(None, {}, True, True)
    except AnswerErrors as e:
        return Rejudgement(None, e.errors, False, True)
    differs = (decision.outcome.code != submission["outcome"]
               or set(decision.fired_rules) != set(fired_rule_ids(submission["fired_rules"])))
    return Rejudgement(decision, {}, False, differs)


def answered_questions(ruleset: RuleSet, submission: dict[str, Any]) -> tuple[list, list[str]]:
    """(questions of the current rules the client was asked, ids of stored answers to questions the
    current rules no longer have)."""
    answers = submission["answers"] or {}
    service = ruleset.service(submission["service"])
    if service is not None:
        questions = asked_questions(ruleset, service, answers)
    else:
        questions = [q for q in ruleset.questions if q.id in answers]
    gone = [qid for qid in answers if qid not in ruleset.questions_by_id]
    return questions, gone


def answer_rows(ruleset: RuleSet, submission: dict[str, Any]) -> list[dict[str, Any]]:
    """Each question the client was asked, as they saw it, with the answer they gave (None when
    they left an optional one empty) in their language."""
    locale = submission.get("locale")
    answers = submission["answers"] or {}
    service = ruleset.service(submission["service"])
    questions, _gone = answered_questions(ruleset, submission)
    rows = []
    for q in questions:
        text = question_text(ruleset, q, service, locale) if service is not None else q.text.get(locale)
        value = answers.get(q.id)
        if value is None:
            shown = None
        elif q.type == "text":
            shown = [str(value)]
        else:
            shown = [answer_label(ruleset, q, v, locale) for v in (value if isinstance(value, list) else [value])]
        rows.append({"id": q.id, "text": text, "answers": shown, "red_flag": q.red_flag, "type": q.type})
    return rows


def summary_rows(ruleset: RuleSet, submission: dict[str, Any], locale: str) -> list[dict[str, Any]]:
    """Each rule that fired, in the staff member's language (its message, or None when the rule is
    gone), with the answers that raised it: the questions its condition reads, as the client
    answered them."""
    rules = {r.id: r for r in ruleset.rules}
    answers = submission["answers"] or {}
    service = ruleset.service(submission["service"])
    rows = []
    for entry in submission["fired_rules"] or []:
        info = entry if isinstance(entry, dict) else {"rule": str(entry)}
        rule = rules.get(info["rule"])
        raised = []
        if rule is not None:
            asked = [rule.about] if rule.about else sorted(rule.when.variables())
            for qid in asked:
                question = ruleset.questions_by_id.get(qid)
                value = answers.get(qid)
                if question is None or value in (None, "", []):
                    continue
                values = value if isinstance(value, list) else [value]
                shown = [str(v) if question.type == "text" else answer_label(ruleset, question, v, locale)
                         for v in values]
                asked_as = question_text(ruleset, question, service, locale) if service else question.text.get(locale)
                raised.append({"id": qid, "text": asked_as, "answers": shown})
        text = None
        if rule is not None:
            # without the client's "you answered not sure" note: the answer itself is shown beside
            text = (rule.cleared_message if info.get("cleared") and rule.cleared_message else rule.message).get(locale)
        rows.append({"rule": info["rule"], "outcome": info.get("outcome"), "message": text, "raised": raised,
                     "cleared": bool(info.get("cleared")), "not_sure": bool(info.get("not_sure"))})
    return rows


MAILTO_RE = re.compile(r"[^@\s:/]+@[^@\s:/]+\.[^@\s:/]+")


TEL_RE = re.compile(r"\+?\d{6,15}", re.ASCII)   # a number a tel: link can dial


def contact_href(contact: str | None) -> str | None:
    """A mailto: or tel: link for what the client typed as their contact, or None when it is
    neither an e-mail address nor a phone number (then it is shown as written)."""
    text = (contact or "").strip()
    if MAILTO_RE.fullmatch(text):
        return "mailto:" + text
    # a phone as people write it: spaces, dots, dashes and brackets between the digits
    number = re.sub(r"[\s().-]", "", text)
    if TEL_RE.fullmatch(number):
        return "tel:" + number
    return None


# the columns before the answers: codes stay beside their words, so a filter in the spreadsheet can
# use either; the headings are the staff member's words (ExportWords.headings)
EXPORT_COLUMNS = ("reference", "created_at", "service", "service_name", "outcome", "outcome_label", "status",
                  "status_label", "decision", "decision_label", "name", "contact", "fired_rules", "reasons",
                  "rules_version")


SEPARATORS = {"semicolon": ";", "comma": ","}


def neutralise(value: Any) -> str:
    """A CSV cell that a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text and text[0] in FORMULA_FIRST else text


def local_time(iso: str | None, zone: str) -> datetime | None:
    """A stored UTC time (ISO text) as an aware datetime in the time zone `zone`."""
    if not iso:
        return None
    moment = datetime.fromisoformat(iso)
    if moment.tzinfo is None:     # written without an offset: stored times are UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(ZoneInfo(zone))


def spreadsheet_time(iso: str | None, zone: str) -> str:
    """A stored time as a spreadsheet reads a date and time ('2026-12-01 23:10:05'), in `zone`:
    the zone itself is named in the column's heading."""
    moment = local_time(iso, zone)
    return f"{moment:%Y-%m-%d %H:%M:%S}" if moment else ""


def export_file_name(today: date) -> str:
    """The export's file name, dated so that two downloads do not overwrite each other."""
    return f"shared-screenings-{today.isoformat()}.csv"


@dataclass(frozen=True)
class ExportWords:
    """What an export is written in: the staff member's language and their centre's time zone, and
    the words for the codes (given by the view, which has the translations)."""

    ruleset: RuleSet
    locale: str
    zone: str
    headings: dict[str, str]        # EXPORT_COLUMNS -> heading
    statuses: dict[str, str]
    decisions: dict[str, str]
    any_areas: str = ""             # the words for a question's {areas} in a heading over every service

    def header(self) -> list[str]:
        """The heading row: the columns' names, then each question's text (for no one service)."""
        return [*(self.headings.get(c, c) for c in EXPORT_COLUMNS),
                *(question_text(self.ruleset, q, None, self.locale, any_areas=self.any_areas)
                  for q in self.ruleset.questions)]

    @cached_property
    def _words(self) -> dict[str, Any]:
        """Code -> words, worked out once per export rather than once per row; for each question
        its id and its answers' words (None for free text)."""
        rs, locale = self.ruleset, self.locale
        questions = []
        for q in rs.questions:
            codes = {o.id for o in q.options} | {"yes", "no", "not_sure"}
            labels = None if q.type == "text" else {code: answer_label(rs, q, code, locale) for code in codes}
            questions.append((q.id, labels))
        return {"services": {s.slug: s.name.get(locale) for s in rs.services},
                "outcomes": {code: texts["label"].get(locale) for code, texts in rs.outcomes.items()},
                "rules": {r.id: r.message.get(locale) for r in rs.rules}, "questions": questions}

    @staticmethod
    def answer(labels: dict[str, str] | None, value: Any) -> str:
        """An answer in words (several choices joined by '; '); free text (no labels) as written."""
        if value is None:
            return ""
        if labels is None:
            return str(value)
        if isinstance(value, list):
            return "; ".join(labels.get(v) or str(v) for v in value)
        return labels.get(value) or str(value)

    def cells(self, row: dict[str, Any]) -> list[str]:
        """One decoded submission row as CSV cells (not yet neutralised)."""
        words = self._words
        fired = fired_rule_ids(row["fired_rules"])
        answers = row["answers"] or {}
        decision = row["decision"]
        answer = self.answer
        return [row["reference"], spreadsheet_time(row["created_at"], self.zone),
                row["service"], words["services"].get(row["service"], ""),
                row["outcome"], words["outcomes"].get(row["outcome"], ""),
                row["status"], self.statuses.get(row["status"], ""),
                decision or "", self.decisions.get(decision, "") if decision else "",
                row["name"], row["contact"], ";".join(fired),
                "; ".join(words["rules"][r] for r in fired if r in words["rules"]), row["rules_version"],
                *[answer(labels, answers.get(qid)) for qid, labels in words["questions"]]]


# how set_status and purge write their detail; audit_words reads them back
CHANGE_RE = re.compile(r"(status|decision): ([^;\s]+) -> ([^;\s]+)")


PURGE_RE = re.compile(r"(\d+) submissions older than (\d+) days")


# Every action the audit trail knows, grouped as the audit page's filter lists them: the
# screenings, logging in, and accounts (what members do to their own and admins to others'). The
# page has words for each (web/staff.py AUDIT_ACTION_LABELS; a test checks both lists agree); a
# code from a newer version that is not here still shows, as its code.
AUDIT_ACTION_GROUPS = (
    ("screenings", ("view", "status", "note", "export", "erase", "purge", "withdrawn", "data_request",
                    "data_request_export")),
    ("logins", ("login", "logout", "login_failed", "login_locked", "login_address_locked", "login_device_locked",
                "login_code_failed", "login_code_locked", "recovery_code_used")),
    ("accounts", ("password_changed", "password_change_refused", "session_ended", "sessions_ended",
                  "second_factor_set", "second_factor_removed",
                  "password_reset_requested", "password_reset_sent", "password_reset_done",
                  "staff_invited", "invitation_cancelled", "invitation_accepted", "role_changed",
                  "staff_deactivated", "staff_reactivated", "throttle_lifted")),
)
AUDIT_ACTIONS = tuple(code for _group, codes in AUDIT_ACTION_GROUPS for code in codes)


# actions whose detail names the account they were done to (or tried on): its e-mail, or for a
# login with an unknown e-mail a keyed hash of what was typed ("#" and 12 hex digits)
ACCOUNT_DETAIL_ACTIONS = frozenset({
    "login_failed", "login_locked", "login_address_locked", "login_device_locked",
    "login_code_failed", "login_code_locked",
    "second_factor_set", "second_factor_removed",
    "password_reset_requested", "password_reset_sent", "password_reset_done",
    "staff_invited", "invitation_cancelled", "invitation_accepted", "role_changed",
    "staff_deactivated", "staff_reactivated", "throttle_lifted",
})


# actions whose detail is a person's request as JSON (store/requests.py): its number, kind, channel,
# day received, whether on the person's behalf, the form of an export, how many screenings; an
# erasure made through a request names the request the same way
REQUEST_DETAIL_ACTIONS = frozenset({"data_request", "data_request_export", "erase"})
REQUEST_FIELDS = ("request", "kind", "channel", "received_on", "on_behalf", "format")


# actions whose detail is a count: the recovery codes left, the sessions ended
COUNT_DETAIL_ACTIONS = frozenset({"recovery_code_used", "sessions_ended"})


def audit_words(row: dict[str, Any]) -> dict[str, Any]:
    """What an audit entry's detail says, as data the page turns into a sentence: the new status
    or decision of a change, the count and filter of an export, the count and days of a purge, the
    account an account action was done to (`target`, and `role` for a role change), the count of a
    recovery code use (codes left) or of sessions ended. Entries written before a detail had this
    shape give only what can be read from them."""
    detail = row.get("detail") or ""
    action = row["action"]
    words: dict[str, Any] = {"action": action, "changes": [], "count": None, "days": None, "filters": {},
                             "target": None, "role": None, "request": None}
    if action == "status":
        words["changes"] = [(field, None if new == "-" else new) for field, _old, new in CHANGE_RE.findall(detail)]
    elif action == "export" and detail:
        try:
            data = json.loads(detail)
        except ValueError:
            data = {}
        if isinstance(data, dict) and "filters" in data:
            words["filters"], words["count"] = data.get("filters") or {}, data.get("count")
        elif isinstance(data, dict):      # an export recorded before the count was kept
            words["filters"] = data
    elif action == "purge":
        m = PURGE_RE.fullmatch(detail)
        if m:
            words["count"], words["days"] = int(m.group(1)), int(m.group(2))
    elif action == "role_changed" and detail:
        # "email:newrole"; an e-mail may not hold a colon, but split at the last one all the same
        target, _sep, role = detail.rpartition(":")
        words["target"], words["role"] = (target, role or None) if target else (detail, None)
    elif action in ACCOUNT_DETAIL_ACTIONS and detail:
        words["target"] = detail
    elif action in COUNT_DETAIL_ACTIONS and detail.isascii() and detail.isdigit():
        words["count"] = int(detail)
    elif action in REQUEST_DETAIL_ACTIONS and detail.startswith("{"):
        try:
            data = json.loads(detail)
        except ValueError:
            data = None
        if isinstance(data, dict) and "request" in data:
            words["request"] = {key: data.get(key) for key in REQUEST_FIELDS}
            count = data.get("count")
            words["count"] = count if isinstance(count, int) and not isinstance(count, bool) else None
    return words
