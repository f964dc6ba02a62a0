"""Action and resource patterns: `*` any run (crossing `.`, `:` and `/`), `?` one character,
everything else literal; actions case-insensitive, resources case-sensitive."""
import re

import pytest

from policyhub.engine import patterns
from policyhub.engine.patterns import (
    action_bucket,
    action_segment,
    compile_pattern,
    literal_prefix,
    match_action,
    match_resource,
    may_match_with_prefix,
)


@pytest.mark.parametrize("pattern, value, expected", [
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
    ("aa*aa", "aaa", False),   # head and tail may not overlap
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
    # the empty pattern matches nothing
    ("", "", False),
    ("", "a", False),
])
def test_pattern_rules(pattern, value, expected):
    assert match_resource(pattern, value) is expected
    assert match_action(pattern, value) is expected   # these cases are case-neutral
    assert bool(compile_pattern(pattern)(value)) is expected


@pytest.mark.parametrize("pattern, action, expected", [
    ("inventory.Server.read", "INVENTORY.server.READ", True),
    ("INVENTORY.*", "inventory.server.read", True),
    ("inventory.*", "Inventory.Server", True),
    ("*.READ", "a.read", True),
    ("*.read", "a.READ", True),
    ("In*Ry.?", "inventory.X", True),
    ("a?c", "ABC", True),
    ("Identity.*", "inventory.x", False),
])
def test_actions_are_case_insensitive(pattern, action, expected):
    assert match_action(pattern, action) is expected


@pytest.mark.parametrize("pattern, resource, expected", [
    ("Server/1", "Server/1", True),
    ("Server/1", "server/1", False),
    ("server/*", "Server/1", False),
    ("*/ID", "x/id", False),
    ("*/ID", "x/ID", True),
    ("S?rver", "SErver", True),
    ("S?rver", "sErver", False),
    ("a*b*C", "a.b.c", False),
])
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


@pytest.mark.parametrize("pattern, bucket", [
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
])
def test_action_bucket(pattern, bucket):
    assert action_bucket(pattern) == bucket


def test_action_segment():
    assert action_segment("inventory.server.read") == "inventory"
    assert action_segment("inventory") == "inventory"
    assert action_segment(".x") == ""


@pytest.mark.parametrize("pattern, prefix, expected", [
    ("anything", "", True),
    ("*", "a/b", True),
    ("a/*", "a/", True),
    ("a/*", "a/b/c", True),
    ("a/*", "a", True),          # a/... starts with a
    ("a/*", "b/", False),
    ("a/x", "a/x/y", False),     # the pattern is shorter than the prefix and has no wildcard
    ("a/x", "a/", True),
    ("*/x", "zzz", True),
    ("?/x", "a/", True),
    ("?/x", "ab", False),
    ("a?c*", "abc/", True),
    ("a?c*", "abd", False),
    ("A/*", "a/", False),        # resources are case-sensitive
    ("", "", False),
    ("", "a", False),
])
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
