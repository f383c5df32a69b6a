"""The `screening` console script: Flask's CLI for this app, plus `screening check-rules`.

Other modules register their own commands (`staff`, `purge`) on `app.cli` from their own
`init_app`; this module holds only the group, `main` and `check-rules`.
"""
from __future__ import annotations

import sys

import click
from flask import Flask, current_app, has_app_context
from flask.cli import FlaskGroup, ScriptInfo

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
    promises a medical result. Prints one `file: entry: problem` line per problem and exits 1
    when there is any, else exits 0. The app runs the same proof at start-up and refuses to
    start on rules that fail it.

    Example: screening check-rules --rules-dir ./my-rules
    """
    from .checker import check

    if rules_dir is None:
        # the app's own rules: starting the app proves them already, and refuses (with these
        # lines) when they fail; --rules-dir needs no app, so a broken app does not stop it
        app = current_app if has_app_context() else ctx.ensure_object(ScriptInfo).load_app()
        ruleset = app.extensions["screening.rules"]
    else:
        try:
            ruleset = load_rules(rules_dir)
        except RulesError as e:
            click.echo(str(e), err=True)
            raise SystemExit(1) from None
    report = check(ruleset)
    for problem in report.problems:
        click.echo(str(problem), err=True)
    summary = (f"{ruleset.directory} (version {ruleset.version}): {len(ruleset.rules)} rules, "
               f"{len(ruleset.suggestions)} suggestions, {len(ruleset.examples)} examples; "
               f"checked {report.combinations:,} answer combinations over {report.service_groups} "
               f"service group(s) in {report.seconds:.1f} s.")
    click.echo(summary)
    if report.problems:
        click.echo(f"{len(report.problems)} problem(s) found.", err=True)
        raise SystemExit(1)
    click.echo("All rules hold.")


def init_app(app: Flask) -> None:
    """Register check-rules on the app's CLI (for `flask --app screening check-rules`)."""
    app.cli.add_command(check_rules_command)


group.add_command(check_rules_command)      # found by `screening` without starting the app
