"""Run the real app under gunicorn for tests, and talk to it like a browser would.

The server runs in its own process group, which `gunicorn_server` always kills, and logs to a file
the test reads afterwards. It binds port 0 and reads the port gunicorn chose from its log, so two
test runs never fight over a port.

The package is reached through a symlink in a temporary folder, so that Flask's instance folder
(where the shared secret key is created when SCREENING_SECRET_KEY is unset) is that temporary
folder and not the checkout's `instance/`: the key logic runs unchanged, on a folder of its own.
"""
from __future__ import annotations

import html
import http.client
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from http.cookiejar import CookieJar
from pathlib import Path

from conftest import all_no

import screening

PACKAGE_DIR = Path(screening.__file__).resolve().parent
READY = "screening-test: worker ready"
# gunicorn calls post_worker_init after the worker has loaded the app (create_app has run), so one
# READY line per worker means every worker booted; a worker that fails to boot never prints it.
GUNICORN_CONF = f"""
def post_worker_init(worker):
    worker.log.info("{READY} %s", worker.pid)
"""
START_TIMEOUT = 30  # a generous bound for a wait, not an assertion about speed


@dataclass
class Server:
    """A running gunicorn: its base URL, its process and its log file."""

    url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        """Everything the arbiter and workers have logged so far."""
        return self.log_path.read_text(errors="replace")


def app_folder(tmp_path: Path) -> Path:
    """A folder holding a symlink to the package; its `instance/` is the app's instance folder."""
    folder = tmp_path / "app"
    folder.mkdir(exist_ok=True)
    link = folder / "screening"
    if not link.exists():
        link.symlink_to(PACKAGE_DIR, target_is_directory=True)
    # as in a deployment, the instance folder exists, so the start-up proof of the rules is made
    # once and remembered there (checker.prove), not again by every worker of every restart
    (folder / "instance").mkdir(exist_ok=True)
    return folder


