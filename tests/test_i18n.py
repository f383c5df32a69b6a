"""Languages (SPEC "Languages"): how a page's language is chosen and remembered, the switch on every
page, `<html lang>`, the API's Content-Language, the notices, and catalogs complete in ca and es."""
import html
import re
import shutil
import subprocess
import sys
import time
import zipfile
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from conftest import CENTRE, RED_FLAGS, add_centre, all_no, edit, logged_in_client, search_url

from screening.web import notify, public

ROOT = Path(__file__).resolve().parent.parent
CATALOGS = ROOT / "screening" / "translations"
LANGS = ("en", "ca", "es")
OUTCOMES = ("proceed", "tell_centre", "consult_professional")
# a sentence of each language's catalog, on the index page
INDEX_H1 = {"en": "Before you book a massage", "ca": "Abans de reservar un massatge",
            "es": "Antes de reservar un masaje"}


def html_lang(response) -> str:
    return re.search(r'<html lang="([^"]+)"', response.text).group(1)


def h1(response) -> str:
    return re.sub(r"<[^>]+>", "", re.search(r"<h1[^>]*>(.*?)</h1>", response.text, re.S).group(1)).strip()


def switch(response) -> list[dict]:
    """The language switch's links, or its buttons on a result or questionnaire (SPEC "Language
    switch on a result"): kind, href (a button's formaction), hreflang, lang, text, whether current."""
    nav = re.search(r'<nav class="language-switch"[^>]*>(.*?)</nav>', response.text, re.S)
    assert nav, "no language switch on the page"
    links = []
    for kind, attrs, text in re.findall(r"<(a|button) ([^>]*)>([^<]*)</(?:a|button)>", nav.group(1)):
        get = lambda name: (re.search(rf'\b{name}="([^"]*)"', attrs) or [None, None])[1]  # noqa: E731
        links.append({"kind": kind, "href": get("href" if kind == "a" else "formaction").replace("&amp;", "&"),
                      "hreflang": get("hreflang"), "lang": get("lang"), "text": text.strip(),
                      "current": "aria-current" in attrs})
    return links


# --- choosing the language ---------------------------------------------------------------------

@pytest.fixture
def centre_in(make_app, rules_copy):
    """centre_in(lang, **settings): an app whose (only) centre's default language is `lang`."""
    def build(lang, **settings):
        edit(rules_copy, "centres/exemple-barcelona.toml", 'default_language = "ca"', f'default_language = "{lang}"')
        return make_app(RULES_DIR=str(rules_copy), **settings)
    return build


@pytest.mark.parametrize("lang", LANGS)
def test_lang_parameter_chooses_the_language_over_browser_and_default(centre_in, lang):
    client = centre_in("es" if lang != "es" else "ca").test_client()
    response = client.get(f"/?lang={lang}", headers={"Accept-Language": "ca" if lang != "ca" else "en"})
    assert h1(response) == INDEX_H1[lang]
    assert html_lang(response) == lang
    assert response.headers["Content-Language"] == lang


@pytest.mark.parametrize("lang", LANGS)
def test_the_lang_cookie_remembers_the_choice_on_the_next_pages(client, lang):
    client.get(f"/?lang={lang}")
    other = "es" if lang != "es" else "ca"
    response = client.get("/", headers={"Accept-Language": other})        # the cookie wins over the browser
    assert h1(response) == INDEX_H1[lang]
    assert html_lang(client.get("/services/back-massage")) == lang


@pytest.mark.parametrize("lang", LANGS)
def test_accept_language_chooses_when_there_is_no_lang_parameter_or_cookie(centre_in, lang):
    client = centre_in("es" if lang != "es" else "ca").test_client()
    response = client.get("/", headers={"Accept-Language": f"de, {lang};q=0.8, fr;q=0.5"})
    assert h1(response) == INDEX_H1[lang]
    assert html_lang(response) == lang


@pytest.mark.parametrize("lang", LANGS)
def test_the_centres_language_when_the_browser_names_none_we_have(centre_in, lang):
    client = centre_in(lang).test_client(accept_language=None)
    for headers in ({}, {"Accept-Language": "de, fr;q=0.5"}):
        response = client.get("/", headers=headers)
        assert h1(response) == INDEX_H1[lang]
        assert html_lang(response) == lang


