"""E-mail notices: one per shared screening that needs the centre's attention, never its content,
sent once from the outbox even with two senders, retried when the server was down, and never
holding up the client's page. A real SMTP server (aiosmtpd) listens on loopback."""
import asyncio
import email
import re
import socket
import threading
from datetime import UTC, datetime, timedelta
from email import policy
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from conftest import CENTRE, all_no, database_of, edit

from screening.store import db as dbmod
from screening.store import outbox as outboxmod
from screening.store import withdrawal
from screening.web import notify

WAIT = 30   # seconds: only a guard against a hang, never a measure of speed


class Inbox:
    """An SMTP handler that keeps every message it accepts. While `gate` is closed it holds each
    message in DATA before accepting it, like a slow server."""

    def __init__(self):
        self.messages = []
        self.entered = 0
        self.changed = threading.Condition()
        self.gate = threading.Event()
        self.gate.set()

    async def handle_DATA(self, server, session, envelope):
        with self.changed:
            self.entered += 1
            self.changed.notify_all()
        await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, WAIT)
        with self.changed:
            self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
            self.changed.notify_all()
        return "250 Message accepted"

    def wait_until(self, predicate):
        with self.changed:
            assert self.changed.wait_for(lambda: predicate(self), WAIT)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """An SMTP server on a free loopback port, started when the test says so."""

    def __init__(self, **options):
        self.inbox = Inbox()
        self.port = free_port()
        self.options = options
        self.controller = None

    def start(self):
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port, **self.options)
        self.controller.start()

    def stop(self):
        self.inbox.gate.set()
        if self.controller:
            self.controller.stop()


def settle():
    """Wait for the background senders of this process to finish."""
    for thread in threading.enumerate():
        if thread.name == notify.THREAD_NAME:
            thread.join(WAIT)


@pytest.fixture
def server():
    s = Server()
    s.start()
    yield s
    settle()
    s.stop()


@pytest.fixture
def down_server():
    """A port where no SMTP server listens yet."""
    s = Server()
    yield s
    settle()
    s.stop()


CENTRE_ADDRESS = "recepcio@exemple.example.org"    # notify_to of the shipped centre file


def without_centre_address(rules_copy):
    """The rules folder with the centre's notify_to removed."""
    edit(rules_copy, "centres/exemple-barcelona.toml", f'notify_to = "{CENTRE_ADDRESS}"', "")
    return rules_copy


def settings(port):
    return {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": port, "NOTIFY_TO": "centre@example.org",
            "NOTIFY_FROM": "screening@example.org", "BASE_URL": "https://centre.example.org/"}


@pytest.fixture
def notify_app(make_app, server, rules_copy):
    """Notices are in the centre's default language (tests/test_i18n.py); these tests read English."""
    edit(rules_copy, "centres/exemple-barcelona.toml", 'default_language = "ca"', 'default_language = "en"')
    return make_app(**settings(server.port), RULES_DIR=str(rules_copy))


def shared(**overrides):
    """Form data that shares the screening with the centre."""
    data = {"share": "yes", "name": "Ana Client", "contact": "ana@example.org", "consent": "yes",
            "nonce": "n" * 24}
    data.update(overrides)
    return all_no(**data)


def queue(app, outcome="tell_centre", **overrides):
    """Store a shared submission with a queued notice, without waking a sender; return its reference."""
    conn = dbmod.connect(database_of(app))
    record = {"service": "back-massage", "outcome": outcome, "answers": {"fever": "no"},
              "fired_rules": [], "suggestions": [], "rules_version": "test", "locale": "en",
              "name": "Ana Client", "contact": "ana@example.org", "consent_at": dbmod.now()}
    record.update(overrides)
    # queued by a test, not sent twice by a client: no resend check
    reference = dbmod.store_screening(conn, nonce=dbmod.new_reference(), record=record, centre=CENTRE,
                                      notify=True, resend_within=0).reference
    conn.close()
    return reference


def outbox(app):
    conn = dbmod.connect(database_of(app))
    rows = [dict(r) for r in conn["outbox"].rows_where(order_by="id")]
    conn.close()
    return rows


def submission_id(app, reference):
    conn = dbmod.connect(database_of(app))
    found = conn.execute("SELECT id FROM submissions WHERE reference = ?", [reference]).fetchone()[0]
    conn.close()
    return found


# --- through the client's form ------------------------------------------------------------------

