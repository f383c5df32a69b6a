"""Settings: every SCREENING_* variable with its default and its check, and the secret key
shared by all workers.

Each setting is declared once, in `settings()`: its default and what a valid value is. `load()`
reads the environment, refuses a SCREENING_* variable that is not a setting (a typo would
otherwise be ignored without a word), checks every value and raises SettingsError with one
`SCREENING_X: problem` line per problem, so that a bad value stops the app at start-up instead of
giving a 500 on every request.
"""
from __future__ import annotations

import difflib
import math
import os
import re
import secrets
import tempfile
import zoneinfo
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from .core.rules import default_rules_dir

try:
    # gunicorn prints an AppImportError as one plain line and stops (instead of a traceback per
    # worker); click prints a ClickException as "Error: ..." under `flask` and `screening`
    from gunicorn.errors import AppImportError as _PlainStartError
except ImportError:  # pragma: no cover - gunicorn is a dependency; this keeps config usable without it
    _PlainStartError = Exception

SECRET_KEY_FILE = "secret_key"  # noqa: S105 - a file name, not a secret
PREFIX = "SCREENING_"


class SettingsError(click.ClickException, _PlainStartError):
    """One or more settings are wrong; str() has one `SCREENING_X: problem` line for each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Setting:
    """A setting's default and its check: `check(value)` returns the value to use or raises
    ValueError saying what is wrong. `raw`: the environment text is taken as written (a password
    of digits stays text) instead of as JSON. `secret`: a message never repeats the value."""
    default: Any
    check: Callable[[Any], Any]
    raw: bool = False
    secret: bool = False


# --- kinds of setting ----------------------------------------------------------------------------

def _is_number(value: Any) -> bool:
    """A finite int or float, and not a bool (True is an int in Python)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def whole(default: int, low: int, high: int) -> Setting:
    """A whole number from `low` to `high`."""
    def check(value):
        if _is_number(value) and float(value).is_integer() and low <= value <= high:
            return int(value)
        raise ValueError(f"must be a whole number from {low} to {high}")
    return Setting(default, check)


def number(default: float, low: float, high: float) -> Setting:
    """A number (decimals allowed) from `low` to `high`."""
    def check(value):
        if _is_number(value) and low <= value <= high:
            return value
        raise ValueError(f"must be a number from {low:g} to {high:g}")
    return Setting(default, check)


def flag(default: bool) -> Setting:
    """true or false, and nothing else: `1`, `yes` or `on` are refused rather than guessed."""
    def check(value):
        if isinstance(value, bool):
            return value
        raise ValueError("must be true or false")
    return Setting(default, check)


def choice(default: str, *options: str) -> Setting:
    """One of `options`, in any letter case (returned as written in `options`)."""
    by_lower = {option.lower(): option for option in options}

    def check(value):
        if isinstance(value, str) and value.lower() in by_lower:
            return by_lower[value.lower()]
        raise ValueError(f"must be one of {', '.join(options)}")
    return Setting(default, check, raw=True)


def text(default: str | None, check: Callable[[str], str] | None = None, *, secret: bool = False) -> Setting:
    """Text on one line. With a None default it is optional: unset or empty means none."""
    def check_text(value):
        if value is None or value == "":
            if default is None:
                return None
            raise ValueError("must not be empty")
        if not isinstance(value, str) or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise ValueError("must be text on one line")
        return check(value) if check else value
    return Setting(default, check_text, raw=True, secret=secret)


# --- checks of particular texts -------------------------------------------------------------------

def _database_file(value: str) -> str:
    """A file path whose folder exists or can be created (the folder is made at start-up)."""
    if value == ":memory:":
        raise ValueError("must be a file: every request and worker opens its own connection")
    path = Path(value)
    if path.is_dir():
        raise ValueError("is a folder; give the path of the database file in it")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder, so the database cannot be made in it")
    return value


def _folder(value: str) -> str:
    """An existing folder."""
    if not Path(value).is_dir():
        raise ValueError("is not a folder")
    return value


def _long_key(value: str) -> str:
    """At least 32 characters, like the key the app makes itself."""
    if len(value) < 32:
        raise ValueError("must be at least 32 characters long (or unset, to have one made and kept)")
    return value


