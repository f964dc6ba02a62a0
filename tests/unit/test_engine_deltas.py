"""DomainIndex.with_changes against a fresh build: random domains, random sequences of deltas
(policies upserted, changed, disabled and removed; edges added, re-added with another expiry,
expired and removed), memos warmed before each delta so that what a derived index takes over
is exercised. After every delta the derived index must answer every question exactly as an
index built from scratch from the same policies and edges."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_engine_properties import (
    ACTION_PATTERNS,
    ACTIONS,
    CONTAINERS,
    EXPIRIES,
    GHOST_POLICY,
    NOW,
    POLICY_IDS,
    PREFIXES,
    RESOURCES,
    SUBJECTS,
    UNKNOWN,
    all_questions,
    graphs,
    statements_strategy,
)

from policyhub.engine import DomainIndex, Edge, PolicyRules, Subject
from policyhub.engine import overlay as overlay_module
from policyhub.engine.overlay import Overlay

SETTINGS = settings(max_examples=150, deadline=None)
ALL_POLICY_IDS = POLICY_IDS + [GHOST_POLICY, "p5"]


def _key(edge: Edge) -> tuple[Subject, str, str]:
    return (edge.subject, edge.grant_type, edge.grant_id)


@st.composite
def policy_rules(draw):
    statement = statements_strategy(("ALLOW",)) | statements_strategy(("DENY",))
    stmts = draw(st.lists(statement, max_size=3))
    return PolicyRules.from_policy(
        draw(st.sampled_from(ALL_POLICY_IDS)),
        [{"effect": s.effect, "actions": list(s.actions), "resources": list(s.resources)} for s in stmts],
        draw(st.lists(st.sampled_from(ACTION_PATTERNS), max_size=2)),
        enabled=draw(st.booleans()),
    )


@st.composite
def edges(draw):
    grant_type = draw(st.sampled_from(["POLICY", "POLICY", "GROUP", "ROLE"]))
    if grant_type == "POLICY":
        grant_id = draw(st.sampled_from(ALL_POLICY_IDS))
    else:
        grant_id = draw(st.sampled_from([c.id for c in CONTAINERS if c.type == grant_type]))
    return Edge(draw(st.sampled_from(SUBJECTS)), grant_type, grant_id, draw(st.sampled_from(EXPIRIES)))


@st.composite
def deltas(draw):
    """(upserted policies, removed policy ids, added edges, removed edges, indexes of the current
    edges to remove, minutes after NOW)."""
    return (
        draw(st.lists(policy_rules(), max_size=3)),
        draw(st.lists(st.sampled_from(ALL_POLICY_IDS), max_size=2)),
        draw(st.lists(edges(), max_size=4)),
        draw(st.lists(edges(), max_size=2)),
        draw(st.lists(st.integers(min_value=0, max_value=30), max_size=3)),
        draw(st.sampled_from([0, 0, 10, 30])),
    )


def _warm(index: DomainIndex, questions: list) -> None:
    """Fills the memos a derived index may take over (closures, views, holder views, member
    lists, the allow index)."""
    index.batch_check(questions)
    for subject in SUBJECTS:
        index.held_statements(subject)
        index.grants_explicitly(subject, "a.b", "r/x")
    for container in CONTAINERS:
        index.members(container, nested=True)
        index.members(container)
        index.members(container, nested=False, subject_type="USER")
    index.who_can("a.b", "r/x")


def _assert_same(derived: DomainIndex, fresh: DomainIndex) -> None:
    questions = all_questions()
    assert derived.batch_check(questions) == fresh.batch_check(questions)
    assert derived.subjects == fresh.subjects
    for subject in SUBJECTS + [UNKNOWN]:
        assert derived.reachable(subject) == fresh.reachable(subject)
        assert derived.effective_statements(subject) == fresh.effective_statements(subject)
        assert derived.carried_statements(subject) == fresh.carried_statements(subject)
        assert derived.held_statements(subject) == fresh.held_statements(subject)
        assert derived.granted_policies(subject) == fresh.granted_policies(subject)
        for action in ("a.b", "A.B", "b.c"):
            assert derived.grants_explicitly(subject, action, "r/x") == fresh.grants_explicitly(subject, action, "r/x")
        for prefix in PREFIXES[:4]:
            assert derived.list_authorized_resources(subject, prefix) == fresh.list_authorized_resources(
                subject, prefix
            )
    for container in CONTAINERS:
        assert derived.member_count(container) == fresh.member_count(container)
        for nested in (False, True):
            for subject_type in (None, "USER", "GROUP"):
                assert derived.members(container, nested, subject_type) == fresh.members(
                    container, nested, subject_type
                )
    for pid in ALL_POLICY_IDS:
        assert derived.subjects_holding(pid) == fresh.subjects_holding(pid)
        assert derived.policy_statements(pid) == fresh.policy_statements(pid)
    for action in ACTIONS[:4]:
        for resource in RESOURCES[:4]:
            assert derived.who_can(action, resource) == fresh.who_can(action, resource)
    # A removed edge may have been the next to expire: the derived expiry is never later.
    if fresh.next_expiry is not None:
        assert derived.next_expiry is not None and derived.next_expiry <= fresh.next_expiry


@SETTINGS
@given(graphs(), st.lists(deltas(), min_size=1, max_size=4), st.booleans())
def test_with_changes_answers_as_a_fresh_build(graph, steps, warm):
    start_policies, start_edges = graph
    policies = {p.policy_id: p for p in start_policies}
    current: dict[tuple[Subject, str, str], Edge] = {}
    for edge in start_edges:
        current.setdefault(_key(edge), edge)  # one edge per (subject, grant), as assignments are
    index = DomainIndex(policies.values(), current.values(), NOW)
    questions = all_questions()
    for upserted, removed_ids, added, removed_edges, removed_positions, minutes in steps:
        now = NOW + timedelta(minutes=minutes)
        if index.next_expiry is not None and now >= index.next_expiry:
            now = index.now
        if warm:
            _warm(index, questions)
        before = index.batch_check(questions)
        existing = list(current.values())
        removed_edges = removed_edges + [existing[i] for i in removed_positions if i < len(existing)]
        for pid in removed_ids:
            policies.pop(pid, None)
        for policy in upserted:
            policies[policy.policy_id] = policy
        for edge in removed_edges:
            current.pop(_key(edge), None)
        for edge in added:
            current[_key(edge)] = edge
        derived = index.with_changes(upserted, removed_ids, added, removed_edges, now)
        _assert_same(derived, DomainIndex(policies.values(), current.values(), now))
        # The old index is unchanged: readers holding it keep their view.
        assert index.batch_check(questions) == before
        index = derived


def test_with_changes_refuses_once_an_edge_has_expired():
    user, group = Subject("USER", "u1"), Subject("GROUP", "g1")
    index = DomainIndex([], [Edge(user, "GROUP", "g1", NOW + timedelta(hours=1))], NOW)
    assert index.members(group) == ((user, ()),)
    with pytest.raises(ValueError, match="expired"):
        index.with_changes(now=NOW + timedelta(hours=1))


def test_with_changes_takes_over_untouched_memos():
    """A subject the delta does not reach keeps its compiled view; one it reaches gets a new one."""
    a, b = Subject("USER", "a"), Subject("USER", "b")
    rules = [PolicyRules.from_policy(p, [], ["x.*"]) for p in ("p1", "p2")]
    index = DomainIndex(rules, [Edge(a, "POLICY", "p1"), Edge(b, "POLICY", "p2")], NOW)
    assert index.check(a, "x.y", "r").allowed and index.check(b, "x.y", "r").allowed
    derived = index.with_changes(policies=[PolicyRules.from_policy("p2", [], ["z.*"])])
    assert derived.check(a, "x.y", "r").allowed
    assert not derived.check(b, "x.y", "r").allowed
    assert derived._views[a] is index._views[a]
    assert derived._views[b] is not index._views[b]


def test_overlay_matches_a_dict_through_compactions(monkeypatch):
    monkeypatch.setattr(overlay_module, "MIN_CHANGES", 4)
    expected: dict[int, int] = {i: i for i in range(50)}
    versions = [(Overlay(dict(expected)), dict(expected))]
    for step in range(40):
        changes: dict[int, int | None] = {(step * 7) % 60: step, (step * 3) % 50: None, 100 + step: -step}
        for key, value in changes.items():
            if value is None:
                expected.pop(key, None)
            else:
                expected[key] = value
        versions.append((versions[-1][0].changed(changes), dict(expected)))
    # Every version, old ones included, still reads as it did when it was made.
    for overlay, snapshot in versions:
        assert dict(overlay.items()) == snapshot
        assert len(overlay) == len(snapshot)
        assert all((key in overlay) == (key in snapshot) for key in range(-5, 150))
