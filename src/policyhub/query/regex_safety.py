"""Which user regular expressions may reach the database, and what each one costs.

Pure: no I/O. Patterns run on backtracking engines (MongoDB's PCRE; Python `re` in
servers that embed it), where a bad pattern takes exponential or high-polynomial time
per document and holds the engine while it runs. `check` accepts a pattern only when
its worst case on a string of `MAX_SUBJECT_LENGTH` characters stays within a small
multiple of a single scan, and returns that worst case as a cost estimate, so a query
can bound the total work of all its patterns.

Accepted: RE2 syntax that Python `re` parses too (so every engine reads it alike),
at most `MAX_PATTERN_LENGTH` characters, repetition counts up to `MAX_REPEAT_COUNT`,
and quantifiers whose backtracking cannot multiply:

- a repeated group (`+`, `*`, `{n,m}` with m > 1) holds no quantifier and no
  alternation: `(a+)+`, `(a|aa)*`, `(\\w+\\s?)+` are exponential;
- a quantifier is *ambiguous* when what it repeats can also start what follows it
  (`.*` before `x`), so every split point is a separate path. At most one *wide*
  (more than `MAX_NARROW_RANGE` choices, e.g. `*`, `+`) ambiguous quantifier is
  allowed, and after it no wide quantifier except one that ends the pattern (nothing,
  not even `$`, after it): `.*a.*b`, `a*a*x`, `.*x.*$` are cubic, and so would be
  anything after that one split scanning the rest of the string;
- the choices of narrow ambiguous quantifiers (`a?`) and of alternations whose
  branches can start alike multiply to at most `MAX_CHOICES`.

`^prod-`, `web-\\d+$`, `.*prod.*`, `(?i)^[a-z]+-\\d+$`, `^(dev|prod)-.*` pass.
"""

from __future__ import annotations

import re
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser  # type: ignore[attr-defined]
from typing import Any

import re2  # type: ignore[import-untyped]

MAX_PATTERN_LENGTH = 256
MAX_REPEAT_COUNT = 100
MAX_NARROW_RANGE = 10
MAX_CHOICES = 16
MAX_SUBJECT_LENGTH = 4096  # the longest string a stored document holds

_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT)
_CHAR_NODES = (sre.LITERAL, sre.NOT_LITERAL, sre.ANY, sre.IN)
_END_ANCHORS = (sre.AT_END, sre.AT_END_STRING)
_ZERO_WIDTH = (sre.AT_BOUNDARY, sre.AT_NON_BOUNDARY)
_FORBIDDEN = {
    sre.GROUPREF: "must not use backreferences",
    sre.GROUPREF_EXISTS: "must not use conditionals",
    sre.ASSERT: "must not use lookahead or lookbehind",
    sre.ASSERT_NOT: "must not use lookahead or lookbehind",
    sre.ATOMIC_GROUP: "must not use atomic groups",
    sre.POSSESSIVE_REPEAT: "must not use possessive quantifiers",
}
_ASCII_SPACE = " \t\n\r\f\v"

# Nodes of `re._parser`'s tree (untyped, private): (opcode, argument) pairs and lists of them.
Node = Any
Parsed = Any
# What can follow a position: a marker below, or the nodes that may come next.
Follow = Any

# What follows a position, as far as backtracking is concerned.
_END = "end"  # nothing: the match has succeeded
_END_ANCHOR = "anchor"  # only `$`: no character can follow
_UNKNOWN = "unknown"  # could be anything


_RE2_QUIET = re2.Options()
_RE2_QUIET.log_errors = False  # a refused pattern is the caller's error, not a log line


class UnsafeRegex(ValueError):
    """The reason a pattern is refused, phrased to follow the field's name."""


def subject_cost(text_length: int) -> int:
    """Cost of searching a literal text of that length (contain, keyword)."""
    return MAX_SUBJECT_LENGTH * max(1, text_length)


