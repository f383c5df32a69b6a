"""The language switch on a result and on the questionnaire (SPEC "Language switch on a result"):
buttons that post what the page holds, and get the same page back in the chosen language, from a
copy signed by the app; the switch never calls the store, never puts answers in a URL, keeps
nothing in the session. Also the result's "not sent" box when storage fails (503)."""
import re
import time
from contextlib import contextmanager

import pytest
from conftest import CENTRE, add_centre, all_no
from helpers_server import hidden_value
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from screening.store import db as dbmod
from screening.web import database, public

FORM = "/screening/decontracting-back-massage"
LANGS = ("en", "ca", "es")
OUTCOME_LABEL = {"en": "Consult a health professional", "ca": "Consulta un professional de la salut",
                 "es": "Consulta a un profesional sanitario"}


def shared(nonce="n" * 24, **overrides):
    return all_no(**{"share": "yes", "name": "Ana Client", "contact": "ana@example.org", "consent": "yes",
                     "nonce": nonce, **overrides})


def copy_of(html: str) -> str:
    return re.search(r'name="result_copy" value="([^"]+)"', html).group(1)


def copied(html: str) -> dict:
    """What the page's signed copy holds (read without its key: the tests of the signature are below)."""
    return URLSafeTimedSerializer("any key").load_payload(copy_of(html).rsplit(".", 2)[0].encode())


def markers(html: str) -> dict:
    """What must not change with the language: the codes, the reference, the "not sent" box, and
    everything "Answer the questions again" posts back."""
    return {"outcome": re.findall(r'data-outcome="([^"]+)"', html),
            "reasons": re.findall(r'data-reason="([^"]+)"', html),
            "not_sure": html.count("data-not-sure>"),
            "reference": re.findall(r"data-reference>([^<]+)<", html),
            "box": re.findall(r"data-share-(limited|unavailable)", html),
            "again": copied(html)["again"], "answers": copied(html)["decision"]["answers"],
            "time": re.findall(r'<time datetime="([^"]+)"', html),
            "suggestions": re.findall(r'<a href="(/services/[^"]+)">', html.split('class="suggestions"')[-1])}


def html_lang(response) -> str:
    return re.search(r'<html lang="([^"]+)"', response.text).group(1)


def switch(client, response, lang, path=FORM):
    """Press the result's language button for `lang`: post the page's copy where the button says."""
    button = re.search(rf'<button[^>]*name="switch_language" value="{lang}"[^>]*>', response.text).group(0)
    action = re.search(r'formaction="([^"]+)"', button).group(1)
    assert action == f"{path}?lang={lang}"
    return client.post(action, data={"result_copy": copy_of(response.text), "switch_language": lang})


def rows(app, table="submissions"):
    conn = dbmod.connect(app.config["DATABASE"])
    try:
        return conn.execute(f"select count(*) from {table}").fetchone()[0]
    finally:
        conn.close()


def _refuse(*args, **kwargs):
    raise AssertionError("the language switch reached the database")


