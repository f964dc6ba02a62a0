"""The evaluation engine with conditional statements: a table of decisions (definite and
undecided DENYs and ALLOWs, the deciding chain, the keys a CONDITIONAL answer names), the
other questions that see conditions (batch_check, effective/held statements,
grants_explicitly, list_authorized_resources), and hypothesis properties: check agrees with
a reference evaluator written here, and list_authorized_resources is exact with respect to
check under the same context."""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

import pytest
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st

from policyhub.engine import (
    AuthorizedException,
    AuthorizedResource,
    Decision,
    DomainIndex,
    Edge,
    EffectiveStatement,
    PolicyRules,
    Statement,
    Subject,
    SubjectDecision,
)
from policyhub.engine.conditions import UNREADABLE, parse_conditions
from policyhub.engine.model import MISSING_CONTEXT

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
TYPES = {"U": "USER", "G": "GROUP", "R": "ROLE", "SA": "SERVICE_ACCOUNT"}


def S(text: str) -> Subject:
    kind, _, ident = text.partition(":")
    return Subject(TYPES[kind], ident)


def path(text: str) -> tuple[Subject, ...]:
    return tuple(S(part) for part in text.split(">")) if text else ()


def when(*keys: str, mode: str = "all") -> dict[str, Any]:
    """Conditions on boolean context keys: each true, false or missing (unknown)."""
    return {mode: [{"key": key, "operator": "bool", "value": True} for key in keys]}


def statement(effect: str, actions, resources, conditions: dict | None) -> dict[str, Any]:
    return {
        "effect": effect,
        "actions": [actions] if isinstance(actions, str) else list(actions),
        "resources": [resources] if isinstance(resources, str) else list(resources),
        **({"conditions": conditions} if conditions is not None else {}),
    }


def A(actions="a.b", resources="r", conditions: dict | None = None) -> dict[str, Any]:
    return statement("ALLOW", actions, resources, conditions)


def D(actions="a.b", resources="r", conditions: dict | None = None) -> dict[str, Any]:
    return statement("DENY", actions, resources, conditions)


@dataclass
class Pol:
    statements: list = field(default_factory=list)
    permissions: list = field(default_factory=list)
    enabled: bool = True


def P(*statements, perms=(), enabled=True) -> Pol:
    return Pol(list(statements), list(perms), enabled)


def build(policies: dict[str, Pol], edges: list[tuple]) -> DomainIndex:
    rules = [PolicyRules.from_policy(pid, p.statements, p.permissions, p.enabled) for pid, p in policies.items()]
    built = []
    for subject, grant_type, grant_id, *rest in edges:
        expires = NOW - timedelta(days=1) if rest and rest[0] == "past" else None
        built.append(Edge(S(subject), grant_type, grant_id, expires))
    return DomainIndex(rules, built, NOW)


def held_by_alice(*policy_ids: str) -> list[tuple]:
    return [("U:alice", "POLICY", pid) for pid in policy_ids]


def ALLOW(pid: str, index: int, via: str = "U:alice") -> Decision:
    return Decision(True, "ALLOWED", pid, index, path(via))


def DENY(pid: str, index: int, via: str = "U:alice") -> Decision:
    return Decision(False, "EXPLICIT_DENY", pid, index, path(via))


def COND(pid: str, index: int, missing: tuple[str, ...], via: str = "U:alice") -> Decision:
    return Decision(False, MISSING_CONTEXT, pid, index, path(via), missing)


NONE = Decision(False, "NO_MATCHING_ALLOW")

