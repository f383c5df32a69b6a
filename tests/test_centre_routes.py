"""Centres on the public side (SPEC "Centres"): /c/<centre>/ for every public page, the directory at
/centres, the un-prefixed routes for the default centre, each page showing its centre and how to
reach it, the result's booking link and contact, and the API's centres. Two centres: the shipped
example (A, every service, Catalan) and a smaller one (B, two services, Spanish, an accented name)."""
import html
import re

import pytest
from conftest import all_no
from test_api import assert_matches_document

A, B = "exemple-barcelona", "centre-nuria"
A_BOOKING, B_BOOKING = "https://exemple.example.org/reserva", "https://nuria.example.org/reserves"
A_TEL, A_MAIL = "tel:+34930000000", "mailto:hola@exemple.example.org"
B_TEL, B_MAIL = "tel:+34931111222", "mailto:hola@nuria.example.org"
B_SERVICES = ["back-massage", "deep-tissue-massage"]
ONLY_AT_A = "decontracting-back-massage"
CENTRE_B = f'''name = "Centre Núria Sants"
phone = "+34 931 111 222"
email = "hola@nuria.example.org"
address = "Carrer de Sants 100, 08014 Barcelona"
booking_url = "{B_BOOKING}"
default_language = "es"
timezone = "Europe/Madrid"
services = {B_SERVICES!r}
'''.replace("'", '"')


@pytest.fixture
def two_centres(rules_copy):
    """A rules folder with the shipped centre (A) and centre B beside it."""
    (rules_copy / "centres" / f"{B}.toml").write_text(CENTRE_B, encoding="utf-8")
    return rules_copy


@pytest.fixture
def app(make_app, two_centres):
    """Two centres, none the default: the un-prefixed pages lead to the directory."""
    return make_app(RULES_DIR=str(two_centres))


@pytest.fixture
def app_with_default(make_app, two_centres):
    return make_app(RULES_DIR=str(two_centres), DEFAULT_CENTRE=A)


def hrefs(html: str) -> list[str]:
    return [h.replace("&amp;", "&") for h in re.findall(r'\b(?:href|action)="([^"]*)"', html)]


def header_centre(html: str) -> str | None:
    found = re.search(r'<header.*?data-centre="([^"]+)"', html, re.S)
    return found.group(1) if found else None


def outcome(html: str) -> str:
    return re.findall(r'data-outcome="([a-z_]+)"', html)[0]


def booking_links(html: str) -> list[str]:
    return re.findall(r'href="([^"]+)" data-booking', html)


def tell_centre_answers(**extra):
    """Light pressure on a firm massage: tell the centre (rules/examples.toml)."""
    return all_no(preferred_intensity="light", **extra)


def count(db) -> int:
    return db.execute("select count(*) from submissions").fetchone()[0]


# --- every page under /c/<centre>/, with that centre's name and contact -------------------------

@pytest.mark.parametrize("centre, tel, mail, name", [(A, A_TEL, A_MAIL, "Espai Massatge Exemple"),
                                                     (B, B_TEL, B_MAIL, "Centre Núria Sants")])
def test_each_centres_pages_show_its_own_name_and_how_to_reach_it(client, centre, tel, mail, name):
    for path in ["/", "/services/back-massage", "/screening/back-massage"]:
        response = client.get(f"/c/{centre}{path}")
        assert response.status_code == 200, path
        html = response.text
        assert header_centre(html) == centre and name in html
        footer = html[html.index("<footer"):]
        assert f'href="{tel}"' in footer and f'href="{mail}"' in footer
        other_tel, other_mail = (B_TEL, B_MAIL) if centre == A else (A_TEL, A_MAIL)
        assert other_tel not in html and other_mail not in html


def test_a_centres_index_lists_only_the_services_it_offers(client):
    html = client.get(f"/c/{B}/").text
    listed = sorted(set(re.findall(rf'href="/c/{B}/services/([a-z-]+)"', html)))
    assert listed == B_SERVICES


def test_posting_all_no_at_a_centre_gives_proceed_with_that_centres_booking_link(client):
    response = client.post(f"/c/{A}/screening/{ONLY_AT_A}", data=all_no())
    assert response.status_code == 200 and outcome(response.text) == "proceed"
    assert booking_links(response.text) == [A_BOOKING]
    assert "data-centre-phone" not in response.text        # phone and e-mail only on tell_centre


