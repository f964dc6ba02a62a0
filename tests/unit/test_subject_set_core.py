"""The pure parts behind groups and roles: membership answers of the evaluation index, and the
grouping of a role's statements by service."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from policyhub.engine import DomainIndex, Edge, EffectiveStatement, PolicyRules, Subject
from policyhub.service.role_service import grouped_by_service

NOW = datetime(2026, 11, 30, tzinfo=timezone.utc)


def edge(subject_type, subject_id, grant_type, grant_id, expires_at=None):
    return Edge(Subject(subject_type, subject_id), grant_type, grant_id, expires_at)


def group(group_id):
    return Subject("GROUP", group_id)


def user(user_id):
    return Subject("USER", user_id)


@pytest.fixture
def nested():
    """u3 in k, k in h, h in g; u2 in h; u1 in g and in h; a cycle g -> k."""
    return DomainIndex(
        [],
        [
            edge("USER", "u1", "GROUP", "g"),
            edge("GROUP", "h", "GROUP", "g"),
            edge("USER", "u2", "GROUP", "h"),
            edge("USER", "u1", "GROUP", "h"),
            edge("GROUP", "k", "GROUP", "h"),
            edge("USER", "u3", "GROUP", "k"),
            edge("GROUP", "g", "GROUP", "k"),
            edge("SERVICE_ACCOUNT", "sa", "GROUP", "g"),
        ],
        NOW,
    )


def test_direct_members_have_no_via(nested):
    assert nested.members(group("g")) == (
        (group("h"), ()),
        (Subject("SERVICE_ACCOUNT", "sa"), ()),
        (user("u1"), ()),
    )


def test_nested_members_come_with_the_groups_between_nearest_first(nested):
    found = dict(nested.members(group("g"), nested=True))
    assert found[user("u1")] == ()  # direct beats through h
    assert found[user("u2")] == (group("h"),)
    assert found[user("u3")] == (group("k"), group("h"))
    # the cycle back to g does not make g a member of itself
    assert group("g") not in found


def test_member_lists_are_sorted_and_memoized(nested):
    first = nested.members(group("g"), nested=True)
    assert [member for member, _ in first] == sorted(member for member, _ in first)
    assert nested.members(group("g"), nested=True) is first


def test_member_count_and_granted_policies():
    index = DomainIndex(
        [PolicyRules.from_policy("p", [], ["a.read"])],
        [
            edge("USER", "u1", "ROLE", "r"),
            edge("GROUP", "g", "ROLE", "r"),
            edge("USER", "u2", "GROUP", "g"),
            edge("ROLE", "r", "POLICY", "p"),
            edge("ROLE", "r", "POLICY", "missing"),
        ],
        NOW,
    )
    assert index.member_count(Subject("ROLE", "r")) == 2
    assert index.member_count(Subject("ROLE", "nobody")) == 0
    assert index.granted_policies(Subject("ROLE", "r")) == ("missing", "p")
    assert index.granted_policies(user("u2")) == ()
    # through g, u2 is bound to r
    assert dict(index.members(Subject("ROLE", "r"), nested=True))[user("u2")] == (group("g"),)


def test_expired_memberships_are_not_members():
    index = DomainIndex(
        [],
        [
            edge("USER", "old", "GROUP", "g", NOW - timedelta(seconds=1)),
            edge("USER", "new", "GROUP", "g", NOW + timedelta(days=1)),
        ],
        NOW,
    )
    assert index.members(group("g")) == ((user("new"), ()),)
    assert index.member_count(group("g")) == 1


def statement(policy_id, index, actions, effect="ALLOW"):
    return EffectiveStatement(policy_id, index, effect, tuple(actions), ("*",), (Subject("ROLE", "r"),))


def test_statements_are_grouped_by_the_first_segment_of_their_actions():
    groups = grouped_by_service(
        [
            statement("p", 0, ["inventory.Server.get", "identity.User.list", "inventory.Server.list"]),
            statement("p", 1, ["identity.*"], effect="DENY"),
            statement("q", 0, ["*", "*.get", "inv*.Server.get"]),
            statement("q", 1, ["Inventory.Region.get"]),
        ]
    )
    assert [g["service"] for g in groups] == ["*", "identity", "inventory"]
    by_service = {g["service"]: g["statements"] for g in groups}
    assert [s.actions for s in by_service["inventory"]] == [
        ("inventory.Server.get", "inventory.Server.list"),
        ("Inventory.Region.get",),
    ]
    assert [(s.policy_id, s.statement_index, s.effect, s.actions) for s in by_service["identity"]] == [
        ("p", 0, "ALLOW", ("identity.User.list",)),
        ("p", 1, "DENY", ("identity.*",)),
    ]
    assert [s.actions for s in by_service["*"]] == [("*", "*.get", "inv*.Server.get")]


def test_no_statements_no_groups():
    assert grouped_by_service([]) == []
