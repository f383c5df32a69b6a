"""The rule engine: a client's answers in, one outcome with its reasons and suggestions out.

Plain Python (no Flask, WTForms or sqlite-utils). Two steps:
- `normalize` turns raw answers (form strings or JSON values) into canonical values, drops the
  answers to questions that were not asked, and reports every missing or invalid answer;
- `evaluate` runs every rule and suggestion on normalized answers.
`screen` does both and raises AnswerErrors when anything must be fixed first.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from .characters import forbidden_characters
from .conditions import Condition
from .rules import OUTCOMES, YES_NO, YES_NO_UNSURE, Question, RuleSet, Service, Suggestion, Text


class Outcome(IntEnum):
    """The three outcomes, in rising order of severity; `.code` is the stable public code."""

    PROCEED = 0
    TELL_CENTRE = 1
    CONSULT_PROFESSIONAL = 2

    @property
    def code(self) -> str:
        return OUTCOMES[self.value]

    @classmethod
    def from_code(cls, code: str) -> Outcome:
        return cls(OUTCOMES.index(code))


# error codes; their wording lives in rules/texts.toml (error_<code>)
REQUIRED, INVALID, TOO_LONG, NOT_A_LIST, UNKNOWN = "required", "invalid", "too_long", "not_a_list", "unknown"
CHARACTERS = "characters"     # control or invisible format characters in a text answer


class AnswerErrors(ValueError):
    """Some answers are missing or invalid: `errors` maps question id to an error code."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__(", ".join(f"{k}: {v}" for k, v in errors.items()))


@dataclass(frozen=True)
class Reason:
    """One fired rule, with the outcome it gave after clearance."""

    rule: str
    outcome: Outcome
    message: Text
    not_sure: bool = False   # the client answered "not sure" to the question this rule is about
    cleared: bool = False    # a professional's clearance lowered it

    def text(self, ruleset: RuleSet, locale: str | None = None) -> str:
        message = self.message.get(locale)
        if self.not_sure:
            message += " " + ruleset.text("not_sure_note", locale)
        return message


@dataclass(frozen=True)
class Decision:
    service: str
    outcome: Outcome
    reasons: tuple[Reason, ...]
    suggestions: tuple[Suggestion, ...]
    rules_version: str
    answers: dict[str, Any] = field(default_factory=dict)

    @property
    def fired_rules(self) -> tuple[str, ...]:
        return tuple(r.rule for r in self.reasons)


def _yes_no(value, allowed):
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return value if isinstance(value, str) and value in allowed else INVALID


def _normalize_one(q: Question, value: Any, offered: tuple[str, ...]):
    """Return the canonical answer, None when unanswered, or an error code.

    `offered`: the option ids this service's form offers (legs only where the massage works them).
    """
    if value is None or value == "" or value == []:
        return None
    if q.type == "yes_no_unsure":
        return _yes_no(value, YES_NO_UNSURE)
    if q.type == "yes_no":
        return _yes_no(value, YES_NO)
    if q.type == "single":
        return value if isinstance(value, str) and value in offered else INVALID
    if q.type == "multi":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            return NOT_A_LIST
        if not all(isinstance(v, str) and v in offered for v in value):
            return INVALID
        return tuple(o for o in offered if o in value)  # canonical order, no duplicates
    # text
    if not isinstance(value, str):
        return INVALID
    value = value.strip()
    if len(value) > q.max_length:
        return TOO_LONG
    if forbidden_characters(value, multiline=True):
        return CHARACTERS
    return value or None


ERROR_CODES = {INVALID, TOO_LONG, NOT_A_LIST, CHARACTERS}


def asked_questions(ruleset: RuleSet, service: Service, answers: dict[str, Any]) -> list[Question]:
    """The questions a client with these (normalized) answers is asked, in order."""
    facts = dict(service.facts())
    asked = []
    for q in ruleset.questions:
        if q.asked_when is None or q.asked_when(facts):
            asked.append(q)
            if answers.get(q.id) is not None:
                facts[q.id] = answers[q.id]
    return asked


