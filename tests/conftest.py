"""Shared fixtures: an app on a fresh database per test, its clients, and answer builders."""
import pytest

from screening import create_app
from screening import db as dbmod
from screening.rules import default_rules_dir, load_rules

RED_FLAGS = ["intense_pain", "persistent_pain", "recent_injury", "radiating_pain", "tingling_or_weakness",
             "spinal_condition", "fever", "skin_problem_in_area", "ongoing_diagnosis"]
SLUGS = ["decontracting-back-massage", "back-massage", "decontracting-massage", "back-and-neck-massage",
         "deep-tissue-massage"]


def all_no(**overrides):
    """Form answers with every red flag and pregnancy answered 'no', plus overrides."""
    answers = {flag: "no" for flag in RED_FLAGS}
    answers.update(pregnant="no", tension_areas="thoracic", preferred_intensity="medium", notes="")
    answers.update(overrides)
    return answers


@pytest.fixture(scope="session")
def rules():
    return load_rules(default_rules_dir())


@pytest.fixture
def make_app(tmp_path):
    """Build an app on a database in tmp_path; keyword arguments override settings."""
    def build(**config):
        settings = {"TESTING": True, "SECRET_KEY": "test-secret-key-" + "x" * 32,
                    "DATABASE": str(tmp_path / "test.db"), "WTF_CSRF_ENABLED": False}
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
    """A connection to the test app's database, closed after the test."""
    conn = dbmod.connect(app.config["DATABASE"])
    yield conn
    conn.close()


@pytest.fixture
def make_submission(db):
    """Store a shared submission directly; keyword arguments override any column."""
    counter = iter(range(10**9))

    def build(**overrides):
        record = {"service": "decontracting-back-massage", "outcome": "proceed",
                  "answers": {f: "no" for f in RED_FLAGS} | {"pregnant": "no"},
                  "fired_rules": [], "suggestions": [], "rules_version": "test", "locale": "en",
                  "name": "Ana Client", "contact": "ana@example.org", "consent_at": dbmod.now()}
        nonce = overrides.pop("nonce", f"nonce-{next(counter)}")
        record.update(overrides)
        reference, _ = dbmod.store_submission(db, nonce=nonce, record=record)
        return dbmod.find_by_reference(db, reference)
    return build
