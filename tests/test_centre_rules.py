"""A centre's own rules (rules/centres/<slug>.toml): stricter, never laxer, proven.

The fixture is a second centre, stricter on pregnancy: any pregnancy, complicated or not, is
consult_professional there. It is a test fixture, not a shipped file.
"""
from dataclasses import replace

import pytest
from conftest import all_no, edit

from screening.core import centres, checker
from screening.core.checker import RulesRefused
from screening.core.rules import RulesError, load_rules

CENTRE = "centres/exemple-barcelona.toml"
STRICT = "centres/centre-prudent.toml"
STRICT_RULE = '''
[[rules]]
id = "any_pregnancy_consult"
when = { var = "pregnant", in = ["yes", "not_sure"] }
outcome = "consult_professional"
about = "pregnant"
source = "The centre's decision: every pregnancy is seen by a professional first."
[rules.message]
en = "This centre asks every pregnant client to speak to a health professional before booking."
ca = "Aquest centre demana a les clientes embarassades que parlin amb un professional de la salut abans de reservar."
es = "Este centro pide a las clientas embarazadas que hablen con un profesional sanitario antes de reservar."
'''
STRICT_EXAMPLE = '''
[[examples]]
name = "uncomplicated pregnancy: consult here"
service = "back-massage"
outcome = "consult_professional"
rules = ["pregnancy", "any_pregnancy_consult"]
[examples.answers]
intense_pain = "no"
persistent_pain = "no"
recent_injury = "no"
radiating_pain = "no"
tingling_or_weakness = "no"
spinal_condition = "no"
fever = "no"
skin_problem_in_area = "no"
pregnant = "yes"
pregnancy_complicated = "no"
ongoing_diagnosis = "no"
'''
PREGNANT = all_no(pregnant="yes", pregnancy_complicated="no")


def add_centre(folder, slug="centre-prudent", name="Centre Prudent", extra=STRICT_RULE + STRICT_EXAMPLE):
    """A second centre: the shipped one's identity under another name, plus `extra` (its own rules)."""
    text = (folder / CENTRE).read_text().replace("Espai Massatge Exemple", name)
    (folder / "centres" / f"{slug}.toml").write_text(text + extra)


@pytest.fixture
def two_centres(rules_copy):
    """The shipped centre and the strict one."""
    add_centre(rules_copy)
    return rules_copy


def check_rules(runner, folder):
    """`screening check-rules --rules-dir folder`: (exit code, output lines)."""
    result = runner.invoke(args=["check-rules", "--rules-dir", str(folder)])
    return result.exit_code, result.output.splitlines()


def start_up_lines(make_app, folder) -> list[str]:
    """The lines start-up refuses the folder with (a RulesRefused, one problem a line)."""
    with pytest.raises(RulesRefused) as e:
        make_app(RULES_DIR=str(folder))
    return str(e.value).splitlines()


@pytest.fixture
def fresh_proofs(monkeypatch):
    """A fresh in-process memory of verdicts, and the centre proofs actually run (their first centre)."""
    monkeypatch.setattr(checker, "_verdicts", {})
    runs = []
    real = checker.check_centre_group

    def counting(shared, centre):
        runs.append(centre.slug)
        return real(shared, centre)

    monkeypatch.setattr(checker, "check_centre_group", counting)
    return runs


# --- loading: the centre's rules are validated like rules.toml --------------------------------------

def test_a_centre_file_may_add_rules_and_examples_of_its_own(two_centres):
    shared = load_rules(two_centres)
    found = centres.load_centres(two_centres, tuple(shared.services_by_slug), shared)
    strict, plain = found["centre-prudent"], found["exemple-barcelona"]
    assert [r.id for r in strict.rules] == ["any_pregnancy_consult"] and strict.rules[0].about == "pregnant"
    assert [e.name for e in strict.examples] == ["uncomplicated pregnancy: consult here"]
    assert strict.extra and not plain.extra and not plain.rules
    combined = centres.centre_rules(shared, strict)
    assert [r.id for r in combined.rules] == [r.id for r in shared.rules] + ["any_pregnancy_consult"]
    assert combined.examples == strict.examples and combined.suggestions == shared.suggestions
    assert combined.version != shared.version
    assert centres.centre_rules(shared, plain) is shared        # nothing of its own: the shared set itself


