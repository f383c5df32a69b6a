"""Two app servers on one PostgreSQL database, under load and faults (issue 14, item 8).

Each test starts a PostgreSQL cluster of its own (postgres_server.postgres_cluster) and two gunicorn
servers on it (servers_helpers.app_servers: gthread, 2 workers of 4 threads each, separate instance
folders, one SCREENING_SECRET_KEY and SCREENING_DATABASE_URL), and talks to them over loopback as
browsers do, CSRF on. What the app shows is checked against what PostgreSQL holds, read straight
from the database at the end. "Acknowledged" means a 200 page showing exactly one reference.
Everything started is stopped in `finally` (the context managers); loops are bounded in count and
time. Figures (shares, 503s, time to serve again) are printed for `pytest -s`.
"""
import threading
import time
from collections import Counter

import pytest
from helpers_server import (
    FORM,
    Browser,
    form_fields,
    hidden_value,
    kill_group,
    problems_in,
    references,
    share_once,
    shared_answers,
    wait_for,
)
from postgres_server import create_database, postgres_cluster
from servers_helpers import Load, ProxiedBrowser, app_servers, on, stored_rows

from screening.store import accounts
from screening.store import db as dbmod

pytestmark = pytest.mark.slow

CENTRE = "exemple-barcelona"         # the one centre rules/ ships: the form's screenings belong to it
PASSWORD = "correct horse battery staple"
RECOVERY_TIMEOUT = 20                # seconds PostgreSQL's return may take to reach every server (a bound)


@pytest.fixture
def cluster():
    with postgres_cluster() as server:
        yield server


@pytest.fixture
def database_url(cluster):
    return create_database(cluster.url, "screening")


@pytest.fixture
def servers(tmp_path, tmp_path_factory, database_url):
    """app_servers on this test's database, with the rules' proof handed on from test to test."""
    proof = tmp_path_factory.getbasetemp() / "servers-rules-proven"
    return lambda **env: app_servers(tmp_path, database_url, env=env, proof=proof)


def add_staff(database_url, email):
    """A staff account, made on the database directly as `screening staff add` makes it."""
    conn = dbmod.connect(database_url)
    try:
        return accounts.create_staff(conn, email=email, password=PASSWORD, centre=CENTRE, name="Sam Staff")
    finally:
        conn.close()


def log_in(browser, email, password):
    """The login form as a browser sends it (its CSRF token first); the POST's response."""
    page = browser.get("/staff/login")
    return browser.post("/staff/login", {"email": email, "password": password,
                                         "csrf_token": hidden_value(page.text, "csrf_token")})


def searched(browser, words):
    """The dashboard's search as staff make it (issue 16): the words posted with the page's CSRF
    token, then the page the redirect names by the search's id; the first answer that is not that
    (a 503 while the database is away) is returned as it is."""
    page = browser.get("/staff/")
    if page.status != 200:
        return page
    posted = browser.post("/staff/", {"q": words, "csrf_token": hidden_value(page.text, "csrf_token")})
    return browser.get(posted.headers["Location"]) if posted.status == 303 else posted


def check_stored(database_url, load):
    """Every reference shown is stored, once, and nothing is stored that no visitor sent."""
    rows = stored_rows(database_url)
    stored = {reference for reference, _ in rows}
    nonces = Counter(nonce for _, nonce in rows)
    assert set(load.acknowledged) <= stored, f"lost: {set(load.acknowledged) - stored}"
    assert len(stored) == len(rows)                              # each reference once
    assert set(nonces) <= load.attempted                         # nothing nobody sent
    assert max(nonces.values()) == 1                             # nothing twice
    return rows


def test_sixteen_clients_sharing_across_two_servers_store_every_reference_shown_exactly_once(
        servers, database_url):
    """Each visitor fetches the form from one server and posts it to the other (its CSRF token
    and nonce cross servers), alternating: every share is acknowledged, and the database holds
    exactly the references shown."""
    per_client = 8
    with servers() as (a, b):
        load = Load([a.url, b.url], clients=16, per_client=per_client, cross=True)
        for t in load.threads:           # every visitor sends all its shares
            t.join(timeout=120)
        load.finish()
        logs = [a.log(), b.log()]

    print(f"\nshares acknowledged: {len(load.acknowledged)} "
          f"(through A {load.count(a.url)}, through B {load.count(b.url)})")
    assert load.unexpected == [] and load.unavailable == [] and load.dropped == 0
    assert len(load.acknowledged) == 16 * per_client
    assert load.count(a.url) == load.count(b.url) == 8 * per_client
    rows = check_stored(database_url, load)
    assert {reference for reference, _ in rows} == set(load.acknowledged)    # and nothing else stored
    assert [problems_in(log) for log in logs] == [[], []]


