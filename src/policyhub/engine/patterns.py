"""Action and resource patterns.

Rules:

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
``prefix*``, ``endswith`` for ``*suffix``, both for ``prefix*suffix``, ``in`` for
``*infix*``, constant true for ``*``, otherwise the general wildcard matcher below.

No regular expression is ever built from a pattern. Patterns are user input, and a
backtracking regex such as ``.*a.*a.*a.*a.b`` (from ``*a*a*a*a?b``) takes exponential time on a string of
``a`` (while holding the GIL, freezing the whole server). The general matcher is the
classic greedy wildcard algorithm (the "two-pointer" matcher that backtracks only to
the last ``*`` seen), run segment by segment with ``str`` primitives:

    pattern = H * S1 * S2 * ... * Sk * T      (H, T possibly empty; no ``*`` inside)

``H`` must match at the start, ``T`` at the end (without overlapping ``H``), and each
``Si`` is placed at its leftmost position after the end of ``S(i-1)``. Leftmost placement
is always safe: if any placement of S1..Sk works, shifting each segment left to its
greedy position keeps the rest feasible, so a failure to place ``Si`` is final and no
earlier segment is ever revisited. The candidate start positions tried for successive
segments therefore lie in disjoint ranges of the text: at most ``len(text) + k``
placements are attempted in all, each checked with at most ``len(Si)`` character
comparisons — O(len(pattern) · len(text)) in the worst case, never exponential.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

Matcher = Callable[[str], bool]

WILDCARDS = ("*", "?")


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


def collapse_stars(pattern: str) -> str:
    """``pattern`` with every run of ``*`` reduced to one ``*`` (same language)."""
    if "**" not in pattern:
        return pattern
    parts = pattern.split("*")
    return "*".join([parts[0], *(p for p in parts[1:-1] if p), parts[-1]])


# ---------------------------------------------------------------------------- general matcher

# A star-free segment, compiled: (text, length, has_qmark, chunks, anchor, others), where
# chunks are the (offset, literal) maximal runs between `?` and anchor is the longest of
# them (the one searched for with str.find), others the rest (checked with startswith).
_Segment = tuple[str, int, bool, tuple[tuple[int, str], ...], "tuple[int, str] | None", tuple[tuple[int, str], ...]]


def _segment(text: str) -> _Segment:
    chunks = []
    start = 0
    for i, ch in enumerate(text + "?"):
        if ch == "?":
            if i > start:
                chunks.append((start, text[start:i]))
            start = i + 1
    anchor = max(chunks, key=lambda c: len(c[1])) if chunks else None
    others = tuple(c for c in chunks if c is not anchor)
    return (text, len(text), "?" in text, tuple(chunks), anchor, others)


def _segment_at(value: str, seg: _Segment, pos: int) -> bool:
    """Does the segment match ``value`` at ``pos``? (The caller ensures it fits.)"""
    if not seg[2]:
        return value.startswith(seg[0], pos)
    for off, lit in seg[3]:
        if not value.startswith(lit, pos + off):
            return False
    return True


def _segment_find(value: str, seg: _Segment, start: int, limit: int, steps: list[int] | None) -> int:
    """The leftmost position ``p >= start`` where the segment matches with ``p + len <= limit``,
    or -1. ``steps[0]`` (when given) counts the placements tried."""
    if steps is not None:
        steps[0] += 1
    text, length, has_qmark, _chunks, anchor, others = seg
    if not has_qmark:
        return value.find(text, start, limit)
    last = limit - length  # the last admissible start position
    if anchor is None:  # only `?`: any position fits
        return start if start <= last else -1
    aoff, alit = anchor
    aend = last + aoff + len(alit)  # the anchor must end by here
    pos = start
    while pos <= last:
        found = value.find(alit, pos + aoff, aend)
        if found < 0:
            return -1
        pos = found - aoff
        for off, lit in others:
            if not value.startswith(lit, pos + off):
                break
        else:
            return pos
        pos += 1
        if steps is not None:
            steps[0] += 1
    return -1


def _glob_parts(pattern: str) -> tuple[_Segment, tuple[_Segment, ...], _Segment | None, int]:
    """(head, middle segments, tail or None when there is no ``*``, minimum length) of a
    non-empty pattern whose ``*`` runs are already collapsed."""
    pieces = pattern.split("*")
    segments = [_segment(p) for p in pieces]
    minimum = sum(s[1] for s in segments)
    if len(segments) == 1:
        return segments[0], (), None, minimum
    return segments[0], tuple(segments[1:-1]), segments[-1], minimum


def _glob_match(
    parts: tuple[_Segment, tuple[_Segment, ...], _Segment | None, int], value: str, steps: list[int] | None = None
) -> bool:
    """Greedy wildcard match of ``value`` against compiled ``parts`` (see module doc).
    ``steps``, when given, is a one-element list incremented per segment placement tried."""
    head, middles, tail, minimum = parts
    n = len(value)
    if tail is None:  # no `*`: a fixed-length pattern with `?`
        return n == minimum and _segment_at(value, head, 0)
    if n < minimum or not _segment_at(value, head, 0):
        return False
    end = n - tail[1]  # where the tail starts; head and tail don't overlap (n >= minimum)
    if not _segment_at(value, tail, end):
        return False
    pos = head[1]
    for seg in middles:
        found = _segment_find(value, seg, pos, end, steps)
        if found < 0:
            return False
        pos = found + seg[1]
    return True


def glob_match(pattern: str, value: str) -> bool:
    """Case-sensitive match of ``value`` against ``pattern`` by the general matcher, uncached
    (``compile_pattern`` is the cached, fast-pathed entry point)."""
    if not pattern:
        return False
    return _glob_match(_glob_parts(collapse_stars(pattern)), value)


@lru_cache(maxsize=262_144)
def compile_pattern(pattern: str) -> Matcher:
    """A case-sensitive matcher for ``pattern`` (cached per distinct pattern)."""
    if not pattern:
        return _never
    pattern = collapse_stars(pattern)
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
        if stars == 2 and pattern[0] == "*" and pattern[-1] == "*":
            infix = pattern[1:-1]
            return lambda value: infix in value
    parts = _glob_parts(pattern)
    return lambda value: _glob_match(parts, value)


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

    Case-sensitive (used for resources). Before its first ``*`` the pattern reads the
    prefix deterministically (a literal must equal the character, ``?`` takes any);
    once a ``*`` is reached it can absorb the rest of the prefix, and whatever follows
    can always be completed (literals by themselves, ``?`` by any character, ``*`` by
    nothing). If the prefix is used up first, the rest of the pattern completes it too.
    Time O(min(len(pattern), len(prefix))).
    """
    if not pattern:
        return False
    n = len(pattern)
    for i, ch in enumerate(prefix):
        if i >= n:
            return False
        p = pattern[i]
        if p == "*":
            return True
        if p != "?" and p != ch:
            return False
    return True
