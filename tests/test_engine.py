"""The rule engine: normalising answers, refusing what must be fixed, and judging what is left."""
import dataclasses

import pytest
from conftest import RED_FLAGS, SLUGS, all_no
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from screening.core.engine import AnswerErrors, Outcome, evaluate, normalize, question_text, screen

DBM = "decontracting-back-massage"
CLEARABLE = [f for f in RED_FLAGS if f != "fever"]


def outcome_of(rules, slug=DBM, **answers):
    """The outcome code for all-no answers with these overrides."""
    return screen(rules, slug, all_no(**answers)).outcome.code


def errors_of(rules, answers, slug=DBM):
    """The {question: error code} that screen refuses these answers with."""
    with pytest.raises(AnswerErrors) as raised:
        screen(rules, slug, answers)
    return raised.value.errors


# --- outcomes and precedence ------------------------------------------------------------------

def test_all_no_proceeds_with_no_reasons(rules):
    decision = screen(rules, DBM, all_no())
    assert decision.outcome is Outcome.PROCEED
    assert decision.reasons == ()
    assert decision.rules_version == rules.version


@pytest.mark.parametrize("flag", RED_FLAGS)
def test_each_red_flag_answered_yes_means_consult(rules, flag):
    decision = screen(rules, DBM, all_no(**{flag: "yes"}))
    assert decision.outcome.code == "consult_professional"
    assert flag in decision.fired_rules


def test_the_most_severe_rule_wins(rules):
    decision = screen(rules, DBM, all_no(pregnant="yes", pregnancy_complicated="no", fever="yes",
                                         preferred_intensity="light"))
    assert decision.outcome.code == "consult_professional"
    assert set(decision.fired_rules) == {"pregnancy", "fever", "light_pressure_on_firm_service"}
    assert {r.rule: r.outcome.code for r in decision.reasons}["pregnancy"] == "tell_centre"


def test_an_uncomplicated_pregnancy_means_tell_the_centre(rules):
    assert outcome_of(rules, pregnant="yes", pregnancy_complicated="no") == "tell_centre"


def test_a_complicated_pregnancy_means_consult(rules):
    assert outcome_of(rules, pregnant="yes", pregnancy_complicated="yes") == "consult_professional"


def test_light_pressure_on_a_firm_service_tells_the_centre_and_suggests_the_back_massage(rules):
    decision = screen(rules, DBM, all_no(preferred_intensity="light"))
    assert decision.outcome.code == "tell_centre"
    assert [s.service for s in decision.suggestions] == ["back-massage"]


def test_light_pressure_on_the_gentle_back_massage_is_fine(rules):
    decision = screen(rules, "back-massage", all_no(preferred_intensity="light"))
    assert decision.outcome.code == "proceed"
    assert decision.suggestions == ()


def test_neck_tension_suggests_the_back_and_neck_massage_without_raising_the_outcome(rules):
    decision = screen(rules, DBM, all_no(tension_areas=["neck"]))
    assert decision.outcome.code == "proceed"
    assert [s.service for s in decision.suggestions] == ["back-and-neck-massage"]
    # never suggest the service the client is already looking at
    assert screen(rules, "back-and-neck-massage", all_no(tension_areas=["neck"])).suggestions == ()


# --- clearance ----------------------------------------------------------------------------------

@pytest.mark.parametrize("flag", CLEARABLE)
def test_a_professionals_clearance_turns_a_red_flag_into_tell_the_centre(rules, flag):
    answers = all_no(**{flag: "yes", "professional_cleared": "yes"})
    if flag == "pregnancy_complicated":
        answers["pregnant"] = "yes"
    decision = screen(rules, DBM, answers)
    assert decision.outcome.code == "tell_centre"
    reason = next(r for r in decision.reasons if r.rule == flag)
    assert reason.cleared
    assert reason.message == rules.rules[[r.id for r in rules.rules].index(flag)].cleared_message


def test_fever_stays_consult_even_when_cleared(rules):
    decision = screen(rules, DBM, all_no(fever="yes", recent_injury="yes", professional_cleared="yes"))
    assert decision.outcome.code == "consult_professional"
    fever = next(r for r in decision.reasons if r.rule == "fever")
    assert fever.outcome.code == "consult_professional" and not fever.cleared
    assert "wait until you are well" in fever.text(rules).lower()


def test_a_missing_clearance_counts_as_no(rules):
    assert outcome_of(rules, intense_pain="yes") == "consult_professional"
    assert outcome_of(rules, intense_pain="yes", professional_cleared="no") == "consult_professional"


def test_clearance_is_yes_or_no_only(rules):
    assert errors_of(rules, all_no(intense_pain="yes", professional_cleared="not_sure")) == \
        {"professional_cleared": "invalid"}


# --- not sure -----------------------------------------------------------------------------------

