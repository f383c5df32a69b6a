"""The team page (/staff/team): an admin runs their own centre's accounts, as a user sees it; the
last active admin stays, even when two admins demote each other at once; another centre's
accounts are a 404 like unknown ones; and the operator's `staff unlock` and `staff reset-2fa`."""
import html
import re
import threading

import pytest
from conftest import CENTRE, STAFF_PASSWORD, add_centre, database_of, login
from conftest import give_second_factor as set_up_second_factor

from screening.store import accounts, team
from screening.store import db as dbmod

OTHER = "centre-b"
LIMITS = {"max_failures": 5, "lock_seconds": 900, "secret": "test-secret-key-" + "x" * 32}


def page(client):
    response = client.get("/staff/team")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def member(text, email):
    """The team page's entry of one account."""
    found = re.search(rf'<li id="member-[0-9a-f]+" data-member="{re.escape(email)}".*?</li>', text, re.S)
    assert found, f"{email} is not on the team page"
    return found.group(0)


def handle_of(text, email):
    """An account's handle, as the page's forms name it."""
    return re.search(r'action="/staff/team/([0-9a-f]+)/', member(text, email)).group(1)


def audit_rows(db, action):
    return db.execute("SELECT staff_email, detail, centre FROM audit_log WHERE action = ? ORDER BY id",
                      [action]).fetchall()


def test_a_stranger_is_sent_to_log_in_and_staff_get_403(client, staff_client):
    assert client.get("/staff/team").headers["Location"].startswith("/staff/login")
    assert client.post("/staff/team/invite", data={"email": "x@y.example"}).headers["Location"].startswith(
        "/staff/login")
    assert staff_client.get("/staff/team").status_code == 403
    assert staff_client.post("/staff/team/invite", data={"email": "x@y.example"}).status_code == 403
    assert 'href="/staff/team"' not in staff_client.get("/staff/").get_data(as_text=True)


def test_the_admin_sees_the_centres_accounts_with_role_login_second_factor_and_throttle(
        admin_client, make_staff, db):
    colleague = make_staff(email="joan@centre.example", name="Joan Serra")
    db.execute("UPDATE staff SET totp_secret = 'sealed' WHERE id = ?", [colleague["id"]])
    for _ in range(5):
        accounts.attempt_login(db, colleague["email"], "wrong password", "10.0.0.9", **LIMITS)
    text = page(admin_client)
    assert 'href="/staff/team"' in text                  # in the staff menu, for admins
    mine = member(text, admin_client.staff["email"])
    assert "Admin" in mine and "Active" in mine and "never" not in mine and "(you)" in mine
    joan = member(text, "joan@centre.example")
    assert "Joan Serra" in joan and 'data-role>Staff member<' in joan
    assert "Last login:" in joan and "never" in joan
    assert "data-second-factor>set<" in joan
    assert re.search(r"data-throttled>refused for \d+ more minutes?<", joan)
    # the admin has a second factor (admins must: SCREENING_STAFF_2FA=admins, the default)
    assert "data-second-factor>set<" in mine and "data-throttled>none<" in mine


def test_another_centres_account_is_a_404_exactly_like_an_unknown_handle(make_app, rules_copy):
    add_centre(rules_copy, OTHER, name="Centre B")
    app = make_app(RULES_DIR=str(rules_copy))
    conn = dbmod.connect(database_of(app))
    a = accounts.create_staff(conn, email="a@a.example", password=STAFF_PASSWORD, role="admin", centre=CENTRE)
    set_up_second_factor(conn, a)      # admins must have one (the default)
    b = accounts.create_staff(conn, email="b@b.example", password=STAFF_PASSWORD, role="admin", centre=OTHER)
    set_up_second_factor(conn, b)      # admins must have one (the default)
    b_client = app.test_client()
    assert login(b_client, b["email"], STAFF_PASSWORD).status_code == 302
    b_handle = handle_of(page(b_client), b["email"])
    client = app.test_client()
    assert login(client, a["email"], STAFF_PASSWORD).status_code == 302
    assert "b@b.example" not in page(client)
    for action in ("role", "deactivate", "reactivate", "reset", "unlock", "remove-second-factor"):
        theirs = client.post(f"/staff/team/{b_handle}/{action}", data={"role": "staff"})
        unknown = client.post(f"/staff/team/{'0' * 16}/{action}", data={"role": "staff"})
        assert theirs.status_code == unknown.status_code == 404
        # the same page, but for the path it names (the language switch links to it)
        assert theirs.get_data(as_text=True).replace(b_handle, "0" * 16) == unknown.get_data(as_text=True)
    row = conn.execute("SELECT role, active FROM staff WHERE id = ?", [b["id"]]).fetchone()
    conn.close()
    assert tuple(row) == ("admin", 1)


