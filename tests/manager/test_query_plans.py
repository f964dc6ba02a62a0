"""The wire-protocol server's query planner on the shapes the managers send (pinned without a
database in tests/unit/test_query_shapes.py): `explain` shows the domain-first indexes serve the
list page, its count, stat's first $match, the point reads of get, update and restore, and the
batched `$in` reads and deletes of the batch deletes (Policy/delete_many, Group/delete_many)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from policyhub.domain import MANAGED_DOMAIN_ID
from policyhub.manager import bulk_writes
from policyhub.manager.database import collection
from policyhub.manager.policy_manager import point_read
from policyhub.model import AssignmentDocument, ChangeDocument, GroupDocument, PolicyDocument, RevisionDocument
from policyhub.query import compile_list, compile_stat
from policyhub.service.context import utc_now
from tests.manager.test_storage_conformance import assignment, policy

pytestmark = pytest.mark.wire

LABEL_FILTER = {"filter": [{"k": "labels", "v": "ops"}], "page": {"start": 1, "limit": 10}}
# secantusdb's planner serves a compound index with bare equalities on its leading fields followed by
# at most one operator; an operator on the first field (the managed policies' `domain_id $in`) is
# planned as a collection scan. MongoDB serves the same filter with two point intervals of the index.
IN_ON_LEADING_FIELD = (
    "the wire-protocol server (secantusdb) plans `domain_id: {$in: [...]}` followed by other fields as "
    "COLLSCAN: its planner takes equalities on an index's leading fields and one operator after them"
)


@pytest.fixture
def wire(app, backend):
    if backend != "wire":
        pytest.skip("explain is asked of the wire-protocol server")
    return app.managers


@pytest.fixture
def seeded(wire, domain):
    for i in range(12):
        wire.policy.create(policy(domain, f"p{i}", labels=["ops" if i % 2 else "dev"]))
        wire.assignment.create(assignment(domain, subject_id=f"u{i}", grant_id=f"p{i}"))
    return wire


def winning_scan(document, command: dict[str, Any]) -> dict[str, Any]:
    """The leaf of the winning plan the server reports for a command on the document's collection."""
    stored = collection(document)
    explained = stored.database.command("explain", {**command}, verbosity="queryPlanner")
    stage = explained["queryPlanner"]["winningPlan"]
    while "inputStage" in stage:
        stage = stage["inputStage"]
    return stage


def aggregate_scan(document, pipeline: list[dict]) -> dict[str, Any]:
    return winning_scan(document, {"aggregate": collection(document).name, "pipeline": pipeline, "cursor": {}})


def find_scan(document, selector: dict, sort: dict | None = None) -> dict[str, Any]:
    command: dict[str, Any] = {"find": collection(document).name, "filter": selector}
    if sort:
        command["sort"] = sort
    return winning_scan(document, command)


def assert_index(scan: dict[str, Any], name: str) -> None:
    assert scan["stage"] == "IXSCAN", scan
    assert scan["indexName"] == name
    assert next(iter(scan["keyPattern"])) == "domain_id"


def test_policy_list_page_and_count_use_the_live_labels_index(seeded, domain):
    plan = compile_list(LABEL_FILTER, seeded.policy.schema, seeded.policy.scope(domain, include_managed=False))
    assert_index(aggregate_scan(PolicyDocument, plan.pipeline), "domain_live_labels")
    assert_index(aggregate_scan(PolicyDocument, plan.count_pipeline), "domain_live_labels")
    assert seeded.policy.list(domain, LABEL_FILTER, include_managed=False)[1] == 6


def test_policy_list_of_the_live_scope_uses_a_live_index(seeded, domain):
    plan = compile_list(None, seeded.policy.schema, seeded.policy.scope(domain, include_managed=False))
    scan = aggregate_scan(PolicyDocument, plan.pipeline)
    assert scan["stage"] == "IXSCAN" and list(scan["keyPattern"])[:2] == ["domain_id", "deleted_at"]


def test_policy_list_with_the_managed_policies_reads_each_owner_by_index(seeded, domain):
    # The page is merged from the domain's and the managed policies' first results, each read by
    # an equality on domain_id, as their counts are.
    for owner in (domain, MANAGED_DOMAIN_ID):
        part = compile_list(LABEL_FILTER, seeded.policy.schema, seeded.policy.scope(owner, include_managed=False))
        assert part.top is not None
        assert_index(aggregate_scan(PolicyDocument, part.top), "domain_live_labels")
        assert_index(aggregate_scan(PolicyDocument, part.count_pipeline), "domain_live_labels")


def test_policy_list_with_the_managed_policies_in_one_query(seeded, domain):
    # What a page too deep to merge, or a sort the merge cannot place, is read with.
    plan = compile_list(LABEL_FILTER, seeded.policy.schema, seeded.policy.scope(domain, include_managed=True))
    scan = aggregate_scan(PolicyDocument, plan.pipeline)
    if scan["stage"] == "COLLSCAN":
        pytest.skip(IN_ON_LEADING_FIELD)
    assert_index(scan, "domain_live_labels")


