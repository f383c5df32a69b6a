"""A client takes back what they sent (SPEC "A client takes back what they sent"): the withdrawal
code on the result, /withdraw and /c/<centre>/withdraw, the erasure, the audit entry and the
dashboard's list, one answer for every pair that opens nothing, the attempt limits, and references
that are never given again. Runs on both engines."""
import re

import pytest
from conftest import CENTRE, add_centre, all_no, csrf_token_from, database_of, logged_in_client
from helpers_server import hidden_value

from screening.store import db as dbmod
from screening.store import withdrawal

FORM = "/screening/decontracting-back-massage"
SECRET = "test-secret-key-" + "x" * 32
OTHER = "centre-girona"


def shared(nonce="n" * 24, **overrides):
    return all_no(**{"share": "yes", "name": "Ana Client", "contact": "ana@example.org", "consent": "yes",
                     "nonce": nonce, "notes": "my left shoulder", **overrides})


def pair_of(html: str) -> tuple[str, str]:
    """The reference and the withdrawal code a result shows."""
    return (re.search(r"data-reference>([^<]+)<", html).group(1),
            re.search(r"data-withdrawal-code>([^<]+)<", html).group(1))


def main_text(response) -> str:
    """What a page says in its <main>, without the CSRF token and what was typed back into the form."""
    main = re.search(r"<main.*</main>", response.text, re.S).group(0)
    main = re.sub(r'name="csrf_token" value="[^"]*"', "", main)
    return re.sub(r'(name="(?:reference|code)" type="text") value="[^"]*"', r"\1", main)


def store(db, centre=CENTRE, nonce="nonce-1", name="Ana Client") -> tuple[str, str]:
    """Store a screening as the share path does; its reference and withdrawal code."""
    record = {"service": "decontracting-back-massage", "outcome": "proceed", "answers": {"fever": "no"},
              "fired_rules": [], "suggestions": [], "rules_version": "test", "locale": "en",
              "name": name, "contact": "ana@example.org", "consent_at": dbmod.now()}
    stored = dbmod.store_screening(db, nonce=nonce, record=record, centre=centre, resend_within=0,
                                   withdrawal_key=withdrawal.key_from_secret(SECRET))
    return stored.reference, stored.withdrawal_code


def post(client, data, addr="192.0.2.1", path="/withdraw"):
    return client.post(path, data=data, environ_base={"REMOTE_ADDR": addr})


def count(db, table, where="1 = 1", params=()):
    return db.execute(f"SELECT count(*) FROM {table} WHERE {where}", list(params)).fetchone()[0]  # noqa: S608


# --- the whole way, as a client and as the centre ---------------------------------------------------------

def test_a_client_shares_then_takes_their_answers_back_through_the_pages(csrf_app, db, make_staff):
    client = csrf_app.test_client()
    page = client.get(FORM).text
    result = client.post(FORM, data=shared(nonce=hidden_value(page, "nonce"),
                                           csrf_token=hidden_value(page, "csrf_token")))
    assert result.status_code == 200
    reference, code = pair_of(result.text)
    assert result.text.count("data-withdrawal-code") == 1
    assert 'href="/withdraw"' in result.text                # the result links to the form
    submission_id = db.execute("SELECT id FROM submissions WHERE reference = ?", [reference]).fetchone()[0]
    with dbmod.immediate(db):
        db.execute("INSERT INTO notes (submission_id, body, created_at) VALUES (?, ?, ?)",
                   [submission_id, "called back", dbmod.now()])

    form = client.get("/withdraw")
    assert form.status_code == 200
    token = csrf_token_from(form.text)
    confirm = client.post("/withdraw", data={"reference": reference.lower().replace("-", " "), "code": code.upper(),
                                             "csrf_token": token})
    assert confirm.status_code == 200
    assert "Take back these answers?" in confirm.text
    assert reference in confirm.text and "Decontracting back massage" in confirm.text
    assert "Ana Client" not in confirm.text and "shoulder" not in confirm.text     # no answers, no name
    assert confirm.headers["Cache-Control"] == "no-store"
    assert count(db, "submissions") == 1                    # nothing erased before the confirmation

    done = client.post("/withdraw", data={"reference": hidden_value(confirm.text, "reference"),
                                          "code": hidden_value(confirm.text, "code"), "step": "confirm",
                                          "confirm": "yes", "csrf_token": csrf_token_from(confirm.text)})
    assert done.status_code == 200
    assert f'data-withdrawn="{reference}"' in done.text and "Your answers were taken back" in done.text
    assert done.headers["Cache-Control"] == "no-store"
    assert count(db, "submissions") == 0 and count(db, "notes") == 0

    entries = list(db.query("SELECT * FROM audit_log WHERE action = 'withdrawn'"))
    assert [(e["reference"], e["centre"], e["staff_id"], e["staff_email"], e["submission_id"], e["detail"])
            for e in entries] == [(reference, CENTRE, None, None, None, None)]

    staff = logged_in_client(csrf_app, make_staff)
    dashboard = staff.get("/staff/")
    assert f'data-withdrawn="{reference}"' in dashboard.text
    assert "Taken back by clients" in dashboard.text


