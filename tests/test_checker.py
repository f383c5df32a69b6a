"""The exhaustive checker behind `screening check-rules`: the shipped rules pass, and each kind of
unsafe or broken rule set is caught with the file and entry to fix."""
import hashlib
from pathlib import Path

import pytest
from conftest import edit

from screening.core import engine
from screening.core.checker import FORBIDDEN, check
from screening.core.rules import load_rules

TEST_MESSAGE = '{ en = "A test rule.", ca = "Una regla de prova.", es = "Una regla de prueba." }'


def add_rule(folder: Path, rule_id: str, when: str, outcome: str = "consult_professional", extra: str = "") -> None:
    """Append one rule to rules.toml."""
    with open(folder / "rules.toml", "a") as f:
        f.write(f'\n[[rules]]\nid = "{rule_id}"\nwhen = {when}\noutcome = "{outcome}"\n'
                f'message = {TEST_MESSAGE}\nsource = "a test"\n{extra}')


def edit_entry(folder: Path, file: str, entry_id: str, old: str, new: str) -> None:
    """Replace the first `old` after the line `id = "entry_id"` (so message wording can change freely)."""
    path = folder / file
    text = path.read_text()
    at = text.index(old, text.index(f'\nid = "{entry_id}"\n'))
    path.write_text(text[:at] + new + text[at + len(old):])


def problems(folder: Path) -> list[str]:
    """The problems check() finds in a rules folder, as the CLI prints them."""
    return [str(p) for p in check(load_rules(folder)).problems]


def test_the_shipped_rules_pass_over_millions_of_combinations(rules):
    report = check(rules)
    assert report.problems == []
    assert report.ok
    # 3^9 red-flag answers alone, for each of the service groups conditions can tell apart
    assert report.combinations > 3 ** 9 * report.service_groups
    assert 1 <= report.service_groups <= len(rules.services)


def test_the_disclaimer_may_say_no_outcome_is_guaranteed(rules):
    # it says the massage guarantees no specific effect: a word the rule messages may not use
    assert all(FORBIDDEN[lang].search(rules.text("disclaimer", lang)) for lang in ("en", "ca", "es"))
    assert check(rules).ok


def test_a_consult_rule_for_an_answer_of_no_is_caught_when_yes_can_give_less(rules_copy):
    # "no" gives consult; "yes" with a professional's clearance gives tell the centre: lower
    add_rule(rules_copy, "consult_unless_tingling", '{ var = "tingling_or_weakness", equals = "no" }')
    found = problems(rules_copy)
    assert any(p.startswith("rules.toml: rule 'consult_unless_tingling': changing tingling_or_weakness from no to "
                            "yes lowers the outcome from consult_professional to tell_centre") for p in found)
    assert any("changing tingling_or_weakness from no to not_sure lowers" in p for p in found)


def test_a_consult_rule_for_not_pregnant_is_caught_through_the_follow_up(rules_copy):
    add_rule(rules_copy, "consult_unless_pregnant", '{ var = "pregnant", equals = "no" }')
    found = problems(rules_copy)
    assert any(p.startswith("rules.toml: rule 'consult_unless_pregnant': changing pregnant from no to yes lowers")
               for p in found)


def test_a_rule_that_fires_when_a_follow_up_is_no_is_caught(rules_copy):
    add_rule(rules_copy, "consult_unless_complicated",
             '{ not = { var = "pregnancy_complicated", in = ["yes", "not_sure"] } }')
    found = problems(rules_copy)
    assert any("rule 'consult_unless_complicated': changing pregnancy_complicated from no to yes lowers" in p
               for p in found)


def test_a_consult_rule_for_no_fever_is_no_lowering_but_leaves_proceed_unreachable(rules_copy):
    # fever "yes" always gives consult, so nothing is lowered: the checker must not cry wolf
    add_rule(rules_copy, "consult_unless_fever", '{ var = "fever", equals = "no" }')
    found = problems(rules_copy)
    assert not any("lowers" in p for p in found)
    assert "rules.toml: outcome 'proceed': no combination of answers leads to it" in found


def test_a_professionals_clearance_may_lower_the_outcome(rules):
    # by design: the shipped rules lower intense pain to tell the centre when cleared, and pass
    decision = engine.screen(rules, "back-massage", {**dict.fromkeys(
        [q.id for q in rules.questions if q.red_flag and not q.follow_up], "no"),
        "pregnant": "no", "intense_pain": "yes", "professional_cleared": "yes"})
    assert decision.outcome.code == "tell_centre"
    assert check(rules).ok


