"""Pattern algebra: containment and overlap of patterns, and coverage of statements.

Pure. Used by the escalation rule (a caller may only give what it already holds) and by
``list_authorized_resources`` (which denies carve exceptions out of an allowed pattern).

- ``contains(outer, inner)``: every string ``inner`` matches, ``outer`` matches too.
  Decided by running ``outer`` over the *tokens* of ``inner`` (a literal character, ``?``
  or ``*``): an ``outer`` ``*`` absorbs any token, an ``outer`` ``?`` takes a literal or a
  ``?``, an ``outer`` literal takes the same literal. Every step is valid for every string
  of ``inner``, so a ``True`` is always right. It can answer ``False`` for a few containments
  that need a different alignment (``?*`` contains ``*?``): the escalation rule is then
  conservative, never permissive.
- ``overlaps(a, b)``: some string matches both. Exact: a search over pairs of positions
  (the product of the two patterns' automata), accepting when both reach their end.

Both are O(len(a) * len(b)) steps at worst, counted against a :class:`Budget` so that a
caller-supplied set of patterns cannot make one call do unbounded work.
Patterns are compared case-sensitively; actions are folded with ``str.lower()`` by the
callers (the statement coverage below folds them).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from typing import Collection, Generic, Iterable, Iterator, Sequence, TypeVar

from policyhub.engine.model import Statement
from policyhub.engine.patterns import collapse_stars, compile_pattern, has_wildcard, is_match_all, literal_prefix

__all__ = ["Budget", "BudgetExceeded", "PatternIndex", "Uncovered", "contains", "overlaps", "first_uncovered"]

T = TypeVar("T")

DEFAULT_STEPS = 2_000_000


class BudgetExceeded(Exception):
    """The work allowed for one question is spent; the answer is unknown (treat it as 'no')."""


class Budget:
    __slots__ = ("left",)

    def __init__(self, steps: int = DEFAULT_STEPS):
        self.left = steps

    def spend(self, steps: int) -> None:
        self.left -= steps
        if self.left < 0:
            raise BudgetExceeded


def _star_closure(pattern: str, positions: set[int]) -> set[int]:
    """Positions reachable by letting each ``*`` match the empty run."""
    out = set(positions)
    for i in sorted(positions):
        while i < len(pattern) and pattern[i] == "*":
            i += 1
            out.add(i)
    return out


def contains(outer: str, inner: str, budget: Budget | None = None) -> bool:
    """True only when every string matched by ``inner`` is matched by ``outer`` (see module doc)."""
    if not outer or not inner:
        return False
    if is_match_all(outer):
        return True
    if not has_wildcard(inner):
        return compile_pattern(outer)(inner)
    if not has_wildcard(outer):
        return False
    outer, inner = collapse_stars(outer), collapse_stars(inner)
    budget = budget or Budget()
    n = len(outer)
    states = _star_closure(outer, {0})
    for token in inner:
        budget.spend(len(states))
        following: set[int] = set()
        for i in states:
            if i == n:
                continue
            o = outer[i]
            if o == "*":
                following.add(i)
            elif token != "*" and (o == "?" or o == token):
                following.add(i + 1)
        if not following:
            return False
        states = _star_closure(outer, following)
    return n in states


def overlaps(a: str, b: str, budget: Budget | None = None) -> bool:
    """True when some string matches both patterns (exact)."""
    if not a or not b:
        return False
    if not has_wildcard(a):
        return compile_pattern(b)(a)
    if not has_wildcard(b):
        return compile_pattern(a)(b)
    if is_match_all(a) or is_match_all(b):
        return True
    a, b = collapse_stars(a), collapse_stars(b)
    budget = budget or Budget()
    n, m = len(a), len(b)
    seen = {(0, 0)}
    stack = [(0, 0)]
    while stack:
        budget.spend(1)
        i, j = stack.pop()
        if i == n and j == m:
            return True
        moves = []
        if i < n and a[i] == "*":
            moves.append((i + 1, j))
        if j < m and b[j] == "*":
            moves.append((i, j + 1))
        if i < n and j < m:
            x, y = a[i], b[j]
            if x in "*?" or y in "*?" or x == y:
                moves.append((i if x == "*" else i + 1, j if y == "*" else j + 1))
        for state in moves:
            if state not in seen:
                seen.add(state)
                stack.append(state)
    return False


class PatternIndex(Generic[T]):
    """Patterns (with a value each) by their literal prefix, to find the few that may contain or
    overlap a given pattern without trying them all. A pattern whose literal prefix is P only
    matches strings starting with P, so: it can contain a pattern with literal prefix Q only if
    Q starts with P; it can overlap it only if one of P, Q starts with the other."""

    def __init__(self, items: Iterable[tuple[str, T]]):
        self._by_prefix: dict[str, list[tuple[str, T]]] = {}
        for pattern, value in items:
            self._by_prefix.setdefault(literal_prefix(pattern), []).append((pattern, value))
        self._prefixes = sorted(self._by_prefix)

    def may_contain(self, inner: str) -> Iterator[tuple[str, T]]:
        """Entries that may contain ``inner`` (a superset of those that do)."""
        q = literal_prefix(inner)
        for k in range(len(q) + 1):
            yield from self._by_prefix.get(q[:k], ())

    def may_overlap(self, other: str) -> Iterator[tuple[str, T]]:
        """Entries that may overlap ``other`` (a superset of those that do)."""
        q = literal_prefix(other)
        for k in range(len(q)):
            yield from self._by_prefix.get(q[:k], ())
        prefixes = self._prefixes
        i = bisect_left(prefixes, q)
        while i < len(prefixes) and prefixes[i].startswith(q):
            yield from self._by_prefix[prefixes[i]]
            i += 1


@dataclass(frozen=True)
class Uncovered:
    """The first (action, resource) pair of ``wanted[statement_index]`` that is not covered."""

    statement_index: int
    action: str
    resource: str


def first_uncovered(
    held: Sequence[Statement],
    wanted: Sequence[Statement],
    budget: Budget | None = None,
    by_name: Collection[str] = (),
) -> Uncovered | None:
    """Does ``held`` (someone's effective statements) already allow everything ``wanted`` names?

    Each (action pattern, resource pattern) pair of each wanted statement, whatever its
    effect, must be covered by ONE held ALLOW statement (an action pattern containing it and
    a resource pattern containing it), and no held DENY statement may overlap it (an action
    pattern overlapping it and a resource pattern overlapping it): then every concrete
    (action, resource) the pair names is allowed to the holder. Returns the first pair that
    fails, or None. Raises BudgetExceeded when the question is too large to answer.

    An action in ``by_name`` (lower-cased) is covered only by a held ALLOW statement that names
    it exactly (case-insensitively): a wildcard held covers it for no one.
    """
    budget = budget or Budget()
    allows = [s for s in held if s.effect == "ALLOW"]
    denies = [s for s in held if s.effect == "DENY"]
    indexes = {
        "action": (
            PatternIndex((a.lower(), bit) for bit, s in enumerate(allows) for a in s.actions if a),
            PatternIndex((a.lower(), bit) for bit, s in enumerate(denies) for a in s.actions if a),
        ),
        "resource": (
            PatternIndex((r, bit) for bit, s in enumerate(allows) for r in s.resources if r),
            PatternIndex((r, bit) for bit, s in enumerate(denies) for r in s.resources if r),
        ),
    }
    masks: dict[tuple[str, str], tuple[int, int]] = {}

    def mask(kind: str, pattern: str) -> tuple[int, int]:
        """(held ALLOW statements one of whose `kind` patterns contains `pattern`, held DENY
        statements one of whose `kind` patterns overlaps it), as bit sets."""
        key = (kind, pattern)
        found = masks.get(key)
        if found is None:
            allow_index, deny_index = indexes[kind]
            covered = touched = 0
            for outer, bit in allow_index.may_contain(pattern):
                budget.spend(1)
                if kind == "action" and pattern in by_name:
                    if outer == pattern:
                        covered |= 1 << bit
                elif not covered >> bit & 1 and contains(outer, pattern, budget):
                    covered |= 1 << bit
            for other, bit in deny_index.may_overlap(pattern):
                budget.spend(1)
                if not touched >> bit & 1 and overlaps(other, pattern, budget):
                    touched |= 1 << bit
            found = masks[key] = (covered, touched)
        return found

    for index, statement in enumerate(wanted):
        resource_masks = [(r, mask("resource", r)) for r in statement.resources]
        for action in statement.actions:
            action_allow, action_deny = mask("action", action.lower())
            for resource, (resource_allow, resource_deny) in resource_masks:
                budget.spend(1)
                if not action_allow & resource_allow or action_deny & resource_deny:
                    return Uncovered(index, action, resource)
    return None
