"""A throwaway PostgreSQL server for the tests: Debian's own server binaries, a new cluster in a
temporary folder, listening on a free port of 127.0.0.1 only, stopped and deleted afterwards.

PostgreSQL refuses to run as root, and CI runs as root: there the cluster belongs to the
unprivileged user `nobody` and its programs (initdb, pg_ctl and so the server) run as that user, in
a folder of /tmp that user can reach (pytest's own temporary folders are mode 0700 under root's).
Elsewhere they run as whoever runs the tests. Debian's `postgresql` package is installed by .ci/run;
on a developer's machine without it, the tests that need the server are skipped with that reason,
but never in CI (the `CI` variable is set), where that is a failure.

Nothing is left running: the server is stopped (`pg_ctl stop -m immediate`) and its folder deleted
when the context manager exits, and an atexit hook does the same for any server still up when the
interpreter ends (a pytest that crashed or was interrupted). Only a SIGKILLed pytest can leave one.

`Server` lets fault tests stop PostgreSQL mid-load and start it again on the same port and data
folder; `create_database` / `drop_database` give each test a database of its own, from a template
when one is named.

This is the ground for the storage layer over two engines (issue 14): the store's tests will be
run on both SQLite and this server.
"""
from __future__ import annotations

import atexit
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

POSTGRES_BINARIES = Path("/usr/lib/postgresql")
MIN_VERSION = 14
UNPRIVILEGED = "nobody"
START_TIMEOUT = 30
SUPERUSER = "postgres"
# Many test apps at once, each with a small pool of its own, share the session's server.
MAX_CONNECTIONS = 300
# A unix socket's path (folder + "/.s.PGSQL.<port>") must fit in sun_path, 108 bytes with the NUL.
MAX_SOCKET_FOLDER = 90
NAME = re.compile(r"[a-z0-9_]{1,63}")
PROTECTED_DATABASES = {"postgres", "template0", "template1"}


def server_binaries() -> Path | None:
    """The bin folder of the newest PostgreSQL server Debian installed, or None."""
    found = sorted((p for p in POSTGRES_BINARIES.glob("*/bin") if (p / "initdb").exists()
                    and (p / "pg_ctl").exists()),
                   key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return found[-1] if found else None


def require_server() -> Path:
    """The server's bin folder; a skip with a reason without it, a failure in CI."""
    binaries = server_binaries()
    if binaries is None:
        reason = (f"no PostgreSQL server under {POSTGRES_BINARIES}: install Debian's `postgresql` package "
                  "to run the tests on PostgreSQL")
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI is set, so this is a failure, not a skip)", pytrace=False)
        pytest.skip(reason)
    return binaries


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_owner() -> dict:
    """subprocess arguments that run a server program as the cluster's owner: `nobody` when we are root."""
    if os.geteuid() != 0:
        return {}
    user = pwd.getpwnam(UNPRIVILEGED)
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _settings(port: int, socket_folder: Path) -> str:
    return f"""
# --- the test harness's settings (tests/postgres_server.py); the last value of a setting wins ---
port = {port}
listen_addresses = '127.0.0.1'
unix_socket_directories = '{socket_folder}'
max_connections = {MAX_CONNECTIONS}
# Throwaway data: no need to survive a power cut, so no fsync (much faster on a busy CI disk).
# synchronous_commit is deliberately left ON (the default): the app relies on a commit being durable
# once it returns, and the fault tests stop the server with -m immediate and expect committed rows back.
fsync = off
synchronous_commit = on
timezone = 'UTC'
log_timezone = 'UTC'
"""


# Loopback only, trust only there: no ::1, no other address, no replication.
HBA = """\
local all all trust
host all all 127.0.0.1/32 trust
"""


