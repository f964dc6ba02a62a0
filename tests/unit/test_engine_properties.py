"""Properties of the evaluation engine over random small graphs (hypothesis), checked
against a naive reference evaluator written here independently of the engine: BFS over
the live membership edges, then a scan of every statement of every held policy with
patterns translated to `re` by hand."""

from __future__ import annotations

import random
import re
from collections import deque
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from hypothesis import given, settings
from hypothesis import strategies as st

from policyhub.engine import Decision, DomainIndex, Edge, PolicyRules, Statement, Subject

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
EXPIRIES = [None] * 8 + [NOW - timedelta(hours=1), NOW, NOW + timedelta(hours=1)]

USERS = [Subject("USER", "u1"), Subject("USER", "u2"), Subject("SERVICE_ACCOUNT", "s1")]
CONTAINERS = [
    Subject("GROUP", "g1"),
    Subject("GROUP", "g2"),
    Subject("GROUP", "g3"),
    Subject("ROLE", "r1"),
    Subject("ROLE", "r2"),
]
SUBJECTS = USERS + CONTAINERS
UNKNOWN = Subject("USER", "stranger")
POLICY_IDS = ["p1", "p2", "p3", "p4"]
GHOST_POLICY = "p9"  # assigned but never defined

ACTION_PATTERNS = [
    "*",
    "*",
    "a.*",
    "a.*",
    "a.b",
    "A.B",
    "a.?",
    "b.*",
    "*.b",
    "a*",
    "a.b.c",
    "?.b",
    "a",
    "a.*.c",
    "*b*",
    "A.*",
]
RESOURCE_PATTERNS = ["*", "*", "r/*", "r/*", "r/x", "r/?", "R/x", "*:x", "r/x:y", "*/x", "r", "r/x*", "?/x"]
ACTIONS = ["a.b", "a.c", "b.b", "A.b", "a.b.c", "ab", "b.c", "a", "a.", "x", "a.x.c"]
RESOURCES = ["r/x", "r/y", "R/x", "r/x:y", "s:x", "r/", "r", "q/x", "r/xy"]
PREFIXES = ["", "r", "r/", "r/x", "s", "R/", "q/x", "zz"]

SETTINGS = settings(max_examples=200, deadline=None)


# ---------------------------------------------------------------------------- strategies


def statements_strategy(
    effects=("ALLOW", "DENY"), action_patterns=ACTION_PATTERNS, resource_patterns=RESOURCE_PATTERNS
):
    return st.builds(
        Statement,
        st.sampled_from(effects),
        st.lists(st.sampled_from(action_patterns), min_size=0, max_size=2).map(tuple)
        | st.lists(st.sampled_from(action_patterns), min_size=1, max_size=2).map(tuple),
        st.lists(st.sampled_from(resource_patterns), min_size=1, max_size=2).map(tuple),
    )


@st.composite
def graphs(draw):
    statement = statements_strategy(("ALLOW",)) | statements_strategy(("DENY",))
    policies = []
    for pid in draw(st.lists(st.sampled_from(POLICY_IDS), unique=True, min_size=1, max_size=4)):
        stmts = draw(st.lists(statement, max_size=4))
        perms = draw(st.lists(st.sampled_from(ACTION_PATTERNS), max_size=2))
        rules = PolicyRules.from_policy(
            pid,
            [{"effect": s.effect, "actions": list(s.actions), "resources": list(s.resources)} for s in stmts],
            perms,
            enabled=draw(st.booleans() | st.just(True)),
        )
        policies.append(rules)
    edge = st.builds(
        Edge,
        st.sampled_from(SUBJECTS),
        st.sampled_from(["POLICY", "POLICY", "GROUP", "ROLE"]),
        st.just(""),
        st.sampled_from(EXPIRIES),
    )
    edges = []
    for e in draw(st.lists(edge, min_size=3, max_size=18)):
        if e.grant_type == "POLICY":
            defined = [p.policy_id for p in policies]
            grant_id = draw(st.sampled_from(defined) | st.sampled_from(POLICY_IDS + [GHOST_POLICY]))
        else:
            grant_id = draw(st.sampled_from([c.id for c in CONTAINERS if c.type == e.grant_type]))
        edges.append(Edge(e.subject, e.grant_type, grant_id, e.expires_at))
    return policies, edges