def test_a_tell_centre_result_shows_the_centres_booking_link_phone_and_email(client):
    html = client.post(f"/c/{A}/screening/{ONLY_AT_A}", data=tell_centre_answers()).text
    assert outcome(html) == "tell_centre"
    assert booking_links(html) == [A_BOOKING]
    assert f'href="{A_TEL}" data-centre-phone' in html
    assert f'href="{A_MAIL}" data-centre-email' in html
    html_b = client.post(f"/c/{B}/screening/deep-tissue-massage", data=tell_centre_answers()).text
    assert booking_links(html_b) == [B_BOOKING] and f'href="{B_TEL}" data-centre-phone' in html_b


def test_a_consult_result_offers_no_booking_link(client):
    html = client.post(f"/c/{A}/screening/back-massage", data=all_no(fever="yes")).text
    assert outcome(html) == "consult_professional"
    assert booking_links(html) == [] and "data-centre-phone" not in html


def test_the_share_limit_box_names_the_centres_phone_and_email(make_app, two_centres):
    client = make_app(RULES_DIR=str(two_centres), SHARE_LIMIT_PER_HOUR=1).test_client()
    shared = all_no(share="yes", name="Ana", contact="ana@example.org", consent="yes")
    assert client.post(f"/c/{B}/screening/back-massage", data={**shared, "nonce": "n-1-" + "x" * 16}).status_code == 200
    # another client from the same address (the same client again would be told it was already sent)
    refused = client.post(f"/c/{B}/screening/back-massage", data={**shared, "name": "Bea", "nonce": "n-2-" + "x" * 16})
    assert refused.status_code == 429
    box = re.search(r"<section[^>]*data-share-limited.*?</section>", refused.text, re.S).group(0)
    assert f'href="{B_TEL}"' in box and f'href="{B_MAIL}"' in box


def test_a_shared_screening_is_stored_once_through_a_centres_route(client, db):
    shared = all_no(share="yes", name="Ana", contact="ana@example.org", consent="yes", nonce="n-3-" + "x" * 16)
    response = client.post(f"/c/{B}/screening/back-massage", data=shared)
    assert response.status_code == 200 and re.search(r"data-reference>[^<]+<", response.text)
    assert count(db) == 1


# --- a service the centre does not offer, an unknown centre ----------------------------------------

@pytest.mark.parametrize("path", [f"/services/{ONLY_AT_A}", f"/screening/{ONLY_AT_A}"])
def test_a_service_the_centre_does_not_offer_is_a_404_linking_to_the_centres_that_do(client, path):
    response = client.get(f"/c/{B}{path}")
    assert response.status_code == 404
    offering = re.search(r"<ul[^>]*data-offering>(.*?)</ul>", response.text, re.S).group(1)
    assert re.findall(r'href="([^"]+)"', offering) == [f"/c/{A}/services/{ONLY_AT_A}"]
    assert header_centre(response.text) == B                # still B's page, saying B does not offer it


def test_posting_answers_for_a_service_the_centre_does_not_offer_stores_nothing(client, db):
    shared = all_no(share="yes", name="Ana", contact="ana@example.org", consent="yes", nonce="n-4-" + "x" * 16)
    assert client.post(f"/c/{B}/screening/{ONLY_AT_A}", data=shared).status_code == 404
    assert count(db) == 0


@pytest.mark.parametrize("path", ["/", "/services/back-massage", "/screening/back-massage"])
def test_an_unknown_centre_is_a_404_page_that_claims_no_centre(client, path):
    response = client.get(f"/c/nowhere{path}")
    assert response.status_code == 404
    assert header_centre(response.text) is None and "data-centre-contact" not in response.text
    assert client.post("/c/nowhere/screening/back-massage", data=all_no()).status_code == 404


def test_an_unknown_service_at_a_centre_is_a_plain_404(client):
    response = client.get(f"/c/{A}/services/hot-stones")
    assert response.status_code == 404 and "data-offering" not in response.text


# --- links inside a centre's pages stay under its prefix -----------------------------------------

def test_every_link_on_bs_pages_stays_under_b(client):
    pages = [client.get(f"/c/{B}/"), client.get(f"/c/{B}/services/deep-tissue-massage"),
             client.get(f"/c/{B}/screening/deep-tissue-massage"),
             # light pressure and neck tension: suggestions of the back massage and the back-and-neck one
             client.post(f"/c/{B}/screening/deep-tissue-massage", data=tell_centre_answers(tension_areas="neck"))]
    for page in pages:
        local = [h for h in hrefs(page.text) if h.startswith("/") and not h.startswith(("/static/", "/centres"))]
        assert local, page.request.path
        assert all(h.startswith(f"/c/{B}/") for h in local), (page.request.path, local)
    result = pages[-1].text
    assert f'href="/c/{B}/services/back-massage"' in result          # the suggestion B offers
    assert "back-and-neck-massage" not in result                     # ... and not the one it does not


