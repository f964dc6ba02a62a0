"""Action and resource patterns: `*` any run (crossing `.`, `:` and `/`), `?` one character,
everything else literal; actions case-insensitive, resources case-sensitive."""

import re
from functools import lru_cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policyhub.engine import patterns
from policyhub.engine.patterns import (
    action_bucket,
    action_segment,
    compile_pattern,
    glob_match,
    literal_prefix,
    match_action,
    match_resource,
    may_match_with_prefix,
)


@pytest.mark.parametrize(
    "pattern, value, expected",
    [
        # `*` alone
        ("*", "", True),
        ("*", "anything", True),
        ("*", "a.b:c/d", True),
        ("**", "x", True),
        ("***", "", True),
        # exact
        ("abc", "abc", True),
        ("abc", "abcd", False),
        ("abc", "ab", False),
        ("abc", "", False),
        # prefix*
        ("inventory.*", "inventory.Server.read", True),
        ("inventory.*", "inventory.", True),
        ("inventory.*", "inventory", False),
        ("inventory*", "inventory", True),
        ("inventory*", "inventoryX", True),
        # `*` crosses `.`, `:` and `/`
        ("a*", "a.b.c", True),
        ("a*", "a:b:c", True),
        ("a*", "a/b/c", True),
        ("srn:*:server/*", "srn:aws:ec2:server/i-1/disk", True),
        ("srn:*:server/*", "srn::server/", True),
        ("srn:*:server/*", "srn:aws:ec2:volume/v-1", False),
        # *suffix
        ("*.read", "inventory.Server.read", True),
        ("*.read", ".read", True),
        ("*.read", "read", False),
        ("*/x", "a/b/x", True),
        # prefix*suffix
        ("a*z", "az", True),
        ("a*z", "a/b.c:z", True),
        ("a*z", "a", False),
        ("a*z", "z", False),
        ("aa*aa", "aaa", False),  # head and tail may not overlap
        ("aa*aa", "aaaa", True),
        ("aa*aa", "aaXaa", True),
        # several stars
        ("a*b*c", "abc", True),
        ("a*b*c", "a.x.b.y.c", True),
        ("a*b*c", "acb", False),
        ("*a*", "bab", True),
        ("*a*", "bbb", False),
        ("a**b", "a/b", True),
        # `?` is exactly one character, and also crosses separators
        ("?", "a", True),
        ("?", "", False),
        ("?", "ab", False),
        ("a?c", "abc", True),
        ("a?c", "a.c", True),
        ("a?c", "a/c", True),
        ("a?c", "a:c", True),
        ("a?c", "ac", False),
        ("a?c", "abbc", False),
        ("??", "ab", True),
        ("??", "a", False),
        ("a?*", "a", False),
        ("a?*", "ab", True),
        ("a*?", "abc", True),
        ("*?", "", False),
        # newlines are ordinary characters for `*` and `?`
        ("a*b", "a\nb", True),
        ("a?b", "a\nb", True),
        # regex metacharacters are literal
        ("a.b", "a.b", True),
        ("a.b", "axb", False),
        ("a.*", "axyz", False),
        ("a+b", "a+b", True),
        ("a+b", "aab", False),
        ("[ab]", "[ab]", True),
        ("[ab]", "a", False),
        ("(x|y)", "(x|y)", True),
        ("(x|y)", "x", False),
        ("^a$", "^a$", True),
        ("^a$", "a", False),
        ("a\\d", "a\\d", True),
        ("a\\d", "a1", False),
        ("a{2}", "a{2}", True),
        ("a{2}", "aa", False),
        ("a.?", "a.b", True),
        ("a.?", "axb", False),
        ("[*]", "[xyz]", True),
        ("[*]", "x", False),
        ("$*", "$x", True),
        ("*|*", "a|b", True),
        ("*|*", "ab", False),
        # wildcards in the value are ordinary characters of the value
        ("a*", "a*", True),
        ("a?", "a?", True),
        ("a?", "a*", True),
        ("ab", "a*", False),
        # general matcher: segments between stars are placed left to right without overlapping,
        # each within the room left before the tail
        ("a*a", "a", False),
        ("*ab*b*", "ab", False),
        ("*ab*ba*", "aba", False),
        ("*ab*ba*", "abba", True),
        ("*a*?*", "ba", False),
        ("*a*?*", "bab", True),
        ("*a?*", "ba", False),
        ("*a?*", "bab", True),
        ("*?a*b", "ab", False),
        ("*?a*b", "xab", True),
        ("a?*?b", "axb", False),
        ("a?*?b", "axyb", True),
        ("*a?c*a?c*", "abcabc", True),
        ("*a?c*a?c*", "abcbc", False),
        ("*a?c*a?c*", "abac", False),
        # the empty pattern matches nothing
        ("", "", False),
        ("", "a", False),
    ],
)
def test_pattern_rules(pattern, value, expected):
    assert match_resource(pattern, value) is expected
    assert match_action(pattern, value) is expected  # these cases are case-neutral
    assert bool(compile_pattern(pattern)(value)) is expected