@contextmanager
def store_blocked():
    """While inside, any use of the database fails the request (the switch must never reach it)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(database.sql, "request_connection", _refuse)
        mp.setattr(dbmod, "store_screening", _refuse)
        yield


@pytest.fixture
def no_store():
    with store_blocked():
        yield


def make_result(kind, make_app, tmp_path):
    """(app, client, the result response) of one kind of result page, in English."""
    app = make_app(SHARE_LIMIT_PER_HOUR=1 if kind == "limited" else 0)
    client = app.test_client()
    answers = {"fever": "not_sure", "preferred_intensity": "light"}
    if kind == "check_only":
        return app, client, client.post(FORM, data=all_no(**answers))
    if kind == "limited":
        client.post(FORM, data=shared(nonce="a" * 24))
    if kind == "unavailable":
        (tmp_path / "gone").mkdir()
        app = make_app(DATABASE=str(tmp_path / "gone" / "screening.db"))
        (tmp_path / "gone").rename(tmp_path / "moved")      # the volume went away under the running app
        client = app.test_client()
    response = client.post(FORM, data=shared(**answers))
    if kind in ("already_sent", "changed"):
        changed = {"recent_injury": "yes"} if kind == "changed" else {}
        response = client.post(FORM, data=shared(**answers, **changed))
    return app, client, response


KINDS = {"check_only": (200, "To send your answers to the centre"),
         "sent": (200, "Your answers were sent to the centre"),
         "already_sent": (200, "Your answers were already sent"),
         "changed": (200, "Your changed answers were sent as a new screening"),
         "limited": (429, "Too many screenings were sent"),
         "unavailable": (503, "Nothing was stored: we cannot save anything right now")}


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("kind", list(KINDS))
def test_switching_language_on_a_result_gives_the_same_result_in_that_language(make_app, tmp_path, kind, lang):
    app, client, result = make_result(kind, make_app, tmp_path)
    status, sentence = KINDS[kind]
    assert result.status_code == status and sentence in result.text
    start = "ca" if lang == "en" else "en"
    if start != "en":
        result = switch(client, result, start)
    stored = None if kind == "unavailable" else (rows(app), rows(app, "share_attempts"))
    with store_blocked():
        switched = switch(client, result, lang)
    assert switched.status_code == 200
    assert html_lang(switched) == lang and switched.headers["Content-Language"] == lang
    assert client.get_cookie("lang").value == lang          # remembered, as ?lang= on a link is
    assert OUTCOME_LABEL[lang] in switched.text
    assert markers(switched.text) == markers(result.text)
    reasons = markers(switched.text)["reasons"]
    assert "fever" in reasons and reasons[-1] == "light_pressure_on_firm_service"
    assert (markers(switched.text)["reference"] != []) == (kind in ("sent", "already_sent", "changed"))
    assert switched.request.url.endswith(f"{FORM}?lang={lang}")     # no answer in the URL
    if stored is not None:
        assert (rows(app), rows(app, "share_attempts")) == stored


def test_a_switch_an_hour_later_over_the_limit_stores_and_counts_nothing(make_app):
    app = make_app(SHARE_LIMIT_PER_HOUR=1)
    client = app.test_client()
    first = client.post(FORM, data=shared())
    assert first.status_code == 200
    before = rows(app), rows(app, "share_attempts")
    for lang in ("ca", "es", "en", "ca"):
        assert switch(client, first, lang).status_code == 200
    assert (rows(app), rows(app, "share_attempts")) == before
    # the limit was reached by the one share: a new share is still refused, the switches took nothing
    assert client.post(FORM, data=shared(nonce="b" * 24, fever="yes")).status_code == 429


@pytest.mark.parametrize("lang", LANGS)
def test_the_questionnaire_switch_keeps_what_was_typed_and_judges_nothing(client, no_store, lang):
    typed = {"fever": "not_sure", "pregnant": "yes", "tension_areas": ["neck", "lumbar"], "notes": "left knee",
             "share": "yes", "name": "Ana Client", "nonce": "q" * 24}
    page = client.get(FORM)
    assert 'form="questionnaire"' in page.text and 'id="questionnaire"' in page.text
    response = client.post(f"{FORM}?lang={lang}", data={**typed, "switch_language": lang})
    assert response.status_code == 200 and html_lang(response) == lang
    assert "data-outcome" not in response.text and 'class="error-summary' not in response.text
    for checked in ("fever-not_sure", "pregnant-yes", "tension_areas-neck", "tension_areas-lumbar", "share-yes"):
        assert re.search(rf'id="{checked}"[^>]*checked', response.text), checked
    assert "left knee</textarea>" in response.text and 'value="Ana Client"' in response.text
    assert f'value="{"q" * 24}"' in response.text                 # the same form: a later send is deduplicated


def test_a_form_shown_with_errors_comes_back_with_them_in_the_new_language(client):
    refused = client.post(FORM, data={"fever": "yes"})
    assert refused.status_code == 422 and 'name="errors_shown"' in refused.text
    response = client.post(f"{FORM}?lang=es", data={"fever": "yes", "errors_shown": "yes", "switch_language": "es"})
    assert response.status_code == 422 and html_lang(response) == "es"
    assert "Elige una respuesta para esta pregunta." in response.text
    assert re.search(r'id="fever-yes"[^>]*checked', response.text)


def test_enter_in_a_field_checks_the_answers_rather_than_switching_language(client):
    """The first submit button of the questionnaire form in the page (what Enter presses) is a plain one."""
    page = client.get(FORM).text
    first = re.search(r'<button type="submit" form="questionnaire"[^>]*>', page).group(0)
    assert "switch_language" not in first and "formaction" not in first
    assert page.index(first) < page.index('name="switch_language"')


@pytest.mark.parametrize("bad", ["", "not-a-copy", "eyJ4IjoxfQ.Z0.abc"])
def test_an_unreadable_copy_is_a_400_page_and_stores_nothing(client, app, bad):
    response = client.post(f"{FORM}?lang=ca", data={"result_copy": bad, "switch_language": "ca"})
    assert response.status_code == 400 and "data-outcome" not in response.text
    assert rows(app) == 0


def test_a_tampered_copy_is_refused(client, app):
    result = client.post(FORM, data=all_no(fever="yes")).text
    copy = copy_of(result)
    payload = URLSafeTimedSerializer("x").loads_unsafe(copy)[1]     # what it says, without its signature
    payload["decision"]["outcome"] = "proceed"
    payload["decision"]["fired_rules"] = []
    forged = URLSafeTimedSerializer("another key", salt=public.RESULT_COPY_SALT).dumps(payload)
    for copy_sent in (forged, copy[:-2] + ("AA" if not copy.endswith("AA") else "BB")):
        response = client.post(f"{FORM}?lang=es", data={"result_copy": copy_sent, "switch_language": "es"})
        assert response.status_code == 400 and "data-outcome" not in response.text


def test_a_copy_is_shown_only_on_its_own_service_and_only_while_fresh(client, monkeypatch):
    copy = copy_of(client.post(FORM, data=all_no(fever="yes")).text)
    other = client.post("/screening/back-massage?lang=ca",
                        data={"result_copy": copy, "switch_language": "ca"})
    assert other.status_code == 400
    # an hour later (within the page's CSRF life) it still works; past it, it is refused
    limit = client.application.config["WTF_CSRF_TIME_LIMIT"]
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600)
    assert client.post(f"{FORM}?lang=ca", data={"result_copy": copy, "switch_language": "ca"}).status_code == 200
    monkeypatch.setattr(time, "time", lambda: real() + limit + 60)
    assert client.post(f"{FORM}?lang=ca", data={"result_copy": copy, "switch_language": "ca"}).status_code == 400


def test_the_switch_needs_the_csrf_token_and_keeps_nothing_in_the_session(csrf_app):
    client = csrf_app.test_client()
    page = client.get(FORM).text
    result = client.post(FORM, data={**all_no(fever="yes"), "csrf_token": hidden_value(page, "csrf_token")})
    copy = copy_of(result.text)
    refused = client.post(f"{FORM}?lang=ca", data={"result_copy": copy, "switch_language": "ca"})
    assert refused.status_code == 400 and "data-outcome" not in refused.text
    token = re.search(r'id="language-form".*?name="csrf_token" value="([^"]+)"', result.text, re.S).group(1)
    with client.session_transaction() as session:
        before = dict(session)
    switched = client.post(f"{FORM}?lang=ca", data={"result_copy": copy, "switch_language": "ca", "csrf_token": token})
    assert switched.status_code == 200 and 'data-outcome="consult_professional"' in switched.text
    with client.session_transaction() as session:
        assert dict(session) == before          # only the CSRF secret Flask-WTF keeps, as before


def test_other_pages_keep_links_with_hreflang(client):
    for path in ("/", "/services/back-massage", "/no-such-page"):
        nav = re.search(r'<nav class="language-switch".*?</nav>', client.get(path).text, re.S).group(0)
        assert nav.count('hreflang="') == 3 and "<button" not in nav, path


# --- storage unavailable: the result stays, with a box saying it was not sent ------------------

def test_when_storage_fails_a_share_still_shows_the_result_and_how_to_reach_the_centre(make_app, tmp_path):
    (tmp_path / "data").mkdir()
    app = make_app(DATABASE=str(tmp_path / "data" / "screening.db"))
    (tmp_path / "data").rename(tmp_path / "moved")
    response = app.test_client().post(FORM, data=shared(fever="yes"))
    assert response.status_code == 503 and int(response.headers["Retry-After"]) > 0
    html = response.text
    assert re.findall(r'data-outcome="([^"]+)"', html) == ["consult_professional"]
    assert re.findall(r'data-reason="([^"]+)"', html) == ["fever"]
    assert "data-share-unavailable" in html and "Your answers were not sent to the centre" in html
    assert "data-reference>" not in html and "data-centre-phone" in html and 'data-answer="fever"' in html
    # "Answer the questions again" keeps the answers and the sharing details, for a retry
    assert markers(html)["again"] == {"nonce": "n" * 24, "share": "yes", "name": "Ana Client",
                                      "contact": "ana@example.org"}
    assert markers(html)["answers"]["intense_pain"] == "no"


def test_a_switch_after_the_page_expired_stores_nothing_and_gives_the_form_back_with_the_answers(
        csrf_app, monkeypatch):
    client = csrf_app.test_client()
    page = client.get(FORM).text
    sent = shared(fever="yes", tension_areas=["neck", "lumbar"], csrf_token=hidden_value(page, "csrf_token"))
    result = client.post(FORM, data=sent).text
    token = re.search(r'id="language-form".*?name="csrf_token" value="([^"]+)"', result, re.S).group(1)
    real = TimestampSigner.get_timestamp
    monkeypatch.setattr(TimestampSigner, "get_timestamp",
                        lambda self: real(self) + csrf_app.config["WTF_CSRF_TIME_LIMIT"] + 60)
    with store_blocked():
        late = client.post(f"{FORM}?lang=es", data={"result_copy": copy_of(result), "switch_language": "es",
                                                     "csrf_token": token})
    assert late.status_code == 400 and html_lang(late) == "es" and "data-outcome" not in late.text
    for checked in ("fever-yes", "tension_areas-neck", "tension_areas-lumbar", "share-yes"):
        assert re.search(rf'id="{checked}"[^>]*checked', late.text), checked
    assert 'value="Ana Client"' in late.text and f'value="{"n" * 24}"' in late.text   # the same form's nonce


def test_under_a_centres_prefix_the_switch_stays_there_and_a_copy_never_crosses_centres(make_app, rules_copy):
    add_centre(rules_copy, "centre-b", name="Centre B")
    app = make_app(RULES_DIR=str(rules_copy), DEFAULT_CENTRE=CENTRE)
    client = app.test_client()
    path = f"/c/centre-b{FORM}"
    result = client.post(path, data=all_no(fever="yes"))
    switched = switch(client, result, "es", path=path)
    assert switched.status_code == 200 and "Centre B" in switched.text
    assert markers(switched.text) == markers(result.text)
    crossed = client.post(f"{FORM}?lang=es", data={"result_copy": copy_of(result.text), "switch_language": "es"})
    assert crossed.status_code == 400 and "data-outcome" not in crossed.text
