"""The centres: who each one is, how to reach it, what it offers, read from rules/centres/<slug>.toml.

Plain Python (no Flask, no database), like the rules loader beside it, and just as strict: every
key is known or refused, and a problem raises RulesError naming the file, the entry and what is
wrong, so that a typo in a phone number or a time zone stops the app at start-up.
"""
from __future__ import annotations

import difflib
import hashlib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .rules import LOCALES, RulesError

CENTRES_DIR = "centres"
SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
PHONE_RE = re.compile(r"^\+?[0-9][0-9 .()-]{5,22}[0-9]$")
EMAIL_RE = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[A-Za-z]{2,}$")
URL_RE = re.compile(r"^https?://[^\s<>\"]+$")
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
}


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


def load_centre(path: Path, catalogue: tuple[str, ...]) -> Centre:
    """Read and validate one centre file; its slug is the file's name without .toml."""
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
    return Centre(
        slug=slug, name=_string(file, data, "name"), phone=_string(file, data, "phone", PHONE_RE),
        email=_string(file, data, "email", EMAIL_RE), address=_string(file, data, "address"),
        booking_url=_string(file, data, "booking_url", URL_RE), default_language=language,
        timezone=_timezone(file, _string(file, data, "timezone")),
        services=_services(file, data["services"], catalogue), notify_to=notify_to,
        version=hashlib.sha256(raw).hexdigest()[:12],
    )


def load_centres(directory: str | Path, catalogue: tuple[str, ...]) -> dict[str, Centre]:
    """Every centre in `directory`/centres, by slug, in the order of their names; at least one."""
    folder = Path(directory) / CENTRES_DIR
    paths = sorted(folder.glob("*.toml")) if folder.is_dir() else []
    if not paths:
        _fail(CENTRES_DIR, f"no centre defined: add a file {CENTRES_DIR}/<centre-slug>.toml to {directory}", "(folder)")
    centres = [load_centre(p, catalogue) for p in paths]
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
