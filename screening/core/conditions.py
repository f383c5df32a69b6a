"""The small, safe condition language of the rule files.

A condition is a TOML table with exactly one shape:

    { all = [cond, ...] }        every one holds
    { any = [cond, ...] }        at least one holds
    { not = cond }               the inner one does not hold
    { var = "fever", equals = "yes" }           also not_equals
    { var = "fever", in = ["yes", "not_sure"] }
    { var = "tension_areas", contains = "neck" }   for lists
    { var = "age", gt = 3 }      also ge, lt, le (numbers only)

`var` names a question id or a service attribute (`service.slug`, `service.pressure`,
`service.areas`). Conditions are compiled into plain Python objects: nothing from the files is
ever evaluated as code. A question that was not answered (or not asked) has no value: every
comparison with it is false, so `not` around it is true. The engine refuses missing required
answers before any condition runs, so "unanswered" never reaches a rule as "no".
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

COMPARISONS = {"lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge}
SYMBOLS = {"lt": "<", "le": "≤", "gt": ">", "ge": "≥"}
# The words a condition is read with on the staff rules pages, in each page language: the joining
# words, the service attributes, and how a value is quoted. Question ids stay as they are (codes);
# the values come in words from the caller (describe's value_words).
WORDS = {
    "en": {"and": "and", "or": "or", "not": "not", "equals": "is", "not_equals": "is not", "in": "is one of",
           "contains": "includes", "quote": "“{}”", "service.slug": "the service",
           "service.pressure": "the service's pressure", "service.areas": "the service's list of areas"},
    "ca": {"and": "i", "or": "o", "not": "no", "equals": "és", "not_equals": "no és", "in": "és un d'aquests:",
           "contains": "inclou", "quote": "«{}»", "service.slug": "el servei",
           "service.pressure": "la pressió del servei", "service.areas": "la llista de zones del servei"},
    "es": {"and": "y", "or": "o", "not": "no", "equals": "es", "not_equals": "no es", "in": "es uno de estos:",
           "contains": "incluye", "quote": "«{}»", "service.slug": "el servicio",
           "service.pressure": "la presión del servicio", "service.areas": "la lista de zonas del servicio"},
}
TESTS = ("equals", "not_equals", "in", "contains", *COMPARISONS)
SCALARS = (str, bool, int, float)


def as_code(var: str, value: Any) -> str:
    """A value as it is written in the rule files (describe's default)."""
    return str(value)


class ConditionError(ValueError):
    """A condition in a rule file is malformed; the message says how."""


class Condition:
    """Base class: a compiled condition."""

    def __call__(self, facts: dict[str, Any]) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def variables(self) -> set[str]:
        """Every `var` this condition reads."""
        raise NotImplementedError  # pragma: no cover

    def literals(self) -> dict[str, set]:
        """For each var, the literal values it is compared with (used by the exhaustive checker)."""
        raise NotImplementedError  # pragma: no cover

    def to_json(self) -> dict[str, Any]:
        """The condition in the same shape as the rule files (used by the JSON API)."""
        raise NotImplementedError  # pragma: no cover

    def describe(self, locale: str = "en", value_words=as_code) -> str:
        """The condition as a sentence in `locale` (en, ca, es; else English); `value_words(var,
        value)` gives a value in words (the rules pages give the labels the client sees)."""
        raise NotImplementedError  # pragma: no cover


@dataclass(frozen=True)
class All(Condition):
    parts: tuple[Condition, ...]

    def __call__(self, facts):
        return all(p(facts) for p in self.parts)

    def variables(self):
        return set().union(*(p.variables() for p in self.parts))

    def literals(self):
        return _merge(p.literals() for p in self.parts)

    def describe(self, locale="en", value_words=as_code):
        joiner = f" {_words(locale)['and']} "
        return "(" + joiner.join(p.describe(locale, value_words) for p in self.parts) + ")"

    def to_json(self):
        return {"all": [p.to_json() for p in self.parts]}


@dataclass(frozen=True)
class Any_(Condition):
    parts: tuple[Condition, ...]

    def __call__(self, facts):
        return any(p(facts) for p in self.parts)

    def variables(self):
        return set().union(*(p.variables() for p in self.parts))

    def literals(self):
        return _merge(p.literals() for p in self.parts)

    def describe(self, locale="en", value_words=as_code):
        joiner = f" {_words(locale)['or']} "
        return "(" + joiner.join(p.describe(locale, value_words) for p in self.parts) + ")"

    def to_json(self):
        return {"any": [p.to_json() for p in self.parts]}


@dataclass(frozen=True)
class Not(Condition):
    inner: Condition

    def __call__(self, facts):
        return not self.inner(facts)

    def variables(self):
        return self.inner.variables()

    def literals(self):
        return self.inner.literals()

    def describe(self, locale="en", value_words=as_code):
        inner = self.inner.describe(locale, value_words)
        return f"{_words(locale)['not']} {inner if inner.startswith('(') else f'({inner})'}"

    def to_json(self):
        return {"not": self.inner.to_json()}


@dataclass(frozen=True)
class Test(Condition):
    var: str
    test: str
    value: Any

    def __call__(self, facts):
        actual = facts.get(self.var)
        if actual is None:
            return False
        if self.test == "equals":
            return actual == self.value
        if self.test == "not_equals":
            return actual != self.value
        if self.test == "in":
            return actual in self.value
        if self.test == "contains":
            return isinstance(actual, (list, tuple, frozenset, set)) and self.value in actual
        if isinstance(actual, bool) or not isinstance(actual, (int, float)):
            return False
        return COMPARISONS[self.test](actual, self.value)

    def variables(self):
        return {self.var}

    def literals(self):
        values = set(self.value) if self.test == "in" else {self.value}
        return {self.var: values}

    def describe(self, locale="en", value_words=as_code):
        words = _words(locale)
        name = words.get(self.var, self.var)
        if self.test in SYMBOLS:
            return f"{name} {SYMBOLS[self.test]} {self.value}"
        values = _sorted(self.value) if self.test == "in" else [self.value]
        shown = ", ".join(words["quote"].format(value_words(self.var, v)) for v in values)
        return f"{name} {words[self.test]} {shown}"

    def to_json(self):
        # `in` is kept as a frozenset; a sorted list gives the same document on every start
        value = _sorted(self.value) if self.test == "in" else self.value
        return {"var": self.var, self.test: value}


def _sorted(values) -> list:
    """The values of an `in` test in one order on every start (it is kept as a frozenset)."""
    return sorted(values, key=lambda v: (type(v).__name__, v))


def _words(locale: str) -> dict[str, str]:
    """The joining words of `locale`, English for a language without its own."""
    return WORDS.get(locale, WORDS["en"])


def _merge(maps):
    merged: dict[str, set] = {}
    for m in maps:
        for key, values in m.items():
            merged.setdefault(key, set()).update(values)
    return merged


def compile_condition(node: Any, known_vars: set[str], *, path: str = "when") -> Condition:
    """Turn a parsed TOML condition into a Condition, or raise ConditionError naming the spot."""
    if not isinstance(node, dict):
        raise ConditionError(f"{path}: a condition must be a table, got {type(node).__name__}")
    keys = set(node)
    for combinator in ("all", "any"):
        if combinator in node:
            if keys != {combinator}:
                raise ConditionError(f"{path}: '{combinator}' cannot be mixed with {sorted(keys - {combinator})}")
            parts = node[combinator]
            if not isinstance(parts, list) or not parts:
                raise ConditionError(f"{path}.{combinator}: needs a non-empty list of conditions")
            compiled = tuple(compile_condition(p, known_vars, path=f"{path}.{combinator}[{i}]")
                             for i, p in enumerate(parts))
            return All(compiled) if combinator == "all" else Any_(compiled)
    if "not" in node:
        if keys != {"not"}:
            raise ConditionError(f"{path}: 'not' cannot be mixed with {sorted(keys - {'not'})}")
        return Not(compile_condition(node["not"], known_vars, path=f"{path}.not"))
    if "var" not in node:
        raise ConditionError(f"{path}: expected one of all, any, not or var; got {sorted(keys) or 'nothing'}")
    var = node["var"]
    if not isinstance(var, str) or var not in known_vars:
        raise ConditionError(f"{path}: unknown var {var!r}")
    tests = keys - {"var"}
    if len(tests) != 1 or not tests <= set(TESTS):
        raise ConditionError(f"{path}: var {var!r} needs exactly one test of {', '.join(TESTS)}; got {sorted(tests)}")
    (test,) = tests
    value = node[test]
    if test == "in":
        if not isinstance(value, list) or not value or not all(isinstance(v, SCALARS) for v in value):
            raise ConditionError(f"{path}: 'in' needs a non-empty list of plain values")
        value = frozenset(value)
    elif test in COMPARISONS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConditionError(f"{path}: '{test}' compares numbers only, got {value!r}")
    elif not isinstance(value, SCALARS):
        raise ConditionError(f"{path}: '{test}' needs a plain value, got {type(value).__name__}")
    return Test(var, test, value)
