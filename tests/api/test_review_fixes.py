"""Regression tests for the review findings: privilege escalation through assignments and
renames, races between assignment writes and policy deletes, inputs that used to answer INTERNAL."""
from __future__ import annotations

import grpc
import pytest

from helpers import as_dict, expect_error, field_violations, parse
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2 as apb
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2 as pb


def admin(secure, domain):
    return secure.metadata(f"admin-{domain}", did=domain, rol="DOMAIN_ADMIN")


def grant(stub, domain, metadata, user, policy_id, subject_type="USER"):
    return stub.assignment.create(parse(apb.CreateAssignmentRequest, {
        "subject": {"type": subject_type, "id": user}, "grant": {"type": "POLICY", "id": policy_id},
        "domain_id": domain}), metadata=metadata, timeout=10)


def test_assignment_rights_are_scoped_to_the_granted_policy(secure, domain):
    md = admin(secure, domain)
    secure.policy.create(parse(pb.CreatePolicyRequest, {
        "policy_id": "team-granter", "name": "n", "domain_id": domain, "statements": [
            {"effect": "ALLOW", "actions": ["repository.Assignment.create"], "resources": ["policy/team-*"]},
            {"effect": "ALLOW", "actions": ["repository.Policy.update", "repository.Policy.create"],
             "resources": ["policy/team-*"]}]}), metadata=md, timeout=10)
    secure.policy.create(pb.CreatePolicyRequest(policy_id="team-x", name="x", domain_id=domain), metadata=md)
    grant(secure, domain, md, "bob", "team-granter")
    bob = secure.metadata("bob", did=domain)
    grant(secure, domain, bob, "carol", "team-x")
    error = expect_error(grpc.StatusCode.PERMISSION_DENIED, secure.assignment.create, parse(
        apb.CreateAssignmentRequest, {"subject": {"type": "USER", "id": "bob"},
                                      "grant": {"type": "POLICY", "id": "managed-full-access"}, "domain_id": domain}),
        metadata=bob)
    assert "policy/managed-full-access" in error.details()
    error = expect_error(grpc.StatusCode.PERMISSION_DENIED, secure.policy.update,
                         pb.UpdatePolicyRequest(policy_id="team-x", new_policy_id="admin-root", domain_id=domain),
                         metadata=bob)
    assert "policy/admin-root" in error.details()
    renamed = secure.policy.update(pb.UpdatePolicyRequest(policy_id="team-x", new_policy_id="team-y",
                                                          domain_id=domain), metadata=bob, timeout=10)
    assert renamed.policy_id == "team-y"


def test_assignment_added_during_a_delete_is_undone(client, domain, monkeypatch):
    client.policy.create(pb.CreatePolicyRequest(policy_id="racy", name="n", domain_id=domain), timeout=10)
    manager = client.app.assignment_api.assignments.assignments
    original = manager.insert_new

    def delete_first(records):
        # The policy is deleted after the add's existence check, before its insert.
        client.policy.delete(pb.PolicyRequest(policy_id="racy", domain_id=domain), timeout=10)
        return original(records)
    monkeypatch.setattr(manager, "insert_new", delete_first)
    expect_error(grpc.StatusCode.NOT_FOUND, client.assignment.add, parse(apb.AssignmentsRequest, {
        "domain_id": domain, "grants": [{"type": "POLICY", "id": "racy"}], "subject_type": "USER",
        "subject_ids": ["u"]}))
    assert client.assignment.list(apb.AssignmentQuery(domain_id=domain), timeout=10).total_count == 0


