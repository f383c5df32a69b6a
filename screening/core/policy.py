"""The screening policy of SPEC.md ("Screening policy"), written once, as data the checker proves.

Plain Python: no Flask, no database. The rule files say *how* the screening decides; this module
says what must come out whatever they say, and `screening check-rules` (screening/core/checker.py)
proves it over every valid combination of answers of every service, so that it holds even when
examples.toml is empty:

- every red flag (RED_FLAGS, and the pregnancy follow-up) is a required yes/no/not-sure question
  marked `red_flag`, asked of every client (the follow-up whenever `pregnant` is yes or not sure);
- a red flag answered "yes" or "not sure" gives consult_professional unless a professional has
  cleared it; fever (NEVER_CLEARED) gives it even then;
- a professional's clearance never gives proceed while a red flag is raised;
- `pregnant` is a required yes/no/not-sure question, and yes or not sure gives at least
  tell_centre (so a pregnancy that is not complicated tells the centre, and a complicated one,
  or one the client is not sure about, is a red flag above);
- a "not sure" answer to any of these is named in a reason (the rule's `about`), which says that
  a professional can tell.

Two more parts of the policy are proved by the checker for every yes/no/not-sure question, these
included: "not sure" is never lower than "yes" and "no" -> "not sure"/"yes" never lowers the
outcome (check (b)), and an asked required question left unanswered is refused (check (c)).
"""
from __future__ import annotations

from dataclasses import dataclass

from .conditions import All, Any_, Condition, Not, Test
from .rules import RuleSet

RED_FLAGS = ("intense_pain", "persistent_pain", "recent_injury", "radiating_pain", "tingling_or_weakness",
             "spinal_condition", "fever", "skin_problem_in_area", "ongoing_diagnosis")
PREGNANT = "pregnant"
PREGNANCY_COMPLICATED = "pregnancy_complicated"     # a red flag, asked when pregnant is yes or not sure
CLEARANCE = "professional_cleared"                 # yes/no: a professional said this massage is fine
NEVER_CLEARED = ("fever",)                          # postpone until well, whatever anyone advised
RAISED = frozenset({"yes", "not_sure"})             # "not sure" counts as yes

QUESTIONS_FILE, RULES_FILE = "questions.toml", "rules.toml"


@dataclass(frozen=True)
class Obligation:
    """Wherever `when` holds for valid answers, the outcome is at least `at_least`."""

    file: str
    entry: str
    when: Condition
    at_least: str
    problem: str        # what it means when some valid answers break it


def raised(question: str) -> Test:
    """The question is answered yes or not sure."""
    return Test(question, "in", RAISED)


CLEARED = Test(CLEARANCE, "equals", "yes")


def red_flags(ruleset: RuleSet) -> tuple[str, ...]:
    """The policy's red flags, then any other question the rule files mark red_flag."""
    named = (*RED_FLAGS, PREGNANCY_COMPLICATED)
    return named + tuple(q.id for q in ruleset.questions if q.red_flag and q.id not in named)


def obligations(ruleset: RuleSet) -> tuple[Obligation, ...]:
    """Every outcome the policy demands, as conditions over the answers."""
    flags = red_flags(ruleset)
    out = [Obligation(RULES_FILE, f"red flag {q!r}", All((raised(q), Not(CLEARED))), "consult_professional",
                      "answered yes or not sure without a professional's clearance, it does not give "
                      "consult_professional") for q in flags]
    out += [Obligation(RULES_FILE, f"red flag {q!r}", raised(q), "consult_professional",
                       "answered yes or not sure, it does not give consult_professional when a professional's "
                       "clearance is given: it must never be cleared") for q in NEVER_CLEARED]
    out.append(Obligation(RULES_FILE, "[clearance]", All((CLEARED, Any_(tuple(raised(q) for q in flags)))),
                          "tell_centre", "with a red flag raised, a professional's clearance gives proceed"))
    out.append(Obligation(RULES_FILE, f"question {PREGNANT!r}", raised(PREGNANT), "tell_centre",
                          "answered yes or not sure, it does not give at least tell_centre"))
    return tuple(out)


def explained_not_sure() -> tuple[str, ...]:
    """The questions whose "not sure" answer must be named in a reason (a rule with `about` = it)."""
    return (*RED_FLAGS, PREGNANT, PREGNANCY_COMPLICATED)


def asked_after() -> dict[str, str]:
    """Follow-ups the policy needs: {follow-up: question whose yes or not sure must ask it}."""
    return {PREGNANCY_COMPLICATED: PREGNANT}


def question_problems(ruleset: RuleSet) -> list[tuple[str, str, str]]:
    """The policy's questions that are missing or of the wrong shape, as (file, entry, problem)."""
    problems = []
    shapes = [(q, True) for q in (*RED_FLAGS, PREGNANCY_COMPLICATED)] + [(PREGNANT, False)]
    for qid, red_flag in shapes:
        entry = f"question {qid!r}"
        q = ruleset.questions_by_id.get(qid)
        if q is None:
            what = "red-flag question" if red_flag else "question"
            problems.append((QUESTIONS_FILE, entry, f"missing: the screening policy needs this {what}"))
            continue
        if q.type != "yes_no_unsure":
            problems.append((QUESTIONS_FILE, entry, "must offer yes, no and not sure (type = 'yes_no_unsure'): "
                                                    "'not sure' counts as yes"))
        if not q.required:
            problems.append((QUESTIONS_FILE, entry, "must be required: unanswered is never 'no'"))
        if red_flag and not q.red_flag:
            problems.append((QUESTIONS_FILE, entry, "must be marked red_flag = true (a red flag of the policy)"))
        if q.asked_when is not None and qid not in asked_after():
            problems.append((QUESTIONS_FILE, entry, "must be asked of every client: remove 'asked_when'"))
    if ruleset.clearance is not None and ruleset.clearance.question != CLEARANCE:
        problems.append((RULES_FILE, "[clearance]", f"the clearance question must be {CLEARANCE!r}, got "
                                                    f"{ruleset.clearance.question!r}"))
    return problems