def test_a_post_without_its_csrf_token_erases_nothing(csrf_app, db):
    reference, code = store(db)
    response = csrf_app.test_client().post("/withdraw", data={"reference": reference, "code": code,
                                                              "step": "confirm", "confirm": "yes"})
    assert response.status_code == 400
    assert count(db, "submissions") == 1
    # the form comes back with what was typed and a fresh token, saying why
    assert "This page had expired" in response.text and "Nothing was erased" in response.text
    assert hidden_value(response.text, "reference") == reference and csrf_token_from(response.text)


def test_every_centre_page_links_to_the_form_under_its_own_prefix(make_app, rules_copy):
    add_centre(rules_copy, OTHER, name="Centre Girona")
    client = make_app(RULES_DIR=str(rules_copy)).test_client()
    for path in (f"/c/{OTHER}/", f"/c/{OTHER}/services/decontracting-back-massage",
                 f"/c/{OTHER}/screening/decontracting-back-massage"):
        assert f'href="/c/{OTHER}/withdraw"' in client.get(path).text, path
    assert client.get(f"/c/{OTHER}/withdraw").status_code == 200
    assert client.get("/c/nowhere/withdraw").status_code == 404


# --- one answer for every pair that opens nothing ---------------------------------------------------------

def test_wrong_code_unknown_reference_used_code_and_another_centres_reference_read_the_same(make_app, rules_copy):
    add_centre(rules_copy, OTHER, name="Centre Girona")
    app = make_app(RULES_DIR=str(rules_copy))
    client = app.test_client()
    conn = dbmod.connect(database_of(app))
    try:
        mine, my_code = store(conn, nonce="a" * 20)
        used, used_code = store(conn, nonce="b" * 20)
        theirs, their_code = store(conn, centre=OTHER, nonce="c" * 20)
        withdrawn = post(client, {"reference": used, "code": used_code, "confirm": "yes", "step": "confirm"})
        assert withdrawn.status_code == 200
        wrong = withdrawal.new_code()
        answers = {
            "wrong code": post(client, {"reference": mine, "code": wrong}, path=f"/c/{CENTRE}/withdraw"),
            "unknown reference": post(client, {"reference": "ZZZZ-9999", "code": my_code}, addr="192.0.2.2",
                                      path=f"/c/{CENTRE}/withdraw"),
            "used code": post(client, {"reference": used, "code": used_code}, addr="192.0.2.3",
                              path=f"/c/{CENTRE}/withdraw"),
            "another centre's": post(client, {"reference": theirs, "code": their_code}, addr="192.0.2.4",
                                     path=f"/c/{CENTRE}/withdraw"),
            "another's code": post(client, {"reference": mine, "code": their_code}, addr="192.0.2.5",
                                   path=f"/c/{CENTRE}/withdraw"),
        }
        assert {name: r.status_code for name, r in answers.items()} == dict.fromkeys(answers, 404)
        texts = {name: main_text(r) for name, r in answers.items()}
        assert len(set(texts.values())) == 1, texts
        assert "We found nothing to take back with this reference and code" in texts["wrong code"]
        # the other centre's screening is withdrawn from its own page, or from the un-prefixed one
        assert post(client, {"reference": theirs, "code": their_code}, path=f"/c/{OTHER}/withdraw").status_code == 200
        assert post(client, {"reference": theirs, "code": their_code}, addr="192.0.2.9").status_code == 200
        assert count(conn, "submissions") == 2
    finally:
        conn.close()