def test_the_shipped_centre_speaks_catalan_when_nothing_is_said(app):
    response = app.test_client(accept_language=None).get("/")
    assert html_lang(response) == "ca" and h1(response) == INDEX_H1["ca"]


def test_the_cookie_holds_only_the_language_and_is_not_the_session(client):
    response = client.get("/services/back-massage?lang=ca")
    cookies = response.headers.getlist("Set-Cookie")
    assert len(cookies) == 1
    parts = [p.strip() for p in cookies[0].split(";")]
    assert parts[0] == "lang=ca"
    assert {"HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=31536000"} <= set(parts)
    assert client.get_cookie("session") is None


def test_an_unknown_lang_value_is_ignored_and_changes_no_cookie(client):
    client.get("/?lang=es")
    response = client.get("/?lang=fr", headers={"Accept-Language": "ca"})
    assert html_lang(response) == "es"
    assert response.headers.getlist("Set-Cookie") == []
    assert client.get_cookie("lang").value == "es"
    fresh = client.application.test_client()
    assert html_lang(fresh.get("/?lang=<script>", headers={"Accept-Language": "ca"})) == "ca"


def test_pages_say_they_vary_with_the_browser_language_and_the_cookie(client):
    vary = {v.strip() for v in client.get("/").headers["Vary"].split(",")}
    assert {"Accept-Language", "Cookie"} <= vary


# --- the switch on every page -------------------------------------------------------------------

def _pages(app, make_staff, make_submission, lang="ca"):
    """{name: response} for every kind of page (public, staff, errors, each outcome) in `lang`."""
    public = app.test_client()
    public.get(f"/?lang={lang}")
    staff = logged_in_client(app, make_staff, "admin")
    staff.get(f"/staff/login?lang={lang}")
    sub = make_submission(outcome="tell_centre")
    outcomes = {"proceed": all_no(), "tell_centre": all_no(pregnant="yes", pregnancy_complicated="no"),
                "consult_professional": all_no(fever="yes")}
    pages = {
        "index": public.get("/"),
        "service": public.get("/services/back-massage"),
        "questionnaire": public.get("/screening/back-massage"),
        "questionnaire with errors": public.post("/screening/back-massage", data={"fever": "yes"}),
        "sharing errors": public.post("/screening/back-massage", data=all_no(share="yes", contact="x")),
        **{code: public.post("/screening/back-massage", data=answers) for code, answers in outcomes.items()},
        "404": public.get("/no-such-page"),
        "405": public.post("/"),
        "login": app.test_client().get(f"/staff/login?lang={lang}"),
        "login failed": app.test_client().post(f"/staff/login?lang={lang}",
                                               data={"email": "a@b.example", "password": "wrong"}),
        "dashboard": staff.get("/staff/"),
        "detail": staff.get(f"/staff/submissions/{sub['id']}"),
        "detail with errors": staff.post(f"/staff/submissions/{sub['id']}/status", data={"status": "gone"}),
        "dashboard with errors": staff.get("/staff/?from=yesterday"),
        "rules": staff.get("/staff/rules"),
        "simulate": staff.get("/staff/rules/simulate"),
        "simulate result": staff.post("/staff/rules/simulate", data={"service": "back-massage", **all_no(fever="yes")}),
        "audit": staff.get("/staff/audit"),
        "account": staff.get("/staff/account"),
        "account with errors": staff.post("/staff/account/password", data={
            "current_password": "wrong", "new_password": "short", "new_password_again": "other"}),
    }
    for code in outcomes:
        assert f'data-outcome="{code}"' in pages[code].text
    assert {name: r.status_code for name, r in pages.items() if r.status_code >= 500} == {}
    assert "Tria un dels estats" in pages["detail with errors"].text or lang != "ca"
    return pages


