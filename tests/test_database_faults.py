"""A database the app cannot open or write (its folder gone or read-only, a -wal/-shm left by another
user) is the same outage as a failed write: the 503 page (JSON for the API), /healthz 503, a log line
that says what to fix by hand, and at start-up one line naming SCREENING_DATABASE; never a 500.

Tests run as root here, where permission bits do not stop writes: the app that must meet a
read-only folder or file then runs in a child process without the capabilities that let root ignore
them (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER); as any other user it runs as that user,
and the same modes stop it."""
import ctypes
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import all_no

from screening import create_app
from screening.store import db as dbmod
from screening.web.database import get_db

ROOT = os.geteuid() == 0
PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER = 1, 2, 3
SLUG = "back-massage"
SHARE = all_no(share="yes", name="Ana Client", contact="ana@example.org", consent="yes")


def shared_form():
    return dict(SHARE)


# --- in this process: the database's folder disappears under a running app --------------------------

@pytest.fixture
def moved_app(make_app, tmp_path):
    """An app started on data/screening.db, whose data/ folder is then moved away (an unmounted
    volume, a folder renamed by mistake): every new connection fails to open the file."""
    (tmp_path / "data").mkdir()
    app = make_app(DATABASE=str(tmp_path / "data" / "screening.db"))

    @app.get("/api/v1/_test/storage")
    def api_storage():
        return {"rows": get_db().execute("SELECT count(*) FROM submissions").fetchone()[0]}

    (tmp_path / "data").rename(tmp_path / "moved")
    return app


def test_healthz_is_503_when_the_folder_is_gone(moved_app):
    assert moved_app.test_client().get("/healthz").status_code == 503


def test_a_share_gets_the_503_page_when_the_folder_is_gone(moved_app):
    response = moved_app.test_client().post(f"/screening/{SLUG}", data=shared_form())
    assert response.status_code == 503
    assert "Nothing was stored" in response.text and "data-reference" not in response.text
    assert "unable to open" not in response.text and "Traceback" not in response.text


def test_a_staff_login_gets_the_503_page_when_the_folder_is_gone(moved_app):
    response = moved_app.test_client().post("/staff/login", data={"email": "a@centre.example", "password": "x" * 12})
    assert response.status_code == 503


def test_the_api_gets_a_503_in_json_when_the_folder_is_gone(moved_app):
    response = moved_app.test_client().get("/api/v1/_test/storage")
    assert response.status_code == 503
    assert response.get_json() == {"error": "storage", "fields": {}}


def test_the_503_log_line_says_the_folder_is_missing(moved_app, tmp_path, caplog):
    with caplog.at_level(logging.ERROR, logger="screening.web.security"):
        moved_app.test_client().get("/healthz")
    [line] = [r.getMessage() for r in caplog.records if r.name == "screening.web.security"]
    assert line.startswith("storage failure: ")
    assert f"the folder {tmp_path / 'data'} is missing: create it" in line


def test_a_mistake_in_a_statement_is_still_a_500_not_an_outage(make_app):
    app = make_app()

    @app.get("/_test/bad-statement")
    def bad_statement():
        get_db().execute("SELECT no_such_column FROM submissions")

    assert app.test_client().get("/_test/bad-statement").status_code == 500


# --- in a child process that cannot write: a read-only folder, a -shm left by another user ----------

CHILD = r"""
import json, sys
from screening import create_app
try:
    app = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False})
except Exception as e:
    print(json.dumps({"start": str(e)}), flush=True)
    sys.exit(0)
print(json.dumps({"start": "ok"}), flush=True)
client = app.test_client()
for line in sys.stdin:
    method, path, data = json.loads(line)
    # in English, as conftest's clients (the shipped centre's own language is Catalan)
    response = client.open(path, method=method, data=data, headers={"Accept-Language": "en"})
    print(json.dumps({"status": response.status_code, "text": response.get_data(as_text=True)}), flush=True)
"""


