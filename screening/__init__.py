"""Pre-booking health screening for massage and wellness centres: the Flask application factory.

The package is in layers, each importing only those below it (tests/test_layers.py keeps it so):
- core/: conditions, rules, engine, checker, policy, centres, characters: plain Python, no Flask,
  no database;
- store/: db (connections, schema, migrations), accounts, review, retention, outbox: every SQL
  statement, centre scoping included; no Flask;
- web/: blueprints (public, api, staff, auth), forms, security headers and errors, openapi, i18n,
  notices, the request's connection;
- on top: this factory, config (the settings) and cli (the `screening` commands).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from flask import Flask
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from . import config
from .core import checker
from .core.centres import default_centre, load_centres, rule_sets
from .core.rules import load_rules
from .store import db
from .store.engine_postgres import TooOld, describe
from .web import database, i18n, security

csrf = CSRFProtect()
HERE = Path(__file__).resolve().parent


def _resource_dir(name: str) -> str:
    """templates/ and static/ sit beside the package in a checkout and inside it once installed."""
    installed = HERE / f"bundled_{name}"
    return str(installed if installed.is_dir() else HERE.parent / name)


def _unusable_database(path: str, error: Exception) -> str:
    """The start-up message for a database that cannot be opened, made or written."""
    reason = error.__cause__ or error      # StorageError wraps sqlite's own message
    fix = db.what_to_fix(path)
    return f"SCREENING_DATABASE: cannot open and write {path}: {reason}" + (f"; {fix}" if fix else "")


def _start_database(app: Flask) -> None:
    """Prepare the database at start-up. A PostgreSQL server that cannot be reached does not stop
    the app (gunicorn would stop every worker): it starts, answers 503, and prepares the database
    on the first request after the server is back. Only a server older than 14 stops it."""
    app.extensions["screening.prepare_database"] = _prepare_database
    url = app.config.get("DATABASE_URL")
    if not url:
        try:
            _prepare_database(app)
        except (db.StorageError, *db.DatabaseError, OSError) as e:
            raise config.SettingsError([_unusable_database(app.config["DATABASE"], e)]) from None
        return
    try:
        _prepare_database(app)
    except TooOld as e:
        raise config.SettingsError([f"SCREENING_DATABASE_URL: {e}: the app needs 14 or newer"]) from None
    except (db.StorageError, *db.DatabaseError) as e:
        app.extensions["screening.database_ready"] = False
        if db.is_storage_failure(e):
            logging.getLogger(__name__).warning(
                "PostgreSQL (%s) cannot be reached at start-up (%s): requests answer 503 until it can",
                describe(url), type(e).__name__)
        else:   # reached, but refused what the migrations need: only the operator can fix it
            logging.getLogger(__name__).error(
                "PostgreSQL (%s): the schema cannot be made (%s: %s); requests answer 503 until it can",
                describe(url), type(e).__name__, e)


def _prepare_database(app: Flask) -> None:
    """Create or upgrade the schema and give rows from before centres existed to the default
    centre: at start-up, or on a request when the database could not be reached then."""
    where = database.target(app)
    db.prepare(where)
    conn = db.connect(where)
    default = app.extensions.get("screening.default_centre")
    try:
        db.migrate(conn, default_centre=default.slug if default else None)
        db.adopt_orphans(conn, default.slug if default else None)      # rows an older version wrote meanwhile
    except db.NoDefaultCentre as e:
        raise config.SettingsError([
            f"SCREENING_DEFAULT_CENTRE: the database holds rows from before centres existed ({e}) and "
            f"there are several centres ({', '.join(app.extensions.get('screening.centres', {}))}): set "
            "SCREENING_DEFAULT_CENTRE to the centre they belong to"]) from None
    finally:
        conn.close()


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app: settings, rules (validated now, not at request time), database, blueprints."""
    # static_url_path: /static/ in both layouts (Flask would name it after the installed bundled_static/)
    app = Flask(__name__, instance_relative_config=True, template_folder=_resource_dir("templates"),
                static_folder=_resource_dir("static"), static_url_path="/static")
    config.load(app.config, app.instance_path, os.environ, test_config)   # SettingsError names what is wrong
    if app.config.get("DATABASE_URL") and not app.config.get("SECRET_KEY"):
        # several app servers share the database: a key file in one instance folder would differ
        raise config.SettingsError(["SCREENING_SECRET_KEY: required with SCREENING_DATABASE_URL: every app "
                                    "server on one database must sign with the same key"])
    if not app.config.get("SECRET_KEY"):
        try:
            app.config["SECRET_KEY"] = config.load_secret_key(app.instance_path)
        except (RuntimeError, OSError) as e:     # a short key file, an instance folder it cannot write
            raise config.SettingsError([f"SCREENING_SECRET_KEY: not set, and the key in the instance folder "
                                        f"cannot be used: {e}"]) from None
    if app.config["PROXY_COUNT"]:
        # behind a proxy, remote_addr is the proxy's: the per-address login lock would then lock
        # out everyone at once. Trust exactly as many X-Forwarded-* hops as there are proxies.
        n = int(app.config["PROXY_COUNT"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    rules = load_rules(app.config["RULES_DIR"])
    centres = load_centres(app.config["RULES_DIR"], tuple(rules.services_by_slug), rules)
    # the same proof as `screening check-rules`, of the shared rules and of each centre's own (never
    # laxer): rules not proven safe are never served. Its verdict is remembered per rules version,
    # centre rules and code, in the process and in the instance folder (not by tests: they must not
    # write the checkout's instance/).
    checker.prove(rules, cache_dir=None if app.testing else app.instance_path, centres=centres.values())
    app.extensions["screening.rules"] = rules
    app.extensions["screening.centres"] = centres
    app.extensions["screening.centre_rules"] = rule_sets(rules, centres)     # by slug; see public.rules_for
    try:
        app.extensions["screening.default_centre"] = default_centre(centres, app.config["DEFAULT_CENTRE"])
    except KeyError:
        raise config.SettingsError([f"SCREENING_DEFAULT_CENTRE: no centre {app.config['DEFAULT_CENTRE']!r} in "
                                    f"{app.config['RULES_DIR']}/centres (there are: {', '.join(centres)})"]) from None
    _start_database(app)
    database.init_app(app)   # each request's connection, handed back at its end
    i18n.init_app(app)       # the language of each request, the `lang` cookie, the catalogs
    security.init_app(app)   # first: its body-size check must run before CSRFProtect reads the form
    csrf.init_app(app)

    # imported here, not at the top: cli imports create_app from this module
    from . import cli
    from .web import account, api, auth, notify, public, staff, upkeep
    app.register_blueprint(public.bp)
    app.register_blueprint(api.bp)
    csrf.exempt(api.bp)      # the JSON API takes no cookies, so it needs no CSRF token
    auth.init_app(app)          # staff login, sessions, g.staff
    app.register_blueprint(staff.bp)   # the review pages (dashboard, detail, export, audit, rules)
    app.register_blueprint(account.bp)     # My account: one's own password and sessions
    notify.init_app(app)        # the background sender of e-mail notices
    upkeep.init_app(app)        # the daily purge of screenings past their centre's retention
    cli.init_app(app)           # check-rules, staff, purge, send-notices
    return app
