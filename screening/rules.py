"""Loads and validates the rule files in rules/ (questions, rules, services, texts, examples).

Plain Python: no Flask here. Everything is checked at load time and any problem raises
RulesError naming the file, the entry and what is wrong, so that a bad edit stops the app at
start-up instead of failing a client's request later.
"""
from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .conditions import Condition, ConditionError, compile_condition

OUTCOMES = ("proceed", "tell_centre", "consult_professional")
LOCALES = ("en", "ca", "es")
DEFAULT_LOCALE = "en"
QUESTION_TYPES = ("yes_no_unsure", "yes_no", "single", "multi", "text")
YES_NO_UNSURE = ("yes", "no", "not_sure")
YES_NO = ("yes", "no")
RULE_FILES = ("questions.toml", "rules.toml", "services.toml", "texts.toml", "examples.toml")
SERVICE_VARS = ("service.slug", "service.pressure", "service.areas")


class RulesError(ValueError):
    """A rule file is invalid. str() reads 'file: entry: problem'."""

    def __init__(self, file: str, entry: str, problem: str):
        self.file, self.entry, self.problem = file, entry, problem
        super().__init__(f"{file}: {entry}: {problem}")


class Text:
    """A user-facing text with its translations; `get(locale)` falls back to English."""

    __slots__ = ("_by_locale",)

    def __init__(self, by_locale: dict[str, str]):
        self._by_locale = dict(by_locale)

    def get(self, locale: str | None = None) -> str:
        return self._by_locale.get(locale or DEFAULT_LOCALE) or self._by_locale[DEFAULT_LOCALE]

    def __str__(self) -> str:
        return self.get(DEFAULT_LOCALE)

    def __eq__(self, other):
        return isinstance(other, Text) and other._by_locale == self._by_locale

    def __hash__(self):
        return hash(tuple(sorted(self._by_locale.items())))

    def __repr__(self):
        return f"Text({self._by_locale!r})"


@dataclass(frozen=True)
class Option:
    id: str
    label: Text


@dataclass(frozen=True)
class Question:
    id: str
    type: str
    text: Text
    help: Text | None
    required: bool
    red_flag: bool
    options: tuple[Option, ...]
    asked_when: Condition | None
    max_length: int | None
    source: str

    @property
    def option_ids(self) -> tuple[str, ...]:
        return tuple(o.id for o in self.options)

    @property
    def follow_up(self) -> bool:
        return self.asked_when is not None


@dataclass(frozen=True)
class Rule:
    id: str
    when: Condition
    outcome: str
    message: Text
    source: str
    about: str | None = None           # the question whose "not sure" answer this rule reads as yes
    clearable: bool = False            # a professional's clearance turns it into the clearance outcome
    cleared_message: Text | None = None


@dataclass(frozen=True)
class Suggestion:
    id: str
    when: Condition
    service: str
    message: Text
    source: str


@dataclass(frozen=True)
class Area:
    id: str
    name: Text


@dataclass(frozen=True)
class Faq:
    question: Text
    answer: Text


@dataclass(frozen=True)
class Service:
    slug: str
    name: Text
    summary: Text
    description: tuple[Text, ...]
    areas: tuple[Area, ...]
    pressure: str
    intensity: Text
    duration: Text
    during: tuple[Text, ...]
    after: tuple[Text, ...]
    before_booking: tuple[Text, ...]
    faq: tuple[Faq, ...]
    source: str

    def facts(self) -> dict[str, Any]:
        """The service attributes that conditions can read."""
        return {"service.slug": self.slug, "service.pressure": self.pressure,
                "service.areas": tuple(a.id for a in self.areas)}


@dataclass(frozen=True)
class Clearance:
    question: str
    outcome: str


@dataclass(frozen=True)
class Example:
    name: str
    service: str
    answers: dict[str, Any]
    outcome: str
    rules: tuple[str, ...] | None


@dataclass(frozen=True)
class RuleSet:
    questions: tuple[Question, ...]
    rules: tuple[Rule, ...]
    suggestions: tuple[Suggestion, ...]
    services: tuple[Service, ...]
    clearance: Clearance | None
    texts: dict[str, Text]
    outcomes: dict[str, dict[str, Text]]
    examples: tuple[Example, ...]
    version: str
    directory: str
    questions_by_id: dict[str, Question] = field(repr=False, default_factory=dict)
    services_by_slug: dict[str, Service] = field(repr=False, default_factory=dict)

    def service(self, slug: str) -> Service | None:
        return self.services_by_slug.get(slug)

    def text(self, key: str, locale: str | None = None) -> str:
        return self.texts[key].get(locale)


