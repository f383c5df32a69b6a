"""The production cookie flags, live: real gunicorn behind TLS on loopback.

HTTP clients never send a Secure cookie over http://, so the only honest way to prove that the
staff cookie is Secure *and still works* is to speak HTTPS (RELIABILITY.md point 15).
"""
import http.cookiejar
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from screening.store import accounts
from screening.store import db as dbmod

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "a long live passphrase"


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 (cryptography if present, else openssl)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        if not shutil.which("openssl"):
            pytest.fail("this test needs the cryptography package or the openssl command to make a certificate")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True)
        return cert, key
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now)
                   .not_valid_after(now + datetime.timedelta(days=1)).sign(private, hashes.SHA256()))
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return cert, key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """Stop at a redirect, so its Set-Cookie header can be read."""

    def redirect_request(self, *args, **kwargs):
        return None


@pytest.fixture
def https_server(tmp_path):
    """gunicorn with two workers, TLS, and production cookie settings; yields its base URL."""
    database = tmp_path / "live.db"
    conn = dbmod.connect(database)
    dbmod.migrate(conn)
    accounts.create_staff(conn, email="ana@centre.example", password=PASSWORD, role="staff",
                          centre="exemple-barcelona")
    conn.close()
    cert, key = make_certificate(tmp_path)
    port = free_port()
    env = {**os.environ, "SCREENING_DATABASE": str(database), "SCREENING_SECRET_KEY": "live-test-key-" + "y" * 40,
           "SCREENING_SESSION_COOKIE_SECURE": "true"}
    log = (tmp_path / "gunicorn.log").open("w+")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2",
         "--certfile", str(cert), "--keyfile", str(key), "screening:create_app()"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"https://127.0.0.1:{port}"
    context = ssl._create_unverified_context()   # our own throwaway certificate
    try:
        deadline = time.monotonic() + 30
        while True:
            if server.poll() is not None:
                log.seek(0)
                pytest.fail(f"gunicorn exited: {log.read()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/healthz", context=context, timeout=2) as r:  # noqa: S310
                    if r.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("gunicorn did not answer over https within 30 s")
                time.sleep(0.2)
        yield base, context
    finally:
        server.terminate()
        server.wait(timeout=15)
        log.close()


@pytest.mark.slow
def test_over_https_the_staff_cookie_is_secure_httponly_lax_and_works(https_server):
    base, context = https_server
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context),
                                         urllib.request.HTTPCookieProcessor(jar), NoRedirect)
    opener.addheaders = [("Accept-Language", "en")]   # the checks below read English words

    with opener.open(f"{base}/staff/login", timeout=10) as page:
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.read().decode()).group(1)
    form = urllib.parse.urlencode({"email": "ana@centre.example", "password": PASSWORD,
                                   "csrf_token": token}).encode()
    # a browser sends Referer on an HTTPS POST; Flask-WTF's strict check needs it (RELIABILITY.md 14)
    request = urllib.request.Request(f"{base}/staff/login", data=form, headers={"Referer": f"{base}/staff/login"})
    with pytest.raises(urllib.error.HTTPError) as redirect:
        opener.open(request, timeout=10)
    assert redirect.value.code == 302 and redirect.value.headers["Location"] == "/staff/"
    staff_cookie = [c for c in redirect.value.headers.get_all("Set-Cookie") if c.startswith("screening_staff=")]
    assert len(staff_cookie) == 1
    flags = [part.strip() for part in staff_cookie[0].split(";")]
    assert "Secure" in flags and "HttpOnly" in flags and "SameSite=Lax" in flags

    with opener.open(f"{base}/staff/", timeout=10) as dashboard:
        assert dashboard.status == 200 and dashboard.url == f"{base}/staff/"
        assert dashboard.headers["Cache-Control"] == "no-store"
        assert ">Log out</button>" in dashboard.read().decode()
