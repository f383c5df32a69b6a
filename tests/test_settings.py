"""Settings are checked at start-up: a bad SCREENING_* value, or a variable that is not a setting,
stops the app with a line naming the variable, instead of a 500 on every request later."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import screening
from screening import config, create_app
from screening.config import SettingsError

BIN = Path(sys.executable).parent
PACKAGE = Path(screening.__file__).parent
GOOD_KEY = "k" * 40


# For every setting, values that must be refused, as they would be typed in the environment
# ({tmp} is a folder, {file} a file in it).
BAD = {
    "DATABASE": ["{tmp}", "{file}/screening.db", ":memory:", ""],
    "RULES_DIR": ["{tmp}/no-such-rules", "{file}"],
    "SECRET_KEY": ["too-short-a-key"],
    "MAX_CONTENT_LENGTH": ["64k", "0", "1e12", "65536.5"],
    "SESSION_COOKIE_SECURE": ["yes", "1", "True"],
    "SESSION_COOKIE_HTTPONLY": ["no", "0"],
    "SESSION_COOKIE_SAMESITE": ["Loose", "null", ""],
    "WTF_CSRF_TIME_LIMIT": ["4h", "-1", "true"],
    "STAFF_IDLE_MINUTES": ["30m", "0", "-30", "NaN"],
    "STAFF_SESSION_HOURS": ["ten", "Infinity", "0"],
    "LOGIN_MAX_FAILURES": ["five", "0", "2.5", "false"],
    "LOGIN_LOCK_MINUTES": ["15 minutes", "0"],
    "LOGIN_SLOWDOWN_SECONDS": ["-1", "quarter", "60"],
    "SMTP_HOST": ["smtp://mail.example.org", "mail example org"],
    "SMTP_PORT": ["99999", "0", "smtp"],
    "SMTP_USERNAME": ["ana\nBcc: everyone@example.org"],
    "SMTP_PASSWORD": ["secret\r\nwith a line break"],
    "SMTP_STARTTLS": ["on", "1"],
    "NOTIFY_FROM": ["centre", "a@example.org, b@example.org"],
    "NOTIFY_TO": ["centre@example.org; desk", "centre.example.org", "a@example.org,"],
    "BASE_URL": ["screening.example.org", "ftp://screening.example.org/", "https://"],
    "HSTS": ["1", "enabled"],
    "TIMEZONE": ["Europe/Madird", "Europe", "", "../etc/passwd"],
    "PROXY_COUNT": ["-1", "one", "1000"],
    "SHARE_LIMIT_PER_HOUR": ["twenty", "-1", "2.5", "20/h", "true", "100001"],
    "DEFAULT_CENTRE": ["Exemple Barcelona", "exemple_barcelona", "nowhere"],
    "DATABASE_URL": ["screening.db", "mysql://db.example.org/screening", "postgresql://[::1",
                     "postgresql://db.example.org:port/screening", "sqlite:///tmp/screening.db"],
    "DATABASE_POOL_SIZE": ["0", "eight", "201", "2.5"],
    "DATABASE_WAIT_SECONDS": ["0", "-1", "61", "five"],
    "RETENTION_DAYS": ["0", "a year", "36501", "30.5", "-7"],
    "AUTO_PURGE": ["yes", "1", "off"],
}


def start_with(monkeypatch, tmp_path, env):
    """create_app with these SCREENING_* variables (and a good database and key unless given)."""
    monkeypatch.setenv("SCREENING_DATABASE", str(tmp_path / "settings.db"))
    monkeypatch.setenv("SCREENING_SECRET_KEY", GOOD_KEY)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return create_app({"TESTING": True})


def test_every_setting_has_values_that_this_file_shows_are_refused(tmp_path):
    assert set(BAD) == set(config.defaults(str(tmp_path))), "add bad values for the new setting to BAD above"


@pytest.mark.parametrize("name,value", [(name, value) for name, values in BAD.items() for value in values])
def test_a_bad_value_stops_the_start_with_a_line_naming_the_variable(monkeypatch, tmp_path, name, value):
    (tmp_path / "a-file").write_text("not a folder")
    value = value.format(tmp=tmp_path, file=tmp_path / "a-file")
    with pytest.raises(SettingsError) as refused:
        start_with(monkeypatch, tmp_path, {f"SCREENING_{name}": value})
    assert refused.value.problems == [line for line in str(refused.value).splitlines()]
    assert len(refused.value.problems) == 1
    assert refused.value.problems[0].startswith(f"SCREENING_{name}: ")


@pytest.mark.parametrize("name", ["SECRET_KEY", "SMTP_PASSWORD"])
def test_a_refused_secret_is_not_repeated_in_the_message(monkeypatch, tmp_path, name):
    value = "hunter2-but-short" if name == "SECRET_KEY" else "hunter2\nsecond line"
    with pytest.raises(SettingsError) as refused:
        start_with(monkeypatch, tmp_path, {f"SCREENING_{name}": value})
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize("variable,value,says", [
    ("SCREENING_TIMEZONE", "Europe/Madird", "not a known time zone; did you mean Europe/Madrid?"),
    ("SCREENING_MAX_CONTENT_LENGTH", "64k", "must be a whole number from 16384 to 67108864 (got '64k')"),
    ("SCREENING_STAFF_IDLE_MINUTES", "30m", "must be a number from 1 to 1440 (got '30m')"),
    ("SCREENING_LOGIN_MAX_FAILURES", "five", "must be a whole number from 1 to 100 (got 'five')"),
])
def test_the_values_that_used_to_give_a_500_on_every_request_now_stop_the_start(monkeypatch, tmp_path, variable,
                                                                                value, says):
    with pytest.raises(SettingsError) as refused:
        start_with(monkeypatch, tmp_path, {variable: value})
    assert str(refused.value).startswith(f"{variable}: {says}")


def test_a_mistyped_variable_name_is_refused_with_the_name_it_was_meant_to_be(monkeypatch, tmp_path):
    with pytest.raises(SettingsError) as refused:
        start_with(monkeypatch, tmp_path, {"SCREENING_SESSION_COOKIE_SECRUE": "true"})
    assert str(refused.value) == ("SCREENING_SESSION_COOKIE_SECRUE: not a setting of this app; "
                                  "did you mean SCREENING_SESSION_COOKIE_SECURE?")


def test_a_variable_like_no_setting_is_refused_too(monkeypatch, tmp_path):
    with pytest.raises(SettingsError, match=r"^SCREENING_COLOUR: not a setting of this app \(the README lists"):
        start_with(monkeypatch, tmp_path, {"SCREENING_COLOUR": "blue"})


def test_every_problem_is_listed_at_once(monkeypatch, tmp_path):
    with pytest.raises(SettingsError) as refused:
        start_with(monkeypatch, tmp_path, {"SCREENING_HSTS": "yes", "SCREENING_SMTP_PORT": "smtp",
                                           "SCREENING_TIMEZON": "Europe/Madrid"})
    assert [line.split(":")[0] for line in refused.value.problems] == [
        "SCREENING_TIMEZON", "SCREENING_SMTP_PORT", "SCREENING_HSTS"]


def test_samesite_none_needs_secure_cookies(monkeypatch, tmp_path):
    with pytest.raises(SettingsError, match="^SCREENING_SESSION_COOKIE_SAMESITE: None needs "
                                            "SCREENING_SESSION_COOKIE_SECURE=true"):
        start_with(monkeypatch, tmp_path, {"SCREENING_SESSION_COOKIE_SAMESITE": "None"})
    app = start_with(monkeypatch, tmp_path, {"SCREENING_SESSION_COOKIE_SAMESITE": "None",
                                             "SCREENING_SESSION_COOKIE_SECURE": "true"})
    assert app.config["SESSION_COOKIE_SAMESITE"] == "None"


def test_good_values_are_read_as_their_kind(monkeypatch, tmp_path):
    app = start_with(monkeypatch, tmp_path, {
    "SCREENING_SMTP_PASSWORD": "12345", "SCREENING_SMTP_USERNAME": "true", "SCREENING_SMTP_HOST": "::1",
    "SCREENING_SESSION_COOKIE_SAMESITE": "strict", "SCREENING_STAFF_IDLE_MINUTES": "7.5",
    "SCREENING_LOGIN_MAX_FAILURES": "3", "SCREENING_HSTS": "true", "SCREENING_TIMEZONE": "America/Argentina/Salta",
    "SCREENING_NOTIFY_TO": "desk@centre.example, owner@centre.example", "SCREENING_BASE_URL": "",
    })
    c = app.config
    assert (c["SMTP_PASSWORD"], c["SMTP_USERNAME"], c["SMTP_HOST"]) == ("12345", "true", "::1")  # text stays text
    assert c["SESSION_COOKIE_SAMESITE"] == "Strict"
    assert c["STAFF_IDLE_MINUTES"] == 7.5 and c["LOGIN_MAX_FAILURES"] == 3 and c["HSTS"] is True
    assert c["BASE_URL"] is None                     # empty means none, for an optional text


def test_a_bad_value_given_in_code_is_refused_like_one_from_the_environment(tmp_path):
    with pytest.raises(SettingsError, match="^SCREENING_TIMEZONE: not a known time zone"):
        create_app({"TESTING": True, "SECRET_KEY": GOOD_KEY, "DATABASE": str(tmp_path / "x.db"),
                    "TIMEZONE": "Mars/Olympus_Mons"})


# --- what an operator sees, from a real process ------------------------------------------------------

def clean_env(tmp_path, **settings):
    """The environment of a child process: no SCREENING_* of ours, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCREENING_", "FLASK_"))}
    env.update({"SCREENING_DATABASE": str(tmp_path / "child.db"), "SCREENING_SECRET_KEY": GOOD_KEY, **settings})
    return env


