"""The `screening` console script: Flask's CLI for this app, plus the app's own commands:
`check-rules`, `staff` (accounts), `purge` (retention) and `send-notices`. Each command is a thin
shell over the layer that does the work (core's checker, store's accounts and retention, the
notice sender); operator messages stay in English.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click
from flask import Flask, current_app, has_app_context
from flask.cli import AppGroup, FlaskGroup, ScriptInfo, with_appcontext

from .core.centres import CENTRES_DIR, load_centres
from .core.checker import RulesRefused
from .core.rules import RulesError, load_rules
from .store import accounts, db, outbox, retention
from .web import database, notify, upkeep


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
    in examples.toml holds, the screening policy holds (screening/core/policy.py) and no message
    promises a medical result. Then each centre with rules of its own (rules/centres/<slug>.toml):
    the same properties for the shared rules plus its own, with its own examples, and that no
    answers ever get a lower outcome there than with the shared rules (stricter, never laxer);
    centres whose own rules are the same are proved once. Prints one `file: entry: problem` line
    per problem and exits 1 when there is any, else exits 0. The app runs the same proof at
    start-up and refuses to start on rules that fail it.

    Example: screening check-rules --rules-dir ./my-rules
    """
    from .core.checker import check, check_centres

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


# --- screening staff ------------------------------------------------------------

# Operator-facing CLI messages, keyed by accounts.AccountError codes.
CLI_ERRORS = {
    "bad_email": "That is not an email address.",
    "short_password": f"The password must have at least {accounts.MIN_PASSWORD} characters.",
    "long_password": f"The password must have at most {accounts.MAX_PASSWORD} characters.",
    "bad_role": f"The role must be one of: {', '.join(accounts.ROLES)}.",
    "duplicate": "An account with that email already exists.",
    "unknown": "There is no account with that email.",
    "no_password": "No password was given on standard input.",
    "mismatch": "The two passwords differ.",
    "no_centre": "An account must belong to a centre.",
}


def _fail(code: str):
    """Stop the command with a clean message and exit code 1."""
    raise click.ClickException(CLI_ERRORS[code])


def _read_password() -> str:
    """The first line of standard input when it is not a terminal (scripts), else a hidden prompt, twice."""
    if not sys.stdin.isatty():
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            _fail("no_password")
        return line
    first = click.prompt("Password", hide_input=True, err=True)
    if click.prompt("Password again", hide_input=True, err=True) != first:
        _fail("mismatch")
    return first


def _db():
    """A connection for a CLI command (inside the app context)."""
    return db.connect(database.target(current_app))


staff_cli = AppGroup("staff", help="Manage staff accounts (there is no default account).")


def _centre_slug(given: str | None) -> str:
    """The centre a new account belongs to: the one named, or the only one; else a clean error
    that lists the centres."""
    centres = current_app.extensions["screening.centres"]
    listing = ", ".join(centres)
    if given is None:
        if len(centres) == 1:
            return next(iter(centres))
        raise click.ClickException(f"There are several centres: choose one with --centre (one of: {listing}).")
    if given not in centres:
        raise click.ClickException(f"There is no centre {given!r}. The centres are: {listing}.")
    return given


@staff_cli.command("add")
@click.argument("email")
@click.option("--name", default=None, help="The name shown on the staff pages.")
@click.option("--role", default="staff", show_default=True, help="staff or admin (admin of its centre only).")
@click.option("--centre", default=None, metavar="SLUG",
              help="The centre the account belongs to (may be left out when there is one centre).")
def add_command(email, name, role, centre):
    """Create a staff account of one centre; the password is read from standard input.

    \b
    Example: echo 'a long passphrase' | screening staff add ana@centre.example --name Ana --role admin
             echo 'a long passphrase' | screening staff add joan@centre.example --centre exemple-barcelona
    """
    if role not in accounts.ROLES:
        _fail("bad_role")
    slug = _centre_slug(centre)
    try:
        accounts.check_email(email)
        password = _read_password()
        conn = _db()
        try:
            staff = accounts.create_staff(conn, email=email, password=password, name=name, role=role, centre=slug)
        finally:
            conn.close()
    except accounts.AccountError as e:
        _fail(e.code)
    click.echo(f"Created {staff['role']} account {staff['email']} of centre {slug}.")