def test_a_rule_that_can_never_fire_is_caught(rules_copy):
    add_rule(rules_copy, "never", '{ all = [{ var = "fever", equals = "yes" }, { var = "fever", equals = "no" }] }')
    assert problems(rules_copy) == ["rules.toml: rule 'never': never fires, whatever the answers"]


def test_rules_reading_one_option_of_a_choice_or_a_text_are_reachable(rules_copy):
    # the checker enumerates one value per class of answers; these classes must all be there
    add_rule(rules_copy, "lumbar_only", '{ all = [{ var = "tension_areas", contains = "lumbar" }, '
                                        '{ not = { var = "tension_areas", contains = "thoracic" } }] }', "tell_centre")
    add_rule(rules_copy, "firm", '{ var = "preferred_intensity", equals = "firm" }', "tell_centre")
    add_rule(rules_copy, "notes_say_hello", '{ var = "notes", equals = "hello" }', "tell_centre")
    add_rule(rules_copy, "some_notes", '{ var = "notes", not_equals = "hello" }', "tell_centre")
    (rules_copy / "examples.toml").write_text("")     # the shipped examples do not expect these rules
    assert problems(rules_copy) == []


def test_a_suggestion_that_can_never_show_is_caught(rules_copy):
    edit(rules_copy, "rules.toml", '{ not = { var = "service.areas", contains = "neck" } },',
         '{ var = "service.areas", contains = "legs" }, { not = { var = "service.areas", contains = "neck" } },')
    assert problems(rules_copy) == ["rules.toml: suggestion 'neck_tension': never shown, whatever the service "
                                    "and answers"]


def test_a_suggestion_only_to_the_service_itself_is_caught(rules_copy):
    edit(rules_copy, "rules.toml", '{ var = "service.pressure", equals = "firm" },\n] }\nmessage = { en = "You prefer',
         '{ var = "service.slug", equals = "back-massage" },\n] }\nmessage = { en = "You prefer')
    assert "rules.toml: suggestion 'lighter_service': never shown, whatever the service and answers" in \
        problems(rules_copy)


def test_a_failing_example_is_caught(rules_copy):
    edit(rules_copy, "examples.toml", 'outcome = "tell_centre"\nrules = ["pregnancy"]',
         'outcome = "proceed"\nrules = ["pregnancy"]')
    assert problems(rules_copy) == ["examples.toml: example 'uncomplicated pregnancy: tell the centre': expected "
                                    "proceed, got tell_centre (rules fired: pregnancy)"]


def test_an_example_with_the_wrong_rules_is_caught(rules_copy):
    edit(rules_copy, "examples.toml", 'rules = ["spinal_condition"]', 'rules = ["spinal_condition", "fever"]')
    found = problems(rules_copy)
    assert len(found) == 1
    assert found[0].startswith("examples.toml: example \"a professional's clearance turns a red flag into tell the "
                               "centre\": expected rules ['fever', 'spinal_condition']")


def test_an_example_with_unanswered_red_flags_is_caught(rules_copy):
    edit(rules_copy, "examples.toml", 'answers = { intense_pain = "no", persistent_pain = "no", recent_injury = "no",'
                                      ' radiating_pain = "not_sure"', 'answers = { radiating_pain = "not_sure"')
    found = problems(rules_copy)
    assert len(found) == 1
    assert found[0].startswith("examples.toml: example 'not sure counts as yes': the answers are refused: "
                               "intense_pain: required")


def test_an_optional_pregnancy_question_is_caught(rules_copy):
    edit(rules_copy, "questions.toml", 'id = "pregnant"\ntype = "yes_no_unsure"\nrequired = true',
         'id = "pregnant"\ntype = "yes_no_unsure"\nrequired = false')
    assert problems(rules_copy) == ["questions.toml: question 'pregnant': must be required: unanswered is never 'no'",
                                    "questions.toml: question 'pregnant': rules read it but it is not required, "
                                    "so leaving it blank would count as no"]