def test_a_centre_without_its_own_address_has_its_notices_sent_to_notify_to(make_app, server, rules_copy):
    app = make_app(**settings(server.port), RULES_DIR=str(without_centre_address(rules_copy)))
    app.test_client().post("/screening/back-massage", data=shared(fever="yes"))

    server.inbox.wait_until(lambda inbox: len(inbox.messages) == 1)
    assert server.inbox.messages[0]["To"] == "centre@example.org"


def test_the_centres_address_is_enough_without_notify_to(make_app, server):
    app = make_app(**(settings(server.port) | {"NOTIFY_TO": None}))
    app.test_client().post("/screening/back-massage", data=shared(fever="yes"))

    server.inbox.wait_until(lambda inbox: len(inbox.messages) == 1)
    assert server.inbox.messages[0]["To"] == CENTRE_ADDRESS

def test_a_shared_screening_that_needs_attention_mails_the_centre_once(notify_app, server):
    response = notify_app.test_client().post("/screening/back-massage", data=shared(fever="yes"))
    assert response.status_code == 200

    server.inbox.wait_until(lambda inbox: len(inbox.messages) == 1)
    settle()
    [row] = outbox(notify_app)
    message = server.inbox.messages[0]
    body = message.get_content()
    assert row["sent_at"] is not None
    assert row["reference"] in message["Subject"]
    assert "Consult a health professional" in message["Subject"]
    assert message["To"] == CENTRE_ADDRESS       # the centre's notify_to, not NOTIFY_TO
    assert message["From"] == "screening@example.org"
    assert row["reference"] in body
    assert "Back massage" in body
    assert "https://centre.example.org/staff/submissions/1" in body.splitlines()
    assert row["reference"] in response.get_data(as_text=True)


def test_the_link_names_the_centres_own_number_and_not_the_installations_id(notify_app, server):
    """Another centre's 30 screenings stored first: this centre's first is still number 1, and the
    notice's link says nothing of the others."""
    conn = dbmod.connect(database_of(notify_app))
    for i in range(30):
        record = {"service": "back-massage", "outcome": "tell_centre", "answers": {"fever": "no"}, "fired_rules": [],
                  "suggestions": [], "rules_version": "test", "locale": "en", "name": f"Other {i}",
                  "contact": "other@example.org", "consent_at": dbmod.now()}
        dbmod.store_screening(conn, nonce=f"other-centre-{i:04d}", record=record, centre="centre-b")
    conn.close()
    queue(notify_app)
    assert notify.drain(notify_app) == (1, 0)
    body = server.inbox.messages[0].get_content()
    assert "https://centre.example.org/staff/submissions/1" in body.splitlines()
    assert "/staff/submissions/31" not in body


def test_a_screening_that_can_proceed_sends_no_mail(notify_app, server):
    client = notify_app.test_client()
    client.post("/screening/back-massage", data=shared(nonce="p" * 24))
    # a notice after it: had the first one been queued, it would have been sent before this one
    client.post("/screening/back-massage", data=shared(nonce="t" * 24, pregnant="yes",
                                                       pregnancy_complicated="no"))

    server.inbox.wait_until(lambda inbox: len(inbox.messages) >= 1)
    settle()
    assert len(server.inbox.messages) == 1
    assert "Tell the centre" in server.inbox.messages[0]["Subject"]
    assert len(outbox(notify_app)) == 1


def test_a_screening_that_is_only_checked_sends_no_mail(notify_app, server):
    notify_app.test_client().post("/screening/back-massage", data=all_no(fever="yes", share="no"))
    settle()
    assert outbox(notify_app) == []
    assert server.inbox.messages == []


@pytest.mark.parametrize("missing", ["SMTP_HOST", "NOTIFY_TO and the centre's notify_to"])
def test_no_notice_is_queued_or_sent_when_notices_are_off(make_app, server, rules_copy, missing):
    if missing == "SMTP_HOST":
        app = make_app(**(settings(server.port) | {"SMTP_HOST": None}))
    else:
        rules_dir = str(without_centre_address(rules_copy))
        app = make_app(**(settings(server.port) | {"NOTIFY_TO": None, "RULES_DIR": rules_dir}))

    app.test_client().post("/screening/back-massage", data=shared(fever="yes"))
    result = app.test_cli_runner().invoke(args=["send-notices"])

    settle()
    assert not notify.enabled(app.config)
    assert outbox(app) == []
    assert server.inbox.messages == []
    assert result.exit_code == 0
    assert "Notices are off" in result.output


