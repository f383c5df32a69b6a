"""Pages built from parts rendered once (web/parts.py) are byte-for-byte the plain render.

Every page the parts build is rendered a second time, in the same request, by Flask's own
render_template with the same values, and the two must be equal: for every centre, route form
(`/...` and `/c/<centre>/...`), service, language, outcome, share state (check only, sent, already
sent, changed answers, over the limit, storage unavailable), a summer and a winter date, the
language switch on a result, and every questionnaire (blank, with errors, "answer again", expired).
Along the way, one client's text that looks like a mark or a template is written as it is, and
another client never sees it.
"""
from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import flask
import pytest
from conftest import CENTRE, add_centre, all_no
from jinja2 import ChoiceLoader, DictLoader

from screening.core import engine
from screening.store import db as dbmod
from screening.web import parts, public

B = "centre-canarias"             # a second centre, an hour behind the first (its zone has other names)
SUMMER = datetime(2026, 7, 14, 10, 5, tzinfo=ZoneInfo("UTC"))
WINTER = datetime(2026, 1, 14, 10, 5, tzinfo=ZoneInfo("UTC"))
# answers that give each outcome on some service; each is tried on every service
ANSWER_SETS = [all_no(), all_no(preferred_intensity="light"), all_no(ongoing_diagnosis="yes"),
               all_no(intense_pain="yes"), all_no(fever="yes"), all_no(radiating_pain="not_sure"),
               all_no(fever="yes", intense_pain="yes", notes="{{ csrf_token() }} {% block outcome %}")]
# a client's text that looks like a template, a block or a mark of parts.py: it must be written as it is
NAME = "Anna {{ name }} {% block title %}part:title"
CONTACT = "a{{x}}@example.org"


@pytest.fixture
def app(make_app, rules_copy):
    add_centre(rules_copy, B, name="Centre Canàries", timezone="Atlantic/Canary")
    return make_app(RULES_DIR=str(rules_copy), DEFAULT_CENTRE=CENTRE)


@pytest.fixture
def compared(monkeypatch):
    """Every parts.page() also rendered by render_template; the list of (template, parts, plain)."""
    pairs, real = [], parts.page

    def both(name, *, static, client, dynamic, key=()):
        html = real(name, static=static, client=client, dynamic=dynamic, key=key)
        pairs.append((name, html, flask.render_template(name, **static, **client)))
        return html
    monkeypatch.setattr(parts, "page", both)
    return pairs


def assert_equal(pairs):
    assert pairs, "no page was built from parts"
    for name, html, plain in pairs:
        if html != plain:
            at = next((i for i, (a, b) in enumerate(zip(html, plain, strict=False)) if a != b),
                      min(len(html), len(plain)))
            pytest.fail(f"{name} differs from the plain render at {at}:\n{html[at - 200:at + 200]!r}\n---\n"
                        f"{plain[at - 200:at + 200]!r}")


def freeze(monkeypatch, moment):
    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return moment.astimezone(tz)
    monkeypatch.setattr(public, "datetime", Frozen)


def routes(app):
    """(prefix, centre) for every route form: the default centre un-prefixed and under /c/, B under /c/."""
    return [("", CENTRE), (f"/c/{CENTRE}", CENTRE), (f"/c/{B}", B)]


def services_of(app, slug):
    return list(app.extensions["screening.centres"][slug].services)


def outcome(html):
    return re.search(r'data-outcome="([a-z_]+)"', html).group(1)


