"""Safe policy lifecycle: soft delete and restore, cascade, purge, enable/disable, delete_many,
rename, and optimistic concurrency under concurrent writers."""

from __future__ import annotations

import threading
from datetime import timedelta

import grpc
import pytest

from helpers import (
    allowed,
    as_dict,
    audited,
    bulk_import,
    changes_after,
    edges,
    error_reason,
    expect_error,
    field_violations,
    grant_policy,
    parse,
    without_token,
)
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2 as apb
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2 as pb
from policyhub.service.context import utc_now


def create(client, domain, policy_id, **fields):
    return client.policy.create(
        parse(
            pb.CreatePolicyRequest,
            {"policy_id": policy_id, "name": policy_id, "domain_id": domain, "permissions": ["a.read"], **fields},
        ),
        timeout=10,
    )


def get(client, domain, policy_id, **extra):
    return client.policy.get(pb.GetRepositoryPolicyRequest(policy_id=policy_id, domain_id=domain, **extra), timeout=10)


def count(client, domain, **extra):
    return client.policy.list(pb.PolicyQuery(domain_id=domain, exclude_managed=True, **extra), timeout=10).total_count


def test_soft_delete_hides_and_restore_brings_back(client, domain):
    create(client, domain, "p")
    client.policy.disable(pb.PolicyRequest(policy_id="p", domain_id=domain), timeout=10)
    client.policy.delete(pb.PolicyRequest(policy_id="p", domain_id=domain), timeout=10)
    expect_error(
        grpc.StatusCode.NOT_FOUND, client.policy.get, pb.GetRepositoryPolicyRequest(policy_id="p", domain_id=domain)
    )
    assert count(client, domain) == 0
    deleted = get(client, domain, "p", include_deleted=True)
    assert deleted.state == pb.PolicyInfo.DELETED and deleted.deleted_at and deleted.purge_at > deleted.deleted_at
    assert count(client, domain, include_deleted=True) == 1 == count(client, domain, state=pb.PolicyQuery.DELETED)
    restored = client.policy.restore(pb.PolicyRequest(policy_id="p", domain_id=domain), timeout=10)
    assert restored.state == pb.PolicyInfo.DISABLED and not restored.deleted_at
    assert count(client, domain) == 1


def test_restore_errors(client, domain):
    create(client, domain, "live")
    error = expect_error(
        grpc.StatusCode.ALREADY_EXISTS, client.policy.restore, pb.PolicyRequest(policy_id="live", domain_id=domain)
    )
    assert "policy_id=live" in error.details() and "live policy holds this id" in error.details()
    expect_error(
        grpc.StatusCode.NOT_FOUND, client.policy.restore, pb.PolicyRequest(policy_id="never", domain_id=domain)
    )


def test_purged_policy_cannot_be_restored(client, domain):
    create(client, domain, "old")
    client.policy.delete(pb.PolicyRequest(policy_id="old", domain_id=domain), timeout=10)
    # Time passes beyond the retention period: the sweep purges it.
    lifecycle = client.app.services.policy_lifecycle
    assert "old" in {
        policy_id
        for _, policy_id in lifecycle.policies.purge_expired(utc_now() + lifecycle.retention + timedelta(seconds=1))
    }
    expect_error(grpc.StatusCode.NOT_FOUND, client.policy.restore, pb.PolicyRequest(policy_id="old", domain_id=domain))
    create(client, domain, "old")  # the id is free again


def test_delete_with_assignments_needs_cascade_and_restore_brings_them_back(client, domain):
    create(client, domain, "held")
    grant_policy(client, domain, "u1", "held")
    grant_policy(client, domain, "u2", "held")
    error = expect_error(
        grpc.StatusCode.FAILED_PRECONDITION, client.policy.delete, pb.PolicyRequest(policy_id="held", domain_id=domain)
    )
    assert "held (2)" in error.details() and "cascade" in error.details()
    assert get(client, domain, "held").state == pb.PolicyInfo.ENABLED
    client.policy.delete(pb.PolicyRequest(policy_id="held", domain_id=domain, cascade=True), timeout=10)
    assert client.assignment.list(apb.AssignmentQuery(domain_id=domain), timeout=10).total_count == 0
    assert not allowed(client, domain, "u1")
    client.policy.restore(pb.PolicyRequest(policy_id="held", domain_id=domain), timeout=10)
    assert client.assignment.list(apb.AssignmentQuery(domain_id=domain), timeout=10).total_count == 2
    assert allowed(client, domain, "u1") and allowed(client, domain, "u2")


