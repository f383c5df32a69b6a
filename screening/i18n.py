"""Which language a page is in, the `lang` cookie that remembers it, and the gettext catalogs.

Order (SPEC "Languages"): `?lang=` on any page, else the `lang` cookie, else the browser's
Accept-Language, else the centre's default language, else English. The JSON API takes no cookies:
it reads `?locale=`, then Accept-Language, then the default. Texts from rules/ carry their own
translations; page texts come from screening/translations/<lang>/LC_MESSAGES/messages.po, compiled
to .mo when the package is installed (setup.py) or, in a checkout, here at start-up when stale.
"""
from __future__ import annotations

import logging
import os
import tempfile
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode

from babel.dates import format_date, format_time, get_datetime_format
from flask import current_app, has_request_context, request
from flask_babel import Babel, get_locale

from .rules import DEFAULT_LOCALE, LOCALES

log = logging.getLogger(__name__)

COOKIE = "lang"
COOKIE_MAX_AGE = 365 * 24 * 3600
# each language named in itself, as the switch shows it
NAMES = {"en": "English", "ca": "Català", "es": "Español"}
TRANSLATIONS = Path(__file__).resolve().parent / "translations"

babel = Babel()


def default_language() -> str:
    """The centre's default language (SCREENING_DEFAULT_LANGUAGE, checked at start-up in config.py).
    Centres will bring their own default later; this is the one place that reads it."""
    return current_app.config.get("DEFAULT_LANGUAGE") or DEFAULT_LOCALE


def _is_api() -> bool:
    return request.path.startswith("/api/")


def asked_language() -> str | None:
    """The language named by `?lang=` when it is one we have (an unknown value is ignored)."""
    asked = request.args.get("lang")
    return asked if asked in LOCALES else None


def select_language() -> str:
    """The language of this request's texts (Flask-Babel's locale selector)."""
    if not has_request_context():
        return default_language()        # e-mail notices, CLI: the centre's language
    if _is_api():
        asked = request.args.get("locale")
        if asked in LOCALES:
            return asked
    else:
        chosen = asked_language() or request.cookies.get(COOKIE)
        if chosen in LOCALES:
            return chosen
    return request.accept_languages.best_match(LOCALES) or default_language()


def current() -> str:
    """The code (en, ca, es) of the language the current texts are in."""
    locale = get_locale()
    return locale.language if locale is not None else default_language()


def switch_links() -> list[dict]:
    """The language switch: one link per language to this same page in that language.

    The link keeps the path and, on a staff GET page, its query (filters, page); never the query
    of a public page or of a POST, so answers never end up in a URL."""
    keep = []
    if request.method == "GET" and request.path.startswith("/staff"):
        keep = [(k, v) for k, v in request.args.items(multi=True) if k != "lang"]
    here = current()
    links = []
    for code in LOCALES:
        query = urlencode([*keep, ("lang", code)])
        links.append({"code": code, "name": NAMES[code], "href": f"{request.script_root}{request.path}?{query}",
                      "current": code == here})
    return links


def remember_language(response):
    """After `?lang=`: keep the choice in a cookie of its own (not the session), for a year.

    Pages say which language they are in (Content-Language), and in Vary that it may come from
    Accept-Language or the cookie."""
    if request.path.startswith("/static/"):
        return response
    if _is_api():
        return response                  # the API sets its own Vary and takes no cookies
    response.vary.add("Accept-Language")
    response.vary.add("Cookie")
    response.headers.setdefault("Content-Language", current())
    asked = asked_language()
    if asked and request.cookies.get(COOKIE) != asked:
        response.set_cookie(COOKIE, asked, max_age=COOKIE_MAX_AGE, path="/", httponly=True, samesite="Lax",
                            secure=bool(current_app.config.get("SESSION_COOKIE_SECURE")))
    return response


def local_datetime(moment: datetime) -> str:
    """The day in words and the time in hours and minutes, as the page's language writes them
    ("1 de desembre de 2026, a les 21:35"), on the moment's own clock. Babel's own "long" would add
    seconds and a zone name; this joins its long date and short time with the locale's pattern."""
    locale = get_locale() or default_language()
    return (get_datetime_format("long", locale=locale).replace("'", "")
            .replace("{0}", format_time(moment, "short", tzinfo=moment.tzinfo, locale=locale))
            .replace("{1}", format_date(moment, "long", locale=locale)))


def compile_stale_catalogs(folder: Path = TRANSLATIONS) -> None:
    """In a checkout, compile each messages.po whose .mo is missing or older (an installed package
    carries only fresh .mo files, compiled by setup.py). Written aside and renamed: workers may race."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    for po in folder.glob("*/LC_MESSAGES/messages.po"):
        mo = po.with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        try:
            with po.open("rb") as f:
                catalog = read_po(f, locale=po.parent.parent.name)
            fd, tmp = tempfile.mkstemp(dir=po.parent, prefix=".messages-", suffix=".mo")
            with os.fdopen(fd, "wb") as out:
                write_mo(out, catalog)
            os.replace(tmp, mo)
        except OSError as e:
            log.warning("could not compile %s (%s): pages stay in English", po, e)


def init_app(app) -> None:
    """Set up Flask-Babel, the `lang` cookie and the template helpers."""
    compile_stale_catalogs()
    for code in LOCALES:
        if code != DEFAULT_LOCALE and not (TRANSLATIONS / code / "LC_MESSAGES" / "messages.mo").exists():
            log.error("no compiled catalog for %r: its pages would be in English; reinstall the package", code)
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(TRANSLATIONS)
    babel.init_app(app, default_locale=DEFAULT_LOCALE, locale_selector=select_language)
    # {% trans %} blocks are wrapped like prose: their line breaks and indents are not part of the msgid
    app.jinja_env.policies["ext.i18n.trimmed"] = True
    app.after_request(remember_language)
    app.jinja_env.filters["local_datetime"] = local_datetime

    @app.context_processor
    def language_helpers():
        """Every template knows its language and the links of the language switch."""
        if not has_request_context():
            return {"locale": current(), "language_names": NAMES}
        return {"locale": current(), "language_names": NAMES, "language_links": switch_links()}
