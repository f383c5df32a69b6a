"""Staff of a centre with rules of its own read its screenings with that centre's rules: the
submission page re-judges with them, the rules page and the simulator show them, and the CSV's
reasons name the centre's own rule. Staff of the shared-rules centre keep the shared rules."""
import csv
import io
import re

import pytest
from conftest import CENTRE, RED_FLAGS, login
from test_centre_rules import PREGNANT, STRICT_RULE, add_centre

STRICT = "centre-prudent"
OWN_RULE = "any_pregnancy_consult"
OWN_MESSAGE = "This centre asks every pregnant client to speak to a health professional before booking."


@pytest.fixture
def app(make_app, rules_copy):
    """Two centres: the shipped one (shared rules) and a stricter one (any pregnancy: consult)."""
    add_centre(rules_copy, extra=STRICT_RULE)
    return make_app(RULES_DIR=str(rules_copy), DEFAULT_CENTRE=CENTRE)


def staff_of(app, make_staff, centre):
    client = app.test_client()
    account = make_staff(centre=centre)
    assert login(client, account["email"], account["password"]).status_code == 302
    return client


def share_pregnant(client, centre):
    """A pregnant client shares a screening at `centre`; return the result page."""
    form = PREGNANT | {"share": "yes", "name": "Marta Puig", "contact": "marta@example.org",
                       "consent": "yes", "nonce": "p" * 24}
    return client.post(f"/c/{centre}/screening/back-massage", data=form).text


def test_a_stricter_centres_screening_is_not_shown_to_its_staff_as_laxer(app, make_staff, db):
    result = share_pregnant(app.test_client(), STRICT)
    assert 'data-outcome="consult_professional"' in result
    sub_id = db.execute("SELECT id FROM submissions WHERE centre = ?", [STRICT]).fetchone()[0]
    page = staff_of(app, make_staff, STRICT).get(f"/staff/submissions/{sub_id}").text
    assert 'data-rejudge="differs"' not in page
    assert "would judge this differently" not in page
    assert "no longer in the rules" not in page
    assert f'<li data-fired-rule="{OWN_RULE}">' in page and OWN_MESSAGE in page
    assert "(the current rules)" in page and "the current rules are" not in page


def test_the_rules_page_and_the_simulator_use_the_centres_own_rules(app, make_staff):
    client = staff_of(app, make_staff, STRICT)
    own = app.extensions["screening.centre_rules"][STRICT]
    page = client.get("/staff/rules").text
    assert f'data-rule="{OWN_RULE}"' in page
    assert f"<code data-rules-version>{own.version}</code>" in page
    assert own.version != app.extensions["screening.rules"].version
    tried = client.post("/staff/rules/simulate", data={"service": "back-massage", **PREGNANT}).text
    assert 'data-simulated-outcome="consult_professional"' in tried
    assert f'data-simulated-rule="{OWN_RULE}"' in tried


def test_the_csv_reasons_of_a_stricter_centre_name_its_own_rule(app, make_staff):
    share_pregnant(app.test_client(), STRICT)
    text = staff_of(app, make_staff, STRICT).get("/staff/export.csv?sep=comma").text
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    assert len(rows) == 1
    assert rows[0]["Rules (ids)"].split(";") == ["pregnancy", OWN_RULE]
    assert OWN_MESSAGE in rows[0]["Reasons"]


def test_staff_of_the_shared_rules_centre_still_see_the_shared_rules(app, make_staff, db):
    shared = app.extensions["screening.rules"]
    share_pregnant(app.test_client(), CENTRE)
    client = staff_of(app, make_staff, CENTRE)
    page = client.get("/staff/rules").text
    assert f'data-rule="{OWN_RULE}"' not in page
    assert f"<code data-rules-version>{shared.version}</code>" in page
    tried = client.post("/staff/rules/simulate", data={"service": "back-massage", **PREGNANT}).text
    assert 'data-simulated-outcome="tell_centre"' in tried
    sub_id = db.execute("SELECT id FROM submissions WHERE centre = ?", [CENTRE]).fetchone()[0]
    detail = client.get(f"/staff/submissions/{sub_id}").text
    assert 'data-rejudge="differs"' not in detail and "(the current rules)" in detail


def test_a_stricter_centres_old_screening_is_flagged_with_its_own_rules(app, make_staff, make_submission):
    """A screening judged before the centre's rule existed: its staff are told their rules now say more."""
    shared = app.extensions["screening.rules"]
    stored = make_submission(centre=STRICT, service="back-massage", outcome="tell_centre",
                             answers={f: "no" for f in RED_FLAGS} | {"pregnant": "yes", "pregnancy_complicated": "no"},
                             fired_rules=[{"rule": "pregnancy", "outcome": "tell_centre"}],
                             rules_version=shared.version)
    page = staff_of(app, make_staff, STRICT).get(f"/staff/submissions/{stored['id']}").text
    assert 'data-rejudge="differs"' in page
    assert f'data-current-rule="{OWN_RULE}"' in page
    assert re.search(r"the current rules are <code>(\w+)</code>", page).group(1) == \
        app.extensions["screening.centre_rules"][STRICT].version