# ---------------------------------------------------------------------------- reference evaluator


@lru_cache(maxsize=None)
def ref_regex(pattern: str, ignore_case: bool) -> re.Pattern | None:
    if pattern == "":
        return None
    body = ""
    for ch in pattern:
        body += {"*": ".*", "?": "."}.get(ch, re.escape(ch))
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def ref_matches(pattern: str, value: str, ignore_case: bool) -> bool:
    rx = ref_regex(pattern, ignore_case)
    return rx is not None and rx.fullmatch(value) is not None


def ref_can_match_under(pattern: str, prefix: str) -> bool:
    """Does the pattern match some string starting with prefix? If it does, the prefix is
    consumed up to some pattern position i, and pattern[i:] with its `*` empty and its `?`
    as one character completes the match: trying every i decides it."""
    completions = [pattern[i:].replace("*", "").replace("?", "x") for i in range(len(pattern) + 1)]
    return any(ref_matches(pattern, prefix + t, False) for t in completions)


def live(edges, now=NOW):
    return [e for e in edges if e.expires_at is None or e.expires_at > now]


def ref_paths(edges, start) -> dict[Subject, tuple[Subject, ...]]:
    """Shortest paths from start; among shortest paths, the smallest one element by element."""
    adjacency: dict[Subject, set[Subject]] = {}
    for e in live(edges):
        if e.grant_type != "POLICY":
            adjacency.setdefault(e.subject, set()).add(Subject(e.grant_type, e.grant_id))
    dist = {start: 0}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in adjacency.get(node, ()):
            if nxt not in dist:
                dist[nxt] = dist[node] + 1
                queue.append(nxt)
    best = {start: (start,)}
    for node in sorted(dist, key=dist.get):
        if node == start:
            continue
        best[node] = min(best[u] + (node,) for u in dist if dist[u] == dist[node] - 1 and node in adjacency.get(u, ()))
    return best


def ref_held(policies, edges, subject) -> dict[str, tuple[Subject, ...]]:
    paths = ref_paths(edges, subject)
    held: dict[str, tuple[Subject, ...]] = {}
    for e in live(edges):
        if e.grant_type == "POLICY" and e.subject in paths:
            p = paths[e.subject]
            if e.grant_id not in held or (len(p), p) < (len(held[e.grant_id]), held[e.grant_id]):
                held[e.grant_id] = p
    return held


def ref_statements(policies, edges, subject):
    by_id = {p.policy_id: p for p in policies}
    out = []
    for pid, via in ref_held(policies, edges, subject).items():
        policy = by_id.get(pid)
        if policy is None or not policy.enabled:
            continue
        for idx, s in enumerate(policy.statements):
            out.append((len(via), pid, idx, via, s))
    return sorted(out, key=lambda item: item[:3])


def ref_decide(statements, action: str, resource: str) -> Decision:
    def applies(s: Statement) -> bool:
        return any(ref_matches(a, action, True) for a in s.actions) and any(
            ref_matches(r, resource, False) for r in s.resources
        )

    for effect, allowed, reason in (("DENY", False, "EXPLICIT_DENY"), ("ALLOW", True, "ALLOWED")):
        hits = [item for item in statements if item[4].effect == effect and applies(item[4])]
        if hits:
            _, pid, idx, via, _ = min(hits, key=lambda item: item[:3])
            return Decision(allowed, reason, pid, idx, via)
    return Decision(False, "NO_MATCHING_ALLOW")


def all_questions():
    return [(s, a, r) for s in SUBJECTS + [UNKNOWN] for a in ACTIONS for r in RESOURCES]