def _time_zone(value: str) -> str:
    """An IANA time zone name that this machine knows."""
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        close = difflib.get_close_matches(value, zoneinfo.available_timezones(), n=1)
        hint = f"; did you mean {close[0]}?" if close else " (for example Europe/Madrid)"
        raise ValueError(f"not a known time zone{hint}") from None
    return value


_ADDRESS = re.compile(r"[^@\s,;<>\"]+@[^@\s,;<>\"]+")


def _addresses(value: str, *, one: bool = False) -> str:
    """One e-mail address, or with `one=False` several separated by commas."""
    parts = [part.strip() for part in value.split(",")]
    if (one and len(parts) != 1) or not all(_ADDRESS.fullmatch(part) for part in parts):
        raise ValueError("must be an e-mail address" if one else "must be e-mail addresses separated by commas")
    return value


def _host(value: str) -> str:
    """A host name or address, without a scheme, path or spaces."""
    if any(ch in value for ch in " /\\"):
        raise ValueError("must be a host name or address, such as smtp.example.org")
    return value


def _centre_slug(value: str) -> str:
    """The slug of a centre (its file name in rules/centres/ without .toml); that it exists is
    checked once the centres are loaded."""
    if not re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", value):
        raise ValueError("must be a centre's slug: lower-case letters, digits and '-'")
    return value


def _postgres_url(value: str) -> str:
    """A postgresql:// URL that libpq can read (the message never repeats it: it may hold a password)."""
    from .store.engine_postgres import check_url
    if urlsplit(value).scheme not in ("postgresql", "postgres"):
        raise ValueError("must be a postgresql:// URL, such as postgresql://screening@db.example.org/screening")
    check_url(value)
    return value


