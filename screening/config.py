"""Settings: defaults, SCREENING_* environment variables, and the secret key shared by all workers."""
from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from .rules import default_rules_dir

SECRET_KEY_FILE = "secret_key"  # noqa: S105 - a file name, not a secret


def defaults(instance_path: str) -> dict:
    """Every setting the app reads, with its default. The README documents each one."""
    return {
        "DATABASE": os.path.join(instance_path, "screening.db"),
        "RULES_DIR": str(default_rules_dir()),
        "SECRET_KEY": None,
        "MAX_CONTENT_LENGTH": 64 * 1024,          # the whole questionnaire is a few kilobytes
        "SESSION_COOKIE_SECURE": False,           # set true behind HTTPS
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "WTF_CSRF_TIME_LIMIT": 3600 * 4,          # long enough to answer calmly on a phone
        "STAFF_IDLE_MINUTES": 30,
        "STAFF_SESSION_HOURS": 10,
        "LOGIN_MAX_FAILURES": 5,
        "LOGIN_LOCK_MINUTES": 15,
        "LOGIN_SLOWDOWN_SECONDS": 0.25,           # pause per recent failed login, before the lock
        "SMTP_HOST": None,
        "SMTP_PORT": 25,
        "SMTP_USERNAME": None,
        "SMTP_PASSWORD": None,
        "SMTP_STARTTLS": False,
        "NOTIFY_FROM": None,
        "NOTIFY_TO": None,
        "BASE_URL": None,
        "HSTS": False,
        "TIMEZONE": "Europe/Madrid",              # the centre's clock, for the time shown on a result
        "PROXY_COUNT": 0,                         # reverse proxies in front that set X-Forwarded-*
        "SHARE_LIMIT_PER_HOUR": 20,               # shared screenings stored per client address per hour; 0: no limit
    }


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
