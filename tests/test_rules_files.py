"""The rule files: the shipped ones load, and every kind of mistake stops loading with a message
that names the file and the entry, never a traceback at request time."""
import ast
from pathlib import Path

import pytest
from conftest import RED_FLAGS, SLUGS, edit

import screening
from screening.core.rules import OUTCOMES, RulesError, load_rules, rules_version

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
    "an option offered on an unknown service": (
        "questions.toml", 'services = ["decontracting-massage"] },\n  { id = "legs"',
        'services = ["decontracting-masage"] },\n  { id = "legs"',
        "questions.toml", "question 'tension_areas' option 'shoulders'",
        "unknown service 'decontracting-masage' (did you mean 'decontracting-massage'?)"),
    "an option offered on no service": (
        "questions.toml", 'services = ["decontracting-massage"] },\n  { id = "legs"',
        'services = [] },\n  { id = "legs"',
        "questions.toml", "question 'tension_areas' option 5", "'services' must be a non-empty array"),
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
    for path in Path(screening.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                yield path.name, node.func.id


def test_no_code_from_the_rule_files_is_ever_evaluated():
    forbidden = {"eval", "exec", "compile", "__import__"}
    assert [(f, name) for f, name in _calls_in_package() if name in forbidden] == []
    source = "".join(p.read_text() for p in Path(screening.__file__).parent.rglob("*.py"))
    for word in ("eval(", "exec("):      # also catches builtins.eval(...) and friends
        assert word not in source.replace("evaluate(", "").replace("execute(", "")


def prepend(folder: Path, file: str, text: str) -> None:
    """Put `text` at the very top of a rule file (before its first table)."""
    path = folder / file
    path.write_text(text + path.read_text())


# Each of these used to load without a word (the misspelt table or key was skipped), and the
# first one made the app answer "proceed" to a client with a fever, an injury and intense pain.
UNKNOWN_KEYS = {
    "[[rule]] for the fever rule's [[rules]]": (
        "rules.toml", '[[rules]]\nid = "fever"', '[[rule]]\nid = "fever"',
        "rules.toml", "(top level)", "unknown key 'rule' (did you mean 'rules'?)"),
    "[[question]] for [[questions]]": (
        "questions.toml", '[[questions]]\nid = "fever"', '[[question]]\nid = "fever"',
        "questions.toml", "(top level)", "unknown key 'question' (did you mean 'questions'?)"),
    "[[suggestion]] for [[suggestions]]": (
        "rules.toml", '[[suggestions]]\nid = "neck_tension"', '[[suggestion]]\nid = "neck_tension"',
        "rules.toml", "(top level)", "unknown key 'suggestion' (did you mean 'suggestions'?)"),
    "[[example]] for [[examples]]": (
        "examples.toml", '[[examples]]\nname = "not sure counts as yes"',
        '[[example]]\nname = "not sure counts as yes"',
        "examples.toml", "(top level)", "unknown key 'example' (did you mean 'examples'?)"),
    "[[service]] for [[services]]": (
        "services.toml", '[[services]]\nslug = "back-massage"', '[[service]]\nslug = "back-massage"',
        "services.toml", "(top level)", "unknown key 'service' (did you mean 'services'?)"),
    "[Clearance] for [clearance]": (
        "rules.toml", "\n[clearance]\n", "\n[Clearance]\n",
        "rules.toml", "(top level)", "unknown key 'Clearance' (did you mean 'clearance'?)"),
    "[outcomes.procede]": (
        "texts.toml", "[outcomes.proceed]", "[outcomes.procede]",
        "texts.toml", "[outcomes]", "unknown outcome(s) 'procede' (did you mean 'proceed'?)"),
    "a misspelt text key": (
        "texts.toml", "stale_notice = {", "stale_notise = {",
        "texts.toml", "[texts]", "unknown key 'stale_notise' (did you mean 'stale_notice'?)"),
    "a misspelt locale": (
        "questions.toml", 'text = { en = "Do you have a fever?", ca =', 'text = { en = "Do you have a fever?", cat =',
        "questions.toml", "question 'fever'", "unknown locale 'cat' (did you mean 'ca'?)"),
    "a misspelt key in a rule": (
        "rules.toml", 'outcome = "consult_professional"\nclearable = true\nmessage = { en = "Intense',
        'outcome = "consult_professional"\nclearabel = true\nmessage = { en = "Intense',
        "rules.toml", "rule 'intense_pain'", "unknown key 'clearabel' (did you mean 'clearable'?)"),
    "a misspelt key in an option": (
        "questions.toml", '{ id = "light", label', '{ id = "light", lable',
        "questions.toml", "question 'preferred_intensity' option 1", "unknown key 'lable' (did you mean 'label'?)"),
    "a misspelt key in an area": (
        "services.toml", '{ id = "thoracic", name', '{ id = "thoracic", nmae',
        "services.toml", "service 'decontracting-back-massage' area 1", "unknown key 'nmae' (did you mean 'name'?)"),
    "a misspelt key in a faq": (
        "services.toml", "{ question = { en = \"Will it", "{ qestion = { en = \"Will it",
        "services.toml", "service 'decontracting-back-massage' faq 1", "unknown key 'qestion' (did you mean "
                                                                          "'question'?)"),
    "a misspelt key in [clearance]": (
        "rules.toml", '[clearance]\nquestion = "professional_cleared"\noutcome',
        '[clearance]\nquestion = "professional_cleared"\noutcomes',
        "rules.toml", "[clearance]", "unknown key 'outcomes' (did you mean 'outcome'?)"),
    "a misspelt key in an outcome's texts": (
        "texts.toml", "[outcomes.proceed]\nlabel", "[outcomes.proceed]\nLabel",
        "texts.toml", "[outcomes.proceed]", "unknown key 'Label' (did you mean 'label'?)"),
    "a misspelt test in a condition": (
        "rules.toml", FEVER_RULE, 'when = { var = "fever", inn = ["yes", "not_sure"] }',
        "rules.toml", "rule 'fever'", "'inn' (did you mean 'in'?)"),
    "a misspelt question id in a condition": (
        "rules.toml", FEVER_RULE, 'when = { var = "Fever", in = ["yes", "not_sure"] }',
        "rules.toml", "rule 'fever'", "'Fever' (did you mean 'fever'?)"),
    "a misspelt answer in an example": (
        "examples.toml", 'fever = "yes", skin_problem', 'fever = "yse", skin_problem',
        "examples.toml", "example 'fever always means consult, even when cleared'",
        "answers: fever = 'yse' is not one of yes, no, not_sure (did you mean 'yes'?)"),
    "a misspelt rule in an example": (
        "examples.toml", 'rules = ["spinal_condition"]', 'rules = ["spinal_conditon"]',
        "examples.toml", "example \"a professional's clearance turns a red flag into tell the centre\"",
        "'rules' names unknown rule 'spinal_conditon' (did you mean 'spinal_condition'?)"),
}


@pytest.mark.parametrize("case", UNKNOWN_KEYS.values(), ids=UNKNOWN_KEYS.keys())
def test_a_misspelt_table_or_key_is_refused_with_a_hint(rules_copy, case):
    test_a_broken_rules_folder_fails_naming_file_and_entry(rules_copy, case)


@pytest.mark.parametrize(("file", "line", "problem"), [
    ("rules.toml", "version = 2\n", "unknown key 'version'; allowed: clearance, rules, suggestions"),
    ("questions.toml", "rules = []\n", "unknown key 'rules'; allowed: questions"),
    ("texts.toml", "disclaimer = 'x'\n", "unknown key 'disclaimer'; allowed: outcomes, texts"),
    ("examples.toml", "[[rules]]\nid = 'x'\n", "unknown key 'rules'; allowed: examples"),
])
def test_a_stray_top_level_key_is_refused(rules_copy, file, line, problem):
    prepend(rules_copy, file, line)
    with pytest.raises(RulesError) as raised:
        load_rules(rules_copy)
    assert str(raised.value) == f"{file}: (top level): {problem}"


@pytest.mark.parametrize(("file", "line", "problem"), [
    ("rules.toml", "rules = 3\n", "'rules' must be [[rules]] tables (an array of tables), got a whole number"),
    ("rules.toml", "clearance = 'tell_centre'\n", "'clearance' must be a [clearance] table, got a string"),
    ("questions.toml", "questions = ['fever']\n", "'questions' must be [[questions]] tables (an array of tables), "
                                                  "got an array"),
    ("texts.toml", "texts = []\n", "'texts' must be a [texts] table, got an array"),
])
def test_a_table_position_of_the_wrong_type_is_refused(tmp_path, rules_copy, file, line, problem):
    path = rules_copy / file
    # keep only the header comments and what follows the table being replaced is dropped
    path.write_text(line + ("[outcomes.proceed]\nlabel = 'x'\n" if file == "texts.toml" else ""))
    with pytest.raises(RulesError) as raised:
        load_rules(rules_copy)
    assert str(raised.value) == f"{file}: (top level): {problem}"


@pytest.mark.parametrize(("file", "old", "new", "entry", "problem"), [
    ("questions.toml", 'id = "fever"\ntype = "yes_no_unsure"\nred_flag = true',
     'id = "fever"\ntype = "yes_no_unsure"\nred_flag = 1', "question 'fever'", "'red_flag' must be true or false, "
                                                                               "got a whole number"),
    ("questions.toml", "max_length = 1000", 'max_length = "1000"', "question 'notes'",
     "'max_length' must be a whole number, got a string"),
    ("questions.toml", 'options = [\n  { id = "light"', 'options = "light" \nxoptions = [\n  { id = "light"',
     "question 'preferred_intensity'", "unknown key 'xoptions' (did you mean 'options'?)"),
    ("services.toml", 'areas = [\n  { id = "thoracic", name', 'areas = [\n  "thoracic",\n  { id = "thoracic", name',
     "service 'decontracting-back-massage' area 1", "expected a table, got a string"),
    ("examples.toml", "answers = { intense_pain", "answers = 3\nxanswers = { intense_pain",
     "example 'nothing stands in the way'", "unknown key 'xanswers' (did you mean 'answers'?)"),
    ("examples.toml", 'tension_areas = ["thoracic", "lumbar"]', 'tension_areas = "thoracic, lumbar"',
     "example 'nothing stands in the way'", "answers: tension_areas = 'thoracic, lumbar' is not one of"),
    ("examples.toml", 'rules = ["pregnancy"]', 'rules = "pregnancy"',
     "example 'uncomplicated pregnancy: tell the centre'", "'rules' must be an array, got a string"),
])
def test_a_nested_value_of_the_wrong_type_or_name_is_refused(rules_copy, file, old, new, entry, problem):
    edit(rules_copy, file, old, new)
    with pytest.raises(RulesError) as raised:
        load_rules(rules_copy)
    assert (raised.value.file, raised.value.entry) == (file, entry)
    assert problem in raised.value.problem


@pytest.mark.parametrize(("when", "problem"), [
    ('{ var = "fever", contains = "yes" }', "'contains' can never hold for fever (a yes_no_unsure question); "
                                            "use equals or not_equals or in"),
    ('{ var = "fever", gt = 1 }', "'gt' can never hold for fever"),
    ('{ var = "tension_areas", equals = "neck" }', "'equals' can never hold for tension_areas (a multi question, "
                                                   "a list); use contains"),
    ('{ var = "service.areas", in = ["neck"] }', "'in' can never hold for service.areas (a service attribute, a list)"),
    ('{ var = "notes", equals = 3 }', "condition compares notes with 3, but its values are text"),
])
def test_a_test_that_can_never_hold_for_its_answer_is_refused(rules_copy, when, problem):
    edit(rules_copy, "rules.toml", FEVER_RULE, f'when = {{ any = [{{ var = "fever", equals = "yes" }}, {when}] }}')
    with pytest.raises(RulesError) as raised:
        load_rules(rules_copy)
    assert (raised.value.file, raised.value.entry) == ("rules.toml", "rule 'fever'")
    assert problem in raised.value.problem


def test_a_key_left_in_the_wrong_rule_is_refused(rules_copy):
    # the clearance message of intense pain moved to the fever rule, which is never cleared
    edit(rules_copy, "rules.toml", FEVER_MESSAGE, 'cleared_message = "Fine."\n' + FEVER_MESSAGE)
    with pytest.raises(RulesError, match=r"^rules.toml: rule 'fever': 'cleared_message' without 'clearable = true'"):
        load_rules(rules_copy)


def test_about_must_name_a_question_its_rule_reads(rules_copy):
    edit(rules_copy, "rules.toml", 'about = "fever"', 'about = "intense_pain"')
    with pytest.raises(RulesError, match=r"^rules.toml: rule 'fever': 'about' names 'intense_pain', which this "
                                         r"rule's 'when' does not read"):
        load_rules(rules_copy)


def test_options_on_a_text_question_are_refused(rules_copy):
    edit(rules_copy, "questions.toml", "max_length = 1000", 'max_length = 1000\noptions = [{ id = "a", label = "A" }]')
    with pytest.raises(RulesError, match=r"^questions.toml: question 'notes': a text question has no options"):
        load_rules(rules_copy)
