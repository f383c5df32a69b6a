"""Retention said and kept per centre (issue 16, item 3): an installation default
(SCREENING_RETENTION_DAYS) and a centre's own `retention_days`; the app deletes expired screenings
by itself once a day, once for the whole installation; the client's consent, the result and the
staff dashboard say how long; `screening purge --expired` does the same from cron."""
from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from conftest import CENTRE, all_no, database_of, edit, logged_in_client
from test_engines import no_errors, together

from screening.core.rules import RulesError
from screening.store import db as dbmod
from screening.store import retention
from screening.web import upkeep

DAY = timedelta(days=1)


def shared(**overrides):
    return all_no(**{"share": "yes", "name": "Ana Client", "contact": "ana@example.org", "consent": "yes",
                     "nonce": "r" * 24, **overrides})


def age(app, reference: str, days: float) -> None:
    """Make one stored screening `days` days old."""
    conn = dbmod.connect(database_of(app))
    try:
        with dbmod.immediate(conn):
            conn.execute("UPDATE submissions SET created_at = ? WHERE reference = ?",
                         [(datetime.now(UTC) - timedelta(days=days)).isoformat(timespec="microseconds"), reference])
    finally:
        conn.close()


def references(app) -> set[str]:
    conn = dbmod.connect(database_of(app))
    try:
        return {r for (r,) in conn.execute("SELECT reference FROM submissions").fetchall()}
    finally:
        conn.close()


@pytest.fixture
def short_rules(rules_copy):
    """The shipped rules with the centre keeping its screenings 30 days."""
    edit(rules_copy, f"centres/{CENTRE}.toml", "# retention_days = 180", "retention_days = 30")
    return rules_copy


# --- the claim: once a day, across workers and servers ---------------------------------------------------

def test_the_day_is_claimed_once_and_again_the_next_day(conn):
    start = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    assert retention.claim_daily(conn, now=start)
    assert not retention.claim_daily(conn, now=start + timedelta(hours=23, minutes=59))
    assert retention.claim_daily(conn, now=start + DAY + timedelta(seconds=1))
    assert not retention.claim_daily(conn, now=start + DAY + timedelta(hours=1))


def test_one_claim_a_day_however_many_workers_ask_at_once(conn_target):
    claimed = no_errors(together(conn_target, lambda conn, i: retention.claim_daily(conn)))
    assert claimed.count(True) == 1, claimed


# --- what goes ---------------------------------------------------------------------------------------------

def test_each_centre_keeps_its_own_number_of_days_and_the_others_the_installation_s(conn):
    ids = {}
    for centre, days_old in (("short", 31), ("short", 29), ("other", 31), ("other", 366), ("gone", 366)):
        ref = dbmod.store_screening(conn, nonce=f"n-{centre}-{days_old}", centre=centre, resend_within=0, record={
            "service": "back-massage", "outcome": "proceed", "answers": {"fever": "no"}, "fired_rules": [],
            "suggestions": [], "rules_version": "t", "locale": "en", "name": "Ana", "contact": "ana@example.org",
            "consent_at": dbmod.now()}).reference
        with dbmod.immediate(conn):
            conn.execute("UPDATE submissions SET created_at = ? WHERE reference = ?",
                         [(datetime.now(UTC) - timedelta(days=days_old)).isoformat(timespec="microseconds"), ref])
        ids[(centre, days_old)] = ref

    deleted = retention.purge_expired(conn, {"short": 30, "other": 365}, 365)

    assert deleted == {"gone": 1, "other": 1, "short": 1}
    left = {r for (r,) in conn.execute("SELECT reference FROM submissions").fetchall()}
    assert left == {ids[("short", 29)], ids[("other", 31)]}
    # each centre's trail says how many went and after how many days
    trail = conn.execute("SELECT centre, detail FROM audit_log WHERE action = 'purge' ORDER BY centre").fetchall()
    assert trail == [("gone", "1 submissions older than 365 days"), ("other", "1 submissions older than 365 days"),
                     ("short", "1 submissions older than 30 days")]
    # the daily run writes nothing where nothing went (else a line a day in every trail)
    assert retention.purge_expired(conn, {"short": 30, "other": 365}, 365, audit_none=False) == {"other": 0,
                                                                                                 "short": 0}
    assert conn.execute("SELECT count(*) FROM audit_log WHERE action = 'purge'").fetchone()[0] == 3


def test_the_app_purges_by_itself_once_a_day_when_the_clock_moves(make_app, short_rules):
    app = make_app(RULES_DIR=str(short_rules), RETENTION_DAYS=365)     # no purge started by the posts
    client = app.test_client()
    old = client.post("/screening/back-massage", data=shared(nonce="o" * 24)).text
    young = client.post("/screening/back-massage", data=shared(nonce="y" * 24, name="Bea")).text
    refs = sorted(references(app))
    assert len(refs) == 2 and old != young
    age(app, refs[0], 31)
    age(app, refs[1], 29)
    now = datetime.now(UTC)

    assert upkeep.run_daily(app, now=now) == {CENTRE: 1}
    assert references(app) == {refs[1]}
    age(app, refs[1], 31)
    assert upkeep.run_daily(app, now=now + timedelta(hours=12)) is None      # the day is done
    assert references(app) == {refs[1]}
    assert upkeep.run_daily(app, now=now + DAY + timedelta(minutes=1)) == {CENTRE: 1}
    assert references(app) == set()


