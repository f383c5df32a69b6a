"""The throwaway PostgreSQL server the tests start (tests/postgres_server.py): a real server of a
version the app will accept (14 or newer), run by an unprivileged user, reachable on loopback only,
that commits what it is given. The two-engine store of issue 14 is tested against it."""
import os
from pathlib import Path

import psycopg
import pytest
from postgres_server import MIN_VERSION


@pytest.fixture
def conn(postgres_url):
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        yield connection


def test_the_server_is_a_real_postgresql_of_a_version_the_app_accepts(conn):
    assert conn.info.server_version >= MIN_VERSION * 10000
    assert conn.execute("SELECT version()").fetchone()[0].startswith("PostgreSQL ")


def test_the_server_does_not_run_as_root_and_listens_on_loopback_only(conn):
    pid = conn.info.backend_pid
    uid = int(next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                   if line.startswith("Uid:")).split()[1])
    assert uid != 0 and (os.geteuid() != 0 or uid != os.geteuid())
    assert conn.execute("SHOW listen_addresses").fetchone()[0] == "127.0.0.1"


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
