"""Pre-booking health screening for massage and wellness centres: the Flask application factory."""
from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from . import checker, config, db, security
from .rules import load_rules

csrf = CSRFProtect()
HERE = Path(__file__).resolve().parent


def _resource_dir(name: str) -> str:
    """templates/ and static/ sit beside the package in a checkout and inside it once installed."""
    installed = HERE / f"bundled_{name}"
    return str(installed if installed.is_dir() else HERE.parent / name)


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app: settings, rules (validated now, not at request time), database, blueprints."""
    app = Flask(__name__, instance_relative_config=True,
                template_folder=_resource_dir("templates"), static_folder=_resource_dir("static"))
    app.config.from_mapping(config.defaults(app.instance_path))
    app.config.from_prefixed_env("SCREENING")
    if test_config:
        app.config.update(test_config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = config.load_secret_key(app.instance_path)
    if app.config["PROXY_COUNT"]:
        # behind a proxy, remote_addr is the proxy's: the per-address login lock would then lock
        # out everyone at once. Trust exactly as many X-Forwarded-* hops as there are proxies.
        n = int(app.config["PROXY_COUNT"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    ruleset = load_rules(app.config["RULES_DIR"])
    # the same proof as `screening check-rules`: rules not proven safe are never served. Its
    # verdict is remembered per rules version and code, in the process and (outside tests, which
    # must not write the checkout's instance/) in the instance folder.
    checker.prove(ruleset, cache_dir=None if app.testing else app.instance_path)
    app.extensions["screening.rules"] = ruleset
    db.init_app(app)
    security.init_app(app)   # first: its body-size check must run before CSRFProtect reads the form
    csrf.init_app(app)

    # imported here, not at the top: cli imports create_app from this module
    from . import api, auth, cli, notify, public, retention, staff
    app.register_blueprint(public.bp)
    app.register_blueprint(api.bp)
    csrf.exempt(api.bp)      # the JSON API takes no cookies, so it needs no CSRF token
    cli.init_app(app)
    auth.init_app(app)          # staff login, sessions, g.staff, `screening staff`
    app.register_blueprint(staff.bp)   # the review pages (dashboard, detail, export, audit, rules)
    retention.init_app(app)     # screening purge
    notify.init_app(app)        # screening send-notices
    return app