# (id, policies, edges, context, expected) for U:alice asking ("a.b", "r")
TABLE: list[tuple[str, dict[str, Pol], list[tuple], dict[str, Any], Decision]] = [
    # ---- a definite DENY wins over everything
    (
        "true deny beats an unconditional allow",
        {"p1": P(D(conditions=when("d"))), "p2": P(A())},
        held_by_alice("p1", "p2"),
        {"d": True},
        DENY("p1", 0),
    ),
    (
        "unconditional deny beats an earlier undecided deny and undecided allows",
        {"p1": P(D(conditions=when("d"))), "p2": P(D()), "p0": P(A(conditions=when("x")))},
        held_by_alice("p0", "p1", "p2"),
        {},
        DENY("p2", 0),
    ),
    (
        "a deeper true deny beats a shallower undecided deny",
        {"p1": P(D(conditions=when("d1"))), "p2": P(D(conditions=when("d2"))), "p3": P(A())},
        [*held_by_alice("p1", "p3"), ("U:alice", "GROUP", "g"), ("G:g", "POLICY", "p2")],
        {"d2": True},
        DENY("p2", 0, "U:alice>G:g"),
    ),
    (
        "a true deny beats a true allow",
        {"p1": P(A(conditions=when("x")), D(conditions=when("d")))},
        held_by_alice("p1"),
        {"x": True, "d": True},
        DENY("p1", 1),
    ),
    # ---- an undecided DENY with an allow: CONDITIONAL
    (
        "undecided deny with a definite allow names only the deny's keys",
        {"p1": P(A(conditions=when("x"))), "p2": P(D(conditions=when("d1", "d2"))), "p3": P(A())},
        held_by_alice("p1", "p2", "p3"),
        {},
        COND("p2", 0, ("d1", "d2")),
    ),
    (
        "undecided deny with a true allow names only the deny's keys",
        {"p1": P(A(conditions=when("x"))), "p2": P(D(conditions=when("d")))},
        held_by_alice("p1", "p2"),
        {"x": True},
        COND("p2", 0, ("d",)),
    ),
    (
        "undecided deny with undecided allows names them all",
        {"p1": P(A(conditions=when("x"))), "p2": P(D(conditions=when("d"))), "p3": P(A(conditions=when("y")))},
        held_by_alice("p1", "p2", "p3"),
        {},
        COND("p2", 0, ("d", "x", "y")),
    ),
    (
        "undecided deny, an undecided and a false allow: the false one is not named",
        {"p1": P(A(conditions=when("x"))), "p2": P(D(conditions=when("d"))), "p3": P(A(conditions=when("y")))},
        held_by_alice("p1", "p2", "p3"),
        {"y": False},
        COND("p2", 0, ("d", "x")),
    ),
    (
        "two undecided denies: the first decides, both are named",
        {"p1": P(D(conditions=when("d1"))), "p2": P(D(conditions=when("d2"))), "p3": P(A())},
        held_by_alice("p1", "p2", "p3"),
        {},
        COND("p1", 0, ("d1", "d2")),
    ),
    (
        "undecided denies at two depths: the shallower decides",
        {"z-near": P(D(conditions=when("d1"))), "a-far": P(D(conditions=when("d2"))), "p": P(A())},
        [*held_by_alice("z-near", "p"), ("U:alice", "GROUP", "g"), ("G:g", "POLICY", "a-far")],
        {},
        COND("z-near", 0, ("d1", "d2")),
    ),
    (
        "undecided deny with a deeper allow",
        {"p1": P(D(conditions=when("d"))), "p2": P(A())},
        [*held_by_alice("p1"), ("U:alice", "ROLE", "r"), ("R:r", "POLICY", "p2")],
        {},
        COND("p1", 0, ("d",)),
    ),
    (
        "a partly known deny names only what is missing",
        {"p1": P(D(conditions=when("d1", "d2"))), "p2": P(A())},
        held_by_alice("p1", "p2"),
        {"d1": True},
        COND("p1", 0, ("d2",)),
    ),
    # ---- an undecided DENY without any allow: DENY (no matching allow)
    ("undecided deny alone", {"p1": P(D(conditions=when("d")))}, held_by_alice("p1"), {}, NONE),
    (
        "undecided deny and a false allow",
        {"p1": P(D(conditions=when("d"))), "p2": P(A(conditions=when("x")))},
        held_by_alice("p1", "p2"),
        {"x": False},
        NONE,
    ),
    (
        "undecided deny and allows on other actions or resources",
        {"p1": P(D(conditions=when("d")), A("a.c", "r"), A("a.b", "s"))},
        held_by_alice("p1"),
        {},
        NONE,
    ),
    # ---- only undecided ALLOWs: CONDITIONAL
    ("one undecided allow", {"p1": P(A(conditions=when("x")))}, held_by_alice("p1"), {}, COND("p1", 0, ("x",))),
    (
        "undecided allows: the first decides, all are named",
        {"p2": P(A(conditions=when("y"))), "p1": P(A(conditions=when("x", "z")))},
        held_by_alice("p1", "p2"),
        {"z": True},
        COND("p1", 0, ("x", "y")),
    ),
    (
        "undecided allows at two depths: the shallower decides",
        {"p9": P(A(conditions=when("x"))), "p0": P(A(conditions=when("z")))},
        [*held_by_alice("p9"), ("U:alice", "GROUP", "g"), ("G:g", "POLICY", "p0")],
        {},
        COND("p9", 0, ("x", "z")),
    ),
    (
        "an any-group with a false item names the missing one",
        {"p1": P(A(conditions=when("x", "y", mode="any")))},
        held_by_alice("p1"),
        {"y": False},
        COND("p1", 0, ("x",)),
    ),
    (
        "undecided allow through two groups: the smallest path",
        {"p1": P(A(conditions=when("x")))},
        [("U:alice", "GROUP", "g2"), ("U:alice", "GROUP", "g1"), ("G:g2", "POLICY", "p1"), ("G:g1", "POLICY", "p1")],
        {},
        COND("p1", 0, ("x",), "U:alice>G:g1"),
    ),
    (
        "an undecided allow and a false deny",
        {"p1": P(D(conditions=when("d"))), "p2": P(A(conditions=when("x")))},
        held_by_alice("p1", "p2"),
        {"d": False},
        COND("p2", 0, ("x",)),
    ),
    # ---- an undecided ALLOW never changes an ALLOW
    (
        "an earlier undecided allow and a definite allow",
        {"p1": P(A(conditions=when("x"))), "p2": P(A())},
        held_by_alice("p1", "p2"),
        {},
        ALLOW("p2", 0),
    ),
    (
        "a shallower undecided allow and a deeper definite allow",
        {"p1": P(A(conditions=when("x"))), "p0": P(A())},
        [*held_by_alice("p1"), ("U:alice", "GROUP", "g"), ("G:g", "POLICY", "p0")],
        {},
        ALLOW("p0", 0, "U:alice>G:g"),
    ),
    # ---- a false condition drops its statement
    ("false allow", {"p1": P(A(conditions=when("x")))}, held_by_alice("p1"), {"x": False}, NONE),
    (
        "false deny, unconditional allow",
        {"p1": P(D(conditions=when("d"))), "p2": P(A())},
        held_by_alice("p1", "p2"),
        {"d": False},
        ALLOW("p2", 0),
    ),
    (
        "false allow, then a later allow",
        {"p1": P(A(conditions=when("x")), A(conditions=when("y")))},
        held_by_alice("p1"),
        {"x": False, "y": True},
        ALLOW("p1", 1),
    ),
    (
        "a value of the wrong type is false, not missing",
        {"p1": P(A(conditions=when("x")))},
        held_by_alice("p1"),
        {"x": "maybe"},
        NONE,
    ),
    (
        "a wrong-typed negation is false: the deny is dropped",
        {"p1": P(D(conditions={"all": [{"key": "ip", "operator": "not_ip_address", "value": "10.0.0.0/8"}]}), A())},
        held_by_alice("p1"),
        {"ip": "10.0.0.x"},
        ALLOW("p1", 1),
    ),
    # ---- the deciding chain: shallowest, then smallest (policy id, index), conditional or not
    (
        "true allow shallow beats unconditional allow deeper",
        {"p9": P(A(conditions=when("x"))), "p1": P(A())},
        [*held_by_alice("p9"), ("U:alice", "GROUP", "g"), ("G:g", "POLICY", "p1")],
        {"x": True},
        ALLOW("p9", 0),
    ),
    (
        "unconditional allow shallow beats true allow deeper",
        {"p9": P(A()), "p1": P(A(conditions=when("x")))},
        [*held_by_alice("p9"), ("U:alice", "GROUP", "g"), ("G:g", "POLICY", "p1")],
        {"x": True},
        ALLOW("p9", 0),
    ),
    (
        "same depth: a true allow with the smaller policy id",
        {"p1": P(A(conditions=when("x"))), "p2": P(A())},
        held_by_alice("p1", "p2"),
        {"x": True},
        ALLOW("p1", 0),
    ),
    (
        "same depth: an unconditional allow with the smaller policy id",
        {"p1": P(A()), "p2": P(A(conditions=when("x")))},
        held_by_alice("p1", "p2"),
        {"x": True},
        ALLOW("p1", 0),
    ),
    (
        "same policy: a true allow first",
        {"p1": P(A(conditions=when("x")), A())},
        held_by_alice("p1"),
        {"x": True},
        ALLOW("p1", 0),
    ),
    (
        "same policy: an unconditional allow first",
        {"p1": P(A(), A(conditions=when("x")))},
        held_by_alice("p1"),
        {"x": True},
        ALLOW("p1", 0),
    ),
    (
        "same policy: an undecided allow, then an unconditional one",
        {"p1": P(A(conditions=when("x")), A())},
        held_by_alice("p1"),
        {},
        ALLOW("p1", 1),
    ),
    (
        "same policy: a true allow after a false one",
        {"p1": P(A(conditions=when("y")), A("*", "*", when("x")), A())},
        held_by_alice("p1"),
        {"x": True, "y": False},
        ALLOW("p1", 1),
    ),
    (
        "deny chain: a true deny shallow beats an unconditional deny deeper",
        {"p9": P(D(conditions=when("d"))), "p1": P(D()), "p5": P(A())},
        [*held_by_alice("p9", "p5"), ("U:alice", "GROUP", "g"), ("G:g", "POLICY", "p1")],
        {"d": True},
        DENY("p9", 0),
    ),
    (
        "deny chain: an unconditional deny with a smaller id beats a true deny",
        {"p2": P(D(conditions=when("d"))), "p1": P(D())},
        held_by_alice("p1", "p2"),
        {"d": True},
        DENY("p1", 0),
    ),
    (
        "deny chain: a true deny at a smaller index",
        {"p1": P(A(), D(conditions=when("d")), D())},
        held_by_alice("p1"),
        {"d": True},
        DENY("p1", 1),
    ),
    (
        "deny chain: an undecided deny before a definite one does not decide",
        {"p1": P(D(conditions=when("d1"))), "p2": P(D(conditions=when("d2")))},
        held_by_alice("p1", "p2"),
        {"d2": True},
        DENY("p2", 0),
    ),
    (
        "the index counts the permissions after the statements",
        {"p1": P(A(conditions=when("x")), perms=["a.*"])},
        held_by_alice("p1"),
        {},
        ALLOW("p1", 1),
    ),
    (
        "permissions are unconditional allows an undecided deny makes conditional",
        {"p1": P(D(conditions=when("d")), perms=["a.b"])},
        held_by_alice("p1"),
        {},
        COND("p1", 0, ("d",)),
    ),
    # ---- statements that do not apply, whatever their conditions
    (
        "an undecided deny on another resource",
        {"p1": P(D("a.b", "other", when("d")), A())},
        held_by_alice("p1"),
        {},
        ALLOW("p1", 1),
    ),
    (
        "an undecided deny on another action",
        {"p1": P(D("a.c", "r", when("d")), A())},
        held_by_alice("p1"),
        {},
        ALLOW("p1", 1),
    ),
    (
        "actions stay case-insensitive, resources case-sensitive",
        {"p1": P(A("A.B", "r", when("x")), D("a.b", "R", when("d")))},
        held_by_alice("p1"),
        {"x": True},
        ALLOW("p1", 0),
    ),
    (
        "conditional statements of a disabled policy are ignored (deny)",
        {"p1": P(D(conditions=when("d")), enabled=False), "p2": P(A())},
        held_by_alice("p1", "p2"),
        {},
        ALLOW("p2", 0),
    ),
    (
        "conditional statements of a disabled policy are ignored (allow)",
        {"p1": P(A(conditions=when("x")), enabled=False)},
        held_by_alice("p1"),
        {"x": True},
        NONE,
    ),
    (
        "conditional statements through an expired edge are ignored",
        {"p1": P(D(conditions=when("d"))), "p2": P(A())},
        [("U:alice", "POLICY", "p1", "past"), *held_by_alice("p2")],
        {},
        ALLOW("p2", 0),
    ),
    (
        "conditional statements of an unknown policy are ignored",
        {"p2": P(A(conditions=when("x")))},
        held_by_alice("p1", "p2"),
        {},
        COND("p2", 0, ("x",)),
    ),
    # ---- conditions that no longer parse never apply, whatever the context
    (
        "an unreadable allow",
        {"p1": P(A(conditions={"all": [{"key": "x", "operator": "from_the_future", "value": 1}]}))},
        held_by_alice("p1"),
        {"x": 1, "(unreadable conditions)": ""},
        COND("p1", 0, ("(unreadable conditions)",)),
    ),
    (
        "an unreadable deny with an allow",
        {"p1": P(D(conditions={"any": []}), A())},
        held_by_alice("p1"),
        {"(unreadable conditions)": ""},
        COND("p1", 0, ("(unreadable conditions)",)),
    ),
]