def test_a_clearable_rule_that_is_never_cleared_is_caught(rules_copy):
    # ask for the clearance only when intense pain is "no": its own clearance can then never apply
    path = rules_copy / "questions.toml"
    text = path.read_text()
    start = text.index("asked_when = { any = [", text.index('id = "professional_cleared"'))
    end = text.index("] }\n", start) + len("] }\n")
    path.write_text(text[:start] + 'asked_when = { var = "intense_pain", equals = "no" }\n' + text[end:])
    assert "rules.toml: rule 'intense_pain': clearable, but the clearance can never apply when it fires " \
           "(is the clearance question asked then?)" in problems(rules_copy)


@pytest.mark.parametrize(("key", "words", "word"), [("message", "This massage will cure your back.", "cure"),
                                                    ("message", "Guaranteed relief.", "Guaranteed"),
                                                    ("cleared_message", "It will heal the injury.", "heal")])
def test_a_message_promising_a_medical_result_is_caught(rules_copy, key, words, word):
    edit_entry(rules_copy, "rules.toml", "recent_injury", f'{key} = {{ en = "', f'{key} = {{ en = "{words} ')
    assert problems(rules_copy) == [f"rules.toml: rule 'recent_injury': {key} (en) promises a medical result: "
                                    f"{word!r}"]


def test_a_promise_in_another_language_is_caught(rules_copy):
    edit_entry(rules_copy, "rules.toml", "recent_injury", 'es = "', 'es = "Este masaje cura la lesión. ')
    assert problems(rules_copy) == ["rules.toml: rule 'recent_injury': message (es) promises a medical result: 'cura'"]


def test_a_suggestion_promising_a_medical_result_is_caught(rules_copy):
    edit_entry(rules_copy, "rules.toml", "neck_tension", 'message = { en = "',
               'message = { en = "This treatment helps. ')
    assert problems(rules_copy) == ["rules.toml: suggestion 'neck_tension': message (en) promises a medical "
                                    "result: 'treatment'"]


def test_describing_a_clients_treatment_is_not_a_promise(rules_copy):
    edit_entry(rules_copy, "rules.toml", "ongoing_diagnosis", 'message = { en = "',
               'message = { en = "You are being treated for a health condition. ')
    assert problems(rules_copy) == []


def test_the_checker_notices_when_the_engine_disagrees_with_it(rules, monkeypatch):
    real_screen = engine.screen

    def lenient_screen(ruleset, slug, raw, **kwargs):
        decision = real_screen(ruleset, slug, raw, **kwargs)
        if raw.get("fever") == "yes":      # a broken engine that lets fever through
            return engine.Decision(slug, engine.Outcome.PROCEED, (), (), decision.rules_version)
        return decision

    monkeypatch.setattr(engine, "screen", lenient_screen)
    found = [str(p) for p in check(rules).problems]
    assert any(p.startswith("(checker): ") and "the engine gives proceed [], the checker consult_professional" in p
               for p in found)


def test_a_red_flag_that_only_tells_the_centre_is_caught(rules_copy):
    edit_entry(rules_copy, "rules.toml", "tingling_or_weakness", 'outcome = "consult_professional"',
               'outcome = "tell_centre"')
    found = problems(rules_copy)
    assert any(p.startswith("rules.toml: red flag 'tingling_or_weakness': answered yes or not sure without a "
                            "professional's clearance, it does not give consult_professional") for p in found)


def test_a_rule_that_forgets_not_sure_is_caught(rules_copy):
    edit_entry(rules_copy, "rules.toml", "radiating_pain", 'in = ["yes", "not_sure"]', 'in = ["yes"]')
    found = problems(rules_copy)
    assert any(p.startswith("rules.toml: rule 'radiating_pain': changing radiating_pain from yes to not_sure lowers "
                            "the outcome from consult_professional to proceed") for p in found)


# --- the screening policy (screening/core/policy.py), proved with examples.toml emptied -----------------

def without_examples(folder: Path) -> Path:
    """Empty examples.toml, so that whatever is found is found by the checker itself."""
    (folder / "examples.toml").write_text("")
    return folder


def remove_entry(folder: Path, file: str, header: str, entry_id: str) -> None:
    """Delete the [[header]] table whose first line after the header is `id = "entry_id"`."""
    path = folder / file
    text = path.read_text()
    start = text.index(f'[[{header}]]\nid = "{entry_id}"\n')
    end = text.find("\n[[", start + 1)
    path.write_text(text[:start] + (text[end + 1:] if end != -1 else ""))


