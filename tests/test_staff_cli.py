"""`screening staff ...`: accounts are made and managed from the command line only."""
import pytest

from screening.store import accounts

LIMITS = {"max_failures": 5, "lock_seconds": 900, "secret": "a test secret"}


def can_log_in(db, email, password):
    return accounts.attempt_login(db, email, password, "10.0.0.1", **LIMITS).staff is not None


def test_a_new_install_has_no_account(db):
    assert db["staff"].count == 0


def test_add_reads_the_password_from_the_first_line_of_stdin(runner, db):
    result = runner.invoke(args=["staff", "add", "Ana@Centre.example", "--name", "Ana Puig", "--role", "admin"],
                           input="a long passphrase\nignored second line\n")
    assert result.exit_code == 0, result.output
    assert "ana@centre.example" in result.output
    staff = accounts.find_staff(db, "ana@centre.example")
    assert (staff["name"], staff["role"], staff["active"]) == ("Ana Puig", "admin", 1)
    assert can_log_in(db, "ana@centre.example", "a long passphrase")
    assert "a long passphrase" not in result.output


def test_add_makes_a_plain_staff_account_by_default(runner, db):
    assert runner.invoke(args=["staff", "add", "ben@centre.example"], input="a long passphrase\n").exit_code == 0
    assert accounts.find_staff(db, "ben@centre.example")["role"] == "staff"


@pytest.mark.parametrize("args, stdin, message", [
    (["not-an-email"], "a long passphrase\n", "not an email address"),
    (["ana@centre.example"], "short\n", "at least 8 characters"),
    (["ana@centre.example"], "x" * 300 + "\n", "at most 256 characters"),
    (["ana@centre.example"], "", "No password"),
    (["ana@centre.example", "--role", "owner"], "a long passphrase\n", "role must be one of: staff, admin"),
])
def test_add_refuses_bad_input_with_a_clean_message(runner, db, args, stdin, message):
    result = runner.invoke(args=["staff", "add", *args], input=stdin)
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert db["staff"].count == 0


def test_add_refuses_an_email_that_already_has_an_account(runner, db, make_staff):
    make_staff(email="ana@centre.example", password="the first password")
    result = runner.invoke(args=["staff", "add", "ANA@centre.example"], input="another passphrase\n")
    assert result.exit_code == 1 and "already exists" in result.output
    assert db["staff"].count == 1
    assert can_log_in(db, "ana@centre.example", "the first password")


def test_list_shows_each_account_and_its_state_but_no_hash(runner, db, make_staff):
    make_staff(email="ana@centre.example", role="admin", name="Ana Puig")
    make_staff(email="ben@centre.example")
    accounts.deactivate(db, "ben@centre.example")
    result = runner.invoke(args=["staff", "list"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split("\t")[:4] == ["ana@centre.example", "Ana Puig", "admin", "active"]
    assert lines[1].split("\t")[3] == "inactive"
    assert "argon2" not in result.output


def test_deactivate_stops_logins_and_ends_sessions(runner, db, make_staff):
    staff = make_staff(email="ana@centre.example")
    token = accounts.attempt_login(db, staff["email"], staff["password"], "10.0.0.1", **LIMITS).token
    result = runner.invoke(args=["staff", "deactivate", "ana@centre.example"])
    assert result.exit_code == 0
    assert accounts.load_session(db, token, idle_minutes=30, session_hours=10) is None
    assert not can_log_in(db, staff["email"], staff["password"])


def test_reset_password_replaces_the_password_and_ends_sessions(runner, db, make_staff):
    staff = make_staff(email="ana@centre.example")
    token = accounts.attempt_login(db, staff["email"], staff["password"], "10.0.0.1", **LIMITS).token
    result = runner.invoke(args=["staff", "reset-password", "ana@centre.example"], input="a fresh passphrase\n")
    assert result.exit_code == 0, result.output
    assert accounts.load_session(db, token, idle_minutes=30, session_hours=10) is None
    assert not can_log_in(db, staff["email"], staff["password"])
    assert can_log_in(db, staff["email"], "a fresh passphrase")


def test_reset_password_refuses_a_short_password_and_keeps_the_old_one(runner, db, make_staff):
    staff = make_staff(email="ana@centre.example")
    result = runner.invoke(args=["staff", "reset-password", "ana@centre.example"], input="short\n")
    assert result.exit_code == 1 and "at least 8 characters" in result.output
    assert can_log_in(db, staff["email"], staff["password"])


def test_reset_password_unlocks_a_locked_account(runner, db, make_staff):
    staff = make_staff(email="ana@centre.example")
    for _ in range(5):
        accounts.attempt_login(db, staff["email"], "wrong guess", "10.0.0.1", **LIMITS)
    runner.invoke(args=["staff", "reset-password", "ana@centre.example"], input="a fresh passphrase\n")
    assert accounts.attempt_login(db, staff["email"], "a fresh passphrase", "10.0.0.2", **LIMITS).staff


@pytest.mark.parametrize("command", ["deactivate", "reset-password"])
def test_changes_to_an_unknown_account_fail_cleanly(runner, command):
    result = runner.invoke(args=["staff", command, "nobody@centre.example"], input="a fresh passphrase\n")
    assert result.exit_code == 1 and "no account with that email" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["add", "list", "deactivate", "reset-password"])
def test_each_command_has_help_with_an_example(runner, command):
    result = runner.invoke(args=["staff", command, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output and f"screening staff {command}" in result.output


@pytest.fixture
def terminal(monkeypatch):
    """Make the command believe it talks to a person at a terminal (the runner still types for them)."""
    from types import SimpleNamespace

    from screening import cli
    monkeypatch.setattr(cli, "sys", SimpleNamespace(stdin=SimpleNamespace(isatty=lambda: True)))


def test_at_a_terminal_the_password_is_asked_twice_and_hidden(runner, db, terminal):
    result = runner.invoke(args=["staff", "add", "ana@centre.example"], input="a long passphrase\na long passphrase\n")
    assert result.exit_code == 0, result.output
    assert "Password again" in result.output and "a long passphrase" not in result.output
    assert can_log_in(db, "ana@centre.example", "a long passphrase")


def test_at_a_terminal_two_different_passwords_create_nothing(runner, db, terminal):
    result = runner.invoke(args=["staff", "add", "ana@centre.example"], input="a long passphrase\nanother one\n")
    assert result.exit_code == 1 and "The two passwords differ" in result.output
    assert db["staff"].count == 0
