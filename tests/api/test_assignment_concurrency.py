"""Batch add/remove under concurrency: a pair created or removed meanwhile by someone else is
an outcome of its item, never an error of the call, and each change is counted and audited by
exactly one caller."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from datetime import datetime, timezone

import grpc
import pytest

from helpers import as_dict, audited_ids, create_sets, expect_error, parse
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2 as pb
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2
from policyhub.domain import Operation
from policyhub.manager.assignment_manager import CLAIM_SECONDS
from policyhub.manager.database import collection
from policyhub.model import AssignmentDocument
from policyhub.service.invalidation import assignment_change

THREADS, CALLS = 8, 30
SUBJECTS = [f"u{i}" for i in range(10)]
GRANTS = [
    {"type": "POLICY", "id": "p1"},
    {"type": "POLICY", "id": "p2"},
    {"type": "GROUP", "id": "g1"},
    {"type": "ROLE", "id": "r1"},
]


def batch(domain, grants, subject_ids):
    return parse(
        pb.AssignmentsRequest,
        {"domain_id": domain, "grants": grants, "subject_type": "USER", "subject_ids": subject_ids},
    )


def policies(client, domain, *policy_ids):
    for policy_id in policy_ids:
        client.policy.create(
            policy_pb2.CreatePolicyRequest(
                policy_id=policy_id, name=policy_id, domain_id=domain, permissions=[f"{policy_id}.read"]
            ),
            timeout=10,
        )


def stored(client, domain) -> dict[tuple, str]:
    """(subject_id, grant_type, grant_id) -> assignment_id of every assignment of the domain."""
    raw = list(collection(AssignmentDocument).find({"domain_id": domain}))
    pairs = Counter((a["subject_id"], a["grant_type"], a["grant_id"]) for a in raw)
    assert all(n == 1 for n in pairs.values()), pairs
    listed = client.assignment.list(pb.AssignmentQuery(domain_id=domain), timeout=10)
    assert listed.total_count == len(raw)
    return {(a["subject_id"], a["grant_type"], a["grant_id"]): a["assignment_id"] for a in raw}


def audited(client, domain, method) -> Counter:
    """How many audit entries each assignment id has for `method`."""
    return Counter(audited_ids(client, domain, method))


def hammer(client, call, requests_per_thread) -> list[dict]:
    """Runs every thread's requests at once; returns the answers, failing on any error."""
    answers, errors = [], []
    start = threading.Barrier(len(requests_per_thread))

    def run(requests):
        start.wait()
        for request in requests:
            try:
                answers.append(as_dict(call(request, timeout=30)))
            except grpc.RpcError as error:
                errors.append(f"{error.code()}: {error.details()}")

    threads = [threading.Thread(target=run, args=(requests,)) for requests in requests_per_thread]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [], f"{len(errors)} calls failed, e.g. {errors[:3]}"
    return answers


def overlapping_requests(domain, seed):
    rng = random.Random(seed)
    return [
        [batch(domain, rng.sample(GRANTS, 2), rng.sample(SUBJECTS, 4)) for _ in range(CALLS)] for _ in range(THREADS)
    ]


def item_key(item) -> tuple:
    return item["subject"]["id"], item["grant"]["type"], item["grant"]["id"]


def test_concurrent_adds_on_overlapping_pairs_never_fail(client, domain):
    policies(client, domain, "p1", "p2")
    create_sets(client, domain, groups=["g1"], roles=["r1"])
    answers = hammer(client, client.assignment.add, overlapping_requests(domain, 1))
    final = stored(client, domain)
    items = [item for answer in answers for item in answer["results"]]
    created = [item for item in items if item["outcome"] == "CREATED"]
    assert len(created) == len(final) == len({item_key(item) for item in items})
    assert sorted(item["assignment_id"] for item in created) == sorted(final.values())
    assert sum(answer.get("changed_count", 0) for answer in answers) == len(final)
    assert all(final[item_key(item)] == item["assignment_id"] for item in items)
    assert {item["outcome"] for item in items} == {"CREATED", "ALREADY_EXISTS"}
    assert audited(client, domain, "repository.Assignment.add") == Counter(final.values())