def test_the_shipped_rules_prove_the_policy_without_any_example(rules_copy):
    assert problems(without_examples(rules_copy)) == []


POLICY_BREACHES = {
    "fever made clearable": (
        lambda d: edit_entry(d, "rules.toml", "fever", 'outcome = "consult_professional"\n',
                             'outcome = "consult_professional"\nclearable = true\ncleared_message = "Fine."\n'),
        "rules.toml: red flag 'fever': answered yes or not sure, it does not give consult_professional when a "
        "professional's clearance is given: it must never be cleared, e.g. for "),
    "a clearance to proceed": (
        lambda d: edit(d, "rules.toml", '[clearance]\nquestion = "professional_cleared"\noutcome = "tell_centre"',
                       '[clearance]\nquestion = "professional_cleared"\noutcome = "proceed"'),
        "rules.toml: [clearance]: with a red flag raised, a professional's clearance gives proceed, e.g. for "),
    "a red flag's rule removed": (
        lambda d: remove_entry(d, "rules.toml", "rules", "skin_problem_in_area"),
        "rules.toml: red flag 'skin_problem_in_area': answered yes or not sure without a professional's "
        "clearance, it does not give consult_professional, e.g. for "),
    "fever lowered to tell the centre": (
        lambda d: edit_entry(d, "rules.toml", "fever", 'outcome = "consult_professional"', 'outcome = "tell_centre"'),
        "rules.toml: red flag 'fever': answered yes or not sure without a professional's clearance, it does not "
        "give consult_professional, e.g. for "),
    "fever no longer marked a red flag": (
        lambda d: edit_entry(d, "questions.toml", "fever", "red_flag = true\n", ""),
        "questions.toml: question 'fever': must be marked red_flag = true (a red flag of the policy)"),
    "not sure dropped from fever (yes/no, no longer a red flag)": (
        lambda d: (edit_entry(d, "questions.toml", "fever", 'type = "yes_no_unsure"\nred_flag = true',
                              'type = "yes_no"\nrequired = true'),
                   edit(d, "rules.toml", 'var = "fever", in = ["yes", "not_sure"]', 'var = "fever", equals = "yes"')),
        "questions.toml: question 'fever': must offer yes, no and not sure (type = 'yes_no_unsure'): 'not sure' "
        "counts as yes"),
    "a red flag asked of some services only": (
        lambda d: edit_entry(d, "questions.toml", "skin_problem_in_area", "red_flag = true\n",
                             'red_flag = true\nasked_when = { var = "service.slug", equals = "back-massage" }\n'),
        "questions.toml: question 'skin_problem_in_area': must be asked of every client: remove 'asked_when'"),
    "a red flag question removed": (
        lambda d: (remove_entry(d, "questions.toml", "questions", "ongoing_diagnosis"),
                   remove_entry(d, "rules.toml", "rules", "ongoing_diagnosis"),
                   edit(d, "questions.toml", '  { var = "ongoing_diagnosis", in = ["yes", "not_sure"] },\n', "")),
        "questions.toml: question 'ongoing_diagnosis': missing: the screening policy needs this red-flag question"),
    "pregnancy no longer tells the centre": (
        lambda d: remove_entry(d, "rules.toml", "rules", "pregnancy"),
        "rules.toml: question 'pregnant': answered yes or not sure, it does not give at least tell_centre, e.g. "),
    "the pregnancy follow-up not asked when not sure": (
        lambda d: edit(d, "questions.toml", 'asked_when = { var = "pregnant", in = ["yes", "not_sure"] }',
                       'asked_when = { var = "pregnant", equals = "yes" }'),
        "questions.toml: question 'pregnancy_complicated': not asked when pregnant is yes or not sure, e.g. "),
    "a not sure answer no reason names": (
        lambda d: edit_entry(d, "rules.toml", "radiating_pain", 'about = "radiating_pain"\n', ""),
        "rules.toml: question 'radiating_pain': answered not sure, no reason says so (no rule with about = "
        "'radiating_pain' fires), e.g. "),
}


@pytest.mark.parametrize("case", POLICY_BREACHES.values(), ids=POLICY_BREACHES.keys())
def test_a_breach_of_the_policy_is_caught_without_any_example(rules_copy, case):
    change, expected = case
    change(without_examples(rules_copy))
    found = problems(rules_copy)
    assert any(p.startswith(expected) for p in found), found


