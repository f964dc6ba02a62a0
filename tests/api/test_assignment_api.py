"""Assignment API and authorization questions through a real gRPC server."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import json_format

from helpers import as_dict, audited_ids, create_sets, expect_error, field_violations, parse, without_token
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2 as pb
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2


def policy(client, domain, policy_id, permissions=(), statements=()):
    client.policy.create(
        parse(
            policy_pb2.CreatePolicyRequest,
            {
                "policy_id": policy_id,
                "name": policy_id,
                "domain_id": domain,
                "permissions": list(permissions),
                "statements": list(statements),
            },
        ),
        timeout=10,
    )


def assign(client, domain, subject_type, subject_id, grant_type, grant_id, **extra):
    return client.assignment.create(
        parse(
            pb.CreateAssignmentRequest,
            {
                "subject": {"type": subject_type, "id": subject_id},
                "grant": {"type": grant_type, "id": grant_id},
                "domain_id": domain,
                **extra,
            },
        ),
        timeout=10,
    )


def check(client, domain, subject_id, action, resource, subject_type="USER"):
    return as_dict(
        client.assignment.check(
            parse(
                pb.CheckRequest,
                {
                    "subject": {"type": subject_type, "id": subject_id},
                    "action": action,
                    "resource": resource,
                    "domain_id": domain,
                },
            ),
            timeout=10,
        )
    )


def test_create_get_list_delete(client, domain):
    policy(client, domain, "viewer", ["inventory.*.read"])
    created = as_dict(assign(client, domain, "USER", "alice", "POLICY", "viewer", labels=["x"]))
    assert created["assignment_id"].startswith("asg-") and created["domain_id"] == domain
    assert created["subject"] == {"type": "USER", "id": "alice"} and created["grant"] == {
        "type": "POLICY",
        "id": "viewer",
    }
    got = client.assignment.get(pb.GetAssignmentRequest(assignment_id=created["assignment_id"], domain_id=domain))
    assert as_dict(got) == without_token(created)
    listed = client.assignment.list(
        parse(pb.AssignmentQuery, {"domain_id": domain, "subject": {"type": "USER", "id": "alice"}})
    )
    assert listed.total_count == 1
    client.assignment.delete(pb.AssignmentRequest(assignment_id=created["assignment_id"], domain_id=domain))
    expect_error(
        grpc.StatusCode.NOT_FOUND,
        client.assignment.get,
        pb.GetAssignmentRequest(assignment_id=created["assignment_id"], domain_id=domain),
    )


def test_check_right_after_writes_sees_them(client, domain):
    policy(client, domain, "reader", ["inventory.Server.read"])
    assert check(client, domain, "bob", "inventory.Server.read", "srv/1")["reason"] == "NO_MATCHING_ALLOW"
    create_sets(client, domain, groups=["everyone"], roles=["ops"])
    assign(client, domain, "USER", "bob", "ROLE", "ops")
    assign(client, domain, "ROLE", "ops", "POLICY", "reader")
    allowed = check(client, domain, "bob", "inventory.server.READ", "srv/1")
    assert allowed["decision"] == "ALLOW" and allowed["reason"] == "ALLOWED" and allowed["policy_id"] == "reader"
    assert allowed["via"] == [{"type": "USER", "id": "bob"}, {"type": "ROLE", "id": "ops"}]
    policy(
        client, domain, "no-prod", statements=[{"effect": "DENY", "actions": ["inventory.*"], "resources": ["srv/*"]}]
    )
    assign(client, domain, "GROUP", "everyone", "POLICY", "no-prod")
    assign(client, domain, "USER", "bob", "GROUP", "everyone")
    denied = check(client, domain, "bob", "inventory.Server.read", "srv/1")
    assert denied["decision"] == "DENY" and denied["reason"] == "EXPLICIT_DENY" and denied["policy_id"] == "no-prod"
    client.policy.update(
        parse(
            policy_pb2.UpdatePolicyRequest, {"policy_id": "no-prod", "domain_id": domain, "update_mask": "statements"}
        )
    )
    assert check(client, domain, "bob", "inventory.Server.read", "srv/1")["decision"] == "ALLOW"


def test_managed_policy_can_be_assigned(client, domain):
    assign(client, domain, "SERVICE_ACCOUNT", "robot", "POLICY", "managed-read-only")
    assert (
        check(client, domain, "robot", "inventory.Server.get", "x", subject_type="SERVICE_ACCOUNT")["decision"]
        == "ALLOW"
    )
    assert (
        check(client, domain, "robot", "inventory.Server.delete", "x", subject_type="SERVICE_ACCOUNT")["decision"]
        == "DENY"
    )


def test_group_cycle_is_harmless(client, domain):
    policy(client, domain, "p", ["a.b"])
    create_sets(client, domain, groups=["g1", "g2"])
    assign(client, domain, "GROUP", "g1", "GROUP", "g2")
    assign(client, domain, "GROUP", "g2", "GROUP", "g1")
    assign(client, domain, "GROUP", "g2", "POLICY", "p")
    assign(client, domain, "USER", "u", "GROUP", "g1")
    assert check(client, domain, "u", "a.b", "r")["decision"] == "ALLOW"
    assert check(client, domain, "u", "a.c", "r")["decision"] == "DENY"


def test_batch_add_is_idempotent_and_reports(client, domain):
    policy(client, domain, "p1", ["a.*"])
    policy(client, domain, "p2", ["b.*"])
    request = parse(
        pb.AssignmentsRequest,
        {
            "domain_id": domain,
            "grants": [{"type": "POLICY", "id": "p1"}, {"type": "POLICY", "id": "p2"}],
            "subject_type": "USER",
            "subject_ids": ["u1", "u2"],
        },
    )
    first = as_dict(client.assignment.add(request, timeout=10))
    assert first["changed_count"] == 4 and {r["outcome"] for r in first["results"]} == {"CREATED"}
    second = as_dict(client.assignment.add(request, timeout=10))
    assert second.get("changed_count", 0) == 0 and {r["outcome"] for r in second["results"]} == {"ALREADY_EXISTS"}
    removed = as_dict(
        client.assignment.remove(
            parse(
                pb.AssignmentsRequest,
                {
                    "domain_id": domain,
                    "grants": [{"type": "POLICY", "id": "p1"}],
                    "subject_type": "USER",
                    "subject_ids": ["u1", "nobody"],
                },
            ),
            timeout=10,
        )
    )
    assert removed["changed_count"] == 1
    assert [r["outcome"] for r in removed["results"]] == ["REMOVED", "NOT_FOUND"]
    assert client.assignment.list(pb.AssignmentQuery(domain_id=domain), timeout=10).total_count == 3


def test_batch_with_a_missing_policy_writes_nothing(client, domain):
    policy(client, domain, "p1", ["a.*"])
    error = expect_error(
        grpc.StatusCode.NOT_FOUND,
        client.assignment.add,
        parse(
            pb.AssignmentsRequest,
            {
                "domain_id": domain,
                "grants": [{"type": "POLICY", "id": "p1"}, {"type": "POLICY", "id": "ghost"}],
                "subject_type": "USER",
                "subject_ids": ["u1"],
            },
        ),
    )
    assert "ghost" in error.details()
    assert client.assignment.list(pb.AssignmentQuery(domain_id=domain), timeout=10).total_count == 0


def test_batch_of_10001_is_refused_and_writes_nothing(client, domain):
    create_sets(client, domain, groups=["g"])
    request = parse(
        pb.AssignmentsRequest,
        {
            "domain_id": domain,
            "grants": [{"type": "GROUP", "id": "g"}],
            "subject_type": "USER",
            "subject_ids": [f"u{i}" for i in range(10_001)],
        },
    )
    error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, client.assignment.add, request)
    assert field_violations(error) == ["subject_ids"]
    assert client.assignment.list(pb.AssignmentQuery(domain_id=domain), timeout=10).total_count == 0


@pytest.mark.parametrize(
    "body, field",
    [
        ({"subject": {"type": "ALIEN", "id": "x"}, "grant": {"type": "GROUP", "id": "g"}}, None),
        ({"subject": {"type": "USER", "id": "x"}}, "grant"),
        ({"subject": {"id": "x"}, "grant": {"type": "GROUP", "id": "g"}}, "subject.type"),
        ({"subject": {"type": "USER", "id": ""}, "grant": {"type": "GROUP", "id": "g"}}, "subject.id"),
        ({"subject": {"type": "USER", "id": "x"}, "grant": {"type": "GROUP", "id": ""}}, "grant.id"),
        ({"subject": {"type": "USER", "id": "x" * 129}, "grant": {"type": "GROUP", "id": "g"}}, "subject.id"),
        ({"subject": {"type": "USER", "id": "x"}, "grant": {"type": "POLICY", "id": "Bad_Id"}}, "grant.id"),
        (
            {
                "subject": {"type": "USER", "id": "x"},
                "grant": {"type": "GROUP", "id": "g"},
                "expires_at": "2001-01-01T00:00:00Z",
            },
            "expires_at",
        ),
        (
            {"subject": {"type": "USER", "id": "x"}, "grant": {"type": "GROUP", "id": "g"}, "expires_at": "soon"},
            "expires_at",
        ),
    ],
)
def test_bad_assignments_are_invalid_argument(client, domain, body, field):
    if field is None:
        # An unknown enum name cannot even be encoded: the client library refuses it.
        with pytest.raises(json_format.ParseError):
            parse(pb.CreateAssignmentRequest, {**body, "domain_id": domain})
        return
    # The group exists: the bad input is the only thing wrong (not a NOT_FOUND in disguise).
    create_sets(client, domain, groups=["g"])
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.assignment.create,
        parse(pb.CreateAssignmentRequest, {**body, "domain_id": domain}),
    )
    assert field_violations(error) == [field]


def test_unknown_enum_number_on_the_wire_is_invalid_argument(client, domain):
    create_sets(client, domain, groups=["g"])
    request = pb.CreateAssignmentRequest(
        subject=pb.Subject(type=42, id="x"), grant=pb.Grant(type=pb.Grant.GROUP, id="g"), domain_id=domain
    )
    error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, client.assignment.create, request)
    assert field_violations(error) == ["subject.type"]


def test_assigning_a_missing_or_foreign_policy_is_not_found(client, domain, other_domain):
    policy(client, other_domain, "theirs", ["a.b"])
    for policy_id in ("missing", "theirs"):
        expect_error(
            grpc.StatusCode.NOT_FOUND,
            client.assignment.create,
            parse(
                pb.CreateAssignmentRequest,
                {
                    "subject": {"type": "USER", "id": "u"},
                    "grant": {"type": "POLICY", "id": policy_id},
                    "domain_id": domain,
                },
            ),
        )


def test_duplicate_create_is_already_exists(client, domain):
    create_sets(client, domain, groups=["g"])
    assign(client, domain, "USER", "u", "GROUP", "g")
    expect_error(
        grpc.StatusCode.ALREADY_EXISTS,
        client.assignment.create,
        parse(
            pb.CreateAssignmentRequest,
            {"subject": {"type": "USER", "id": "u"}, "grant": {"type": "GROUP", "id": "g"}, "domain_id": domain},
        ),
    )


def test_other_domains_assignments_do_not_apply(client, domain, other_domain):
    policy(client, other_domain, "all", ["*"])
    assign(client, other_domain, "USER", "mallory", "POLICY", "all")
    assert check(client, domain, "mallory", "a.b", "r")["decision"] == "DENY"
    assert client.assignment.list(pb.AssignmentQuery(domain_id=domain), timeout=10).total_count == 0


def test_batch_check_in_order(client, domain):
    policy(client, domain, "p", ["a.read"])
    assign(client, domain, "USER", "u", "POLICY", "p")
    items = [
        {"subject": {"type": "USER", "id": "u"}, "action": "a.read" if i % 2 == 0 else "a.write", "resource": f"r{i}"}
        for i in range(1000)
    ]
    result = client.assignment.batch_check(
        parse(pb.BatchCheckRequest, {"domain_id": domain, "items": items}), timeout=30
    )
    assert [r.decision for r in result.results] == [
        pb.CheckResult.ALLOW if i % 2 == 0 else pb.CheckResult.DENY for i in range(1000)
    ]
    too_many = pb.BatchCheckRequest(
        domain_id=domain,
        items=[pb.CheckItem(subject=pb.Subject(type=pb.Subject.USER, id="u"), action="a", resource="r")] * 1_001,
    )
    error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, client.assignment.batch_check, too_many)
    assert field_violations(error) == ["items"]


def test_list_authorized_resources_and_subjects(client, domain):
    policy(
        client,
        domain,
        "srv",
        statements=[
            {
                "effect": "ALLOW",
                "actions": ["inventory.Server.read", "inventory.Server.write"],
                "resources": ["srv/web/*", "srv/db/*"],
            },
            {"effect": "DENY", "actions": ["inventory.Server.write"], "resources": ["srv/db/*"]},
        ],
    )
    create_sets(client, domain, groups=["ops"])
    assign(client, domain, "GROUP", "ops", "POLICY", "srv")
    assign(client, domain, "USER", "carol", "GROUP", "ops")
    found = as_dict(
        client.assignment.list_authorized_resources(
            parse(
                pb.ListAuthorizedResourcesRequest,
                {"domain_id": domain, "subject": {"type": "USER", "id": "carol"}, "resource_prefix": "srv/"},
            ),
            timeout=10,
        )
    )
    # write is wholly denied on srv/db/*, so it is left out rather than carried as an exception
    assert found["results"] == [
        {"resource": "srv/db/*", "actions": ["inventory.Server.read"]},
        {"resource": "srv/web/*", "actions": ["inventory.Server.read", "inventory.Server.write"]},
    ]
    holders = as_dict(client.assignment.list_subjects(pb.ListSubjectsRequest(domain_id=domain, policy_id="srv")))
    assert {(r["subject"]["type"], r["subject"]["id"]) for r in holders["results"]} == {
        ("GROUP", "ops"),
        ("USER", "carol"),
    }
    assert {r["policy_id"] for r in holders["results"]} == {"srv"}
    who = as_dict(
        client.assignment.list_subjects(
            pb.ListSubjectsRequest(domain_id=domain, action="inventory.Server.write", resource="srv/db/1")
        )
    )
    assert who.get("results", []) == []
    who = as_dict(
        client.assignment.list_subjects(
            pb.ListSubjectsRequest(domain_id=domain, action="inventory.Server.write", resource="srv/web/1")
        )
    )
    assert [(r["subject"]["id"], r["policy_id"]) for r in who["results"]] == [("ops", "srv"), ("carol", "srv")]
    effective = as_dict(
        client.assignment.effective_permissions(
            parse(pb.EffectivePermissionsRequest, {"domain_id": domain, "subject": {"type": "USER", "id": "carol"}})
        )
    )
    assert effective["total_count"] == 2 and effective["results"][1]["statement"]["effect"] == "DENY"
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT, client.assignment.list_subjects, pb.ListSubjectsRequest(domain_id=domain)
    )
    assert field_violations(error) == ["policy_id"]


def test_list_authorized_resources_carries_the_denies_that_apply(client, domain):
    """A sibling filtering with the answer must not over-grant: the deny comes with the entry."""
    policy(
        client,
        domain,
        "inv",
        permissions=["inventory.*"],
        statements=[{"effect": "DENY", "actions": ["inventory.Server.delete"], "resources": ["prod/*"]}],
    )
    assign(client, domain, "USER", "alice", "POLICY", "inv")
    found = as_dict(
        client.assignment.list_authorized_resources(
            parse(
                pb.ListAuthorizedResourcesRequest,
                {"domain_id": domain, "subject": {"type": "USER", "id": "alice"}, "action": "inventory.Server.delete"},
            ),
            timeout=10,
        )
    )
    assert found["results"] == [
        {
            "resource": "*",
            "actions": ["inventory.*"],
            "exceptions": [{"resource": "prod/*", "actions": ["inventory.Server.delete"]}],
        }
    ]
    decision = client.assignment.check(
        parse(
            pb.CheckRequest,
            {
                "domain_id": domain,
                "subject": {"type": "USER", "id": "alice"},
                "action": "inventory.Server.delete",
                "resource": "prod/web1",
            },
        ),
        timeout=10,
    )
    assert decision.decision == pb.CheckResult.DENY


def test_expired_assignment_does_not_apply_and_future_one_does(client, domain):
    policy(client, domain, "p", ["a.b"])
    assign(client, domain, "USER", "u", "POLICY", "p", expires_at="2999-01-01T00:00:00Z")
    assert check(client, domain, "u", "a.b", "r")["decision"] == "ALLOW"


def test_stat_on_assignments(client, domain):
    create_sets(client, domain, groups=["g"], roles=["r"])
    assign(client, domain, "USER", "u1", "GROUP", "g")
    assign(client, domain, "USER", "u2", "GROUP", "g")
    assign(client, domain, "GROUP", "g", "ROLE", "r")
    query = {
        "aggregate": [
            {
                "group": {
                    "keys": [{"key": "subject_type", "name": "type"}],
                    "fields": [{"operator": "count", "name": "n"}],
                }
            },
            {"sort": {"key": "type"}},
        ]
    }
    result = as_dict(client.assignment.stat(parse(pb.AssignmentStatQuery, {"domain_id": domain, "query": query})))
    assert result["results"] == [{"type": "GROUP", "n": 1}, {"type": "USER", "n": 2}]


@pytest.mark.parametrize(
    "action, resource, field",
    [
        ("", "r", "action"),
        ("a" * 513, "r", "action"),
        ("a.b", "", "resource"),
        ("a.b", "r" * 513, "resource"),
        (" a.b", "r", "action"),
    ],
)
def test_check_refuses_empty_or_absurd_patterns(client, domain, action, resource, field):
    request = parse(
        pb.CheckRequest,
        {"subject": {"type": "USER", "id": "u"}, "action": action, "resource": resource, "domain_id": domain},
    )
    error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, client.assignment.check, request)
    assert field_violations(error) == [field]


def test_check_requires_a_subject(client, domain):
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.assignment.check,
        pb.CheckRequest(action="a", resource="r", domain_id=domain),
    )
    assert field_violations(error) == ["subject"]


def test_unknown_grant_type_in_a_batch_is_invalid_argument_and_writes_nothing(client, domain):
    create_sets(client, domain, groups=["g"])
    request = pb.AssignmentsRequest(
        domain_id=domain,
        subject_type=pb.Subject.USER,
        subject_ids=["u"],
        grants=[pb.Grant(type=pb.Grant.GROUP, id="g"), pb.Grant(type=9, id="x")],
    )
    error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, client.assignment.add, request)
    assert field_violations(error) == ["grants[1].type"]
    assert client.assignment.list(pb.AssignmentQuery(domain_id=domain), timeout=10).total_count == 0


def test_list_authorized_resources_is_paginated(client, domain):
    policy(
        client,
        domain,
        "many",
        statements=[{"effect": "ALLOW", "actions": ["a.read"], "resources": [f"res/{i:02d}" for i in range(25)]}],
    )
    assign(client, domain, "USER", "u", "POLICY", "many")
    pages = []
    for start in (1, 11, 21):
        page = client.assignment.list_authorized_resources(
            parse(
                pb.ListAuthorizedResourcesRequest,
                {"domain_id": domain, "subject": {"type": "USER", "id": "u"}, "page": {"start": start, "limit": 10}},
            )
        )
        assert page.total_count == 25
        pages.extend(r.resource for r in page.results)
    assert pages == [f"res/{i:02d}" for i in range(25)]


def test_expires_at_out_of_range_is_invalid_argument(client, domain):
    create_sets(client, domain, groups=["g"])
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.assignment.create,
        parse(
            pb.CreateAssignmentRequest,
            {
                "subject": {"type": "USER", "id": "u"},
                "grant": {"type": "GROUP", "id": "g"},
                "expires_at": "9999-12-31T23:59:59-05:00",
                "domain_id": domain,
            },
        ),
    )
    assert field_violations(error) == ["expires_at"]


def test_large_batch_add_and_remove_answer_per_pair_and_audit_each_once(client, domain):
    """1,000 pairs (2 grants x 500 users): more than one database batch of subjects and of ids,
    some pairs there before. Each pair is answered, each change audited once, nothing else."""
    policy(client, domain, "p1", ["a.*"])
    policy(client, domain, "p2", ["b.*"])
    users = [f"u{i:04d}" for i in range(500)]
    before = {users[0], users[257], users[499]}
    for user in sorted(before):
        assign(client, domain, "USER", user, "POLICY", "p2")
    request = parse(
        pb.AssignmentsRequest,
        {
            "domain_id": domain,
            "grants": [{"type": "POLICY", "id": "p1"}, {"type": "POLICY", "id": "p2"}],
            "subject_type": "USER",
            "subject_ids": users,
        },
    )
    added = as_dict(client.assignment.add(request, timeout=120))
    expected = [
        (grant, user, "ALREADY_EXISTS" if grant == "p2" and user in before else "CREATED")
        for grant in ("p1", "p2")
        for user in users
    ]
    assert [(r["grant"]["id"], r["subject"]["id"], r["outcome"]) for r in added["results"]] == expected
    assert added["changed_count"] == 1000 - len(before)
    ids = [r["assignment_id"] for r in added["results"]]
    assert len(set(ids)) == 1000
    created = sorted(r["assignment_id"] for r in added["results"] if r["outcome"] == "CREATED")
    assert sorted(audited_ids(client, domain, "repository.Assignment.add")) == created
    assert client.assignment.list(pb.AssignmentQuery(domain_id=domain), timeout=30).total_count == 1000

    again = as_dict(client.assignment.add(request, timeout=120))
    assert [r["outcome"] for r in again["results"]] == ["ALREADY_EXISTS"] * 1000
    assert [r["assignment_id"] for r in again["results"]] == ids
    assert again.get("changed_count", 0) == 0

    removed = as_dict(client.assignment.remove(request, timeout=120))
    assert [r["outcome"] for r in removed["results"]] == ["REMOVED"] * 1000
    assert [r["assignment_id"] for r in removed["results"]] == ids
    assert removed["changed_count"] == 1000
    assert sorted(audited_ids(client, domain, "repository.Assignment.remove")) == sorted(ids)
    assert client.assignment.list(pb.AssignmentQuery(domain_id=domain), timeout=30).total_count == 0
    gone = as_dict(client.assignment.remove(request, timeout=120))
    assert [r["outcome"] for r in gone["results"]] == ["NOT_FOUND"] * 1000