def test_the_language_switch_keeps_the_centres_prefix(client):
    html = client.get(f"/c/{B}/services/back-massage").text
    assert f'href="/c/{B}/services/back-massage?lang=ca"' in html


# --- the un-prefixed routes --------------------------------------------------------------------------

def test_with_several_centres_and_no_default_the_index_is_the_directory(client):
    response = client.get("/")
    assert response.status_code == 200
    assert re.findall(r'data-centre="([a-z0-9-]+)"', response.text) == [B, A]      # by name: Centre..., Espai...


@pytest.mark.parametrize("path", [f"/services/{ONLY_AT_A}", f"/screening/{ONLY_AT_A}", "/screening/back-massage"])
def test_with_no_default_centre_the_unprefixed_service_pages_are_404s_linking_to_the_centres(client, path):
    response = client.get(path)
    assert response.status_code == 404
    offering = re.search(r"<ul[^>]*data-offering>(.*?)</ul>", response.text, re.S).group(1)
    slug = path.rsplit("/", 1)[1]
    expected = [f"/c/{c}/services/{slug}" for c in ([B, A] if slug in B_SERVICES else [A])]
    assert re.findall(r'href="([^"]+)"', offering) == expected


def test_with_no_default_centre_an_unprefixed_post_stores_nothing(client, db):
    shared = all_no(share="yes", name="Ana", contact="ana@example.org", consent="yes", nonce="n-5-" + "x" * 16)
    assert client.post("/screening/back-massage", data=shared).status_code == 404
    assert count(db) == 0


def test_the_unprefixed_routes_serve_the_default_centre_unchanged(app_with_default):
    client = app_with_default.test_client()
    for path in ["/", f"/services/{ONLY_AT_A}", f"/screening/{ONLY_AT_A}"]:
        response = client.get(path)
        assert response.status_code == 200 and header_centre(response.text) == A
        assert not any(h.startswith("/c/") for h in hrefs(response.text))     # links stay un-prefixed
    result = client.post(f"/screening/{ONLY_AT_A}", data=all_no())
    assert outcome(result.text) == "proceed" and booking_links(result.text) == [A_BOOKING]


# --- the directory ---------------------------------------------------------------------------------

def directory(client, **query):
    response = client.get("/centres", query_string=query)
    assert response.status_code == 200
    return re.findall(r'<li class="centre-card" data-centre="([a-z0-9-]+)"', response.text)


def test_the_directory_lists_each_centre_with_its_services_and_how_to_reach_it(client):
    html = client.get("/centres").text
    card = re.search(rf'<li class="centre-card" data-centre="{B}">(.*?)</li>\s*</ul>\s*</li>', html, re.S).group(1)
    assert "Centre Núria Sants" in card and "Carrer de Sants 100" in card
    assert f'href="{B_TEL}"' in card and f'href="{B_MAIL}"' in card
    assert sorted(re.findall(rf'href="/c/{B}/services/([a-z-]+)"', card)) == B_SERVICES
    assert f'href="/c/{B}/"' in card


@pytest.mark.parametrize("q, found", [("nuria", [B]), ("NÚRIA", [B]), ("  sants  ", [B]), ("espai exemple", [A]),
                                      ("barcelona", [B, A]), ("espai massatge", [A]), ("zzz", [])])
def test_the_directory_search_by_name_ignores_accents_and_case(client, q, found):
    assert directory(client, q=q) == found


@pytest.mark.parametrize("lang", ["en", "ca", "es"])
@pytest.mark.parametrize("q, found", [
    ("massatge", [B, A]), ("masaje", [B, A]), ("massage", [B, A]),       # any service's name, in any language
    ("masatge", [B, A]), ("massaje", [B, A]),                            # a doubled letter missed or added
    ("teixit", [B, A]), ("tejido profundo", [B, A]), ("descontracturant", [A]),
    ("descontracturante", [A]), ("decontracting", [A]),                   # only A offers these
    ("esquena sants", [B]), ("08014", [B]), ("núria-sants", [B]),
])
def test_the_directory_search_matches_the_same_in_every_language(client, lang, q, found):
    assert directory(client, q=q, lang=lang) == found


def test_the_directory_search_by_service(client):
    assert directory(client, service=ONLY_AT_A) == [A]
    assert directory(client, service="back-massage") == [B, A]
    assert directory(client, service="back-massage", q="exemple") == [A]
    assert directory(client, service="hot-stones") == [B, A]          # an unknown one filters nothing
    # the service's name, in every language whatever the page's, is searched too
    assert directory(client, q="deep tissue") == [B, A]
    assert directory(client, q="TEIXIT profund", lang="ca") == [B, A]
    assert directory(client, q="teixit", lang="en") == [B, A]


