"""Shared fixtures: an app on a fresh database per test, its clients, and answer builders."""
import shutil
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from screening import create_app
from screening.core.rules import default_rules_dir, load_rules
from screening.store import db as dbmod

RED_FLAGS = ["intense_pain", "persistent_pain", "recent_injury", "radiating_pain", "tingling_or_weakness",
             "spinal_condition", "fever", "skin_problem_in_area", "ongoing_diagnosis"]
CENTRE = "exemple-barcelona"     # the one centre rules/ ships, which the app then serves by default
SLUGS = ["decontracting-back-massage", "back-massage", "decontracting-massage", "back-and-neck-massage",
         "deep-tissue-massage"]


def all_no(**overrides):
    """Form answers with every red flag and pregnancy answered 'no', plus overrides."""
    answers = {flag: "no" for flag in RED_FLAGS}
    answers.update(pregnant="no", tension_areas="thoracic", preferred_intensity="medium", notes="")
    answers.update(overrides)
    return answers


@pytest.fixture
def rules_copy(tmp_path):
    """A copy of the shipped rules/ folder, to change one thing in."""
    target = tmp_path / "rules"
    shutil.copytree(default_rules_dir(), target)
    return target


def edit(folder: Path, file: str, old: str, new: str) -> None:
    """Replace one exact piece of a rule file (the test fails if the piece is not there)."""
    path = folder / file
    text = path.read_text()
    assert old in text, f"{old!r} not in {file}"
    path.write_text(text.replace(old, new, 1))


class EnglishClient(FlaskClient):
    """A test client whose requests say `Accept-Language: en` unless a test says otherwise: the
    shipped centre's default language is Catalan, and most tests read the English texts.
    `app.test_client(accept_language=None)` gives a client that names no language."""

    def __init__(self, *args, accept_language: str | None = "en", **kwargs):
        super().__init__(*args, **kwargs)
        if accept_language:
            self.environ_base["HTTP_ACCEPT_LANGUAGE"] = accept_language


@pytest.fixture(autouse=True)
def _english_test_clients(monkeypatch):
    """Every app's test_client() is an EnglishClient (apps built by create_app directly too)."""
    monkeypatch.setattr(Flask, "test_client_class", EnglishClient)
def add_centre(folder: Path, slug: str, *, name: str, timezone: str = "Europe/Madrid",
               notify_to: str | None = None) -> Path:
    """Add a centre file to a rules folder: a copy of the shipped centre with another slug, name,
    time zone and notice address (none when notify_to is None)."""
    text = (folder / "centres" / f"{CENTRE}.toml").read_text()
    for old, new in [('name = "Espai Massatge Exemple"', f'name = "{name}"'),
                     ('timezone = "Europe/Madrid"', f'timezone = "{timezone}"'),
                     ('notify_to = "recepcio@exemple.example.org"', f'notify_to = "{notify_to}"' if notify_to else "")]:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = folder / "centres" / f"{slug}.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def rules():
    return load_rules(default_rules_dir())


# --- the two engines ---------------------------------------------------------------------------------
# The tests of these modules run on both engines (SQLite, and a throwaway PostgreSQL server): they
# store or read what can differ between engines. The others (SQLite's own mechanisms, rules, pages
# that never reach the database) run once, on SQLite.
BOTH_ENGINES = {
    "test_accounts", "test_audit", "test_auth", "test_centre_data", "test_crash_safety", "test_dashboard",
    "test_engines", "test_export", "test_fuzz_routes", "test_notify", "test_public", "test_retention",
    "test_search_engines", "test_search_fts", "test_share_limit", "test_staff_session_end",
    "test_status_history", "test_storage", "test_submission_detail", "test_centre_routes", "test_staff_cli",
    "test_cli", "test_privacy", "test_route_guard", "test_search_privacy",
    "test_account_page", "test_login_devices", "test_retention_days", "test_team_page", "test_account_links",
    "test_data_requests", "test_withdrawal", "test_second_factor", "test_share_path",
}


