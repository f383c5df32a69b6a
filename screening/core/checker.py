"""Proves the safety properties of a rule set over the whole answer space (`screening check-rules`).

`check(ruleset) -> Report` shows, for every service:

(a) every valid combination of answers gets exactly one outcome (and the engine agrees);
(b) changing any yes/no/not-sure answer from "no" to "not sure" or "yes" never lowers the
    outcome, and "not sure" is never lower than "yes" (the clearance question is held fixed: it
    lowers the outcome by design);
(c) an asked required question left unanswered is refused, never read as "no", and every
    yes/no/not-sure question a rule reads is required;
(d) every outcome, every rule and every suggestion can happen;
(e) every example in examples.toml gives its outcome (and exactly its rules, when listed);
(f) no rule, clearance or suggestion message promises a medical result;
(g) the screening policy of SPEC.md, as screening/core/policy.py writes it: its questions exist with
    the right shape, every red flag answered "yes" or "not sure" gives consult_professional
    unless a professional has cleared it (fever even then), a clearance never gives proceed,
    pregnancy gives at least tell_centre and asks its follow-up, and every "not sure" to these
    is named in a reason. This is proved over the answer space, not read from examples.toml.

How the whole space stays small and the proof stays sound
---------------------------------------------------------
A condition can only tell values apart through the literals it compares them with, so:

* Services are grouped by what conditions can see of them: two services whose `service.*`
  values fall in the same classes (below) give every condition the same truth value, so one
  representative per group is enough. (Suggestions pointing at the client's own service are
  hidden by the engine; reachability accounts for that with every slug of the group.)
* Yes/no/not-sure and yes/no questions are enumerated fully: every value, plus "unanswered"
  where that is allowed (an optional question, or a follow-up that is not asked).
* A single-choice or text question takes one value per equivalence class: each literal that
  conditions compare it with, one value that is none of them, and "unanswered". A multi-choice
  question takes one value per subset of its literals (`contains` only asks about those), plus
  "unanswered". A question no condition reads takes a single value. Every atomic test is
  evaluated by the engine's own condition objects on each representative, so the classes
  cannot drift from the engine's semantics.

The space is laid out in mixed radix: the follow-up questions (those with `asked_when`) take
each combination of their values in an outer loop, and all other questions form an inner
index. For one outer combination, each condition becomes a Python integer used as a bit set
over the inner index (bit i = the condition holds for combination i), built from periodic bit
patterns and combined with `&`, `|` and `^`. Outcomes, validity (a follow-up is answered exactly
when it is asked, a required one is never blank) and monotonicity (compare with the bit set
shifted by the stride of the changed question) are then whole-set integer operations that run
in C. A sample of combinations per group is replayed through `engine.screen` with every slug of
the group to prove that the bit sets and the engine agree.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import os
import random
import re
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import centres as centres_module
from . import conditions, engine, policy, rules
from .conditions import All, Any_, Condition, Not, Test
from .rules import LOCALES, OUTCOMES, SERVICE_VARS, Question, RulesError, RuleSet, Text, missing_translations

RULES_FILE, QUESTIONS_FILE, EXAMPLES_FILE = "rules.toml", "questions.toml", "examples.toml"

# Words that promise a medical result. Whole words only: "treated" (as in "you are being treated
# for a condition") describes the client, while "this massage treats ..." would be a promise.
FORBIDDEN_WORDS = {
    "en": r"cure|cures|cured|curing|heal|heals|healing|guarantee|guarantees|guaranteed|treat|treats|"
          r"treatment|treatments|remedy|remedies",
    "es": r"cura|curar|curará|curación|sana|sanar|sanará|garantiza|garantizado|garantizada|garantía|"
          r"tratamiento",
    "ca": r"curar|curació|guarir|guareix|guarirà|garanteix|garantit|garantida|garantia|tractament",
}
FORBIDDEN = {loc: re.compile(rf"\b({words})\b", re.IGNORECASE) for loc, words in FORBIDDEN_WORDS.items()}
SAMPLES_PER_BLOCK = 8   # combinations per outer block replayed through the engine


@dataclass(frozen=True)
class Problem:
    """One thing that does not hold; str() reads 'file: entry: problem'."""

    file: str
    entry: str
    problem: str

    def __str__(self) -> str:
        return f"{self.file}: {self.entry}: {self.problem}"


@dataclass
class Report:
    """What `check` found: the problems, and how much it checked in how long."""

    problems: list[Problem] = field(default_factory=list)
    combinations: int = 0        # valid answer combinations checked, over all service groups
    service_groups: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, file: str, entry: str, problem: str) -> None:
        """Record a problem once (the same one may show up in several service groups)."""
        p = Problem(file, entry, problem)
        if p not in self.problems:
            self.problems.append(p)


# --- the answer space --------------------------------------------------------------------------

UNANSWERED = None
OTHER_TEXT = "(any other text)"


def _literals(ruleset: RuleSet) -> dict[str, set]:
    """Every literal each variable is compared with, in any condition of the rule set."""
    merged: dict[str, set] = {}
    conditions = [q.asked_when for q in ruleset.questions if q.asked_when] + \
        [r.when for r in ruleset.rules] + [s.when for s in ruleset.suggestions]
    for cond in conditions:
        for var, values in cond.literals().items():
            merged.setdefault(var, set()).update(values)
    return merged


def _domain(q: Question, literals: set | None) -> list[Any]:
    """One representative answer per class of answers that conditions cannot tell apart."""
    blank_ok = not q.required or q.follow_up      # a follow-up that is not asked is blank
    if q.type in ("yes_no_unsure", "yes_no"):
        # "no" first, so that the lowest index (the counterexample shown) is the plainest one
        values: list[Any] = sorted(q.option_ids, key=("no", "not_sure", "yes").index)
    elif literals is None:
        values = [] if blank_ok else [q.option_ids[0] if q.options else "x"]
    elif q.type == "single":
        values = [o for o in q.option_ids if o in literals]
        values += [o for o in q.option_ids if o not in literals][:1]
    elif q.type == "multi":
        used = [o for o in q.option_ids if o in literals]
        others = [o for o in q.option_ids if o not in literals]
        values = []
        for n in range(len(used) + 1):
            for subset in itertools.combinations(used, n):
                value = subset or tuple(others[:1])     # "none of the literals" needs another option
                if value:
                    values.append(value)
    else:   # text: each literal that fits, and one text that is none of them
        values = [v for v in sorted(literals, key=str) if isinstance(v, str) and v.strip() == v
                  and 0 < len(v) <= q.max_length]
        values.append(OTHER_TEXT if OTHER_TEXT not in literals else OTHER_TEXT + "!")
    return [UNANSWERED, *values] if blank_ok else values


def _service_class(var: str, value: Any, literals: set) -> Any:
    """What conditions can see of a service attribute."""
    if isinstance(value, tuple):
        return frozenset(value) & literals
    return value if value in literals else "(other)"


def _service_groups(ruleset: RuleSet, literals: dict[str, set]) -> list[list]:
    """Services that every condition treats alike, grouped; the first of each is the representative."""
    groups: dict[tuple, list] = {}
    for s in ruleset.services:
        facts = s.facts()
        key = tuple(_service_class(v, facts[v], literals[v]) for v in SERVICE_VARS if v in literals)
        groups.setdefault(key, []).append(s)
    return list(groups.values())


def _repeat(block: int, width: int, times: int) -> int:
    """`block` (a `width`-bit pattern) repeated `times` times, by doubling."""
    result, filled, piece, piece_times = 0, 0, block, 1
    while times:
        if times & 1:
            result |= piece << (filled * width)
            filled += piece_times
        times >>= 1
        if times:
            piece |= piece << (piece_times * width)
            piece_times *= 2
    return result


class Space:
    """The answer space of one service group: inner (mixed radix) and outer (follow-up) questions."""

    def __init__(self, ruleset: RuleSet, service, literals: dict[str, set]):
        self.ruleset, self.service, self.facts = ruleset, service, service.facts()
        self.inner = [q for q in ruleset.questions if not q.follow_up]
        self.outer = [q for q in ruleset.questions if q.follow_up]
        self.domains = {q.id: _domain(q, literals.get(q.id)) for q in ruleset.questions}
        self.strides, stride = {}, 1
        for q in reversed(self.inner):
            self.strides[q.id] = stride
            stride *= len(self.domains[q.id])
        self.size = stride
        self.full = (1 << self.size) - 1
        self._patterns: dict[tuple, int] = {}
        self.blocks = [dict(zip([q.id for q in self.outer], values, strict=True))
                       for values in itertools.product(*(self.domains[q.id] for q in self.outer))]

    def test_mask(self, test: Test, outer_values: dict[str, Any]) -> int:
        """The bit set of inner combinations where an atomic test holds."""
        if test.var in outer_values:
            return self.full if test({test.var: outer_values[test.var]}) else 0
        if test.var in self.facts:
            return self.full if test(self.facts) else 0
        if test.var not in self.domains:
            return 0        # a question the rules do not have (the policy names it): never answered
        if test in self._patterns:
            return self._patterns[test]
        truth = tuple(test({test.var: v}) for v in self.domains[test.var])
        key = (test.var, truth)
        if key not in self._patterns:
            stride, radix = self.strides[test.var], len(truth)
            run = (1 << stride) - 1
            block = sum(run << (j * stride) for j, holds in enumerate(truth) if holds)
            self._patterns[key] = _repeat(block, stride * radix, self.size // (stride * radix))
        self._patterns[test] = self._patterns[key]
        return self._patterns[key]

    def mask(self, cond: Condition, outer_values: dict[str, Any]) -> int:
        """The bit set of inner combinations where a condition holds (for these follow-up values)."""
        if isinstance(cond, Test):
            return self.test_mask(cond, outer_values)
        # empty and full sets are common (a follow-up or service fact is fixed within a block):
        # they short-cut without touching the big integers (`is`: the full set is one object)
        if isinstance(cond, All):
            result = self.full
            for part in cond.parts:
                part_mask = self.mask(part, outer_values)
                if not part_mask:
                    return 0
                if part_mask is not self.full:
                    result = part_mask if result is self.full else result & part_mask
            return result
        if isinstance(cond, Any_):
            result = 0
            for part in cond.parts:
                part_mask = self.mask(part, outer_values)
                if part_mask is self.full:
                    return part_mask
                result |= part_mask
            return result
        if isinstance(cond, Not):
            inner = self.mask(cond.inner, outer_values)
            return 0 if inner is self.full else self.full if not inner else self.full ^ inner
        raise TypeError(f"the checker does not know condition type {type(cond).__name__}")

    def answers(self, index: int, outer_values: dict[str, Any]) -> dict[str, Any]:
        """The answers of inner combination `index` with these follow-up values (blanks left out)."""
        answers = {}
        for q in self.inner:
            domain = self.domains[q.id]
            answers[q.id] = domain[(index // self.strides[q.id]) % len(domain)]
        answers.update(outer_values)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in answers.items() if v is not None}


@dataclass
class Block:
    """The bit sets of one combination of follow-up answers."""

    values: dict[str, Any]
    valid: int
    asked: dict[str, int]
    fired: dict[str, int]
    cleared: int                     # the clearance question is answered "yes"
    at_least: tuple[int, int]        # outcome >= tell_centre, outcome >= consult_professional


def _compile_block(space: Space, values: dict[str, Any]) -> Block:
    """Validity, asked follow-ups, fired rules and outcome levels for one follow-up combination."""
    ruleset = space.ruleset
    valid, asked = space.full, {}
    for q in space.outer:
        asked[q.id] = space.mask(q.asked_when, values)
        if values[q.id] is None:
            # blank is right when not asked, or when asked but optional
            valid &= space.full if not q.required else space.full ^ asked[q.id]
        else:
            valid &= asked[q.id]
    cleared = 0
    if ruleset.clearance is not None:
        cleared = space.mask(Test(ruleset.clearance.question, "equals", "yes"), values)
    levels = [0, 0, 0]
    fired = {}
    for rule in ruleset.rules:
        fired[rule.id] = fires = space.mask(rule.when, values) & valid
        outcome = OUTCOMES.index(rule.outcome)
        if rule.clearable:
            lowered = min(outcome, OUTCOMES.index(ruleset.clearance.outcome))
            levels[outcome] |= fires & (space.full ^ cleared)
            levels[lowered] |= fires & cleared
        else:
            levels[outcome] |= fires
    at_least = (levels[1] | levels[2], levels[2])
    return Block(values, valid, asked, fired, cleared, at_least)


def _outcome_at(block: Block, index: int) -> int:
    """The outcome (0, 1, 2) the bit sets give at one inner combination."""
    return sum((level >> index) & 1 for level in block.at_least)


def _without(mask: int, other: int) -> int:
    """`mask & ~other`, without `~`: a negative big integer makes `&` some ten times slower."""
    return mask ^ (mask & other)


def _align(mask: int, shift: int) -> int:
    """Move bit i + shift of `mask` to bit i (shift may be negative)."""
    return mask >> shift if shift >= 0 else mask << -shift


# --- the checks --------------------------------------------------------------------------------

def _check_group(ruleset: RuleSet, group: list, literals, report: Report, seen: dict,
                 floor: RuleSet | None = None) -> None:
    """Run checks (a) to (d) for one group of services that conditions cannot tell apart.

    With a `floor` (the shared rules, `ruleset` being a centre's), also prove that no combination
    gets a lower outcome than the floor gives it, in the same space (the centre's literals refine it).
    """
    space = Space(ruleset, group[0], literals)
    blocks = [_compile_block(space, values) for values in space.blocks]
    slugs = {s.slug for s in group}
    if floor is not None:
        floor_space = copy.copy(space)      # the same answer space and bit patterns, the floor's rules
        floor_space.ruleset = floor
        for block, floor_block in zip(blocks, (_compile_block(floor_space, v) for v in space.blocks), strict=True):
            _check_floor(space, block, floor_block, report)
    for block in blocks:
        report.combinations += block.valid.bit_count()
        not_proceed, consult = block.at_least
        for code, mask in zip(OUTCOMES, (block.valid ^ not_proceed, not_proceed ^ consult, consult), strict=True):
            seen["outcomes"][code] |= bool(mask)
        for rule_id, fires in block.fired.items():
            seen["rules"][rule_id] |= bool(fires)
        for s in ruleset.suggestions:
            if slugs - {s.service} and space.mask(s.when, block.values) & block.valid:
                seen["suggestions"][s.id] = True
        for rule in ruleset.rules:
            if rule.clearable and block.fired[rule.id] & block.cleared:
                seen["cleared"][rule.id] = True
        _check_policy(space, block, report, seen["policy"])
    _check_agrees_with_engine(space, blocks, group, report)
    if floor is None:
        _check_required_refused(space, blocks, report)
        _check_monotone(space, blocks, report, seen["lowering"])
    else:
        # the questions are the floor's, already proved; for monotonicity only a change that the
        # centre's own rules can see needs proving again (see _movers)
        _check_monotone(space, blocks, report, seen["lowering"], _movers(space, ruleset, floor))


FLOOR_ENTRY = "stricter, never laxer"


def _check_floor(space: Space, block: Block, floor: Block, report: Report) -> None:
    """A centre's outcome is never lower than the shared rules' outcome, for any valid combination."""
    lowered = 0
    for level, floor_level in zip(block.at_least, floor.at_least, strict=True):
        lowered |= _without(floor_level & block.valid, level)
    if lowered and not any(p.entry == FLOOR_ENTRY for p in report.problems):
        index = (lowered & -lowered).bit_length() - 1
        report.add(RULES_FILE, FLOOR_ENTRY, f"gives {OUTCOMES[_outcome_at(block, index)]} where the shared rules "
                                            f"give {OUTCOMES[_outcome_at(floor, index)]}, e.g. for "
                                            f"{space.service.slug} with {_show(space.answers(index, block.values))}")


def _movers(space: Space, ruleset: RuleSet, floor: RuleSet) -> set[str]:
    """The questions whose change the centre's own rules can see: they read it, or a follow-up it asks.

    The floor is proved monotone; a change of any other question leaves what the centre's rules
    add (their bit sets) unchanged on both sides, so the union stays monotone as well.
    """
    floor_ids = {r.id for r in floor.rules}
    read = set().union(*(r.when.variables() for r in ruleset.rules if r.id not in floor_ids))
    depends = _asked_depends_on(space)
    return read | {q for f in read if f in depends for q in depends[f]}


def _check_policy(space: Space, block: Block, report: Report, reported: set) -> None:
    """(g) The screening policy's outcomes, follow-up and "not sure" reasons, for one block."""
    def counterexample(missed: int) -> str:
        index = (missed & -missed).bit_length() - 1
        return f"e.g. for {space.service.slug} with {_show(space.answers(index, block.values))}"

    for n, duty in enumerate(policy.obligations(space.ruleset)):
        level = OUTCOMES.index(duty.at_least)
        if not level or n in reported:
            continue
        missed = _without(block.valid & space.mask(duty.when, block.values), block.at_least[level - 1])
        if missed:
            reported.add(n)
            report.add(duty.file, duty.entry, f"{duty.problem}, {counterexample(missed)}")
    for follow_up, trigger in policy.asked_after().items():
        if follow_up not in block.asked or ("asked", follow_up) in reported:
            continue        # missing is reported on its own; not a follow-up means always asked
        missed = _without(block.valid & space.mask(policy.raised(trigger), block.values), block.asked[follow_up])
        if missed:
            reported.add(("asked", follow_up))
            report.add(QUESTIONS_FILE, f"question {follow_up!r}", f"not asked when {trigger} is yes or not sure, "
                                                                  f"{counterexample(missed)}")
    for question in policy.explained_not_sure():
        if ("about", question) in reported:
            continue
        named = 0
        for rule in space.ruleset.rules:
            if rule.about == question:
                named |= block.fired[rule.id]
        missed = _without(block.valid & space.mask(Test(question, "equals", "not_sure"), block.values), named)
        if missed:
            reported.add(("about", question))
            report.add(RULES_FILE, f"question {question!r}", f"answered not sure, no reason says so (no rule with "
                                                             f"about = {question!r} fires), {counterexample(missed)}")


def _check_agrees_with_engine(space: Space, blocks: list[Block], group: list, report: Report) -> None:
    """(a) Replay a deterministic sample through engine.screen with each slug of the group."""
    rng = random.Random(0)   # noqa: S311 - a reproducible sample, not a secret
    slugs = itertools.cycle(s.slug for s in group)
    for block in blocks:
        if not block.valid:
            continue
        picks = {(block.valid & -block.valid).bit_length() - 1, block.valid.bit_length() - 1}
        for _ in range(SAMPLES_PER_BLOCK):
            start = rng.randrange(space.size)
            rest = block.valid >> start
            if rest:
                picks.add(start + (rest & -rest).bit_length() - 1)
        for index in sorted(picks):
            answers = space.answers(index, block.values)
            slug = next(slugs)
            try:
                decision = engine.screen(space.ruleset, slug, answers)
            except engine.AnswerErrors as e:
                report.add("(checker)", slug, f"the engine refuses answers the checker counts as valid "
                                              f"({e}): {_show(answers)}")
                return          # one counterexample per group is enough
            expected = _outcome_at(block, index)
            fired = {r for r, m in block.fired.items() if (m >> index) & 1}
            if decision.outcome != expected or set(decision.fired_rules) != fired:
                report.add("(checker)", slug, f"the engine gives {decision.outcome.code} "
                                              f"{sorted(decision.fired_rules)}, the checker "
                                              f"{OUTCOMES[expected]} {sorted(fired)}: {_show(answers)}")
                return


def _check_required_refused(space: Space, blocks: list[Block], report: Report) -> None:
    """(c) For one combination of each shape of asked questions, leave out each required answer."""
    for block in blocks:
        if not block.valid:
            continue
        index = (block.valid & -block.valid).bit_length() - 1
        answers = space.answers(index, block.values)
        for q in space.ruleset.questions:
            if not q.required or q.id not in answers:
                continue
            without = {k: v for k, v in answers.items() if k != q.id}
            _, errors = engine.normalize(space.ruleset, space.service, without)
            if errors.get(q.id) != engine.REQUIRED:
                report.add(QUESTIONS_FILE, f"question {q.id!r}", "left unanswered, it is not refused")


def _check_monotone(space: Space, blocks: list[Block], report: Report, reported: set,
                    only: set[str] | None = None) -> None:
    """(b) "no" -> "not sure"/"yes", or "yes" -> "not sure", never lowers the outcome (for the questions `only`)."""
    clearance = space.ruleset.clearance.question if space.ruleset.clearance else None
    blocks = [b for b in blocks if b.valid]
    depends = _asked_depends_on(space)
    shapes: dict[tuple, list] = {}     # pairs of blocks that can be "before" and "after" a change
    for q in space.ruleset.questions:
        if q.type != "yes_no_unsure" or q.id == clearance or (only is not None and q.id not in only):
            continue
        # only a follow-up whose being asked depends on q can start or stop being asked
        movable = frozenset(f for f, on in depends.items() if q.id in on)
        key = (q.id if q.follow_up else None, movable)
        if key not in shapes:
            shapes[key] = _pair_shapes(space, blocks, key[0], movable, clearance)
        for old, new in (("no", "not_sure"), ("no", "yes"), ("yes", "not_sure")):
            if (q.id, old, new) in reported:
                continue        # one counterexample per change is enough
            if q.follow_up:
                shift, selected = 0, space.full
            else:
                domain = space.domains[q.id]
                shift = (domain.index(new) - domain.index(old)) * space.strides[q.id]
                selected = space.test_mask(Test(q.id, "equals", old), {})
            moved: dict[int, tuple] = {}    # block b's bit sets moved onto a's indices, once per block
            for a, b, newly_asked, no_longer_asked in shapes[key]:
                if q.follow_up and (a.values[q.id], b.values[q.id]) != (old, new):
                    continue
                if id(b) not in moved:
                    moved[id(b)] = (_align(b.valid, shift), [_align(level, shift) for level in b.at_least]) \
                        if shift else (b.valid, b.at_least)
                b_valid, b_levels = moved[id(b)]
                pairs = selected & a.valid & b_valid
                for qid in newly_asked:
                    pairs = _without(pairs, a.asked[qid])
                for qid in no_longer_asked:
                    pairs = _without(pairs, _align(b.asked[qid], shift))
                if not pairs:
                    continue
                lowered = 0
                for level_a, level_b in zip(a.at_least, b_levels, strict=True):
                    lowered |= _without(level_a & pairs, level_b)
                if lowered:
                    index = (lowered & -lowered).bit_length() - 1
                    _report_lowering(space, q.id, old, new, space.answers(index, a.values),
                                     space.answers(index + shift, b.values), report)
                    reported.add((q.id, old, new))
                    break


def _asked_depends_on(space: Space) -> dict[str, set]:
    """For each follow-up, every question whether it is asked can depend on (through other follow-ups too)."""
    depends: dict[str, set] = {}
    for q in space.outer:           # in order: asked_when reads only earlier questions
        on = set(q.asked_when.variables())
        for var in list(on):
            on |= depends.get(var, set())
        depends[q.id] = on
    return depends


def _pair_shapes(space: Space, blocks: list[Block], changed: str | None, movable: frozenset,
                 clearance: str | None) -> list[tuple]:
    """Pairs (a, b, newly asked, no longer asked) where b's follow-ups can be a's once `changed` is raised.

    A follow-up asked on both sides keeps its answer; one that stops being asked goes blank; one
    that starts being asked may take any answer, except the clearance question, which may only
    stay "not cleared" (a clearance lowers the outcome by design). Only the `movable` follow-ups
    can start or stop being asked; the others keep their answers. Worked out once per shape of
    change (`changed`: the follow-up changed, None when the changed question is not one).
    """
    shapes = []
    for a, b in itertools.product(blocks, repeat=2):
        newly_asked, no_longer_asked = [], []
        for q in space.outer:
            va, vb = a.values[q.id], b.values[q.id]
            if q.id == changed or va == vb or (q.id == clearance and {va, vb} == {None, "no"}):
                continue                                   # (blank and "no" both mean not cleared)
            if q.id not in movable:
                break
            if va is None and vb is not None and q.id != clearance:
                newly_asked.append(q.id)
            elif va is not None and vb is None:
                no_longer_asked.append(q.id)
            else:
                break
        else:
            shapes.append((a, b, tuple(newly_asked), tuple(no_longer_asked)))
    return shapes


def _report_lowering(space: Space, question: str, old: str, new: str, before: dict, after: dict,
                     report: Report) -> None:
    """Name the rules that made the outcome higher before the change, with a counterexample."""
    ruleset = space.ruleset
    a = engine.evaluate(ruleset, space.service, engine.normalize(ruleset, space.service, before)[0])
    b = engine.evaluate(ruleset, space.service, engine.normalize(ruleset, space.service, after)[0])
    after_rules = {r.rule for r in b.reasons}
    culprits = [r.rule for r in a.reasons if r.outcome > b.outcome and r.rule not in after_rules] or \
               [r.rule for r in a.reasons if r.outcome > b.outcome]
    entry = f"rule {culprits[0]!r}" if culprits else f"question {question!r}"
    report.add(RULES_FILE, entry, f"changing {question} from {old} to {new} lowers the outcome from "
                                  f"{a.outcome.code} to {b.outcome.code}, e.g. for {space.service.slug} "
                                  f"with {_show(before)}")


def _show(answers: dict) -> str:
    """Answers in one short line, for a counterexample."""
    return ", ".join(f"{k}={'+'.join(v) if isinstance(v, list) else v}" for k, v in answers.items())


def _check_required_questions(ruleset: RuleSet, report: Report) -> None:
    """(c) A yes/no/not-sure question a rule reads must be required: blank would act as "no"."""
    read = set().union(*(r.when.variables() for r in ruleset.rules)) if ruleset.rules else set()
    clearance = ruleset.clearance.question if ruleset.clearance else None
    for q in ruleset.questions:
        if q.type == "yes_no_unsure" and q.id in read and q.id != clearance and not q.required:
            report.add(QUESTIONS_FILE, f"question {q.id!r}",
                       "rules read it but it is not required, so leaving it blank would count as no")


def _check_examples(ruleset: RuleSet, report: Report) -> None:
    """(e) Every example gives its outcome, and exactly its rules when they are listed."""
    known = {r.id for r in ruleset.rules}
    for ex in ruleset.examples:
        entry = f"example {ex.name!r}"
        if ex.rules is not None and set(ex.rules) - known:
            report.add(EXAMPLES_FILE, entry, f"lists unknown rule(s) {sorted(set(ex.rules) - known)}")
            continue
        try:
            decision = engine.screen(ruleset, ex.service, ex.answers)
        except engine.AnswerErrors as e:
            report.add(EXAMPLES_FILE, entry, f"the answers are refused: {e}")
            continue
        if decision.outcome.code != ex.outcome:
            report.add(EXAMPLES_FILE, entry, f"expected {ex.outcome}, got {decision.outcome.code} "
                                             f"(rules fired: {', '.join(decision.fired_rules) or 'none'})")
        elif ex.rules is not None and set(decision.fired_rules) != set(ex.rules):
            report.add(EXAMPLES_FILE, entry, f"expected rules {sorted(ex.rules)}, "
                                             f"got {sorted(decision.fired_rules)}")


def _check_wording(ruleset: RuleSet, report: Report) -> None:
    """(f) No rule, clearance or suggestion message promises a medical result."""
    def scan(entry: str, key: str, text: Text | None):
        if text is None:
            return
        for locale in LOCALES:
            found = FORBIDDEN[locale].search(text.get(locale))
            if found and (locale == "en" or text.get(locale) != text.get("en")):
                report.add(RULES_FILE, entry, f"{key} ({locale}) promises a medical result: "
                                              f"{found.group(0)!r}")
    for rule in ruleset.rules:
        scan(f"rule {rule.id!r}", "message", rule.message)
        scan(f"rule {rule.id!r}", "cleared_message", rule.cleared_message)
    for s in ruleset.suggestions:
        scan(f"suggestion {s.id!r}", "message", s.message)


def check(ruleset: RuleSet, floor: RuleSet | None = None) -> Report:
    """Check every property above for a loaded rule set; the report lists what does not hold.

    `floor`: the shared rules when `ruleset` is a centre's (the shared ones plus its own); then it
    is also proved never to give a lower outcome than the floor (see check_centres).
    """
    started = time.perf_counter()
    report = Report()
    literals = _literals(ruleset)
    seen = {"outcomes": dict.fromkeys(OUTCOMES, False), "rules": {r.id: False for r in ruleset.rules},
            "suggestions": {s.id: False for s in ruleset.suggestions},
            "cleared": {r.id: False for r in ruleset.rules if r.clearable}, "lowering": set(), "policy": set()}
    for file, entry, problem in policy.question_problems(ruleset):
        report.add(file, entry, problem)
    groups = _service_groups(ruleset, literals)
    report.service_groups = len(groups)
    for group in groups:
        _check_group(ruleset, group, literals, report, seen, floor)
    for code, reached in seen["outcomes"].items():
        if not reached:
            report.add(RULES_FILE, f"outcome {code!r}", "no combination of answers leads to it")
    for rule_id, reached in seen["rules"].items():
        if not reached:
            report.add(RULES_FILE, f"rule {rule_id!r}", "never fires, whatever the answers")
    for rule_id, reached in seen["cleared"].items():
        if not reached and seen["rules"][rule_id]:
            report.add(RULES_FILE, f"rule {rule_id!r}", "clearable, but the clearance can never apply when it "
                                                        "fires (is the clearance question asked then?)")
    for s_id, reached in seen["suggestions"].items():
        if not reached:
            report.add(RULES_FILE, f"suggestion {s_id!r}", "never shown, whatever the service and answers")
    _check_required_questions(ruleset, report)
    _check_examples(ruleset, report)
    _check_wording(ruleset, report)
    for file, entry, problem in missing_translations(ruleset):   # SPEC "Languages"
        report.add(file, entry, problem)
    report.seconds = time.perf_counter() - started
    return report


# --- the centres: stricter, never laxer ------------------------------------------------------------

def _as_centre_problem(centre, problem: Problem) -> Problem:
    """A problem of a centre's rule set, named by the centre's file (its rules and examples stand in
    for rules.toml and examples.toml there)."""
    text = problem.problem if problem.file in (RULES_FILE, EXAMPLES_FILE) else f"{problem.problem} ({problem.file})"
    return Problem(centre.file, problem.entry, text)


def centre_groups(centres) -> dict[str, list]:
    """The centres with rules or examples of their own, grouped by their parsed content: one proof each."""
    groups: dict[str, list] = {}
    for centre in centres:
        if centre.extra:
            groups.setdefault(centre.extra, []).append(centre)
    return groups


def check_centre_group(shared: RuleSet, centre) -> Report:
    """Every property for one centre's rule set, plus: never a lower outcome than the shared rules."""
    return check(centres_module.centre_rules(shared, centre), floor=shared)


def check_centres(shared: RuleSet, centres) -> Report:
    """Prove each centre's rule set: every property above, and never lower than the shared rules.

    A centre without rules of its own screens with the shared set, proved once by `check`; the
    others are grouped by what their rules and examples say, and each distinct group is proved
    once. The problems name each centre's file (centres/<slug>.toml). `service_groups` counts the
    distinct rule sets proved here.
    """
    started = time.perf_counter()
    report = Report()
    for members in centre_groups(centres).values():
        found = check_centre_group(shared, members[0])
        report.combinations += found.combinations
        report.service_groups += 1
        for centre in members:
            for problem in found.problems:
                report.problems.append(_as_centre_problem(centre, problem))
    report.seconds = time.perf_counter() - started
    return report


# --- the proof at start-up ---------------------------------------------------------------------

class RulesRefused(RulesError):
    """The rules load, but `check` finds problems: str() is one 'file: entry: problem' line each,
    exactly as `screening check-rules` prints them."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        first = self.problems[0]
        super().__init__(first.file, first.entry, first.problem)

    def __str__(self) -> str:
        return "\n".join(map(str, self.problems))


PROOF_FILE = "rules-proven"          # in the instance folder: the key of the last rule set proven safe
_verdicts: dict[str, tuple[Problem, ...]] = {}      # proof key -> problems (empty: proven), this process
_verdicts_lock = threading.Lock()
_code_hash: str | None = None


def code_hash() -> str:
    """A hash of the source of every module the proof depends on: changed code is proved anew."""
    global _code_hash
    if _code_hash is None:
        digest = hashlib.sha256()
        for module in (sys.modules[__name__], conditions, engine, policy, rules, centres_module):
            digest.update(Path(module.__file__).read_bytes())
        _code_hash = digest.hexdigest()[:16]
    return _code_hash


def proof_key(ruleset: RuleSet) -> str:
    """What a verdict is valid for: these rule files (their version) judged by this code."""
    return f"{ruleset.version}-{code_hash()}"


def directory_key(ruleset: RuleSet, centres=()) -> str:
    """The proof key of the shared rules and every distinct set of centre rules (their parsed content).

    Without centre rules it is the shared proof key: adding a centre that only has its identity
    (or editing a phone number) proves nothing again.
    """
    extras = sorted(centre_groups(centres))
    if not extras:
        return proof_key(ruleset)
    digest = hashlib.sha256("\n".join(extras).encode()).hexdigest()[:16]
    return f"{proof_key(ruleset)}+{digest}"


def prove(ruleset: RuleSet, cache_dir: str | None = None, centres=()) -> None:
    """Raise RulesRefused unless `check` passes, and `check_centres` for `centres`: the same proof as
    `screening check-rules`.

    The verdict is remembered in this process per proof key (tests build many apps on the same
    rules), the shared one and each distinct set of centre rules apart, and a passing one is also
    written to `cache_dir/rules-proven` so that the next start (each gunicorn worker, each restart)
    on the same rules and code reads it instead of proving again. A key never seen is always
    proved: the cache can only skip a proof already made.
    """
    key = directory_key(ruleset, centres)
    with _verdicts_lock:           # threads building apps at once prove a rule set once
        if key not in _verdicts:
            if cache_dir is not None and _read_proof(cache_dir) == key:
                _verdicts[key] = ()
            else:
                _verdicts[key] = _prove_parts(ruleset, centres)
                if cache_dir is not None and not _verdicts[key]:
                    _write_proof(cache_dir, key)
        problems = _verdicts[key]
    if problems:
        raise RulesRefused(list(problems))


def _prove_parts(ruleset: RuleSet, centres) -> tuple[Problem, ...]:
    """The problems of the shared rules, then of each centre's: each part proved once per process."""
    shared_key = proof_key(ruleset)
    if shared_key not in _verdicts:
        _verdicts[shared_key] = tuple(check(ruleset).problems)
    problems = list(_verdicts[shared_key])
    for extra, members in centre_groups(centres).items():
        part = f"{shared_key}~{extra}"
        if part not in _verdicts:
            _verdicts[part] = tuple(check_centre_group(ruleset, members[0]).problems)
        problems += [_as_centre_problem(c, p) for c in members for p in _verdicts[part]]
    return tuple(problems)


def _read_proof(cache_dir: str) -> str | None:
    """The key written by the last passing proof, or None."""
    try:
        return (Path(cache_dir) / PROOF_FILE).read_text().strip()
    except OSError:
        return None


def _write_proof(cache_dir: str, key: str) -> None:
    """Record a passing proof, atomically (workers starting together may all write it).

    The folder is not created here: one that does not exist yet (a checkout whose instance/ was
    never made) is left alone, and the next start proves again.
    """
    try:
        fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".rules-proven-")
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
        os.replace(tmp, Path(cache_dir) / PROOF_FILE)
    except OSError:
        pass            # a folder not there yet or unwritable only means proving again at the next start
