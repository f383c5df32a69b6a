"""Every single-token typo in the table names and keys of the shipped rule files is refused by
loading + `check` (what start-up runs), or, if accepted, changes no outcome anywhere in the
checker's answer space.

The typos are generated from the shipped files themselves, so a key or table added later is
covered without touching this test: each bare key and table name has a letter dropped, doubled
or swapped, an `s` added or removed, its case changed, `_`/`-` swapped or dropped; table headers
also lose or gain a pair of brackets; and each `key = value` line of a table is moved into the
table before it, the one after it and the top of the file.

An unknown key is refused by the same check wherever its table is, so a typo is tried once per
(file, table, key path, typo); a typo that spells another key the file uses, and every typo of a
table header (which entry is lost matters), is tried at every place it can happen.
"""
from __future__ import annotations

import string
import tomllib
from collections import Counter
from functools import cache

import pytest

from screening.core import checker
from screening.core.checker import check
from screening.core.conditions import All, Not
from screening.core.conditions import Test as Is
from screening.core.rules import OUTCOMES, RULE_FILES, RulesError, _parse_file, default_rules_dir, parse_rules

BASE = default_rules_dir()
TEXTS = {name: (BASE / name).read_text() for name in RULE_FILES}
DOCUMENTS = {name: tomllib.loads(text) for name, text in TEXTS.items()}
KEY_CHARS = set(string.ascii_letters + string.digits + "_-")


# --- where the keys are: a small TOML scanner (its result is checked against tomllib below) -------

def _skip_string(text: str, i: int) -> int:
    """The index just after the TOML string that starts at i."""
    for quote in ('"""', "'''"):
        if text.startswith(quote, i):
            j = i + 3
            while True:
                j = text.index(quote, j)
                if quote == "'''" or text[j - 1] != "\\":
                    while text.startswith(quote[0], j + 3):     # up to two quotes may end the string
                        j += 1
                    return j + 3
                j += 1
    j = i + 1
    while text[j] != text[i]:
        j += 2 if text[i] == '"' and text[j] == "\\" else 1
    return j + 1


def scan(text: str):
    """(keys, headers, statements) of a TOML text.

    keys: (start, end, path, in_header) of every bare key, path being the table and the keys of
    the inline tables and arrays around it; headers: (start, end, name); statements: (start, end)
    of each `key = value` line at the top of a table, up to the newline that ends the value.
    """
    keys, headers, statements = [], [], []
    i, n, table = 0, len(text), ""
    stack: list[str] = []              # the key owning each open [ or { of a value
    pending = None                     # the last key read, until its value opens a bracket
    line_start, statement_start = True, None
    while i < n:
        c = text[i]
        if c == "\n":
            if not stack and statement_start is not None:
                statements.append((statement_start, i + 1))
                statement_start = None
            line_start, i = True, i + 1
        elif c in " \t\r":
            i += 1
        elif c == "#":
            i = text.find("\n", i) if "\n" in text[i:] else n
        elif c in "\"'":
            i, line_start = _skip_string(text, i), False
        elif c == "[" and not stack and line_start and statement_start is None:
            double = text.startswith("[[", i)
            close = text.index("]", i)
            name = text[i + (2 if double else 1):close].strip()
            pos = i
            for part in name.split("."):
                pos = text.index(part, pos)
                keys.append((pos, pos + len(part), (name,), True))
                pos += len(part)
            end = close + (2 if double else 1)
            headers.append((i, end, name))
            table, i, line_start = name, end, False
        elif c in "[{":
            stack.append(pending or "[]")
            pending, i, line_start = None, i + 1, False
        elif c in "]}":
            stack.pop()
            i, line_start = i + 1, False
        elif c in KEY_CHARS:
            j = i
            while j < n and text[j] in KEY_CHARS:
                j += 1
            k = j
            while k < n and text[k] in " \t":
                k += 1
            if k < n and text[k] in "=." and not text[i:j].isdigit():
                keys.append((i, j, (table.split(".")[0], *stack), False))
                pending = text[i:j]
                if not stack and line_start:
                    statement_start = text.rfind("\n", 0, i) + 1
            i, line_start = j, False
        else:
            i, line_start = i + 1, False
    return keys, headers, statements


def typos(key: str) -> list[str]:
    """Every single-token typo of a key: a letter dropped, doubled or swapped, singular/plural, case, -/_."""
    out = []
    for i in range(len(key)):
        out += [key[:i] + key[i + 1:], key[:i] + key[i] + key[i:]]
        if i + 1 < len(key):
            out.append(key[:i] + key[i + 1] + key[i] + key[i + 2:])
    out += [key + "s", key.removesuffix("s"), key.capitalize(), key.upper(), key.replace("_", "-"),
            key.replace("-", "_"), key.replace("_", "")]
    return [t for t in dict.fromkeys(out) if t and t != key]


