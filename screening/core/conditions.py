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
TESTS = ("equals", "not_equals", "in", "contains", *COMPARISONS)
SCALARS = (str, bool, int, float)


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


@dataclass(frozen=True)
class All(Condition):
    parts: tuple[Condition, ...]

    def __call__(self, facts):
        return all(p(facts) for p in self.parts)

    def variables(self):
        return set().union(*(p.variables() for p in self.parts))

    def literals(self):
        return _merge(p.literals() for p in self.parts)

    def describe(self):
        return "(" + " and ".join(p.describe() for p in self.parts) + ")"

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

    def describe(self):
        return "(" + " or ".join(p.describe() for p in self.parts) + ")"

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

    def describe(self):
        return "not " + self.inner.describe()

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

    def describe(self):
        words = {"equals": "is", "not_equals": "is not", "in": "is one of", "contains": "includes",
                 "lt": "<", "le": "≤", "gt": ">", "ge": "≥"}
        value = ", ".join(map(str, self.value)) if self.test == "in" else str(self.value)
        return f"{self.var} {words[self.test]} {value}"

    def to_json(self):
        # `in` is kept as a frozenset; a sorted list gives the same document on every start
        value = sorted(self.value, key=lambda v: (type(v).__name__, v)) if self.test == "in" else self.value
        return {"var": self.var, self.test: value}


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
