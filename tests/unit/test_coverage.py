"""Pattern containment, overlap and statement coverage, checked against brute force over
every string of a small alphabet (the patterns' languages are decided by the real matcher)."""

from __future__ import annotations

from itertools import product

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policyhub.engine import Statement
from policyhub.engine.coverage import Budget, BudgetExceeded, PatternIndex, contains, first_uncovered, overlaps
from policyhub.engine.patterns import glob_match

ALPHABET = "ab."
STRINGS = ["".join(chars) for n in range(0, 7) for chars in product(ALPHABET, repeat=n)]
patterns = st.text(alphabet="ab.*?", min_size=1, max_size=6)


def language(pattern: str) -> set[str]:
    return {s for s in STRINGS if glob_match(pattern, s)}


@settings(max_examples=600, deadline=None)
@given(patterns, patterns)
def test_contains_is_never_wrong(outer, inner):
    # Strings up to 6 characters decide it for patterns of at most 6 characters
    # (a counterexample, if any, is at most as long as the inner pattern).
    if contains(outer, inner):
        assert language(inner) <= language(outer)


@settings(max_examples=600, deadline=None)
@given(patterns, patterns)
def test_overlaps_is_exact(a, b):
    # A common string, if any, exists with at most len(a) + len(b) characters... within 6
    # for the cases here where both patterns have at most 3 characters each; larger ones
    # are checked one way (a witness found means overlaps must say so).
    common = language(a) & language(b)
    if common:
        assert overlaps(a, b)
    elif len(a) + len(b) <= 6:
        assert not overlaps(a, b)


@settings(max_examples=300, deadline=None)
@given(st.lists(patterns, min_size=1, max_size=12), patterns)
def test_pattern_index_never_misses_a_candidate(held, probe):
    index = PatternIndex((p, i) for i, p in enumerate(held))
    may_contain = {i for _, i in index.may_contain(probe)}
    may_overlap = {i for _, i in index.may_overlap(probe)}
    for i, p in enumerate(held):
        if contains(p, probe):
            assert i in may_contain, (p, probe)
        if overlaps(p, probe):
            assert i in may_overlap, (p, probe)


def test_pattern_index_narrows_by_literal_prefix():
    index = PatternIndex((p, p) for p in ["inventory.*", "identity.*", "*", "inv*", "billing.x"])
    assert {p for p, _ in index.may_contain("inventory.Server.read")} == {"inventory.*", "*", "inv*"}
    assert {p for p, _ in index.may_overlap("i*")} == {"inventory.*", "identity.*", "*", "inv*"}


@pytest.mark.parametrize(
    "outer,inner,expected",
    [
        ("*", "anything*", True),
        ("inventory.*", "inventory.Server.read", True),
        ("inventory.*", "inventory.Server.*", True),
        ("inventory.*", "inventory*", False),
        ("inventory.Server.*", "inventory.*", False),
        ("policy/team-*", "policy/team-a*", True),
        ("policy/team-*", "policy/team?", False),
        ("policy/team-?", "policy/team-a", True),
        ("policy/team-?", "policy/team-*", False),
        ("a?c", "a?c", True),
        ("a*c", "a?c", True),
        ("a?c", "a*c", False),
        ("*a*", "a*", True),
        ("x", "x", True),
        ("x", "x*", False),
    ],
)
def test_contains_table(outer, inner, expected):
    assert contains(outer, inner) is expected


@pytest.mark.parametrize(
    "a,b,expected",
    [
        ("prod/*", "*", True),
        ("prod/*", "dev/*", False),
        ("prod/*", "*/web", True),
        ("a?c", "ab*", True),
        ("a?c", "b*", False),
        ("*x", "*y", False),
        ("*x*", "*y*", True),
        ("abc", "a*", True),
    ],
)
def test_overlaps_table(a, b, expected):
    assert overlaps(a, b) is expected


def test_pathological_patterns_are_bounded_by_the_budget():
    outer = "*a" * 200 + "b"
    inner = "a" + "*a" * 200
    with pytest.raises(BudgetExceeded):
        contains(outer, inner, Budget(1000))
    with pytest.raises(BudgetExceeded):
        overlaps(outer, "*" + inner + "?", Budget(1000))


ALLOW_INVENTORY = Statement("ALLOW", ("inventory.*",), ("*",))
DENY_PROD_DELETE = Statement("DENY", ("inventory.Server.delete",), ("prod/*",))


def test_coverage_of_statements():
    held = [ALLOW_INVENTORY, DENY_PROD_DELETE]
    assert first_uncovered(held, [Statement("ALLOW", ("inventory.Server.read",), ("prod/*",))]) is None
    assert first_uncovered(held, [Statement("ALLOW", ("INVENTORY.server.READ",), ("*",))]) is None
    # The deny overlaps: giving delete on * would give what the holder is denied on prod/*.
    missing = first_uncovered(held, [Statement("ALLOW", ("inventory.Server.delete",), ("*",))])
    assert missing is not None and missing.resource == "*"
    assert first_uncovered(held, [Statement("ALLOW", ("inventory.Server.delete",), ("dev/*",))]) is None
    missing = first_uncovered(
        held, [Statement("ALLOW", ("inventory.x",), ("a",)), Statement("ALLOW", ("identity.*",), ("*",))]
    )
    assert missing == type(missing)(1, "identity.*", "*")
    # Coverage needs one held statement for both the action and the resource.
    split = [Statement("ALLOW", ("a.x",), ("r1",)), Statement("ALLOW", ("a.y",), ("r2",))]
    assert first_uncovered(split, [Statement("ALLOW", ("a.x",), ("r2",))]) is not None
    assert (
        first_uncovered(split, [Statement("ALLOW", ("a.x",), ("r1",)), Statement("ALLOW", ("a.y",), ("r2",))]) is None
    )
    assert first_uncovered([], [Statement("ALLOW", ("a",), ("r",))]) == type(missing)(0, "a", "r")
