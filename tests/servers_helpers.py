"""Several gunicorn app servers on one PostgreSQL database, and clients sharing against all of them
(tests/test_servers_postgres.py).

The servers are helpers_server.gunicorn_server, each in a folder of its own (so each has its own
instance folder, as two machines would), all with the same SCREENING_SECRET_KEY and
SCREENING_DATABASE_URL. Clients are helpers_server.Browser visitors with a real CSRF token; one
visitor keeps one cookie jar whichever server it talks to, as behind a load balancer (cookies are
per host, not per port, so 127.0.0.1's cookies go to every server of the test).
"""
from __future__ import annotations

import shutil
import threading
import time
from collections import Counter
from contextlib import ExitStack, contextmanager
from pathlib import Path

from helpers_server import (
    CONNECTION_LOST,
    FORM,
    Browser,
    app_folder,
    form_fields,
    gunicorn_server,
    references,
    shared_answers,
)

SECRET_KEY = "s" * 64
GTHREAD = ["--worker-class", "gthread", "--threads", "4"]


class ProxiedBrowser(Browser):
    """A visitor behind the servers' one reverse proxy (SCREENING_PROXY_COUNT=1), which says the
    visitor's address in X-Forwarded-For: so one test can be several client addresses."""

    def __init__(self, base_url: str, address: str):
        super().__init__(base_url)
        self.address = address
        self.headers = {**self.headers, "X-Forwarded-For": address}


def on(browser: Browser, url: str) -> Browser:
    """The same visitor (the same cookie jar), now talking to the server at `url`."""
    browser.base_url = url
    return browser


PROOF = "rules-proven"       # the rules' start-up proof in an instance folder (core.checker.PROOF_FILE)


@contextmanager
def app_servers(tmp_path: Path, database_url: str, *, count: int = 2, workers: int = 2,
                env: dict[str, str] | None = None, proof: Path | None = None):
    """`count` gunicorn servers (gthread, `workers` workers of 4 threads) on one PostgreSQL
    database, each with an instance folder of its own, started together; yields their
    helpers_server.Server list. `proof`: a file that hands the rules' start-up proof from server to
    server and test to test, as a restart finds it in its instance folder (the same rules each
    time); the proof itself is tested elsewhere, and making it again costs every worker seconds."""
    settings = {"SCREENING_DATABASE_URL": database_url,
                # an outage answers within a second, not the default 5 (the test waits less)
                "SCREENING_DATABASE_WAIT_SECONDS": "1",
                **(env or {})}
    folders = [tmp_path / f"server-{'abcdefgh'[n]}" for n in range(count)]
    for folder in folders:
        folder.mkdir()
        if proof is not None and proof.exists():
            shutil.copy(proof, app_folder(folder) / "instance" / PROOF)
    # SCREENING_DATABASE points into each server's own folder: unused with a URL
    managers = [gunicorn_server(folder, database=folder / "unused.db", workers=workers, secret_key=SECRET_KEY,
                                env=settings, args=GTHREAD) for folder in folders]
    with ExitStack() as stack:
        # started together, as servers behind one balancer often are (migrations: an advisory lock)
        started: list = [None] * count
        errors: list[BaseException] = []

        def start(n: int) -> None:
            try:
                started[n] = managers[n].__enter__()
            except BaseException as e:          # reported below, once every start has ended
                errors.append(e)

        threads = [threading.Thread(target=start, args=(n,)) for n in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for n in range(count):
            if started[n] is not None:
                stack.push(managers[n].__exit__)
        if errors:
            raise errors[0]
        if proof is not None and not proof.exists():
            made = folders[0] / "app" / "instance" / PROOF
            if made.exists():
                shutil.copy(made, proof)
        yield started


def stored_rows(database_url: str) -> list[tuple[str, str | None]]:
    """(reference, nonce) of every stored screening, read straight from PostgreSQL (no app)."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute("SELECT reference, nonce FROM submissions").fetchall()


class Load:
    """`clients` visitors sharing screenings against several servers until stopped (or
    `per_client` shares each). Visitor n sends its k-th share through server (n + k) % len; with
    `cross`, it fetched the form (and its CSRF token) from the next server, as a load balancer
    would split the two requests. A share whose server is gone counts as dropped; every answer
    is recorded: acknowledged references (when, through which server), 503s, anything else."""

    def __init__(self, urls: list[str], clients: int = 16, per_client: int = 400, *, first: int = 0,
                 cross: bool = False):
        self.urls, self.per_client, self.first, self.cross = urls, per_client, first, cross
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.attempted: set[str] = set()                   # nonces of every POST sent
        self.acknowledged: dict[str, tuple[float, str]] = {}   # reference shown -> (when, server URL)
        self.unavailable: list[tuple[float, str]] = []         # 503s: (when, server URL)
        self.statuses: Counter = Counter()                     # (server URL, status) of every answer
        self.dropped = 0                                       # requests that got no answer
        self.unexpected: list[tuple[str, int, str]] = []
        self.threads = [threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(clients)]
        for t in self.threads:
            t.start()

    def _client(self, n: int) -> None:
        browser = Browser(self.urls[0])
        for k in range(self.per_client):
            if self.stop.is_set():
                return
            post_to = self.urls[(n + k) % len(self.urls)]
            get_from = self.urls[(n + k + 1) % len(self.urls)] if self.cross else post_to
            try:
                page = on(browser, get_from).get(FORM)
                with self.lock:
                    self.statuses[(get_from, page.status)] += 1
                if page.status != 200:
                    with self.lock:
                        if page.status == 503:          # the form page too may need the database
                            self.unavailable.append((time.monotonic(), get_from))
                        else:
                            self.unexpected.append((get_from, page.status, page.text[:300]))
                    time.sleep(0.05)
                    continue
                fields = form_fields(page.text, shared_answers(self.first + n * 10_000 + k))
                with self.lock:
                    self.attempted.add(fields["nonce"])
                response = on(browser, post_to).post(FORM, fields)
            except CONNECTION_LOST:
                with self.lock:
                    self.dropped += 1
                time.sleep(0.05)
                continue
            refs = references(response.text)
            with self.lock:
                self.statuses[(post_to, response.status)] += 1
                if response.status == 200 and len(refs) == 1:
                    self.acknowledged[refs[0]] = (time.monotonic(), post_to)
                elif response.status == 503 and not refs and "Nothing was stored" in response.text:
                    self.unavailable.append((time.monotonic(), post_to))
                    time.sleep(0.05)
                else:
                    self.unexpected.append((post_to, response.status, response.text[:300]))

    def count(self, url: str | None = None, since: float = 0.0) -> int:
        """Shares acknowledged (through `url`, after `since`) so far."""
        with self.lock:
            return sum(1 for at, where in self.acknowledged.values() if at > since and url in (None, where))

    def count_unavailable(self, url: str | None = None) -> int:
        with self.lock:
            return sum(1 for _, where in self.unavailable if url in (None, where))

    def finish(self) -> None:
        """Stop the visitors and wait for them (each request is bounded by the browser's timeout)."""
        self.stop.set()
        for t in self.threads:
            t.join(timeout=90)
        assert not any(t.is_alive() for t in self.threads)
