"""SpaceONE behaviours of the policy lifecycle and of lists: a deleted id can be created again,
a deleted policy is not found, an unknown repository is not found, and lists without `sort`
come oldest first (insertion order on equal created_at), stable across pages (repositories:
test_remote_repository.py)."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest

from helpers import allowed, expect_error, field_violations, grant_policy, parse
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2 as apb
from policyhub._gen.spaceone.api.repository.v1 import audit_pb2
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2 as pb
from policyhub.service.context import utc_now


def create(client, domain, policy_id, name, permissions):
    return client.policy.create(
        pb.CreatePolicyRequest(policy_id=policy_id, name=name, permissions=permissions, domain_id=domain), timeout=10
    )


def assignment_count(client, domain):
    return client.assignment.list(apb.AssignmentQuery(domain_id=domain), timeout=10).total_count


def request(domain, policy_id="p", **fields):
    return pb.PolicyRequest(policy_id=policy_id, domain_id=domain, **fields)


def test_a_deleted_id_can_be_created_again_and_the_deleted_one_stays_restorable(client, domain):
    create(client, domain, "p", "first", ["a.read"])
    grant_policy(client, domain, "u", "p")
    client.policy.delete(request(domain, cascade=True), timeout=10)

    second = create(client, domain, "p", "second", ["b.read"])
    assert second.version == 1 and second.state == pb.PolicyInfo.ENABLED
    # The assignment parked on the deleted policy does not attach to the new one.
    assert assignment_count(client, domain) == 0
    assert not allowed(client, domain, "u", "a.read") and not allowed(client, domain, "u", "b.read")
    expect_error(
        grpc.StatusCode.ALREADY_EXISTS,
        client.policy.create,
        pb.CreatePolicyRequest(policy_id="p", name="x", domain_id=domain),
    )
    got = client.policy.get(
        pb.GetRepositoryPolicyRequest(policy_id="p", domain_id=domain, include_deleted=True), timeout=10
    )
    assert got.name == "second"
    listed = client.policy.list(
        pb.PolicyQuery(domain_id=domain, exclude_managed=True, include_deleted=True), timeout=10
    )
    assert [(p.name, p.state) for p in listed.results] == [
        ("first", pb.PolicyInfo.DELETED),
        ("second", pb.PolicyInfo.ENABLED),
    ]

    error = expect_error(grpc.StatusCode.ALREADY_EXISTS, client.policy.restore, request(domain))
    assert "policy_id=p" in error.details() and "live policy" in error.details()

    # Once the live one is deleted in turn, restore brings back the latest deleted record.
    client.policy.delete(request(domain), timeout=10)
    assert client.policy.restore(request(domain), timeout=10).name == "second"
    client.policy.delete(request(domain), timeout=10)
    assert client.policy.restore(request(domain), timeout=10).name == "second"
    assert assignment_count(client, domain) == 0
    client.policy.delete(request(domain), timeout=10)
    # With "second" restored and deleted again, the remaining deleted "first" is still listed under its own record.
    listed = client.policy.list(
        pb.PolicyQuery(domain_id=domain, exclude_managed=True, state=pb.PolicyQuery.DELETED), timeout=10
    )
    assert sorted(p.name for p in listed.results) == ["first", "second"]

    methods = [
        a.method
        for a in client.audit.list(audit_pb2.AuditQuery(domain_id=domain), timeout=10).results
        if a.resource_id == "p"
    ]
    assert methods == [
        "repository.Policy.create",
        "repository.Policy.delete",
        "repository.Policy.create",
        "repository.Policy.delete",
        "repository.Policy.restore",
        "repository.Policy.delete",
        "repository.Policy.restore",
        "repository.Policy.delete",
    ]


def test_restore_of_the_first_record_brings_its_parked_assignments_back(client, domain):
    create(client, domain, "p", "first", ["a.read"])
    grant_policy(client, domain, "u", "p")
    client.policy.delete(request(domain, cascade=True), timeout=10)
    create(client, domain, "p", "second", ["b.read"])
    grant_policy(client, domain, "v", "p")
    assert allowed(client, domain, "v", "b.read") and not allowed(client, domain, "u", "b.read")
    client.policy.delete(request(domain, cascade=True), timeout=10)
    restored = client.policy.restore(request(domain), timeout=10)
    assert restored.name == "second"
    assert allowed(client, domain, "v", "b.read") and not allowed(client, domain, "u", "a.read")


def test_purge_removes_only_the_deleted_record(client, domain, monkeypatch):
    create(client, domain, "p", "first", ["a.read"])
    client.policy.delete(request(domain), timeout=10)
    create(client, domain, "p", "second", ["b.read"])
    grant_policy(client, domain, "u", "p")
    lifecycle = client.app.services.policy_lifecycle
    retention_over = utc_now() + lifecycle.retention + timedelta(seconds=1)
    monkeypatch.setattr(lifecycle, "clock", lambda: retention_over)
    assert lifecycle.purge_expired() >= 1
    monkeypatch.undo()
    listed = client.policy.list(
        pb.PolicyQuery(domain_id=domain, exclude_managed=True, include_deleted=True), timeout=10
    )
    assert [p.name for p in listed.results] == ["second"]
    assert assignment_count(client, domain) == 1 and allowed(client, domain, "u", "b.read")
    expect_error(grpc.StatusCode.ALREADY_EXISTS, client.policy.restore, request(domain))


def test_a_deleted_policy_is_not_found(client, domain):
    created = create(client, domain, "p", "p", ["a.read"])
    client.policy.delete(request(domain), timeout=10)
    calls = [
        (client.policy.delete, request(domain)),
        (client.policy.delete, request(domain, etag=created.etag)),
        (client.policy.update, pb.UpdatePolicyRequest(policy_id="p", name="x", domain_id=domain)),
        (client.policy.enable, request(domain)),
        (client.policy.disable, request(domain)),
        (client.policy.get, pb.GetRepositoryPolicyRequest(policy_id="p", domain_id=domain)),
        (client.policy.delete_many, pb.DeletePoliciesRequest(policy_ids=["p"], domain_id=domain)),
    ]
    for call, message in calls:
        expect_error(grpc.StatusCode.NOT_FOUND, call, message)
    error = expect_error(grpc.StatusCode.NOT_FOUND, client.policy.delete, request(domain))
    assert "restorable" in error.details()
    # Only restore and include_deleted see it.
    assert (
        client.policy.get(pb.GetRepositoryPolicyRequest(policy_id="p", domain_id=domain, include_deleted=True)).state
        == pb.PolicyInfo.DELETED
    )
    assert client.policy.restore(request(domain), timeout=10).state == pb.PolicyInfo.ENABLED
    error = expect_error(grpc.StatusCode.NOT_FOUND, client.policy.delete, request(domain, policy_id="never"))
    assert "restorable" not in error.details()


def test_unknown_repository_is_not_found_in_list_and_stat(client, domain):
    create(client, domain, "p", "p", ["a.read"])
    expect_error(
        grpc.StatusCode.NOT_FOUND, client.policy.list, pb.PolicyQuery(repository_id="repo-nope", domain_id=domain)
    )
    expect_error(
        grpc.StatusCode.NOT_FOUND,
        client.policy.stat,
        parse(
            pb.PolicyStatQuery,
            {
                "repository_id": "repo-nope",
                "domain_id": domain,
                "query": {"aggregate": [{"count": {"name": "n"}}]},
            },
        ),
    )
    expect_error(
        grpc.StatusCode.NOT_FOUND,
        client.policy.get,
        pb.GetRepositoryPolicyRequest(policy_id="p", repository_id="repo-nope", domain_id=domain),
    )
    local = client.policy.list(pb.PolicyQuery(repository_id="repo-local", domain_id=domain), timeout=10)
    assert [p.policy_id for p in local.results] == ["p"]


@pytest.fixture
def frozen(client, monkeypatch):
    """Every clock that stamps created_at stops: equal created_at everywhere."""
    instant = utc_now()
    services = client.app.services
    for owner in (services.policy, services.assignment.writer, services.policy.audit):
        monkeypatch.setattr(owner, "clock", lambda: instant)
    return instant


def pages(call, query_type, domain, size, total, **fields):
    ids = []
    for start in range(1, total + 1, size):
        query = parse(query_type, {"domain_id": domain, "query": {"page": {"start": start, "limit": size}}, **fields})
        ids.append(call(query, timeout=10).results)
    return [item for page in ids for item in page]


def test_lists_without_sort_come_oldest_first_then_in_insertion_order(client, domain, frozen, monkeypatch):
    order = ["p-m", "p-z", "p-a", "p-q", "p-b"]
    for policy_id in order:
        create(client, domain, policy_id, policy_id, ["a.read"])
    listed = pages(client.policy.list, pb.PolicyQuery, domain, 2, len(order), exclude_managed=True)
    assert [p.policy_id for p in listed] == order
    assert {p.created_at for p in listed} == {listed[0].created_at}
    # created_at decides before insertion order: an older policy stored later still comes first.
    policies = client.app.services.policy
    for policy_id, shift in (("p-late", 1), ("p-early", -1)):
        monkeypatch.setattr(policies, "clock", lambda shift=shift: frozen + timedelta(seconds=shift))
        create(client, domain, policy_id, policy_id, ["a.read"])
    listed = pages(client.policy.list, pb.PolicyQuery, domain, 3, len(order) + 2, exclude_managed=True)
    assert [p.policy_id for p in listed] == ["p-early", *order, "p-late"]

    users = ["u-m", "u-z", "u-a", "u-q"]
    for user in users:
        grant_policy(client, domain, user, "p-a")
    listed = pages(client.assignment.list, apb.AssignmentQuery, domain, 3, len(users))
    assert [a.subject.id for a in listed] == users

    audited = pages(client.audit.list, audit_pb2.AuditQuery, domain, 4, len(order) + len(users))
    assert [a.resource_id for a in audited][: len(order)] == order


def test_list_without_domain_id_in_development_mode_is_refused(client):
    # SpaceONE lists every domain here; nothing may be visible across domains.
    for call, message in ((client.policy.list, pb.PolicyQuery()), (client.assignment.list, apb.AssignmentQuery())):
        assert field_violations(expect_error(grpc.StatusCode.INVALID_ARGUMENT, call, message)) == ["domain_id"]