def key_typos(name: str):
    """(description, mutated text) for every typo of a key or table name of one file."""
    text = TEXTS[name]
    keys, headers, _ = scan(text)
    spelled = {text[s:e] for s, e, *_ in keys}
    tried = set()
    for start, end, path, in_header in keys:
        key = text[start:end]
        for typo in typos(key):
            group = (path, key, typo)
            if not in_header and typo not in spelled:
                if group in tried:
                    continue            # the same unknown key in the same kind of table: refused alike
                tried.add(group)
            line = text.count("\n", 0, start) + 1
            yield f"line {line}: {key} -> {typo}", text[:start] + typo + text[end:]
    for start, end, header in headers:
        line = text.count("\n", 0, start) + 1
        old = text[start:end]
        new = old[1:-1] if old.startswith("[[") else f"[{old}]"
        yield f"line {line}: {old} -> {new}", text[:start] + new + text[end:]


def moved_keys(name: str):
    """(description, mutated text) for every `key = value` line moved to the table before, after, or the top."""
    text = TEXTS[name]
    _, headers, statements = scan(text)
    bounds = [0] + [h[0] for h in headers] + [len(text)]      # section i: bounds[i] to bounds[i + 1]
    for start, end in statements:
        here = max(i for i in range(len(bounds) - 1) if bounds[i] <= start)
        statement, rest = text[start:end], text[:start] + text[end:]
        for target in sorted({here - 1, here + 1, 0} - {here}):
            if not 0 <= target < len(bounds) - 1:
                continue
            at = bounds[target + 1]                 # the end of the target section
            at -= len(statement) if at > start else 0
            line = text.count("\n", 0, start) + 1
            where = "the top of the file" if target == 0 else f"table #{target}"
            yield (f"line {line}: {statement.split('=')[0].strip()} moved to {where}",
                   rest[:at] + statement + rest[at:])


# --- what a typo does ----------------------------------------------------------------------------