def test_table_ids_are_unique():
    assert len({case[0] for case in TABLE}) == len(TABLE)


@pytest.mark.parametrize("case", TABLE, ids=[case[0] for case in TABLE])
def test_decisions(case):
    _, policies, edges, context, expected = case
    index = build(policies, edges)
    decision = index.check(S("U:alice"), "a.b", "r", context)
    assert decision == expected
    assert decision.conditional == (expected.reason == MISSING_CONTEXT)
    assert not (decision.conditional and decision.allowed)
    # the same answer again (memoized), in a batch, and from an index built from reversed inputs
    assert index.check(S("U:alice"), "a.b", "r", context) == expected
    assert index.batch_check([(S("U:alice"), "a.b", "r")], context) == [expected]
    reversed_index = build(dict(reversed(list(policies.items()))), list(reversed(edges)))
    assert reversed_index.check(S("U:alice"), "a.b", "r", context) == expected


# ============================================================================ context handling


def test_contexts_do_not_leak_between_checks():
    index = build({"p1": P(A(conditions=when("x")), D(conditions=when("d")))}, held_by_alice("p1"))
    alice = S("U:alice")
    for _ in range(2):
        assert index.check(alice, "a.b", "r", {"x": True}) == COND("p1", 1, ("d",))
        assert index.check(alice, "a.b", "r", {"x": True, "d": False}) == ALLOW("p1", 0)
        assert index.check(alice, "a.b", "r", {"x": False, "d": False}) == NONE
        assert index.check(alice, "a.b", "r", {"x": True, "d": True}) == DENY("p1", 1)
        assert index.check(alice, "a.b", "r") == COND("p1", 1, ("d", "x"))
        assert index.check(alice, "a.b", "r", None) == COND("p1", 1, ("d", "x"))
        assert index.check(alice, "a.b", "r", {}) == COND("p1", 1, ("d", "x"))