def test_staff_logged_in_on_one_server_see_screenings_sent_through_the_other(servers, database_url):
    with servers() as (a, b):
        add_staff(database_url, "ana@centre.example")
        staff = Browser(a.url)
        assert log_in(staff, "ana@centre.example", PASSWORD).status == 302
        through_b = share_once(Browser(b.url), 1)
        through_a = share_once(Browser(a.url), 2)
        assert through_b.status == through_a.status == 200
        [ref_b], [ref_a] = references(through_b.text), references(through_a.text)

        on_a = staff.get("/staff/")
        # the same session cookie on the other server: sessions live in the database, not a server
        on_b = on(staff, b.url).get("/staff/")
        logs = [a.log(), b.log()]

    assert on_a.status == on_b.status == 200
    assert {ref_a, ref_b} <= set(references(on_a.text))
    assert {ref_a, ref_b} <= set(references(on_b.text))
    assert [problems_in(log) for log in logs] == [[], []]


def test_the_share_limit_counts_the_shares_of_both_servers(servers, database_url):
    """Ten shares from one client address at once, five through each server, with a limit of 3
    an hour: 3 are stored in all (each server alone would have stored 3). Another address still
    shares through both."""
    limit, tries = 3, 10
    env = {"SCREENING_SHARE_LIMIT_PER_HOUR": str(limit), "SCREENING_PROXY_COUNT": "1"}
    with servers(**env) as (a, b):
        urls = [a.url, b.url]
        ready = threading.Barrier(tries)
        answers = []
        lock = threading.Lock()

        def visitor(i):
            browser = ProxiedBrowser(urls[i % 2], "203.0.113.7")
            fields = form_fields(browser.get(FORM).text, shared_answers(i))
            ready.wait(timeout=30)          # all posts at once, half through each server
            response = browser.post(FORM, fields)
            with lock:
                answers.append((urls[i % 2], response.status, references(response.text)))

        threads = [threading.Thread(target=visitor, args=(i,)) for i in range(tries)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        others = [share_once(ProxiedBrowser(url, "203.0.113.8"), 100 + n) for n, url in enumerate(urls)]
        logs = [a.log(), b.log()]

    statuses = Counter(status for _, status, _ in answers)
    shown = [refs[0] for _, status, refs in answers if status == 200 and len(refs) == 1]
    print(f"\nshare limit {limit}: answers {dict(statuses)}, "
          f"stored through A {sum(1 for u, s, _ in answers if s == 200 and u == a.url)}, "
          f"through B {sum(1 for u, s, _ in answers if s == 200 and u == b.url)}")
    assert statuses == {200: limit, 429: tries - limit}
    assert all(refs == [] for _, status, refs in answers if status == 429)
    assert [r.status for r in others] == [200, 200]
    stored = {reference for reference, _ in stored_rows(database_url)}
    assert stored == set(shown) | {references(r.text)[0] for r in others}
    # the refused shares are in the log as refusals, nothing worse
    assert [problems_in(log) for log in logs] == [[], []]


def test_the_login_throttle_counts_the_failures_of_both_servers(servers, database_url):
    """With 3 failures allowed, wrong passwords from three addresses through both servers lock
    the account on both, even for the right password; an account with two failures (one through
    each server) is not locked. Each failure comes from its own address, so only the account's
    count can lock it."""
    env = {"SCREENING_LOGIN_MAX_FAILURES": "3", "SCREENING_PROXY_COUNT": "1"}
    with servers(**env) as (a, b):
        add_staff(database_url, "ana@centre.example")
        add_staff(database_url, "joan@centre.example")
        failures = [log_in(ProxiedBrowser(url, f"198.51.100.{n}"), "ana@centre.example", "wrong guess").status
                    for n, url in enumerate([a.url, b.url, a.url], start=1)]
        failures += [log_in(ProxiedBrowser(url, f"198.51.100.{n}"), "joan@centre.example", "wrong guess").status
                     for n, url in enumerate([a.url, b.url], start=4)]
        locked = [log_in(ProxiedBrowser(url, f"198.51.100.{n}"), "ana@centre.example", PASSWORD).status
                  for n, url in enumerate([b.url, a.url], start=6)]
        not_locked = log_in(ProxiedBrowser(b.url, "198.51.100.8"), "joan@centre.example", PASSWORD).status
        logs = [a.log(), b.log()]

    assert failures == [200] * 5                 # the form again, with the one refusal message
    assert locked == [429, 429]
    assert not_locked == 302
    assert [problems_in(log) for log in logs] == [[], []]


def test_one_server_killed_with_sigkill_mid_load_loses_nothing_shown_and_the_other_keeps_serving(
        servers, database_url):
    """16 visitors alternate between the servers; server A (arbiter and workers) gets SIGKILL
    in the middle of the traffic. Every reference either server showed is stored, and B goes on
    acknowledging shares (30 more at least)."""
    with servers() as (a, b):
        load = Load([a.url, b.url], clients=16)
        try:
            wait_for(lambda: load.count(a.url) >= 10 and load.count(b.url) >= 10, timeout=60,
                     what="10 acknowledged shares through each server")
            kill_group(a)
            killed_at = time.monotonic()
            wait_for(lambda: load.count(b.url, since=killed_at) >= 30, timeout=60,
                     what="30 shares through B after the kill")
        finally:
            load.finish()
        health_b = Browser(b.url).get("/healthz").status
        log_b = b.log()

    before = sum(1 for at, _ in load.acknowledged.values() if at <= killed_at)
    print(f"\nshares acknowledged before the kill: {before}, through B after it: "
          f"{load.count(b.url, since=killed_at)}, requests dropped: {load.dropped}")
    assert load.unexpected == [] and load.unavailable == []
    assert load.dropped >= 1                     # visitors did meet the dead server
    assert health_b == 200
    check_stored(database_url, load)
    assert problems_in(log_b) == []


def test_postgres_stopped_immediately_mid_load_gives_503s_and_both_servers_serve_again_by_themselves(
        servers, cluster, database_url):
    """16 visitors alternate between the servers; PostgreSQL is stopped in `immediate` mode (as a
    crash: no checkpoint, open transactions cut) and started again on the same data. While it is
    down, shares get the 503 page (no reference, "Nothing was stored"), never a 500; every
    reference shown is stored; without restarting either server, both answer /healthz and
    acknowledge shares again. A staff member logged in before the stop gets the 503 page too (so
    does a login), and finds a share from before the stop with the same session once it is back."""
    with servers() as (a, b):
        urls = [a.url, b.url]
        add_staff(database_url, "ana@centre.example")
        staff = Browser(a.url)
        assert log_in(staff, "ana@centre.example", PASSWORD).status == 302
        load = Load(urls, clients=16)
        try:
            wait_for(lambda: load.count(a.url) >= 10 and load.count(b.url) >= 10, timeout=60,
                     what="10 acknowledged shares through each server")
            cluster.stop("immediate")
            stopped_at = time.monotonic()
            acknowledged_before = dict(load.acknowledged)
            wait_for(lambda: all(load.count_unavailable(url) >= 5 for url in urls), timeout=30,
                     what="503s from both servers while PostgreSQL is down")
            staff_while_down = [on(staff, url).get("/staff/").status for url in urls]
            login_while_down = log_in(Browser(b.url), "ana@centre.example", PASSWORD).status
            cluster.start()
            started_at = time.monotonic()
            health = {}
            for url in urls:
                wait_for(lambda u=url: Browser(u).get("/healthz").status == 200, timeout=RECOVERY_TIMEOUT,
                         what=f"/healthz 200 from {url}")
                health[url] = time.monotonic() - started_at
            served_again_at = time.monotonic()
            # one share acknowledged before the stop, looked up by its reference on each server
            earlier = min(acknowledged_before, key=lambda ref: acknowledged_before[ref][0])
            # each server's workers reconnect on their own (a worker whose pool is still backing off
            # answers 503 a moment longer than the one /healthz reached): ask until one answers
            staff_after = []
            for url in urls:
                found = []
                wait_for(lambda u=url, f=found: f.append(searched(on(staff, u), earlier)) or
                         f[-1].status != 503, timeout=RECOVERY_TIMEOUT, what=f"the staff search on {url}")
                staff_after.append(found[-1])
            wait_for(lambda: all(load.count(url, since=served_again_at) >= 10 for url in urls), timeout=60,
                     what="10 shares through each server after PostgreSQL is back")
        finally:
            load.finish()
        logs = [a.log(), b.log()]

    statuses = Counter(status for (_, status), n in load.statuses.items() for _ in range(n))
    while_down = sum(1 for at, _ in load.unavailable if at < started_at)
    print(f"\nacknowledged before the stop: {len(acknowledged_before)}, 503s while down: "
          f"{while_down} (and {len(load.unavailable) - while_down} after the start, before the servers reconnected), "
          f"down for {started_at - stopped_at:.1f} s, "
          f"/healthz 200 again after {health[a.url]:.1f} s (A) and {health[b.url]:.1f} s (B), "
          f"answers {dict(statuses)}")
    assert load.unexpected == []                 # 200 or the 503 page, never a 500
    assert 500 not in statuses and load.dropped == 0
    assert all(load.count_unavailable(url) >= 5 for url in urls)
    assert staff_while_down == [503, 503] and login_while_down == 503
    assert [r.status for r in staff_after] == [200, 200]
    assert [references(r.text) for r in staff_after] == [[earlier], [earlier]]
    check_stored(database_url, load)             # every reference shown, before the stop and after
    for log in logs:
        assert "Traceback" not in log and "Worker failed to boot" not in log and "WORKER TIMEOUT" not in log