@pytest.mark.parametrize(
    "pattern, action, expected",
    [
        ("inventory.Server.read", "INVENTORY.server.READ", True),
        ("INVENTORY.*", "inventory.server.read", True),
        ("inventory.*", "Inventory.Server", True),
        ("*.READ", "a.read", True),
        ("*.read", "a.READ", True),
        ("In*Ry.?", "inventory.X", True),
        ("a?c", "ABC", True),
        ("Identity.*", "inventory.x", False),
    ],
)
def test_actions_are_case_insensitive(pattern, action, expected):
    assert match_action(pattern, action) is expected


@pytest.mark.parametrize(
    "pattern, resource, expected",
    [
        ("Server/1", "Server/1", True),
        ("Server/1", "server/1", False),
        ("server/*", "Server/1", False),
        ("*/ID", "x/id", False),
        ("*/ID", "x/ID", True),
        ("S?rver", "SErver", True),
        ("S?rver", "sErver", False),
        ("a*b*C", "a.b.c", False),
    ],
)
def test_resources_are_case_sensitive(pattern, resource, expected):
    assert match_resource(pattern, resource) is expected


def test_compile_is_cached_per_pattern():
    assert compile_pattern("inventory.*") is compile_pattern("inventory.*")
    assert compile_pattern("a*b?c") is compile_pattern("a*b?c")


@pytest.mark.parametrize("pattern", ["abc", "a*", "*a", "a*b", "*", "a?c", "a*b*c", "[*]", "a.b"])
def test_matcher_agrees_with_an_independent_regex(pattern):
    regex = re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), re.DOTALL)
    for value in ["", "a", "b", "c", "ab", "abc", "a.b", "abbc", "axbyc", "[x]", "cba", "a*", "aXc", "a.c", "ba"]:
        assert bool(compile_pattern(pattern)(value)) is (regex.fullmatch(value) is not None), (pattern, value)


def test_literal_prefix():
    assert literal_prefix("inventory.server.*") == "inventory.server."
    assert literal_prefix("a?b*") == "a"
    assert literal_prefix("*x") == ""
    assert literal_prefix("plain") == "plain"


@pytest.mark.parametrize(
    "pattern, bucket",
    [
        ("inventory.server.read", ("exact", "inventory.server.read")),
        ("inventory", ("exact", "inventory")),
        ("inventory.*", ("segment", "inventory")),
        ("inventory.server.*", ("segment", "inventory")),
        ("inventory.?", ("segment", "inventory")),
        ("inventory*", None),
        ("inv?ntory.read", None),
        ("*", None),
        ("*.read", None),
        ("?", None),
    ],
)
def test_action_bucket(pattern, bucket):
    assert action_bucket(pattern) == bucket


def test_action_segment():
    assert action_segment("inventory.server.read") == "inventory"
    assert action_segment("inventory") == "inventory"
    assert action_segment(".x") == ""


@pytest.mark.parametrize(
    "pattern, prefix, expected",
    [
        ("anything", "", True),
        ("*", "a/b", True),
        ("a/*", "a/", True),
        ("a/*", "a/b/c", True),
        ("a/*", "a", True),  # a/... starts with a
        ("a/*", "b/", False),
        ("a/x", "a/x/y", False),  # the pattern is shorter than the prefix and has no wildcard
        ("a/x", "a/", True),
        ("*/x", "zzz", True),
        ("?/x", "a/", True),
        ("?/x", "ab", False),
        ("a?c*", "abc/", True),
        ("a?c*", "abd", False),
        ("A/*", "a/", False),  # resources are case-sensitive
        ("", "", False),
        ("", "a", False),
    ],
)
def test_may_match_with_prefix(pattern, prefix, expected):
    assert may_match_with_prefix(pattern, prefix) is expected


def test_may_match_with_prefix_agrees_with_brute_force():
    alphabet = "ab/"
    values = [""]
    for _ in range(4):
        values = values + [v + c for v in values for c in alphabet if len(v) < 4]
    values = sorted(set(values))
    for pattern in ["a*", "*b", "a?b", "?/*", "a/b", "*a*b", "b?", "*"]:
        for prefix in ["", "a", "b", "a/", "ab", "ba/", "/b"]:
            brute = any(v.startswith(prefix) and match_resource(pattern, v) for v in values)
            # brute force explores short strings only, enough for these patterns and prefixes
            assert may_match_with_prefix(pattern, prefix) is brute, (pattern, prefix)


def test_module_has_no_io_dependencies():
    source = open(patterns.__file__).read()
    assert "grpc" not in source and "mongo" not in source


def test_module_builds_no_regex():
    """Patterns are user input: no regex engine may be fed with them (ReDoS)."""
    source = open(patterns.__file__).read()
    assert "import re" not in source and "re.compile" not in source and not hasattr(patterns, "re")


# ---------------------------------------------------------------------------- agreement with a reference