UNCONDITIONAL = (
    {"p1": P(A("a.*", "r/*"), D("a.del", "r/secret")), "p2": P(perms=["b.read"])},
    [*held_by_alice("p1"), ("U:alice", "GROUP", "g"), ("G:g", "POLICY", "p2")],
)
ODD_CONTEXTS: list[Any] = [
    None,
    {},
    {"x": True, "d": True},
    {"request.time": "garbage", "request.ip": ["10.0.0.1"], "(unreadable conditions)": ""},
    {"a.b": "r/x", "": None},
]


@pytest.mark.parametrize("context", ODD_CONTEXTS)
def test_unconditional_statements_ignore_any_context(context):
    policies, edges = UNCONDITIONAL
    index = build(policies, edges)
    questions = [(S("U:alice"), a, r) for a in ("a.read", "a.del", "b.read", "c") for r in ("r/x", "r/secret", "s")]
    missing: set[str] = set()
    expected = [index.check(*question) for question in questions]
    assert [index.check(*question, context) for question in questions] == expected
    assert index.batch_check(questions, context) == expected
    assert expected[0] == ALLOW("p1", 0)
    assert expected[4] == DENY("p1", 1)
    assert expected[6] == ALLOW("p2", 0, "U:alice>G:g")
    listing = index.list_authorized_resources(S("U:alice"), "", None, context, missing)
    assert listing == index.list_authorized_resources(S("U:alice"))
    assert missing == set()


