"""Action and resource patterns.

Rules (PRODUCT.md §4):

- ``*`` matches any run of characters, including the empty run; it crosses ``.``,
  ``:`` and ``/`` (and every other character, newlines included).
- ``?`` matches exactly one character.
- Every other character is literal (regex metacharacters such as ``.``, ``+``,
  ``[``, ``(``, ``\\`` or ``$`` match only themselves).
- Actions compare case-insensitively: pattern and action are both folded with
  ``str.lower()`` before matching. Resources compare case-sensitively.
- The empty pattern matches nothing (validation refuses it before it gets here).

Each distinct pattern is compiled once (cached) into the cheapest matcher that
implements it: ``==`` for a pattern without wildcards, ``startswith`` for
``prefix*``, ``endswith`` for ``*suffix``, both for ``prefix*suffix``, constant true
for ``*``, otherwise a compiled ``re`` fullmatch.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Callable

Matcher = Callable[[str], bool]

WILDCARDS = ("*", "?")
_STARS = re.compile(r"\*{2,}")


def _always(_value: str) -> bool:
    return True


def _never(_value: str) -> bool:
    return False


def has_wildcard(pattern: str) -> bool:
    return "*" in pattern or "?" in pattern


def is_match_all(pattern: str) -> bool:
    """True when the pattern matches every string (``*``, ``**``, ...)."""
    return bool(pattern) and pattern.strip("*") == ""


def literal_prefix(pattern: str) -> str:
    """The literal characters of ``pattern`` before its first wildcard."""
    for i, ch in enumerate(pattern):
        if ch == "*" or ch == "?":
            return pattern[:i]
    return pattern


def _regex(pattern: str) -> str:
    parts = []
    for ch in pattern:
        if ch == "*":
            parts.append(".*")
        elif ch == "?":
            parts.append(".")
        else:
            parts.append(re.escape(ch))
    return "".join(parts)


@lru_cache(maxsize=262_144)
def compile_pattern(pattern: str) -> Matcher:
    """A case-sensitive matcher for ``pattern`` (cached per distinct pattern)."""
    if not pattern:
        return _never
    pattern = _STARS.sub("*", pattern)
    if pattern == "*":
        return _always
    if "?" not in pattern:
        stars = pattern.count("*")
        if stars == 0:
            return pattern.__eq__
        if stars == 1:
            head, _, tail = pattern.partition("*")
            if not tail:
                return lambda value: value.startswith(head)
            if not head:
                return lambda value: value.endswith(tail)
            minimum = len(head) + len(tail)
            return lambda value: len(value) >= minimum and value.startswith(head) and value.endswith(tail)
    fullmatch = re.compile(_regex(pattern), re.DOTALL).fullmatch
    return lambda value: fullmatch(value) is not None


def compile_action_pattern(pattern: str) -> Matcher:
    """A matcher for an action pattern; it must be given an action already folded
    with ``str.lower()`` (the evaluator folds each asked action once)."""
    return compile_pattern(pattern.lower())


def compile_resource_pattern(pattern: str) -> Matcher:
    return compile_pattern(pattern)


def match_action(pattern: str, action: str) -> bool:
    """Does the action pattern match the action (case-insensitively)?"""
    return bool(compile_pattern(pattern.lower())(action.lower()))


def match_resource(pattern: str, resource: str) -> bool:
    """Does the resource pattern match the resource (case-sensitively)?"""
    return bool(compile_pattern(pattern)(resource))


def action_bucket(pattern: str) -> tuple[str, str] | None:
    """Where an action pattern is indexed, for a pattern already lower-cased.

    - ``("exact", pattern)`` for a pattern without wildcards: only the action equal to
      it can match;
    - ``("segment", s)`` when a ``.`` occurs in the literal prefix (before the first
      wildcard): only actions whose first dot-separated segment is ``s`` can match;
    - ``None`` (the catch-all bucket) otherwise, e.g. ``*``, ``inv*``, ``?.read``.

    The empty pattern matches nothing; callers do not index it.
    """
    if not has_wildcard(pattern):
        return ("exact", pattern)
    prefix = literal_prefix(pattern)
    dot = prefix.find(".")
    if dot >= 0:
        return ("segment", prefix[:dot])
    return None


def action_segment(action: str) -> str:
    """The first dot-separated segment of an (already lower-cased) action."""
    dot = action.find(".")
    return action if dot < 0 else action[:dot]


def may_match_with_prefix(pattern: str, prefix: str) -> bool:
    """Is there a string starting with ``prefix`` that ``pattern`` matches?

    Case-sensitive (used for resources). Simulates the pattern as an automaton over
    the characters of ``prefix``; if any pattern position is still alive afterwards,
    the rest of the pattern can always be completed (literals by themselves, ``?`` by
    any character, ``*`` by nothing).
    """
    if not pattern:
        return False
    if not prefix:
        return True
    n = len(pattern)

    def closure(states: set[int]) -> set[int]:
        out = set(states)
        stack = list(states)
        while stack:
            i = stack.pop()
            if i < n and pattern[i] == "*" and i + 1 not in out:
                out.add(i + 1)
                stack.append(i + 1)
        return out

    states = closure({0})
    for ch in prefix:
        nxt: set[int] = set()
        for i in states:
            if i >= n:
                continue
            p = pattern[i]
            if p == "*":
                nxt.add(i)
            elif p == "?" or p == ch:
                nxt.add(i + 1)
        if not nxt:
            return False
        states = closure(nxt)
    return True