def test_enable_disable_changes_decisions(client, domain):
    created = create(client, domain, "toggle")
    grant_policy(client, domain, "u", "toggle")
    assert allowed(client, domain, "u")
    disabled = client.policy.disable(pb.PolicyRequest(policy_id="toggle", domain_id=domain, etag=created.etag))
    assert disabled.state == pb.PolicyInfo.DISABLED and disabled.version == 2
    assert not allowed(client, domain, "u")
    expect_error(
        grpc.StatusCode.ABORTED,
        client.policy.enable,
        pb.PolicyRequest(policy_id="toggle", domain_id=domain, etag=created.etag),
    )
    client.policy.enable(pb.PolicyRequest(policy_id="toggle", domain_id=domain), timeout=10)
    assert allowed(client, domain, "u")
    error = expect_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        client.policy.disable,
        pb.PolicyRequest(policy_id="managed-read-only", domain_id=domain),
    )
    assert error_reason(error) == "ERROR_MANAGED_RESOURCE_READ_ONLY"


def test_delete_many_is_all_or_nothing(client, domain):
    for policy_id in ("m1", "m2", "m3"):
        create(client, domain, policy_id)
    error = expect_error(
        grpc.StatusCode.NOT_FOUND,
        client.policy.delete_many,
        pb.DeletePoliciesRequest(policy_ids=["m1", "ghost", "m2"], domain_id=domain),
    )
    assert "ghost" in error.details()
    assert count(client, domain) == 3
    grant_policy(client, domain, "u", "m3")
    expect_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        client.policy.delete_many,
        pb.DeletePoliciesRequest(policy_ids=["m1", "m3"], domain_id=domain),
    )
    assert count(client, domain) == 3
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.policy.delete_many,
        pb.DeletePoliciesRequest(policy_ids=["m1", "Bad"], domain_id=domain),
    )
    assert field_violations(error) == ["policy_ids[1]"]
    done = as_dict(
        client.policy.delete_many(pb.DeletePoliciesRequest(policy_ids=["m1", "m2", "m1"], domain_id=domain), timeout=10)
    )
    assert without_token(done) == {
        "results": [{"policy_id": "m1", "outcome": "DELETED"}, {"policy_id": "m2", "outcome": "DELETED"}],
        "deleted_count": 2,
    }
    assert count(client, domain) == 1
    expect_error(
        grpc.StatusCode.INVALID_ARGUMENT, client.policy.delete_many, pb.DeletePoliciesRequest(domain_id=domain)
    )


MANY = 1000  # ids per Policy/delete_many: the API's cap
ASSIGNED_EVERY = 10  # one policy in ten is granted to a user


def policy_ids(count: int = MANY) -> list[str]:
    return [f"b{i:04d}" for i in range(count)]


def seed_many(client, domain) -> set[tuple[str, str, str, str]]:
    """MANY policies, every ASSIGNED_EVERY-th granted to a user of its own; returns the edges."""
    items = [{"policy": {"policy_id": p, "name": p, "permissions": ["a.read"]}} for p in policy_ids()]
    items += [
        {"assignment": {"subject": {"type": "USER", "id": f"u-{p}"}, "grant": {"type": "POLICY", "id": p}}}
        for p in policy_ids()[::ASSIGNED_EVERY]
    ]
    bulk_import(client, domain, items, per_message=500)
    granted = edges(client, domain)
    assert len(granted) == MANY // ASSIGNED_EVERY
    return granted


def versions(client, domain) -> dict[str, int]:
    query = {"domain_id": domain, "exclude_managed": True, "query": {"page": {"limit": MANY}}}
    return {p.policy_id: p.version for p in client.policy.list(parse(pb.PolicyQuery, query), timeout=30).results}