def test_an_unconditional_deny_wins_whatever_the_context():
    index = build({"p1": P(A(conditions=when("x")), D("*", "*"))}, held_by_alice("p1"))
    for context in ODD_CONTEXTS + [{"x": False}]:
        assert index.check(S("U:alice"), "a.b", "r", context) == DENY("p1", 1)


def test_batch_check_uses_the_context_for_every_item():
    index = build(
        {"p1": P(A("a.*", "r", when("x")), D("a.del", "r", when("d"))), "p2": P(A("b.*", "*"))},
        [*held_by_alice("p1"), ("U:bob", "POLICY", "p2"), ("U:carol", "POLICY", "p1")],
    )
    items = [
        (S("U:alice"), "a.read", "r"),
        (S("U:alice"), "a.del", "r"),
        (S("U:bob"), "b.x", "r"),
        (S("U:carol"), "a.read", "r"),
        (S("U:nobody"), "a.read", "r"),
    ]
    assert index.batch_check(items, {"x": True}) == [
        ALLOW("p1", 0),
        COND("p1", 1, ("d",)),
        ALLOW("p2", 0, "U:bob"),
        ALLOW("p1", 0, "U:carol"),
        NONE,
    ]
    assert index.batch_check(items, {"x": True, "d": True}) == [
        ALLOW("p1", 0),
        DENY("p1", 1),
        ALLOW("p2", 0, "U:bob"),
        ALLOW("p1", 0, "U:carol"),
        NONE,
    ]
    assert index.batch_check(items) == [
        COND("p1", 0, ("x",)),
        COND("p1", 1, ("d", "x")),
        ALLOW("p2", 0, "U:bob"),
        COND("p1", 0, ("x",), "U:carol"),
        NONE,
    ]
    for context in ({"x": False}, {"x": True, "d": False}, None):
        assert index.batch_check(items, context) == [index.check(*item, context) for item in items]


# ============================================================================ the other questions


def test_effective_statements_carry_the_condition():
    raw = {"any": [{"key": "request.ip", "operator": "ip_address", "value": ["10.0.0.0/8"]}, when("x")]}
    index = build(
        {"p1": P(A("a.*", "r", raw), D("a.del", "*", when("d")), perms=["c.read"]), "p0": P(A("z", "z"))},
        [*held_by_alice("p1"), ("U:alice", "GROUP", "g"), ("G:g", "POLICY", "p0")],
    )
    statements = index.effective_statements(S("U:alice"))
    alice = path("U:alice")
    assert statements == [
        EffectiveStatement("p1", 0, "ALLOW", ("a.*",), ("r",), alice, parse_conditions(raw)),
        EffectiveStatement("p1", 1, "DENY", ("a.del",), ("*",), alice, parse_conditions(when("d"))),
        EffectiveStatement("p1", 2, "ALLOW", ("c.read",), ("*",), alice, None),
        EffectiveStatement("p0", 0, "ALLOW", ("z",), ("z",), path("U:alice>G:g"), None),
    ]
    condition = statements[0].condition
    assert condition is not None
    assert condition.source == (
        '{"any":[{"key":"request.ip","operator":"ip_address","value":["10.0.0.0/8"]},'
        '{"all":[{"key":"x","operator":"bool","value":true}]}]}'
    )


def test_effective_statements_show_unreadable_conditions():
    index = build({"p1": P(A(conditions={"bad": 1}))}, held_by_alice("p1"))
    assert index.effective_statements(S("U:alice"))[0].condition is UNREADABLE


