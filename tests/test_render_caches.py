"""Work done once instead of per request (issue 8) must not change what a client gets: binding the
questionnaire loads no WTForms catalog, page gettext follows the language even when it changes
mid-request, and the language switch of public pages is cached but never a staff query."""
from flask import render_template_string
from flask_babel import force_locale

from screening.web import forms, i18n

SLUG = "decontracting-back-massage"


def test_binding_the_questionnaire_asks_gettext_for_nothing(app):
    rules = app.extensions["screening.rules"]
    with app.test_request_context(f"/screening/{SLUG}?lang=ca", method="POST", data={"fever": "no"}):
        from flask import request
        form = forms.questionnaire_form_class(rules)()
        assert form.fever.data == "no"
        # Flask-WTF keeps the WTForms catalog on the request once a label or message needed it
        assert getattr(request, "wtforms_translations", None) is None


def test_page_gettext_follows_a_language_forced_mid_request(app):
    with app.test_request_context("/?lang=ca"):
        page = "{{ _('Your result') }}"
        catalan = render_template_string(page)
        with force_locale("es"):
            spanish = render_template_string(page)
        assert render_template_string(page) == catalan
    with app.test_request_context("/?lang=en"):
        assert render_template_string(page) == "Your result"
    assert len({catalan, spanish, "Your result"}) == 3


def test_public_switch_links_are_cached_and_staff_queries_never(client):
    i18n._public_links.cache_clear()
    first = client.get(f"/services/{SLUG}?lang=es").get_data(as_text=True)
    second = client.get(f"/services/{SLUG}?lang=es").get_data(as_text=True)
    assert f'href="/services/{SLUG}?lang=ca"' in first and first == second
    assert i18n._public_links.cache_info().hits >= 1
    cached = i18n._public_links.cache_info().currsize
    client.get("/staff/?status=new&lang=ca")
    assert i18n._public_links.cache_info().currsize == cached