@pytest.mark.slow
def test_gunicorn_stops_at_once_with_the_plain_message(tmp_path):
    env = clean_env(tmp_path, SCREENING_TIMEZONE="Europe/Madird", SCREENING_SESSION_COOKIE_SECRUE="true")
    done = subprocess.run([sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", "127.0.0.1:0",
                           "--no-control-socket", "screening:create_app()"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    lines = (done.stdout + done.stderr).splitlines()
    assert done.returncode != 0 and "App failed to load." in done.stderr   # it stops instead of respawning
    assert ("SCREENING_SESSION_COOKIE_SECRUE: not a setting of this app; "
            "did you mean SCREENING_SESSION_COOKIE_SECURE?") in lines
    assert "SCREENING_TIMEZONE: not a known time zone; did you mean Europe/Madrid? (got 'Europe/Madird')" in lines
    # no traceback through the app's code (when two workers fail at once, gunicorn's master may print
    # one of its own HaltServer while stopping: a known gunicorn behaviour, after our lines)
    assert not any(str(PACKAGE) in line or "SettingsError" in line for line in lines)


@pytest.mark.parametrize("command", [["screening", "staff", "list"], ["flask", "--app", "screening", "routes"]])
def test_the_command_line_prints_the_message_without_a_traceback(tmp_path, command):
    env = clean_env(tmp_path, SCREENING_LOGIN_MAX_FAILURES="five")
    done = subprocess.run([str(BIN / command[0]), *command[1:]], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert "Error: SCREENING_LOGIN_MAX_FAILURES: must be a whole number from 1 to 100 (got 'five')" in done.stderr
    assert "Traceback" not in done.stderr
