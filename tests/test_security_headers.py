"""Every response carries the security headers, errors included (RELIABILITY.md point 19), and the
pages need nothing the policy forbids: no inline script or style, nothing from another host."""
import re
from pathlib import Path

import pytest
from conftest import SLUGS, all_no

from screening.store import db as dbmod

ROOT = Path(__file__).resolve().parent.parent
FORM = "/screening/decontracting-back-massage"
REQUIRED_CSP = {"default-src": "'self'", "object-src": "'none'", "base-uri": "'none'", "form-action": "'self'",
                "frame-ancestors": "'none'"}
TOO_LARGE = "x" * (80 * 1024)   # over the 64 KiB MAX_CONTENT_LENGTH


def csp(response):
    """The Content-Security-Policy as {directive: sources}."""
    policy = {}
    for part in response.headers.get("Content-Security-Policy", "").split(";"):
        words = part.split()
        if words:
            policy[words[0]] = " ".join(words[1:])
    return policy


def assert_secure_headers(response):
    policy = csp(response)
    for directive, sources in REQUIRED_CSP.items():
        assert policy.get(directive) == sources, (directive, response.status_code)
    assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"]
    assert response.headers.get("X-Content-Type-Options") == "nosniff"
    assert response.headers.get("Referrer-Policy") == "same-origin"


def count(app):
    conn = dbmod.connect(app.config["DATABASE"])
    try:
        return conn.execute("SELECT count(*) FROM submissions").fetchone()[0]
    finally:
        conn.close()


def shared(**overrides):
    return all_no(share="yes", name="Ana", contact="ana@example.org", consent="yes", nonce="n" * 24, **overrides)