def test_the_notice_never_holds_the_answers_name_contact_or_notes(notify_app, server):
    notify_app.test_client().post("/screening/back-massage", data=shared(
        fever="yes", name="Canaryname Zq7", contact="canary.zq7@example.org",
        notes="CANARY-NOTES-ZQ7 my left knee"))

    server.inbox.wait_until(lambda inbox: len(inbox.messages) == 1)
    raw = server.inbox.messages[0].as_bytes().lower()
    for canary in (b"canaryname", b"canary.zq7", b"canary-notes", b"knee", b"fever"):
        assert canary not in raw
    assert b"consult a health professional" in raw     # the check above reads the right message


def test_wake_returns_before_a_slow_server_has_accepted_the_notice(notify_app, server):
    server.inbox.gate.clear()       # the server holds every message until the test opens the gate

    response = notify_app.test_client().post("/screening/back-massage", data=shared(fever="yes"))

    # the page came back while the server was still holding the message: not sent, not failed
    assert response.status_code == 200
    [row] = outbox(notify_app)
    assert (row["sent_at"], row["attempts"]) == (None, 0)
    assert server.inbox.messages == []
    server.inbox.wait_until(lambda inbox: inbox.entered == 1)   # ...and it was being sent meanwhile
    server.inbox.gate.set()
    server.inbox.wait_until(lambda inbox: len(inbox.messages) == 1)
    settle()
    assert outbox(notify_app)[0]["sent_at"] is not None


# --- the outbox -------------------------------------------------------------------------------

def test_send_notices_twice_sends_each_notice_once(notify_app, server):
    references = {queue(notify_app) for _ in range(3)}
    runner = notify_app.test_cli_runner()

    first = runner.invoke(args=["send-notices"])
    second = runner.invoke(args=["send-notices"])

    assert first.exit_code == 0, first.output
    assert "Sent 3 notices" in first.output
    assert "Sent 0 notices" in second.output
    assert sorted(m["Subject"].split()[2].rstrip(":") for m in server.inbox.messages) == sorted(references)


def test_two_senders_at_once_send_each_notice_once(notify_app, server):
    references = {queue(notify_app) for _ in range(12)}
    server.inbox.gate.clear()
    results = []
    senders = [threading.Thread(target=lambda: results.append(notify.drain(notify_app))) for _ in range(2)]
    for sender in senders:
        sender.start()

    # both senders are inside a send at the same moment: they really overlap
    server.inbox.wait_until(lambda inbox: inbox.entered == 2)
    server.inbox.gate.set()
    for sender in senders:
        sender.join(WAIT)

    subjects = [m["Subject"] for m in server.inbox.messages]
    assert len(subjects) == 12
    assert {s.split()[2].rstrip(":") for s in subjects} == references
    assert sum(r.sent for r in results) == 12
    assert all(r["sent_at"] for r in outbox(notify_app))


def test_a_notice_is_sent_after_the_server_comes_back(make_app, down_server):
    app = make_app(**settings(down_server.port))
    reference = queue(app, name="CANARY-NAME-4KD")

    notify.wake(app)
    settle()
    [row] = outbox(app)
    assert (row["sent_at"], row["attempts"]) == (None, 1)
    assert row["next_attempt_at"] > row["created_at"]
    assert row["last_error"] and "CANARY" not in row["last_error"]

    down_server.start()
    assert notify.drain(app) == (0, 0)                 # not due yet: the backoff holds
    later = datetime.now(UTC) + timedelta(minutes=2)
    assert notify.drain(app, now=later) == (1, 0)

    [row] = outbox(app)
    assert row["sent_at"] is not None
    assert [reference in m["Subject"] for m in down_server.inbox.messages] == [True]


def test_a_notice_that_keeps_failing_is_given_up_but_kept(make_app, down_server):
    app = make_app(**settings(down_server.port))
    queue(app)
    moment = datetime.now(UTC)

    for _ in range(outboxmod.MAX_ATTEMPTS + 2):
        notify.drain(app, now=moment)
        moment += timedelta(days=1)

    [row] = outbox(app)
    assert (row["sent_at"], row["attempts"]) == (None, outboxmod.MAX_ATTEMPTS)
    result = app.test_cli_runner().invoke(args=["send-notices"])
    assert result.exit_code == 0
    assert f"1 notices were given up after {outboxmod.MAX_ATTEMPTS} attempts" in result.output