@pytest.mark.parametrize("extra, entry, problem", [
    (STRICT_RULE.replace('id = "any_pregnancy_consult"', 'id = "pregnancy"'), "rule 'pregnancy'",
     "reuses the id of a rule in rules.toml"),
    (STRICT_RULE.replace('var = "pregnant"', 'var = "pregnat"'), "rule 'any_pregnancy_consult'",
     "bad condition"),
    (STRICT_RULE.replace('outcome = "consult_professional"', 'outcome = "consult"'), "rule 'any_pregnancy_consult'",
     "unknown outcome 'consult'"),
    (STRICT_RULE.replace('source = "The centre', 'sourc = "The centre'), "rule 'any_pregnancy_consult'",
     "unknown key 'sourc' (did you mean 'source'?)"),
    (STRICT_RULE + STRICT_RULE, "rule 'any_pregnancy_consult'", "duplicate id"),
    (STRICT_RULE.replace('in = ["yes", "not_sure"]', 'in = ["yes", "maybe"]'), "rule 'any_pregnancy_consult'",
     "impossible value(s) ['maybe']"),
    (STRICT_RULE + STRICT_EXAMPLE.replace('"any_pregnancy_consult"]', '"any_pregnancy"]'),
     "example 'uncomplicated pregnancy: consult here'", "'rules' names unknown rule 'any_pregnancy'"),
    ('\n[[suggestions]]\nid = "x"\n', "suggestions", "suggestions are shared"),
    ('\n[clearance]\nquestion = "professional_cleared"\noutcome = "proceed"\n', "clearance",
     "the [clearance] is shared"),
    ('\nrules = "consult everyone"\n', "rules", "must be [[rules]] tables"),
])
def test_a_mistake_in_a_centres_rules_is_refused_naming_its_file_entry_and_problem(rules_copy, make_app, runner,
                                                                                extra, entry, problem):
    add_centre(rules_copy, extra=extra)
    with pytest.raises(RulesError) as e:
        make_app(RULES_DIR=str(rules_copy))
    assert (e.value.file, e.value.entry) == (STRICT, entry)
    assert problem in e.value.problem
    code, lines = check_rules(runner, rules_copy)               # check-rules says the very same line
    assert code == 1 and lines == [str(e.value)]


# --- the proof: every property, and never lower than the shared rules ---------------------------------

def test_check_rules_proves_the_stricter_centre_and_names_it(runner, two_centres):
    code, lines = check_rules(runner, two_centres)
    assert code == 0, lines
    assert f"{STRICT}: 1 rule(s) and 1 example(s) of its own: stricter, never laxer, and every property holds." \
        in lines
    assert any(line.startswith("2 centre(s): 1 with the shared rules only, 1 with rules of their own in 1 distinct")
               for line in lines)
    assert lines[-1] == "All rules hold."


def test_a_centre_rule_that_lowers_the_outcome_for_more_worrying_answers_is_refused_the_same_everywhere(
        runner, make_app, rules_copy):
    # consult when NOT pregnant: answering "yes" then gives less (tell_centre) than "no" did
    add_centre(rules_copy, extra=STRICT_RULE.replace('in = ["yes", "not_sure"]', 'equals = "no"')
               .replace('about = "pregnant"\n', ''))
    code, lines = check_rules(runner, rules_copy)
    expected = (f"{STRICT}: rule 'any_pregnancy_consult': changing pregnant from no to yes lowers the outcome from "
                f"consult_professional to tell_centre")
    assert code == 1 and any(line.startswith(expected) for line in lines), lines
    refused = start_up_lines(make_app, rules_copy)
    assert any(line.startswith(expected) for line in refused)
    assert refused == [line for line in lines if line.startswith("centres/")]     # the same lines
    assert not any(line.startswith(CENTRE) for line in lines)      # the other centre is not blamed


