"""A Host header Werkzeug cannot read is the client's mistake: a 400 with the normal headers, on
every route, never a 500 (the error page used to call url_for without a URL adapter)."""
import logging

import pytest

from tests.test_route_guard import sample_url

# Werkzeug refuses these: empty labels, a label over 63 characters
BAD_HOSTS = ["a..b", "a" * 64 + ".example.org", "..", "."]


def every_route(app, submission):
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield method, sample_url(rule, submission, centre="exemple-barcelona")


def assert_plain_400(response):
    assert response.status_code == 400
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" in response.headers
    if response.is_json:
        assert response.get_json()["error"] == "bad_request"
    else:
        assert b"Host header" in response.data and b"Traceback" not in response.data


@pytest.mark.parametrize("host", BAD_HOSTS)
def test_a_host_werkzeug_refuses_is_a_400_on_every_route(make_app, make_submission, host, caplog):
    app = make_app(WTF_CSRF_ENABLED=True)
    client = app.test_client()
    submission = make_submission()
    caplog.set_level(logging.ERROR)
    for method, url in every_route(app, submission):
        response = client.open(url, method=method, headers={"Host": host})
        assert_plain_400(response), (method, url)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("host", BAD_HOSTS)
def test_a_forwarded_host_werkzeug_refuses_is_a_400_behind_a_proxy(make_app, make_submission, host, caplog):
    app = make_app(WTF_CSRF_ENABLED=True, PROXY_COUNT=1)
    client = app.test_client()
    submission = make_submission()
    caplog.set_level(logging.ERROR)
    for method, url in every_route(app, submission):
        response = client.open(url, method=method, headers={"X-Forwarded-Host": host, "X-Forwarded-For": "10.0.0.1"})
        assert_plain_400(response), (method, url)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_readable_host_still_gets_the_pages(client):
    assert client.get("/healthz", headers={"Host": "screening.example.org:8443"}).status_code == 200
    page = client.get("/", headers={"Host": "xn--bcher-kva.example"})
    assert page.status_code == 200 and b'href="/static/style.css"' in page.data
