"""Staff accounts, sessions and the login throttle, at the storage level (screening/store/accounts.py)."""
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher

from screening.store import accounts

LIMITS = {"max_failures": 3, "lock_seconds": 900, "secret": "a test secret"}
TIMEOUTS = {"idle_minutes": 30, "session_hours": 10}


def ago(**delta):
    return (datetime.now(UTC) - timedelta(**delta)).isoformat(timespec="microseconds")


def test_password_is_stored_as_argon2id_never_in_clear(db, make_staff):
    staff = make_staff(password="a quiet secret phrase")
    stored = db.execute("SELECT password_hash FROM staff WHERE id = ?", [staff["id"]]).fetchone()[0]
    assert stored.startswith("$argon2id$")
    assert "a quiet secret phrase" not in stored
    assert "password_hash" not in staff


@pytest.mark.parametrize("email, password, role, code", [
    ("not-an-email", "long enough pw", "staff", "bad_email"),
    ("a b@centre.example", "long enough pw", "staff", "bad_email"),
    ("ana@centre.example", "short", "staff", "short_password"),
    ("ana@centre.example", "x" * 257, "staff", "long_password"),
    ("ana@centre.example", "long enough pw", "owner", "bad_role"),
])
def test_it_refuses_invalid_accounts(db, email, password, role, code):
    with pytest.raises(accounts.AccountError) as e:
        accounts.create_staff(db, email=email, password=password, role=role, centre="exemple-barcelona")
    assert e.value.code == code
    assert db["staff"].count == 0


def test_emails_are_unique_whatever_their_case(db, make_staff):
    make_staff(email="Ana@Centre.example")
    with pytest.raises(accounts.AccountError) as e:
        make_staff(email="ana@centre.EXAMPLE")
    assert e.value.code == "duplicate"
    assert accounts.find_staff(db, "ANA@centre.example")["email"] == "ana@centre.example"


def test_right_password_starts_a_session_that_loads_the_account(db, make_staff):
    staff = make_staff(role="admin", second_factor=False)
    result = accounts.attempt_login(db, staff["email"].upper(), staff["password"], "10.0.0.1", **LIMITS)
    assert result.staff["id"] == staff["id"] and result.token and not result.pending
    assert accounts.load_session(db, result.token, **TIMEOUTS) == {
        "id": staff["id"], "email": staff["email"], "name": staff["name"], "role": "admin",
        "centre": "exemple-barcelona", "second_factor": False}


def test_with_a_second_factor_the_right_password_starts_a_pending_session_only(db, make_staff):
    staff = make_staff(role="admin")
    result = accounts.attempt_login(db, staff["email"], staff["password"], "10.0.0.1", **LIMITS)
    assert result.pending and result.token and result.device is None
    assert accounts.load_session(db, result.token, **TIMEOUTS) is None


def test_the_token_itself_is_not_stored(db, make_staff):
    staff = make_staff()
    token = accounts.attempt_login(db, staff["email"], staff["password"], "10.0.0.1", **LIMITS).token
    ids = [row[0] for row in db.execute("SELECT id FROM staff_sessions")]
    assert ids == [accounts.session_id(token)] and token not in ids


@pytest.mark.parametrize("case", ["wrong password", "unknown email", "inactive", "too long", "empty"])
def test_every_kind_of_wrong_login_is_refused(db, make_staff, case):
    staff = make_staff()
    email, password = staff["email"], staff["password"]
    if case == "wrong password":
        password = "not the password"
    elif case == "unknown email":
        email = "nobody@centre.example"
    elif case == "inactive":
        accounts.deactivate(db, email)
    elif case == "too long":
        password = staff["password"] + "x" * 300
    else:
        password = ""
    result = accounts.attempt_login(db, email, password, "10.0.0.1", **LIMITS)
    assert result.staff is None and result.token is None and not result.locked
    assert db["staff_sessions"].count == 0


def test_failed_logins_are_audited_with_the_email_but_never_the_password(db, make_staff):
    staff = make_staff()
    accounts.attempt_login(db, staff["email"], "hunter2-secret-guess", "10.0.0.1", **LIMITS)
    rows = list(db["audit_log"].rows)
    assert [(r["action"], r["detail"]) for r in rows] == [("login_failed", staff["email"])]
    assert "hunter2" not in repr(rows)


def test_the_account_locks_after_the_limit_even_for_the_right_password(db, make_staff):
    staff = make_staff()
    for n in range(3):
        assert not accounts.attempt_login(db, staff["email"], "wrong guess", f"10.0.0.{n}", **LIMITS).locked
    result = accounts.attempt_login(db, staff["email"], staff["password"], "10.0.0.9", **LIMITS)
    assert result.locked and result.staff is None
    assert db["staff_sessions"].count == 0


def test_attempts_while_locked_do_not_extend_the_lock(db, make_staff):
    staff = make_staff()
    for _ in range(3):
        accounts.attempt_login(db, staff["email"], "wrong guess", "10.0.0.1", **LIMITS)
    for _ in range(5):
        accounts.attempt_login(db, staff["email"], "wrong guess", "10.0.0.1", **LIMITS)
    assert db.execute("SELECT count(*) FROM login_failures WHERE key = ?",
                      [accounts.account_key(staff["id"])]).fetchone()[0] == 3


def test_the_lock_ends_when_the_failures_are_older_than_the_lock_time(db, make_staff):
    staff = make_staff()
    for _ in range(3):
        accounts.attempt_login(db, staff["email"], "wrong guess", "10.0.0.1", **LIMITS)
    db.execute("UPDATE login_failures SET at = at - 901")
    assert accounts.attempt_login(db, staff["email"], staff["password"], "10.0.0.1", **LIMITS).staff