def _web_address(value: str) -> str:
    """An http:// or https:// address with a host."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be the app's public address, such as https://screening.example.org/")
    return value


# --- the settings --------------------------------------------------------------------------------

def settings(instance_path: str) -> dict[str, Setting]:
    """Every setting the app reads: default and check, one line each. The README documents each one."""
    return {
        "DATABASE": text(os.path.join(instance_path, "screening.db"), _database_file),
        # PostgreSQL instead of the SQLite file: then DATABASE is ignored and SECRET_KEY is required
        "DATABASE_URL": text(None, _postgres_url, secret=True),
        "DATABASE_POOL_SIZE": whole(8, 1, 200),          # connections per worker process (>= its threads)
        "DATABASE_WAIT_SECONDS": number(5, 0.5, 60),     # how long a request waits for a connection
        "RULES_DIR": text(str(default_rules_dir()), _folder),
        "SECRET_KEY": text(None, _long_key, secret=True),
        # the whole questionnaire is a few kilobytes; 16 KiB leaves room for long notes
        "MAX_CONTENT_LENGTH": whole(64 * 1024, 16 * 1024, 64 * 1024 * 1024),
        "SESSION_COOKIE_SECURE": flag(False),     # set true behind HTTPS
        "SESSION_COOKIE_HTTPONLY": flag(True),
        "SESSION_COOKIE_SAMESITE": choice("Lax", "Lax", "Strict", "None"),
        "WTF_CSRF_TIME_LIMIT": whole(3600 * 4, 60, 7 * 24 * 3600),   # long enough to answer calmly on a phone
        "STAFF_IDLE_MINUTES": number(30, 1, 24 * 60),
        "STAFF_SESSION_HOURS": number(10, 0.25, 7 * 24),
        "LOGIN_MAX_FAILURES": whole(5, 1, 100),
        "LOGIN_LOCK_MINUTES": number(15, 1, 7 * 24 * 60),
        # no longer used (a throttled login is refused with Retry-After, no worker sleeps); still
        # accepted, so that an installation that sets it keeps starting
        "LOGIN_SLOWDOWN_SECONDS": number(0.25, 0, 3),
        "SMTP_HOST": text(None, _host),
        "SMTP_PORT": whole(25, 1, 65535),
        "SMTP_USERNAME": text(None),
        "SMTP_PASSWORD": text(None, secret=True),
        "SMTP_STARTTLS": flag(False),
        "NOTIFY_FROM": text(None, lambda value: _addresses(value, one=True)),
        "NOTIFY_TO": text(None, _addresses),
        "BASE_URL": text(None, _web_address),
        "HSTS": flag(False),
        "TIMEZONE": text("Europe/Madrid", _time_zone),   # the centre's clock, for the time shown on a result
        "PROXY_COUNT": whole(0, 0, 10),                  # reverse proxies in front that set X-Forwarded-*
        "SHARE_LIMIT_PER_HOUR": whole(20, 0, 100_000),   # shares stored per client address an hour; 0: no limit
        "DEFAULT_CENTRE": text(None, _centre_slug),      # the centre the un-prefixed routes serve
        # days a shared screening is kept when its centre's file says nothing (retention_days);
        # the app deletes older ones by itself once a day when AUTO_PURGE is on
        "RETENTION_DAYS": whole(365, 1, 36500),
        "AUTO_PURGE": flag(True),
    }


def defaults(instance_path: str) -> dict:
    """Every setting the app reads, with its default."""
    return {name: setting.default for name, setting in settings(instance_path).items()}


def _agree(config: Mapping) -> list[str]:
    """Problems that involve two settings together."""
    if config["SESSION_COOKIE_SAMESITE"] == "None" and not config["SESSION_COOKIE_SECURE"]:
        return [f"{PREFIX}SESSION_COOKIE_SAMESITE: None needs {PREFIX}SESSION_COOKIE_SECURE=true "
                "(browsers drop a SameSite=None cookie that is not Secure)"]
    return []


def load(config, instance_path: str, environ: Mapping[str, str], overrides: Mapping | None = None) -> None:
    """Fill Flask's `config`: the defaults, then the SCREENING_* variables (as Flask's
    from_prefixed_env reads them: numbers and true/false as JSON; text as written), then
    `overrides`. Check every setting; raise SettingsError naming every variable that is wrong."""
    table = settings(instance_path)
    config.from_mapping({name: setting.default for name, setting in table.items()})
    config.from_prefixed_env(PREFIX.rstrip("_"))
    problems = _unknown(environ, table)
    for name, setting in table.items():
        if setting.raw and PREFIX + name in environ:
            config[name] = environ[PREFIX + name]
    config.update(overrides or {})
    problems += _check(config, table)
    if problems:
        raise SettingsError(problems)


def _unknown(environ: Mapping[str, str], table: Mapping[str, Setting]) -> list[str]:
    """A problem for each SCREENING_* variable that is not a setting, with the nearest one."""
    known = [PREFIX + name for name in table]
    problems = []
    for variable in sorted(environ):
        if variable.startswith(PREFIX) and variable not in known:
            close = difflib.get_close_matches(variable, known, n=1, cutoff=0.75)
            hint = f"; did you mean {close[0]}?" if close else " (the README lists the settings)"
            problems.append(f"{variable}: not a setting of this app{hint}")
    return problems


def _check(config: MutableMapping, table: Mapping[str, Setting]) -> list[str]:
    """Check and normalise each setting in `config`; return the problems."""
    problems = []
    for name, setting in table.items():
        value = config.get(name)
        try:
            config[name] = setting.check(value)
        except ValueError as e:
            got = "" if setting.secret else f" (got {value!r})"
            problems.append(f"{PREFIX}{name}: {e}{got}")
    return problems or _agree(config)


def load_secret_key(instance_path: str) -> str:
    """The key in instance/secret_key, created once with mode 0600 if it does not exist.

    Workers starting at the same moment must agree on one key (else CSRF fails about half the
    time), so the file is written under a temporary name and linked into place: link() refuses
    to replace an existing file, and the winner's key is complete before anyone can read it.
    """
    folder = Path(instance_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / SECRET_KEY_FILE
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".secret-")   # mkstemp creates with 0600
        try:
            os.write(fd, secrets.token_hex(32).encode())
            os.fsync(fd)
            os.close(fd)
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass                                 # another worker won; use its key
        finally:
            os.unlink(tmp)
    key = path.read_text().strip()
    if len(key) < 32:
        raise RuntimeError(f"{path} holds no usable secret key; delete it to have a new one made")
    return key