def test_every_result_and_share_state_equals_the_plain_render(app, compared, monkeypatch):
    client, builds, build = app.test_client(), [], parts._build

    def counted(app, template, dynamic, static, client):
        pieces = build(app, template, dynamic, static, client)
        builds.append(pieces)
        return pieces
    monkeypatch.setattr(parts, "_build", counted)
    seen, nonce = set(), 0
    for moment in (SUMMER, WINTER):
        freeze(monkeypatch, moment)
        for prefix, centre in routes(app):
            for slug in services_of(app, centre):
                url = f"{prefix}/screening/{slug}"
                for lang in ("ca", "es", "en"):
                    for answers in ANSWER_SETS:
                        nonce += 1
                        check = client.post(f"{url}?lang={lang}", data={**answers, "share": "no",
                                                                      "nonce": f"nonce-{nonce:012d}"})
                        assert check.status_code == 200
                        seen.add((slug, outcome(check.get_data(as_text=True))))
                        # a person of their own each time: the same person's same screening is "already sent"
                        shared = {**answers, "share": "yes", "name": f"{NAME} {nonce}", "contact": CONTACT,
                                  "consent": "yes", "nonce": f"share-{nonce:012d}"}
                        sent = client.post(f"{url}?lang={lang}", data=shared)
                        again = client.post(f"{url}?lang={lang}", data=shared)
                        changed = client.post(f"{url}?lang={lang}", data={**shared, "notes": "other words"})
                        page = sent.get_data(as_text=True)
                        assert "data-withdrawal-code>" in page
                        assert "data-withdrawal-code-shown" in again.get_data(as_text=True)
                        assert "changed answers" in changed.get_data(as_text=True) or lang != "en"
                        # the language switch on a result: the same result from the page's signed copy
                        copy = re.search(r'name="result_copy" value="([^"]+)"', page).group(1)
                        switched = client.post(f"{url}?lang=es", data={"result_copy": copy, "switch_language": "es"})
                        assert switched.status_code == 200
                        # the client's own text is written as it is, escaped, never read as a template
                        if answers["notes"]:
                            assert answers["notes"] in page
                        # "Answer again" brings the questionnaire back with the name as it was typed
                        back = client.post(url, data={"result_copy": copy, "edit": "yes"}).get_data(as_text=True)
                        assert f'value="Anna {{{{ name }}}} {{% block title %}}part:title {nonce}"' in back
    for state, error in (("limited", dbmod.ShareLimitReached(60)), ("unavailable", dbmod.StorageError("disk full"))):
        def refuse(*args, error=error, **kwargs):
            raise error
        monkeypatch.setattr(dbmod, "store_screening", refuse)
        for prefix, centre in routes(app):
            for slug in services_of(app, centre):
                for lang in ("ca", "es", "en"):
                    for answers in ANSWER_SETS[:4]:
                        nonce += 1
                        response = client.post(f"{prefix}/screening/{slug}?lang={lang}",
                                               data={**answers, "share": "yes", "name": NAME, "contact": CONTACT,
                                                     "consent": "yes", "nonce": f"refused-{nonce:09d}"})
                        assert response.status_code == (429 if state == "limited" else 503)
                        assert f"data-share-{state}" in response.get_data(as_text=True)
    # each service met each outcome it can give, and the shipped rules give all three somewhere
    assert {o for _s, o in seen} == {"proceed", "tell_centre", "consult_professional"}
    assert_equal(compared)
    # and the static parts were reused: each built once, for several pages (a variant per outcome
    # and share state, language, service, centre and route form)
    assert builds and len(builds) == len(set(builds)) < len(compared) / 5


def test_every_questionnaire_and_service_page_equals_the_plain_render(app, compared):
    client = app.test_client()
    for prefix, centre in routes(app):
        for slug in services_of(app, centre):
            for lang in ("ca", "es", "en"):
                for url in (f"{prefix}/services/{slug}?lang={lang}", f"{prefix}/screening/{slug}?lang={lang}"):
                    assert client.get(url).status_code == 200
                form = f"{prefix}/screening/{slug}?lang={lang}"
                typed = all_no(notes="{{ 7 * 7 }}", share="yes", name=NAME, contact="not an address", consent="")
                del typed["fever"]
                errors = client.post(form, data=typed)
                assert errors.status_code == 422 and "{{ 7 * 7 }}" in errors.get_data(as_text=True)
                switched = client.post(form, data={**typed, "errors_shown": "yes", "switch_language": "ca"})
                assert switched.status_code == 422
                assert client.post(form, data={**all_no(), "edit": "yes", "nonce": "n" * 20}).status_code == 200
    assert_equal(compared)


def test_an_expired_questionnaire_equals_the_plain_render(make_app, rules_copy, compared):
    add_centre(rules_copy, B, name="Centre Canàries", timezone="Atlantic/Canary")
    app = make_app(RULES_DIR=str(rules_copy), DEFAULT_CENTRE=CENTRE, WTF_CSRF_ENABLED=True)
    client = app.test_client()
    for prefix in ("", f"/c/{B}"):
        response = client.post(f"{prefix}/screening/decontracting-back-massage",
                               data={**all_no(notes="{% endblock %}"), "csrf_token": "expired"})
        assert response.status_code == 400 and "{% endblock %}" in response.get_data(as_text=True)
    assert_equal(compared)