def test_fever_stays_consult_when_cleared_alongside_another_red_flag(rules):
    # the counterexample the policy looks for, run through the engine: it holds for the shipped rules
    answers = {**{q.id: "no" for q in rules.questions if q.red_flag and not q.follow_up}, "pregnant": "no",
               "fever": "yes", "intense_pain": "yes", "professional_cleared": "yes"}
    assert engine.screen(rules, "back-massage", answers).outcome.code == "consult_professional"


# --- the proof at start-up: remembered per rules version and code, never skipped for a new one -----

@pytest.fixture
def proofs(monkeypatch):
    """A fresh in-process memory of verdicts, and a count of the proofs actually run."""
    from screening.core import checker
    monkeypatch.setattr(checker, "_verdicts", {})
    runs = []
    real_check = checker.check

    def counting_check(ruleset, floor=None):
        runs.append(ruleset.version)
        return real_check(ruleset, floor)

    monkeypatch.setattr(checker, "check", counting_check)
    return runs


def test_the_start_up_proof_runs_once_per_rules_version(proofs, make_app, rules_copy):
    make_app()
    make_app()
    assert len(proofs) == 1
    edit_entry(rules_copy, "rules.toml", "fever", 'message = { en = "', 'message = { en = "Stay home. ')
    make_app(RULES_DIR=str(rules_copy))
    assert len(proofs) == 2                     # a new version is proved, never assumed


def test_a_refused_rule_set_stays_refused_without_proving_again(proofs, make_app, rules_copy):
    from screening.core.checker import RulesRefused
    edit_entry(rules_copy, "rules.toml", "fever", 'outcome = "consult_professional"', 'outcome = "tell_centre"')
    for _ in range(2):
        with pytest.raises(RulesRefused, match=r"^rules.toml: red flag 'fever': answered yes or not sure without"):
            make_app(RULES_DIR=str(rules_copy))
    assert len(proofs) == 1


def test_a_passing_proof_is_kept_in_the_instance_folder_and_read_at_the_next_start(proofs, rules, tmp_path,
                                                                                   monkeypatch):
    from screening.core import checker
    checker.prove(rules, cache_dir=str(tmp_path))
    assert (tmp_path / "rules-proven").read_text().strip() == checker.proof_key(rules)
    monkeypatch.setattr(checker, "_verdicts", {})          # a new process (a worker, a restart)
    checker.prove(rules, cache_dir=str(tmp_path))
    assert len(proofs) == 1


def test_a_proof_on_disk_for_other_rules_or_code_is_not_trusted(proofs, rules, tmp_path, monkeypatch):
    from screening.core import checker
    (tmp_path / "rules-proven").write_text(f"{rules.version}-0000000000000000\n")    # same rules, older code
    checker.prove(rules, cache_dir=str(tmp_path))
    assert len(proofs) == 1
    monkeypatch.setattr(checker, "_verdicts", {})
    monkeypatch.setattr(checker, "_code_hash", "another-checker")                   # the code changed since
    checker.prove(rules, cache_dir=str(tmp_path))
    assert len(proofs) == 2


def test_a_refused_rule_set_is_never_written_as_proven(proofs, rules_copy, tmp_path):
    from screening.core import checker
    edit_entry(rules_copy, "rules.toml", "fever", 'outcome = "consult_professional"', 'outcome = "tell_centre"')
    with pytest.raises(checker.RulesRefused):
        checker.prove(load_rules(rules_copy), cache_dir=str(tmp_path))
    assert not (tmp_path / "rules-proven").exists()


def test_the_proof_key_follows_the_checker_and_engine_source():
    from screening.core import centres, checker, conditions, policy, rules
    digest = checker.code_hash()
    sources = [Path(m.__file__).read_bytes() for m in (checker, conditions, engine, policy, rules, centres)]
    assert digest == hashlib.sha256(b"".join(sources)).hexdigest()[:16]


def test_a_proof_cache_folder_that_does_not_exist_is_not_made(proofs, rules, tmp_path):
    from screening.core import checker
    checker.prove(rules, cache_dir=str(tmp_path / "instance"))      # a checkout whose instance/ was never made
    assert not (tmp_path / "instance").exists()
    assert len(proofs) == 1
