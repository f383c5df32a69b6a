"""Loads and validates the rule files in rules/ (questions, rules, services, texts, examples).

Plain Python: no Flask here. Everything is checked at load time and any problem raises
RulesError naming the file, the entry and what is wrong, so that a bad edit stops the app at
start-up instead of failing a client's request later.
"""
from __future__ import annotations

import difflib
import hashlib
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .conditions import TESTS, All, Any_, Condition, ConditionError, Not, Test, compile_condition

OUTCOMES = ("proceed", "tell_centre", "consult_professional")
LOCALES = ("en", "ca", "es")
DEFAULT_LOCALE = "en"
QUESTION_TYPES = ("yes_no_unsure", "yes_no", "single", "multi", "text")
YES_NO_UNSURE = ("yes", "no", "not_sure")
YES_NO = ("yes", "no")
RULE_FILES = ("questions.toml", "rules.toml", "services.toml", "texts.toml", "examples.toml")
LOAD_ORDER = ("services.toml", "questions.toml", "rules.toml", "texts.toml", "examples.toml")
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
    services: tuple[str, ...] | None = None     # offered only on these services; None: on every one


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

    offered: dict[tuple[str, str], tuple[Option, ...]] = field(repr=False, default_factory=dict)

    def service(self, slug: str) -> Service | None:
        return self.services_by_slug.get(slug)

    def options_for(self, question: Question, service: Service) -> tuple[Option, ...]:
        """The options this service's form offers for a single or multi question, in the order shown."""
        return self.offered.get((question.id, service.slug), question.options)

    def text(self, key: str, locale: str | None = None) -> str:
        return self.texts[key].get(locale)


# --- helpers that read one kind of value and fail with the file and entry ----------------------

# What each file may hold at its top level: key -> (TOML type, required). Anything else (a
# `[[rule]]` for `[[rules]]`, a stray `version = 2`) is refused, never skipped: a skipped table
# could be the rule that keeps a client with a fever from being told to proceed.
FILE_KEYS: dict[str, dict[str, tuple[type, bool]]] = {
    "questions.toml": {"questions": (list, True)},
    "rules.toml": {"clearance": (dict, False), "rules": (list, True), "suggestions": (list, False)},
    "services.toml": {"services": (list, True)},
    "texts.toml": {"texts": (dict, True), "outcomes": (dict, True)},
    "examples.toml": {"examples": (list, False)},
}
KIND_NAMES = {dict: "a table", list: "an array", str: "a string", bool: "true or false", int: "a whole number",
              float: "a number"}


def _kind_of(value: Any) -> str:
    """How a TOML value reads to an admin: 'a table', 'an array', 'a string', ..."""
    for kind, name in KIND_NAMES.items():
        if type(value) is kind:
            return name
    return type(value).__name__


def did_you_mean(name: Any, known) -> str:
    """' (did you mean 'x'?)' when `name` is close to one of `known` (case, '-' and '_' aside), else ''."""
    def norm(value):
        return str(value).lower().replace("-", "_")
    by_norm = {norm(k): k for k in known}
    match = difflib.get_close_matches(norm(name), list(by_norm), n=1, cutoff=0.6)
    return f" (did you mean {by_norm[match[0]]!r}?)" if match and by_norm[match[0]] != name else ""


def _unknown_keys_problem(keys, allowed) -> str:
    """'unknown key 'x' (did you mean 'y'?); allowed: ...' for the keys of a table that are not allowed."""
    named = ", ".join(f"{k!r}{did_you_mean(k, allowed)}" for k in sorted(keys, key=str))
    return f"unknown key{'s' if len(keys) > 1 else ''} {named}; allowed: {', '.join(sorted(allowed)) or 'none'}"


class _Reader:
    """Reads values from one entry of one file, raising RulesError that names both."""

    def __init__(self, file: str, entry: str, data: dict, allowed: set[str]):
        self.file, self.entry, self.data = file, entry, data
        if not isinstance(data, dict):
            self.fail(f"expected a table, got {_kind_of(data)}")
        unknown = set(data) - set(allowed)
        if unknown:
            self.fail(_unknown_keys_problem(unknown, allowed))

    def fail(self, problem: str):
        raise RulesError(self.file, self.entry, problem)

    def get(self, key, kind, *, required=True, default=None):
        if key not in self.data:
            if required:
                self.fail(f"missing '{key}'")
            return default
        value = self.data[key]
        if kind is not None and (not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))):
            self.fail(f"'{key}' must be {KIND_NAMES.get(kind, getattr(kind, '__name__', kind))}, got {_kind_of(value)}")
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
            self.fail(f"bad condition: {e}{_condition_hint(self.data[key], known_vars)}")


