"""Which language a page is in, the `lang` cookie that remembers it, and the gettext catalogs.

Order (SPEC "Languages"): `?lang=` on any page, else the `lang` cookie, else the browser's
Accept-Language, else the centre's default language (rules/centres/<slug>.toml), else English.
The JSON API takes no cookies: it reads `?locale=`, then Accept-Language, then the default.
Texts from rules/ carry their own translations; page texts come from
screening/translations/<lang>/LC_MESSAGES/messages.po, compiled to .mo when the package is
installed (setup.py) or, in a checkout, here at start-up when stale.
"""
from __future__ import annotations

import logging
import os
import tempfile
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlencode

from babel import Locale
from babel.dates import format_date, format_time, get_datetime_format
from flask import current_app, g, has_app_context, has_request_context, request
from flask_babel import Babel, get_locale, get_translations

from ..core.rules import DEFAULT_LOCALE, LOCALES
from .auth import staff_centre

log = logging.getLogger(__name__)

COOKIE = "lang"
COOKIE_MAX_AGE = 365 * 24 * 3600
# each language named in itself, as the switch shows it
NAMES = {"en": "English", "ca": "Català", "es": "Español"}
TRANSLATIONS = Path(__file__).resolve().parent.parent / "translations"      # screening/translations

babel = Babel()


def default_language(centre=None) -> str:
    """The default language of `centre`, else of the logged-in staff member's centre on staff pages,
    else of the centre this request serves (/c/<centre>/, else the default centre), else English
    (the directory of several centres, with none chosen)."""
    if centre is None and has_app_context():
        centre = staff_centre()
        if centre is None:
            from .public import current_centre  # public imports this module
            centre = current_centre()
    return centre.default_language if centre is not None else DEFAULT_LOCALE


def _is_api() -> bool:
    return request.path.startswith("/api/")


def asked_language() -> str | None:
    """The language named by `?lang=` when it is one we have (an unknown value is ignored)."""
    asked = request.args.get("lang")
    return asked if asked in LOCALES else None


def select_language() -> Locale:
    """The language of this request's texts (Flask-Babel's locale selector), as Babel's Locale:
    one made once per language, since Flask-Babel would parse a code anew per request (a file
    look-up in Babel's locale data each time)."""
    return _BABEL_LOCALES[_language_code()]


def _language_code() -> str:
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


_BABEL_LOCALES = {code: Locale.parse(code) for code in LOCALES}


def current() -> str:
    """The code (en, ca, es) of the language the current texts are in."""
    locale = get_locale()
    return locale.language if locale is not None else default_language()


def switch_links() -> list[dict]:
    """The language switch: one link per language to this same page in that language.

    The link keeps the path and, on a staff GET page, its query (filters, page); never the query
    of a public page or of a POST, so answers never end up in a URL."""
    here = current()
    if request.method == "GET" and request.path.startswith("/staff"):
        # never cached: a staff search would then stay in memory (it may be a client's name)
        keep = [(k, v) for k, v in request.args.items(multi=True) if k != "lang"]
        return list(_build_links(request.script_root, request.path, keep, here))
    return list(_public_links(request.script_root, request.path, here))


def _build_links(script_root: str, path: str, keep: list, here: str) -> tuple[dict, ...]:
    """One link per language to `path`, keeping the query `keep`."""
    return tuple({"code": code, "name": NAMES[code], "current": code == here,
                  "href": f"{script_root}{path}?{urlencode([*keep, ('lang', code)])}"} for code in LOCALES)


@lru_cache(maxsize=512)
def _public_links(script_root: str, path: str, here: str) -> tuple[dict, ...]:
    """The switch of a page without a kept query, built once per page and language: every page
    built it anew (three urlencodes, about 30 µs). Bounded, as paths come from clients."""
    return _build_links(script_root, path, [], here)


def _catalog():
    """The gettext catalog of the current language, looked up once per request and language:
    Flask-Babel looks it up again for every string of a page (about 20 µs each, dozens per page).

    Kept beside Flask-Babel's own locale (its namespace on `g`), so a `force_locale` mid-request,
    which replaces that locale object, is followed at once."""
    ctx = g.get("_flask_babel") if has_app_context() else None
    locale = getattr(ctx, "babel_locale", None)
    cached = getattr(ctx, "screening_catalog", None)
    if locale is not None and cached is not None and cached[0] is locale:
        return cached[1]
    if not has_app_context():
        return get_translations()
    locale = get_locale()                # chooses the language on the first call of the request
    # and the catalog once per app and language (Flask-Babel's own look-up walks its context again)
    catalogs = current_app.extensions.setdefault("screening.catalogs", {})
    translations = catalogs.get(locale)
    if translations is None:
        translations = catalogs[locale] = get_translations()
    g._flask_babel.screening_catalog = (locale, translations)
    return translations


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


def straight_apostrophes(text: str) -> str:
    """Babel's dates and zone names write the typographic apostrophe ("d’octubre"), the catalogs
    and rules/ the straight one ("d'Europa"): one kind in a sentence."""
    return text.replace("\u2019", "'")


def local_datetime(moment: datetime) -> str:
    """The day in words and the time in hours and minutes, as the page's language writes them
    ("1 de desembre de 2026, a les 21:35"), on the moment's own clock. Babel's own "long" would add
    seconds and a zone name; this joins its long date and short time with the locale's pattern.
    Written once per minute, clock and language (Babel takes about 0.2 ms: a result page shows it)."""
    locale = get_locale() or default_language()
    # the zone is part of the key: aware datetimes of one instant on two clocks are equal
    return _local_datetime(moment.replace(second=0, microsecond=0), str(moment.tzinfo), str(locale))


@lru_cache(maxsize=256)
def _local_datetime(moment: datetime, _zone: str, locale: str) -> str:
    """local_datetime's text for a minute on its clock and a language."""
    return straight_apostrophes(get_datetime_format("long", locale=locale).replace("'", "")
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
    # the same callables as Flask-Babel's, through the catalog found once per request (_catalog)
    app.jinja_env.install_gettext_callables(
        gettext=lambda s: _catalog().ugettext(s), ngettext=lambda s, p, n: _catalog().ungettext(s, p, n),
        pgettext=lambda c, s: _catalog().upgettext(c, s),
        npgettext=lambda c, s, p, n: _catalog().unpgettext(c, s, p, n), newstyle=True)
    app.after_request(remember_language)
    app.jinja_env.filters["local_datetime"] = local_datetime

    @app.context_processor
    def language_helpers():
        """Every template knows its language and the links of the language switch."""
        if not has_request_context():
            return {"locale": current(), "language_names": NAMES}
        return {"locale": current(), "language_names": NAMES, "language_links": switch_links()}