def pytest_generate_tests(metafunc):
    """Run the tests of BOTH_ENGINES modules once per engine."""
    module = metafunc.module.__name__.rpartition(".")[2]
    if metafunc.definition.get_closest_marker("sqlite_only"):
        return
    if "engine" in metafunc.fixturenames and module in BOTH_ENGINES:
        metafunc.parametrize("engine", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def engine(request):
    """The engine of this test's database: 'sqlite', unless the module runs on both."""
    return getattr(request, "param", "sqlite")


@pytest.fixture(scope="session")
def postgres_template(postgres_url):
    """A database migrated to the current schema, which each test's database is a copy of."""
    from postgres_server import create_database
    url = create_database(postgres_url, "screening_template")
    conn = dbmod.connect(url)
    try:
        dbmod.migrate(conn)
    finally:
        conn.close()
    return "screening_template"


_databases = iter(range(10**9))


@pytest.fixture
def database_target(engine, tmp_path, request):
    """This test's database: an SQLite file in tmp_path, or a new PostgreSQL database (a copy of the
    migrated template), dropped after the test with every pool of it closed."""
    if engine == "sqlite":
        yield str(tmp_path / "test.db")
        return
    from postgres_server import create_database, drop_database

    from screening.store import engine_postgres
    server, template = request.getfixturevalue("postgres_url"), request.getfixturevalue("postgres_template")
    name = f"test_{next(_databases)}"
    url = create_database(server, name, template=template)
    yield url
    engine_postgres.close_pools(url)
    drop_database(server, name)


TEST_SECRET_KEY = "test-secret-key-" + "x" * 32


@pytest.fixture
def make_app(database_target, engine):
    """Build an app on this test's database; keyword arguments override settings."""
    def build(**config):
        # every test client shares from 127.0.0.1: the per-address share limit is off unless a test
        # sets it (tests/test_share_limit.py). The daily purge is off unless a test sets it
        # (tests/test_retention_days.py): tests store screenings of any age on purpose, and a
        # purge thread started by their first request would delete them under their feet.
        settings = {"TESTING": True, "SECRET_KEY": TEST_SECRET_KEY,
                    "WTF_CSRF_ENABLED": False, "SHARE_LIMIT_PER_HOUR": 0, "AUTO_PURGE": False}
        settings["DATABASE_URL" if engine == "postgresql" else "DATABASE"] = database_target
        settings.update(config)
        return create_app(settings)
    return build


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def csrf_app(make_app):
    """The same app with CSRF protection on, as in production."""
    return make_app(WTF_CSRF_ENABLED=True)


@pytest.fixture
def db(app):
    """A connection to the test app's database (either engine), closed after the test."""
    conn = dbmod.connect(app.config.get("DATABASE_URL") or app.config["DATABASE"])
    yield conn
    conn.close()


@pytest.fixture
def db_file(tmp_path):
    """A migrated database file in WAL mode, apart from the app fixtures."""
    file = tmp_path / "standalone.db"
    conn = dbmod.connect(file)
    dbmod.migrate(conn)
    conn.close()
    return file


@pytest.fixture
def conn_target(engine, request):
    """A migrated database apart from the app fixtures: `db_file` on SQLite, this test's PostgreSQL database."""
    return str(request.getfixturevalue("db_file" if engine == "sqlite" else "database_target"))


@pytest.fixture
def conn(conn_target):
    """A connection to `conn_target`, closed after the test."""
    conn = dbmod.connect(conn_target)
    yield conn
    conn.close()


@pytest.fixture
def make_submission(db):
    """Store a shared submission directly (of CENTRE unless centre= says); keyword arguments
    override any column."""
    counter = iter(range(10**9))

    def build(centre=CENTRE, **overrides):
        record = {"service": "decontracting-back-massage", "outcome": "proceed",
                  "answers": {f: "no" for f in RED_FLAGS} | {"pregnant": "no"},
                  "fired_rules": [], "suggestions": [], "rules_version": "test", "locale": "en",
                  "name": "Ana Client", "contact": "ana@example.org", "consent_at": dbmod.now()}
        nonce = overrides.pop("nonce", f"nonce-{next(counter)}")
        record.update(overrides)
        # rows built for a test, not a client sending the same screening twice: no resend check
        reference = dbmod.store_screening(db, nonce=nonce, record=record, centre=centre, resend_within=0).reference
        return dbmod.find_by_reference(db, reference)
    return build


# --- staff accounts and logged-in clients (screening/store/accounts.py, screening/web/auth.py) ---------------

import re  # noqa: E402
import time  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

from argon2 import PasswordHasher  # noqa: E402

from screening.store import accounts  # noqa: E402

STAFF_PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _fast_logins(monkeypatch):
    """Cheap argon2 parameters, so the suite stays fast. Production keeps the library's defaults
    (tests/test_accounts.py checks the rehash on login)."""
    monkeypatch.setattr(accounts, "hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


# the TOTP secret of each account given a second factor by the tests, by e-mail: login() reads it
TOTP_SECRETS: dict[str, str] = {}


def give_second_factor(conn, staff: dict, secret_key: str = TEST_SECRET_KEY) -> str:
    """Set up a second factor for an account straight through the store, as the set-up page would
    after a confirmed code; remember its secret for login(); return the secret."""
    import pyotp

    from screening.store import second_factor
    secret = pyotp.random_base32()
    second_factor.enable(conn, staff, secret, second_factor.derive_key(secret_key))
    TOTP_SECRETS[staff["email"]] = secret
    return secret


@pytest.fixture
def make_staff(db, app):
    """Create a staff account: make_staff(role="admin", email=..., password=..., name=..., centre=...).
    Returns the account (id, email, name, role, active, centre...) plus the "password" used. An
    admin is given a second factor (SCREENING_STAFF_2FA=admins, the default, asks admins for one):
    its secret is in "totp", and login() types its code; second_factor=False gives none."""
    counter = iter(range(10**9))

    def build(role="staff", email=None, password=STAFF_PASSWORD, name=None, centre=CENTRE, second_factor=None):
        email = email or f"{role}{next(counter)}@centre.example"
        staff = accounts.create_staff(db, email=email, password=password, name=name or f"Sam {role.title()}",
                                      role=role, centre=centre)
        TOTP_SECRETS.pop(staff["email"], None)
        totp = None
        if second_factor if second_factor is not None else role == "admin":
            totp = give_second_factor(db, staff, app.config["SECRET_KEY"])
        return {**staff, "password": password, "totp": totp}
    return build


def csrf_token_from(html: str) -> str | None:
    """The csrf_token hidden field's value in a page, if any."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    return match.group(1) if match else None


def login(client, email, password, next=None):
    """Log in through the real login form (fetching its CSRF token first); returns the POST's
    response. When the account has a second factor (its secret in TOTP_SECRETS), the password's
    redirect to the code page is followed and the code typed: the response is then the code
    step's, the same redirect to the page after login as an account without one gets."""
    page = client.get("/staff/login")
    data = {"email": email, "password": password}
    token = csrf_token_from(page.get_data(as_text=True))
    if token:
        data["csrf_token"] = token
    if next is not None:
        data["next"] = next
    response = client.post("/staff/login", data=data)
    if response.status_code == 302 and urlsplit(response.location).path == CODE_PAGE:
        response = type_code(client, response.location, email)
    return response


CODE_PAGE = "/staff/login/code"


def totp_code(conn, email: str) -> str:
    """A code of the account's app that the server will take: of a later time step than the last
    one accepted. Tests log the same account in several times within one 30-second step, which a
    person never does (they wait for the next code): then the last step is wound back, which is
    what a person's waiting would do."""
    import pyotp
    email = accounts.normalize_email(email)
    totp = pyotp.TOTP(TOTP_SECRETS[email])
    last = conn.execute("SELECT totp_last_step FROM staff WHERE email = ?", [email]).fetchone()
    now_step = totp.timecode(time.time())
    for step in (now_step, now_step + 1):
        if last is None or last[0] is None or step > last[0]:
            return totp.generate_otp(step)
    with conn.transaction():
        conn.execute("UPDATE staff SET totp_last_step = ? WHERE email = ?", [now_step - 1, email])
    return totp.generate_otp(now_step)


def type_code(client, location: str, email: str):
    """On the code page the password led to, type the account's current code; the POST's response."""
    page = client.get(location)
    data = {}
    token = csrf_token_from(page.get_data(as_text=True))
    if token:
        data["csrf_token"] = token
    conn = dbmod.connect(database_of(client.application))
    try:
        data["code"] = totp_code(conn, email)
    finally:
        conn.close()
    return client.post(location, data=data)


def logged_in_client(app, make_staff, role="staff"):
    """A test client of `app` logged in through the form as a new account of `role` (in .staff)."""
    c = app.test_client()
    c.staff = make_staff(role=role)
    assert login(c, c.staff["email"], c.staff["password"]).status_code == 302
    return c


@pytest.fixture
def staff_client(app, make_staff):
    """A test client logged in as a staff member (not admin); the account is in .staff."""
    return logged_in_client(app, make_staff, "staff")


@pytest.fixture
def admin_client(app, make_staff):
    """A test client logged in as an admin; the account is in .staff."""
    return logged_in_client(app, make_staff, "admin")


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL server for the whole session (tests/postgres_server.py), started on first use."""
    from postgres_server import postgres_server
    with postgres_server() as url:
        yield url


def database_of(app) -> str:
    """What an app's database is, whichever the engine: a file's path or a postgresql:// URL."""
    return app.config.get("DATABASE_URL") or app.config["DATABASE"]


def search(client, words="", **filters):
    """Search the dashboard as staff do (issue 16): post the words with the other filters (and the
    page's CSRF token when the app checks it), then follow the redirect to the page that names the
    search by its id. Returns the dashboard's response; its `request.url` is the page's URL."""
    data = {"q": words, **{("from" if k == "date_from" else "to" if k == "date_to" else k): v
                           for k, v in filters.items()}}
    token = csrf_token_from(client.get("/staff/").get_data(as_text=True))
    if token:
        data["csrf_token"] = token
    return client.post("/staff/", data=data, follow_redirects=True)


def search_url(client, words="", **filters) -> str:
    """The dashboard URL (path and query) a posted search lands on: `?search=<id>` and filters."""
    response = search(client, words, **filters)
    assert response.status_code == 200, response.status_code
    url = urlsplit(response.request.url)
    return f"{url.path}?{url.query}" if url.query else url.path
