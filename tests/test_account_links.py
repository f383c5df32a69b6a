"""Account e-mails: an invitation (72 hours) and a password reset (one hour), each a one-time link
sent through the outbox to a real SMTP server on loopback (aiosmtpd), read from the received
message as the invitee would; the token is only hashed in the database, and wiped from the outbox
once sent; links are built from BASE_URL alone; without a mail server the admin is shown the link
once; and an address that has an account at another centre is invited like any other."""
import re
import threading
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from conftest import CENTRE, STAFF_PASSWORD, add_centre, csrf_token_from, database_of, edit, give_second_factor, login
from test_notify import Server, settle

from screening.store import accounts, links
from screening.store import db as dbmod
from screening.web import notify

BASE = "https://centre.example.org"
NEW_PASSWORD = "a brand new passphrase"
OTHER = "centre-b"


@pytest.fixture
def server():
    s = Server()
    s.start()
    yield s
    settle()
    s.stop()


def mail_settings(port):
    return {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": port, "NOTIFY_FROM": "screening@centre.example.org",
            "BASE_URL": BASE + "/"}


@pytest.fixture
def mail_app(make_app, server, rules_copy):
    """Mail on, two centres (the shipped one, default language ca, and centre-b)."""
    add_centre(rules_copy, OTHER, name="Centre B")
    return make_app(**mail_settings(server.port), RULES_DIR=str(rules_copy))


def admin_of(app, centre=CENTRE, email=None):
    conn = dbmod.connect(database_of(app))
    try:
        admin = accounts.create_staff(conn, email=email or f"admin@{centre}.example", password=STAFF_PASSWORD,
                                      role="admin", centre=centre)
        give_second_factor(conn, admin, app.config["SECRET_KEY"])      # admins must have one (the default)
        return admin
    finally:
        conn.close()


def logged_in(app, account, password=STAFF_PASSWORD):
    client = app.test_client()
    assert login(client, account["email"], password).status_code == 302
    return client


def send_all(app, server, count):
    """Let the background sender finish, drain what is left, and wait for `count` messages."""
    settle()
    notify.drain(app)
    server.inbox.wait_until(lambda inbox: len(inbox.messages) >= count)
    return server.inbox.messages


def link_in(message):
    body = message.get_content()
    found = re.findall(r"https?://\S+", body)
    assert len(found) == 1, body
    return found[0]


def path_of(link):
    return link.removeprefix(BASE)


def conn_of(app):
    return dbmod.connect(database_of(app))


def invite(client, email, role="staff", language="en", name="", headers=None):
    return client.post("/staff/team/invite", data={"email": email, "role": role, "language": language, "name": name},
                       headers=headers or {})


def test_an_invitation_is_accepted_end_to_end_through_a_real_mail_server(mail_app, server):
    admin = logged_in(mail_app, admin_of(mail_app))
    response = invite(admin, "Nova@Centre.example", role="admin", language="es", name="Nova")
    assert response.status_code == 302
    assert "Invitation sent" in admin.get(response.headers["Location"]).get_data(as_text=True)
    [message] = send_all(mail_app, server, 1)
    assert message["To"] == "nova@centre.example" and message["From"] == "screening@centre.example.org"
    # in the invitation's language
    assert message["Subject"] == "Tu cuenta del equipo del centro Espai Massatge Exemple"
    link = link_in(message)
    assert link.startswith(BASE + "/staff/invitation/")

    invitee = mail_app.test_client()
    page = invitee.get(path_of(link))
    assert page.status_code == 200 and "nova@centre.example" in page.get_data(as_text=True)
    response = invitee.post(path_of(link), data={"name": "Nova Vidal", "new_password": NEW_PASSWORD,
                                                 "new_password_again": NEW_PASSWORD})
    assert response.status_code == 302 and response.headers["Location"].startswith("/staff/login")
    assert "Your account is ready" in invitee.get(response.headers["Location"]).get_data(as_text=True)
    assert login(invitee, "nova@centre.example", NEW_PASSWORD).status_code == 302
    # invited as an admin: a second factor first (SCREENING_STAFF_2FA=admins, the default)
    assert invitee.get("/staff/team").headers["Location"] == "/staff/account/second-factor"
    setup = invitee.get("/staff/account/second-factor").get_data(as_text=True)
    key = re.search(r"data-setup-key>([A-Z2-7 ]+)<", setup).group(1).replace(" ", "")
    carried = re.search(r'name="setup" value="([^"]+)"', setup).group(1)
    assert invitee.post("/staff/account/second-factor",
                        data={"setup": carried, "code": pyotp.TOTP(key).now()}).status_code == 200
    assert invitee.get("/staff/team").status_code == 200
    conn = conn_of(mail_app)
    try:
        row = conn.execute("SELECT name, role, centre, language FROM staff WHERE email = 'nova@centre.example'"
                           ).fetchone()
        assert tuple(row) == ("Nova Vidal", "admin", CENTRE, "es")
        assert conn.execute("SELECT count(*) FROM audit_log WHERE action = 'invitation_accepted'"
                            " AND detail = 'nova@centre.example'").fetchone()[0] == 1
    finally:
        conn.close()
    # used once: the link is gone now
    again = mail_app.test_client().get(path_of(link))
    assert again.status_code == 404 and "This link no longer works" in again.get_data(as_text=True)
    assert "Nova" not in admin.get("/staff/team").get_data(as_text=True).split("Pending invitations")[1]


