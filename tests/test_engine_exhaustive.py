"""The safety properties checked on the real engine (not the checker's model) over the whole red-flag space.

`screening check-rules` proves them on a bit-set model of the engine for every service; this test runs
`engine.normalize` + `engine.evaluate` themselves on every combination of the nine red flags (no / not
sure / yes), pregnancy with its follow-up, and the clearance (unanswered / yes), for the main service:
19,683 × 7 × 2 = 275,562 screenings. So a divergence between the model and the engine cannot hide there.
"""
import itertools

from conftest import RED_FLAGS

from screening.core import engine
from screening.core.engine import Outcome

VALUES = ("no", "not_sure", "yes")
PREGNANCY = [("no", None)] + [(p, c) for p in ("not_sure", "yes") for c in VALUES]
CLEARANCE = (None, "yes")


def test_raising_a_red_flag_never_lowers_and_an_uncleared_red_flag_always_means_consult(rules):
    service = rules.service("decontracting-back-massage")
    outcome_of = {}
    for flags in itertools.product(VALUES, repeat=len(RED_FLAGS)):
        base = dict(zip(RED_FLAGS, flags), preferred_intensity="medium")
        for (pregnant, complicated), cleared in itertools.product(PREGNANCY, CLEARANCE):
            answers = dict(base, pregnant=pregnant)
            if complicated:
                answers["pregnancy_complicated"] = complicated
            if cleared:
                answers["professional_cleared"] = cleared
            normalized, errors = engine.normalize(rules, service, answers)
            assert not errors, (answers, errors)
            outcome = engine.evaluate(rules, service, normalized).outcome
            outcome_of[flags, pregnant, complicated, cleared] = outcome

            raised = [f for f, v in zip(RED_FLAGS, flags) if v != "no"] + \
                     (["pregnancy_complicated"] if complicated in ("yes", "not_sure") else [])
            if raised and normalized.get("professional_cleared") != "yes":
                assert outcome is Outcome.CONSULT_PROFESSIONAL, answers
            if "fever" in raised:
                assert outcome is Outcome.CONSULT_PROFESSIONAL, answers     # clearance never lowers fever
            if pregnant != "no":
                assert outcome >= Outcome.TELL_CENTRE, answers

    assert len(outcome_of) == 3 ** len(RED_FLAGS) * len(PREGNANCY) * len(CLEARANCE)
    assert set(outcome_of.values()) == set(Outcome)
    for (flags, pregnant, complicated, cleared), outcome in outcome_of.items():
        for i, value in enumerate(flags):
            if value != "no":
                continue
            for higher in ("not_sure", "yes"):
                raised = flags[:i] + (higher,) + flags[i + 1:]
                assert outcome_of[raised, pregnant, complicated, cleared] >= outcome, (flags, i, higher)
        if pregnant == "no":
            for higher, follow_up in PREGNANCY[1:]:
                assert outcome_of[flags, higher, follow_up, cleared] >= outcome
        elif complicated == "no":
            for higher in ("not_sure", "yes"):
                assert outcome_of[flags, pregnant, higher, cleared] >= outcome