def check(pattern: str) -> tuple[str, int]:
    """Raises UnsafeRegex unless `pattern` is in the safe subset. Returns the pattern to
    search with (the same matches) and its cost estimate: steps to search a
    `MAX_SUBJECT_LENGTH`-character string."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise UnsafeRegex(f"must be at most {MAX_PATTERN_LENGTH} characters")
    parsed = _parse(pattern)
    _structure(parsed.data, in_repeat=False)
    try:
        re2.compile(pattern, _RE2_QUIET)
    except re2.error:
        raise UnsafeRegex("must use RE2 syntax (e.g. \\z, not \\Z; inline flags i, m, s only)") from None
    pattern, parsed = _without_leading_dot_star(pattern, parsed)
    return pattern, _Analysis(pattern, parsed).cost()


def _parse(pattern: str) -> Parsed:
    try:
        return _parser.parse(pattern)
    except (re.error, OverflowError, RecursionError):
        raise UnsafeRegex("is not a valid regular expression") from None


_LEADING_DOT_STAR = re.compile(r"((?:\(\?[a-zA-Z]+\))*)\.\*\??")


def _without_leading_dot_star(pattern: str, parsed: Parsed) -> tuple[str, Parsed]:
    """`.*prod.*` finds what `prod.*` finds: a search tries every start anyway. Without the
    `.*`, SpaceONE's habitual wildcard costs a scan instead of a scan per start."""
    while (
        parsed.data
        and parsed.data[0][0] in _REPEATS
        and parsed.data[0][1][:2] == (0, sre.MAXREPEAT)
        and list(parsed.data[0][1][2].data) == [(sre.ANY, None)]
    ):
        pattern = _LEADING_DOT_STAR.sub(r"\1", pattern, count=1)
        parsed = _parse(pattern)
    return pattern, parsed


def _structure(items: Parsed, in_repeat: bool) -> None:
    """Refuses constructs outside RE2, counts above the cap and nested repetition."""
    for op, av in items:
        if op in _FORBIDDEN:
            raise UnsafeRegex(_FORBIDDEN[op])
        if op in _REPEATS:
            low, high, body = av
            if low > MAX_REPEAT_COUNT or (high != sre.MAXREPEAT and high > MAX_REPEAT_COUNT):
                raise UnsafeRegex(f"must use repetition counts of at most {MAX_REPEAT_COUNT}")
            if in_repeat:
                raise UnsafeRegex("must not nest quantifiers (a repeated group such as (a+)+ backtracks exponentially)")
            _structure(body.data, in_repeat=high > 1)
        elif op is sre.BRANCH:
            if in_repeat:
                raise UnsafeRegex("must not repeat an alternation (a group such as (a|aa)+ backtracks exponentially)")
            for alternative in av[1]:
                _structure(alternative.data, in_repeat)
        elif op is sre.SUBPATTERN:
            _structure(av[3].data, in_repeat)