def test_concurrent_removes_on_overlapping_pairs_never_fail(client, domain):
    policies(client, domain, "p1", "p2")
    create_sets(client, domain, groups=["g1"], roles=["r1"])
    client.assignment.add(batch(domain, GRANTS, SUBJECTS), timeout=30)
    before = stored(client, domain)
    answers = hammer(client, client.assignment.remove, overlapping_requests(domain, 2))
    # What no call happened to pick goes last, so every pair was removed by someone.
    answers.append(as_dict(client.assignment.remove(batch(domain, GRANTS, SUBJECTS), timeout=30)))
    assert stored(client, domain) == {}
    items = [item for answer in answers for item in answer["results"]]
    removed = [item for item in items if item["outcome"] == "REMOVED"]
    assert sorted(item["assignment_id"] for item in removed) == sorted(before.values())
    assert all(before[item_key(item)] == item["assignment_id"] for item in removed)
    assert sum(answer.get("changed_count", 0) for answer in answers) == len(before)
    assert all(item.get("assignment_id", "") == "" for item in items if item["outcome"] == "NOT_FOUND")
    assert audited(client, domain, "repository.Assignment.remove") == Counter(before.values())


def rival_between_read_and_write(monkeypatch, client, act):
    """Runs `act` once, right after the service has read which pairs exist: what a concurrent
    caller does in that window, without relying on thread timing."""
    manager = client.app.managers.assignment
    read = manager.find_by_keys
    done = []

    def find_by_keys(*args, **kwargs):
        found = read(*args, **kwargs)
        if not done:
            done.append(act(manager))
        return found

    monkeypatch.setattr(manager, "find_by_keys", find_by_keys)
    return done


def rival_record(domain, subject_id, grant_type, grant_id) -> dict:
    return {
        "assignment_id": "asg-rival",
        "subject_type": "USER",
        "subject_id": subject_id,
        "grant_type": grant_type,
        "grant_id": grant_id,
        "domain_id": domain,
        "created_at": datetime.now(timezone.utc),
    }


def check(client, domain, subject_id, action):
    return client.assignment.check(
        parse(
            pb.CheckRequest,
            {"subject": {"type": "USER", "id": subject_id}, "action": action, "resource": "r", "domain_id": domain},
        ),
        timeout=10,
    ).decision


def test_a_pair_created_between_read_and_insert_is_reported_already_exists(client, domain, monkeypatch):
    policies(client, domain, "p1")
    assert check(client, domain, "b", "p1.read") == pb.CheckResult.DENY  # the domain's index is now cached
    rival = rival_record(domain, "b", "POLICY", "p1")

    def rival_write(manager):
        # As every write does: the insert, then the revision bump that logs it.
        manager.create(rival)
        client.app.managers.revision.bump(domain, [assignment_change(rival, Operation.CREATE)])

    rival_between_read_and_write(monkeypatch, client, rival_write)
    answer = as_dict(
        client.assignment.add(batch(domain, [{"type": "POLICY", "id": "p1"}], ["a", "b", "c"]), timeout=10)
    )
    assert [(item["subject"]["id"], item["outcome"]) for item in answer["results"]] == [
        ("a", "CREATED"),
        ("b", "ALREADY_EXISTS"),
        ("c", "CREATED"),
    ]
    assert answer["results"][1]["assignment_id"] == "asg-rival"
    assert answer["changed_count"] == 2
    final = stored(client, domain)
    assert final == {
        ("a", "POLICY", "p1"): answer["results"][0]["assignment_id"],
        ("b", "POLICY", "p1"): "asg-rival",
        ("c", "POLICY", "p1"): answer["results"][2]["assignment_id"],
    }
    assert audited(client, domain, "repository.Assignment.add") == Counter(
        [answer["results"][0]["assignment_id"], answer["results"][2]["assignment_id"]]
    )
    # The rival's grant shows too: the index follows its change record as well as ours.
    assert check(client, domain, "b", "p1.read") == pb.CheckResult.ALLOW


def test_recheck_undoes_only_our_inserts_when_a_pair_was_taken(client, domain, monkeypatch):
    policies(client, domain, "p1")
    rival = rival_record(domain, "b", "POLICY", "p1")
    rival_between_read_and_write(monkeypatch, client, lambda manager: manager.create(rival))
    policy_manager = client.app.managers.policy
    existing_ids, calls = policy_manager.existing_ids, []

    def deleted_after_first_look(domain_id, policy_ids):
        calls.append(policy_ids)
        return existing_ids(domain_id, policy_ids) if len(calls) == 1 else set()

    monkeypatch.setattr(policy_manager, "existing_ids", deleted_after_first_look)
    expect_error(
        grpc.StatusCode.NOT_FOUND,
        client.assignment.add,
        batch(domain, [{"type": "POLICY", "id": "p1"}], ["a", "b", "c"]),
    )
    assert len(calls) == 2
    assert stored(client, domain) == {("b", "POLICY", "p1"): "asg-rival"}
    assert audited(client, domain, "repository.Assignment.add") == Counter()


