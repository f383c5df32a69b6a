"""Public sharing is limited per client address (issue 6, item 12): counted in the database so the
limit holds across workers, keyed by a keyed hash of the address (never the address), answered
with a 429 that still shows the result, says nothing was sent and how to reach the centre."""
import re

import pytest
from conftest import all_no
from helpers_server import Browser, form_fields, gunicorn_server, references

from screening import config, create_app
from screening.store import db as dbmod

FORM = "/screening/back-massage"
LIMITED = "Your answers were not sent to the centre"


def shared(i, **overrides):
    """A complete shared screening from visitor `i` (its own nonce)."""
    return all_no(**{"share": "yes", "name": f"Client {i}", "contact": f"client{i}@example.org", "consent": "yes",
                     "nonce": f"nonce-{i:04d}-" + "x" * 16, **overrides})


def reference(html):
    found = re.findall(r"data-reference>([^<]+)<", html)
    return found[0] if found else None


def count(db, table="submissions"):
    return db.execute(f"select count(*) from {table}").fetchone()[0]


def post(client, data, addr="203.0.113.7", **headers):
    return client.post(FORM, data=data, environ_base={"REMOTE_ADDR": addr}, headers=headers)


@pytest.fixture
def two_apps(make_app):
    """Two app instances (as two gunicorn workers) on one database file, limit 3 an hour."""
    return make_app(SHARE_LIMIT_PER_HOUR=3), make_app(SHARE_LIMIT_PER_HOUR=3)


def test_the_limit_holds_across_two_app_instances_on_one_database(two_apps, db):
    clients = [app.test_client() for app in two_apps]
    responses = [post(clients[i % 2], shared(i, fever="yes")) for i in range(6)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429, 429, 429]
    assert all(reference(r.text) for r in responses[:3])
    assert count(db) == 3 and count(db, "outbox") == 0
    refused = responses[3]
    # the result is still there (a fever still says consult), with why nothing was sent and what to do
    assert re.findall(r'data-outcome="([a-z_]+)"', refused.text) == ["consult_professional"]
    assert reference(refused.text) is None and "data-reference" not in refused.text
    assert LIMITED in refused.text and "nothing was stored" in refused.text
    assert "Tell the centre about it when you book, by phone, by e-mail or in person" in refused.text
    assert 0 < int(refused.headers["Retry-After"]) <= 3600


def test_checking_only_is_never_limited(two_apps, db):
    client = two_apps[0].test_client()
    for i in range(3):
        assert post(client, shared(i)).status_code == 200
    for i in range(5):
        response = post(client, all_no(share="no"))
        assert response.status_code == 200 and LIMITED not in response.text
    assert count(db) == 3


def test_another_address_is_not_held_back_and_a_refresh_still_shows_its_reference(two_apps, db):
    client = two_apps[1].test_client()
    first = post(client, shared(0))
    for i in range(1, 3):
        post(client, shared(i))
    assert post(client, shared(3)).status_code == 429
    again = post(client, shared(0))            # the first form refreshed: nothing new to store
    assert again.status_code == 200 and reference(again.text) == reference(first.text)
    assert post(client, shared(4), addr="198.51.100.9").status_code == 200
    assert count(db) == 4


def test_the_table_holds_a_keyed_hash_never_the_address_and_ipv6_counts_per_64(two_apps, db):
    client = two_apps[0].test_client()
    for i, addr in enumerate(["2001:db8:1:2::1", "2001:db8:1:2::abcd", "2001:db8:1:2:ffff::9"]):
        assert post(client, shared(i), addr=addr).status_code == 200
    assert post(client, shared(3), addr="2001:db8:1:2::77").status_code == 429
    assert post(client, shared(4), addr="2001:db8:1:3::1").status_code == 200       # another /64
    keys = [k for (k,) in db.execute("select key from share_attempts").fetchall()]
    assert len(keys) == 4 and len(set(keys)) == 2
    assert all(re.fullmatch(r"[0-9a-f]{32}", k) for k in keys)
    assert not any("2001" in k or "db8" in k for k in keys)