def test_held_statements_leave_out_conditional_allows_only():
    index = build(
        {
            "p1": P(A("a.1", "r", when("x")), D("a.2", "r", when("d")), A("a.3", "r"), D("a.4", "r")),
            "p2": P(A("a.5", "r", {"bad": 1}), D("a.6", "r", {"bad": 1}), perms=["a.7"]),
            "p3": P(A("a.8", "r"), enabled=False),
        },
        held_by_alice("p1", "p2", "p3"),
    )
    held = index.held_statements(S("U:alice"))
    assert [s.actions[0] for s in held] == ["a.2", "a.3", "a.4", "a.6", "a.7"]
    assert held[0] == Statement("DENY", ("a.2",), ("r",), parse_conditions(when("d")))
    assert held[3].condition is UNREADABLE
    assert index.held_statements(S("U:alice")) == held  # memoized, unchanged
    assert index.held_statements(S("U:nobody")) == ()


def test_grants_explicitly_ignores_conditional_allows():
    index = build(
        {
            "p1": P(A("repo.escalate", "*", when("x"))),
            "p2": P(A("repo.bind", "*"), A("repo.bind", "*", when("x"))),
            "p3": P(A("repo.grant", "*"), D("repo.grant", "r/locked", when("d"))),
            "p4": P(A("repo.*", "*")),
        },
        held_by_alice("p1", "p2", "p3", "p4"),
    )
    alice = S("U:alice")
    # allowed (by repo.*), but named only by a conditional allow: not given explicitly
    assert index.check(alice, "repo.escalate", "r/x").allowed
    assert not index.grants_explicitly(alice, "repo.escalate", "r/x")
    # named by an unconditional allow too
    assert index.grants_explicitly(alice, "repo.bind", "r/x")
    # an undecided deny leaves it open where it applies: not granted there
    assert index.grants_explicitly(alice, "repo.grant", "r/x")
    assert not index.grants_explicitly(alice, "repo.grant", "r/locked")


def test_who_can_counts_only_what_check_allows_without_context():
    index = build(
        {"p1": P(A(conditions=when("x"))), "p2": P(A()), "p3": P(A(), D(conditions=when("d")))},
        [("U:a", "POLICY", "p1"), ("U:b", "POLICY", "p2"), ("U:c", "POLICY", "p3")],
    )
    assert index.who_can("a.b", "r") == [SubjectDecision(S("U:b"), ALLOW("p2", 0, "U:b"))]


def test_list_authorized_resources_under_a_context():
    index = build(
        {
            "p1": P(
                A("a.read", "docs/*", when("x")),
                A("a.write", "docs/*", when("w")),
                D("a.read", "docs/secret", when("d")),
                D("a.read", "docs/old", when("old")),
                A("b.read", "img/*"),
            )
        },
        held_by_alice("p1"),
    )
    alice = S("U:alice")

    def listing(context, prefix="", action=None):
        missing: set[str] = set()
        found = index.list_authorized_resources(alice, prefix, action, context, missing)
        return found, missing

    found, missing = listing({"x": True, "w": False, "old": False})
    assert found == [
        AuthorizedResource("docs/*", ("a.read",), (AuthorizedException("docs/secret", ("a.read",)),)),
        AuthorizedResource("img/*", ("b.read",)),
    ]
    assert missing == {"d"}
    found, missing = listing({"x": True, "w": True, "d": False, "old": True})
    assert found == [
        AuthorizedResource("docs/*", ("a.read", "a.write"), (AuthorizedException("docs/old", ("a.read",)),)),
        AuthorizedResource("img/*", ("b.read",)),
    ]
    assert missing == set()
    # undecided allows are left out, and named
    found, missing = listing({})
    assert found == [AuthorizedResource("img/*", ("b.read",))]
    assert missing == {"x", "w", "d", "old"}
    found, missing = listing({"x": True, "d": False, "old": False}, "docs/", "a.read")
    assert found == [AuthorizedResource("docs/*", ("a.read",))]
    assert missing == {"w"}
    # without a set to fill, the same entries
    assert index.list_authorized_resources(alice, "", None, {"x": True}) == listing({"x": True})[0]
    # keys found missing are added to what the set holds already
    kept = {"earlier"}
    index.list_authorized_resources(alice, "", None, {"x": True, "w": True, "d": True}, kept)
    assert kept == {"earlier", "old"}


# ============================================================================ properties

TIME = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
USERS = [Subject("USER", "u1"), Subject("USER", "u2")]
CONTAINERS = [Subject("GROUP", "g1"), Subject("GROUP", "g2"), Subject("ROLE", "r1")]
SUBJECTS = USERS + CONTAINERS
UNKNOWN = Subject("USER", "stranger")
POLICY_IDS = ["p1", "p2", "p3"]
ACTION_PATTERNS = ["*", "a.*", "a.b", "A.B", "a.?", "b.*", "*.b"]
RESOURCE_PATTERNS = ["*", "r/*", "r/x", "r/?", "*/x", "r/x*", "s:*"]
ACTIONS = ["a.b", "a.c", "b.b", "A.b", "a", "x.y"]
RESOURCES = ["r/x", "r/y", "r/xy", "s:x", "q/x", "r"]
PREFIXES = ["", "r", "r/", "r/x", "s", "q/"]
KEYS = ["k1", "k2"]
VALUES = ["v1", "v2"]
PROPERTY_SETTINGS = settings(max_examples=120, deadline=None)