class _Analysis:
    """Walks the accepted tree once, recording each quantifier and alternation in pattern order."""

    def __init__(self, pattern: str, parsed: Parsed) -> None:
        self.pattern = pattern
        flags = parsed.state.flags
        # Inline flags may apply to part of the pattern only; assuming them everywhere
        # only ever finds more overlap, never less.
        self.ignorecase = bool(flags & re.I) or "i" in _inline_flags(pattern)
        self.dotall = bool(flags & re.S) or "s" in _inline_flags(pattern)
        multiline = bool(flags & re.M) or "m" in _inline_flags(pattern)
        first = parsed.data[0] if parsed.data else None
        self.anchored = first in ((sre.AT, sre.AT_BEGINNING_STRING),) or (
            first == (sre.AT, sre.AT_BEGINNING) and not multiline
        )
        # An unanchored search tries every start; it behaves like a leading `.*?` whose
        # ambiguity is with the pattern's first character.
        self.search_start = None if self.anchored else _first(list(parsed.data), _END)
        self.wide_seen = False  # an ambiguous wide quantifier came earlier
        self.choices = 1
        self._sequence(list(parsed.data), _END)

    def cost(self) -> int:
        return MAX_SUBJECT_LENGTH * max(1, len(self.pattern)) * self.choices

    def _sequence(self, items: Parsed, follow: Follow) -> None:
        for index, (op, av) in enumerate(items):
            after = _first(items[index + 1 :], follow)
            if op is sre.SUBPATTERN:
                self._sequence(list(av[3].data), after)
            elif op is sre.BRANCH:
                self._alternation(av[1], after)
            elif op in _REPEATS:
                low, high, body = av
                self._quantifier(low, high, body, after)

    def _alternation(self, alternatives: list[Parsed], after: Follow) -> None:
        starts = [_first(list(alternative.data), after) for alternative in alternatives]
        if not all(self._distinct(a, b) for i, a in enumerate(starts) for b in starts[i + 1 :]):
            self._choose(len(alternatives))
        for alternative in alternatives:
            self._sequence(list(alternative.data), after)

    def _quantifier(self, low: int, high: int, body: Parsed, after: Follow) -> None:
        choices = min(high, MAX_SUBJECT_LENGTH) - low + 1
        wide = high == sre.MAXREPEAT or choices - 1 > MAX_NARROW_RANGE
        ends_pattern = after == _END
        start = _first(list(body.data), _UNKNOWN)
        if wide and not ends_pattern and self.wide_seen:
            raise UnsafeRegex(
                "must not have an unbounded quantifier after one that overlaps what follows it "
                "(such as .*a.*b or a*a*x; searching is then cubic in the text length)"
            )
        # Not even a later character of what it repeats may start a match: (ab)+ rescans
        # the run `abab...` from every `b` that [^a](ab)+x starts at.
        if (
            wide
            and not ends_pattern
            and self.search_start is not None
            and not self._distinct(_char_nodes(body.data), self.search_start)
        ):
            raise UnsafeRegex(
                "must not repeat without bound what can also start a match, unless anchored with ^ "
                "(\\w+\\s searches in quadratic time; \\w\\s finds the same)"
            )
        ambiguous = choices > 1 and not self._distinct(start, after)
        if ambiguous and wide:
            self.wide_seen = True
        elif ambiguous:
            self._choose(choices)
        if high <= 1:  # an optional group may hold quantifiers and alternations of its own
            self._sequence(list(body.data), after)

    def _choose(self, choices: int) -> None:
        self.choices *= choices
        if self.choices > MAX_CHOICES:
            raise UnsafeRegex(
                f"must not combine optional parts that overlap into more than {MAX_CHOICES} ways to match the same text"
            )

    # ---- can two positions start with the same character?

    def _distinct(self, a: Follow, b: Follow) -> bool:
        """Whether no character can start both `a` and `b` (results of `_first`)."""
        if _END in (a, b) or _END_ANCHOR in (a, b):
            return True
        if _UNKNOWN in (a, b):
            return False
        return all(self._distinct_nodes(x, y) for x in a for y in b)

    def _distinct_nodes(self, a: Node, b: Node) -> bool:
        chars = self._chars(a)
        if chars is not None:
            return not any(self._may_match(b, char) for char in chars)
        chars = self._chars(b)
        return chars is not None and not any(self._may_match(a, char) for char in chars)

    def _chars(self, node: Node) -> set[str] | None:
        """The characters a node matches, when they are few and known exactly."""
        op, av = node
        if op is sre.LITERAL:
            codes = [av]
        elif op is sre.IN and all(item_op in (sre.LITERAL, sre.RANGE) for item_op, _ in av):
            codes = []
            for item_op, item in av:
                codes.extend([item] if item_op is sre.LITERAL else range(item[0], item[1] + 1))
                if len(codes) > 256:
                    return None
        else:
            return None
        chars = {chr(code) for code in codes}
        if self.ignorecase:
            if not all(char.isascii() for char in chars):
                return None  # non-ASCII case folding has exceptions (K and the Kelvin sign)
            chars |= {char.swapcase() for char in chars}
        return chars

    def _may_match(self, node: Node, char: str) -> bool:
        """Whether `node` can match `char` under any engine's reading (Unicode or ASCII classes)."""
        op, av = node
        candidates = {char, char.swapcase()} if self.ignorecase else {char}
        if op is sre.LITERAL:
            return any(ord(c) == av for c in candidates)
        if op is sre.NOT_LITERAL:
            return any(ord(c) != av for c in candidates)
        if op is sre.ANY:
            return self.dotall or char != "\n"
        negated = bool(av) and av[0][0] is sre.NEGATE
        items = av[1:] if negated else av
        if negated:
            return not any(_in_items(items, c, loose=False) for c in candidates)
        return any(_in_items(items, c, loose=True) for c in candidates)