def test_every_page_has_the_switch_in_three_languages_named_in_themselves(app, make_staff, make_submission):
    for name, response in _pages(app, make_staff, make_submission).items():
        assert html_lang(response) == "ca", name
        links = switch(response)
        # a link would lose a result or what was typed: there the switch posts (buttons, no hreflang)
        posts = name.startswith(("questionnaire", "sharing")) or name in OUTCOMES
        assert [(x["kind"], x["hreflang"], x["lang"], x["text"]) for x in links] == [
            ("button", None, code, text) if posts else ("a", code, code, text)
            for code, text in (("en", "English"), ("ca", "Català"), ("es", "Español"))], name
        assert [x["current"] for x in links] == [False, True, False], name
        assert {x["href"].split("?")[0] for x in links} == {re.sub(r"\?.*", "", response.request.path)}, name


def test_switch_links_keep_the_path_and_a_staff_filter_but_never_a_post_or_public_query(
        staff_client, client):
    url = search_url(staff_client, "ana", status="new")           # a search is named by its id only
    assert "ana" not in url and "search=" in url
    dashboard = staff_client.get(url)
    assert switch(dashboard)[2]["href"] == f"{url}&lang=es"
    page = client.get("/services/back-massage?utm=x&lang=ca")
    assert switch(page)[0]["href"] == "/services/back-massage?lang=en"
    result = client.post("/screening/back-massage?fever=no", data=all_no(notes="my knee hurts"))
    hrefs = [x["href"] for x in switch(result)]
    assert hrefs == ["/screening/back-massage?lang=en", "/screening/back-massage?lang=ca",
                     "/screening/back-massage?lang=es"]


def test_following_a_switch_link_changes_the_page_and_the_cookie(client):
    page = client.get("/services/back-massage")
    response = client.get(switch(page)[2]["href"])
    assert html_lang(response) == "es"
    assert client.get_cookie("lang").value == "es"


# --- the API --------------------------------------------------------------------------------------

@pytest.mark.parametrize("lang", LANGS)
def test_the_api_answers_in_the_browser_language_and_says_so(client, lang):
    response = client.get("/api/v1/services", headers={"Accept-Language": lang})
    assert response.headers["Content-Language"] == lang
    assert response.get_json()["locale"] == lang
    evaluated = client.post("/api/v1/evaluate", headers={"Accept-Language": lang},
                            json={"service": "back-massage", "answers": {**{f: "no" for f in RED_FLAGS},
                                                                        "pregnant": "no"}})
    assert evaluated.headers["Content-Language"] == lang
    assert evaluated.get_json()["outcome"] == "proceed"          # codes never change


def test_the_api_ignores_the_lang_cookie_and_falls_back_to_the_default_language(centre_in):
    client = centre_in("es").test_client(accept_language=None)
    client.get("/?lang=ca")
    response = client.get("/api/v1/services")
    assert response.headers["Content-Language"] == "es"
    assert "Set-Cookie" not in client.get("/api/v1/services?lang=en").headers


# --- dates and notices ---------------------------------------------------------------------------

def test_the_result_time_is_written_the_way_each_language_writes_dates(client):
    months = {
        "en": r"(January|February|March|April|May|June|July|August|September|October|November|December) \d",
        "ca": r"\d+ d(e |’|')(gener|febrer|març|abril|maig|juny|juliol|agost|setembre|octubre|novembre|desembre)",
        "es": r"\d+ de (enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|octubre|noviembre|diciembre)"}
    for lang, pattern in months.items():
        response = client.post(f"/screening/back-massage?lang={lang}", data=all_no())
        shown = re.search(r'<time datetime="[^"]+">([^<]+)</time>', response.text).group(1)
        assert re.search(pattern, shown), (lang, shown)


def test_a_notice_is_written_in_the_centres_default_language(centre_in):
    app = centre_in("es", NOTIFY_TO="centre@example.org", SMTP_HOST="localhost")
    with app.app_context():
        message = notify.compose(app, {"id": 7, "number": 3, "reference": "K7QF-M3XA", "service": "back-massage",
                                       "outcome": "tell_centre"})
    assert message["Subject"].startswith("Nuevo cuestionario K7QF-M3XA")
    assert "Las respuestas están en las páginas del equipo" in message.get_content()