def without_root_powers():
    """In the child before exec: drop from the bounding set the capabilities that let root ignore
    permission bits, so that after exec it is held to the modes like any other user."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


class Child:
    """The app in another process that permission bits do stop, asked one request at a time."""

    def __init__(self, folder: Path):
        self.log = folder.parent / f"child-{len(list(folder.parent.glob('child-*')))}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SCREENING_", "FLASK_"))}
        env.update(SCREENING_DATABASE=str(folder / "screening.db"), SCREENING_SECRET_KEY="k" * 40)
        script = folder.parent / "child.py"
        script.write_text(CHILD)
        with open(self.log, "w") as log:
            self.process = subprocess.Popen([sys.executable, str(script)], cwd=folder.parent, env=env, text=True,
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                            preexec_fn=without_root_powers if ROOT else None)
        self.start = json.loads(self.process.stdout.readline())["start"]

    def ask(self, method, path, data=None):
        """One request; returns (status, page text)."""
        self.process.stdin.write(json.dumps([method, path, data]) + "\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline())
        return answer["status"], answer["text"]

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=30)

    def log_text(self):
        return self.log.read_text()


@pytest.fixture
def data_folder(tmp_path):
    """The database's folder, writable again at the end so that it can be removed."""
    folder = tmp_path / "data"
    folder.mkdir()
    yield folder
    folder.chmod(0o755)


@pytest.fixture
def child(data_folder):
    children = []

    def start():
        children.append(Child(data_folder))
        return children[-1]
    yield start
    for c in children:
        if c.process.poll() is None:
            c.close()


def test_a_folder_the_app_cannot_write_gives_503s_and_says_so(data_folder, child):
    first = child()
    assert first.start == "ok"
    first.close()                       # the last connection closes: -wal and -shm are removed
    # (the empty -writers file, where writers queue (db._writer_queue), stays; it is never written)
    assert sorted(p.name for p in data_folder.iterdir()) == ["screening.db", "screening.db-writers"]
    data_folder.chmod(0o555)            # now nobody can make them again

    app = child()
    # start-up must write (the migrations), so it refuses, naming the setting and what to fix
    assert app.start.startswith(f"SCREENING_DATABASE: cannot open and write {data_folder / 'screening.db'}: ")
    assert f"not writable by this process: {data_folder}." in app.start


def test_a_running_app_whose_folder_turns_read_only_answers_503(data_folder, child):
    app = child()
    assert app.start == "ok"
    data_folder.chmod(0o555)

    assert app.ask("GET", "/healthz")[0] == 503
    status, page = app.ask("POST", f"/screening/{SLUG}", shared_form())
    assert status == 503 and "Nothing was stored" in page and "data-reference" not in page
    assert app.ask("GET", "/")[0] == 200                 # the pages that need no database still work
    assert f"not writable by this process: {data_folder}." in app.log_text()
    assert "Traceback" not in app.log_text()


def leave_wal_and_shm_read_only(folder: Path) -> None:
    """What a command run as another user (root, say) and killed leaves behind: its -wal and -shm,
    which the app's user cannot write (mode 0444 stands for another owner)."""
    subprocess.run([sys.executable, "-c", (
        "import os, sys\nfrom screening.store import db\n"
        "conn = db.connect(sys.argv[1]); db.check_health(conn)\n"
        "os._exit(0)   # killed: no close, so the -wal and -shm stay\n"), str(folder / "screening.db")], check=True)
    for suffix in ("-wal", "-shm"):
        (folder / f"screening.db{suffix}").chmod(0o444)


def test_a_shm_left_read_only_gives_503_until_fixed_by_hand_and_the_log_says_what_to_fix(data_folder, child):
    app = child()
    assert app.start == "ok"
    leave_wal_and_shm_read_only(data_folder)
    database = data_folder / "screening.db"

    assert app.ask("GET", "/healthz")[0] == 503
    assert app.ask("POST", f"/screening/{SLUG}", shared_form())[0] == 503
    log = app.log_text()
    assert f"not writable by this process: {database}-wal, {database}-shm. Every write fails (503) until " \
           "that is fixed by hand" in log

    for suffix in ("-wal", "-shm"):
        (data_folder / f"screening.db{suffix}").chmod(0o666)   # the fix by hand
    assert app.ask("GET", "/healthz")[0] == 200
    status, page = app.ask("POST", f"/screening/{SLUG}", shared_form())
    assert status == 200 and "data-reference" in page


def test_a_connection_to_a_folder_that_cannot_be_written_is_a_storage_error_at_once(tmp_path):
    # as root, a folder whose path goes through a file stands for one the app cannot write
    (tmp_path / "a-file").write_text("")
    with pytest.raises(dbmod.StorageError, match="unable to open database file"):
        dbmod.connect(tmp_path / "a-file" / "screening.db")


def test_start_up_names_the_database_setting_when_the_file_cannot_be_opened(tmp_path):
    (tmp_path / "screening.db").write_text("this is not a database, just text " * 200)
    with pytest.raises(Exception, match=r"^SCREENING_DATABASE: cannot open and write .*screening\.db: "
                                        r"file is not a database$"):
        create_app({"TESTING": True, "SECRET_KEY": "k" * 40, "DATABASE": str(tmp_path / "screening.db")})