# ---------------------------------------------------------------------------- properties


@SETTINGS
@given(graphs())
def test_check_agrees_with_reference(graph):
    policies, edges = graph
    index = DomainIndex(policies, edges, NOW)
    for subject in SUBJECTS + [UNKNOWN]:
        statements = ref_statements(policies, edges, subject)
        for action in ACTIONS:
            for resource in RESOURCES:
                assert index.check(subject, action, resource) == ref_decide(statements, action, resource), (
                    subject,
                    action,
                    resource,
                )


@SETTINGS
@given(graphs())
def test_deny_always_wins(graph):
    policies, edges = graph
    index = DomainIndex(policies, edges, NOW)
    for subject in SUBJECTS:
        denies = [s for s in index.effective_statements(subject) if s.effect == "DENY"]
        for action in ACTIONS:
            for resource in RESOURCES:
                applicable = [
                    s
                    for s in denies
                    if any(ref_matches(a, action, True) for a in s.actions)
                    and any(ref_matches(r, resource, False) for r in s.resources)
                ]
                decision = index.check(subject, action, resource)
                if applicable:
                    assert not decision.allowed and decision.reason == "EXPLICIT_DENY"
                    assert (decision.policy_id, decision.statement_index) in {
                        (s.policy_id, s.statement_index) for s in applicable
                    }
                else:
                    assert decision.reason != "EXPLICIT_DENY"


@SETTINGS
@given(graphs(), statements_strategy(("ALLOW",)), st.sampled_from(SUBJECTS), st.booleans(), st.data())
def test_adding_an_allow_never_removes_access(graph, extra, holder, new_policy, data):
    policies, edges = graph
    before = DomainIndex(policies, edges, NOW).batch_check(all_questions())
    if new_policy or not policies:
        policies2 = policies + [PolicyRules("p-new", (extra,))]
        edges2 = edges + [Edge(holder, "POLICY", "p-new")]
    else:
        target = data.draw(st.sampled_from(range(len(policies))))
        p = policies[target]
        policies2 = list(policies)
        policies2[target] = PolicyRules(p.policy_id, p.statements + (extra,), p.enabled)
        edges2 = edges
    after = DomainIndex(policies2, edges2, NOW).batch_check(all_questions())
    for question, b, a in zip(all_questions(), before, after, strict=True):
        if b.allowed:
            assert a.allowed, question
        if b.reason == "EXPLICIT_DENY":
            assert a == b, question


@SETTINGS
@given(graphs(), st.randoms(use_true_random=False))
def test_input_order_never_changes_anything(graph, rnd: random.Random):
    policies, edges = graph
    index = DomainIndex(policies, edges, NOW)
    shuffled_policies, shuffled_edges = list(policies), list(edges)
    rnd.shuffle(shuffled_policies)
    rnd.shuffle(shuffled_edges)
    other = DomainIndex(shuffled_policies, shuffled_edges, NOW)
    assert other.batch_check(all_questions()) == index.batch_check(all_questions())
    assert other.subjects == index.subjects
    assert other.next_expiry == index.next_expiry
    for subject in SUBJECTS:
        assert other.effective_statements(subject) == index.effective_statements(subject)
        assert other.reachable(subject) == index.reachable(subject)
        assert other.list_authorized_resources(subject, "r") == index.list_authorized_resources(subject, "r")
    for pid in POLICY_IDS + [GHOST_POLICY]:
        assert other.subjects_holding(pid) == index.subjects_holding(pid)
    for action, resource in [("a.b", "r/x"), ("b.c", "r"), ("A.b", "s:x")]:
        assert other.who_can(action, resource) == index.who_can(action, resource)


