"""`screening check-rules`: exit codes and the `file: entry: problem` lines an admin reads."""
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import edit

from screening.cli import group
from screening.core.rules import RulesError, default_rules_dir

FEVER_RULE = 'when = { var = "fever", in = ["yes", "not_sure"] }'


def test_check_rules_passes_on_the_shipped_rules_and_says_how_much_it_checked(runner):
    result = runner.invoke(args=["check-rules"])
    assert result.exit_code == 0, result.output
    assert "All rules hold." in result.output
    assert "answer combinations" in result.output
    assert str(default_rules_dir()) in result.output


def test_check_rules_can_check_another_folder(runner, rules_copy):
    result = runner.invoke(args=["check-rules", "--rules-dir", str(rules_copy)])
    assert result.exit_code == 0, result.output
    assert str(rules_copy) in result.output


def test_a_folder_that_fails_to_load_gives_one_clean_line(runner, rules_copy):
    edit(rules_copy, "rules.toml", FEVER_RULE, 'when = { var = "fevre", in = ["yes"] }')
    result = runner.invoke(args=["check-rules", "--rules-dir", str(rules_copy)])
    assert result.exit_code == 1
    assert result.output.startswith("rules.toml: rule 'fever': bad condition: when: unknown var 'fevre'")
    assert "Traceback" not in result.output
    assert "All rules hold" not in result.output


def test_a_missing_folder_is_named(runner, tmp_path):
    result = runner.invoke(args=["check-rules", "--rules-dir", str(tmp_path / "nowhere")])
    assert result.exit_code == 1
    assert result.output.startswith("services.toml: (file): missing from ")


def test_a_failing_example_is_printed_and_exits_1(runner, rules_copy):
    edit(rules_copy, "examples.toml", 'outcome = "tell_centre"\nrules = ["pregnancy"]',
         'outcome = "proceed"\nrules = ["pregnancy"]')
    result = runner.invoke(args=["check-rules", "--rules-dir", str(rules_copy)])
    assert result.exit_code == 1
    assert "examples.toml: example 'uncomplicated pregnancy: tell the centre': expected proceed, got tell_centre" \
        in result.output.splitlines()[0]
    assert "1 problem(s) found." in result.output
    assert "All rules hold" not in result.output


def test_a_rule_that_lowers_the_outcome_is_printed_and_exits_1(runner, rules_copy):
    with open(rules_copy / "rules.toml", "a") as f:
        f.write('\n[[rules]]\nid = "consult_unless_pregnant"\nwhen = { var = "pregnant", equals = "no" }\n'
                'outcome = "consult_professional"\nmessage = "A test rule."\nsource = "a test"\n')
    result = runner.invoke(args=["check-rules", "--rules-dir", str(rules_copy)])
    assert result.exit_code == 1
    assert "rules.toml: rule 'consult_unless_pregnant': changing pregnant from no to yes lowers the outcome" \
        in result.output


def test_check_rules_help_ends_with_an_example(runner):
    result = runner.invoke(args=["check-rules", "--help"])
    assert result.exit_code == 0
    assert "Example: screening check-rules" in result.output
    assert "--rules-dir" in result.output


@pytest.fixture
def script_env(tmp_path, monkeypatch):
    """Environment for the console script, as an admin would set it."""
    # FlaskGroup sets FLASK_RUN_FROM_CLI for good (it turns app.run() off); undo it after the test
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "false")
    return {"SCREENING_DATABASE": str(tmp_path / "cli.db"), "SCREENING_SECRET_KEY": "k" * 40}


def test_the_console_script_runs_check_rules(script_env):
    result = CliRunner().invoke(group, ["check-rules"], env=script_env)
    assert result.exit_code == 0, result.output
    assert "All rules hold." in result.output


def test_the_console_script_reports_a_broken_rules_dir_without_a_traceback(script_env, rules_copy):
    edit(rules_copy, "rules.toml", FEVER_RULE, 'when = { var = "fever", in = ["yes", "maybe"] }')
    result = CliRunner().invoke(group, ["check-rules"], env={**script_env, "SCREENING_RULES_DIR": str(rules_copy)})
    assert result.exit_code == 1
    assert result.output.startswith("The rules fail to load: rules.toml: rule 'fever': condition compares fever "
                                    "with impossible value(s) ['maybe']")
    assert "Traceback" not in result.output