def test_a_pair_removed_between_read_and_delete_is_reported_not_found(client, domain, monkeypatch):
    create_sets(client, domain, groups=["g"])
    client.assignment.add(batch(domain, [{"type": "GROUP", "id": "g"}], ["a", "b", "c"]), timeout=10)
    before = stored(client, domain)
    assert check(client, domain, "a", "x") == pb.CheckResult.DENY
    rival_between_read_and_write(
        monkeypatch, client, lambda manager: manager.delete(domain, before[("b", "GROUP", "g")])
    )
    answer = as_dict(
        client.assignment.remove(batch(domain, [{"type": "GROUP", "id": "g"}], ["a", "b", "c"]), timeout=10)
    )
    assert [(item["subject"]["id"], item["outcome"]) for item in answer["results"]] == [
        ("a", "REMOVED"),
        ("b", "NOT_FOUND"),
        ("c", "REMOVED"),
    ]
    assert answer["changed_count"] == 2
    assert stored(client, domain) == {}
    assert audited(client, domain, "repository.Assignment.remove") == Counter(
        [before[("a", "GROUP", "g")], before[("c", "GROUP", "g")]]
    )


def test_a_removers_standing_claim_is_respected_until_it_runs_out(client, domain):
    """Another remover's claim means that remover deletes it; a claim left by one that died
    stops counting after CLAIM_SECONDS."""
    create_sets(client, domain, groups=["g"])
    client.assignment.add(batch(domain, [{"type": "GROUP", "id": "g"}], ["a", "b"]), timeout=10)
    ids = stored(client, domain)
    manager = client.app.managers.assignment
    assignments = collection(AssignmentDocument)
    assignments.update_one(
        {"assignment_id": ids[("a", "GROUP", "g")]},
        {"$set": {"removal": {"by": "other", "until": time.time() + CLAIM_SECONDS}}},
    )
    assignments.update_one(
        {"assignment_id": ids[("b", "GROUP", "g")]}, {"$set": {"removal": {"by": "dead", "until": time.time() - 1}}}
    )
    assert manager.remove_ids(domain, list(ids.values())) == {ids[("b", "GROUP", "g")]}
    expect_error(
        grpc.StatusCode.NOT_FOUND,
        client.assignment.delete,
        pb.AssignmentRequest(assignment_id=ids[("a", "GROUP", "g")], domain_id=domain),
    )
    assert "removal" not in manager.get(domain, ids[("a", "GROUP", "g")])
    assert list(stored(client, domain).values()) == [ids[("a", "GROUP", "g")]]


def test_a_batch_cut_off_by_its_bound_is_undone_whole_and_its_revision_moves_on(client, domain, monkeypatch, backend):
    """The call's database bound runs out after the inserts: the undo and the revision bump still
    run (under the connection's own limit), so nothing is left half-written and an index built
    meanwhile is not kept."""
    if backend != "wire":
        pytest.skip("the embedded store does not bound its operations by time")
    policies(client, domain, "p1")
    revision = client.app.managers.revision
    before = revision.current([domain])[0]
    monkeypatch.setattr(client.app.database, "query_timeout_ms", 1000)
    policy_manager = client.app.managers.policy
    existing_ids, calls = policy_manager.existing_ids, []

    def slow_second_look(domain_id, policy_ids):
        calls.append(policy_ids)
        if len(calls) == 2:  # the re-check after the inserts
            time.sleep(1.2)
        return existing_ids(domain_id, policy_ids)

    monkeypatch.setattr(policy_manager, "existing_ids", slow_second_look)
    expect_error(
        grpc.StatusCode.UNAVAILABLE, client.assignment.add, batch(domain, [{"type": "POLICY", "id": "p1"}], ["a", "b"])
    )
    assert len(calls) == 2
    assert stored(client, domain) == {}
    assert revision.current([domain])[0] == before + 1
    assert revision.changes_after(domain, before)[0].get("incomplete") is True
    assert audited(client, domain, "repository.Assignment.add") == Counter()