@SETTINGS
@given(graphs())
def test_effective_statements_and_reachable_agree_with_reference(graph):
    policies, edges = graph
    index = DomainIndex(policies, edges, NOW)
    for subject in SUBJECTS + [UNKNOWN]:
        assert index.reachable(subject) == ref_paths(edges, subject)
        expected = [
            (pid, idx, s.effect, s.actions, s.resources, via)
            for _, pid, idx, via, s in ref_statements(policies, edges, subject)
        ]
        got = [
            (e.policy_id, e.statement_index, e.effect, e.actions, e.resources, e.via)
            for e in index.effective_statements(subject)
        ]
        assert got == expected


def _matches(entry, action, resource) -> bool:
    return ref_matches(entry.resource, resource, False) and any(ref_matches(x, action, True) for x in entry.actions)


def _check_listing(index: DomainIndex, subject, prefix, action):
    listing = index.list_authorized_resources(subject, prefix, action)
    # sorted by resource, unique resources, actions sorted, unique and non-empty
    assert [e.resource for e in listing] == sorted({e.resource for e in listing})
    for entry in listing:
        assert entry.actions and list(entry.actions) == sorted(set(entry.actions))
        assert [e.resource for e in entry.exceptions] == sorted({e.resource for e in entry.exceptions})
        for exception in entry.exceptions:
            assert exception.actions and list(exception.actions) == sorted(set(exception.actions))
        if action:
            assert all(ref_matches(a, action, True) for a in entry.actions)
        # the pattern can match something under the prefix
        assert ref_can_match_under(entry.resource, prefix), (entry, prefix)
    # Exact, both ways: allowed by check <=> covered by an entry and by none of its exceptions.
    for a in [action] if action else ACTIONS:
        for r in RESOURCES:
            if not r.startswith(prefix):
                continue
            covered = any(
                _matches(entry, a, r) and not any(_matches(e, a, r) for e in entry.exceptions) for entry in listing
            )
            assert covered == index.check(subject, a, r).allowed, (a, r, listing)


@SETTINGS
@given(graphs(), st.sampled_from(PREFIXES), st.sampled_from([None] + ACTIONS))
def test_list_authorized_resources_is_exact(graph, prefix, action):
    """Allows and denies with `*` and `?`, every prefix, with and without an action filter."""
    policies, edges = graph
    index = DomainIndex(policies, edges, NOW)
    for subject in SUBJECTS + [UNKNOWN]:
        _check_listing(index, subject, prefix, action)


@SETTINGS
@given(graphs())
def test_who_can_and_subjects_holding_agree_with_check_and_reachable(graph):
    policies, edges = graph
    index = DomainIndex(policies, edges, NOW)
    known = set()
    for e in edges:
        if e.expires_at is not None and e.expires_at <= NOW:
            continue  # an expired edge is not in the graph
        known.add(e.subject)
        if e.grant_type != "POLICY":
            known.add(Subject(e.grant_type, e.grant_id))
    assert index.subjects == tuple(sorted(known))
    for action in ACTIONS:
        for resource in RESOURCES:
            who = index.who_can(action, resource)
            assert [w.subject for w in who] == sorted(w.subject for w in who)
            by_subject = {w.subject: w.decision for w in who}
            for subject in SUBJECTS + [UNKNOWN]:
                decision = index.check(subject, action, resource)
                if decision.allowed:
                    assert by_subject.get(subject) == decision, (subject, action, resource)
                else:
                    assert subject not in by_subject
            assert set(by_subject) <= known
    live_grants = {(e.subject, e.grant_id) for e in live(edges) if e.grant_type == "POLICY"}
    for pid in POLICY_IDS + [GHOST_POLICY]:
        holding = {g.subject: g.via for g in index.subjects_holding(pid)}
        assert list(holding) == sorted(holding)
        for subject in SUBJECTS + [UNKNOWN]:
            reach = index.reachable(subject)
            holders = [t for t in reach if (t, pid) in live_grants]
            if holders:
                best = min((reach[t] for t in holders), key=lambda p: (len(p), p))
                assert holding.get(subject) == best, (pid, subject)
                assert best[0] == subject and (best[-1], pid) in live_grants
            else:
                assert subject not in holding