def test_the_installed_screening_command_checks_the_rules(script_env):
    script = Path(sys.executable).parent / "screening"
    if not script.exists():
        pytest.skip("the console script is not installed next to this Python")
    result = subprocess.run([str(script), "check-rules"], capture_output=True, text=True, timeout=120,
                            env={"PATH": str(script.parent), **script_env})
    assert result.returncode == 0, result.stderr
    assert "All rules hold." in result.stdout


# --- start-up and check-rules agree ------------------------------------------------------------

def _set_fever_clearable(folder):
    edit(folder, "rules.toml", 'outcome = "consult_professional"\nmessage = { en = "Please do not book while you',
         'outcome = "consult_professional"\nclearable = true\ncleared_message = "Fine."\n'
         'message = { en = "Please do not book while you')


REFUSED = {
    "fever lowered to tell the centre": lambda d: edit(
        d, "rules.toml", 'outcome = "consult_professional"\nmessage = { en = "Please do not book while you',
        'outcome = "tell_centre"\nmessage = { en = "Please do not book while you'),
    "not sure dropped from a red flag": lambda d: edit(
        d, "questions.toml", 'id = "fever"\ntype = "yes_no_unsure"', 'id = "fever"\ntype = "yes_no"'),
    "pregnant made optional": lambda d: edit(
        d, "questions.toml", 'id = "pregnant"\ntype = "yes_no_unsure"\nrequired = true',
        'id = "pregnant"\ntype = "yes_no_unsure"\nrequired = false'),
    "contains on a yes/no question": lambda d: edit(d, "rules.toml", FEVER_RULE,
                                                    'when = { var = "fever", contains = "yes" }'),
    "fever made clearable": _set_fever_clearable,
    "a clearance to proceed": lambda d: edit(d, "rules.toml", 'outcome = "tell_centre"\n\n[[rules]]',
                                             'outcome = "proceed"\n\n[[rules]]'),
    "the fever rule's header mistyped": lambda d: edit(d, "rules.toml", '[[rules]]\nid = "fever"',
                                                        '[[rule]]\nid = "fever"'),
    "a question without its Catalan text": lambda d: edit(d, "questions.toml", 'ca = "Tens febre?", ', ""),
}


@pytest.mark.parametrize("breakage", REFUSED.values(), ids=REFUSED.keys())
def test_start_up_refuses_exactly_what_check_rules_refuses(script_env, rules_copy, make_app, breakage):
    breakage(rules_copy)
    (rules_copy / "examples.toml").write_text("")      # the proof must not lean on the examples
    checked = CliRunner().invoke(group, ["check-rules", "--rules-dir", str(rules_copy)], env=script_env)
    assert checked.exit_code == 1
    lines = [line for line in checked.stderr.splitlines() if not line.endswith("problem(s) found.")]
    assert lines and all(": " in line for line in lines)

    with pytest.raises(RulesError) as refused:
        make_app(RULES_DIR=str(rules_copy))
    assert str(refused.value).splitlines() == lines

    started = CliRunner().invoke(group, ["check-rules"], env={**script_env, "SCREENING_RULES_DIR": str(rules_copy)})
    assert started.exit_code == 1
    said = [line.removeprefix("The rules fail to load: ") for line in started.stderr.splitlines()]
    assert said[:len(lines)] == lines
    assert "All rules hold" not in started.output


def test_check_rules_on_another_folder_works_while_the_apps_own_rules_are_refused(script_env, rules_copy, tmp_path):
    REFUSED["fever made clearable"](rules_copy)
    good = tmp_path / "good"
    good.mkdir()
    for path in default_rules_dir().glob("*.toml"):
        (good / path.name).write_bytes(path.read_bytes())
    result = CliRunner().invoke(group, ["check-rules", "--rules-dir", str(good)],
                                env={**script_env, "SCREENING_RULES_DIR": str(rules_copy)})
    assert result.exit_code == 0, result.output
    assert "All rules hold." in result.output