CONDITION_KEYS = ("all", "any", "not", "var", *TESTS)


def _condition_hint(node: Any, known_vars) -> str:
    """A 'did you mean' for the first unknown key or var in a condition that failed to compile."""
    if isinstance(node, list):
        return next((h for h in (_condition_hint(n, known_vars) for n in node) if h), "")
    if not isinstance(node, dict):
        return ""
    for key, value in node.items():
        if key not in CONDITION_KEYS and did_you_mean(key, CONDITION_KEYS):
            return f"; {key!r}{did_you_mean(key, CONDITION_KEYS)}"
        if key == "var" and value not in known_vars and did_you_mean(value, known_vars):
            return f"; {value!r}{did_you_mean(value, known_vars)}"
        if isinstance(value, (dict, list)) and (hint := _condition_hint(value, known_vars)):
            return hint
    return ""


def parse_text(value, fail, key):
    """A text is a plain (English) string or a table of locale -> string that includes 'en'."""
    if isinstance(value, str):
        value = {DEFAULT_LOCALE: value}
    if not isinstance(value, dict):
        fail(f"'{key}' must be a string or a table of translations, got {_kind_of(value)}")
    for locale, text in value.items():
        if locale not in LOCALES:
            fail(f"'{key}' has unknown locale {locale!r}{did_you_mean(locale, LOCALES)} "
                 f"(known: {', '.join(LOCALES)})")
        if not isinstance(text, str) or not text.strip():
            fail(f"'{key}.{locale}' must be a non-empty string")
    if DEFAULT_LOCALE not in value:
        fail(f"'{key}' needs an English ('en') text")
    return Text(value)


def _read_file(directory: Path, name: str) -> bytes:
    """The bytes of one rule file, or RulesError when it is missing."""
    try:
        return (directory / name).read_bytes()
    except FileNotFoundError:
        raise RulesError(name, "(file)", f"missing from {directory}") from None