class Server:
    """One throwaway cluster: its folder, data folder, port and URL; start, stop and restart it."""

    def __init__(self, binaries: Path, folder: Path) -> None:
        self.binaries = binaries
        self.folder = folder
        self.data = folder / "data"
        self.log = folder / "server.log"
        self.port = 0
        self.owner = _as_owner()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        self.env.update(LC_ALL="C.UTF-8", TZ="UTC")

    @property
    def url(self) -> str:
        """libpq's URL of the `postgres` database, user `postgres` (trust on loopback)."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([str(a) for a in args], check=check, capture_output=True, text=True,
                              env=self.env, cwd=self.folder, **self.owner)

    def _pg_ctl(self, *args, check: bool = True) -> subprocess.CompletedProcess:
        return self._run(self.binaries / "pg_ctl", "-D", self.data, *args, check=check)

    def init(self) -> None:
        """initdb into the folder and write the harness's settings and pg_hba.conf."""
        self._run(self.binaries / "initdb", "-D", self.data, "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")
        (self.data / "pg_hba.conf").write_text(HBA)
        self.port = _free_port()
        self._write_settings()

    def _write_settings(self) -> None:
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(_settings(self.port, self.folder))

    def start(self) -> None:
        """Start the server on its port and data folder and wait until it accepts connections."""
        started = self._pg_ctl("start", "-w", "-t", START_TIMEOUT, "-l", self.log, check=False)
        if started.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start ({started.stdout}{started.stderr}): "
                               f"{self.log_tail()}")

    def _first_start(self) -> None:
        """Start; should another program take the free port in between, try another one."""
        for attempt in range(3):
            try:
                return self.start()
            except RuntimeError:
                if attempt == 2 or "could not bind" not in self.log_tail():
                    raise
                self.port = _free_port()
                self._write_settings()

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server: "immediate" (like a crash: no checkpoint, recovery at the next start),
        "fast" (rolls back open transactions, clean) or "smart" (waits for the clients)."""
        if mode not in ("immediate", "fast", "smart"):
            raise ValueError(f"not a pg_ctl shutdown mode: {mode!r}")
        stopped = self._pg_ctl("stop", "-m", mode, "-w", "-t", START_TIMEOUT, check=False)
        if stopped.returncode != 0 and self.is_running():
            raise RuntimeError(f"PostgreSQL did not stop: {stopped.stdout}{stopped.stderr}")

    def restart(self, mode: str = "immediate") -> None:
        """Stop (by default as a crash would) and start again, on the same port and data folder."""
        self.stop(mode)
        self.start()

    def is_running(self) -> bool:
        """Whether a postmaster runs from this data folder (pg_ctl status)."""
        return self.data.exists() and self._pg_ctl("status", check=False).returncode == 0

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def destroy(self) -> None:
        """Stop the server (immediately; its data is thrown away) and delete its folder."""
        _LIVE.discard(self)
        try:
            if self.data.exists():
                pid = self.postmaster_pid()
                self._pg_ctl("stop", "-m", "immediate", "-w", "-t", START_TIMEOUT, check=False)
                if pid is not None and self.is_running():    # last resort: it would not stop
                    os.kill(pid, 9)
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


# The servers up now: the atexit hook stops them and the helpers find them by URL.
_LIVE: set[Server] = set()


@atexit.register
def _stop_all_left_running() -> None:
    for server in list(_LIVE):
        server.destroy()


def _short_folder() -> Path:
    """A new folder of /tmp for the cluster, reachable by its owner, with a path short enough for
    the unix socket that lives in it (not $TMPDIR, which may be long or private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="pg-", dir="/tmp"))
    if len(str(folder)) > MAX_SOCKET_FOLDER:
        shutil.rmtree(folder)
        raise RuntimeError(f"{folder}: too long a path for PostgreSQL's unix socket")
    owner = _as_owner()
    if owner:
        os.chown(folder, owner["user"], owner["group"])
    return folder


@contextmanager
def postgres_cluster() -> Iterator[Server]:
    """Start a new cluster and yield its `Server` (`.url`, `.stop()`, `.start()`, `.restart()`);
    stop it and delete its folder afterwards, whatever state it was left in."""
    binaries = require_server()
    server = Server(binaries, _short_folder())
    try:
        _LIVE.add(server)
        server.init()
        server._first_start()
        yield server
    finally:
        server.destroy()


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a new cluster; yield its URL (libpq's form, user `postgres`, trust on loopback only)."""
    with postgres_cluster() as server:
        yield server.url


def server_for(url: str) -> Server:
    """The running `Server` that a URL (of the server or of any of its databases) points at."""
    port = urlsplit(url).port
    for server in _LIVE:
        if server.port == port:
            return server
    raise LookupError(f"no test PostgreSQL server of this harness on port {port}")


def stop_server(url: str, mode: str = "immediate") -> None:
    server_for(url).stop(mode)


def start_server(url: str) -> None:
    server_for(url).start()


def _checked_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ValueError(f"not a database name for the tests (1 to 63 of a-z, 0-9, _): {name!r}")
    return name


def database_url(server_url: str, name: str) -> str:
    """The URL of database `name` on the server of `server_url`."""
    return urlunsplit(urlsplit(server_url)._replace(path="/" + _checked_name(name)))


def create_database(server_url: str, name: str, template: str | None = None) -> str:
    """Create database `name` (a copy of `template` when given, which must have no open connection)
    and return its URL."""
    import psycopg

    sql = f'CREATE DATABASE "{_checked_name(name)}"'
    if template is not None:
        sql += f' TEMPLATE "{_checked_name(template)}"'
    # Through `postgres`: a connection to the template itself would make the copy fail.
    with psycopg.connect(database_url(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(sql)
    return database_url(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    """Drop database `name` if it exists, ending any connection still open to it."""
    import psycopg

    if _checked_name(name) in PROTECTED_DATABASES:
        raise ValueError(f"refusing to drop {name!r}")
    with psycopg.connect(database_url(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