def test_staff_pages_default_to_their_own_centres_language(make_app, rules_copy):
    """A staff member whose browser names no language reads their centre's default language, not
    the installation's default centre's: the pages, and the CSV's words and separator."""
    from screening.store import accounts
    from screening.store import db as dbmod
    other = add_centre(rules_copy, "centre-b", name="Centre B")
    other.write_text(other.read_text().replace('default_language = "ca"', 'default_language = "es"', 1))
    app = make_app(RULES_DIR=str(rules_copy), DEFAULT_CENTRE=CENTRE)
    conn = dbmod.connect(app.config["DATABASE"])
    accounts.create_staff(conn, email="bea@b.example", password="a long password here", centre="centre-b")
    conn.close()
    client = app.test_client(accept_language=None)
    page = client.post("/staff/login", data={"email": "bea@b.example", "password": "a long password here"},
                       follow_redirects=True)
    assert html_lang(page) == "es" and "Equipo del centro Centre B" in page.text
    csv_text = client.get("/staff/export.csv").get_data(as_text=True)
    assert csv_text.lstrip("\ufeff").startswith("Referencia;")
    assert html_lang(client.get("/")) == "ca"       # the public side still speaks for the default centre


def test_each_centres_notices_are_in_that_centres_language(make_app, rules_copy):
    """Two centres, one reading Catalan and one English: each notice in its own centre's language,
    whichever centre is the installation's default."""
    other = add_centre(rules_copy, "centre-b", name="Centre B", notify_to="desk@b.example")
    other.write_text(other.read_text().replace('default_language = "ca"', 'default_language = "en"', 1))
    app = make_app(RULES_DIR=str(rules_copy), SMTP_HOST="localhost", DEFAULT_CENTRE=CENTRE)
    notice = {"id": 7, "number": 3, "reference": "K7QF-M3XA", "service": "back-massage", "outcome": "tell_centre"}
    with app.app_context():
        catalan = notify.compose(app, {**notice, "centre": CENTRE})
        english = notify.compose(app, {**notice, "centre": "centre-b"})
    assert catalan["Subject"].startswith("Nou qüestionari K7QF-M3XA") and "Massatge d'esquena" in catalan.get_content()
    assert english["Subject"].startswith("New screening K7QF-M3XA") and "Back massage" in english.get_content()
    assert english["To"] == "desk@b.example"


# --- catalogs: complete, and nothing English left on a translated page ---------------------------

def _extracted_ids() -> set[str]:
    """Every message the code and templates ask for now, extracted as babel.cfg says."""
    with (ROOT / "babel.cfg").open() as f:
        method_map, options_map = parse_mapping_cfg(f)
    keywords = {**DEFAULT_KEYWORDS, "_l": None, "lazy_gettext": None}
    return {msg[2] if isinstance(msg[2], str) else msg[2][0]
            for msg in extract_from_dir(str(ROOT), method_map, options_map, keywords=keywords)
            if not msg[0].startswith(".venv")}


