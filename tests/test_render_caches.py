"""Work done once instead of per request (issue 8) must not change what a client gets: the form
read without its CSRF field reads exactly what the full form reads, the result page signs no new
token, and caches are kept per rule set."""
import pytest
from conftest import all_no
from helpers_server import hidden_value

from screening import forms
from screening.rules import default_rules_dir, load_rules

SLUG = "decontracting-back-massage"

# posted bodies a client could send, awkward ones included: missing fields, empty values, repeated
# values, a multi question with one, several or no value, sharing half filled in
POSTS = [
    all_no(),
    {},
    {"share": ""},
    all_no(share="yes", name="  Ana ", contact="ana@example.org", consent="yes", nonce="n" * 20),
    all_no(share="yes", consent="no"),
    all_no(share="maybe", consent="0"),
    all_no(tension_areas=["thoracic", "lumbar"], notes="tight\r\nshoulders"),
    all_no(tension_areas=[], pregnant=""),
    {"fever": ["yes", "no"], "tension_areas": "nowhere", "nonce": "short"},
]


def read(form_class, app, data):
    """What the view takes from a form of `form_class` bound to a POST of `data`."""
    with app.test_request_context(f"/screening/{SLUG}", method="POST", data=data):
        form = form_class()
        rules = app.extensions["screening.rules"]
        return (forms.raw_answers(form, rules), forms.share_errors(form),
                [form.share.data, form.name.data, form.contact.data, form.consent.data, form.nonce.data])


@pytest.mark.parametrize("data", POSTS)
def test_the_reader_reads_what_the_full_form_reads(csrf_app, data):
    rules = csrf_app.extensions["screening.rules"]
    reader = forms.questionnaire_reader_class(rules)
    with csrf_app.test_request_context("/"):
        assert "csrf_token" not in [f.name for f in reader(formdata=None)]
    assert read(reader, csrf_app, data) == read(forms.questionnaire_form_class(rules), csrf_app, data)


def test_reader_and_form_classes_are_built_once_per_rule_set():
    rules, other = load_rules(default_rules_dir()), load_rules(default_rules_dir())
    assert forms.questionnaire_reader_class(rules) is forms.questionnaire_reader_class(rules)
    assert forms.questionnaire_reader_class(other) is not forms.questionnaire_reader_class(rules)
    assert forms.questionnaire_reader_class(rules) is not forms.questionnaire_form_class(rules)


def test_a_result_signs_no_token_but_a_form_with_errors_gets_one(csrf_app, monkeypatch):
    client = csrf_app.test_client()
    token = hidden_value(client.get(f"/screening/{SLUG}").get_data(as_text=True), "csrf_token")
    import flask_wtf.csrf as csrf_module
    signed = []
    real = csrf_module.generate_csrf
    monkeypatch.setattr(csrf_module, "generate_csrf", lambda *a, **k: signed.append(1) or real(*a, **k))

    result = client.post(f"/screening/{SLUG}", data=all_no(csrf_token=token, share="no"))
    assert result.status_code == 200 and b"data-outcome" in result.data
    assert signed == []
    with_errors = client.post(f"/screening/{SLUG}", data=all_no(csrf_token=token, share="no", fever=""))
    assert with_errors.status_code == 422
    again = hidden_value(with_errors.get_data(as_text=True), "csrf_token")
    assert again and signed
    # and that token is accepted
    assert client.post(f"/screening/{SLUG}", data=all_no(csrf_token=again, share="no")).status_code == 200