@staff_cli.command("list")
def list_command():
    """List the staff accounts: email, name, role, state, centre, created.

    \b
    Example: screening staff list
    """
    conn = _db()
    try:
        rows = accounts.list_staff(conn)
    finally:
        conn.close()
    if not rows:
        click.echo("No staff accounts yet. Create one with: screening staff add EMAIL")
    for row in rows:
        state = "active" if row["active"] else "inactive"
        click.echo(f"{row['email']}\t{row['name'] or '-'}\t{row['role']}\t{state}\t{row['centre'] or '-'}\t"
                   f"{row['created_at']}")


@staff_cli.command("deactivate")
@click.argument("email")
def deactivate_command(email):
    """Stop an account from logging in and end its sessions now.

    \b
    Example: screening staff deactivate ana@centre.example
    """
    conn = _db()
    try:
        staff = accounts.deactivate(conn, email)
    except accounts.AccountError as e:
        _fail(e.code)
    finally:
        conn.close()
    click.echo(f"Deactivated {staff['email']}; its sessions have ended.")


@staff_cli.command("reset-password")
@click.argument("email")
def reset_password_command(email):
    """Set a new password (read like `add` does), end the account's sessions and clear its lock.

    \b
    Example: echo 'a new long passphrase' | screening staff reset-password ana@centre.example
    """
    conn = _db()
    try:
        if accounts.find_staff(conn, email) is None:
            _fail("unknown")
        staff = accounts.reset_password(conn, email, _read_password())
    except accounts.AccountError as e:
        _fail(e.code)
    finally:
        conn.close()
    click.echo(f"New password set for {staff['email']}; its sessions have ended.")


# --- screening purge -----------------------------------------------------------------------------

@click.command("purge")
@click.option("--older-than", "days", type=click.IntRange(0, retention.MAX_DAYS),
              metavar="DAYS", help="Delete the submissions created more than DAYS days ago.")
@click.option("--expired", is_flag=True,
              help="Delete each centre's submissions older than its own retention (retention_days in its "
                   "file, else SCREENING_RETENTION_DAYS), as the app does by itself once a day.")
@click.option("--centre", default=None, metavar="SLUG",
              help="Only this centre's submissions (default: every centre's).")
@with_appcontext
def purge_command(days: int | None, expired: bool, centre: str | None) -> None:
    """Delete shared submissions older than DAYS days, or past their centre's retention, with
    their notes, and remove their bytes from the database files. The app purges expired ones by
    itself once a day (SCREENING_AUTO_PURGE); run this from cron if you prefer.

    \b
    Example: screening purge --older-than 365
             screening purge --older-than 90 --centre exemple-barcelona
             screening purge --expired
    """
    if (days is None) == (not expired):
        raise click.UsageError("give either --older-than DAYS or --expired")
    if expired and centre is not None:
        raise click.UsageError("--expired purges every centre by its own retention; --centre goes with --older-than")
    centres = current_app.extensions.get("screening.centres", {})
    if centre is not None and centre not in centres:
        raise click.ClickException(f"there is no centre {centre!r}; the centres are: {', '.join(centres)}")
    try:
        conn = _db()
        try:
            if expired:
                deleted = retention.purge_expired(
                    conn, {slug: upkeep.retention_days(current_app, c) for slug, c in centres.items()},
                    int(current_app.config["RETENTION_DAYS"]))
            else:
                deleted = retention.purge(conn, days, centre=centre)
        finally:
            conn.close()
    except (db.StorageError, *db.OperationalError) as e:
        # each batch is its own transaction: the ones before the failure stay deleted
        raise click.ClickException(f"the purge stopped: the database cannot be written ({e})") from None
    if expired:
        for slug, count in deleted.items():
            click.echo(f"Deleted {count} submissions of centre {slug} older than "
                       f"{upkeep.retention_days(current_app, centres.get(slug))} days.")
        if not deleted:
            click.echo("There were no submissions to look at.")
        return
    click.echo(f"Deleted {deleted} submissions older than {days} days"
               + (f" of centre {centre}." if centre else "."))


