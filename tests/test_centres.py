"""The centre files in rules/centres/: the shipped example loads, and every kind of mistake is refused
with the file, the entry and the problem named."""
import pytest
from conftest import SLUGS, edit

from screening.core.centres import default_centre, load_centres
from screening.core.rules import RulesError, default_rules_dir

CENTRE = "centres/exemple-barcelona.toml"


def test_the_shipped_example_centre_loads_with_its_identity():
    centres = load_centres(default_rules_dir(), tuple(SLUGS))
    assert list(centres) == ["exemple-barcelona"]
    centre = centres["exemple-barcelona"]
    assert centre.name and centre.phone and centre.email and centre.address
    assert centre.booking_url.startswith("https://")
    assert centre.default_language == "ca" and centre.timezone == "Europe/Madrid"
    assert centre.services == tuple(SLUGS)
    assert centre.tel == "tel:+34930000000"
    assert centre.offers("back-massage") and not centre.offers("hot-stones")


@pytest.mark.parametrize("old, new, entry, problem", [
    ('phone = "+34 930 000 000"', 'phone = "call us"', "phone", "is not a phone number"),
    ('email = "hola@exemple.example.org"', 'email = "hola at exemple"', "email", "is not an e-mail address"),
    ('booking_url = "https://exemple.example.org/reserva"', 'booking_url = "javascript:alert(1)"', "booking_url",
     "is not an http(s) address"),
    ('default_language = "ca"', 'default_language = "fr"', "default_language", "is not one of en, ca, es"),
    ('timezone = "Europe/Madrid"', 'timezone = "Europe/Madird"', "timezone", "not a known IANA time zone"),
    ('"back-massage",', '"back-massge",', "services", "(did you mean 'back-massage'"),
    ('"back-massage",', '"decontracting-back-massage",', "services", "listed twice"),
    ('notify_to = "recepcio@exemple.example.org"', 'notify_to = "recepcio@exemple.example.org, nobody"', "notify_to",
     "not an e-mail address"),
    ('name = "Espai Massatge Exemple"', 'nom = "Espai Massatge Exemple"', "nom",
     "unknown key 'nom' (did you mean 'name'?)"),
    ('name = "Espai Massatge Exemple"', 'name = ""', "name", "must be a non-empty string"),
    ('name = "Espai Massatge Exemple"', "", "name", "missing 'name'"),
    ('timezone = "Europe/Madrid"', "timezone = 1", "timezone", "must be a non-empty string"),
    ('timezone = "Europe/Madrid"', 'timezone = "Europe/Madrid"\n[[rule]]\nid = "x"', "rule", "unknown key 'rule'"),
])
def test_a_mistake_in_a_centre_file_is_refused_naming_file_entry_and_problem(rules_copy, old, new, entry, problem):
    edit(rules_copy, CENTRE, old, new)
    with pytest.raises(RulesError) as e:
        load_centres(rules_copy, tuple(SLUGS))
    assert e.value.file == CENTRE and e.value.entry == entry
    assert problem in e.value.problem


def test_a_file_name_that_is_not_a_slug_is_refused(rules_copy):
    (rules_copy / CENTRE).rename(rules_copy / "centres" / "Mi Centro.toml")
    with pytest.raises(RulesError, match="must be a slug"):
        load_centres(rules_copy, tuple(SLUGS))


def test_a_rules_folder_without_any_centre_is_refused(rules_copy):
    (rules_copy / CENTRE).unlink()
    with pytest.raises(RulesError, match="no centre defined"):
        load_centres(rules_copy, tuple(SLUGS))


def test_broken_toml_is_refused_as_such(rules_copy):
    edit(rules_copy, CENTRE, 'name = "Espai', 'name = Espai')
    with pytest.raises(RulesError, match="not valid TOML"):
        load_centres(rules_copy, tuple(SLUGS))


def test_the_default_centre_is_the_configured_one_else_the_only_one(rules_copy):
    (rules_copy / "centres" / "altre-centre.toml").write_text(
        (rules_copy / CENTRE).read_text().replace("Espai Massatge Exemple", "Altre Centre"))
    centres = load_centres(rules_copy, tuple(SLUGS))
    assert list(centres) == ["altre-centre", "exemple-barcelona"]      # ordered by name
    assert default_centre(centres, None) is None                        # two centres, none chosen
    assert default_centre(centres, "exemple-barcelona").name == "Espai Massatge Exemple"
    with pytest.raises(KeyError):
        default_centre(centres, "nowhere")
    only = {"exemple-barcelona": centres["exemple-barcelona"]}
    assert default_centre(only, None) is centres["exemple-barcelona"]


def test_a_centres_version_changes_with_its_file(rules_copy):
    before = load_centres(rules_copy, tuple(SLUGS))["exemple-barcelona"].version
    edit(rules_copy, CENTRE, '"+34 930 000 000"', '"+34 930 000 001"')
    assert load_centres(rules_copy, tuple(SLUGS))["exemple-barcelona"].version != before


def test_the_app_serves_the_only_centre_or_the_one_the_setting_names(rules_copy, make_app):
    app = make_app(RULES_DIR=str(rules_copy))
    assert app.extensions["screening.default_centre"].slug == "exemple-barcelona"
    (rules_copy / "centres" / "altre-centre.toml").write_text(
        (rules_copy / CENTRE).read_text().replace("Espai Massatge Exemple", "Altre Centre"))
    assert make_app(RULES_DIR=str(rules_copy)).extensions["screening.default_centre"] is None
    chosen = make_app(RULES_DIR=str(rules_copy), DEFAULT_CENTRE="altre-centre")
    assert chosen.extensions["screening.default_centre"].name == "Altre Centre"
    assert list(chosen.extensions["screening.centres"]) == ["altre-centre", "exemple-barcelona"]
