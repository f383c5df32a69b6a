"""Erasure on PostgreSQL: the rows are deleted at once (nothing shows them any more) and a VACUUM
runs in the background, outside the request, so their dead tuples become free space within seconds
rather than at autovacuum's next pass. SQLite's byte-level proofs are in tests/test_retention.py."""
import time

import pytest
from conftest import CENTRE, database_of

from screening.store import db as dbmod
from screening.store import retention


def _stats(conn, table):
    conn.execute("SELECT pg_stat_clear_snapshot()")
    return conn.execute("SELECT n_dead_tup, vacuum_count FROM pg_stat_user_tables WHERE relname = ?",
                        [table]).fetchone()


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_an_erasure_deletes_at_once_and_vacuums_in_the_background(app, db, make_submission, engine):
    kept, erased = make_submission(name="Ona Ribas"), make_submission(name="Pau Soler")
    before = _stats(db, "submissions")[1]
    assert retention.erase_submission(db, erased["id"], centre=CENTRE, staff=None) == erased["reference"]
    assert dbmod.find_by_reference(db, erased["reference"]) is None
    assert dbmod.find_by_reference(db, kept["reference"]) is not None
    other = dbmod.connect(database_of(app))     # what another app server sees at once
    try:
        assert other.execute("SELECT count(*) FROM submissions WHERE id = ?", [erased["id"]]).fetchone() == (0,)
    finally:
        other.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _stats(db, "submissions")[1] == before:
        time.sleep(0.1)
    dead, vacuums = _stats(db, "submissions")
    assert vacuums > before and dead == 0