# --- helpers that read one kind of value and fail with the file and entry ----------------------

class _Reader:
    """Reads values from one entry of one file, raising RulesError that names both."""

    def __init__(self, file: str, entry: str, data: dict, allowed: set[str]):
        self.file, self.entry, self.data = file, entry, data
        if not isinstance(data, dict):
            self.fail(f"expected a table, got {type(data).__name__}")
        unknown = set(data) - allowed
        if unknown:
            self.fail(f"unknown key(s) {', '.join(sorted(unknown))} (allowed: {', '.join(sorted(allowed))})")

    def fail(self, problem: str):
        raise RulesError(self.file, self.entry, problem)

    def get(self, key, kind, *, required=True, default=None):
        if key not in self.data:
            if required:
                self.fail(f"missing '{key}'")
            return default
        value = self.data[key]
        if kind is not None and (not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))):
            self.fail(f"'{key}' must be {getattr(kind, '__name__', kind)}, got {type(value).__name__}")
        return value

    def ident(self, key="id"):
        value = self.get(key, str)
        if not value or not value.replace("_", "a").replace("-", "a").isalnum() or not value.isascii():
            self.fail(f"'{key}' must be letters, digits, '_' or '-', got {value!r}")
        return value

    def text(self, key, *, required=True):
        if key not in self.data:
            if required:
                self.fail(f"missing '{key}'")
            return None
        return parse_text(self.data[key], self.fail, key)

    def texts(self, key, *, required=False):
        values = self.get(key, list, required=required, default=[])
        return tuple(parse_text(v, self.fail, f"{key}[{i}]") for i, v in enumerate(values))

    def condition(self, key, known_vars, *, required=True):
        if key not in self.data:
            if required:
                self.fail(f"missing '{key}'")
            return None
        try:
            return compile_condition(self.data[key], known_vars, path=key)
        except ConditionError as e:
            self.fail(f"bad condition: {e}")


def parse_text(value, fail, key):
    """A text is a plain (English) string or a table of locale -> string that includes 'en'."""
    if isinstance(value, str):
        value = {DEFAULT_LOCALE: value}
    if not isinstance(value, dict):
        fail(f"'{key}' must be a string or a table of translations")
    for locale, text in value.items():
        if locale not in LOCALES:
            fail(f"'{key}' has unknown locale {locale!r} (known: {', '.join(LOCALES)})")
        if not isinstance(text, str) or not text.strip():
            fail(f"'{key}.{locale}' must be a non-empty string")
    if DEFAULT_LOCALE not in value:
        fail(f"'{key}' needs an English ('en') text")
    return Text(value)


def _read_file(directory: Path, name: str) -> dict:
    path = directory / name
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise RulesError(name, "(file)", f"missing from {directory}") from None
    except tomllib.TOMLDecodeError as e:
        raise RulesError(name, "(file)", f"not valid TOML: {e}") from None