def test_send_notices_exits_1_when_a_notice_could_not_be_sent(make_app, down_server):
    app = make_app(**settings(down_server.port))
    queue(app)

    result = app.test_cli_runner().invoke(args=["send-notices"])

    assert result.exit_code == 1
    assert "1 failed and stay queued" in result.output
    assert outbox(app)[0]["attempts"] == 1


def test_a_notice_queued_for_a_screening_that_can_proceed_is_dropped_unsent(notify_app, server):
    queue(notify_app, outcome="proceed")
    kept = queue(notify_app, outcome="tell_centre")

    assert notify.drain(notify_app) == (1, 0)

    assert [r["reference"] for r in outbox(notify_app)] == [kept]
    assert [kept in m["Subject"] for m in server.inbox.messages] == [True]


def centre_login(server, session, envelope, mechanism, auth_data):
    """The mail server's one account: centre / s3cret-pw."""
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"centre", b"s3cret-pw")
    return AuthResult(success=ok, handled=False)


# AUTH over plain SMTP is fine on loopback in a test; aiosmtpd warns about it for real servers
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
@pytest.mark.parametrize("password, sent", [("s3cret-pw", True), ("wrong-pw", False)])
def test_the_sender_logs_in_to_a_server_that_requires_it(make_app, password, sent):
    server = Server(authenticator=centre_login, auth_required=True, auth_require_tls=False)
    server.start()
    try:
        app = make_app(**settings(server.port), SMTP_USERNAME="centre", SMTP_PASSWORD=password)
        queue(app)

        result = notify.drain(app)

        [row] = outbox(app)
        assert result == ((1, 0) if sent else (0, 1))
        assert len(server.inbox.messages) == (1 if sent else 0)
        assert (row["sent_at"] is not None) == sent
        if not sent:
            assert "SMTPAuthenticationError" in row["last_error"]
            assert "wrong-pw" not in row["last_error"]
    finally:
        server.stop()


def test_backoff_doubles_from_a_minute_up_to_six_hours():
    assert [outboxmod.backoff(n) for n in (1, 2, 3)] == [timedelta(minutes=m) for m in (1, 2, 4)]
    assert outboxmod.backoff(20) == timedelta(hours=6)


# --- a client withdraws: the centre is told by e-mail (issue 16, item 1) ------------------------

def pair_on(result_html: str) -> tuple[str, str]:
    """The reference and the withdrawal code a result page shows."""
    return (re.search(r"data-reference>([^<]+)<", result_html).group(1),
            re.search(r"data-withdrawal-code>([^<]+)<", result_html).group(1))


def withdraw(client, reference, code):
    """Withdraw through the pages: the pair, then the confirmation."""
    confirm = client.post("/withdraw", data={"reference": reference, "code": code})
    assert confirm.status_code == 200, confirm.text
    done = client.post("/withdraw", data={"reference": reference, "code": code, "step": "confirm",
                                          "confirm": "yes"})
    assert done.status_code == 200 and f'data-withdrawn="{reference}"' in done.text
    return done


def store_unsent(app, **overrides):
    """A shared screening with its notice queued and no sender woken: its reference and code."""
    conn = dbmod.connect(database_of(app))
    record = {"service": "back-massage", "outcome": "tell_centre", "answers": {"fever": "yes"},
              "fired_rules": [], "suggestions": [], "rules_version": "test", "locale": "en",
              "name": "Ana Client", "contact": "ana@example.org", "consent_at": dbmod.now(), **overrides}
    stored = dbmod.store_screening(conn, nonce=dbmod.new_reference(), record=record, centre=CENTRE, notify=True,
                                   resend_within=0, withdrawal_key=withdrawal.key_from_secret(app.config["SECRET_KEY"]))
    conn.close()
    return stored.reference, stored.withdrawal_code


def test_a_client_who_withdraws_is_reported_to_the_centre_by_email_and_nothing_else(notify_app, server):
    client = notify_app.test_client()
    result = client.post("/screening/back-massage", data=shared(fever="yes", notes="my left shoulder"))
    reference, code = pair_on(result.text)
    server.inbox.wait_until(lambda inbox: len(inbox.messages) == 1)     # the new screening's notice
    settle()

    withdraw(client, reference, code)

    server.inbox.wait_until(lambda inbox: len(inbox.messages) == 2)
    settle()
    first, message = server.inbox.messages
    body = message.get_content()
    assert message["Subject"] == f"Screening {reference} withdrawn by the client"
    assert message["Subject"] != first["Subject"]
    assert message["To"] == CENTRE_ADDRESS and message["From"] == "screening@example.org"
    assert f"The client withdrew screening {reference} on " in body
    assert "Its answers and notes are erased." in body
    raw = message.as_string()
    for personal in ("Ana Client", "ana@example.org", "shoulder", "Back massage", "Consult a health professional",
                     "/staff/submissions/"):
        assert personal not in raw
    [withdrawn] = outbox(notify_app)            # the sent notice's row went with the erasure
    assert (withdrawn["kind"], withdrawn["submission_id"], withdrawn["reference"], withdrawn["centre"]) == \
        ("withdrawn", None, reference, CENTRE)
    assert withdrawn["sent_at"] is not None and withdrawn["token"] is None