PAGES = ["/", *[f"/services/{s}" for s in SLUGS], *[f"/screening/{s}" for s in SLUGS], "/healthz",
         "/static/style.css", "/static/questionnaire.js", "/api/v1/services", "/api/v1/openapi.json",
         f"/api/v1/questionnaire/{SLUGS[0]}"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_carries_the_security_headers(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert_secure_headers(response)


@pytest.mark.parametrize(("method", "path", "kwargs", "status"), [
    ("get", "/no-such-page", {}, 404),
    ("get", "/services/no-such-service", {}, 404),
    ("get", "/api/v1/questionnaire/no-such-service", {}, 404),
    ("put", FORM, {}, 405),
    ("get", "/api/v1/evaluate", {}, 405),
    ("post", FORM, {"data": shared(fever="")}, 422),
    ("post", "/api/v1/evaluate", {"json": {"service": SLUGS[0], "answers": {}}}, 422),
    ("post", "/api/v1/evaluate", {"data": "{not json", "content_type": "application/json"}, 400),
])
def test_error_responses_carry_the_security_headers(client, method, path, kwargs, status):
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status
    assert_secure_headers(response)
    assert "Traceback" not in response.text


def test_the_results_carry_the_security_headers(client):
    for data in (all_no(), shared()):
        response = client.post(FORM, data=data)
        assert response.status_code == 200
        assert_secure_headers(response)


def test_a_refused_csrf_token_carries_the_security_headers(csrf_app):
    response = csrf_app.test_client().post(FORM, data=all_no())
    assert response.status_code == 400
    assert_secure_headers(response)


@pytest.mark.parametrize("fixture", ["app", "csrf_app"])
def test_a_form_over_the_size_limit_is_a_413_page_and_stores_nothing(request, fixture):
    app = request.getfixturevalue(fixture)
    response = app.test_client().post(FORM, data=shared(notes=TOO_LARGE))
    assert response.status_code == 413
    assert response.mimetype == "text/html"
    assert "too large" in response.text and "data-reference" not in response.text
    assert_secure_headers(response)
    assert count(app) == 0


def test_a_json_body_over_the_size_limit_is_a_413_in_json(client):
    response = client.post("/api/v1/evaluate", json={"service": SLUGS[0], "answers": {"notes": TOO_LARGE}})
    assert response.status_code == 413
    assert response.is_json and response.get_json()["error"]
    assert_secure_headers(response)


def test_an_unexpected_error_is_a_500_page_with_the_headers_and_no_traceback(make_app):
    app = make_app()

    @app.get("/test-only-boom")
    def boom():
        raise RuntimeError("test-only failure")

    response = app.test_client().get("/test-only-boom")
    assert response.status_code == 500
    assert response.mimetype == "text/html"
    assert "test-only failure" not in response.text and "Traceback" not in response.text
    assert_secure_headers(response)


# --- what the pages themselves contain -------------------------------------------------------------

def public_pages(client):
    """The HTML of every public page a client can see, results and refusals included."""
    pages = [client.get(path).text for path in PAGES if not path.startswith(("/api/", "/static/", "/healthz"))]
    pages.append(client.post(FORM, data=all_no(intense_pain="yes", professional_cleared="no",
                                               preferred_intensity="light", tension_areas="neck")).text)
    pages.append(client.post(FORM, data=shared()).text)
    pages.append(client.post(FORM, data=shared(fever="")).text)
    pages.append(client.get("/no-such-page").text)
    return pages


def test_no_public_page_has_inline_script_or_style_that_the_policy_would_block(client):
    for page in public_pages(client):
        scripts = re.findall(r"<script\b[^>]*>", page, re.I)
        assert all(re.search(r"\bsrc\s*=", tag) for tag in scripts), scripts
        assert not re.search(r"<style\b", page, re.I)
        assert not re.search(r"\sstyle\s*=", page, re.I)
        assert not re.search(r"\son[a-z]+\s*=", page, re.I)      # onclick=, onload=...
        assert "javascript:" not in page.lower()


def test_no_template_or_static_file_loads_anything_from_another_host():
    files = [p for folder in ("templates", "static") for p in (ROOT / folder).rglob("*") if p.is_file()]
    assert files
    for path in files:
        text = path.read_text(errors="replace")
        # an XML namespace is a name, not something a browser fetches
        urls = [u for u in re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"'<>)]*", text)
                if not u.startswith(("http://www.w3.org/", "https://www.w3.org/"))]
        assert urls == [], path


# --- the app's own files are at /static/, in a checkout and once installed ---------------------------

def assert_static_files_served_at_static(client):
    """The page links its files under /static/, they are served there and may be cached."""
    page = client.get("/").text
    assert 'href="/static/style.css"' in page
    for path in ("/static/style.css", "/static/questionnaire.js"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers.get("Cache-Control") != "no-store"
        assert_secure_headers(response)
    assert client.get("/bundled_static/style.css").status_code == 404


def test_a_checkout_serves_its_files_at_static(client):
    assert_static_files_served_at_static(client)


def test_the_installed_layout_serves_its_files_at_static_too(make_app, monkeypatch, tmp_path):
    """`pip install .` puts static/ and templates/ inside the package as bundled_static/ and
    bundled_templates/ (pyproject.toml); here that layout is made beside a stand-in package folder."""
    import shutil

    import screening

    package = tmp_path / "site-packages" / "screening"
    shutil.copytree(ROOT / "static", package / "bundled_static")
    shutil.copytree(ROOT / "templates", package / "bundled_templates")
    monkeypatch.setattr(screening, "HERE", package)
    app = make_app()
    assert app.static_folder == str(package / "bundled_static")
    assert_static_files_served_at_static(app.test_client())


INSTALLED_CHECK = r"""
import sys
import screening
assert screening.__file__.startswith(sys.argv[1]), screening.__file__
app = screening.create_app({"TESTING": True, "SECRET_KEY": "k" * 40, "DATABASE": sys.argv[2]})
client = app.test_client()
print(app.static_folder)
print(client.get("/").status_code, 'href="/static/style.css"' in client.get("/").text)
response = client.get("/static/style.css")
print(response.status_code, response.headers.get("Cache-Control"))
print(client.get("/bundled_static/style.css").status_code)
"""


@pytest.mark.slow
def test_after_pip_install_the_files_are_at_static(tmp_path):
    """A real (not editable) `pip install` of the project, into a folder put first on the path."""
    import os
    import shutil
    import subprocess
    import sys

    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("screening", "templates", "rules", "static"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(source)],
                   check=True, capture_output=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCREENING_", "FLASK_"))}
    env["PYTHONPATH"] = str(site)
    done = subprocess.run([sys.executable, "-c", INSTALLED_CHECK, str(site), str(tmp_path / "x.db")], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    folder, page, static, bundled = done.stdout.splitlines()
    assert folder == str(site / "screening" / "bundled_static")
    assert page == "200 True"
    assert static.startswith("200 ") and static != "200 no-store"
    assert bundled == "404"
