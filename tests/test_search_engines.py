"""What search engines may index: the landing page, the service pages and the directory (a centre
wants to be found), each with a meta description in the page's language; never a questionnaire, a
result, an error or a staff page (they hold or lead to a client's answers)."""
import html
import re

import pytest
from conftest import CENTRE, SLUGS, all_no

LANGUAGES = ["en", "ca", "es"]


def robots(page: str) -> list[str]:
    return re.findall(r'<meta name="robots" content="([^"]*)">', page)


def description(page: str) -> str | None:
    found = re.findall(r'<meta name="description" content="([^"]*)">', page)
    assert len(found) <= 1, found
    return html.unescape(found[0]) if found else None


def centre_name(app) -> str:
    return app.extensions["screening.centres"][CENTRE].name


@pytest.mark.parametrize("path", ["/", f"/c/{CENTRE}/", "/centres", *(f"/services/{slug}" for slug in SLUGS)])
def test_the_pages_a_centre_wants_found_are_indexable(client, path):
    for lang in LANGUAGES:
        page = client.get(f"{path}?lang={lang}")
        assert page.status_code == 200
        assert robots(page.text) == ["index, follow"], (path, lang)
        assert description(page.text), (path, lang)


def test_the_landing_page_describes_what_the_centre_offers_in_each_language(client, app, rules):
    texts = set()
    for lang in LANGUAGES:
        text = description(client.get(f"/?lang={lang}").text)
        assert text.startswith(centre_name(app)), text
        for service in rules.services:
            assert service.name.get(lang) in text, (lang, service.slug)
        texts.add(text.replace(centre_name(app), ""))
    assert len(texts) == 3          # the sentence around the names is translated too


@pytest.mark.parametrize("slug", SLUGS)
def test_a_service_page_is_described_by_the_services_summary(client, rules, slug):
    for lang in LANGUAGES:
        page = client.get(f"/services/{slug}?lang={lang}").text
        assert description(page) == rules.service(slug).summary.get(lang)


def test_the_directory_is_described_by_its_centres_but_a_search_is_not_indexed(client, app):
    texts = {description(client.get(f"/centres?lang={lang}").text) for lang in LANGUAGES}
    assert len(texts) == 3 and all(centre_name(app) in text for text in texts)
    for query in ("q=barcelona", "service=back-massage", "q=nothing-matches-this"):
        assert robots(client.get(f"/centres?{query}").text) == ["noindex"], query


def test_questionnaire_result_error_and_staff_pages_are_never_indexed(client, staff_client, make_submission):
    pages = {
        "questionnaire": client.get("/screening/back-massage"),
        "refused form": client.post("/screening/back-massage", data={"share": "no"}),
        "result": client.post("/screening/back-massage", data=all_no(share="no")),
        "unknown service": client.get("/services/no-such-massage"),
        "unknown centre": client.get("/c/no-such-centre/"),
        "staff login": client.get("/staff/login"),
        "staff dashboard": staff_client.get("/staff/"),
        "staff detail": staff_client.get(f"/staff/submissions/{make_submission()['id']}"),
    }
    assert {name: page.status_code for name, page in pages.items()} == {
        **{name: 200 for name in pages}, "refused form": 422, "unknown service": 404, "unknown centre": 404}
    for name, page in pages.items():
        assert robots(page.text) == ["noindex"], name