def wait_for_upkeep():
    for thread in threading.enumerate():
        if thread.name == upkeep.THREAD_NAME:
            thread.join(30)


def test_a_request_starts_the_day_s_purge_in_the_background(make_app):
    app = make_app(AUTO_PURGE=True, RETENTION_DAYS=10)
    client = app.test_client()
    client.post("/screening/back-massage", data=shared())
    (reference,) = references(app)
    age(app, reference, 11)
    wait_for_upkeep()       # the post itself may have started the day's run before the row was old
    app.extensions["screening.upkeep"].next_look = 0.0      # as if an hour had gone by
    conn = dbmod.connect(database_of(app))
    with dbmod.immediate(conn):
        conn.execute("DELETE FROM maintenance")             # and a day: nobody has claimed it yet
    conn.close()

    assert client.get("/").status_code == 200
    wait_for_upkeep()

    assert references(app) == set()


def test_without_auto_purge_nothing_is_deleted_by_requests(make_app):
    app = make_app(AUTO_PURGE=False, RETENTION_DAYS=10)
    client = app.test_client()
    client.post("/screening/back-massage", data=shared())
    (reference,) = references(app)
    age(app, reference, 11)
    client.get("/")
    wait_for_upkeep()
    assert references(app) == {reference}
    assert "screening.upkeep" not in app.extensions


# --- the centre's file -------------------------------------------------------------------------------------

@pytest.mark.sqlite_only
@pytest.mark.parametrize("value", ["0", "36501", '"90"', "30.5", "true", "-1"])
def test_a_bad_retention_in_a_centre_file_stops_the_app_naming_it(make_app, rules_copy, value):
    edit(rules_copy, f"centres/{CENTRE}.toml", "# retention_days = 180", f"retention_days = {value}")
    with pytest.raises(RulesError) as refused:
        make_app(RULES_DIR=str(rules_copy))
    assert "retention_days" in str(refused.value) and f"{CENTRE}.toml" in str(refused.value)


# --- what clients and staff read -------------------------------------------------------------------------

@pytest.mark.parametrize("lang, consent, kept", [
    ("en", "It keeps them for 30 days at most, then deletes them", "The centre keeps them for 30 days"),
    ("ca", "Les guarda 30 dies com a màxim i després les esborra", "El centre les guarda 30 dies"),
    ("es", "Las guarda 30 días como máximo y después las borra", "El centro las guarda 30 días")])
def test_the_consent_and_the_result_say_how_long_the_centre_keeps_the_answers(make_app, short_rules, lang,
                                                                              consent, kept):
    client = make_app(RULES_DIR=str(short_rules)).test_client()
    form = client.get(f"/screening/back-massage?lang={lang}").text
    assert consent in " ".join(form.split())
    result = client.post("/screening/back-massage", data=shared()).text
    assert kept in result and 'data-kept-days="30"' in result
    checked_only = client.post("/screening/back-massage", data=all_no()).text
    assert "data-kept-days" not in checked_only      # nothing was kept


def test_without_its_own_retention_a_centre_says_the_installation_s(make_app):
    client = make_app(RETENTION_DAYS=90).test_client()
    assert "It keeps them for 90 days at most" in " ".join(client.get("/screening/back-massage").text.split())


def test_the_dashboard_says_how_long_screenings_are_kept(make_app, short_rules, make_staff):
    app = make_app(RULES_DIR=str(short_rules))
    staff = logged_in_client(app, make_staff)
    page = staff.get("/staff/").text
    assert 'data-kept-days="30"' in page and "kept for 30 days after they are sent" in page


# --- from cron ---------------------------------------------------------------------------------------------

def test_purge_expired_from_the_command_line(make_app, short_rules):
    app = make_app(RULES_DIR=str(short_rules))
    client = app.test_client()
    client.post("/screening/back-massage", data=shared(nonce="a" * 24))
    client.post("/screening/back-massage", data=shared(nonce="b" * 24, name="Bea"))
    first, second = sorted(references(app))
    age(app, first, 31)

    result = app.test_cli_runner().invoke(args=["purge", "--expired"])

    assert result.exit_code == 0, result.output
    assert f"Deleted 1 submissions of centre {CENTRE} older than 30 days." in result.output
    assert references(app) == {second}


@pytest.mark.parametrize("args", [[], ["--expired", "--older-than", "30"], ["--expired", "--centre", CENTRE]])
def test_purge_takes_either_a_number_of_days_or_expired(runner, args):
    result = runner.invoke(args=["purge", *args])
    assert result.exit_code == 2
    assert "--older-than" in result.output