def normalize(ruleset: RuleSet, service: Service, raw: dict[str, Any], *,
              allow_unknown: bool = True) -> tuple[dict[str, Any], dict[str, str]]:
    """Canonical answers to the questions that are asked, and {question id: error code}.

    Answers to questions not asked (a follow-up whose condition does not hold) are dropped, not
    refused. A required question that is asked and unanswered is an error: never read as "no".
    """
    errors: dict[str, str] = {}
    if not allow_unknown:
        for key in raw:
            if key not in ruleset.questions_by_id:
                errors[key] = UNKNOWN
    facts = dict(service.facts())
    answers: dict[str, Any] = {}
    for q in ruleset.questions:
        if q.asked_when is not None and not q.asked_when(facts):
            continue
        # yes/no questions have fixed answers; only choice questions differ per service
        offered = tuple(o.id for o in ruleset.options_for(q, service)) if q.type in ("single", "multi") else ()
        value = _normalize_one(q, raw.get(q.id), offered)
        if value in ERROR_CODES:
            errors[q.id] = value
        elif value is None:
            if q.required:
                errors[q.id] = REQUIRED
        else:
            answers[q.id] = facts[q.id] = value
    return answers, errors


def evaluate(ruleset: RuleSet, service: Service, answers: dict[str, Any]) -> Decision:
    """Run every rule on normalized answers; the outcome is the most severe of those that fire."""
    facts = {**service.facts(), **answers}
    cleared = ruleset.clearance is not None and answers.get(ruleset.clearance.question) == "yes"
    reasons = []
    for rule in ruleset.rules:
        if not rule.when(facts):
            continue
        outcome, message = Outcome.from_code(rule.outcome), rule.message
        if rule.clearable and cleared:
            # clearance may only lower: a rule already below the clearance outcome stays where it is
            outcome = min(outcome, Outcome.from_code(ruleset.clearance.outcome))
            message = rule.cleared_message
        not_sure = rule.about is not None and answers.get(rule.about) == "not_sure"
        reasons.append(Reason(rule.id, outcome, message, not_sure=not_sure, cleared=rule.clearable and cleared))
    outcome = max((r.outcome for r in reasons), default=Outcome.PROCEED)
    # suggestions are computed apart from the outcome, so they can never lower it
    suggestions = tuple(s for s in ruleset.suggestions if s.service != service.slug and s.when(facts))
    return Decision(service.slug, outcome, tuple(reasons), suggestions, ruleset.version, answers)


def screen(ruleset: RuleSet, slug: str, raw: dict[str, Any], *, allow_unknown: bool = True) -> Decision:
    """Normalize and evaluate; raise AnswerErrors (or KeyError for an unknown service)."""
    service = ruleset.services_by_slug[slug]
    answers, errors = normalize(ruleset, service, raw, allow_unknown=allow_unknown)
    if errors:
        raise AnswerErrors(errors)
    return evaluate(ruleset, service, answers)


HEALTH_TYPES = ("yes_no_unsure", "yes_no")     # the "Your health today" questions: red flags, pregnancy


def reading_order(ruleset: RuleSet, reasons) -> list[Reason]:
    """The reasons as a client reads them: most severe first; among equals, a health reason (its rule
    reads a health question: a red flag, pregnancy) before a preference (pressure), and one that still
    stands before one a professional cleared, so the least important reason never reads first."""
    health_ids = {q.id for q in ruleset.questions if q.type in HEALTH_TYPES}
    health = {r.id for r in ruleset.rules if r.when.variables() & health_ids}
    return sorted(reasons, key=lambda r: (-r.outcome, r.rule not in health, r.cleared))