@pytest.mark.parametrize(("reference", "code", "field", "message"), [
    ("", "", "reference", "Enter the reference shown on your result"),
    ("K7QF-M3XA", "", "code", "Enter the withdrawal code shown beside the reference"),
    ("K" * 41, "abcde-fghjk-mnpqr", "reference", "A reference has 8 letters and numbers"),
    ("K7QF-M3XA", "a" * 41, "code", "A withdrawal code has 15 letters and numbers"),
    ("K7QF-M3X0", "abcde-fghjk-mnpqr", "reference", "A reference has 8 letters and numbers"),
    ("K7QF-M3XA", "abcde-fghjk-mnpq", "code", "A withdrawal code has 15 letters and numbers"),
    ("K7QF\x00M3XA", "abcde-fghjk-mnpqr", "reference", "A reference has 8 letters and numbers"),
    ("K7QF-M3XA", "abcde\u202efghjk-mnpqr", "code", "A withdrawal code has 15 letters and numbers"),
])
def test_bad_input_is_refused_at_its_field_and_counts_no_attempt(client, db, reference, code, field, message):
    response = post(client, {"reference": reference, "code": code})
    assert response.status_code == 422
    at_field = re.search(rf'<p class="error-message" id="{field}-error">(.*?)</p>', response.text, re.S)
    assert at_field and message in at_field.group(1)
    assert f'href="#{field}"' in response.text                  # the error summary links to it
    assert count(db, "withdrawal_attempts") == 0


def test_a_missing_field_or_a_repeated_one_is_never_a_500(client):
    assert post(client, {}).status_code == 422
    assert client.post("/withdraw", data={"reference": ["A", "B"], "code": ["x", "y"]}).status_code == 422
    assert client.post("/withdraw", data={"done_copy": "forged"}).status_code == 400


# --- attempt limits -------------------------------------------------------------------------------------

def test_wrong_pairs_from_one_address_are_limited_with_429_and_retry_after(client, db):
    reference, code = store(db)
    for n in range(withdrawal.ADDRESS_LIMIT):
        assert post(client, {"reference": f"ABCD-{'EFGHJKMN'[n % 8]}{'PQRSTUVW'[n // 8]}23",
                             "code": withdrawal.new_code()}).status_code == 404
    refused = post(client, {"reference": reference, "code": code})       # even the right pair
    assert refused.status_code == 429
    assert 0 < int(refused.headers["Retry-After"]) <= withdrawal.WINDOW + 1
    assert "Too many tries" in refused.text and "data-withdraw-limited" in refused.text
    assert count(db, "submissions") == 1
    # another address is not held back
    assert post(client, {"reference": reference, "code": code}, addr="198.51.100.7").status_code == 200


def test_wrong_codes_for_one_reference_are_limited_whatever_the_address(client, db):
    reference, code = store(db)
    other, other_code = store(db, nonce="nonce-2")
    for n in range(withdrawal.REFERENCE_LIMIT):
        assert post(client, {"reference": reference, "code": withdrawal.new_code()},
                    addr=f"203.0.113.{n + 1}").status_code == 404
    refused = post(client, {"reference": reference, "code": code}, addr="198.51.100.99")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert post(client, {"reference": other, "code": other_code}, addr="198.51.100.99").status_code == 200
    # the table holds keyed hashes, never an address or a reference
    keys = [row[0] for row in db.execute("SELECT key FROM withdrawal_attempts")]
    assert keys and not [k for k in keys if "203.0.113" in k or reference in k or reference.replace("-", "") in k]


def test_the_limit_holds_across_two_app_instances_on_one_database(make_app, db):
    reference, code = store(db)
    first, second = make_app().test_client(), make_app().test_client()
    for n in range(withdrawal.REFERENCE_LIMIT):
        assert post(first if n % 2 else second, {"reference": reference, "code": withdrawal.new_code()},
                    addr=f"203.0.113.{n + 1}").status_code == 404
    assert post(first, {"reference": reference, "code": code}, addr="198.51.100.1").status_code == 429
    assert post(second, {"reference": reference, "code": code}, addr="198.51.100.1").status_code == 429


# --- the code ----------------------------------------------------------------------------------------------

def test_the_code_has_at_least_60_bits_and_is_read_back_however_it_is_typed():
    assert len(withdrawal.CODE_ALPHABET) ** withdrawal.CODE_LENGTH >= 2 ** 60
    assert withdrawal.code_bits() >= 60
    assert not set("0o1il") & set(withdrawal.CODE_ALPHABET)       # nothing to mistake when read aloud
    code = withdrawal.new_code()
    assert re.fullmatch(r"[a-z2-9]{5}-[a-z2-9]{5}-[a-z2-9]{5}", code)
    assert withdrawal.normalize_code(code.upper().replace("-", " ")) == code
    assert len({withdrawal.new_code() for _ in range(1000)}) == 1000