def test_the_directory_search_form_is_a_get_form_that_keeps_what_was_typed(client):
    html = client.get("/centres", query_string={"q": "Núria", "service": "back-massage"}).text
    assert re.search(r'<form method="get" action="/centres"', html)
    assert 'value="Núria"' in html and re.search(r'<option value="back-massage" selected>', html)


def test_the_directory_pages_through_many_centres(make_app, two_centres):
    for i in range(60):
        (two_centres / "centres" / f"zz-centre-{i:02d}.toml").write_text(
            CENTRE_B.replace("Centre Núria Sants", f"Zeta Centre {i:02d}"), encoding="utf-8")
    client = make_app(RULES_DIR=str(two_centres)).test_client()
    first, second = directory(client), directory(client, page="2")
    assert len(first) == 50 and len(second) == 12 and not set(first) & set(second)
    assert directory(client, page="99") == second and directory(client, page="x") == first


# --- languages: the centre's own when the browser names none -------------------------------------

@pytest.mark.parametrize("centre, lang", [(A, "ca"), (B, "es")])
def test_a_client_naming_no_language_reads_the_centres_language(app, centre, lang):
    response = app.test_client(accept_language=None).get(f"/c/{centre}/")
    assert re.search(r'<html lang="([^"]+)"', response.text).group(1) == lang
    assert response.headers["Content-Language"] == lang


def test_the_directory_without_a_centre_is_in_english_when_nothing_is_said(app):
    response = app.test_client(accept_language=None).get("/centres")
    assert response.headers["Content-Language"] == "en"


@pytest.mark.parametrize("lang, words", [
    ("ca", "Pots reservar «massatge descontracturant d'esquena» en aquest centre"),
    ("es", "Puedes reservar «masaje descontracturante de espalda» en este centro")])
def test_the_not_offered_page_is_translated(client, lang, words):
    assert words in html.unescape(client.get(f"/c/{B}/services/{ONLY_AT_A}?lang={lang}").text)


# --- the API -----------------------------------------------------------------------------------------

EVALUATE = "/api/v1/evaluate"


def api_answers(**extra):
    return {**{k: v for k, v in all_no().items() if k != "notes"}, **extra}


def test_the_api_lists_the_centres_with_identity_and_services(client):
    body = client.get("/api/v1/centres").get_json()
    assert [c["slug"] for c in body["centres"]] == [B, A]
    b = body["centres"][0]
    assert b["name"] == "Centre Núria Sants" and b["phone"] == "+34 931 111 222"
    assert b["email"] == "hola@nuria.example.org" and b["booking_url"] == B_BOOKING
    assert b["default_language"] == "es" and b["timezone"] == "Europe/Madrid"
    assert [s["slug"] for s in b["services"]] == B_SERVICES
    assert b["services"][0]["links"]["description"] == f"/c/{B}/services/back-massage"
    assert b["links"]["page"] == f"/c/{B}/"
    assert "notify_to" not in b                                     # where notices go is not public


def test_the_api_gives_one_centre_and_a_json_404_for_an_unknown_one(client):
    one = client.get(f"/api/v1/centres/{B}?locale=es").get_json()
    assert one["slug"] == B and one["locale"] == "es" and one["services"][0]["name"] == "Masaje de espalda"
    missing = client.get("/api/v1/centres/nowhere")
    assert missing.status_code == 404 and missing.is_json
    assert missing.get_json()["error"] == "not_found" and "centre" in missing.get_json()["fields"]


def test_evaluate_at_a_named_centre_names_it(client):
    response = client.post(EVALUATE, json={"service": "back-massage", "answers": api_answers(), "centre": B})
    assert response.status_code == 200
    assert response.get_json()["centre"] == B and response.get_json()["outcome"] == "proceed"


def test_evaluate_without_a_centre_uses_the_default_centre(app_with_default):
    response = app_with_default.test_client().post(EVALUATE, json={"service": ONLY_AT_A, "answers": api_answers()})
    assert response.status_code == 200 and response.get_json()["centre"] == A


@pytest.mark.parametrize("body, field", [
    ({"service": ONLY_AT_A, "centre": B}, "service"),           # B does not offer it
    ({"service": "back-massage", "centre": "nowhere"}, "centre"),
    ({"service": "back-massage", "centre": 7}, "centre"),
    ({"service": "back-massage", "centre": None}, "centre"),   # null is not a centre (nor leaving it out)
    ({"service": "back-massage"}, "centre"),                     # several centres, no default: name one
])
def test_evaluate_refuses_an_unknown_centre_or_a_service_it_does_not_offer_naming_the_field(client, body, field):
    response = client.post(EVALUATE, json={**body, "answers": api_answers()})
    assert response.status_code == 422
    assert response.get_json()["error"] == "invalid_request" and list(response.get_json()["fields"]) == [field]


