"""PostgreSQL outages as a client and an operator see them (issue 14, item 3): an app started while
the server is down starts and answers 503; a server stopped under a running app gives 503s, never a
500, after a short wait; once the server is back the app serves again by itself, without a restart.
Only a malformed URL or a missing secret key stop the app, with a message naming the setting and
never the password.

Each test starts a PostgreSQL server of its own (tests/postgres_server.py), so that stopping it
disturbs no other test."""
from __future__ import annotations

import logging
import re
import time

import pytest
from conftest import CENTRE, STAFF_PASSWORD, all_no, login
from postgres_server import create_database, postgres_cluster

from screening import config, create_app
from screening.store import accounts, engine_postgres
from screening.store import db as dbmod

SLUG = "back-massage"
SHARE = all_no(share="yes", name="Ana Client", contact="ana@example.org", consent="yes")
KEY = "outage-test-secret-key-" + "x" * 32
RECOVERY_SECONDS = 60      # how long a test polls for the app to serve again (the pool retries with a backoff)


def reference_in(page: str) -> str | None:
    found = re.search(r'data-reference>([^<]+)<', page)
    return found.group(1) if found else None


def app_on(url: str, **settings):
    return create_app({"TESTING": True, "DATABASE_URL": url, "SECRET_KEY": KEY, "WTF_CSRF_ENABLED": False,
                       "SHARE_LIMIT_PER_HOUR": 0, "DATABASE_WAIT_SECONDS": 1, **settings})


def share(client):
    return client.post(f"/screening/{SLUG}", data=dict(SHARE, name=f"Ana {time.monotonic_ns()}"))


def until_served(client) -> int:
    """Poll /healthz until it answers 200 (or RECOVERY_SECONDS pass); the last status seen.
    Every answer meanwhile must be a 503."""
    deadline = time.monotonic() + RECOVERY_SECONDS
    while True:
        status = client.get("/healthz").status_code
        assert status in (200, 503), status
        if status == 200 or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


@pytest.fixture
def cluster():
    with postgres_cluster() as server:
        yield server


@pytest.mark.slow      # a server of its own, stopped and started: several seconds
def test_an_app_started_while_the_server_is_down_answers_503_then_serves_once_it_is_up(cluster, caplog):
    # empty: no table yet. A password the server (trust on loopback) never asks for, which no log
    # line may show
    url = create_database(cluster.url, "screening").replace("postgres@", "postgres:s3cret-pw@")
    assert "s3cret-pw@" in url
    cluster.stop("fast")
    caplog.set_level(logging.INFO)
    try:
        app = app_on(url)                    # does not raise: gunicorn would stop every worker
        client = app.test_client()
        assert client.get("/healthz").status_code == 503
        refused = share(client)
        assert refused.status_code == 503
        assert "Nothing was stored" in refused.text and reference_in(refused.text) is None
        assert "Traceback" not in refused.text

        cluster.start()
        assert until_served(client) == 200          # the same app, not rebuilt
        shared = share(client)
        assert shared.status_code == 200 and reference_in(shared.text)
        # the schema was made on that first request after the server came back
        conn = dbmod.connect(url)
        try:
            assert dbmod.find_by_reference(conn, reference_in(shared.text)) is not None
        finally:
            conn.close()
        assert "cannot be reached at start-up" in caplog.text      # the operator is told why the 503s
        assert "s3cret-pw" not in caplog.text
    finally:
        engine_postgres.close_pools(url)


@pytest.mark.slow
def test_a_server_stopped_under_a_running_app_gives_503s_then_the_app_serves_again_by_itself(cluster):
    url = create_database(cluster.url, "screening")
    try:
        app = app_on(url)
        client = app.test_client()
        assert client.get("/healthz").status_code == 200
        before = reference_in(share(client).text)
        assert before
        conn = dbmod.connect(url)
        try:
            accounts.create_staff(conn, email="sam@centre.example", password=STAFF_PASSWORD, name="Sam",
                                  role="staff", centre=CENTRE)
        finally:
            conn.close()
        staff = app.test_client()
        assert login(staff, "sam@centre.example", STAFF_PASSWORD).status_code == 302
        assert before in staff.get("/staff/").text

        cluster.stop("immediate")                    # as a crash: connections die, no goodbye
        assert client.get("/healthz").status_code == 503
        refused = share(client)
        assert refused.status_code == 503 and reference_in(refused.text) is None
        assert client.post("/staff/login", data={"email": "a@centre.example",
                                                 "password": "x" * 12}).status_code == 503
        assert staff.get("/staff/").status_code == 503

        cluster.start()
        assert until_served(client) == 200
        after = share(client)
        assert after.status_code == 200 and reference_in(after.text) not in (None, before)
        # the receptionist's session outlived the outage: both screenings are on the dashboard
        dashboard = staff.get("/staff/")
        assert dashboard.status_code == 200
        assert before in dashboard.text and reference_in(after.text) in dashboard.text
        # what was shown before the crash was stored: it is found after it
        conn = dbmod.connect(url)
        try:
            assert dbmod.find_by_reference(conn, before) is not None
        finally:
            conn.close()
    finally:
        engine_postgres.close_pools(url)


@pytest.mark.parametrize("url", ["postgresql://[::1", "postgresql://screening:s3cret-pw@[::1/screening",
                                 "postgresql://screening:s3cret-pw@db.example.org:port/screening",
                                 "postgresql://screening:s3cret-pw@db.example.org:5432,db2:54x/screening",
                                 "postgresql://screening:s3cret-pw%zz@db.example.org/screening"])
def test_a_malformed_url_stops_the_app_naming_the_setting_not_the_password(url):
    with pytest.raises(config.SettingsError) as stopped:
        create_app({"TESTING": True, "DATABASE_URL": url, "SECRET_KEY": KEY})
    message = str(stopped.value)
    assert "SCREENING_DATABASE_URL" in message
    assert "s3cret-pw" not in message


def test_a_url_without_a_secret_key_stops_the_app_naming_the_key_not_the_password(monkeypatch):
    monkeypatch.delenv("SCREENING_SECRET_KEY", raising=False)
    with pytest.raises(config.SettingsError) as stopped:
        create_app({"TESTING": True, "DATABASE_URL": "postgresql://screening:s3cret-pw@127.0.0.1:1/screening"})
    message = str(stopped.value)
    assert "SCREENING_SECRET_KEY" in message
    assert "s3cret-pw" not in message
