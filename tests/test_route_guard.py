"""Deny by default: every route is either on the public allow-list or refuses a stranger.

A view added later without thinking about access fails this test instead of leaking submissions.
"""
import re

import pytest
from conftest import SLUGS

PUBLIC = [
    r"/",
    r"/services/<slug>",
    r"/screening/<slug>",
    r"/healthz",
    r"/static/<path:filename>",
    r"/api/v1/.*",
    r"/staff/login",
    r"/centres",                                             # the directory of centres
    r"/c/<centre>/(services/<slug>|screening/<slug>)?",      # a centre's public pages
]
CANARY = "Zebedee Canary-Name"


def is_public(rule: str) -> bool:
    return any(re.fullmatch(pattern, rule) for pattern in PUBLIC)


def sample_url(rule, submission):
    """A concrete URL for a rule, pointing at a real submission where it takes an id."""
    values = {}
    for name, converter in rule._converters.items():
        kind = type(converter).__name__
        if kind in ("IntegerConverter", "NumberConverter"):
            values[name] = submission["id"]
        elif name in ("slug", "service"):
            values[name] = SLUGS[0]
        elif name == "reference":
            values[name] = submission["reference"]
        else:
            values[name] = "x"
    return rule.build(values, append_unknown=False)[1]


def refused(response) -> bool:
    if response.status_code == 401:
        return True
    return response.status_code in (302, 303) and response.headers["Location"].startswith("/staff/login")


def staff_rules(app):
    return [rule for rule in app.url_map.iter_rules() if not is_public(rule.rule)]


def test_every_route_is_public_or_refuses_a_stranger(app, client, make_submission):
    submission = make_submission(name=CANARY)
    leaks = []
    for rule in staff_rules(app):
        url = sample_url(rule, submission)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            for headers in ({"Accept": "text/html"}, {"Accept": "application/json"}):
                response = client.open(url, method=method, headers=headers, data={"status": "closed"})
                if not refused(response) or CANARY in response.get_data(as_text=True):
                    leaks.append(f"{method} {url} ({headers['Accept']}) -> {response.status_code}")
    assert leaks == []


def test_the_guard_has_something_to_guard(app):
    """Not a vacuous pass: at least the logout route is behind the guard."""
    assert "/staff/logout" in {rule.rule for rule in staff_rules(app)}


@pytest.mark.parametrize("rule", ["/staff/", "/staff/submissions/<int:submission_id>", "/staff/export.csv",
                                  "/staff/logout", "/admin"])
def test_staff_pages_are_not_on_the_public_list(rule):
    assert not is_public(rule)


def test_nothing_public_sets_the_staff_cookie(client):
    for url in ["/", f"/services/{SLUGS[0]}", f"/screening/{SLUGS[0]}", "/healthz", "/staff/login"]:
        assert "screening_staff" not in client.get(url).headers.get("Set-Cookie", "")