def test_the_code_is_never_stored_in_clear(db, client):
    response = client.post(FORM, data=shared())
    reference, code = pair_of(response.text)
    plain = {code, code.replace("-", ""), code.upper(), code.replace("-", "").upper()}
    tables = [row[0] for row in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'" if db.engine == "sqlite" else
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")]
    found = [(t, row) for t in tables if not t.startswith("submissions_") or db.engine != "sqlite"
             for row in db.execute(f"SELECT * FROM {t}")  # noqa: S608
             if any(p in str(row) for p in plain)]
    assert found == []
    stored = db.execute("SELECT withdrawal_code_hash FROM submissions WHERE reference = ?", [reference]).fetchone()[0]
    assert stored == withdrawal.code_hash(withdrawal.key_from_secret(SECRET), reference, code)
    if db.engine == "sqlite":
        raw = b"".join(open(f"{database_of(client.application)}{s}", "rb").read()
                       for s in ("", "-wal") if __import__("os").path.exists(f"{database_of(client.application)}{s}"))
        assert not [p for p in plain if p.encode() in raw]


def test_a_refresh_says_the_code_was_shown_and_does_not_show_it_again(client):
    first = client.post(FORM, data=shared())
    reference, code = pair_of(first.text)
    again = client.post(FORM, data=shared())
    assert pair_of.__name__ and re.search(r"data-reference>([^<]+)<", again.text).group(1) == reference
    assert "data-withdrawal-code>" not in again.text and code not in again.text
    assert "data-withdrawal-code-shown" in again.text
    assert "Your withdrawal code was shown when you first sent your answers" in again.text


def test_the_results_language_switch_keeps_the_code(client):
    result = client.post(FORM, data=shared())
    reference, code = pair_of(result.text)
    copy = re.search(r'name="result_copy" value="([^"]+)"', result.text).group(1)
    switched = client.post(f"{FORM}?lang=ca", data={"result_copy": copy, "switch_language": "ca"})
    assert switched.status_code == 200 and '<html lang="ca"' in switched.text
    assert pair_of(switched.text) == (reference, code)
    assert "codi de retirada" in switched.text


def test_the_code_is_printed_with_the_result(client):
    result = client.post(FORM, data=shared())
    box = re.search(r'<section class="reference-box".*?</section>', result.text, re.S).group(0)
    code_paragraph = re.search(r"<p>[^<]*<strong[^>]*data-withdrawal-code[^>]*>", box)
    assert code_paragraph and "no-print" not in code_paragraph.group(0)
    css = open("static/style.css", encoding="utf-8").read()
    printed_hidden = re.search(r"@media print \{\s*@page.*?\{ display: none !important; \}", css, re.S).group(0)
    assert ".reference-box" not in printed_hidden and ".withdrawal-code" not in printed_hidden


# --- references never given again -------------------------------------------------------------------------

def test_a_withdrawn_reference_is_never_given_again(client, db, monkeypatch):
    reference, code = store(db)
    assert post(client, {"reference": reference, "code": code, "step": "confirm", "confirm": "yes"}).status_code == 200
    picks = iter([reference, reference, "NEWR-EF23"])
    monkeypatch.setattr(dbmod, "new_reference", lambda: next(picks))
    assert store(db, nonce="nonce-2")[0] == "NEWR-EF23"


def test_a_reference_erased_by_staff_or_purged_is_retired_too(db, monkeypatch):
    from screening.store import retention
    erased, _ = store(db, nonce="nonce-1")
    purged, _ = store(db, nonce="nonce-2")
    erased_id = db.execute("SELECT id FROM submissions WHERE reference = ?", [erased]).fetchone()[0]
    assert retention.erase_submission(db, erased_id, centre=CENTRE, staff=None) == erased
    assert retention.purge(db, 0) == 1
    assert withdrawal.is_retired(db, erased) and withdrawal.is_retired(db, purged)
    picks = iter([erased, purged, "NEWR-EF23"])
    monkeypatch.setattr(dbmod, "new_reference", lambda: next(picks))
    assert store(db, nonce="nonce-3")[0] == "NEWR-EF23"


# --- the withdrawal pages' own language switch -------------------------------------------------------------

def switch_button(response, lang):
    button = re.search(rf'<button[^>]*name="switch_language" value="{lang}"[^>]*>', response.text).group(0)
    return re.search(r'formaction="([^"]+)"', button).group(1), re.search(r'form="([^"]+)"', button).group(1)


def test_the_forms_switch_posts_what_was_typed_and_checks_nothing(client, db):
    page = client.get("/withdraw")
    action, form = switch_button(page, "es")
    assert (action, form) == ("/withdraw?lang=es", "withdraw-form")
    switched = post(client, {"reference": "K7QF-M3XA", "code": "typed-so-far", "switch_language": "es", "shown": ""},
                    path=action)
    assert switched.status_code == 200 and '<html lang="es"' in switched.text
    assert 'value="K7QF-M3XA"' in switched.text and 'value="typed-so-far"' in switched.text
    assert "error-message" not in switched.text
    assert count(db, "withdrawal_attempts") == 0


def test_the_confirmation_and_the_done_page_come_back_in_the_chosen_language(client, db):
    reference, code = store(db)
    confirm = post(client, {"reference": reference, "code": code})
    action, form = switch_button(confirm, "ca")
    assert form == "language-form"
    data = {"reference": reference, "code": code, "step": "confirm", "switch_language": "ca"}
    switched = post(client, data, path=action)
    assert switched.status_code == 200 and '<html lang="ca"' in switched.text
    assert reference in switched.text and count(db, "submissions") == 1      # asked again, nothing erased
    done = post(client, {"reference": reference, "code": code, "step": "confirm", "confirm": "yes"})
    copy = hidden_value(done.text, "done_copy")
    again = post(client, {"done_copy": copy, "switch_language": "es"}, path="/withdraw?lang=es")
    assert again.status_code == 200 and '<html lang="es"' in again.text
    assert f'data-withdrawn="{reference}"' in again.text
    assert len(list(db.query("SELECT * FROM audit_log WHERE action = 'withdrawn'"))) == 1


# --- across app servers (sql.GUARANTEES) --------------------------------------------------------------------

def _from_threads(target, call, n=8):
    """Run call(conn) in n threads at once, each with its own connection; the results or exceptions."""
    import threading
    barrier, results = threading.Barrier(n), []

    def run():
        conn = dbmod.connect(target)
        try:
            barrier.wait()
            results.append(call(conn))
        except Exception as e:  # noqa: BLE001 - collected for the assertion
            results.append(e)
        finally:
            conn.close()
    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def keys(n):
    return {"address_key": f"address:{n}", "reference_key": "reference:same"}


def test_a_pair_confirmed_from_many_servers_at_once_erases_once_and_is_audited_once(app, db):
    reference, code = store(db)
    counter = iter(range(100))
    results = _from_threads(database_of(app), lambda conn: withdrawal.withdraw(
        conn, reference=reference, code=code, key=withdrawal.key_from_secret(SECRET), centre=CENTRE,
        **keys(next(counter))))
    # the others find nothing (counted as wrong pairs of that reference, until its limit)
    assert [r for r in results if isinstance(r, Exception) and not isinstance(r, withdrawal.TooManyAttempts)] == []
    assert [r.reference for r in results if isinstance(r, withdrawal.Withdrawable)] == [reference]
    assert count(db, "audit_log", "action = 'withdrawn'") == 1


def test_wrong_pairs_from_many_servers_at_once_never_pass_the_limit(app, db):
    reference, _code = store(db)
    counter = iter(range(100))

    def attempt(conn):
        try:
            return withdrawal.find(conn, reference=reference, code=withdrawal.new_code(),
                                   key=withdrawal.key_from_secret(SECRET), centre=CENTRE, **keys(next(counter)))
        except withdrawal.TooManyAttempts:
            return "limited"
    results = _from_threads(database_of(app), attempt, n=withdrawal.REFERENCE_LIMIT + 4)
    assert results.count("limited") == 4 and results.count(None) == withdrawal.REFERENCE_LIMIT
    assert count(db, "withdrawal_attempts", "key = 'reference:same'") == withdrawal.REFERENCE_LIMIT


def test_the_recent_withdrawals_are_the_centres_own(client, db):
    reference, code = store(db)
    assert post(client, {"reference": reference, "code": code, "step": "confirm", "confirm": "yes"}).status_code == 200
    assert [w["reference"] for w in withdrawal.recent(db, centre=CENTRE)] == [reference]
    assert withdrawal.recent(db, centre=OTHER) == []