def _parse_file(name: str, content: bytes) -> dict:
    """One rule file's TOML document, or RulesError naming what is wrong with it."""
    try:
        return tomllib.loads(content.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise RulesError(name, "(file)", f"not UTF-8 text: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise RulesError(name, "(file)", f"not valid TOML: {e}") from None


def _top_level(file: str, data: dict) -> None:
    """Refuse a key the file may not hold at its top level, or a known one of the wrong type."""
    allowed = FILE_KEYS[file]
    r = _Reader(file, "(top level)", data, set(allowed))
    for key, (kind, required) in allowed.items():
        value = r.get(key, None, required=False)
        if value is None:
            if required:
                r.fail(f"no [[{key}]] tables" if kind is list else f"no [{key}] table")
        elif kind is list and not (isinstance(value, list) and all(isinstance(e, dict) for e in value)):
            r.fail(f"'{key}' must be [[{key}]] tables (an array of tables), got {_kind_of(value)}")
        elif kind is dict and not isinstance(value, dict):
            r.fail(f"'{key}' must be a [{key}] table, got {_kind_of(value)}")


def _entries(file, data, key):
    """The [[key]] tables of a file whose top level `_top_level` has checked."""
    return data.get(key, [])


def _check_unique(file, kind, ids):
    seen = set()
    for i in ids:
        if i in seen:
            raise RulesError(file, f"{kind} {i!r}", "duplicate id")
        seen.add(i)


def rules_version(directory: Path) -> str:
    """A short hash of every rule file: it changes whenever any of them changes."""
    directory = Path(directory)
    return _version({name: (directory / name).read_bytes() if (directory / name).exists() else b""
                     for name in RULE_FILES})


def _version(contents: dict[str, bytes]) -> str:
    """The rules version of these file contents (see rules_version)."""
    digest = hashlib.sha256()
    for name in RULE_FILES:
        digest.update(name.encode() + b"\0")
        digest.update(contents.get(name, b""))
    return digest.hexdigest()[:12]


# --- the loader --------------------------------------------------------------------------------

def load_rules(directory: str | Path) -> RuleSet:
    """Read and validate every rule file in `directory`; raise RulesError on the first problem."""
    directory = Path(directory)
    # services first: a folder that is not a rules folder at all is reported by its first file
    contents = {name: _read_file(directory, name) for name in LOAD_ORDER}
    documents = {name: _parse_file(name, content) for name, content in contents.items()}
    # the version is the hash of the very bytes parsed: the start-up proof is remembered by it
    return parse_rules(documents, version=_version(contents), directory=str(directory))


def parse_rules(documents: dict[str, dict], *, version: str, directory: str) -> RuleSet:
    """Validate the parsed rule files ({file name: TOML document}) into a RuleSet, or raise RulesError."""
    for name in LOAD_ORDER:
        _top_level(name, documents[name])
    services = _load_services(documents["services.toml"])
    questions = _load_questions(documents["questions.toml"])
    q_by_id = {q.id: q for q in questions}
    rules_data = documents["rules.toml"]
    known_vars = set(q_by_id) | set(SERVICE_VARS)
    clearance = _load_clearance(rules_data, q_by_id)
    rules = _load_rules(rules_data, known_vars, q_by_id, clearance)
    suggestions = _load_suggestions(rules_data, known_vars, {s.slug for s in services})
    conditions = [("questions.toml", f"question {q.id!r}", q.asked_when) for q in questions if q.asked_when]
    conditions += [("rules.toml", f"rule {r.id!r}", r.when) for r in rules]
    conditions += [("rules.toml", f"suggestion {s.id!r}", s.when) for s in suggestions]
    for file, entry, cond in conditions:
        _check_tests(file, entry, cond, q_by_id)
        _check_literals(file, entry, cond, q_by_id, services)
    texts, outcomes = _load_texts(documents["texts.toml"])
    examples = _load_examples(documents["examples.toml"], q_by_id, {s.slug for s in services},
                              {r.id for r in rules})
    return RuleSet(
        questions=questions, rules=rules, suggestions=suggestions, services=services,
        clearance=clearance, texts=texts, outcomes=outcomes, examples=examples,
        version=version, directory=directory,
        questions_by_id=q_by_id, services_by_slug={s.slug: s for s in services},
        offered=_offered_options(questions, services),
    )


def _offered_options(questions, services) -> dict[tuple[str, str], tuple[Option, ...]]:
    """{(question id, service slug): options} for the questions with options.

    An option with `services` is offered only on those services (shoulders and legs only where the
    massage works them). Options that are areas of the service come first, in the service's order
    (head to toe), then the others in the question's order (the neck on a back massage, which
    suggests the back and neck combination).
    """
    slugs = {s.slug for s in services}
    for q in questions:
        for o in q.options:
            for slug in o.services or ():
                if slug not in slugs:
                    raise RulesError("questions.toml", f"question {q.id!r} option {o.id!r}",
                                     f"unknown service {slug!r}{did_you_mean(slug, slugs)} in 'services'")
    offered = {}
    for q in questions:
        if q.type not in ("single", "multi"):
            continue
        for s in services:
            areas = [a.id for a in s.areas]
            shown = [o for o in q.options if o.services is None or s.slug in o.services]
            if not shown:
                raise RulesError("questions.toml", f"question {q.id!r}",
                                 f"offers no option on service {s.slug!r}; widen an option's 'services'")
            shown.sort(key=lambda o: areas.index(o.id) if o.id in areas else len(areas))
            offered[(q.id, s.slug)] = tuple(shown)
    return offered


def parse_extra_rules(file: str, data: dict, shared: RuleSet) -> tuple[tuple[Rule, ...], tuple[Example, ...]]:
    """A centre file's own [[rules]] and [[examples]], validated exactly as rules.toml and examples.toml are.

    `data` is the centre file's TOML document (its other keys are the centre's business). A rule
    may not reuse the id of a shared rule: a centre adds rules, it never replaces one. Its examples
    may name shared rules and its own.
    """
    for key in ("rules", "examples"):
        value = data.get(key, [])
        if not (isinstance(value, list) and all(isinstance(e, dict) for e in value)):
            raise RulesError(file, key, f"'{key}' must be [[{key}]] tables (an array of tables), got {_kind_of(value)}")
    q_by_id, services = shared.questions_by_id, shared.services
    rules = _load_rules(data, set(q_by_id) | set(SERVICE_VARS), q_by_id, shared.clearance, file=file)
    shared_ids = {r.id for r in shared.rules}
    for rule in rules:
        if rule.id in shared_ids:
            raise RulesError(file, f"rule {rule.id!r}", "reuses the id of a rule in rules.toml: a centre may add "
                                                         "rules, never replace one (give it an id of its own)")
        _check_tests(file, f"rule {rule.id!r}", rule.when, q_by_id)
        _check_literals(file, f"rule {rule.id!r}", rule.when, q_by_id, services)
    examples = _load_examples(data, q_by_id, set(shared.services_by_slug), shared_ids | {r.id for r in rules},
                              file=file)
    return rules, examples


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
            r.fail(f"unknown type {qtype!r}{did_you_mean(qtype, QUESTION_TYPES)} (known: {', '.join(QUESTION_TYPES)})")
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
                orr = _Reader(file, f"{entry} option {j + 1}", o, {"id", "label", "services"})
                only = orr.get("services", list, required=False)
                if only is not None and (not only or not all(isinstance(x, str) for x in only)):
                    orr.fail("'services' must be a non-empty array of service slugs (leave it out for every service)")
                parsed.append(Option(orr.ident(), orr.text("label"), tuple(only) if only is not None else None))
            _check_unique(file, f"{entry} option", [o.id for o in parsed])
            options = tuple(parsed)
        elif "options" in raw:
            r.fail("a text question has no options; remove 'options'")
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
    r = _Reader(file, "[clearance]", data["clearance"], {"question", "outcome"})
    question, outcome = r.get("question", str), r.get("outcome", str)
    if question not in q_by_id:
        r.fail(f"unknown question id {question!r}{did_you_mean(question, q_by_id)}")
    if q_by_id[question].type != "yes_no":
        r.fail(f"the clearance question {question!r} must be a yes/no question")
    if outcome not in OUTCOMES:
        r.fail(f"unknown outcome {outcome!r}{did_you_mean(outcome, OUTCOMES)} (known: {', '.join(OUTCOMES)})")
    return Clearance(question, outcome)


def _load_rules(data, known_vars, q_by_id, clearance, file="rules.toml") -> tuple[Rule, ...]:
    """The [[rules]] tables of `file` (rules.toml, or a centre file's own rules)."""
    rules = []
    for i, raw in enumerate(_entries(file, data, "rules")):
        entry = f"rule {raw.get('id', '#' + str(i + 1))!r}"
        r = _Reader(file, entry, raw, {"id", "when", "outcome", "message", "source", "about", "clearable",
                                       "cleared_message"})
        outcome = r.get("outcome", str)
        if outcome not in OUTCOMES:
            r.fail(f"unknown outcome {outcome!r}{did_you_mean(outcome, OUTCOMES)} (known: {', '.join(OUTCOMES)})")
        about = r.get("about", str, required=False)
        if about is not None and about not in q_by_id:
            r.fail(f"'about' names unknown question id {about!r}{did_you_mean(about, q_by_id)}")
        clearable = r.get("clearable", bool, required=False, default=False)
        cleared_message = r.text("cleared_message", required=clearable)
        if clearable and clearance is None:
            r.fail("clearable rule but rules.toml has no [clearance] section")
        if cleared_message is not None and not clearable:
            # a cleared message on a rule that is never cleared is a key left behind or put in the wrong rule
            r.fail("'cleared_message' without 'clearable = true': it would never be shown")
        source = r.get("source", str)
        if not source.strip():
            r.fail("'source' must quote the sentence of the page (or the centre's decision) it comes from")
        when = r.condition("when", known_vars)
        if about is not None and about not in when.variables():
            # the "not sure" note names `about`: it must be a question this rule reads
            r.fail(f"'about' names {about!r}, which this rule's 'when' does not read")
        rules.append(Rule(id=r.ident(), when=when, outcome=outcome,
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
            r.fail(f"unknown service slug {service!r}{did_you_mean(service, slugs)}")
        out.append(Suggestion(id=r.ident(), when=r.condition("when", known_vars), service=service,
                              message=r.text("message"), source=r.get("source", str)))
    _check_unique(file, "suggestion", [x.id for x in out])
    return tuple(out)


def _tests(cond: Condition):
    """Every atomic test of a condition."""
    if isinstance(cond, Test):
        yield cond
    elif isinstance(cond, (All, Any_)):
        for part in cond.parts:
            yield from _tests(part)
    elif isinstance(cond, Not):
        yield from _tests(cond.inner)


def _check_tests(file, entry, cond, q_by_id):
    """A test that can never hold for the kind of value it reads is a typo: refuse it.

    `contains` on a yes/no answer, `equals` on a list of choices, `gt` on anything (no answer is
    a number) and a literal that is not text are all always false, so a rule written with one
    would silently never fire.
    """
    for t in _tests(cond):
        q = q_by_id.get(t.var)
        what = f"a {q.type} question" if q is not None else "a service attribute"
        is_list = t.var == "service.areas" or (q is not None and q.type == "multi")
        allowed = ("contains",) if is_list else ("equals", "not_equals", "in")
        if t.test not in allowed:
            kind = f"{what}, a list" if is_list else what
            raise RulesError(file, entry, f"condition: '{t.test}' can never hold for {t.var} ({kind}); "
                                          f"use {' or '.join(allowed)}")
        values = t.value if t.test == "in" else (t.value,)
        bad = [v for v in values if not isinstance(v, str)]
        if bad:
            raise RulesError(file, entry, f"condition compares {t.var} with {bad[0]!r}, but its values are text "
                                          f"(write it in quotes)")


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
                  "next_step_fever", "error_required", "error_invalid", "error_too_long", "error_not_a_list",
                  "error_unknown",
                  "list_or", "error_unknown_service", "error_unknown_locale", "error_missing_key",
                  "error_not_an_object", "error_unexpected_key", "error_characters")


def _load_texts(data):
    file = "texts.toml"
    raw_texts = data["texts"]
    # only the texts the app shows are allowed: a misspelt key would otherwise sit unused
    tr = _Reader(file, "[texts]", raw_texts, set(REQUIRED_TEXTS))
    texts = {key: tr.text(key) for key in raw_texts}
    for key in REQUIRED_TEXTS:
        if key not in texts:
            tr.fail(f"missing '{key}'")
    raw_outcomes = data["outcomes"]
    unknown = set(raw_outcomes) - set(OUTCOMES)
    if unknown:
        named = ", ".join(repr(k) + did_you_mean(k, OUTCOMES) for k in sorted(unknown))
        raise RulesError(file, "[outcomes]", f"unknown outcome(s) {named}")
    outcomes = {}
    for code in OUTCOMES:
        if code not in raw_outcomes:
            raise RulesError(file, f"[outcomes.{code}]", "missing")
        orr = _Reader(file, f"[outcomes.{code}]", raw_outcomes[code], {"label", "explanation", "next_step"})
        outcomes[code] = {k: orr.text(k) for k in ("label", "explanation", "next_step")}
    return texts, outcomes


def _answer_problem(q: Question, value: Any) -> str | None:
    """Why an example's answer is not one a client could give to `q`, or None when it is."""
    if q.type == "text":
        return None if isinstance(value, str) else f"{q.id} must be text, got {_kind_of(value)}"
    choices = value if q.type == "multi" and isinstance(value, list) else [value]
    for choice in choices:
        if not isinstance(choice, str) or choice not in q.option_ids:
            return (f"{q.id} = {choice!r} is not one of {', '.join(q.option_ids)}"
                    f"{did_you_mean(choice, q.option_ids) if isinstance(choice, str) else ''}")
    return None


def _load_examples(data, q_by_id, slugs, rule_ids, file="examples.toml") -> tuple[Example, ...]:
    """The [[examples]] tables of `file` (examples.toml, or a centre file's own examples)."""
    out = []
    for i, raw in enumerate(_entries(file, data, "examples")):
        entry = f"example {raw.get('name', '#' + str(i + 1))!r}"
        r = _Reader(file, entry, raw, {"name", "service", "answers", "outcome", "rules"})
        service, outcome = r.get("service", str), r.get("outcome", str)
        if service not in slugs:
            r.fail(f"unknown service slug {service!r}{did_you_mean(service, slugs)}")
        if outcome not in OUTCOMES:
            r.fail(f"unknown outcome {outcome!r}{did_you_mean(outcome, OUTCOMES)}")
        answers = r.get("answers", dict)
        unknown = set(answers) - set(q_by_id)
        if unknown:
            r.fail(f"unknown question id(s) {sorted(unknown)}{did_you_mean(min(unknown), q_by_id)}")
        for qid, value in answers.items():
            if problem := _answer_problem(q_by_id[qid], value):
                r.fail(f"answers: {problem}")
        rules = r.get("rules", list, required=False)
        for rule in rules or ():
            if rule not in rule_ids:
                r.fail(f"'rules' names unknown rule {rule!r}{did_you_mean(rule, rule_ids)}")
        out.append(Example(r.get("name", str), service, answers, outcome, tuple(rules) if rules is not None else None))
    _check_unique(file, "example", [e.name for e in out])
    return tuple(out)


def default_rules_dir() -> Path:
    """rules/ beside the package in a checkout, or installed inside it by `pip install .`."""
    here = Path(__file__).resolve().parent.parent      # the package folder (this file is in core/)
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