def dp_match(pattern: str, value: str) -> bool:
    """Reference matcher, independent of the module: the textbook dynamic programme over
    (pattern position, value position). ``*`` any run, ``?`` one character, rest literal;
    the empty pattern matches nothing."""
    if not pattern:
        return False
    n = len(value)
    row = [True] + [False] * n  # row[j]: pattern[:i] matches value[:j]
    for p in pattern:
        nxt = [False] * (n + 1)
        if p == "*":
            nxt[0] = row[0]
            for j in range(1, n + 1):
                nxt[j] = row[j] or nxt[j - 1]
        else:
            for j in range(1, n + 1):
                nxt[j] = row[j - 1] and (p == "?" or p == value[j - 1])
        row = nxt
    return row[n]


@lru_cache(maxsize=None)
def _fnmatch_regex(pattern: str) -> re.Pattern:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), re.DOTALL)


# Separators, wildcards (which are ordinary characters of a value), regex metacharacters
# and a case pair, over a small alphabet so that matches are frequent.
PATTERN_ALPHABET = "aaabbA**?./:[]()+\\$^|{}"
VALUE_ALPHABET = "aaabbA*?./:[]+\\$\n"
SETTINGS = settings(max_examples=3000, deadline=None)


@SETTINGS
@given(pattern=st.text(PATTERN_ALPHABET, max_size=10), value=st.text(VALUE_ALPHABET, max_size=12))
def test_matchers_agree_with_reference(pattern, value):
    expected = dp_match(pattern, value)
    if pattern:  # the short inputs keep the regex cross-check of the reference cheap
        assert (_fnmatch_regex(pattern).fullmatch(value) is not None) is expected
    assert bool(compile_pattern(pattern)(value)) is expected, (pattern, value)  # with the fast paths
    assert glob_match(pattern, value) is expected, (pattern, value)  # the general matcher alone
    assert match_resource(pattern, value) is expected
    assert match_action(pattern, value) is dp_match(pattern.lower(), value.lower())
    assert match_action(pattern.upper(), value) is dp_match(pattern.lower(), value.lower())


@SETTINGS
@given(pattern=st.text("ab*?", max_size=8), value=st.text("ab", max_size=10))
def test_general_matcher_agrees_with_reference_on_a_dense_alphabet(pattern, value):
    # Two letters make matches, overlaps and near-misses frequent.
    expected = dp_match(pattern, value)
    assert glob_match(pattern, value) is expected, (pattern, value)
    assert bool(compile_pattern(pattern)(value)) is expected, (pattern, value)


@SETTINGS
@given(pattern=st.text("ab*?/", max_size=8), prefix=st.text("ab/", max_size=6))
def test_may_match_with_prefix_agrees_with_reference(pattern, prefix):
    # If some string prefix+t matches, the prefix is consumed up to a pattern position i and
    # pattern[i:] with `*` empty and `?` as one character is such a t: trying every i decides it.
    completions = {pattern[i:].replace("*", "").replace("?", "a") for i in range(len(pattern) + 1)}
    expected = any(dp_match(pattern, prefix + t) for t in completions)
    assert may_match_with_prefix(pattern, prefix) is expected, (pattern, prefix)


# ---------------------------------------------------------------------------- pathological patterns (ReDoS)


def _general(pattern: str, value: str) -> tuple[bool, int]:
    """(result, segment placements tried) of the general matcher."""
    steps = [0]
    result = patterns._glob_match(patterns._glob_parts(patterns.collapse_stars(pattern)), value, steps)
    return result, steps[0]


@pytest.mark.parametrize(
    "pattern, value, expected",
    [
        ("*a*a*a*a*a*a*a*a?b", "a" * 2000, False),  # exponential for a backtracking regex
        ("*a*a*a*a*a*a*a*a?b", "a" * 2000 + "xb", True),
        ("*a*a*a*a*a*a*a*a?b*", "a" * 2000, False),  # the `?` segment is searched for across the text
        ("*a*a*a*a*a*a*a*a?b*", "a" * 2000 + "b", True),
        ("*a" * 200 + "?b", "a" * 2000, False),
        ("*a" * 200 + "?b", "a" * 2000 + "ab", True),
        ("*a?a*a?a*a?a*a?c*", "a" * 2000, False),
        ("*a?a*a?a*a?a*a?c*", "a" * 2000 + "abc", True),
        ("*?*?*?*?*?*?*?*?*x", "?" * 2000, False),
        ("*ab*ab*ab*ab*ab*abc", "ab" * 1000 + "c", True),
        ("*ab*ab*ab*ab*ab*abc*", "ab" * 1000, False),
    ],
)
def test_pathological_patterns_take_linear_work(pattern, value, expected):
    result, steps = _general(pattern, value)
    assert result is expected
    # No segment is ever retried after a later one was placed: the placements tried
    # for successive segments cover disjoint ranges of the value.
    assert steps <= len(value) + pattern.count("*") + 1, steps
    assert bool(compile_pattern(pattern)(value)) is expected
    assert match_resource(pattern, value) is expected
    assert match_action(pattern.upper(), value) is expected


def test_step_counter_counts_placements():
    # "a?b" is tried at every position of the value before the search gives up.
    assert _general("*a?b*", "a" * 100) == (False, 99)
    assert _general("*a?b*", "aaaxb") == (True, 3)