def decision_record(decision: Decision) -> dict[str, Any]:
    """The decision as plain JSON values: what a shared screening stores, and what a result page's
    signed copy carries (decision_from_record reads it back)."""
    return {
        "service": decision.service, "outcome": decision.outcome.code,
        "answers": {k: list(v) if isinstance(v, tuple) else v for k, v in decision.answers.items()},
        "fired_rules": [{"rule": r.rule, "outcome": r.outcome.code, "not_sure": r.not_sure, "cleared": r.cleared}
                        for r in decision.reasons],
        "suggestions": [s.id for s in decision.suggestions],
        "rules_version": decision.rules_version,
    }


def decision_from_record(ruleset: RuleSet, record: dict[str, Any]) -> Decision:
    """The decision a decision_record describes, its messages taken from `ruleset` (as judged then:
    nothing is evaluated again). KeyError or ValueError when it names a rule, suggestion or outcome
    that `ruleset` lacks."""
    rules = {r.id: r for r in ruleset.rules}
    suggestions = {s.id: s for s in ruleset.suggestions}
    reasons = []
    for fired in record["fired_rules"]:
        rule, cleared = rules[fired["rule"]], bool(fired["cleared"])
        if cleared and rule.cleared_message is None:
            raise ValueError(f"rule {rule.id!r} cannot be cleared")
        reasons.append(Reason(rule.id, Outcome.from_code(fired["outcome"]),
                              rule.cleared_message if cleared else rule.message,
                              not_sure=bool(fired["not_sure"]), cleared=cleared))
    answers = record["answers"]
    if not isinstance(answers, dict):
        raise ValueError("answers must be a mapping")
    return Decision(record["service"], Outcome.from_code(record["outcome"]), tuple(reasons),
                    tuple(suggestions[s] for s in record["suggestions"]), record["rules_version"],
                    {k: tuple(v) if isinstance(v, list) else v for k, v in answers.items()})


def question_text(ruleset: RuleSet, q: Question, service: Service | None, locale: str | None = None, *,
                  any_areas: str = "") -> str:
    """The question as the client sees it: `{areas}` becomes the areas the service works. Without
    a service (a heading over every service's answers, as in the CSV), `any_areas`: words that fit
    any service ("the areas the massage works")."""
    text = q.text.get(locale)
    if "{areas}" in text and service is None:
        return text.replace("{areas}", any_areas)
    if "{areas}" in text:
        names = [a.name.get(locale) for a in service.areas]
        last_joiner = " " + ruleset.text("list_or", locale) + " "
        areas = names[0] if len(names) == 1 else ", ".join(names[:-1]) + last_joiner + names[-1]
        text = text.replace("{areas}", areas)
    return text


def answer_label(ruleset: RuleSet, question: Question, value: Any, locale: str | None) -> str:
    """One answer code in the words the client chose it by (texts answer_yes/no/not_sure, option labels)."""
    if question.type in ("yes_no_unsure", "yes_no") and f"answer_{value}" in ruleset.texts:
        return ruleset.text(f"answer_{value}", locale)
    for option in question.options:
        if option.id == value:
            return option.label.get(locale)
    return str(value)


def describe_condition(ruleset: RuleSet, condition: Condition, locale: str) -> str:
    """A condition as staff read it on the rules pages, in `locale`: answer codes as the words the
    client chose them by, a service by its name, and the service's areas and pressure by the labels
    of the options that share their codes (the tension and pressure questions); else the code."""
    def value_words(var: str, value: Any) -> str:
        question = ruleset.questions_by_id.get(var)
        if question is not None:
            return answer_label(ruleset, question, value, locale)
        if var == "service.slug" and ruleset.service(value) is not None:
            return ruleset.service(value).name.get(locale)
        for option in (o for q in ruleset.questions for o in q.options):
            if option.id == value:
                return option.label.get(locale)
        return str(value)
    return condition.describe(locale, value_words)


def answer_words(ruleset: RuleSet, question: Question, value: Any, locale: str | None) -> str:
    """A whole answer as words: several choices joined by commas, free text as typed."""
    if question.type == "text":
        return value
    if isinstance(value, (list, tuple)):
        return ", ".join(answer_label(ruleset, question, v, locale) for v in value)
    return answer_label(ruleset, question, value, locale)