def test_one_address_guessing_many_accounts_is_locked_too(db, make_staff):
    staff = make_staff()
    for n in range(3):
        accounts.attempt_login(db, f"guess{n}@centre.example", "wrong guess", "10.6.6.6", **LIMITS)
    assert accounts.attempt_login(db, staff["email"], staff["password"], "10.6.6.6", **LIMITS).locked
    assert accounts.attempt_login(db, staff["email"], staff["password"], "10.0.0.1", **LIMITS).staff


def test_a_successful_login_clears_the_account_failures(db, make_staff):
    staff = make_staff()
    for _ in range(2):
        accounts.attempt_login(db, staff["email"], "wrong guess", "10.0.0.1", **LIMITS)
    assert accounts.attempt_login(db, staff["email"], staff["password"], "10.0.0.2", **LIMITS).staff
    for _ in range(2):
        accounts.attempt_login(db, staff["email"], "wrong guess", "10.0.0.3", **LIMITS)
    assert accounts.attempt_login(db, staff["email"], staff["password"], "10.0.0.4", **LIMITS).staff


def test_failures_are_counted_before_the_password_is_checked(db, make_staff, monkeypatch):
    """A guess still being hashed already counts, so parallel guesses cannot pass the limit."""
    staff = make_staff()
    seen = []

    def spy(password_hash, password):
        seen.append(db.execute("SELECT count(*) FROM login_failures").fetchone()[0])
        return False
    monkeypatch.setattr(accounts, "verify_password", spy)
    accounts.attempt_login(db, staff["email"], "wrong guess", "10.0.0.1", **LIMITS)
    assert seen == [2]      # one row for the account, one for the address


def test_logins_rehash_a_password_made_with_old_parameters(db, make_staff, monkeypatch):
    staff = make_staff()     # made with the tests' cheap parameters
    monkeypatch.setattr(accounts, "hasher", PasswordHasher(time_cost=2, memory_cost=16, parallelism=1))
    old = db.execute("SELECT password_hash FROM staff").fetchone()[0]
    assert accounts.attempt_login(db, staff["email"], staff["password"], "10.0.0.1", **LIMITS).staff
    new = db.execute("SELECT password_hash FROM staff").fetchone()[0]
    assert new != old and "t=2" in new
    assert accounts.attempt_login(db, staff["email"], staff["password"], "10.0.0.1", **LIMITS).staff


def test_a_session_idle_too_long_is_gone(db, make_staff):
    staff = make_staff()
    token = accounts.attempt_login(db, staff["email"], staff["password"], "10.0.0.1", **LIMITS).token
    db.execute("UPDATE staff_sessions SET last_seen_at = ?", [ago(minutes=31)])
    assert accounts.load_session(db, token, **TIMEOUTS) is None
    assert db["staff_sessions"].count == 0


def test_a_session_older_than_the_absolute_limit_is_gone_even_if_busy(db, make_staff):
    staff = make_staff()
    token = accounts.attempt_login(db, staff["email"], staff["password"], "10.0.0.1", **LIMITS).token
    db.execute("UPDATE staff_sessions SET created_at = ?, last_seen_at = ?", [ago(hours=10, seconds=1), ago()])
    assert accounts.load_session(db, token, **TIMEOUTS) is None


def test_last_seen_is_written_at_most_once_a_minute(db, make_staff):
    staff = make_staff()
    token = accounts.attempt_login(db, staff["email"], staff["password"], "10.0.0.1", **LIMITS).token
    recent = ago(seconds=30)
    db.execute("UPDATE staff_sessions SET last_seen_at = ?", [recent])
    accounts.load_session(db, token, **TIMEOUTS)
    assert db.execute("SELECT last_seen_at FROM staff_sessions").fetchone()[0] == recent
    db.execute("UPDATE staff_sessions SET last_seen_at = ?", [ago(minutes=2)])
    accounts.load_session(db, token, **TIMEOUTS)
    assert db.execute("SELECT last_seen_at FROM staff_sessions").fetchone()[0] > recent


def test_deactivation_and_password_reset_end_every_session_of_the_account(db, make_staff):
    ana, ben = make_staff(), make_staff()
    tokens = [accounts.attempt_login(db, ana["email"], ana["password"], "10.0.0.1", **LIMITS).token
              for _ in range(2)]
    ben_token = accounts.attempt_login(db, ben["email"], ben["password"], "10.0.0.1", **LIMITS).token
    accounts.reset_password(db, ana["email"], "a brand new passphrase")
    assert [accounts.load_session(db, t, **TIMEOUTS) for t in tokens] == [None, None]
    token = accounts.attempt_login(db, ana["email"], "a brand new passphrase", "10.0.0.1", **LIMITS).token
    accounts.deactivate(db, ana["email"])
    assert accounts.load_session(db, token, **TIMEOUTS) is None
    assert accounts.load_session(db, ben_token, **TIMEOUTS)["id"] == ben["id"]


def test_unknown_or_garbage_tokens_load_nobody(db):
    for token in (None, "", "x" * 500, accounts.new_token()):
        assert accounts.load_session(db, token, **TIMEOUTS) is None


def test_purge_removes_only_expired_sessions(db, make_staff):
    staff = make_staff()
    live, old = (accounts.attempt_login(db, staff["email"], staff["password"], "10.0.0.1", **LIMITS).token
                 for _ in range(2))
    db.execute("UPDATE staff_sessions SET last_seen_at = ? WHERE id = ?", [ago(hours=1), accounts.session_id(old)])
    assert accounts.purge_expired_sessions(db, **TIMEOUTS) == 1
    assert accounts.load_session(db, live, **TIMEOUTS)