def test_policy_get_update_and_restore_read_the_unique_index(seeded, domain):
    assert_index(aggregate_scan(PolicyDocument, point_read(domain, "p1")), "domain_policy_id_deleted_at")
    live = {"domain_id": domain, "policy_id": "p1", "deleted_at": None}
    assert_index(find_scan(PolicyDocument, live), "domain_policy_id_deleted_at")  # the version update changes
    now = utc_now()
    seeded.policy.soft_delete(domain, "p1", None, now, now + timedelta(days=1), [])
    deleted = {"domain_id": domain, "policy_id": "p1", "deleted_at": {"$gt": datetime(1970, 1, 1, tzinfo=timezone.utc)}}
    assert_index(find_scan(PolicyDocument, deleted, {"deleted_at": -1}), "domain_policy_id_deleted_at")
    assert seeded.policy.restorable(domain, "p1", now)["policy_id"] == "p1"


def test_assignment_list_and_stat_use_a_domain_first_index(seeded, domain):
    manager = seeded.assignment
    listed = compile_list({"page": {"limit": 5}}, manager.schema, {"domain_id": domain})
    scan = aggregate_scan(AssignmentDocument, listed.pipeline)
    assert scan["stage"] == "IXSCAN" and next(iter(scan["keyPattern"])) == "domain_id"
    by_subject = compile_list({"filter": [{"k": "subject_type", "v": "USER"}]}, manager.schema, {"domain_id": domain})
    assert aggregate_scan(AssignmentDocument, by_subject.pipeline)["stage"] == "IXSCAN"
    stat = compile_stat(
        {"aggregate": [{"group": {"keys": [{"k": "grant_id", "n": "g"}], "fields": [{"o": "count", "n": "n"}]}}]},
        manager.schema,
        {"domain_id": domain},
    )
    assert aggregate_scan(AssignmentDocument, stat.pipeline)["stage"] == "IXSCAN"


def test_the_batch_deletes_read_their_batches_through_an_index(seeded, domain):
    batch = [f"p{i}" for i in range(bulk_writes.IN_BATCH)]
    assert_index(
        find_scan(PolicyDocument, {"domain_id": domain, "policy_id": {"$in": batch}}), "domain_policy_id_deleted_at"
    )
    now = utc_now()
    seeded.policy.soft_delete(domain, "p0", None, now, now + timedelta(days=1), [])
    assert sorted(seeded.policy.live_stored(domain, batch)) == sorted(f"p{i}" for i in range(1, 12))
    granting = {"domain_id": domain, "grant_type": "POLICY", "grant_id": {"$in": batch}}
    assert_index(find_scan(AssignmentDocument, granting), "domain_grant")
    counted = [{"$match": granting}, {"$group": {"_id": "$grant_id", "n": {"$sum": 1}}}]
    assert_index(aggregate_scan(AssignmentDocument, counted), "domain_grant")
    assert seeded.assignment.count_for_policy(domain, batch) == {f"p{i}": 1 for i in range(12)}
    held = {"domain_id": domain, "subject_type": "GROUP", "subject_id": {"$in": batch}}
    assert find_scan(AssignmentDocument, held)["stage"] == "IXSCAN"
    groups = {"domain_id": domain, "group_id": {"$in": batch}}
    assert_index(find_scan(GroupDocument, groups), "domain_group_id")
    ids = {"domain_id": domain, "assignment_id": {"$in": batch}}
    assert_index(find_scan(AssignmentDocument, ids), "domain_assignment_id")


def test_the_whole_domain_reads_of_a_build_are_index_served(seeded, domain):
    """What a domain's first check reads (policyhub.service.index_cache.IndexLoader.build): each
    owner's live policies, by an equality on domain_id, and the domain's assignments."""
    for owner in (domain, MANAGED_DOMAIN_ID):
        scan = find_scan(PolicyDocument, {"domain_id": owner, "deleted_at": None})
        assert scan["stage"] == "IXSCAN" and list(scan["keyPattern"])[:2] == ["domain_id", "deleted_at"]
    assert find_scan(AssignmentDocument, {"domain_id": domain})["stage"] == "IXSCAN"
    rules = seeded.policy.rules(domain)
    assert {raw["policy_id"] for raw in rules} >= {f"p{i}" for i in range(12)} | {"managed-full-access"}


def test_the_evaluation_index_delta_reads_are_index_served(seeded, domain):
    """What the first check after a write reads (policyhub.service.index_cache): the revisions,
    the change records since the cached index, the touched policies and the touched edges."""
    revisions = {"domain_id": {"$in": [domain, MANAGED_DOMAIN_ID]}}
    assert find_scan(RevisionDocument, revisions)["stage"] == "IXSCAN"
    records = {"domain_id": domain, "seq": {"$gt": 3, "$lte": 9}}
    assert_index(find_scan(ChangeDocument, records, {"seq": 1}), "domain_seq")
    touched = {"domain_id": domain, "policy_id": {"$in": ["p1", "p2"]}}
    assert_index(find_scan(PolicyDocument, touched), "domain_policy_id_deleted_at")
    by_subject = {"domain_id": domain, "subject_type": "USER", "subject_id": {"$in": ["u1", "u2"]}}
    assert_index(find_scan(AssignmentDocument, by_subject), "domain_subject_grant")
    granting = {"domain_id": domain, "grant_type": "POLICY", "grant_id": {"$in": ["p1"]}}
    assert_index(find_scan(AssignmentDocument, granting), "domain_grant")
    edges = seeded.assignment.edges_naming(domain, [("USER", "u1", "POLICY", "p1")], ["p2"], [])
    assert sorted((raw["subject_id"], raw["grant_id"]) for raw in edges) == [("u1", "p1"), ("u2", "p2")]
    assert [raw["policy_id"] for raw in seeded.policy.rules_of(domain, ["p1", "nope"])] == ["p1"]
