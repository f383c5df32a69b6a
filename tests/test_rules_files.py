"""The rule files: the shipped ones load, and every kind of mistake stops loading with a message
that names the file and the entry, never a traceback at request time."""
import ast
from pathlib import Path

import pytest
from conftest import RED_FLAGS, SLUGS, edit

import screening
from screening.rules import OUTCOMES, RulesError, load_rules, rules_version

FEVER_RULE = 'when = { var = "fever", in = ["yes", "not_sure"] }'
FEVER_MESSAGE = 'message = { en = "Please do not book while you have a fever.'


def test_the_shipped_rules_load_with_every_question_service_and_outcome(rules):
    assert [s.slug for s in rules.services] == SLUGS
    ids = {q.id for q in rules.questions}
    assert set(RED_FLAGS) | {"pregnant", "pregnancy_complicated", "professional_cleared", "tension_areas",
                             "preferred_intensity", "notes"} <= ids
    assert all(rules.questions_by_id[f].red_flag and rules.questions_by_id[f].required for f in RED_FLAGS)
    assert {r.outcome for r in rules.rules} <= set(OUTCOMES)
    assert rules.examples


def test_every_rule_and_question_says_where_it_comes_from(rules):
    assert all(r.source.strip() for r in rules.rules)
    assert all(q.source.strip() for q in rules.questions)


def test_the_rules_version_changes_when_a_file_changes(rules_copy):
    before = rules_version(rules_copy)
    edit(rules_copy, "texts.toml", 'list_or = { en = "or"', 'list_or = { en = "or else"')
    assert rules_version(rules_copy) != before
    assert load_rules(rules_copy).version == rules_version(rules_copy)


BROKEN = {
    "unknown question id in a condition": (
        "rules.toml", FEVER_RULE, FEVER_RULE.replace('"fever"', '"fevre"'),
        "rules.toml", "rule 'fever'", "unknown var 'fevre'"),
    "unknown question id in a follow-up": (
        "questions.toml", 'asked_when = { var = "pregnant", in', 'asked_when = { var = "pregnnt", in',
        "questions.toml", "question 'pregnancy_complicated'", "unknown var 'pregnnt'"),
    "unknown outcome": (
        "rules.toml", 'outcome = "tell_centre"\nmessage = { en = "Tell the centre that',
        'outcome = "tell_center"\nmessage = { en = "Tell the centre that',
        "rules.toml", "rule 'pregnancy'", "unknown outcome 'tell_center'"),
    "duplicate rule id": (
        "rules.toml", 'id = "persistent_pain"\nabout', 'id = "intense_pain"\nabout',
        "rules.toml", "rule 'intense_pain'", "duplicate id"),
    "duplicate question id": (
        "questions.toml", 'id = "persistent_pain"\ntype', 'id = "intense_pain"\ntype',
        "questions.toml", "question 'intense_pain'", "duplicate id"),
    "a condition with two tests": (
        "rules.toml", FEVER_RULE, 'when = { var = "fever", in = ["yes"], equals = "yes" }',
        "rules.toml", "rule 'fever'", "bad condition"),
    "a condition whose 'in' is not a list": (
        "rules.toml", FEVER_RULE, 'when = { var = "fever", in = "yes" }',
        "rules.toml", "rule 'fever'", "'in' needs a non-empty list"),
    "an empty 'all'": (
        "rules.toml", FEVER_RULE, "when = { all = [] }",
        "rules.toml", "rule 'fever'", "needs a non-empty list"),
    "a condition that is not a table": (
        "rules.toml", FEVER_RULE, 'when = "fever == yes"',
        "rules.toml", "rule 'fever'", "must be a table"),
    "an impossible literal": (
        "rules.toml", FEVER_RULE, 'when = { var = "fever", in = ["yes", "not sure"] }',
        "rules.toml", "rule 'fever'", "impossible value(s) ['not sure']"),
    "an impossible literal in a suggestion": (
        "rules.toml", '{ var = "tension_areas", contains = "neck" }', '{ var = "tension_areas", contains = "nek" }',
        "rules.toml", "suggestion 'neck_tension'", "impossible value(s) ['nek']"),
    "a missing message": (
        "rules.toml", FEVER_MESSAGE, "# " + FEVER_MESSAGE,
        "rules.toml", "rule 'fever'", "missing 'message'"),
    "a text without English": (
        "questions.toml", 'text = { en = "Do you have a fever?", ', 'text = { ',
        "questions.toml", "question 'fever'", "needs an English ('en') text"),
    "an empty text": (
        "rules.toml", FEVER_MESSAGE, 'message = { en = " " }\n# ',
        "rules.toml", "rule 'fever'", "must be a non-empty string"),
    "a required text missing from texts.toml": (
        "texts.toml", "disclaimer = {", "# disclaimer = {",
        "texts.toml", "[texts]", "missing 'disclaimer'"),
    "a suggestion to an unknown service": (
        "rules.toml", 'service = "back-massage"', 'service = "foot-massage"',
        "rules.toml", "suggestion 'lighter_service'", "unknown service slug 'foot-massage'"),
    "an optional red flag": (
        "questions.toml", 'id = "fever"\ntype = "yes_no_unsure"\nred_flag = true',
        'id = "fever"\ntype = "yes_no_unsure"\nred_flag = true\nrequired = false',
        "questions.toml", "question 'fever'", "a red flag must be required"),
    "an example about an unknown question": (
        "examples.toml", "answers = { intense_pain", "answers = { intense_pian = 'no', intense_pain",
        "examples.toml", "example 'nothing stands in the way'", "unknown question id(s) ['intense_pian']"),
    "a TOML syntax error": (
        "services.toml", '[[services]]\nslug = "back-massage"', '[[services]\nslug = "back-massage"',
        "services.toml", "(file)", "not valid TOML"),
}


@pytest.mark.parametrize("case", BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_rules_folder_fails_naming_file_and_entry(rules_copy, case):
    file, old, new, expected_file, expected_entry, expected_problem = case
    edit(rules_copy, file, old, new)
    with pytest.raises(RulesError) as raised:
        load_rules(rules_copy)
    assert (raised.value.file, raised.value.entry) == (expected_file, expected_entry)
    assert expected_problem in raised.value.problem
    assert str(raised.value).startswith(f"{expected_file}: {expected_entry}: ")


@pytest.mark.parametrize("name", ["questions.toml", "rules.toml", "services.toml", "texts.toml", "examples.toml"])
def test_a_missing_rule_file_is_named(rules_copy, name):
    (rules_copy / name).unlink()
    with pytest.raises(RulesError, match=rf"^{name}: \(file\): missing from "):
        load_rules(rules_copy)


def _calls_in_package():
    """Every call by name in the package source: (file, function name)."""
    for path in Path(screening.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                yield path.name, node.func.id


def test_no_code_from_the_rule_files_is_ever_evaluated():
    forbidden = {"eval", "exec", "compile", "__import__"}
    assert [(f, name) for f, name in _calls_in_package() if name in forbidden] == []
    source = "".join(p.read_text() for p in Path(screening.__file__).parent.glob("*.py"))
    for word in ("eval(", "exec("):      # also catches builtins.eval(...) and friends
        assert word not in source.replace("evaluate(", "").replace("execute(", "")