def test_an_admin_changes_a_role_and_it_is_audited(admin_client, make_staff, db):
    joan = make_staff(email="joan@centre.example")
    handle = handle_of(page(admin_client), joan["email"])
    response = admin_client.post(f"/staff/team/{handle}/role", data={"role": "admin"})
    assert response.status_code == 302 and "done=role" in response.headers["Location"]
    text = admin_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "The role is changed." in text and 'data-role>Admin<' in member(text, joan["email"])
    assert audit_rows(db, "role_changed") == [(admin_client.staff["email"], "joan@centre.example:admin", CENTRE)]


def test_a_bad_role_is_refused_at_the_account(admin_client, make_staff, db):
    joan = make_staff(email="joan@centre.example")
    handle = handle_of(page(admin_client), joan["email"])
    response = admin_client.post(f"/staff/team/{handle}/role", data={"role": "owner"})
    assert response.status_code == 422
    assert "Choose staff or admin" in member(response.get_data(as_text=True), joan["email"])
    assert accounts.get_staff(db, joan["id"])["role"] == "staff"


@pytest.mark.parametrize("action", ["role", "deactivate"])
def test_the_last_active_admin_cannot_demote_or_deactivate_themselves(admin_client, make_staff, db, action):
    make_staff(role="staff")
    me = admin_client.staff
    handle = handle_of(page(admin_client), me["email"])
    response = admin_client.post(f"/staff/team/{handle}/{action}", data={"role": "staff"})
    assert response.status_code == 409
    text = response.get_data(as_text=True)
    assert "last active admin" in member(text, me["email"]) and 'role="alert"' in text
    assert accounts.get_staff(db, me["id"])["role"] == "admin" and accounts.get_staff(db, me["id"])["active"]
    assert audit_rows(db, "role_changed") == [] and audit_rows(db, "staff_deactivated") == []


def test_an_inactive_admin_does_not_count_as_the_centres_admin(admin_client, make_staff, db):
    other = make_staff(role="admin")
    accounts.deactivate(db, other["email"])
    handle = handle_of(page(admin_client), admin_client.staff["email"])
    assert admin_client.post(f"/staff/team/{handle}/role", data={"role": "staff"}).status_code == 409


def test_with_two_admins_one_may_step_down(admin_client, make_staff, db):
    make_staff(role="admin")
    handle = handle_of(page(admin_client), admin_client.staff["email"])
    assert admin_client.post(f"/staff/team/{handle}/role", data={"role": "staff"}).status_code == 302
    # now staff: the team page is closed to them
    assert admin_client.get("/staff/team").status_code == 403