rules = st.builds(
    lambda key, value, negated: {
        "key": key,
        "operator": "string_not_equals" if negated else "string_equals",
        "value": value,
    },
    st.sampled_from(KEYS),
    st.sampled_from(VALUES),
    st.booleans(),
)
conditions_strategy = st.recursive(
    st.builds(lambda rule: {"all": [rule]}, rules),
    lambda inner: st.builds(
        lambda mode, items: {mode: items},
        st.sampled_from(["all", "any"]),
        st.lists(rules | inner, min_size=1, max_size=3),
    ),
    max_leaves=4,
)
# a context value: a match, a mismatch, the wrong type (false, even negated) or missing
contexts = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES + [7]), max_size=len(KEYS))


@st.composite
def conditional_graphs(draw):
    policies = []
    raw: dict[str, tuple[bool, list]] = {}
    for pid in draw(st.lists(st.sampled_from(POLICY_IDS), unique=True, min_size=1, max_size=3)):
        stmts = []
        for _ in range(draw(st.integers(0, 4))):
            stmts.append(
                {
                    "effect": draw(st.sampled_from(["ALLOW", "DENY"])),
                    "actions": draw(st.lists(st.sampled_from(ACTION_PATTERNS), min_size=1, max_size=2)),
                    "resources": draw(st.lists(st.sampled_from(RESOURCE_PATTERNS), min_size=1, max_size=2)),
                    "conditions": draw(st.none() | conditions_strategy),
                }
            )
        perms = draw(st.lists(st.sampled_from(ACTION_PATTERNS), max_size=1))
        enabled = draw(st.booleans() | st.just(True))
        policies.append(PolicyRules.from_policy(pid, stmts, perms, enabled=enabled))
        # what the reference reads: the statements as written, then the permissions
        effective = [(s["effect"], s["actions"], s["resources"], s["conditions"]) for s in stmts]
        raw[pid] = (enabled, effective + [("ALLOW", [p], ["*"], None) for p in perms])
    edges = []
    for _ in range(draw(st.integers(2, 10))):
        subject = draw(st.sampled_from(SUBJECTS))
        grant_type = draw(st.sampled_from(["POLICY", "POLICY", "GROUP", "ROLE"]))
        if grant_type == "POLICY":
            grant_id = draw(st.sampled_from(POLICY_IDS))
        else:
            grant_id = draw(st.sampled_from([c.id for c in CONTAINERS if c.type == grant_type]))
        edges.append(Edge(subject, grant_type, grant_id))
    return policies, edges, raw


# ---- reference, written independently of the engine


@lru_cache(maxsize=None)
def ref_regex(pattern: str, ignore_case: bool) -> re.Pattern | None:
    if not pattern:
        return None
    body = "".join({"*": ".*", "?": "."}.get(ch, re.escape(ch)) for ch in pattern)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def ref_matches(pattern: str, value: str, ignore_case: bool) -> bool:
    rx = ref_regex(pattern, ignore_case)
    return rx is not None and rx.fullmatch(value) is not None


def ref_held(edges, start) -> dict[str, tuple[Subject, ...]]:
    """Each held policy with its best via: shortest, then smallest path."""
    adjacency: dict[Subject, set[Subject]] = {}
    for e in edges:
        if e.grant_type != "POLICY":
            adjacency.setdefault(e.subject, set()).add(Subject(e.grant_type, e.grant_id))
    paths = {start: (start,)}
    queue = deque([start])
    while queue:  # BFS visiting neighbours in sorted order gives the smallest shortest paths
        node = queue.popleft()
        for nxt in sorted(adjacency.get(node, ())):
            if nxt not in paths:
                paths[nxt] = paths[node] + (nxt,)
                queue.append(nxt)
    held: dict[str, tuple[Subject, ...]] = {}
    for e in edges:
        if e.grant_type == "POLICY" and e.subject in paths:
            p = paths[e.subject]
            if e.grant_id not in held or (len(p), p) < (len(held[e.grant_id]), held[e.grant_id]):
                held[e.grant_id] = p
    return held


def ref_truth(conditions: dict | None, context: dict) -> bool | frozenset[str]:
    """True, False, or the missing keys."""
    if conditions is None:
        return True
    if "key" in conditions:
        key = conditions["key"]
        if key not in context:
            return frozenset({key})
        value = context[key]
        if not isinstance(value, str):
            return False
        equal = value == conditions["value"]
        return equal if conditions["operator"] == "string_equals" else not equal
    (mode, items), *_ = conditions.items()
    outcomes = [ref_truth(item, context) for item in items]
    settle = mode == "any"
    if settle in outcomes:
        return settle
    unknown = [o for o in outcomes if isinstance(o, frozenset)]
    return frozenset().union(*unknown) if unknown else not settle