def test_a_centre_set_that_would_give_less_than_the_shared_rules_is_refused_with_a_counterexample(
        runner, make_app, two_centres, monkeypatch, fresh_proofs):
    # however a centre's set came to be lower (here: a combination that drops a shared rule), the
    # set that is served is compared with the shared rules over every answer
    def lax(shared, centre):
        built = real(shared, centre)
        return built if built is shared else replace(
            built, rules=tuple(r for r in built.rules if r.id != "light_pressure_on_firm_service"))
    real = centres.centre_rules
    monkeypatch.setattr(centres, "centre_rules", lax)
    expected = (f"{STRICT}: stricter, never laxer: gives proceed where the shared rules give tell_centre, e.g. for "
                f"decontracting-back-massage with ")
    refused = start_up_lines(make_app, two_centres)
    assert refused[0].startswith(expected) and refused[0].endswith("preferred_intensity=light")
    assert len(refused) == 1
    code, lines = check_rules(runner, two_centres)
    assert code == 1 and refused[0] in lines


def test_a_centres_own_example_runs_against_its_own_rules(runner, rules_copy):
    add_centre(rules_copy, extra=STRICT_RULE + STRICT_EXAMPLE.replace('outcome = "consult_professional"',
                                                                        'outcome = "tell_centre"'))
    code, lines = check_rules(runner, rules_copy)
    assert code == 1
    assert (f"{STRICT}: example 'uncomplicated pregnancy: consult here': expected tell_centre, got "
            f"consult_professional (rules fired: pregnancy, any_pregnancy_consult)") in lines


def test_a_centre_rule_without_translations_or_promising_a_cure_is_refused(runner, make_app, rules_copy):
    rule = STRICT_RULE.split("[rules.message]")[0] + 'message = "This massage will cure your pregnancy back pain."\n'
    add_centre(rules_copy, extra=rule)
    code, lines = check_rules(runner, rules_copy)
    assert code == 1
    assert f"{STRICT}: rule 'any_pregnancy_consult': message (en) promises a medical result: 'cure'" in lines
    assert f"{STRICT}: rule 'any_pregnancy_consult': 'message' lacks ca, es" in lines
    assert start_up_lines(make_app, rules_copy) == [line for line in lines if line.startswith("centres/")]


# --- one proof per distinct set of centre rules, remembered ----------------------------------------------

def test_centres_with_the_same_rules_are_proved_once_and_a_centre_without_rules_not_at_all(
        make_app, rules_copy, fresh_proofs):
    add_centre(rules_copy, "centre-a", "Centre A")
    add_centre(rules_copy, "centre-b", "Centre B", STRICT_RULE.replace(" = ", "  =  ") + STRICT_EXAMPLE)  # same, spaced
    add_centre(rules_copy, "centre-c", "Centre C", extra="")
    app = make_app(RULES_DIR=str(rules_copy))
    assert fresh_proofs == ["centre-a"]
    sets = app.extensions["screening.centre_rules"]
    assert sets["centre-a"].rules == sets["centre-b"].rules != sets["centre-c"].rules
    assert sets["centre-c"] is app.extensions["screening.rules"]
    make_app(RULES_DIR=str(rules_copy))
    assert fresh_proofs == ["centre-a"]                            # remembered in the process