def test_two_admins_demoting_each_other_at_once_leave_exactly_one_admin(app, make_staff):
    """The last-admin rule across connections (app servers on PostgreSQL): the count and the change
    are one transaction under lock('admins:<centre>'); exactly one of the two demotions succeeds."""
    target = database_of(app)
    for attempt in range(6):
        one, two = make_staff(role="admin"), make_staff(role="admin")
        start = threading.Barrier(2)
        results = {}

        def demote(actor, other):
            conn = dbmod.connect(target)
            try:
                start.wait()
                team.change_role(conn, admin=actor, staff_id=other["id"], role="staff")
                results[actor["id"]] = "ok"
            except team.TeamError as e:
                results[actor["id"]] = e.code
            finally:
                conn.close()

        threads = [threading.Thread(target=demote, args=pair) for pair in ((one, two), (two, one))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(results.values()) in (["last_admin", "ok"], ["not_admin", "ok"]), (attempt, results)
        conn = dbmod.connect(target)
        admins = conn.execute("SELECT count(*) FROM staff WHERE role = 'admin' AND active = 1 AND id IN (?, ?)",
                              [one["id"], two["id"]]).fetchone()[0]
        # the next round's pair must be the centre's only admins again
        conn.execute("UPDATE staff SET role = 'staff' WHERE id IN (?, ?)", [one["id"], two["id"]])
        conn.close()
        assert admins == 1


def test_deactivating_ends_the_members_session_at_once_and_reactivating_lets_them_back(
        app, admin_client, make_staff, db):
    colleague = app.test_client()
    joan = make_staff(email="joan@centre.example")
    assert login(colleague, joan["email"], joan["password"]).status_code == 302
    assert colleague.get("/staff/").status_code == 200
    handle = handle_of(page(admin_client), joan["email"])
    response = admin_client.post(f"/staff/team/{handle}/deactivate")
    assert response.status_code == 302
    text = admin_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "The account is deactivated" in text and "Deactivated" in member(text, joan["email"])
    assert colleague.get("/staff/").headers["Location"].startswith("/staff/login")
    assert login(colleague, joan["email"], joan["password"]).status_code == 200      # refused
    assert admin_client.post(f"/staff/team/{handle}/reactivate").status_code == 302
    assert login(colleague, joan["email"], joan["password"]).status_code == 302
    assert [r[1] for r in audit_rows(db, "staff_deactivated")] == ["joan@centre.example"]
    assert [r[1] for r in audit_rows(db, "staff_reactivated")] == ["joan@centre.example"]


def test_lifting_a_throttle_lets_the_member_in_at_once(app, admin_client, make_staff, db):
    joan = make_staff(email="joan@centre.example")
    for _ in range(5):      # a stranger's guesses, from another address (the address throttle is not lifted)
        accounts.attempt_login(db, joan["email"], "wrong password", "10.0.0.9", **LIMITS)
    member_browser = app.test_client()
    assert login(member_browser, joan["email"], joan["password"]).status_code == 429
    text = page(admin_client)
    assert "Lift the throttle" in member(text, joan["email"])
    response = admin_client.post(f"/staff/team/{handle_of(text, joan['email'])}/unlock")
    assert response.status_code == 302
    text = admin_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "The throttle is lifted" in text and "data-throttled>none<" in member(text, joan["email"])
    assert login(member_browser, joan["email"], joan["password"]).status_code == 302
    assert [(r[0], r[1]) for r in audit_rows(db, "throttle_lifted")] == [(admin_client.staff["email"],
                                                                          "joan@centre.example")]


def give_second_factor(db, staff_id):
    db.execute("UPDATE staff SET totp_secret = 'sealed', totp_set_at = ?, totp_last_step = 7 WHERE id = ?",
               [dbmod.now(), staff_id])
    db.execute("INSERT INTO recovery_codes (staff_id, code_hash, created_at) VALUES (?, 'h1', ?)",
               [staff_id, dbmod.now()])


def test_removing_a_lost_second_factor_clears_it_and_ends_the_sessions(app, admin_client, make_staff, db):
    joan = make_staff(email="joan@centre.example")
    colleague = app.test_client()
    assert login(colleague, joan["email"], joan["password"]).status_code == 302
    give_second_factor(db, joan["id"])
    text = page(admin_client)
    assert "data-second-factor>set<" in member(text, joan["email"])
    response = admin_client.post(f"/staff/team/{handle_of(text, joan['email'])}/remove-second-factor")
    assert response.status_code == 302
    text = admin_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "The second factor is removed" in text and "data-second-factor>not set<" in member(text, joan["email"])
    row = db.execute("SELECT totp_secret, totp_set_at, totp_last_step FROM staff WHERE id = ?", [joan["id"]]).fetchone()
    assert tuple(row) == (None, None, None)
    assert db.execute("SELECT count(*) FROM recovery_codes WHERE staff_id = ?", [joan["id"]]).fetchone()[0] == 0
    assert colleague.get("/staff/").headers["Location"].startswith("/staff/login")
    assert [r[1] for r in audit_rows(db, "second_factor_removed")] == ["joan@centre.example"]


@pytest.mark.parametrize("data, field, message, status", [
    ({"email": "", "role": "staff", "language": "ca"}, "email", "Enter the e-mail address to invite", 422),
    ({"email": "not an address", "role": "staff", "language": "ca"}, "email", "Enter an e-mail address like", 422),
    ({"email": "new@centre.example", "role": "owner", "language": "ca"}, "role", "Choose staff or admin", 422),
    ({"email": "new@centre.example", "role": "staff", "language": "fr"}, "language", "Choose the language", 422),
    ({"email": "new@centre.example", "role": "staff", "language": "ca", "name": "x" * 201}, "name",
     "at most 200 characters", 422),
])
def test_a_bad_invitation_is_refused_at_its_field(admin_client, db, data, field, message, status):
    response = admin_client.post("/staff/team/invite", data=data)
    assert response.status_code == status
    text = response.get_data(as_text=True)
    assert re.search(rf'id="invite-{field}-error">.*?{re.escape(message)}', text, re.S)
    assert 'aria-invalid="true"' in text
    assert db.execute("SELECT count(*) FROM account_links").fetchone()[0] == 0


def test_inviting_an_address_already_on_this_team_says_so(admin_client, make_staff, db):
    make_staff(email="joan@centre.example")
    response = admin_client.post("/staff/team/invite", data={"email": "Joan@Centre.example", "role": "staff",
                                                              "language": "ca"})
    assert response.status_code == 409
    assert "already has an account at this centre" in response.get_data(as_text=True)


def test_the_invite_form_offers_the_centres_default_language_first_chosen(admin_client):
    form = re.search(r"<select id=\"invite-language\".*?</select>", page(admin_client), re.S).group(0)
    assert '<option value="ca" selected>' in form      # the shipped centre's default language


def test_a_pending_invitation_is_listed_and_can_be_cancelled(admin_client, db):
    response = admin_client.post("/staff/team/invite", data={"email": "new@centre.example", "name": "Nova",
                                                              "role": "admin", "language": "es"})
    assert response.status_code == 200       # no mail server in this app: the link is shown once
    text = page(admin_client)
    pending = re.search(r'<li data-invitation="new@centre.example">.*?</li>', text, re.S).group(0)
    assert "Nova" in pending and "Admin" in pending and "Español" in pending and "Expires:" in pending
    handle = re.search(r'name="invitation" value="([0-9a-f]+)"', pending).group(1)
    response = admin_client.post("/staff/team/invitations/cancel", data={"invitation": handle})
    assert response.status_code == 302
    text = admin_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "The invitation is cancelled" in text and "new@centre.example" not in text
    assert admin_client.post("/staff/team/invitations/cancel", data={"invitation": handle}).status_code == 404
    assert [r[1] for r in audit_rows(db, "staff_invited")] == ["new@centre.example"]
    assert [r[1] for r in audit_rows(db, "invitation_cancelled")] == ["new@centre.example"]


def test_the_team_page_carries_a_csrf_token_in_every_form_and_refuses_a_post_without(csrf_app):
    conn = dbmod.connect(database_of(csrf_app))
    admin = accounts.create_staff(conn, email="a@centre.example", password=STAFF_PASSWORD, role="admin", centre=CENTRE)
    set_up_second_factor(conn, admin)      # admins must have one (the default)
    conn.close()
    client = csrf_app.test_client()
    assert login(client, admin["email"], STAFF_PASSWORD).status_code == 302
    text = page(client)
    assert text.count("<form") == text.count('name="csrf_token"')
    handle = handle_of(text, admin["email"])
    assert client.post(f"/staff/team/{handle}/unlock").status_code == 400
    assert client.post("/staff/team/invite", data={"email": "n@centre.example", "role": "staff",
                                                   "language": "en"}).status_code == 400


def test_team_pages_are_not_stored_by_browsers(admin_client):
    assert admin_client.get("/staff/team").headers["Cache-Control"] == "no-store"


# --- the operator's CLI ----------------------------------------------------------------------------

def test_staff_unlock_lifts_the_accounts_throttle(runner, db, make_staff):
    joan = make_staff(email="joan@centre.example")
    for _ in range(5):
        accounts.attempt_login(db, joan["email"], "wrong password", "10.0.0.9", **LIMITS)
    assert accounts.attempt_login(db, joan["email"], joan["password"], "10.0.0.9", **LIMITS).locked
    result = runner.invoke(args=["staff", "unlock", "JOAN@centre.example"])
    assert result.exit_code == 0, result.output
    assert "Lifted the throttles of joan@centre.example" in result.output
    assert accounts.attempt_login(db, joan["email"], joan["password"], "10.0.0.8", **LIMITS).staff is not None
    assert audit_rows(db, "throttle_lifted") == [(None, "joan@centre.example", CENTRE)]


def test_staff_reset_2fa_removes_the_second_factor_of_a_last_admin(runner, db, make_staff):
    admin = make_staff(role="admin", email="boss@centre.example")
    give_second_factor(db, admin["id"])
    result = runner.invoke(args=["staff", "reset-2fa", "boss@centre.example"])
    assert result.exit_code == 0, result.output
    assert "Removed the second factor of boss@centre.example" in result.output
    assert db.execute("SELECT totp_secret FROM staff WHERE id = ?", [admin["id"]]).fetchone()[0] is None
    assert db.execute("SELECT count(*) FROM recovery_codes").fetchone()[0] == 0
    assert audit_rows(db, "second_factor_removed") == [(None, "boss@centre.example", CENTRE)]
    again = runner.invoke(args=["staff", "reset-2fa", "boss@centre.example"])
    assert again.exit_code == 0 and "has no second factor" in again.output


@pytest.mark.parametrize("command", ["unlock", "reset-2fa"])
def test_the_cli_refuses_an_unknown_address_cleanly(runner, command):
    result = runner.invoke(args=["staff", command, "nobody@centre.example"])
    assert result.exit_code == 1
    assert "There is no account with that email." in result.output and "Traceback" not in result.output


def test_names_on_the_team_page_are_escaped(admin_client, make_staff):
    make_staff(email="evil@centre.example", name="<script>x</script>")
    text = page(admin_client)
    assert "<script>x</script>" not in text and html.escape("<script>x</script>") in text