def test_delete_many_of_a_thousand_ids_with_cascade(client, domain, long_calls):
    granted = seed_many(client, domain)
    ids = policy_ids()
    listed = client.assignment.list(apb.AssignmentQuery(domain_id=domain), timeout=10).results
    assignment_ids = [a.assignment_id for a in listed]
    _, before = changes_after(client, domain)
    # In use without cascade: the whole call is refused, naming the policies granted.
    error = expect_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        client.policy.delete_many,
        pb.DeletePoliciesRequest(policy_ids=ids, domain_id=domain),
        timeout=120,
    )
    assert "b0000 (1), b0010 (1)" in error.details()
    assert count(client, domain) == MANY and edges(client, domain) == granted
    assert changes_after(client, domain, before)[0] == []

    done = as_dict(
        client.policy.delete_many(pb.DeletePoliciesRequest(policy_ids=ids, domain_id=domain, cascade=True), timeout=120)
    )
    assert without_token(done) == {
        "results": [{"policy_id": p, "outcome": "DELETED"} for p in ids],
        "deleted_count": MANY,
    }
    assert count(client, domain) == 0 and edges(client, domain) == set()
    entries = audited(client, domain, "repository.Policy.delete_many")
    assert sorted(e["resource_id"] for e in entries) == ids
    assert len({e["transaction_id"] for e in entries}) == 1
    logged, _ = changes_after(client, domain, before)
    assert sorted(logged) == sorted(
        [("POLICY", p, "DELETE") for p in ids] + [("ASSIGNMENT", a, "DELETE") for a in assignment_ids]
    )
    # Each policy keeps its own assignments for restore.
    client.policy.restore(pb.PolicyRequest(policy_id="b0010", domain_id=domain), timeout=10)
    assert edges(client, domain) == {("USER", "u-b0010", "POLICY", "b0010")}
    client.policy.restore(pb.PolicyRequest(policy_id="b0011", domain_id=domain), timeout=10)
    assert len(edges(client, domain)) == 1


def test_delete_many_that_meets_a_concurrent_change_is_aborted_and_writes_nothing(
    client, domain, monkeypatch, long_calls
):
    granted = seed_many(client, domain)
    ids = policy_ids()
    _, before = changes_after(client, domain)
    manager = client.app.managers.policy
    original = manager.soft_delete_bulk

    def change_first(*args, **kwargs):
        # Another writer changes one policy after the delete read them all, before its write.
        client.policy.update(pb.UpdatePolicyRequest(policy_id="b0500", name="changed", domain_id=domain), timeout=10)
        return original(*args, **kwargs)

    monkeypatch.setattr(manager, "soft_delete_bulk", change_first)
    error = expect_error(
        grpc.StatusCode.ABORTED,
        client.policy.delete_many,
        pb.DeletePoliciesRequest(policy_ids=ids, domain_id=domain, cascade=True),
        timeout=120,
    )
    assert error_reason(error) == "ERROR_CONCURRENT_CHANGE"
    # The 999 others were soft-deleted in the same bulk write and put back exactly as they were.
    assert versions(client, domain) == {p: 2 if p == "b0500" else 1 for p in ids}
    assert get(client, domain, "b0500").name == "changed"
    assert edges(client, domain) == granted
    assert changes_after(client, domain, before)[0] == [("POLICY", "b0500", "UPDATE")]
    assert audited(client, domain, "repository.Policy.delete_many") == []


@pytest.mark.parametrize("cascade", [False, True])
def test_delete_many_sees_an_assignment_added_during_it(client, domain, monkeypatch, cascade):
    ids = policy_ids(250)  # more than one `$in` batch
    for p in ids[:2]:
        create(client, domain, p)
    bulk_import(client, domain, [{"policy": {"policy_id": p, "name": p}} for p in ids[2:]], per_message=250)
    manager = client.app.managers.policy
    original = manager.soft_delete_bulk

    def assign_first(*args, **kwargs):
        # An assignment lands after the delete counted assignments, before its write.
        grant_policy(client, domain, "late", "b0249")
        return original(*args, **kwargs)

    monkeypatch.setattr(manager, "soft_delete_bulk", assign_first)
    request = pb.DeletePoliciesRequest(policy_ids=ids, domain_id=domain, cascade=cascade)
    if cascade:
        assert client.policy.delete_many(request, timeout=60).deleted_count == len(ids)
        assert count(client, domain) == 0 and edges(client, domain) == set()
        monkeypatch.undo()
        client.policy.restore(pb.PolicyRequest(policy_id="b0249", domain_id=domain), timeout=10)
        assert edges(client, domain) == {("USER", "late", "POLICY", "b0249")}
    else:
        error = expect_error(grpc.StatusCode.FAILED_PRECONDITION, client.policy.delete_many, request)
        assert "b0249 (1)" in error.details()
        assert versions(client, domain) == dict.fromkeys(ids, 1)