def test_the_token_is_never_in_clear_in_the_database_once_sent(mail_app, server):
    admin = logged_in(mail_app, admin_of(mail_app))
    invite(admin, "nova@centre.example")
    link = link_in(send_all(mail_app, server, 1)[0])
    token = link.rsplit("/", 1)[1]
    conn = conn_of(mail_app)
    try:
        rows = conn.execute("SELECT kind, token, sent_at FROM outbox").fetchall()
        assert [(r[0], r[1]) for r in rows] == [("invite", None)] and rows[0][2]
        dump = "\n".join(str(row) for table in ("account_links", "outbox", "audit_log")
                         for row in conn.execute(f"SELECT * FROM {table}").fetchall())  # noqa: S608
        assert token not in dump and links.token_hash(token) in dump
    finally:
        conn.close()


def test_the_link_is_built_from_base_url_never_from_the_host_header(mail_app, server):
    admin = logged_in(mail_app, admin_of(mail_app))
    # a client without a cookie jar (the jar would drop cookies for another host), the admin's session by hand
    forged = mail_app.test_client(use_cookies=False)
    session = admin.get_cookie("screening_staff", path="/staff").value
    response = forged.post("/staff/team/invite", data={"email": "nova@centre.example", "role": "staff",
                                                       "language": "en"},
                           headers={"Host": "evil.example", "Cookie": f"screening_staff={session}"})
    assert response.status_code == 302 and "done=invited" in response.headers["Location"]
    response = mail_app.test_client().post("/staff/forgot", data={"email": "admin@exemple-barcelona.example"},
                                           headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"})
    assert response.status_code == 302
    messages = send_all(mail_app, server, 2)
    for message in messages:
        assert link_in(message).startswith(BASE + "/staff/")
        assert "evil.example" not in message.as_string()


def test_a_reset_sent_by_an_admin_sets_a_new_password_and_ends_the_old_sessions(mail_app, server):
    admin = logged_in(mail_app, admin_of(mail_app))
    conn = conn_of(mail_app)
    joan = accounts.create_staff(conn, email="joan@centre.example", password=STAFF_PASSWORD, centre=CENTRE)
    conn.close()
    joan_before = logged_in(mail_app, joan)         # her session from before the reset
    conn = conn_of(mail_app)
    for _ in range(5):     # a stranger has her account refused to unknown browsers
        accounts.attempt_login(conn, joan["email"], "wrong", "10.0.0.9", max_failures=5, lock_seconds=900, secret="s")
    conn.close()

    text = admin.get("/staff/team").get_data(as_text=True)
    handle = re.search(r'data-member="joan@centre.example".*?action="/staff/team/([0-9a-f]+)/', text, re.S).group(1)
    response = admin.post(f"/staff/team/{handle}/reset")
    assert response.status_code == 302
    assert "A password reset link is on its way" in admin.get(response.headers["Location"]).get_data(as_text=True)
    [message] = send_all(mail_app, server, 1)
    assert message["To"] == "joan@centre.example"
    assert message["Subject"] == ("Estableix una contrasenya nova per al teu compte de l'equip del centre "
                                  "Espai Massatge Exemple")
    link = link_in(message)
    assert link.startswith(BASE + "/staff/reset/")

    browser = mail_app.test_client()
    short = browser.post(path_of(link), data={"new_password": "short", "new_password_again": "short"})
    assert short.status_code == 422 and "at least 8 characters" in short.get_data(as_text=True)
    different = browser.post(path_of(link), data={"new_password": NEW_PASSWORD, "new_password_again": "other one!"})
    assert different.status_code == 422 and "not the same" in different.get_data(as_text=True)
    assert NEW_PASSWORD not in different.get_data(as_text=True)
    response = browser.post(path_of(link), data={"new_password": NEW_PASSWORD, "new_password_again": NEW_PASSWORD})
    assert response.status_code == 302
    assert joan_before.get("/staff/").headers["Location"].startswith("/staff/login")     # old session ended
    assert login(browser, joan["email"], STAFF_PASSWORD).status_code == 200              # old password refused
    assert login(browser, joan["email"], NEW_PASSWORD).status_code == 302                # throttle lifted
    conn = conn_of(mail_app)
    try:
        actions = [r[0] for r in conn.execute("SELECT action FROM audit_log WHERE detail = 'joan@centre.example'"
                                              " ORDER BY id").fetchall()]
        assert "password_reset_sent" in actions and "password_reset_done" in actions
    finally:
        conn.close()


def test_forgot_answers_the_same_for_any_address_and_mails_only_active_accounts(mail_app, server):
    admin_of(mail_app, email="ana@centre.example")
    conn = conn_of(mail_app)
    gone = accounts.create_staff(conn, email="gone@centre.example", password=STAFF_PASSWORD, centre=CENTRE)
    accounts.deactivate(conn, gone["email"])
    conn.close()
    client = mail_app.test_client()
    form = client.get("/staff/forgot")
    assert form.status_code == 200 and 'name="email"' in form.get_data(as_text=True)
    answers = [client.post("/staff/forgot", data={"email": email})
               for email in ("ana@centre.example", "nobody@centre.example", "gone@centre.example")]
    assert {(a.status_code, a.headers["Location"]) for a in answers} == {(302, "/staff/forgot?done=sent")}
    assert "If this address has an account" in client.get("/staff/forgot?done=sent").get_data(as_text=True)
    [message] = send_all(mail_app, server, 1)
    assert message["To"] == "ana@centre.example"
    settle()
    assert len(server.inbox.messages) == 1
    conn = conn_of(mail_app)
    try:
        assert [r[0] for r in conn.execute("SELECT detail FROM audit_log WHERE action = 'password_reset_requested'"
                                           ).fetchall()] == ["ana@centre.example"]
    finally:
        conn.close()


def test_forgot_refuses_bad_input_at_its_field(app):
    client = app.test_client()
    for email, message in (("", "Enter your e-mail address"), ("not an address", "Enter an e-mail address like")):
        response = client.post("/staff/forgot", data={"email": email})
        assert response.status_code == 422
        text = response.get_data(as_text=True)
        assert re.search(rf'id="email-error">.*?{message}', text, re.S) and 'role="alert"' in text


def test_forgot_is_throttled_per_email_and_per_address(app, make_staff):
    make_staff(email="ana@centre.example")
    client = app.test_client()
    for _ in range(links.FORGOT_PER_EMAIL):
        assert client.post("/staff/forgot", data={"email": "ana@centre.example"}).status_code == 302
    refused = client.post("/staff/forgot", data={"email": "ANA@centre.example"})
    assert refused.status_code == 429 and 0 < int(refused.headers["Retry-After"]) <= 3600
    assert "Too many requests" in refused.get_data(as_text=True)
    # another address may still ask for that e-mail's... no: the e-mail's own limit holds for everyone
    other = app.test_client()
    assert other.post("/staff/forgot", data={"email": "ana@centre.example"},
                      environ_base={"REMOTE_ADDR": "10.0.0.7"}).status_code == 429
    # and one address asking for many e-mails is stopped too
    for i in range(links.FORGOT_PER_ADDRESS - links.FORGOT_PER_EMAIL):
        assert client.post("/staff/forgot", data={"email": f"n{i}@centre.example"}).status_code == 302
    assert client.post("/staff/forgot", data={"email": "last@centre.example"}).status_code == 429


def test_without_a_mail_server_the_admin_is_shown_the_link_once_and_it_is_not_stored(app, admin_client, db):
    response = invite(admin_client, "nova@centre.example", role="staff", language="ca")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    text = response.get_data(as_text=True)
    shown = re.search(r'data-link>(/staff/invitation/[A-Za-z0-9_-]+)<', text).group(1)
    assert "shown only this once" in text and "Location" not in response.headers
    token = shown.rsplit("/", 1)[1]
    assert db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    dump = str(db.execute("SELECT * FROM account_links").fetchall())
    assert token not in dump and links.token_hash(token) in dump
    assert token not in admin_client.get("/staff/team").get_data(as_text=True)     # once
    # the link works
    invitee = app.test_client()
    assert invitee.post(shown, data={"new_password": NEW_PASSWORD, "new_password_again": NEW_PASSWORD}
                        ).status_code == 302
    assert login(invitee, "nova@centre.example", NEW_PASSWORD).status_code == 302


def test_without_base_url_nothing_is_queued_even_with_a_mail_server(make_app, server):
    app = make_app(**(mail_settings(server.port) | {"BASE_URL": None}))
    admin = logged_in(app, admin_of(app))
    text = invite(admin, "nova@centre.example").get_data(as_text=True)
    assert re.search(r'data-link>/staff/invitation/', text)
    conn = conn_of(app)
    try:
        assert conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    finally:
        conn.close()


def test_inviting_an_address_of_another_centre_answers_like_any_invitation(mail_app, server):
    admin_of(mail_app, centre=OTHER, email="maria@b.example")       # Maria works at centre B
    admin = logged_in(mail_app, admin_of(mail_app))
    taken = invite(admin, "maria@b.example")
    fresh = invite(admin, "fresh@b.example")
    assert (taken.status_code, taken.headers["Location"]) == (fresh.status_code, fresh.headers["Location"])
    team = admin.get("/staff/team").get_data(as_text=True)
    assert 'data-invitation="maria@b.example"' in team and 'data-invitation="fresh@b.example"' in team
    messages = send_all(mail_app, server, 2)
    to_maria = next(m for m in messages if m["To"] == "maria@b.example")    # she is e-mailed too
    page = mail_app.test_client().get(path_of(link_in(to_maria)))
    text = page.get_data(as_text=True)
    assert 'data-taken="elsewhere"' in text and "already has an account at another centre" in text
    assert "new_password" not in text
    refused = mail_app.test_client().post(path_of(link_in(to_maria)),
                                          data={"new_password": NEW_PASSWORD, "new_password_again": NEW_PASSWORD})
    assert refused.status_code == 409
    conn = conn_of(mail_app)
    try:
        assert conn.execute("SELECT centre FROM staff WHERE email = 'maria@b.example'").fetchone()[0] == OTHER
    finally:
        conn.close()
    # still pending for the inviting centre, which learns nothing
    assert 'data-invitation="maria@b.example"' in admin.get("/staff/team").get_data(as_text=True)


def test_links_expire(app, db, make_staff):
    admin = make_staff(role="admin")
    joan = make_staff(email="joan@centre.example")
    past = datetime.now(UTC) - timedelta(hours=72, minutes=1)
    _, invite_token = links.invite(db, admin=admin, email="nova@centre.example", name=None, role="staff",
                                   language="en", mail=False, now=past)
    _, reset_token = links.send_reset(db, staff_id=joan["id"], centre=CENTRE, mail=False,
                                      now=datetime.now(UTC) - timedelta(minutes=61))
    _, fresh_reset = links.send_reset(db, staff_id=make_staff()["id"], centre=CENTRE, mail=False,
                                      now=datetime.now(UTC) - timedelta(minutes=59))
    client = app.test_client()
    for path in (f"/staff/invitation/{invite_token}", f"/staff/reset/{reset_token}", "/staff/reset/unknown-token",
                 f"/staff/reset/{invite_token}"):
        response = client.get(path)
        assert response.status_code == 404 and "This link no longer works" in response.get_data(as_text=True)
        assert client.post(path, data={"new_password": NEW_PASSWORD, "new_password_again": NEW_PASSWORD}
                           ).status_code == 404
    assert client.get(f"/staff/reset/{fresh_reset}").status_code == 200
    assert links.pending_invitations(db, CENTRE, key=b"k") == []


def test_a_new_link_supersedes_the_older_one(app, db, make_staff):
    joan = make_staff(email="joan@centre.example")
    _, first = links.send_reset(db, staff_id=joan["id"], centre=CENTRE, mail=False)
    _, second = links.send_reset(db, staff_id=joan["id"], centre=CENTRE, mail=False)
    client = app.test_client()
    assert client.get(f"/staff/reset/{first}").status_code == 404
    assert client.get(f"/staff/reset/{second}").status_code == 200


def test_an_email_whose_link_is_used_or_superseded_before_it_is_sent_is_dropped(mail_app, server):
    conn = conn_of(mail_app)
    try:
        joan = accounts.create_staff(conn, email="joan@centre.example", password=STAFF_PASSWORD, centre=CENTRE)
        links.send_reset(conn, staff_id=joan["id"], centre=CENTRE, mail=True)
        links.send_reset(conn, staff_id=joan["id"], centre=CENTRE, mail=True)
        expired = datetime.now(UTC) - timedelta(hours=2)
        links.send_reset(conn, staff_id=accounts.create_staff(conn, email="old@centre.example", password=STAFF_PASSWORD,
                                                              centre=CENTRE)["id"], centre=CENTRE, mail=True,
                         now=expired)
        assert notify.drain(mail_app).sent == 1
        assert conn.execute("SELECT count(*) FROM outbox WHERE token IS NOT NULL").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 1
    finally:
        conn.close()
    settle()
    assert [m["To"] for m in server.inbox.messages] == ["joan@centre.example"]


def test_an_account_email_is_in_the_accounts_language_else_the_centres(mail_app, server):
    conn = conn_of(mail_app)
    try:
        ca = accounts.create_staff(conn, email="ca@centre.example", password=STAFF_PASSWORD, centre=CENTRE)
        en = accounts.create_staff(conn, email="en@centre.example", password=STAFF_PASSWORD, centre=CENTRE)
        conn.execute("UPDATE staff SET language = 'en' WHERE id = ?", [en["id"]])
        links.send_reset(conn, staff_id=ca["id"], centre=CENTRE, mail=True)
        links.send_reset(conn, staff_id=en["id"], centre=CENTRE, mail=True)
    finally:
        conn.close()
    messages = {m["To"]: m for m in send_all(mail_app, server, 2)}
    assert messages["ca@centre.example"]["Subject"].startswith("Estableix una contrasenya nova")
    assert messages["en@centre.example"]["Subject"].startswith("Set a new password")
    for message in messages.values():
        body = message.get_content()
        assert "STAFF_PASSWORD" not in body and STAFF_PASSWORD not in body


def test_a_link_used_from_two_connections_at_once_works_once(app, db, make_staff):
    admin = make_staff(role="admin")
    _, token = links.invite(db, admin=admin, email="nova@centre.example", name=None, role="staff", language="en",
                            mail=False)
    start = threading.Barrier(4)
    results = []

    def accept(i):
        conn = dbmod.connect(database_of(app))
        try:
            start.wait()
            links.accept_invitation(conn, token, name=f"n{i}", password=NEW_PASSWORD)
            results.append("ok")
        except links.LinkError as e:
            results.append(e.code)
        finally:
            conn.close()

    threads = [threading.Thread(target=accept, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results.count("ok") == 1 and len(results) == 4
    assert db.execute("SELECT count(*) FROM staff WHERE email = 'nova@centre.example'").fetchone()[0] == 1


def test_link_pages_send_no_referrer_and_are_not_stored(app, db, make_staff):
    joan = make_staff(email="joan@centre.example")
    _, token = links.send_reset(db, staff_id=joan["id"], centre=CENTRE, mail=False)
    client = app.test_client()
    for response in (client.get(f"/staff/reset/{token}"), client.get("/staff/reset/nope"),
                     client.post(f"/staff/reset/{token}", data={"new_password": "x"})):
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["Cache-Control"] == "no-store"
    assert client.get("/staff/forgot").headers["Referrer-Policy"] == "same-origin"


def test_a_link_form_checks_its_csrf_token_without_needing_a_referer_on_https(csrf_app):
    conn = dbmod.connect(database_of(csrf_app))
    joan = accounts.create_staff(conn, email="joan@centre.example", password=STAFF_PASSWORD, centre=CENTRE)
    _, token = links.send_reset(conn, staff_id=joan["id"], centre=CENTRE, mail=False)
    conn.close()
    client = csrf_app.test_client()
    path = f"/staff/reset/{token}"
    data = {"new_password": NEW_PASSWORD, "new_password_again": NEW_PASSWORD}
    assert client.post(path, data=data, base_url="https://localhost").status_code == 400     # no token
    form = client.get(path, base_url="https://localhost").get_data(as_text=True)
    data["csrf_token"] = csrf_token_from(form)
    # the page sends no Referer (no-referrer): the post must still work over HTTPS
    response = client.post(path, data=data, base_url="https://localhost")
    assert response.status_code == 302


def test_the_login_page_leads_to_the_forgotten_password_page(client):
    assert 'href="/staff/forgot"' in client.get("/staff/login").get_data(as_text=True)


def test_the_invitation_email_holds_only_the_centre_and_the_link(make_app, server, rules_copy):
    edit(rules_copy, "centres/exemple-barcelona.toml", 'default_language = "ca"', 'default_language = "en"')
    app = make_app(**mail_settings(server.port), RULES_DIR=str(rules_copy))
    admin = logged_in(app, admin_of(app))
    invite(admin, "nova@centre.example", name="Nova Secretname")
    [message] = send_all(app, server, 1)
    body = message.get_content()
    assert message["Subject"] == "Your staff account at Espai Massatge Exemple"
    assert "72 hours" in body and "Secretname" not in body and "admin@" not in body


def test_without_mail_forgot_makes_no_link_and_leaves_the_one_an_admin_passed_on_working(app, admin_client,
                                                                                          make_staff, db):
    joan = make_staff(email="joan@centre.example")
    text = admin_client.get("/staff/team").get_data(as_text=True)
    handle = re.search(r'data-member="joan@centre.example".*?action="/staff/team/([0-9a-f]+)/', text, re.S).group(1)
    shown = re.search(r'data-link>(/staff/reset/[A-Za-z0-9_-]+)<',
                      admin_client.post(f"/staff/team/{handle}/reset").get_data(as_text=True)).group(1)
    assert app.test_client().post("/staff/forgot", data={"email": joan["email"]}).status_code == 302
    assert db.execute("SELECT count(*) FROM account_links").fetchone()[0] == 1
    browser = app.test_client()
    assert browser.post(shown, data={"new_password": NEW_PASSWORD, "new_password_again": NEW_PASSWORD}
                        ).status_code == 302
    assert login(browser, joan["email"], NEW_PASSWORD).status_code == 302


def test_an_account_email_is_retried_when_the_server_comes_back_then_its_token_is_wiped(make_app):
    down = Server()
    try:
        app = make_app(**mail_settings(down.port))
        conn = conn_of(app)
        joan = accounts.create_staff(conn, email="joan@centre.example", password=STAFF_PASSWORD, centre=CENTRE)
        links.send_reset(conn, staff_id=joan["id"], centre=CENTRE, mail=True)
        assert notify.drain(app) == (0, 1)
        assert conn.execute("SELECT token IS NOT NULL, attempts FROM outbox").fetchone() == (True, 1)
        down.start()
        assert notify.drain(app, now=datetime.now(UTC) + timedelta(minutes=2)) == (1, 0)
        assert conn.execute("SELECT token, sent_at IS NOT NULL FROM outbox").fetchone() == (None, True)
        conn.close()
        settle()
        assert [m["To"] for m in down.inbox.messages] == ["joan@centre.example"]
    finally:
        settle()
        down.stop()


def test_an_account_email_given_up_keeps_no_token(db, make_staff):
    from screening.store import outbox
    joan = make_staff(email="joan@centre.example")
    links.send_reset(db, staff_id=joan["id"], centre=CENTRE, mail=True)
    notice = outbox.claim(db, now=datetime.now(UTC))
    assert notice["kind"] == "reset" and notice["token"]
    outbox.mark_failed(db, {**notice, "attempts": outbox.MAX_ATTEMPTS - 1}, OSError("refused"), now=datetime.now(UTC))
    assert db.execute("SELECT token, attempts FROM outbox").fetchone() == (None, outbox.MAX_ATTEMPTS)


def test_the_forgot_limit_counts_the_requests_of_every_connection(app, make_staff):
    """Across app servers on PostgreSQL: lock('forgot:<key>') then count and insert, in one transaction."""
    make_staff(email="joan@centre.example")
    start = threading.Barrier(8)
    waits = []

    def ask(i):
        conn = dbmod.connect(database_of(app))
        try:
            start.wait()
            waits.append(links.forgot(conn, "joan@centre.example", f"10.0.0.{i}", secret="s", mail=False))
        finally:
            conn.close()

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(waits) == 8 and sum(1 for w in waits if w == 0) == links.FORGOT_PER_EMAIL
