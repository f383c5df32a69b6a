"""The centres: who each one is, how to reach it, what it offers, read from rules/centres/<slug>.toml.

Plain Python (no Flask, no database), like the rules loader beside it, and just as strict: every
key is known or refused, and a problem raises RulesError naming the file, the entry and what is
wrong, so that a typo in a phone number or a time zone stops the app at start-up.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .rules import LOCALES, Example, Rule, RulesError, RuleSet, load_rules, parse_extra_rules

CENTRES_DIR = "centres"
SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
PHONE_RE = re.compile(r"^\+?[0-9][0-9 .()-]{5,22}[0-9]$")
EMAIL_RE = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[A-Za-z]{2,}$")
URL_RE = re.compile(r"^https?://[^\s<>\"]+$")
MAX_RETENTION_DAYS = 36500      # a century: more than any retention period (store/retention.py's MAX_DAYS)
# key -> (required, what it is); the order is the order of the documentation in the shipped file
FIELDS = {
    "name": (True, "the centre's name as clients know it"),
    "phone": (True, "a phone number, e.g. '+34 930 000 000'"),
    "email": (True, "an e-mail address"),
    "address": (True, "the street address"),
    "booking_url": (True, "an http(s) address where clients book"),
    "default_language": (True, f"one of {', '.join(LOCALES)}"),
    "timezone": (True, "an IANA time zone such as 'Europe/Madrid'"),
    "services": (True, "the slugs of the services it offers"),
    "notify_to": (False, "the e-mail address(es) notices of shared screenings go to, comma-separated"),
    "retention_days": (False, f"how many days the centre keeps a shared screening, from 1 to {MAX_RETENTION_DAYS}"
                              " (default: the installation's SCREENING_RETENTION_DAYS)"),
    "rules": (False, "the centre's own extra [[rules]], in the format of rules.toml"),
    "examples": (False, "the centre's own [[examples]], in the format of examples.toml"),
}
# what a centre may not change: said plainly rather than as an unknown key
SHARED_ONLY = {"clearance": "the [clearance] is shared (rules.toml): a centre may only add [[rules]]",
               "suggestions": "suggestions are shared (rules.toml): a centre may only add [[rules]]",
               "questions": "the questions are shared (questions.toml): a centre may only add [[rules]]"}


@dataclass(frozen=True)
class Centre:
    """One centre of the directory: its identity, contact, language, clock and services."""

    slug: str
    name: str
    phone: str
    email: str
    address: str
    booking_url: str
    default_language: str
    timezone: str
    services: tuple[str, ...]
    notify_to: tuple[str, ...]
    version: str          # a hash of the centre's file, part of the rules_version of its screenings
    rules: tuple[Rule, ...] = ()         # its own extra rules, added to the shared ones
    examples: tuple[Example, ...] = ()   # its own examples, run against its rule set
    extra: str = ""       # a hash of its own rules and examples as parsed ("" when none): equal ones are proved once
    retention_days: int | None = None    # days its shared screenings are kept; None: the installation's

    @property
    def file(self) -> str:
        """The centre's file as problems name it: centres/<slug>.toml."""
        return f"{CENTRES_DIR}/{self.slug}.toml"

    @property
    def tel(self) -> str:
        """The phone number as a tel: URI (digits and a leading +)."""
        return "tel:" + re.sub(r"[^0-9+]", "", self.phone)

    def offers(self, service_slug: str) -> bool:
        return service_slug in self.services


def _fail(file: str, problem: str, entry: str = "(top level)"):
    raise RulesError(file, entry, problem)


def _string(file: str, data: dict, key: str, pattern: re.Pattern | None = None) -> str:
    value = data[key]
    if not isinstance(value, str) or not value.strip():
        _fail(file, f"'{key}' must be a non-empty string ({FIELDS[key][1]})", key)
    value = value.strip()
    if pattern is not None and not pattern.match(value):
        _fail(file, f"'{key}' = {value!r} is not {FIELDS[key][1]}", key)
    return value