def _catalog(lang):
    with (CATALOGS / lang / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return read_po(f, locale=lang)


@pytest.mark.parametrize("lang", ["ca", "es"])
def test_every_text_of_the_pages_has_a_translation(lang):
    catalog = _catalog(lang)
    extracted = _extracted_ids()
    assert len(extracted) > 200
    missing = sorted(i for i in extracted if i not in catalog or not catalog[i].string or catalog[i].fuzzy)
    assert missing == [], f"untranslated in {lang}: run pybabel extract/update (README 'Languages')"
    problems = [(m.id, errors) for m, errors in catalog.check()]
    assert problems == []                   # e.g. a %(placeholder)s lost or renamed in translation


def _english_phrases() -> set[str]:
    """Pieces of the catalog's English longer than 12 characters, placeholders and tags removed."""
    pieces = set()
    for msgid in _extracted_ids():
        for piece in re.split(r"%\([a-z_]+\)s|<[^>]+>", msgid):
            if len(piece.strip()) > 12:
                pieces.add(piece.strip())
    return pieces


@pytest.mark.parametrize("lang", ["ca", "es"])
def test_no_english_from_the_catalog_on_a_translated_page(app, make_staff, make_submission, lang):
    english = _english_phrases()
    for name, response in _pages(app, make_staff, make_submission, lang).items():
        assert html_lang(response) == lang, name
        left = sorted(p for p in english if p in response.text)
        assert left == [], f"{name} in {lang} still shows English: {left}"


# --- installing -------------------------------------------------------------------------------------

def test_a_built_wheel_carries_compiled_catalogs(tmp_path):
    """`pip install .` (smoke.py) builds a wheel from the committed files, which hold no .mo."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    source = tmp_path / "src"
    for name in files:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    assert not list(source.rglob("*.mo"))
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "-w", str(tmp_path / "dist"), str(source)], check=True, capture_output=True)
    assert time.monotonic() - started < 60
    (wheel,) = (tmp_path / "dist").glob("screening-*.whl")
    with zipfile.ZipFile(wheel) as z:
        for lang, sentence in (("ca", INDEX_H1["ca"]), ("es", INDEX_H1["es"])):
            catalog = read_mo(BytesIO(z.read(f"screening/translations/{lang}/LC_MESSAGES/messages.mo")))
            assert catalog[INDEX_H1["en"]].string == sentence


def test_no_template_shows_words_outside_gettext():
    """A sentence typed straight into a template would stay English on every page: each must be in
    _() or {% trans %} (then the catalog test above asks for its translations)."""
    allowed = {"UTC", "Subject:"}       # a time zone's name, and the e-mail header the notice starts with
    found = []
    for path in sorted((ROOT / "templates").rglob("*")):
        if path.suffix not in (".html", ".txt"):
            continue
        text = path.read_text()
        for pattern in (r"\{#.*?#\}", r"\{%-? trans.*?endtrans -?%\}", r"\{%.*?%\}", r"\{\{.*?\}\}", r"<[^>]*>",
                        r'[\w-]+="[^"\n]*"?', r'^[\w-]*"$'):   # the last two: attributes a macro writes
            text = re.sub(pattern, "\n", text, flags=re.S | re.M)
        found += [(path.name, line.strip()) for line in text.splitlines()
                  if re.search(r"[A-Za-z]{2,}", line) and line.strip() not in allowed]
    assert found == []


# --- wording: names, dates and numbers inside sentences, one word for each thing -----------------

# a word that changes its form, or the form of the word after it, right before a name, a date or
# a number ("el 1 de desembre" for "l'1", "de Espai" for "d'Espai", "de El Racó" for "del Racó")
TOUCHING = {"ca": r"el|la|els|les|de|del|dels|a|al|als|per|pel|amb|en|com a|sobre|[dl]['’]",
            "es": r"el|la|los|las|de|del|a|al|en|con|por|para|sobre|como"}
NAME_HOLDERS = r"centre|service|shown|who|ref|reference"
NUMBER_HOLDERS = r"num|count|days|page|pages"


@pytest.mark.parametrize("lang", ["ca", "es"])
def test_no_article_or_preposition_touches_a_name_date_or_number_put_in_a_sentence(lang):
    before = rf"(?:^|[\s(])(?:{TOUCHING[lang]})\s*(?:<[^>]+>)?"
    names = re.compile(rf"{before}%\((?:{NAME_HOLDERS})\)", re.I)
    # in Spanish a number is written the same after any word; in Catalan "de" and "el" elide ("d'11")
    numbers = re.compile(rf"(?:^|[\s(])(?:de|del|el|la|[dl]['’])\s*%\((?:{NUMBER_HOLDERS})\)", re.I)
    found = []
    for message in _catalog(lang):
        for text in (message.string if isinstance(message.string, tuple) else (message.string,)):
            if text and (names.search(text) or (lang == "ca" and numbers.search(text))):
                found.append(text)
    assert found == []


@pytest.fixture
def frozen_now(monkeypatch):
    """frozen_now(datetime): the moment the result page says it was made."""
    def freeze(moment):
        class Frozen(datetime):
            @classmethod
            def now(cls, tz=None):
                return moment.astimezone(tz)
        monkeypatch.setattr(public, "datetime", Frozen)
    return freeze


@pytest.mark.parametrize("day", [1, 11])
def test_the_catalan_result_date_reads_right_on_the_1st_and_the_11th(client, frozen_now, day):
    for month in (4, 12):           # "d'abril" and "de desembre"; summer and winter time names
        frozen_now(datetime(2026, month, day, 10, 30, tzinfo=UTC))
        response = client.post("/screening/back-massage?lang=ca", data=all_no())
        made_at = html.unescape(re.sub(r"<[^>]+>", "", re.search(r'<p class="made-at">(.*?)</p>', response.text,
                                                                 re.S).group(1)))
        assert f" {day} d" in made_at                               # the date is there
        assert not re.search(rf"\b(el|de) {day}\b", made_at), made_at   # "el 1 de", "el 11 d'abril"
        assert "’" not in made_at and "d'" in made_at, made_at       # one kind of apostrophe (CLDR writes ’)


@pytest.mark.parametrize("lang", ["ca", "es"])
def test_a_centre_name_that_starts_with_a_vowel_gets_no_preposition_before_it(make_app, rules_copy, lang):
    # the shipped centre is "Espai Massatge Exemple"; it offers every service but one here
    edit(rules_copy, "centres/exemple-barcelona.toml", '    "deep-tissue-massage",\n', "")
    client = make_app(RULES_DIR=str(rules_copy)).test_client()
    pages = [client.get(f"/services/deep-tissue-massage?lang={lang}"),
             client.post(f"/screening/back-massage?lang={lang}",
                         data=all_no(pregnant="yes", pregnancy_complicated="no"))]
    assert pages[0].status_code == 404 and pages[1].status_code == 200
    for page in pages:
        text = html.unescape(re.sub(r"<[^>]+>", "", page.text))
        assert "Espai Massatge Exemple" in text
        assert not re.search(rf"(?:^|\s)(?:{TOUCHING[lang]})\s*Espai", text, re.M), page.request.path


def _texts_of_rules(lang: str) -> list[str]:
    """Every `lang` text of the rule files, found by walking them."""
    import tomllib
    found = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get(lang), str):
                found.append(node[lang])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    for path in (ROOT / "rules").rglob("*.toml"):
        walk(tomllib.loads(path.read_text()))
    return found


@pytest.mark.parametrize(("lang", "term", "other"), [("es", "profesional sanitario", "profesional de la salud"),
                                                     ("ca", "professional de la salut", "professional sanitari")])
def test_one_term_for_a_health_professional_everywhere(lang, term, other):
    texts = _texts_of_rules(lang) + [s for m in _catalog(lang)
                                     for s in (m.string if isinstance(m.string, tuple) else (m.string,))]
    assert any(term in t for t in texts)
    assert [t for t in texts if other in t.lower()] == []


def test_the_disclaimer_speaks_of_the_check_not_of_questions_or_of_a_result(rules):
    """It stands on pages without questions (the footer), and right under a result, where "no
    result can be assured" would read as "this result cannot be relied on"."""
    for lang in LANGS:
        disclaimer = rules.text("disclaimer", lang)
        result_word = _catalog(lang)["Your result"].string.split()[-1] if lang != "en" else "result"
        assert result_word.lower() not in disclaimer.lower(), lang
        assert not re.search(r"question|pregunt", disclaimer, re.I), lang


@pytest.mark.parametrize("lang", LANGS)
def test_the_heading_over_lower_reasons_repeats_the_outcomes_own_label(client, rules, lang):
    page = client.post(f"/screening/back-massage?lang={lang}",
                       data=all_no(fever="yes", pregnant="yes", pregnancy_complicated="no")).text
    heading = re.search(r'<h2>([^<]+)</h2>\s*<ul[^>]*>\s*<li[^>]*data-reason="pregnancy"', page).group(1)
    label = rules.outcomes["tell_centre"]["label"].get(lang)
    assert set(label.lower().split()) <= set(heading.lower().split()), (heading, label)


@pytest.mark.parametrize("lang", ["ca", "es"])
def test_not_sure_is_called_the_careful_answer_not_a_safe_or_certain_one(client, lang):
    lead = re.search(r'<p class="lead">(.*?)</p>', client.get(f"/screening/back-massage?lang={lang}").text, re.S)
    assert "prudent" in lead.group(1)
    assert not re.search(r"segur", lead.group(1)), lead.group(1)