# --- screening send-notices ------------------------------------------------------------------------

@click.command("send-notices")
@with_appcontext
def send_notices_command() -> None:
    """Send the queued e-mail notices that are due, once; exit 1 if one could not be sent
    (it stays queued and is retried later). Run it from cron to retry failed notices.

    Example (crontab): */5 * * * * screening send-notices
    """
    app = current_app._get_current_object()
    if not notify.sending_enabled(app):
        click.echo("Notices are off: set SCREENING_SMTP_HOST, and notify_to in the centres' files or "
                   "SCREENING_NOTIFY_TO, to turn them on.")
        return
    result = notify.drain(app)
    conn = _db()
    try:
        stuck = outbox.given_up(conn)
    finally:
        conn.close()
    click.echo(f"Sent {result.sent} notices; {result.failed} failed and stay queued.")
    if stuck:
        click.echo(f"{stuck} notices were given up after {outbox.MAX_ATTEMPTS} attempts (kept in the outbox table).")
    if result.failed:
        raise SystemExit(1)


# --- screening copy-database -----------------------------------------------------------------------

@click.command("copy-database")
@click.option("--to", "url", required=True, metavar="URL",
              help="The PostgreSQL database to copy into (postgresql://user@host:5432/dbname), without rows "
                   "of the app's tables.")
@with_appcontext
def copy_database_command(url: str) -> None:
    """Copy the SQLite database (SCREENING_DATABASE, whatever SCREENING_DATABASE_URL says) into an
    empty PostgreSQL database, then check that every table arrived whole.

    The SQLite database is first brought to the current schema; every table is copied with its
    ids, in one transaction (a failure leaves the target empty); each table's row count and a
    checksum of its rows are compared on both sides before the commit. A target that already
    holds rows of the app's tables is refused. Then point the app at it with
    SCREENING_DATABASE_URL and the same SCREENING_SECRET_KEY.

    \b
    Example: screening copy-database --to postgresql://screening@db.example:5432/screening
    """
    from .store import copy
    from .store.engine_postgres import describe

    app = current_app._get_current_object()
    source = app.config["DATABASE"]
    default = app.extensions.get("screening.default_centre")
    if not db.is_postgres(url):
        raise click.ClickException("--to must be a PostgreSQL URL: postgresql://user@host:5432/dbname")
    click.echo(f"Copying {source} into PostgreSQL {describe(url)}:")

    def copied(table: copy.Copied) -> None:
        click.echo(f"  {table.table}: {table.rows:,} row{'' if table.rows == 1 else 's'}")

    try:
        copy.copy_database(source, url, default_centre=default.slug if default else None, progress=copied)
    except copy.CopyError as e:
        raise click.ClickException(str(e)) from None
    except db.NoDefaultCentre as e:
        raise click.ClickException(f"the SQLite database holds rows from before centres existed ({e}) and there "
                                   "are several centres: set SCREENING_DEFAULT_CENTRE to the centre they "
                                   "belong to (nothing was written)") from None
    except db.StorageError as e:
        raise click.ClickException(str(e).splitlines()[0]) from None
    except db.DatabaseError as e:
        # psycopg's and sqlite's messages name no password; the transaction was rolled back
        raise click.ClickException(f"the copy failed and was rolled back, the target holds none of it: "
                                   f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    click.echo("checked: every table arrived whole (the same row count and checksum on both sides).")
    click.echo("Point the app at it with SCREENING_DATABASE_URL, keeping the same SCREENING_SECRET_KEY.")


def init_app(app: Flask) -> None:
    """Register the app's commands on its CLI (for `flask --app screening ...`)."""
    for command in (check_rules_command, staff_cli, purge_command, send_notices_command, copy_database_command):
        app.cli.add_command(command)


group.add_command(check_rules_command)      # found by `screening` without starting the app
