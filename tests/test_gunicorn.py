"""The production setup for real: gunicorn with several workers on one SQLite file (RELIABILITY.md).

Each test starts `gunicorn 'screening:create_app()'` in its own process group (always killed) on a
database in tmp_path, with CSRF on as in production, and talks to it over loopback like browsers.
The package is reached through a symlink in tmp_path (see helpers_server), so when a test leaves
SCREENING_SECRET_KEY unset the workers create and share the key in a temporary instance folder,
through the unchanged key logic, and never touch the checkout's `instance/`.
"""
import shutil
import stat
import threading
from collections import Counter

import pytest
from helpers_server import (
    FORM,
    READY,
    Browser,
    app_folder,
    form_fields,
    gunicorn_server,
    kill_group,
    problems_in,
    references,
    share_once,
    shared_answers,
)

from screening.store import db as dbmod

pytestmark = pytest.mark.slow

def open_db(path):
    return dbmod.connect(path)


# Workers racing to create and migrate one new file is where a start-up bug hides (WAL switch
# answering "locked", two workers applying the same migration); 20 starts make a rare race show.
@pytest.mark.parametrize("run", range(20))
def test_four_workers_cold_start_on_a_new_database_and_migrate_once(tmp_path, tmp_path_factory, run):
    path = tmp_path / "new.db"
    assert not path.exists()
    # a new database and secret key every time; the rules' start-up proof (the same rules each run)
    # is made by the first run and handed to the others, as a restart would find it
    proof = tmp_path_factory.getbasetemp() / "cold-start-rules-proven"
    instance = app_folder(tmp_path) / "instance"
    if proof.exists():
        shutil.copy(proof, instance / "rules-proven")
    with gunicorn_server(tmp_path, database=path, workers=4, secret_key=None) as server:
        assert Browser(server.url).get("/healthz").status == 200
        kill_group(server)      # only start-up is under test: no graceful stop (about 1 s) to wait for
        log = server.log()
    if (instance / "rules-proven").exists():
        shutil.copy(instance / "rules-proven", proof)
    assert problems_in(log) == []
    assert log.count(READY) == 4                  # every worker booted once: none failed and was replaced
    conn = open_db(path)
    try:
        counts = Counter(name for (name,) in conn.execute(
            "SELECT name FROM _sqlite_migrations WHERE migration_set = 'screening'"))
        assert counts and set(counts.values()) == {1}
        assert dbmod.migrations.pending(conn) == []
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()


# sync is gunicorn's default; gthread is what the README deploys with (a long export survives it)
@pytest.mark.parametrize("worker_args", [[], ["--worker-class", "gthread", "--threads", "4"]], ids=["sync", "gthread"])
def test_concurrent_shared_screenings_lose_nothing_and_duplicate_nothing(tmp_path, worker_args):
    path = tmp_path / "load.db"
    threads, per_thread = 8, 25
    attempted, acknowledged, failures = [], [], []
    lock = threading.Lock()

    def client(n):
        browser = Browser(server.url)  # one cookie jar per visitor, a fresh connection per request
        for k in range(per_thread):
            page = browser.get(FORM)
            fields = form_fields(page.text, shared_answers(n * 1000 + k))
            with lock:
                attempted.append(fields["nonce"])
            response = browser.post(FORM, fields)
            refs = references(response.text)
            with lock:
                if response.status == 200 and len(refs) == 1:
                    acknowledged.append(refs[0])
                else:
                    failures.append((response.status, response.text[:200]))

    with gunicorn_server(tmp_path, database=path, workers=4, args=worker_args) as server:
        workers = [threading.Thread(target=client, args=(n,)) for n in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        log = server.log()

    assert failures == []
    assert len(acknowledged) == threads * per_thread
    assert len(set(acknowledged)) == len(acknowledged)
    conn = open_db(path)
    try:
        rows = conn.execute("SELECT reference, nonce FROM submissions").fetchall()
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
    stored_refs = {r for r, _ in rows}
    assert set(acknowledged) <= stored_refs                      # nothing acknowledged is lost
    assert {n for _, n in rows} <= set(attempted)                # nothing stored that nobody sent
    assert len(rows) == len(acknowledged)                        # and nothing stored twice
    assert problems_in(log) == []


def test_a_refreshed_form_is_stored_once_and_shows_the_same_reference(tmp_path):
    path = tmp_path / "refresh.db"
    with gunicorn_server(tmp_path, database=path, workers=4) as server:
        browser = Browser(server.url)
        page = browser.get(FORM)
        fields = form_fields(page.text, shared_answers())
        first = browser.post(FORM, fields)
        again = browser.post(FORM, fields)          # the browser's "resend the form?" after a refresh
        other = share_once(browser, 2)              # a new form is a new screening
    assert first.status == again.status == other.status == 200
    assert references(first.text) == references(again.text) != []
    assert references(other.text) != references(first.text)
    conn = open_db(path)
    try:
        assert conn.execute("SELECT count(*) FROM submissions").fetchone()[0] == 2
    finally:
        conn.close()


def test_workers_share_one_secret_key_so_csrf_holds_across_workers(tmp_path):
    """Without SCREENING_SECRET_KEY each worker reads the instance key; if each made its own, a
    POST landing on another worker than its GET would fail CSRF (about 3 in 4 with 4 workers)."""
    path = tmp_path / "keys.db"
    with gunicorn_server(tmp_path, database=path, workers=4, secret_key=None) as server:
        statuses = [share_once(Browser(server.url), i).status for i in range(40)]
        log = server.log()
    assert statuses == [200] * 40
    key_file = tmp_path / "app" / "instance" / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert problems_in(log) == []


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit (util-linux)")
def test_a_full_disk_gives_a_503_without_reference_and_loses_nothing_acknowledged(tmp_path):
    """prlimit caps the size of every file the server writes (no root needed); the database is
    filled to just under the cap, so the server's writes start failing after a while."""
    path = tmp_path / "full.db"
    conn = open_db(path)
    dbmod.migrate(conn)
    conn.execute("CREATE TABLE filler (b BLOB)")
    with dbmod.immediate(conn):
        for _ in range(100):
            conn.execute("INSERT INTO filler VALUES (randomblob(4000))")
    conn.close()
    limit = path.stat().st_size + 64 * 1024
    acknowledged, refused, unexpected = [], [], []
    with gunicorn_server(tmp_path, database=path, workers=2, prefix=["prlimit", f"--fsize={limit}", "--"]) as server:
        for i in range(1000):
            response = share_once(Browser(server.url), i)
            if response.status == 200 and len(references(response.text)) == 1:
                acknowledged.append(references(response.text)[0])
            elif response.status == 503:
                refused.append(response.text)
            else:
                unexpected.append((response.status, response.text[:300]))
            if len(refused) >= 5:
                break
        log = server.log()

    assert unexpected == []
    assert acknowledged and len(refused) == 5        # both sides of the limit were reached
    for page in refused:
        assert references(page) == [] and "data-reference" not in page
        assert "Nothing was stored" in page
    assert "Traceback" not in log
    conn = open_db(path)
    try:
        stored = {r for (r,) in conn.execute("SELECT reference FROM submissions")}
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
    assert set(acknowledged) <= stored