def _timezone(file: str, value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        _fail(file, f"'timezone' = {value!r} is not a known IANA time zone (e.g. 'Europe/Madrid')", "timezone")
    return value


def _services(file: str, value, catalogue: tuple[str, ...]) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(s, str) for s in value):
        _fail(file, "'services' must be a non-empty list of service slugs", "services")
    for slug in value:
        if slug not in catalogue:
            hint = difflib.get_close_matches(slug, catalogue, n=1)
            _fail(file, f"unknown service slug {slug!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                  + f" (known: {', '.join(catalogue)})", "services")
    if len(set(value)) != len(value):
        _fail(file, "a service is listed twice", "services")
    return tuple(value)


def _extra(file: str, data: dict, shared: RuleSet | None, directory: Path):
    """The centre's own rules and examples, validated like rules.toml, and a hash of their parsed content."""
    if "rules" not in data and "examples" not in data:
        return (), (), ""
    if shared is None:      # called without the shared rules: read them from the same rules folder
        shared = load_rules(directory)
    rules, examples = parse_extra_rules(file, data, shared)
    if not rules and not examples:
        return (), (), ""
    # the parsed tables, not the bytes: two centres with the same rules written differently share a proof
    content = json.dumps({"rules": data.get("rules", []), "examples": data.get("examples", [])},
                         sort_keys=True, ensure_ascii=False, default=str)
    return rules, examples, hashlib.sha256(content.encode()).hexdigest()[:16]


def load_centre(path: Path, catalogue: tuple[str, ...], shared: RuleSet | None = None) -> Centre:
    """Read and validate one centre file; its slug is the file's name without .toml.

    Its own [[rules]] and [[examples]] are validated against `shared` (read from the rules folder
    when not given), with the loader's own functions."""
    file = f"{CENTRES_DIR}/{path.name}"
    slug = path.stem
    if not SLUG_RE.match(slug):
        _fail(file, f"the file name must be a slug (lower-case letters, digits and '-'), got {slug!r}", "(file)")
    raw = path.read_bytes()
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        _fail(file, f"not valid TOML: {e}", "(file)")
    for key in data:
        if key in SHARED_ONLY:
            _fail(file, SHARED_ONLY[key], key)
        if key not in FIELDS:
            hint = difflib.get_close_matches(key, FIELDS, n=1, cutoff=0.5)
            _fail(file, f"unknown key {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                  + f" (allowed: {', '.join(FIELDS)})", key)
    for key, (required, what) in FIELDS.items():
        if required and key not in data:
            _fail(file, f"missing '{key}' ({what})", key)
    language = _string(file, data, "default_language")
    if language not in LOCALES:
        _fail(file, f"'default_language' = {language!r} is not one of {', '.join(LOCALES)}", "default_language")
    notify_to = ()
    if "notify_to" in data:
        notify_to = tuple(a.strip() for a in _string(file, data, "notify_to").split(",") if a.strip())
        bad = [a for a in notify_to if not EMAIL_RE.match(a)]
        if bad or not notify_to:
            _fail(file, f"'notify_to' holds something that is not an e-mail address: {bad!r}", "notify_to")
    retention_days = data.get("retention_days")
    if retention_days is not None and (type(retention_days) is not int
                                       or not 1 <= retention_days <= MAX_RETENTION_DAYS):
        _fail(file, f"'retention_days' = {retention_days!r} is not {FIELDS['retention_days'][1]}", "retention_days")
    rules, examples, extra = _extra(file, data, shared, path.parent.parent)
    return Centre(
        slug=slug, name=_string(file, data, "name"), phone=_string(file, data, "phone", PHONE_RE),
        email=_string(file, data, "email", EMAIL_RE), address=_string(file, data, "address"),
        booking_url=_string(file, data, "booking_url", URL_RE), default_language=language,
        timezone=_timezone(file, _string(file, data, "timezone")),
        services=_services(file, data["services"], catalogue), notify_to=notify_to,
        version=hashlib.sha256(raw).hexdigest()[:12], rules=rules, examples=examples, extra=extra,
        retention_days=retention_days,
    )


def load_centres(directory: str | Path, catalogue: tuple[str, ...],
                 shared: RuleSet | None = None) -> dict[str, Centre]:
    """Every centre in `directory`/centres, by slug, in the order of their names; at least one.

    Pass the shared rules (`shared`) when they are loaded already: centre rules are read against them."""
    folder = Path(directory) / CENTRES_DIR
    paths = sorted(folder.glob("*.toml")) if folder.is_dir() else []
    if not paths:
        _fail(CENTRES_DIR, f"no centre defined: add a file {CENTRES_DIR}/<centre-slug>.toml to {directory}", "(folder)")
    if shared is None and any(_mentions_rules(p) for p in paths):
        shared = load_rules(directory)     # once, not once per centre
    centres = [load_centre(p, catalogue, shared) for p in paths]
    return {c.slug: c for c in sorted(centres, key=lambda c: (c.name.casefold(), c.slug))}


def default_centre(centres: dict[str, Centre], configured: str | None) -> Centre | None:
    """The centre the un-prefixed routes serve: the configured one, else the only one, else none."""
    if configured:
        if configured not in centres:
            raise KeyError(configured)
        return centres[configured]
    if len(centres) == 1:
        return next(iter(centres.values()))
    return None


def _mentions_rules(path: Path) -> bool:
    """Whether a centre file may hold rules or examples (a cheap look before parsing it)."""
    text = path.read_bytes()
    return b"rules" in text or b"examples" in text


def centre_rules(shared: RuleSet, centre: Centre) -> RuleSet:
    """The rule set a centre screens with: the shared rules plus its own, and its own examples.

    A centre without rules of its own screens with the shared set itself (same version). One with
    rules gets a version covering the shared files and its own file, recorded with its screenings.
    """
    if not centre.extra:
        return shared
    version = hashlib.sha256(f"{shared.version}+{centre.version}".encode()).hexdigest()[:12]
    return replace(shared, rules=shared.rules + centre.rules, examples=centre.examples, version=version)


def rule_sets(shared: RuleSet, centres: dict[str, Centre]) -> dict[str, RuleSet]:
    """Each centre's rule set by slug, built once (at start-up)."""
    return {slug: centre_rules(shared, c) for slug, c in centres.items()}
