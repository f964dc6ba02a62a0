"""The safe regex subset: what SpaceONE users write passes, published catastrophic patterns and
polynomial ones are refused, and the accepted worst cases stay a few scans of the text."""

from __future__ import annotations

import re
import time

import pytest
from redos import REDOS_CORPUS

from policyhub.query import regex_safety
from policyhub.query.regex_safety import UnsafeRegex, check

ACCEPTED = [
    r"^prod-",
    r"web-\d+$",
    r"(?i)admin",
    r"(?i)^[a-z]+-\d+$",
    r"^(dev|prod)-.*",
    r"[a-z0-9]",
    r"\bprod\b",
    r"^https?://.*\.example\.com$",
    r"^ip-\d+-\d+-\d+-\d+$",
    r"colou?r",
    r"\.(jpg|png)$",
    r"^[^/]+/[^/]+$",
    r"^web(-\d+)?$",
    r"^(a+)?b",
    r"^x.{0,100}y",
    r"^a{2,5}$",
    r"^\s*x\s*$",
    r"(?s)a.*",
    r"^[\w.-]+@[\w-]+\.com$",
    r"(dev|prod)-\d+-x",
    r"prod.*",
    r"(?m)^prod$",
    r"",
    r"^.*x",
]


# Polynomial: several unbounded quantifiers that overlap, or a search that rescans a run from every start.
POLYNOMIAL = [
    r"^.*.*x",
    r"^a*a*a*a*b",
    r"^a*a*x",
    r"^.*a.*b",
    r"^.*prod.*$",
    r"\d+\.?\d+x",
    r"^a*b?a*c",
    r"\w+\s",
    r"[a-z]+\d",
    r"\d+-",
    r"a[a-z]+\d",
    r".+x",
    r"(?i).*admin.*$",
    r"a?a?a?a?a?aaaaa",
    r"(?:a|a)(?:a|a)(?:a|a)(?:a|a)(?:a|a)x",
]

OUTSIDE_RE2 = {
    r"(a)\1": "backreferences",
    r"(?=a)b": "lookahead",
    r"(?<=a)b": "lookahead",
    r"(?!a)b": "lookahead",
    r"(?>a)": "atomic",
    r"a*+": "possessive",
    r"(a)?(?(1)b|c)": "conditionals",
    r"\Z": "RE2 syntax",
    r"\u0041": "RE2 syntax",
    r"(?x)a": "RE2 syntax",
}


@pytest.mark.parametrize("pattern", ACCEPTED)
def test_what_users_write_is_accepted(pattern):
    check(pattern)


@pytest.mark.parametrize("pattern", REDOS_CORPUS)
def test_redos_corpus_is_refused(pattern):
    with pytest.raises(UnsafeRegex):
        check(pattern)


@pytest.mark.parametrize("pattern", POLYNOMIAL)
def test_polynomial_patterns_are_refused(pattern):
    with pytest.raises(UnsafeRegex):
        check(pattern)


@pytest.mark.parametrize("pattern, reason", OUTSIDE_RE2.items())
def test_syntax_outside_re2_is_refused_with_its_reason(pattern, reason):
    with pytest.raises(UnsafeRegex, match=reason):
        check(pattern)


@pytest.mark.parametrize(
    "pattern",
    [r"a{101}", r"a{0,101}", r"a{101,}", "x" * (regex_safety.MAX_PATTERN_LENGTH + 1), r"[", r"a)", r"(?P<n>a)(?P<n>b)"],
)
def test_bounds_and_malformed_patterns_are_refused(pattern):
    with pytest.raises(UnsafeRegex):
        check(pattern)


def test_nested_quantifier_reason_names_the_rule():
    with pytest.raises(UnsafeRegex, match="nest quantifiers"):
        check(r"^(a+)+$")
    with pytest.raises(UnsafeRegex, match="repeat an alternation"):
        check(r"(a|aa)*")


@pytest.mark.parametrize(
    "pattern, sent",
    [
        (r".*prod.*", r"prod.*"),
        (r"(?i).*admin.*", r"(?i)admin.*"),
        (r".*.*x", r"x"),
        (r".*?x", r"x"),
        (r".*", r""),
        (r"^.*x", r"^.*x"),
        (r"\.*x", None),
        (r"prod", r"prod"),
    ],
)
def test_a_leading_dot_star_is_dropped_since_search_tries_every_start(pattern, sent):
    if sent is None:
        with pytest.raises(UnsafeRegex):
            check(pattern)
        return
    assert check(pattern)[0] == sent
    for text in ("xprod", "prod", "a\nprod", "nothing", "", "admin", "ADMIN"):
        assert bool(re.search(pattern, text)) == bool(re.search(sent, text))


def test_cost_grows_with_the_pattern_and_its_choices():
    assert check("abc")[1] < check("abcdef")[1]
    assert check("^a?a?b")[1] > check("^aab")[1]


# Adversarial texts of the longest string a document may hold, for the worst accepted shapes.
N = regex_safety.MAX_SUBJECT_LENGTH
WORST_ACCEPTED = [
    (r"^.*x", "a" * N),
    (r"^\w+\s", "a" * N),
    (r"(?i).*admin.*", "admi" * (N // 4)),
    (r"prod.*", "pro" * (N // 3)),
    (r"web-\d+-\d+$", "web-1" * (N // 5)),
    (r"^[\w.-]+@[\w-]+\.com$", "a" * N),
    (r"^x.{0,100}y", "x" * N),
    (r"^a?a?a?a?aaaa$", "a" * N),
    (r"^(ab|a)c", "ab" * (N // 2)),
    (r"(dev|prod)-\d+-x", "prod-1" * (N // 6)),
]
REFUSED_SHAPES = [(r"\w+\s", "a" * N), (r"^a*a*a*x", "a" * 300)]


def _search_time(pattern: str, text: str) -> float:
    compiled = re.compile(pattern)
    started = time.perf_counter()
    compiled.search(text)
    return time.perf_counter() - started


def test_accepted_worst_cases_cost_a_few_scans_and_refused_ones_do_not():
    """Timed on Python's backtracking `re` (what a wire-protocol server may run), relative to
    one linear scan of the same length measured here, never against a fixed number."""
    scan = min(_search_time(r"[^a]", "a" * N) for _ in range(5))  # one pass over N characters
    for pattern, text in WORST_ACCEPTED:
        sent, _ = check(pattern)
        assert min(_search_time(sent, text) for _ in range(3)) < 200 * scan, pattern
    for pattern, text in REFUSED_SHAPES:
        assert _search_time(pattern, text) > 200 * scan, pattern  # the rule refuses something real