@contextmanager
def gunicorn_server(tmp_path: Path, *, database: Path, workers: int = 4, secret_key: str | None = "k" * 64,
                    env: dict[str, str] | None = None, prefix: list[str] | None = None,
                    args: list[str] | None = None):
    """Start `gunicorn 'screening:create_app()'` with `workers` workers on `database`; yield a Server
    once every worker has loaded the app. `secret_key=None` leaves SCREENING_SECRET_KEY unset.
    `prefix` is put before the command (for example `prlimit --fsize=...`), `args` after its options
    (for example `--worker-class gthread`). Always killed at the end."""
    folder = app_folder(tmp_path)
    conf = tmp_path / "gunicorn_test.conf.py"
    conf.write_text(GUNICORN_CONF)
    log_path = tmp_path / f"gunicorn-{time.monotonic_ns()}.log"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("SCREENING_")}
    child_env.update({"SCREENING_DATABASE": str(database), "PYTHONPATH": str(folder), "PYTHONUNBUFFERED": "1",
                      # load tests share hundreds of times from one loopback address; `env` may set a limit
                      "SCREENING_SHARE_LIMIT_PER_HOUR": "0"})
    if secret_key is not None:
        child_env["SCREENING_SECRET_KEY"] = secret_key
    child_env.update(env or {})
    command = [*(prefix or []), sys.executable, "-m", "gunicorn", "--config", str(conf), "--workers", str(workers),
               "--bind", "127.0.0.1:0", "--log-level", "info", "--error-logfile", "-", "--timeout", "30",
               "--graceful-timeout", "5",
               # the control socket defaults to one path in $HOME, shared by every gunicorn of the user
               "--no-control-socket", *(args or []), "screening:create_app()"]
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(command, cwd=folder, env=child_env, stdout=log_file, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    server = Server("", process, log_path)
    try:
        server.url = _wait_until_ready(server, workers)
        yield server
    finally:
        stop(process)


def _wait_until_ready(server: Server, workers: int) -> str:
    """The server's URL once it listens and `workers` workers have loaded the app."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        log = server.log()
        port = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", log)
        if port and log.count(READY) >= workers:
            return f"http://127.0.0.1:{port.group(1)}"
        if server.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.process.returncode}:\n{log}")
        time.sleep(0.05)
    raise RuntimeError(f"gunicorn did not get {workers} workers ready:\n{server.log()}")


def stop(process: subprocess.Popen) -> None:
    """Stop the whole process group: TERM, then KILL if it lingers."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    try:  # workers orphaned by a killed arbiter are in the same group
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# --- a browser without JavaScript ------------------------------------------------------------------

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    text: str


class Browser:
    """One visitor: a cookie jar, a fresh connection per request, no redirects followed."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.cookies = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirect())
        # a visitor whose browser asks for English (the shipped centre's own language is Catalan)
        self.headers = {"Accept-Language": "en"}

    def request(self, path: str, data: dict | list | None = None) -> Response:
        """GET, or POST `data` form-encoded; 4xx and 5xx come back as responses, not exceptions."""
        body = urllib.parse.urlencode(data, doseq=True).encode() if data is not None else None
        req = urllib.request.Request(self.base_url + path, data=body, headers=self.headers)
        try:
            with self.opener.open(req, timeout=60) as resp:
                return Response(resp.status, dict(resp.headers), resp.read().decode())
        except urllib.error.HTTPError as e:
            with e:
                return Response(e.code, dict(e.headers), e.read().decode())

    def get(self, path: str) -> Response:
        return self.request(path)

    def post(self, path: str, data: dict | list) -> Response:
        return self.request(path, data)


# --- reading pages ---------------------------------------------------------------------------------

_INPUT = re.compile(r"<input\b[^>]*>", re.S)
_ATTR = re.compile(r'([\w-]+)\s*=\s*"([^"]*)"')


def hidden_value(page: str, name: str) -> str | None:
    """The value of the <input name=...> in the page (the CSRF token, the nonce), or None."""
    for tag in _INPUT.findall(page):
        attrs = dict(_ATTR.findall(tag))
        if attrs.get("name") == name:
            return html.unescape(attrs.get("value", ""))
    return None


def checked_inputs(page: str) -> set[tuple[str, str]]:
    """(name, value) of every radio or checkbox the page shows as checked."""
    found = set()
    for tag in _INPUT.findall(page):
        attrs = dict(_ATTR.findall(tag))
        if re.search(r"\schecked\b", tag) and "name" in attrs:
            found.add((attrs["name"], html.unescape(attrs.get("value", ""))))
    return found


def references(page: str) -> list[str]:
    """Every reference shown in the page (elements carrying data-reference)."""
    return re.findall(r"<[^>]*\bdata-reference\b[^>]*>\s*([^<\s]+)\s*<", page)


def form_fields(page: str, answers: dict) -> dict:
    """What a browser would post from the questionnaire page: its hidden fields plus `answers`."""
    fields = {}
    for name in ("csrf_token", "nonce"):
        value = hidden_value(page, name)
        if value is not None:
            fields[name] = value
    fields.update(answers)
    return fields


# --- sharing a screening, and reading the server's log -------------------------------------------------

SLUG = "decontracting-back-massage"
FORM = f"/screening/{SLUG}"


def shared_answers(i=0):
    """A complete shared screening; `i` varies the client."""
    return all_no(share="yes", name=f"Client {i}", contact=f"client{i}@example.org", consent="yes")


def share_once(browser, i=0):
    """GET the form, POST it shared; return the POST's response."""
    page = browser.get(FORM)
    assert page.status == 200
    return browser.post(FORM, form_fields(page.text, shared_answers(i)))


def problems_in(log, *, allow=()):
    """Lines of a server log that show something went wrong in a worker (except those containing
    one of `allow`)."""
    bad = ("Traceback", "database is locked", "Worker failed to boot", "Exception in worker", "WORKER TIMEOUT",
           " ERROR ", "[ERROR]", "CRITICAL")
    return [line for line in log.splitlines()
            if any(b in line for b in bad) and not any(a in line for a in allow)]


# --- killing a server, and what must hold after ------------------------------------------------------

# A dropped connection: what a client sees from a worker killed in the middle of its request, or
# from a server that is gone (URLError wraps "connection refused").
CONNECTION_LOST = (OSError, http.client.HTTPException)


def worker_pids(server: Server) -> set[int]:
    """The arbiter's live children: its workers right now."""
    try:
        text = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text()
    except FileNotFoundError:
        return set()
    return {int(pid) for pid in text.split()}


def kill_group(server: Server) -> None:
    """kill -9 of the arbiter and every worker at once (a power cut, the OOM killer on the group),
    then wait until no process of the group is left, so the next start finds the file free."""
    try:
        os.killpg(server.process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    server.process.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(server.process.pid, 0)     # orphaned workers, until init has reaped them
        except ProcessLookupError:
            return
        time.sleep(0.02)
    raise RuntimeError("processes of the killed group are still alive")


def wait_for(condition, timeout: float = START_TIMEOUT, what: str = "condition"):
    """Poll `condition()` until it returns something true; bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def stored_screenings(path: Path) -> dict[str, dict]:
    """Every stored screening by reference, read straight from the file (no app involved), after
    checking that the file is whole (`PRAGMA integrity_check`)."""
    from screening.store import db as dbmod

    conn = dbmod.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        return {row["reference"]: row for row in conn["submissions"].rows}
    finally:
        conn.close()