def test_rename_keeps_assignments_attached(client, domain):
    create(client, domain, "old-name")
    create(client, domain, "taken")
    grant_policy(client, domain, "u", "old-name")
    renamed = client.policy.update(
        pb.UpdatePolicyRequest(policy_id="old-name", new_policy_id="new-name", domain_id=domain), timeout=10
    )
    assert renamed.policy_id == "new-name" and renamed.version == 2
    expect_error(
        grpc.StatusCode.NOT_FOUND,
        client.policy.get,
        pb.GetRepositoryPolicyRequest(policy_id="old-name", domain_id=domain),
    )
    grants = client.assignment.list(apb.AssignmentQuery(domain_id=domain), timeout=10).results
    assert [a.grant.id for a in grants] == ["new-name"]
    assert allowed(client, domain, "u")
    expect_error(
        grpc.StatusCode.ALREADY_EXISTS,
        client.policy.update,
        pb.UpdatePolicyRequest(policy_id="new-name", new_policy_id="taken", domain_id=domain),
    )
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.policy.update,
        pb.UpdatePolicyRequest(policy_id="new-name", new_policy_id="Bad_Id", domain_id=domain),
    )
    assert field_violations(error) == ["new_policy_id"]
    expect_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        client.policy.update,
        pb.UpdatePolicyRequest(policy_id="new-name", new_policy_id="managed-mine", domain_id=domain),
    )
    assert get(client, domain, "new-name").version == 2


def test_concurrent_writers_lose_no_update(client, domain):
    create(client, domain, "shared", labels=[])
    writers, rounds = 6, 4

    def writer(index: int) -> None:
        for round_ in range(rounds):
            while True:
                current = get(client, domain, "shared")
                labels = list(as_dict(current).get("labels", [])) + [f"w{index}-{round_}"]
                try:
                    client.policy.update(
                        parse(
                            pb.UpdatePolicyRequest,
                            {"policy_id": "shared", "domain_id": domain, "labels": labels, "etag": current.etag},
                        ),
                        timeout=10,
                    )
                    break
                except grpc.RpcError as error:
                    assert error.code() == grpc.StatusCode.ABORTED

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    final = get(client, domain, "shared")
    assert sorted(as_dict(final)["labels"]) == sorted(f"w{i}-{r}" for i in range(writers) for r in range(rounds))
    assert final.version == 1 + writers * rounds


def test_assignment_added_during_a_delete_is_undone(client, domain, monkeypatch):
    client.policy.create(pb.CreatePolicyRequest(policy_id="racy", name="n", domain_id=domain), timeout=10)
    manager = client.app.managers.assignment
    original = manager.insert_new

    def delete_first(records):
        # The policy is deleted after the add's existence check, before its insert.
        client.policy.delete(pb.PolicyRequest(policy_id="racy", domain_id=domain), timeout=10)
        return original(records)

    monkeypatch.setattr(manager, "insert_new", delete_first)
    expect_error(
        grpc.StatusCode.NOT_FOUND,
        client.assignment.add,
        parse(
            apb.AssignmentsRequest,
            {
                "domain_id": domain,
                "grants": [{"type": "POLICY", "id": "racy"}],
                "subject_type": "USER",
                "subject_ids": ["u"],
            },
        ),
    )
    assert client.assignment.list(apb.AssignmentQuery(domain_id=domain), timeout=10).total_count == 0


@pytest.mark.parametrize("cascade", [False, True])
def test_delete_sees_an_assignment_added_during_it(client, domain, monkeypatch, cascade):
    client.policy.create(pb.CreatePolicyRequest(policy_id="racy", name="n", domain_id=domain), timeout=10)
    manager = client.app.managers.policy
    original = manager.soft_delete

    def assign_first(*args, **kwargs):
        # An assignment lands after the delete counted assignments, before its write.
        grant_policy(client, domain, "late", "racy")
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
