"""The `screening` console script: Flask's CLI for this app, plus `screening check-rules`.

Other modules register their own commands (`staff`, `purge`) on `app.cli` from their own
`init_app`; this module holds only the group, `main` and `check-rules`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click
from flask import Flask, current_app, has_app_context
from flask.cli import FlaskGroup, ScriptInfo

from .centres import CENTRES_DIR, load_centres
from .checker import RulesRefused
from .rules import RulesError, load_rules


def _create_app() -> Flask:
    """create_app for the console script: rules that fail to load or to pass the proof are clean lines."""
    from . import create_app

    try:
        return create_app()
    except RulesRefused as e:
        # the very lines `screening check-rules` prints for these rules
        for problem in e.problems:
            click.echo(str(problem), err=True)
        click.echo(f"{len(e.problems)} problem(s) found: the rules are not proven safe, so the app does not start.",
                   err=True)
        sys.exit(1)
    except RulesError as e:
        click.echo(f"The rules fail to load: {e}", err=True)
        sys.exit(1)


@click.group(cls=FlaskGroup, create_app=_create_app)
def group():
    """Pre-booking health screening for massage centres.

    Every Flask command works here (run, shell, routes), plus the app's own commands.

    Example: screening check-rules
    """


def main() -> None:
    """Entry point of the `screening` console script."""
    group()


@click.command("check-rules")
@click.option("--rules-dir", type=click.Path(file_okay=False, path_type=str),
              help="Check this rules folder instead of the one the app uses (the app is not started on it).")
@click.pass_context
def check_rules_command(ctx: click.Context, rules_dir: str | None) -> None:
    """Validate the rules and prove their safety properties over every possible answer.

    Loads the rule files, then checks every combination of answers for every service: each gets
    one outcome, answering "not sure" or "yes" instead of "no" never lowers it, an unanswered
    required question is refused, every rule, suggestion and outcome can happen, every example
    in examples.toml holds, the screening policy holds (screening/policy.py) and no message
    promises a medical result. Then each centre with rules of its own (rules/centres/<slug>.toml):
    the same properties for the shared rules plus its own, with its own examples, and that no
    answers ever get a lower outcome there than with the shared rules (stricter, never laxer);
    centres whose own rules are the same are proved once. Prints one `file: entry: problem` line
    per problem and exits 1 when there is any, else exits 0. The app runs the same proof at
    start-up and refuses to start on rules that fail it.

    Example: screening check-rules --rules-dir ./my-rules
    """
    from .checker import check, check_centres

    if rules_dir is None:
        # the app's own rules: starting the app proves them already, and refuses (with these
        # lines) when they fail; --rules-dir needs no app, so a broken app does not stop it
        app = current_app if has_app_context() else ctx.ensure_object(ScriptInfo).load_app()
        ruleset = app.extensions["screening.rules"]
        centres = app.extensions["screening.centres"]
    else:
        try:
            ruleset = load_rules(rules_dir)
            # a rules folder without centres/ is checked as shared rules alone
            centres = load_centres(rules_dir, tuple(ruleset.services_by_slug), ruleset) \
                if (Path(rules_dir) / CENTRES_DIR).is_dir() else {}
        except RulesError as e:
            click.echo(str(e), err=True)
            raise SystemExit(1) from None
    report = check(ruleset)
    for problem in report.problems:
        click.echo(str(problem), err=True)
    own = [c for c in centres.values() if c.extra]
    centre_report = check_centres(ruleset, own)
    failing = {p.file for p in centre_report.problems}
    for problem in centre_report.problems:
        click.echo(str(problem), err=True)
    summary = (f"{ruleset.directory} (version {ruleset.version}): {len(ruleset.rules)} rules, "
               f"{len(ruleset.suggestions)} suggestions, {len(ruleset.examples)} examples; "
               f"checked {report.combinations:,} answer combinations over {report.service_groups} "
               f"service group(s) in {report.seconds:.1f} s.")
    click.echo(summary)
    for centre in own:
        if centre.file not in failing:
            click.echo(f"{centre.file}: {len(centre.rules)} rule(s) and {len(centre.examples)} example(s) of its "
                       f"own: stricter, never laxer, and every property holds.")
    if centres:
        click.echo(f"{len(centres):,} centre(s): {len(centres) - len(own):,} with the shared rules only, {len(own):,} "
                   f"with rules of their own in {centre_report.service_groups:,} distinct set(s), proved over "
                   f"{centre_report.combinations:,} answer combinations in {centre_report.seconds:.1f} s.")
    problems = report.problems + centre_report.problems
    if problems:
        click.echo(f"{len(problems)} problem(s) found.", err=True)
        raise SystemExit(1)
    click.echo("All rules hold.")


def init_app(app: Flask) -> None:
    """Register check-rules on the app's CLI (for `flask --app screening check-rules`)."""
    app.cli.add_command(check_rules_command)


group.add_command(check_rules_command)      # found by `screening` without starting the app