def ref_check(raw_policies, edges, subject, action, resource, context) -> Decision:
    definite: dict[str, list] = {"ALLOW": [], "DENY": []}
    undecided: dict[str, list] = {"ALLOW": [], "DENY": []}
    for pid, via in ref_held(edges, subject).items():
        enabled, statements = raw_policies.get(pid, (False, []))
        if not enabled:
            continue
        for idx, (effect, actions, resources, conditions) in enumerate(statements):
            if not (
                any(ref_matches(a, action, True) for a in actions)
                and any(ref_matches(r, resource, False) for r in resources)
            ):
                continue
            truth = ref_truth(conditions, context)
            rank = (len(via), pid, idx, via)
            if truth is True:
                definite[effect].append(rank)
            elif isinstance(truth, frozenset):
                undecided[effect].append((rank, truth))
    if definite["DENY"]:
        _, pid, idx, via = min(definite["DENY"])
        return Decision(False, "EXPLICIT_DENY", pid, idx, via)
    if undecided["DENY"] and (definite["ALLOW"] or undecided["ALLOW"]):
        missing = set().union(*(keys for _, keys in undecided["DENY"]))
        if not definite["ALLOW"]:
            missing |= set().union(*(keys for _, keys in undecided["ALLOW"]))
        _, pid, idx, via = min(rank for rank, _ in undecided["DENY"])
        return Decision(False, MISSING_CONTEXT, pid, idx, via, tuple(sorted(missing)))
    if definite["ALLOW"]:
        _, pid, idx, via = min(definite["ALLOW"])
        return Decision(True, "ALLOWED", pid, idx, via)
    if undecided["ALLOW"]:
        missing = set().union(*(keys for _, keys in undecided["ALLOW"]))
        _, pid, idx, via = min(rank for rank, _ in undecided["ALLOW"])
        return Decision(False, MISSING_CONTEXT, pid, idx, via, tuple(sorted(missing)))
    return Decision(False, "NO_MATCHING_ALLOW")


@PROPERTY_SETTINGS
@given(conditional_graphs(), st.lists(contexts, min_size=1, max_size=2))
def test_check_agrees_with_reference_under_contexts(graph, context_list):
    policies, edges, raw = graph
    index = DomainIndex(policies, edges, TIME)
    for context in context_list:
        for subject in SUBJECTS + [UNKNOWN]:
            for action in ACTIONS:
                for resource in RESOURCES:
                    decision = index.check(subject, action, resource, context)
                    expected = ref_check(raw, edges, subject, action, resource, context)
                    assert decision == expected, (subject, action, resource, context)


@PROPERTY_SETTINGS
@given(
    conditional_graphs(),
    contexts,
    st.sampled_from(PREFIXES),
    st.sampled_from([None] + ACTIONS),
)
def test_list_authorized_resources_is_exact_under_a_context(graph, context, prefix, action):
    policies, edges, _ = graph
    index = DomainIndex(policies, edges, TIME)
    for subject in SUBJECTS + [UNKNOWN]:
        missing: set[str] = set()
        listing = index.list_authorized_resources(subject, prefix, action, context, missing)
        assert [e.resource for e in listing] == sorted({e.resource for e in listing})
        for a in [action] if action else ACTIONS:
            for r in RESOURCES:
                if not r.startswith(prefix):
                    continue
                covered = any(
                    ref_matches(entry.resource, r, False)
                    and any(ref_matches(x, a, True) for x in entry.actions)
                    and not any(
                        ref_matches(e.resource, r, False) and any(ref_matches(x, a, True) for x in e.actions)
                        for e in entry.exceptions
                    )
                    for entry in listing
                )
                decision = index.check(subject, a, r, context)
                assert covered == decision.allowed, (subject, a, r, context, listing)
                if decision.conditional:
                    assert set(decision.missing_context) <= missing, (decision, missing)
        # nothing is named missing that the context has
        assert not (missing & set(context))


@pytest.mark.parametrize("reason", ["ALLOWED", "EXPLICIT_DENY", "NO_MATCHING_ALLOW", MISSING_CONTEXT])
def test_the_property_strategies_reach_every_outcome(reason):
    """The key/value universe is small enough that every answer happens (else the properties
    above would test little): hypothesis finds a graph and a context giving each."""

    def gives(example) -> bool:
        (policies, edges, _), context = example
        index = DomainIndex(policies, edges, TIME)
        return any(index.check(u, "a.b", "r/x", context).reason == reason for u in USERS)

    # (the first example found will do: no shrinking)
    quick = settings(max_examples=2000, database=None, phases=[Phase.generate])
    find(st.tuples(conditional_graphs(), contexts), gives, settings=quick)