def test_behind_a_proxy_each_forwarded_client_counts_apart_and_without_one_the_header_is_ignored(make_app, db):
    proxied = make_app(SHARE_LIMIT_PER_HOUR=1, PROXY_COUNT=1).test_client()
    assert post(proxied, shared(0), **{"X-Forwarded-For": "192.0.2.1"}).status_code == 200
    assert post(proxied, shared(1), **{"X-Forwarded-For": "192.0.2.2"}).status_code == 200
    assert post(proxied, shared(2), **{"X-Forwarded-For": "192.0.2.1"}).status_code == 429
    direct = make_app(SHARE_LIMIT_PER_HOUR=1).test_client()
    assert post(direct, shared(3), addr="192.0.2.50", **{"X-Forwarded-For": "192.0.2.3"}).status_code == 200
    # a client cannot escape the limit by inventing X-Forwarded-For when no proxy sets it
    assert post(direct, shared(4), addr="192.0.2.50", **{"X-Forwarded-For": "192.0.2.4"}).status_code == 429


def test_attempts_older_than_an_hour_no_longer_count_though_still_in_the_table(two_apps, db):
    """Old attempts are not deleted by every share (tests/test_share_path.py: by one in
    SHARE_PRUNE_EVERY, and by the daily purge); the count reads the window's rows only."""
    client = two_apps[0].test_client()
    for i in range(3):
        post(client, shared(i))
    assert post(client, shared(3)).status_code == 429
    with dbmod.immediate(db):
        db.execute("update share_attempts set at = at - 3601")
    for i in range(4, 7):
        assert post(client, shared(i)).status_code == 200
    assert post(client, shared(7)).status_code == 429
    assert count(db, "share_attempts") == 6 and count(db) == 6


def test_the_default_is_twenty_an_hour():
    assert config.defaults("/tmp")["SHARE_LIMIT_PER_HOUR"] == 20


@pytest.mark.slow
def test_four_gunicorn_workers_store_exactly_the_limit(tmp_path):
    path = tmp_path / "limit.db"
    statuses, refs = [], []
    with gunicorn_server(tmp_path, database=path, workers=4, env={"SCREENING_SHARE_LIMIT_PER_HOUR": "5"}) as server:
        for i in range(12):
            browser = Browser(server.url)
            page = browser.get(FORM)
            response = browser.post(FORM, form_fields(page.text, {k: v for k, v in shared(i).items() if k != "nonce"}))
            statuses.append(response.status)
            refs += references(response.text)
    assert statuses == [200] * 5 + [429] * 7
    conn = dbmod.connect(path)
    try:
        stored = {r for (r,) in conn.execute("select reference from submissions").fetchall()}
    finally:
        conn.close()
    assert stored == set(refs) and len(stored) == 5


@pytest.mark.parametrize("value", ["twenty", -1, 2.5, True, None, 100_001])
def test_a_limit_that_is_not_a_whole_number_stops_the_app_at_start_naming_the_variable(make_app, value):
    with pytest.raises(config.SettingsError, match="SCREENING_SHARE_LIMIT_PER_HOUR"):
        make_app(SHARE_LIMIT_PER_HOUR=value)


def test_a_limit_in_the_environment_that_is_not_a_number_stops_the_app(tmp_path, monkeypatch):
    monkeypatch.setenv("SCREENING_SHARE_LIMIT_PER_HOUR", "20/h")
    with pytest.raises(config.SettingsError, match="SCREENING_SHARE_LIMIT_PER_HOUR: must be a whole number"):
        create_app({"TESTING": True, "SECRET_KEY": "s" * 40, "DATABASE": str(tmp_path / "env.db")})


def test_the_limit_is_read_from_its_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("SCREENING_SHARE_LIMIT_PER_HOUR", "7")
    app = create_app({"TESTING": True, "SECRET_KEY": "s" * 40, "DATABASE": str(tmp_path / "env.db")})
    assert app.config["SHARE_LIMIT_PER_HOUR"] == 7