def test_the_queued_notice_of_a_withdrawn_screening_is_never_sent(notify_app, server):
    reference, code = store_unsent(notify_app)
    assert [row["kind"] for row in outbox(notify_app)] == ["notice"]

    withdraw(notify_app.test_client(), reference, code)

    server.inbox.wait_until(lambda inbox: len(inbox.messages) == 1)
    settle()
    assert notify.drain(notify_app) == (0, 0)
    [message] = server.inbox.messages
    assert message["Subject"] == f"Screening {reference} withdrawn by the client"
    assert [row["kind"] for row in outbox(notify_app)] == ["withdrawn"]


def test_a_withdrawal_notice_is_retried_while_the_server_is_down_and_sent_once_it_is_up(make_app, down_server,
                                                                                       rules_copy):
    app = make_app(**settings(down_server.port), RULES_DIR=str(rules_copy))
    reference, code = store_unsent(app)
    withdraw(app.test_client(), reference, code)
    settle()
    [row] = outbox(app)
    assert row["kind"] == "withdrawn" and row["sent_at"] is None and row["attempts"] == 1
    assert "Error" in row["last_error"]

    down_server.start()
    assert notify.drain(app, now=datetime.now(UTC) + timedelta(hours=1)) == (1, 0)
    assert notify.drain(app, now=datetime.now(UTC) + timedelta(hours=2)) == (0, 0)     # at most once here
    [message] = down_server.inbox.messages
    assert reference in message["Subject"]


@pytest.mark.parametrize(("language", "subject", "sentence"), [
    ("ca", "Qüestionari {} retirat pel client", "El client ha retirat el qüestionari {} el "),
    ("es", "Cuestionario {} retirado por el cliente", "El cliente ha retirado el cuestionario {} el "),
])
def test_the_withdrawal_notice_is_in_the_centres_language_and_on_its_clock(make_app, server, rules_copy,
                                                                           language, subject, sentence):
    edit(rules_copy, "centres/exemple-barcelona.toml", 'default_language = "ca"', f'default_language = "{language}"')
    edit(rules_copy, "centres/exemple-barcelona.toml", 'timezone = "Europe/Madrid"', 'timezone = "Pacific/Auckland"')
    app = make_app(**settings(server.port), RULES_DIR=str(rules_copy))
    reference, code = store_unsent(app)
    client = app.test_client()
    client.set_cookie("lang", "en")          # the client reads English; the centre still gets its own language
    withdraw(client, reference, code)

    server.inbox.wait_until(lambda inbox: len(inbox.messages) == 1)
    settle()
    [message] = server.inbox.messages
    body = message.get_content()
    assert message["Subject"] == subject.format(reference)
    assert sentence.format(reference) in body
    [row] = outbox(app)
    local = datetime.fromisoformat(row["created_at"]).astimezone(ZoneInfo("Pacific/Auckland"))
    assert f"{local.hour}:{local.minute:02d}" in body and str(local.year) in body


@pytest.mark.parametrize("mail", ["no SMTP server", "no address for the centre"])
def test_without_notices_nothing_is_queued_and_the_withdrawal_still_works(make_app, rules_copy, mail):
    if mail == "no SMTP server":
        app = make_app(RULES_DIR=str(rules_copy))
    else:
        app = make_app(**(settings(free_port()) | {"NOTIFY_TO": None}),
                       RULES_DIR=str(without_centre_address(rules_copy)))
    client = app.test_client()
    reference, code = pair_on(client.post("/screening/back-massage", data=shared(fever="yes")).text)

    withdraw(client, reference, code)

    settle()
    assert outbox(app) == []
    conn = dbmod.connect(database_of(app))
    assert conn.execute("SELECT count(*) FROM submissions").fetchone()[0] == 0
    conn.close()
