"""The audit trail: every mutation is recorded with who, what (before/after) and the transaction id."""

from __future__ import annotations

import grpc

from helpers import as_dict, create_sets, expect_error, field_violations, parse
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2 as apb
from policyhub._gen.spaceone.api.repository.v1 import audit_pb2 as pb
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def audits(client, domain, **fields):
    return [as_dict(a) for a in client.audit.list(pb.AuditQuery(domain_id=domain, **fields), timeout=10).results]


def test_policy_mutations_are_recorded_with_before_and_after(client, domain, other_domain):
    metadata = (("traceparent", f"00-{TRACE}-00f067aa0ba902b7-01"),)
    client.policy.create(
        policy_pb2.CreatePolicyRequest(policy_id="p", name="one", domain_id=domain), metadata=metadata, timeout=10
    )
    client.policy.update(policy_pb2.UpdatePolicyRequest(policy_id="p", name="two", domain_id=domain), timeout=10)
    client.policy.delete(policy_pb2.PolicyRequest(policy_id="p", domain_id=domain), timeout=10)
    entries = audits(client, domain, resource_id="p")
    assert [e["method"] for e in entries] == [
        "repository.Policy.create",
        "repository.Policy.update",
        "repository.Policy.delete",
    ]
    create, update, delete = entries
    assert create["transaction_id"] == TRACE and "before" not in create and create["after"]["name"] == "one"
    assert update["before"]["name"] == "one" and update["after"]["name"] == "two"
    assert update["transaction_id"] != TRACE and len(update["transaction_id"]) == 32
    assert delete["before"]["name"] == "two" and "after" not in delete
    assert all(e["caller_id"] and e["domain_id"] == domain and e["created_at"] for e in entries)
    assert audits(client, other_domain) == []


def test_batch_assignment_changes_are_recorded_per_assignment(client, domain):
    create_sets(client, domain, groups=["g"])
    client.assignment.add(
        parse(
            apb.AssignmentsRequest,
            {
                "domain_id": domain,
                "grants": [{"type": "GROUP", "id": "g"}],
                "subject_type": "USER",
                "subject_ids": ["a", "b", "c"],
            },
        ),
        timeout=10,
    )
    entries = audits(client, domain, resource_type="Assignment")
    assert len(entries) == 3 and {e["after"]["subject_id"] for e in entries} == {"a", "b", "c"}
    assert len({e["transaction_id"] for e in entries}) == 1


def test_audit_stat_and_bad_query(client, domain):
    client.policy.create(policy_pb2.CreatePolicyRequest(policy_id="s", name="s", domain_id=domain), timeout=10)
    query = {
        "aggregate": [
            {"group": {"keys": [{"key": "method", "name": "method"}], "fields": [{"operator": "count", "name": "n"}]}}
        ]
    }
    result = as_dict(client.audit.stat(parse(pb.AuditStatQuery, {"domain_id": domain, "query": query}), timeout=10))
    assert result["results"] == [{"method": "repository.Policy.create", "n": 1}]
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.audit.list,
        parse(pb.AuditQuery, {"domain_id": domain, "query": {"filter": [{"k": "method", "v": "x", "o": "nope"}]}}),
    )
    assert field_violations(error) == ["query.filter[0].o"]