def outcomes(ruleset, domains: dict[str, list], literals: dict[str, set], patterns: dict) -> dict:
    """For each group of services conditions cannot tell apart: raw answers refused, >= tell_centre, consult.

    The layout is the checker's (screening/core/checker.py), but every question is enumerated with
    every value class and blank, asked or not, so that two rule sets that ask differently are
    compared on the same raw answers, as the engine reads them: an answer to a question that is
    not asked is ignored, and an asked required question left blank is refused. `patterns` holds
    the bit patterns of the answer tests, shared by every call with the same `domains`.
    """
    result = {}
    for group in checker._service_groups(ruleset, literals):
        service = group[0]
        space = checker.Space.__new__(checker.Space)
        space.ruleset, space.service, space.facts = ruleset, service, service.facts()
        space.inner, space.outer, space.domains, space._patterns = list(ruleset.questions), [], domains, patterns
        space.strides, stride = {}, 1
        for q in reversed(space.inner):
            space.strides[q.id], stride = stride, stride * len(domains[q.id])
        space.size, space.full = stride, (1 << stride) - 1
        asked: dict[str, int] = {}

        def effective(cond, space=space, asked=asked):
            """Where a condition holds on the answers the engine keeps (those of asked questions)."""
            if isinstance(cond, Is):
                return space.test_mask(cond, {}) & asked.get(cond.var, space.full)
            if isinstance(cond, Not):
                return space.full ^ effective(cond.inner)
            masks = [effective(part) for part in cond.parts]
            combined = masks[0]
            for mask in masks[1:]:
                combined = combined & mask if isinstance(cond, All) else combined | mask
            return combined

        refused = 0
        for q in space.inner:
            asked[q.id] = space.full if q.asked_when is None else effective(q.asked_when)
            if q.required:       # blank is the first value of every domain: the first run of each period
                if ("blank", q.id) not in patterns:
                    stride, period = space.strides[q.id], space.strides[q.id] * len(domains[q.id])
                    patterns["blank", q.id] = checker._repeat((1 << stride) - 1, period, space.size // period)
                refused |= asked[q.id] & patterns["blank", q.id]
        cleared = effective(Is(ruleset.clearance.question, "equals", "yes")) if ruleset.clearance else 0
        levels = [0, 0, 0]
        for rule in ruleset.rules:
            fires, level = effective(rule.when), OUTCOMES.index(rule.outcome)
            if rule.clearable:
                levels[min(level, OUTCOMES.index(ruleset.clearance.outcome))] |= fires & cleared
                fires = checker._without(fires, cleared)
            levels[level] |= fires
        at_least_tell, consult = levels[1] | levels[2], levels[2]
        result[" ".join(s.slug for s in group)] = (refused, checker._without(at_least_tell, refused),
                                                   checker._without(consult, refused))
    return result


def answer_domains(*rulesets) -> tuple[dict[str, list], dict[str, set]] | None:
    """Blank, then one value per class that any of the rule sets' conditions tell apart, and those
    literals (None: the rule sets have different questions)."""
    literals: dict[str, set] = {}
    for ruleset in rulesets:
        for var, values in checker._literals(ruleset).items():
            literals.setdefault(var, set()).update(values)
    ids = [tuple(q.id for q in r.questions) for r in rulesets]
    if len(set(ids)) != 1:
        return None
    domains = {}
    for q in rulesets[0].questions:
        values = {repr(v): v for r in rulesets for v in checker._domain(r.questions_by_id[q.id], literals.get(q.id))
                  if v is not None}
        domains[q.id] = [None, *values.values()]
    return domains, literals


@cache
def baseline():
    """The shipped rule set, loaded once for every typo."""
    return parse_rules(DOCUMENTS, version="shipped", directory=str(BASE))


_layouts: dict[str, tuple[dict, dict]] = {}      # layout -> (bit patterns, outcomes of the shipped rules)


def compare(ruleset, domains: dict[str, list], literals: dict[str, set]) -> tuple[dict, dict]:
    """outcomes() of the shipped rules and of `ruleset` on one layout (the shipped ones once per layout)."""
    key = repr((domains, sorted((k, sorted(map(repr, v))) for k, v in literals.items())))
    if key not in _layouts:
        patterns: dict = {}
        _layouts[key] = patterns, outcomes(baseline(), domains, literals, patterns)
    patterns, before = _layouts[key]
    return before, outcomes(ruleset, domains, literals, patterns)


def verdict(name: str, text: str) -> tuple[str, str]:
    """('refused', why) or ('same outcomes', '') or ('CHANGED OUTCOMES', where) for one mutated file."""
    try:
        document = _parse_file(name, text.encode())
        ruleset = parse_rules({**DOCUMENTS, name: document}, version="typo", directory=str(BASE))
    except RulesError as e:
        return "refused", str(e)
    report = check(ruleset)
    if report.problems:
        return "refused", str(report.problems[0])
    layout = answer_domains(baseline(), ruleset)
    if layout is None:
        return "CHANGED OUTCOMES", "the questions themselves"
    before, after = compare(ruleset, *layout)
    changed = [slug for slug in before if before[slug] != after.get(slug)]
    return ("CHANGED OUTCOMES", ", ".join(changed)) if changed else ("same outcomes", "")


def test_the_scanner_finds_exactly_the_keys_tomllib_reads():
    def every_key(node, found):
        if isinstance(node, dict):
            for key, value in node.items():
                found.add(key)
                every_key(value, found)
        elif isinstance(node, list):
            for value in node:
                every_key(value, found)
        return found

    for name, text in TEXTS.items():
        keys, headers, statements = scan(text)
        assert {text[s:e] for s, e, *_ in keys} == every_key(DOCUMENTS[name], set()), name
        kinds = {(text[s:e], path): (s, e) for s, e, path, _ in reversed(keys)}     # first of each kind
        for start, end in kinds.values():       # each is a key: renaming it renames a key
            assert "zz_sentinel" in every_key(tomllib.loads(text[:start] + "zz_sentinel" + text[end:]), set())
        for start, end in statements:           # each statement stands on its own
            assert len(tomllib.loads(text[start:end])) == 1
        arrays = {key: len(value) for key, value in DOCUMENTS[name].items() if isinstance(value, list)}
        assert Counter(h[2] for h in headers if text.startswith("[[", h[0])) == arrays, name
        assert all(h[2].split(".")[0] in DOCUMENTS[name] for h in headers), name


@pytest.mark.parametrize("name", RULE_FILES)
@pytest.mark.parametrize("kind", ["typo", "moved"])
def test_every_single_token_typo_is_refused_or_changes_no_outcome(name, kind):
    mutations = list(key_typos(name) if kind == "typo" else moved_keys(name))
    assert len(mutations) > 20
    results = {"refused": 0, "same outcomes": 0}
    changed = []
    for description, text in mutations:
        result, why = verdict(name, text)
        if result == "CHANGED OUTCOMES":
            changed.append(f"{name} {description}: accepted, and it changes the outcome for {why}")
        else:
            results[result] += 1
    assert changed == []
    # nearly every one is refused outright; the few accepted ones were shown above to change nothing
    assert results["refused"] >= 0.95 * len(mutations), results


def test_a_mutation_is_refused_accepted_unchanged_or_seen_to_change_outcomes():
    # the unchanged files are accepted with the same outcomes
    assert verdict("rules.toml", TEXTS["rules.toml"]) == ("same outcomes", "")
    # a rule that passes every check (and every example) but sends pregnant clients who prefer
    # light pressure to a professional is a change, seen for every service
    extra = ('\n[[rules]]\nid = "light_and_pregnant"\nwhen = { all = [{ var = "preferred_intensity", equals = '
             '"light" }, { var = "pregnant", in = ["yes", "not_sure"] }] }\noutcome = "consult_professional"\n'
             'message = { en = "Ask.", ca = "Pregunta.", es = "Pregunta." }\nsource = "a test"\n')
    result, where = verdict("rules.toml", TEXTS["rules.toml"] + extra)
    assert result == "CHANGED OUTCOMES"
    assert set(where.replace(",", "").split()) == {s.slug for s in baseline().services}
    # so is a follow-up that is no longer required (pregnancy complications left blank)
    moved = TEXTS["questions.toml"].replace('id = "pregnancy_complicated"\ntype = "yes_no_unsure"\nred_flag = true',
                                            'id = "pregnancy_complicated"\ntype = "yes_no_unsure"\nrequired = false')
    assert moved != TEXTS["questions.toml"]
    assert verdict("questions.toml", moved)[0] == "refused"     # by the policy: it must be required