def test_not_sure_counts_as_yes_and_its_reason_says_so(rules):
    decision = screen(rules, DBM, all_no(radiating_pain="not_sure"))
    assert decision.outcome.code == "consult_professional"
    (reason,) = decision.reasons
    assert reason.not_sure
    assert reason.text(rules).endswith(rules.text("not_sure_note"))


def test_a_yes_answer_has_no_not_sure_note(rules):
    (reason,) = screen(rules, DBM, all_no(radiating_pain="yes")).reasons
    assert not reason.not_sure
    assert rules.text("not_sure_note") not in reason.text(rules)


def test_not_sure_about_pregnancy_asks_the_follow_up(rules):
    assert errors_of(rules, all_no(pregnant="not_sure")) == {"pregnancy_complicated": "required"}
    assert outcome_of(rules, pregnant="not_sure", pregnancy_complicated="no") == "tell_centre"


# --- follow-ups and missing answers -----------------------------------------------------------

def test_answers_to_questions_not_asked_are_ignored_not_refused(rules):
    decision = screen(rules, DBM, all_no(pregnancy_complicated="yes", professional_cleared="yes"))
    assert decision.outcome.code == "proceed"
    assert "pregnancy_complicated" not in decision.answers
    assert "professional_cleared" not in decision.answers


def test_even_an_invalid_answer_to_a_question_not_asked_is_ignored(rules):
    assert outcome_of(rules, pregnancy_complicated="banana", professional_cleared=42) == "proceed"


@pytest.mark.parametrize("question", [*RED_FLAGS, "pregnant"])
def test_an_unanswered_red_flag_or_pregnancy_is_refused_never_read_as_no(rules, question):
    answers = all_no()
    del answers[question]
    assert errors_of(rules, answers) == {question: "required"}
    assert errors_of(rules, all_no(**{question: ""})) == {question: "required"}
    assert errors_of(rules, all_no(**{question: None})) == {question: "required"}


def test_an_asked_follow_up_left_unanswered_is_refused(rules):
    assert errors_of(rules, all_no(pregnant="yes")) == {"pregnancy_complicated": "required"}


def test_every_problem_is_reported_at_once(rules):
    answers = all_no(fever="maybe", preferred_intensity="hard", notes="x" * 5000)
    del answers["intense_pain"]
    assert errors_of(rules, answers) == {"intense_pain": "required", "fever": "invalid",
                                         "preferred_intensity": "invalid", "notes": "too_long"}


# --- values -------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["maybe", "YES", "Yes ", 1, 0, 2.5, ["yes"], {"a": 1}])
def test_invalid_yes_no_values_are_refused(rules, value):
    assert errors_of(rules, all_no(fever=value)) == {"fever": "invalid"}


def test_answers_may_be_booleans_from_json(rules):
    answers = all_no(fever=False, intense_pain=True, pregnant=False, professional_cleared=True)
    decision = screen(rules, DBM, answers)
    assert decision.answers["fever"] == "no"
    assert decision.answers["intense_pain"] == "yes"
    assert decision.answers["professional_cleared"] == "yes"
    assert decision.outcome.code == "tell_centre"


def test_several_areas_are_kept_in_the_questions_order_without_duplicates(rules):
    service = rules.service(DBM)
    answers, errors = normalize(rules, service, all_no(tension_areas=["neck", "thoracic", "neck"]))
    assert errors == {}
    assert answers["tension_areas"] == ("thoracic", "neck")


def test_each_service_offers_its_own_areas_first_and_refuses_the_others(rules):
    # the general decontracting massage works the shoulders and legs: offered there, head to toe
    general = rules.service("decontracting-massage")
    offered = [o.id for o in rules.options_for(rules.questions_by_id["tension_areas"], general)]
    assert offered == ["neck", "shoulders", "thoracic", "shoulder_blades", "lumbar", "legs"]
    answers, errors = normalize(rules, general, all_no(tension_areas=["legs", "neck", "shoulders"]))
    assert errors == {} and answers["tension_areas"] == ("neck", "shoulders", "legs")
    # a back massage offers the back first, then the neck (which suggests the back and neck combination)
    back = rules.service(DBM)
    assert [o.id for o in rules.options_for(rules.questions_by_id["tension_areas"], back)] == \
        ["thoracic", "shoulder_blades", "lumbar", "neck"]
    for slug in (DBM, "back-massage", "back-and-neck-massage", "deep-tissue-massage"):
        assert errors_of(rules, all_no(tension_areas=["lumbar", "legs"]), slug) == {"tension_areas": "invalid"}
        assert errors_of(rules, all_no(tension_areas="shoulders"), slug) == {"tension_areas": "invalid"}