def test_the_proof_key_follows_the_centres_rules_not_their_phone_numbers(rules_copy):
    add_centre(rules_copy)
    shared = load_rules(rules_copy)

    def key():
        return checker.directory_key(shared, centres.load_centres(rules_copy, tuple(shared.services_by_slug),
                                                                  shared).values())
    first = key()
    assert first != checker.proof_key(shared)
    edit(rules_copy, STRICT, 'phone = "+34 930 000 000"', 'phone = "+34 930 000 001"')
    assert key() == first
    edit(rules_copy, STRICT, "to speak to a health professional before booking.", "to see a health professional first.")
    assert key() != first
    (rules_copy / STRICT).unlink()
    assert key() == checker.proof_key(shared)       # no centre rules: the shared proof, as before


def test_a_proof_on_disk_covers_the_centres_rules(two_centres, tmp_path, fresh_proofs, monkeypatch):
    checker.prove(load_rules(two_centres), cache_dir=str(tmp_path), centres=_centres(two_centres).values())
    assert fresh_proofs == ["centre-prudent"]
    monkeypatch.setattr(checker, "_verdicts", {})             # the next start (a worker, a restart) reads it
    checker.prove(load_rules(two_centres), cache_dir=str(tmp_path), centres=_centres(two_centres).values())
    assert fresh_proofs == ["centre-prudent"]
    edit(two_centres, STRICT, 'outcome = "consult_professional"\nabout', 'outcome = "consult_professional"\n'
                                                                          'clearable = false\nabout')
    monkeypatch.setattr(checker, "_verdicts", {})             # other centre rules: proved again
    checker.prove(load_rules(two_centres), cache_dir=str(tmp_path), centres=_centres(two_centres).values())
    assert fresh_proofs == ["centre-prudent", "centre-prudent"]


def _centres(folder):
    shared = load_rules(folder)
    return centres.load_centres(folder, tuple(shared.services_by_slug), shared)


# --- the engine uses the centre's set ------------------------------------------------------------------

@pytest.mark.parametrize("default, outcome, rules", [
    ("exemple-barcelona", "tell_centre", ["pregnancy"]),
    ("centre-prudent", "consult_professional", ["pregnancy", "any_pregnancy_consult"]),
])
def test_each_centre_screens_with_its_own_rules(make_app, two_centres, default, outcome, rules):
    app = make_app(RULES_DIR=str(two_centres), DEFAULT_CENTRE=default)
    client = app.test_client()
    page = client.post("/screening/back-massage", data=PREGNANT)
    assert f'data-outcome="{outcome}"' in page.text
    assert all(f'data-reason="{r}"' in page.text for r in rules)
    answers = {k: v for k, v in PREGNANT.items() if v}
    body = client.post("/api/v1/evaluate", json={"service": "back-massage", "answers": answers}).get_json()
    assert body["outcome"] == outcome and [r["rule"] for r in body["reasons"]] == rules
    shared = app.extensions["screening.rules"]
    assert (body["rules_version"] == shared.version) == (default == "exemple-barcelona")


def test_the_api_document_names_every_rule_an_evaluate_may_answer_with(make_app, rules_copy):
    """A centre's own rule is a `Reason.rule` its evaluate can answer with: the document says so, as
    it does for the shared rules (a client validating answers against it would otherwise refuse)."""
    add_centre(rules_copy)
    client = make_app(RULES_DIR=str(rules_copy), DEFAULT_CENTRE="exemple-barcelona").test_client()
    answers = {"pregnant": "yes", "pregnancy_complicated": "no",
               **{q: False for q in ("intense_pain", "persistent_pain", "recent_injury", "radiating_pain",
                                     "tingling_or_weakness", "spinal_condition", "fever", "skin_problem_in_area",
                                     "ongoing_diagnosis")}}
    answer = client.post("/api/v1/evaluate", json={"service": "back-massage", "centre": "centre-prudent",
                                                   "answers": answers})
    assert answer.status_code == 200, answer.get_json()
    named = {r["rule"] for r in answer.get_json()["reasons"]}
    assert "any_pregnancy_consult" in named
    schemas = client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]
    enum = schemas["Reason"]["properties"]["rule"]["enum"]
    assert named <= set(enum) and len(enum) == len(set(enum))