def _in_items(items: Parsed, char: str, loose: bool) -> bool:
    """`char` in a character class: `loose` answers for the widest reading of its
    categories (Unicode \\d, ASCII \\D), strict for the narrowest."""
    code = ord(char)
    for op, av in items:
        if op is sre.LITERAL and code == av or op is sre.RANGE and av[0] <= code <= av[1]:
            return True
        if op is sre.CATEGORY and _in_category(av, char, loose):
            return True
    return False


def _in_category(category: Any, char: str, loose: bool) -> bool:
    ascii_digit = char in "0123456789"
    ascii_word = char.isascii() and (char.isalnum() or char == "_")
    unicode_word = char.isalnum() or char == "_"
    member = {
        sre.CATEGORY_DIGIT: char.isdecimal() if loose else ascii_digit,
        sre.CATEGORY_NOT_DIGIT: not ascii_digit if loose else not char.isdecimal(),
        sre.CATEGORY_SPACE: char.isspace() if loose else char in _ASCII_SPACE,
        sre.CATEGORY_NOT_SPACE: char not in _ASCII_SPACE if loose else not char.isspace(),
        sre.CATEGORY_WORD: unicode_word if loose else ascii_word,
        sre.CATEGORY_NOT_WORD: not ascii_word if loose else not unicode_word,
    }
    return member.get(category, True)


def _first(items: Parsed, follow: Follow) -> Follow:
    """What the rest of a sequence can start with: a tuple of character nodes, `_END_ANCHOR`,
    `_UNKNOWN`, or `follow` when the rest matches only the empty string."""
    for index, (op, av) in enumerate(items):
        rest = items[index + 1 :]
        if op in _CHAR_NODES:
            return ((op, av),)
        if op is sre.AT:
            if av in _ZERO_WIDTH:
                continue
            return _END_ANCHOR if av in _END_ANCHORS else _UNKNOWN
        if op is sre.SUBPATTERN:
            return _first(list(av[3].data) + rest, follow)
        if op is sre.BRANCH:
            return _union([_first(list(alternative.data) + rest, follow) for alternative in av[1]])
        if op in _REPEATS:
            body = _first(list(av[2].data) + rest, follow)
            return body if av[0] >= 1 else _union([body, _first(rest, follow)])
        return _UNKNOWN
    return follow


def _char_nodes(items: Parsed) -> tuple[Node, ...]:
    """Every character node inside `items`."""
    nodes = []
    for op, av in items:
        if op in _CHAR_NODES:
            nodes.append((op, av))
        elif op is sre.SUBPATTERN:
            nodes.extend(_char_nodes(av[3].data))
        elif op in _REPEATS:
            nodes.extend(_char_nodes(av[2].data))
        elif op is sre.BRANCH:
            nodes.extend(node for alternative in av[1] for node in _char_nodes(alternative.data))
    return tuple(nodes)


def _union(starts: list[Follow]) -> Follow:
    if _UNKNOWN in starts:
        return _UNKNOWN
    nodes = tuple(node for start in starts if isinstance(start, tuple) for node in start)
    if nodes:
        return nodes
    return _END if all(start == _END for start in starts) else _END_ANCHOR


def _inline_flags(pattern: str) -> str:
    """Letters of every inline flag group, `(?i)` or `(?i:...)`."""
    return "".join(re.findall(r"\(\?([a-zA-Z-]+)[:)]", pattern))