def test_one_area_may_come_as_a_single_string_and_none_as_an_empty_list(rules):
    service = rules.service(DBM)
    assert normalize(rules, service, all_no(tension_areas="lumbar"))[0]["tension_areas"] == ("lumbar",)
    assert "tension_areas" not in normalize(rules, service, all_no(tension_areas=[]))[0]


@pytest.mark.parametrize(("value", "error"), [(["neck", "elbow"], "invalid"), ([1], "invalid"),
                                               ({"neck": True}, "not_a_list"), (3, "not_a_list")])
def test_unknown_or_malformed_areas_are_refused(rules, value, error):
    assert errors_of(rules, all_no(tension_areas=value)) == {"tension_areas": error}


def test_notes_are_trimmed_and_limited_in_length(rules):
    service = rules.service(DBM)
    limit = rules.questions_by_id["notes"].max_length
    assert normalize(rules, service, all_no(notes="  sore left shoulder  "))[0]["notes"] == "sore left shoulder"
    assert normalize(rules, service, all_no(notes="x" * limit))[1] == {}
    assert errors_of(rules, all_no(notes="x" * (limit + 1))) == {"notes": "too_long"}
    assert errors_of(rules, all_no(notes=["x"])) == {"notes": "invalid"}


def test_unknown_answers_are_refused_only_when_asked_to(rules):
    assert screen(rules, DBM, all_no(shoe_size="42")).outcome.code == "proceed"
    with pytest.raises(AnswerErrors) as raised:
        screen(rules, DBM, all_no(shoe_size="42"), allow_unknown=False)
    assert raised.value.errors == {"shoe_size": "unknown"}


def test_an_unknown_service_is_a_key_error(rules):
    with pytest.raises(KeyError):
        screen(rules, "foot-massage", all_no())


def test_the_skin_question_names_the_areas_of_the_chosen_service(rules):
    question = rules.questions_by_id["skin_problem_in_area"]
    text = question_text(rules, question, rules.service("back-and-neck-massage"))
    assert "{areas}" not in text
    assert all(a.name.get() in text for a in rules.service("back-and-neck-massage").areas)


# --- properties ---------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30)
    | st.sampled_from(["yes", "no", "not_sure", "light", "neck", ""]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(slug=st.sampled_from(SLUGS), base=st.booleans(),
       junk=st.dictionaries(st.sampled_from([*RED_FLAGS, "pregnant", "pregnancy_complicated", "professional_cleared",
                                             "tension_areas", "preferred_intensity", "notes"]) | st.text(max_size=10),
                            json_values, max_size=8))
def test_junk_answers_raise_nothing_but_answer_errors(rules, slug, base, junk):
    answers = {**all_no(), **junk} if base else junk
    for allow_unknown in (True, False):
        try:
            decision = screen(rules, slug, answers, allow_unknown=allow_unknown)
        except AnswerErrors as e:
            assert e.errors and set(e.errors.values()) <= {"required", "invalid", "too_long", "not_a_list",
                                                           "unknown", "characters"}
        else:
            assert decision.outcome in Outcome


yes_no_unsure = st.sampled_from(["yes", "no", "not_sure"])


@st.composite
def valid_answers(draw):
    """Any complete, valid set of answers (follow-ups included or not, as a client may send)."""
    answers = {flag: draw(yes_no_unsure) for flag in RED_FLAGS}
    answers["pregnant"] = draw(yes_no_unsure)
    answers["pregnancy_complicated"] = draw(yes_no_unsure)
    cleared = draw(st.sampled_from(["yes", "no", None]))
    if cleared:
        answers["professional_cleared"] = cleared
    answers["tension_areas"] = draw(st.lists(st.sampled_from(["thoracic", "shoulder_blades", "lumbar", "neck"])))
    answers["preferred_intensity"] = draw(st.sampled_from(["light", "medium", "firm", ""]))
    return answers


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(slug=st.sampled_from(SLUGS), answers=valid_answers(), flag=st.sampled_from([*RED_FLAGS, "pregnant"]),
       raised=st.sampled_from(["yes", "not_sure"]))
def test_raising_any_red_flag_from_no_never_lowers_the_outcome(rules, slug, answers, flag, raised):
    before = screen(rules, slug, {**answers, flag: "no"}).outcome
    after = screen(rules, slug, {**answers, flag: raised}).outcome
    assert after >= before


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(slug=st.sampled_from(SLUGS), answers=valid_answers())
def test_suggestions_never_change_the_outcome(rules, slug, answers):
    service = rules.service(slug)
    normalized, errors = normalize(rules, service, answers)
    assert errors == {}
    with_suggestions = evaluate(rules, service, normalized)
    without = evaluate(dataclasses.replace(rules, suggestions=()), service, normalized)
    assert (with_suggestions.outcome, with_suggestions.reasons) == (without.outcome, without.reasons)