def _entries(file, data, key):
    entries = data.get(key, [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise RulesError(file, key, f"expected [[{key}]] tables")
    return entries


def _check_unique(file, kind, ids):
    seen = set()
    for i in ids:
        if i in seen:
            raise RulesError(file, f"{kind} {i!r}", "duplicate id")
        seen.add(i)


def rules_version(directory: Path) -> str:
    """A short hash of every rule file: it changes whenever any of them changes."""
    digest = hashlib.sha256()
    for name in RULE_FILES:
        path = directory / name
        digest.update(name.encode() + b"\0")
        digest.update(path.read_bytes() if path.exists() else b"")
    return digest.hexdigest()[:12]


# --- the loader --------------------------------------------------------------------------------

def load_rules(directory: str | Path) -> RuleSet:
    """Read and validate every rule file in `directory`; raise RulesError on the first problem."""
    directory = Path(directory)
    services = _load_services(_read_file(directory, "services.toml"))
    questions = _load_questions(_read_file(directory, "questions.toml"))
    q_by_id = {q.id: q for q in questions}
    rules_data = _read_file(directory, "rules.toml")
    known_vars = set(q_by_id) | set(SERVICE_VARS)
    clearance = _load_clearance(rules_data, q_by_id)
    rules = _load_rules(rules_data, known_vars, q_by_id, clearance)
    suggestions = _load_suggestions(rules_data, known_vars, {s.slug for s in services})
    conditions = [("questions.toml", f"question {q.id!r}", q.asked_when) for q in questions if q.asked_when]
    conditions += [("rules.toml", f"rule {r.id!r}", r.when) for r in rules]
    conditions += [("rules.toml", f"suggestion {s.id!r}", s.when) for s in suggestions]
    for file, entry, cond in conditions:
        _check_literals(file, entry, cond, q_by_id, services)
    texts, outcomes = _load_texts(_read_file(directory, "texts.toml"))
    examples = _load_examples(_read_file(directory, "examples.toml"), q_by_id, {s.slug for s in services})
    return RuleSet(
        questions=questions, rules=rules, suggestions=suggestions, services=services,
        clearance=clearance, texts=texts, outcomes=outcomes, examples=examples,
        version=rules_version(directory), directory=str(directory),
        questions_by_id=q_by_id, services_by_slug={s.slug: s for s in services},
    )


def _load_questions(data) -> tuple[Question, ...]:
    file = "questions.toml"
    questions: list[Question] = []
    for i, raw in enumerate(_entries(file, data, "questions")):
        entry = f"question {raw.get('id', '#' + str(i + 1))!r}"
        r = _Reader(file, entry, raw, {"id", "type", "text", "help", "required", "red_flag", "options",
                                       "asked_when", "max_length", "source"})
        qid = r.ident()
        qtype = r.get("type", str)
        if qtype not in QUESTION_TYPES:
            r.fail(f"unknown type {qtype!r} (known: {', '.join(QUESTION_TYPES)})")
        options = ()
        if qtype in ("yes_no_unsure", "yes_no"):
            if "options" in raw:
                r.fail(f"a {qtype} question has fixed options; remove 'options'")
            ids = YES_NO_UNSURE if qtype == "yes_no_unsure" else YES_NO
            options = tuple(Option(o, Text({DEFAULT_LOCALE: o})) for o in ids)
        elif qtype in ("single", "multi"):
            opts = r.get("options", list)
            if not opts:
                r.fail("needs at least one option")
            parsed = []
            for j, o in enumerate(opts):
                orr = _Reader(file, f"{entry} option {j + 1}", o, {"id", "label"})
                parsed.append(Option(orr.ident(), orr.text("label")))
            _check_unique(file, f"{entry} option", [o.id for o in parsed])
            options = tuple(parsed)
        red_flag = r.get("red_flag", bool, required=False, default=False)
        if red_flag and qtype != "yes_no_unsure":
            r.fail("a red flag must offer yes, no and not sure (type = 'yes_no_unsure')")
        max_length = r.get("max_length", int, required=qtype == "text")
        if max_length is not None and (qtype != "text" or max_length < 1):
            r.fail("'max_length' is for text questions and must be positive")
        # asked_when may only read questions that come earlier, so the form can be answered top-down
        asked_when = r.condition("asked_when", {q.id for q in questions} | set(SERVICE_VARS), required=False)
        if qid in {q.id for q in questions}:
            r.fail("duplicate id")
        questions.append(Question(
            id=qid, type=qtype, text=r.text("text"), help=r.text("help", required=False),
            required=r.get("required", bool, required=False, default=qtype in ("yes_no_unsure",)),
            red_flag=red_flag, options=options, asked_when=asked_when, max_length=max_length,
            source=r.get("source", str, required=False, default=""),
        ))
    if not questions:
        raise RulesError(file, "questions", "no questions defined")
    for q in questions:
        if q.red_flag and not q.required:
            raise RulesError(file, f"question {q.id!r}", "a red flag must be required: unanswered is never 'no'")
    return tuple(questions)


def _load_clearance(data, q_by_id) -> Clearance | None:
    file = "rules.toml"
    if "clearance" not in data:
        return None
    r = _Reader(file, "clearance", data["clearance"], {"question", "outcome"})
    question, outcome = r.get("question", str), r.get("outcome", str)
    if question not in q_by_id:
        r.fail(f"unknown question id {question!r}")
    if q_by_id[question].type != "yes_no":
        r.fail(f"the clearance question {question!r} must be a yes/no question")
    if outcome not in OUTCOMES:
        r.fail(f"unknown outcome {outcome!r} (known: {', '.join(OUTCOMES)})")
    return Clearance(question, outcome)


def _load_rules(data, known_vars, q_by_id, clearance) -> tuple[Rule, ...]:
    file = "rules.toml"
    rules = []
    for i, raw in enumerate(_entries(file, data, "rules")):
        entry = f"rule {raw.get('id', '#' + str(i + 1))!r}"
        r = _Reader(file, entry, raw, {"id", "when", "outcome", "message", "source", "about", "clearable",
                                       "cleared_message"})
        outcome = r.get("outcome", str)
        if outcome not in OUTCOMES:
            r.fail(f"unknown outcome {outcome!r} (known: {', '.join(OUTCOMES)})")
        about = r.get("about", str, required=False)
        if about is not None and about not in q_by_id:
            r.fail(f"'about' names unknown question id {about!r}")
        clearable = r.get("clearable", bool, required=False, default=False)
        cleared_message = r.text("cleared_message", required=clearable)
        if clearable and clearance is None:
            r.fail("clearable rule but rules.toml has no [clearance] section")
        source = r.get("source", str)
        if not source.strip():
            r.fail("'source' must quote the sentence of the page (or the centre's decision) it comes from")
        rules.append(Rule(id=r.ident(), when=r.condition("when", known_vars), outcome=outcome,
                          message=r.text("message"), source=source, about=about, clearable=clearable,
                          cleared_message=cleared_message))
    _check_unique(file, "rule", [x.id for x in rules])
    return tuple(rules)


def _load_suggestions(data, known_vars, slugs) -> tuple[Suggestion, ...]:
    file = "rules.toml"
    out = []
    for i, raw in enumerate(_entries(file, data, "suggestions")):
        entry = f"suggestion {raw.get('id', '#' + str(i + 1))!r}"
        r = _Reader(file, entry, raw, {"id", "when", "service", "message", "source"})
        service = r.get("service", str)
        if service not in slugs:
            r.fail(f"unknown service slug {service!r}")
        out.append(Suggestion(id=r.ident(), when=r.condition("when", known_vars), service=service,
                              message=r.text("message"), source=r.get("source", str)))
    _check_unique(file, "suggestion", [x.id for x in out])
    return tuple(out)


def _check_literals(file, entry, cond, q_by_id, services):
    """A condition comparing an answer with a value the question cannot take is a typo: refuse it."""
    for var, values in cond.literals().items():
        if var in q_by_id:
            q = q_by_id[var]
            allowed = set(q.option_ids) if q.options else None
        elif var == "service.slug":
            allowed = {s.slug for s in services}
        elif var == "service.areas":
            allowed = {a.id for s in services for a in s.areas}
        else:
            allowed = {s.pressure for s in services}
        bad = {v for v in values if allowed is not None and v not in allowed}
        if bad:
            raise RulesError(file, entry, f"condition compares {var} with impossible value(s) "
                                                f"{sorted(map(str, bad))} (possible: {sorted(allowed)})")


def _load_services(data) -> tuple[Service, ...]:
    file = "services.toml"
    services = []
    for i, raw in enumerate(_entries(file, data, "services")):
        entry = f"service {raw.get('slug', '#' + str(i + 1))!r}"
        r = _Reader(file, entry, raw, {"slug", "name", "summary", "description", "areas", "pressure", "intensity",
                                       "duration", "during", "after", "before_booking", "faq", "source"})
        areas = []
        for j, a in enumerate(r.get("areas", list)):
            ar = _Reader(file, f"{entry} area {j + 1}", a, {"id", "name"})
            areas.append(Area(ar.ident(), ar.text("name")))
        if not areas:
            r.fail("needs at least one area")
        faq = []
        for j, f in enumerate(r.get("faq", list, required=False, default=[])):
            fr = _Reader(file, f"{entry} faq {j + 1}", f, {"question", "answer"})
            faq.append(Faq(fr.text("question"), fr.text("answer")))
        services.append(Service(
            slug=r.ident("slug"), name=r.text("name"), summary=r.text("summary"),
            description=r.texts("description", required=True), areas=tuple(areas), pressure=r.ident("pressure"),
            intensity=r.text("intensity"), duration=r.text("duration"), during=r.texts("during"),
            after=r.texts("after"), before_booking=r.texts("before_booking"), faq=tuple(faq),
            source=r.get("source", str, required=False, default=""),
        ))
    if not services:
        raise RulesError(file, "services", "no services defined")
    _check_unique(file, "service", [s.slug for s in services])
    return tuple(services)


REQUIRED_TEXTS = ("disclaimer", "not_sure_note", "stale_notice", "answer_yes", "answer_no", "answer_not_sure",
                  "error_required", "error_invalid", "error_too_long", "error_not_a_list", "error_unknown",
                  "list_or", "error_unknown_service", "error_unknown_locale", "error_missing_key",
                  "error_not_an_object", "error_unexpected_key", "error_characters")


def _load_texts(data):
    file = "texts.toml"
    r = _Reader(file, "(top level)", data, {"texts", "outcomes"})
    raw_texts = r.get("texts", dict)
    tr = _Reader(file, "[texts]", raw_texts, set(raw_texts))
    texts = {key: tr.text(key) for key in raw_texts}
    for key in REQUIRED_TEXTS:
        if key not in texts:
            tr.fail(f"missing '{key}'")
    raw_outcomes = r.get("outcomes", dict)
    outcomes = {}
    for code in OUTCOMES:
        if code not in raw_outcomes:
            raise RulesError(file, f"[outcomes.{code}]", "missing")
        orr = _Reader(file, f"[outcomes.{code}]", raw_outcomes[code], {"label", "explanation", "next_step"})
        outcomes[code] = {k: orr.text(k) for k in ("label", "explanation", "next_step")}
    unknown = set(raw_outcomes) - set(OUTCOMES)
    if unknown:
        raise RulesError(file, "[outcomes]", f"unknown outcome(s) {sorted(unknown)}")
    return texts, outcomes


def _load_examples(data, q_by_id, slugs) -> tuple[Example, ...]:
    file = "examples.toml"
    out = []
    for i, raw in enumerate(_entries(file, data, "examples")):
        entry = f"example {raw.get('name', '#' + str(i + 1))!r}"
        r = _Reader(file, entry, raw, {"name", "service", "answers", "outcome", "rules"})
        service, outcome = r.get("service", str), r.get("outcome", str)
        if service not in slugs:
            r.fail(f"unknown service slug {service!r}")
        if outcome not in OUTCOMES:
            r.fail(f"unknown outcome {outcome!r}")
        answers = r.get("answers", dict)
        unknown = set(answers) - set(q_by_id)
        if unknown:
            r.fail(f"unknown question id(s) {sorted(unknown)}")
        rules = r.get("rules", list, required=False)
        out.append(Example(r.get("name", str), service, answers, outcome, tuple(rules) if rules is not None else None))
    _check_unique(file, "example", [e.name for e in out])
    return tuple(out)


def default_rules_dir() -> Path:
    """rules/ beside the package in a checkout, or installed inside it by `pip install .`."""
    here = Path(__file__).resolve().parent
    installed = here / "bundled_rules"
    return installed if (installed / "questions.toml").exists() else here.parent / "rules"


# --- translations ------------------------------------------------------------------------------

def missing_translations(ruleset: RuleSet) -> list[tuple[str, str, str]]:
    """Every text of the rule files that lacks a locale, as (file, entry, problem) for the checker.

    At run time English stays the fallback; this only makes a missing translation visible.
    """
    found: list[tuple[str, str, str]] = []

    def scan(file: str, entry: str, key: str, text: Text) -> None:
        lacking = [locale for locale in LOCALES if locale not in text._by_locale]
        if lacking:
            found.append((file, entry, f"'{key}' lacks {', '.join(lacking)}"))

    def walk(file: str, entry: str, obj: Any) -> None:
        """Scan the Text fields of one entry, and of its options, areas and FAQ (named by id or number)."""
        for f in fields(obj):
            value = getattr(obj, f.name)
            if f.name == "options" and obj.type in ("yes_no_unsure", "yes_no"):
                continue    # the loader's placeholders: their wording is answer_* in texts.toml
            for i, item in enumerate(value if isinstance(value, tuple) else (value,)):
                key = f"{f.name}[{i}]" if isinstance(value, tuple) else f.name
                if isinstance(item, Text):
                    scan(file, entry, key, item)
                elif isinstance(item, Option | Area | Faq):
                    name = repr(item.id) if hasattr(item, "id") else str(i + 1)
                    walk(file, f"{entry} {f.name.removesuffix('s')} {name}", item)

    for q in ruleset.questions:
        walk("questions.toml", f"question {q.id!r}", q)
    for r in ruleset.rules:
        walk("rules.toml", f"rule {r.id!r}", r)
    for s in ruleset.suggestions:
        walk("rules.toml", f"suggestion {s.id!r}", s)
    for s in ruleset.services:
        walk("services.toml", f"service {s.slug!r}", s)
    for key, text in ruleset.texts.items():
        scan("texts.toml", "[texts]", key, text)
    for code, texts in ruleset.outcomes.items():
        for key, text in texts.items():
            scan("texts.toml", f"[outcomes.{code}]", key, text)
    return found