def test_evaluate_suggests_only_what_the_centre_offers(client):
    answers = api_answers(preferred_intensity="light", tension_areas=["neck"])
    at_b = client.post(EVALUATE, json={"service": "deep-tissue-massage", "answers": answers, "centre": B}).get_json()
    at_a = client.post(EVALUATE, json={"service": "deep-tissue-massage", "answers": answers, "centre": A}).get_json()
    assert [s["service"] for s in at_b["suggestions"]] == ["back-massage"]
    assert at_b["suggestions"][0]["url"] == f"/c/{B}/services/back-massage"
    assert sorted(s["service"] for s in at_a["suggestions"]) == ["back-and-neck-massage", "back-massage"]


def test_the_centres_endpoints_match_the_openapi_document(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    assert_matches_document(spec, "/api/v1/centres", "get", client.get("/api/v1/centres"))
    assert_matches_document(spec, "/api/v1/centres/{centre}", "get", client.get(f"/api/v1/centres/{A}"))
    assert_matches_document(spec, "/api/v1/centres/{centre}", "get", client.get("/api/v1/centres/nowhere"))
    for body in [{"service": "back-massage", "answers": api_answers(), "centre": B},
                 {"service": ONLY_AT_A, "answers": api_answers(), "centre": B}]:
        assert_matches_document(spec, EVALUATE, "post", client.post(EVALUATE, json=body))
    assert spec["components"]["schemas"]["EvaluateRequest"]["properties"]["centre"]["enum"] == [B, A]


@pytest.mark.parametrize("lang", ["ca", "es"])
def test_no_english_on_the_centre_pages_in_catalan_and_spanish(make_app, two_centres, lang):
    from test_i18n import _english_phrases
    client = make_app(RULES_DIR=str(two_centres), SHARE_LIMIT_PER_HOUR=1).test_client()
    shared = all_no(share="yes", name="Ana", contact="ana@example.org", consent="yes")
    client.post(f"/c/{B}/screening/back-massage", data={**shared, "nonce": "n-1-" + "x" * 16})
    pages = {
        "directory": client.get(f"/centres?lang={lang}"),
        "search": client.get(f"/centres?lang={lang}&q=zzz"),
        "index": client.get(f"/c/{B}/?lang={lang}"),
        "not offered": client.get(f"/c/{B}/services/{ONLY_AT_A}?lang={lang}"),
        "no centre chosen": client.get(f"/screening/back-massage?lang={lang}"),
        "unknown centre": client.get(f"/c/nowhere/?lang={lang}"),
        "tell_centre": client.post(f"/c/{B}/screening/deep-tissue-massage?lang={lang}", data=tell_centre_answers()),
        "proceed": client.post(f"/c/{A}/screening/back-massage?lang={lang}", data=all_no()),
        # the same client from another form (the Back button): already sent, not refused
        "already sent": client.post(f"/c/{B}/screening/back-massage?lang={lang}",
                                    data={**shared, "nonce": "n-3-" + "x" * 16}),
        "limited": client.post(f"/c/{B}/screening/back-massage?lang={lang}",
                               data={**shared, "name": "Bea", "nonce": "n-2-" + "x" * 16}),
    }
    assert pages["already sent"].status_code == 200 and "data-reference" in pages["already sent"].text
    assert pages["limited"].status_code == 429
    english = _english_phrases()
    for name, response in pages.items():
        assert f'<html lang="{lang}"' in response.text, name
        left = sorted(p for p in english if p in response.text)
        assert left == [], f"{name} in {lang} still shows English: {left}"


def test_the_prefixed_pages_and_evaluate_with_a_centre_screen_with_that_centres_rules(make_app, rules_copy):
    from test_centre_rules import PREGNANT, add_centre
    add_centre(rules_copy)                               # centre-prudent: every pregnancy means consult
    client = make_app(RULES_DIR=str(rules_copy)).test_client()
    answers = {k: v for k, v in PREGNANT.items() if v}
    for centre, expected in [(A, "tell_centre"), ("centre-prudent", "consult_professional")]:
        assert outcome(client.post(f"/c/{centre}/screening/back-massage", data=PREGNANT).text) == expected
        body = client.post(EVALUATE, json={"service": "back-massage", "answers": answers, "centre": centre})
        assert body.get_json()["outcome"] == expected and body.get_json()["centre"] == centre