def test_two_clients_never_see_each_others_parts(app):
    """The second client's page comes from the first one's static parts and holds nothing of theirs."""
    client = app.test_client()
    url = "/screening/decontracting-back-massage"
    first = client.post(url, data={**all_no(intense_pain="yes"), "share": "yes", "name": "Primera Persona",
                                   "contact": "primera@example.org", "consent": "yes", "nonce": "a" * 20})
    second = client.post(url, data={**all_no(fever="yes"), "share": "yes", "name": "Segona Persona",
                                    "contact": "segona@example.org", "consent": "yes", "nonce": "b" * 20})
    one, two = first.get_data(as_text=True), second.get_data(as_text=True)
    reference = re.search(r"data-reference>([^<]+)<", one).group(1)
    code = re.search(r"data-withdrawal-code>([^<]+)<", one).group(1)
    for secret in (reference, code, 'data-answer="intense_pain">Yes', 'data-reason="intense_pain"'):
        assert secret in one and secret not in two
    assert "Primera" not in two and "primera@" not in two
    assert outcome(one) == outcome(two) == "consult_professional"      # the same static parts
    assert len(app.extensions["screening.parts"].items) == 1


def test_a_mark_typed_by_a_client_is_written_as_it_is(app):
    """Even the exact mark parts.py cuts its static parts at is only text in a client block."""
    mark = f"\x00{parts._MARK}:outcome\x00"
    with app.test_request_context("/screening/decontracting-back-massage"):
        app.preprocess_request()
        rs = public.ruleset()
        service = rs.service("decontracting-back-massage")
        decision = engine.evaluate(rs, service, engine.normalize(rs, service, all_no(notes="x"))[0])
        # the notes as no form lets through (a NUL), to reach the page's own answers list
        decision = replace(decision, answers={**decision.answers, "notes": f"{mark} {{{{ x }}}}"})
        kwargs = {"decision": decision, "made_at": SUMMER, "sent": None, "not_sent": None,
                  "again": {"nonce": "n" * 20, "share": "no"}}
        html = public._render_result(service, **kwargs)
        assert html.count(mark) == 1 and f'<dd data-answer="notes">{mark} {{{{ x }}}}</dd>' in html
        assert html == public._render_result(service, **kwargs)


def test_a_static_part_that_reads_a_clients_value_is_refused(app):
    app.jinja_env.loader = ChoiceLoader([DictLoader({
        "leaky.html": "{% block a %}{{ secret }}{% endblock %}<p>{{ secret|length }}</p>",
        "tokens.html": "<p>{{ csrf_token() }}</p>{% block a %}{% endblock %}"}), app.jinja_env.loader])
    with app.test_request_context("/"):
        for name in ("leaky.html", "tokens.html"):
            with pytest.raises(parts.NotStatic):
                parts.page(name, static={}, client={"secret": "Joan's answers"}, dynamic=("a",))
        with pytest.raises(parts.NotStatic):
            parts.page("leaky.html", static={}, client={"secret": "x"}, dynamic=("b",))   # no such block
    assert not app.extensions["screening.parts"].items


def test_the_parts_are_bounded_in_bytes_and_drop_the_least_recently_used():
    piece = parts._size(("x" * 40,))              # an ASCII text of 40 characters, with its header
    store = parts._Store(2 * piece + 10)
    store.put("a", ("x" * 40,))
    store.put("b", ("y" * 40,))
    assert store.get("a")                         # a is now the most recently used
    store.put("c", ("z" * 40,))
    assert store.get("b") is None and store.get("a") and store.get("c") and store.size == 2 * piece
    store.put("huge", ("w" * 1000,))              # larger than the whole store: never kept
    assert store.get("huge") is None and store.size == 2 * piece
    # a page with a "✓" takes two bytes a character: counted as it is in memory
    assert parts._size(("✓" * 40,)) > parts._size(("x" * 40,)) + 30
