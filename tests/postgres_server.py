"""A throwaway PostgreSQL server for the tests: Debian's own server binaries, a new cluster in a
temporary folder, listening on a free port of 127.0.0.1 only, stopped and deleted afterwards.

PostgreSQL refuses to run as root, and CI runs as root: there the cluster belongs to the
unprivileged user `nobody` and its programs run as that user. Elsewhere they run as whoever runs
the tests. Debian's `postgresql` package is installed by .ci/run; on a developer's machine without
it, the tests that need the server are skipped with that reason, but never in CI (the `CI`
variable is set), where that is a failure.

This is the ground for the storage layer over two engines (issue 14): the store's tests will be
run on both SQLite and this server.
"""
from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

POSTGRES_BINARIES = Path("/usr/lib/postgresql")
MIN_VERSION = 14
UNPRIVILEGED = "nobody"
START_TIMEOUT = 30.0


def server_binaries() -> Path | None:
    """The bin folder of the newest PostgreSQL server Debian installed, or None."""
    found = sorted((p for p in POSTGRES_BINARIES.glob("*/bin") if (p / "initdb").exists()),
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
    """Popen arguments that run a server program as the cluster's owner: `nobody` when we are root."""
    if os.geteuid() != 0:
        return {}
    user = pwd.getpwnam(UNPRIVILEGED)
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


@contextmanager
def postgres_server():
    """Start a new cluster; yield its URL (libpq's form, user `postgres`, trust on loopback only)."""
    binaries = require_server()
    folder = Path(tempfile.mkdtemp(prefix="screening-pg-"))
    data = folder / "data"
    owner = _as_owner()
    if owner:
        os.chown(folder, owner["user"], owner["group"])
    env = {**os.environ, "LC_ALL": "C.UTF-8", "TZ": "UTC"}
    process = None
    try:
        subprocess.run([binaries / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                        "--no-sync", "--no-instructions"],
                       check=True, capture_output=True, env=env, cwd=folder, **owner)
        port = _free_port()
        log = open(folder / "server.log", "wb")    # noqa: SIM115 - closed with the server below
        process = subprocess.Popen(
            [binaries / "postgres", "-D", data, "-p", str(port), "-c", "listen_addresses=127.0.0.1",
             "-c", f"unix_socket_directories={folder}", "-c", "fsync=off"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=folder, **owner)
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        _wait_until_ready(binaries, port, process, folder)
        yield url
    finally:
        if process is not None:
            process.terminate()            # SIGTERM: PostgreSQL's "smart" shutdown
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(folder, ignore_errors=True)


def _wait_until_ready(binaries: Path, port: int, process: subprocess.Popen, folder: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"PostgreSQL stopped at start: {(folder / 'server.log').read_text()[-2000:]}")
        ready = subprocess.run([binaries / "pg_isready", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"],
                               capture_output=True)
        if ready.returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"PostgreSQL did not start within {START_TIMEOUT} s")