@pytest.mark.parametrize("cascade", [False, True])
def test_delete_sees_an_assignment_added_during_it(client, domain, monkeypatch, cascade):
    client.policy.create(pb.CreatePolicyRequest(policy_id="racy", name="n", domain_id=domain), timeout=10)
    manager = client.app.policy_api.service.policies
    original = manager.soft_delete

    def assign_first(*args, **kwargs):
        # An assignment lands after the delete counted assignments, before its write.
        grant(client, domain, (), "late", "racy")
        original(*args, **kwargs)
    monkeypatch.setattr(manager, "soft_delete", assign_first)
    request = pb.PolicyRequest(policy_id="racy", domain_id=domain, cascade=cascade)
    if cascade:
        client.policy.delete(request, timeout=10)
        assert client.assignment.list(apb.AssignmentQuery(domain_id=domain), timeout=10).total_count == 0
        monkeypatch.undo()
        client.policy.restore(pb.PolicyRequest(policy_id="racy", domain_id=domain), timeout=10)
        assert client.assignment.list(apb.AssignmentQuery(domain_id=domain), timeout=10).total_count == 1
    else:
        expect_error(grpc.StatusCode.FAILED_PRECONDITION, client.policy.delete, request)
        got = client.policy.get(pb.GetRepositoryPolicyRequest(policy_id="racy", domain_id=domain), timeout=10)
        assert got.state == pb.PolicyInfo.ENABLED


@pytest.mark.parametrize("body, field", [
    ({"tags": {"x": float("nan")}}, "tags"),
    ({"labels": [float("inf")]}, "labels"),
    ({"statements": [{"effect": "ALLOW", "actions": ["a"], "resources": ["*"], "conditions": {"x": float("-inf")}}]},
     "statements[0].conditions"),
])
def test_nan_and_infinity_are_invalid_argument(client, domain, body, field):
    request = parse(pb.CreatePolicyRequest, {"policy_id": "nan", "name": "n", "domain_id": domain, **body})
    error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, client.policy.create, request)
    assert field_violations(error) == [field]


def test_nan_in_a_query_value_is_invalid_argument(client, domain):
    request = parse(pb.PolicyQuery, {"domain_id": domain, "query": {"filter": [
        {"k": "version", "v": [1, float("nan")], "o": "in"}]}})
    error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, client.policy.list, request)
    assert field_violations(error) == ["query"]


def test_huge_whole_numbers_are_stored_as_doubles(client, domain):
    created = client.policy.create(parse(pb.CreatePolicyRequest, {
        "policy_id": "big", "name": "n", "domain_id": domain, "labels": [1e20], "tags": {"x": 1e19}}), timeout=10)
    assert as_dict(created)["labels"] == [1e20] and as_dict(created)["tags"] == {"x": 1e19}


def test_expires_at_out_of_range_is_invalid_argument(client, domain):
    error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, client.assignment.create, parse(
        apb.CreateAssignmentRequest, {"subject": {"type": "USER", "id": "u"}, "grant": {"type": "GROUP", "id": "g"},
                                      "expires_at": "9999-12-31T23:59:59-05:00", "domain_id": domain}))
    assert field_violations(error) == ["expires_at"]


def test_only_with_half_of_a_pair_still_answers(client, domain):
    grant(client, domain, (), "u", "managed-read-only")
    for only in (["subject_type"], ["grant_id"]):
        listed = client.assignment.list(parse(apb.AssignmentQuery, {"domain_id": domain, "query": {"only": only}}),
                                        timeout=10)
        assert listed.total_count == 1
    client.policy.create(parse(pb.CreatePolicyRequest, {"policy_id": "st", "name": "n", "domain_id": domain,
                                                        "statements": [{"effect": "DENY", "actions": ["a"],
                                                                        "resources": ["*"]}]}), timeout=10)
    listed = client.policy.list(parse(pb.PolicyQuery, {"domain_id": domain, "exclude_managed": True,
                                                       "query": {"only": ["statements.actions"]}}), timeout=10)
    assert [list(s.actions) for s in listed.results[0].statements] == [["a"]]


def test_stat_the_store_cannot_evaluate_is_invalid_argument_not_internal(client, domain):
    client.policy.create(pb.CreatePolicyRequest(policy_id="s", name="n", domain_id=domain), timeout=10)
    query = {"aggregate": [{"group": {"keys": [{"k": "name", "n": "m", "date_format": "%Y"}],
                                      "fields": [{"o": "count", "n": "c"}]}}]}
    error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, client.policy.stat,
                         parse(pb.PolicyStatQuery, {"domain_id": domain, "query": query}))
    assert field_violations(error) == ["query"]
