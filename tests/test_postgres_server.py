"""The throwaway PostgreSQL server the tests start (tests/postgres_server.py): a real server of a
version the app will accept (14 or newer), run by an unprivileged user, reachable on loopback only,
that commits what it is given, gives each test a database of its own (from a template when asked),
survives being stopped as a crash would, and leaves nothing running afterwards. The two-engine store
of issue 14 is tested against it.

The tests that stop the server or check what is left afterwards start a cluster of their own, so the
session's server (`postgres_url`) is never disturbed."""
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import psycopg
import pytest
from postgres_server import (
    MIN_VERSION,
    create_database,
    drop_database,
    postgres_cluster,
    postgres_server,
    start_server,
    stop_server,
)

TESTS = Path(__file__).parent


@pytest.fixture
def conn(postgres_url):
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        yield connection


def _uid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return int(next(line for line in status if line.startswith("Uid:")).split()[1])


def _postmaster_pid(conn) -> int:
    data = conn.execute("SELECT current_setting('data_directory')").fetchone()[0]
    return int((Path(data) / "postmaster.pid").read_text().split("\n", 1)[0])


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def _processes_of(data: Path, postmaster: int) -> list[int]:
    """Processes alive now that belong to the cluster of `data`: the postmaster (its command line names
    the data folder) and its children (which rename themselves, but are the postmaster's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            status = (entry / "status").read_text()
        except OSError:
            continue                      # ended while we looked
        parent = int(next(line for line in status.splitlines() if line.startswith("PPid:")).split()[1])
        state = next(line for line in status.splitlines() if line.startswith("State:"))
        if "Z" in state.split()[1]:
            continue                      # a zombie runs nothing
        if str(data) in cmdline or parent == postmaster or int(entry.name) == postmaster:
            found.append(int(entry.name))
    return found


def _still_running(pids: list[int]) -> list[int]:
    """Those of `pids` still alive as PostgreSQL processes (a pid reused since by another program is not)."""
    alive = []
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                         if line.startswith("State:"))
        except OSError:
            continue
        if b"postgres" in cmdline and "Z" not in state.split()[1]:
            alive.append(pid)
    return alive


def test_the_server_is_a_real_postgresql_of_a_version_the_app_accepts(conn):
    assert conn.info.server_version >= MIN_VERSION * 10000
    assert conn.execute("SELECT version()").fetchone()[0].startswith("PostgreSQL ")


def test_the_server_does_not_run_as_root(conn):
    backend = _uid(conn.info.backend_pid)
    postmaster = _uid(_postmaster_pid(conn))
    data = conn.execute("SELECT current_setting('data_directory')").fetchone()[0]
    assert 0 not in (backend, postmaster, os.stat(data).st_uid)
    assert backend == postmaster == os.stat(data).st_uid
    if os.geteuid() != 0:
        assert postmaster == os.geteuid()


def test_the_server_listens_on_loopback_only_and_trusts_only_loopback(conn):
    assert conn.execute("SHOW listen_addresses").fetchone()[0] == "127.0.0.1"
    port = conn.info.port
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, local_port = local.split(":")
            if state == "0A" and int(local_port, 16) == port:      # 0A: LISTEN
                listening.append(address)
    assert listening == ["0100007F"]                               # 127.0.0.1, and nothing else
    rules = conn.execute("SELECT type, address, netmask FROM pg_hba_file_rules WHERE type <> 'local'").fetchall()
    assert rules == [("host", "127.0.0.1", "255.255.255.255")]
    socket_folder = conn.execute("SHOW unix_socket_directories").fetchone()[0]
    assert len(socket_folder) < 90 and Path(socket_folder, f".s.PGSQL.{port}").exists()


def test_the_settings_the_tests_rely_on(conn):
    def show(setting):
        return conn.execute(f"SHOW {setting}").fetchone()[0]
    assert show("synchronous_commit") == "on"
    assert show("fsync") == "off"
    assert int(show("max_connections")) >= 300


def test_a_committed_row_is_read_back_by_another_connection(postgres_url, conn):
    conn.execute("CREATE TABLE IF NOT EXISTS probe (id serial PRIMARY KEY, name text NOT NULL)")
    with psycopg.connect(postgres_url) as writer:
        writer.execute("INSERT INTO probe (name) VALUES (%s)", ["Núria"])
        writer.commit()
    assert conn.execute("SELECT name FROM probe WHERE name = %s", ["Núria"]).fetchone() == ("Núria",)
    with psycopg.connect(postgres_url) as rolled_back:
        rolled_back.execute("INSERT INTO probe (name) VALUES ('never')")
        rolled_back.rollback()
    assert conn.execute("SELECT count(*) FROM probe WHERE name = 'never'").fetchone() == (0,)


def test_a_database_made_from_a_template_has_the_template_s_tables_and_is_dropped(postgres_url, conn):
    template, copy = _unique("template"), _unique("copy")
    template_url = create_database(postgres_url, template)
    try:
        with psycopg.connect(template_url) as t:
            t.execute("CREATE TABLE centre (slug text PRIMARY KEY)")
            t.execute("INSERT INTO centre VALUES ('barcelona')")
            t.commit()
        copy_url = create_database(postgres_url, copy, template=template)
        assert copy_url.endswith(f"/{copy}")
        with psycopg.connect(copy_url, autocommit=True) as c:
            assert c.execute("SELECT current_database()").fetchone() == (copy,)
            assert c.execute("SELECT slug FROM centre").fetchall() == [("barcelona",)]
            c.execute("INSERT INTO centre VALUES ('girona')")      # the copy is its own database
            drop_database(postgres_url, copy)                     # even with this connection open
        with psycopg.connect(template_url) as t:
            assert t.execute("SELECT slug FROM centre").fetchall() == [("barcelona",)]
    finally:
        drop_database(postgres_url, copy)
        drop_database(postgres_url, template)
    names = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
    assert not {template, copy} & names
    drop_database(postgres_url, copy)                             # IF EXISTS: no error when gone


@pytest.mark.parametrize("name", ["", "Capital", 'x"; DROP DATABASE postgres; --', "with space", "a-b",
                                  "é", "x" * 64])
def test_database_names_are_checked_before_they_reach_sql(postgres_url, name):
    with pytest.raises(ValueError):
        create_database(postgres_url, name)
    with pytest.raises(ValueError):
        create_database(postgres_url, "fine_name", template=name)
    with pytest.raises(ValueError):
        drop_database(postgres_url, name)


def test_the_server_s_own_databases_are_not_dropped(postgres_url):
    for name in ("postgres", "template0", "template1"):
        with pytest.raises(ValueError):
            drop_database(postgres_url, name)


@pytest.mark.slow
def test_stopped_as_a_crash_would_and_started_again_it_keeps_what_was_committed():
    with postgres_cluster() as server:
        url, port = server.url, server.port
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("CREATE TABLE kept (n int)")
        with psycopg.connect(url) as c:
            c.execute("INSERT INTO kept VALUES (1)")
            c.commit()
        open_connection = psycopg.connect(url)
        open_connection.execute("INSERT INTO kept VALUES (2)")      # not committed: lost with the stop
        server.stop()                                               # -m immediate: no checkpoint
        assert not server.is_running()
        with pytest.raises(psycopg.OperationalError):
            open_connection.execute("SELECT 1")
        open_connection.close()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=2).close()
        server.start()
        assert server.port == port and server.url == url
        with psycopg.connect(url) as c:
            assert c.execute("SELECT n FROM kept").fetchall() == [(1,)]
        database = create_database(url, "after_restart")
        stop_server(database)                                       # found by the URL of any database
        start_server(database)
        with psycopg.connect(database) as c:
            assert c.execute("SELECT 1").fetchone() == (1,)
        server.restart()
        with psycopg.connect(url) as c:
            assert c.execute("SELECT n FROM kept").fetchall() == [(1,)]


@pytest.mark.slow
def test_nothing_is_left_running_after_the_server_s_context_ends():
    with postgres_cluster() as server:
        data, postmaster = server.data, server.postmaster_pid()
        with psycopg.connect(server.url) as c:                      # a backend besides the helpers
            c.execute("SELECT 1")
            ours = _processes_of(data, postmaster)
            assert postmaster in ours and len(ours) > 2
    assert _still_running(ours) == []                             # the postmaster and its children
    assert _processes_of(data, postmaster) == []
    assert not server.folder.exists()


@pytest.mark.slow
def test_nothing_is_left_running_when_the_process_ends_inside_the_context():
    """A pytest that ends without leaving the context (an error at exit, an interrupt) stops the
    server all the same: the atexit hook."""
    script = textwrap.dedent("""
        import sys
        from postgres_server import postgres_cluster
        cluster = postgres_cluster()          # kept, so that only the atexit hook can stop it
        server = cluster.__enter__()
        print(server.data, server.postmaster_pid(), server.folder, flush=True)
        sys.stdin.readline()
        raise KeyboardInterrupt
    """)
    with subprocess.Popen([sys.executable, "-c", script], cwd=TESTS, text=True, stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env={**os.environ, "PYTHONPATH": str(TESTS)}) as child:
        data, postmaster, folder = child.stdout.readline().split()
        ours = _processes_of(Path(data), int(postmaster))
        assert int(postmaster) in ours and len(ours) > 1
        _, errors = child.communicate("\n", timeout=60)
    assert "KeyboardInterrupt" in errors
    assert _still_running(ours) == []
    assert _processes_of(Path(data), int(postmaster)) == []
    assert not Path(folder).exists()


@pytest.mark.slow
def test_the_url_context_manager_still_yields_a_url():
    """postgres_server() is what conftest's session fixture uses: it yields the URL, as before."""
    with postgres_server() as url:
        assert url.startswith("postgresql://postgres@127.0.0.1:")
        with psycopg.connect(url) as c:
            assert c.execute("SELECT 1").fetchone() == (1,)
