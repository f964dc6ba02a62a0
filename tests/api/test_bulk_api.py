"""The Bulk service through the public gRPC API (both backends): export_domain streams a consistent
snapshot of a domain, import_domain takes it back (into the same domain or another), all or
nothing, MERGE or REPLACE, with a dry run; bounds, authorization, tenancy, the change log and
the audit trail."""

from __future__ import annotations

import copy
import json
import threading
import time
from dataclasses import replace
from types import SimpleNamespace

import grpc
import pytest
from conftest import free_port

from helpers import (
    allowed,
    as_dict,
    bulk_export,
    bulk_import,
    bulk_stream,
    create_sets,
    error_info,
    error_reason,
    expect_error,
    field_violations,
    grant_policy,
    parse,
)
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2 as apb
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2_grpc, audit_pb2, bulk_pb2_grpc
from policyhub._gen.spaceone.api.repository.v1 import bulk_pb2 as bpb
from policyhub._gen.spaceone.api.repository.v1 import group_pb2 as gpb
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2 as ppb
from policyhub.bootstrap import build_application
from policyhub.errors import ConcurrentChange
from policyhub.server import PolicyHubServer

FAR = "2099-01-31T00:00:00.000Z"
OFFICE = {"all": [{"key": "request.ip", "operator": "ip_address", "value": "10.0.0.0/8"}]}


# --- building a domain through the single-item APIs -----------------------------------------------


def policy(client, domain, policy_id, metadata=(), **fields):
    body = {"policy_id": policy_id, "name": fields.pop("name", policy_id), "domain_id": domain, **fields}
    return client.policy.create(parse(ppb.CreatePolicyRequest, body), metadata=metadata, timeout=10)


def assign(client, domain, subject, grant, metadata=(), **fields):
    (subject_type, subject_id), (grant_type, grant_id) = subject, grant
    body = {
        "subject": {"type": subject_type, "id": subject_id},
        "grant": {"type": grant_type, "id": grant_id},
        "domain_id": domain,
        **fields,
    }
    return client.assignment.create(parse(apb.CreateAssignmentRequest, body), metadata=metadata, timeout=10)


def build_domain(client, domain):
    """Policies (statements, conditions, labels, tags, a disabled one, a deleted one), nested
    groups, a role, and assignments (with labels, tags, an expiry; one to a managed policy)."""
    policy(
        client,
        domain,
        "ops-admin",
        name="Operations admin",
        description="Runs the servers\n(all of them)",
        permissions=["inventory.*"],
        statements=[{"effect": "DENY", "actions": ["inventory.Server.delete"], "resources": ["prod/*"]}],
        labels=["ops", 2],
        tags={"team": "ops", "cost": {"center": 42}},
        project_id="project-1",
    )
    policy(
        client,
        domain,
        "office-hours",
        statements=[{"effect": "ALLOW", "actions": ["inventory.Server.get"], "resources": ["*"], "conditions": OFFICE}],
    )
    policy(client, domain, "dormant", permissions=["billing.*"])
    client.policy.disable(ppb.PolicyRequest(policy_id="dormant", domain_id=domain), timeout=10)
    policy(client, domain, "gone", permissions=["gone.*"])
    client.policy.delete(ppb.PolicyRequest(policy_id="gone", domain_id=domain), timeout=10)
    client.group.create(
        parse(
            gpb.CreateGroupRequest,
            {
                "group_id": "ops",
                "name": "Operations",
                "description": "The ops team",
                "labels": ["team"],
                "tags": {"floor": 3},
                "domain_id": domain,
            },
        ),
        timeout=10,
    )
    create_sets(client, domain, groups=["oncall"], roles=["auditor"])
    assign(client, domain, ("GROUP", "oncall"), ("GROUP", "ops"))
    assign(client, domain, ("USER", "alice"), ("GROUP", "ops"), labels=["a"], tags={"why": "hired"})
    assign(client, domain, ("USER", "carol"), ("GROUP", "oncall"), expires_at=FAR)
    assign(client, domain, ("GROUP", "ops"), ("POLICY", "ops-admin"))
    assign(client, domain, ("USER", "carol"), ("POLICY", "office-hours"))
    assign(client, domain, ("ROLE", "auditor"), ("POLICY", "managed-read-only"))
    assign(client, domain, ("USER", "dave"), ("ROLE", "auditor"))
    assign(client, domain, ("SERVICE_ACCOUNT", "sa-1"), ("POLICY", "dormant"))


QUESTIONS = [
    ("alice", "inventory.Server.get", "srv/1", None),
    ("alice", "inventory.Server.delete", "prod/web1", None),
    ("carol", "inventory.Server.reboot", "prod/web1", None),
    ("carol", "inventory.Server.get", "srv/1", {"request": {"ip": "192.168.1.1"}}),
    ("carol", "inventory.Server.get", "srv/1", {"request": {"ip": "10.1.2.3"}}),
    ("dave", "identity.Project.get", "p/1", None),
    ("sa-1", "billing.Invoice.get", "i/1", None),
    ("erin", "inventory.Server.get", "srv/1", None),
]


def answers(client, domain, metadata=()):
    found = []
    for subject_id, action, resource, context in QUESTIONS:
        subject_type = "SERVICE_ACCOUNT" if subject_id.startswith("sa-") else "USER"
        body = {
            "subject": {"type": subject_type, "id": subject_id},
            "action": action,
            "resource": resource,
            "domain_id": domain,
            **({"context": context} if context else {}),
        }
        result = as_dict(client.assignment.check(parse(apb.CheckRequest, body), metadata=metadata, timeout=10))
        found.append((result.get("decision"), result.get("reason"), result.get("policy_id"), result.get("via")))
    return found


def revision(client, domain) -> int:
    return client.app.managers.revision.current([domain])[0]


def kinds(items):
    return [next(iter(item)) for item in items]


# --- round trip -------------------------------------------------------------------------------


def test_export_streams_the_domain_and_an_import_elsewhere_gives_it_back_whole(client, domain, other_domain):
    build_domain(client, domain)
    header, items = bulk_export(client, domain)
    assert header["domain_id"] == domain
    assert header["consistency_token"] == f"ct1.{revision(client, domain)}"
    assert header["counts"] == {"policies": 3, "groups": 2, "roles": 1, "assignments": 8}
    assert kinds(items) == ["policy"] * 3 + ["group"] * 2 + ["role"] + ["assignment"] * 8
    # live local policies only (not the deleted one, not the managed one an assignment names)
    assert [i["policy"]["policy_id"] for i in items[:3]] == ["dormant", "office-hours", "ops-admin"]
    ops_admin = items[2]["policy"]
    assert ops_admin == {
        "policy_id": "ops-admin",
        "name": "Operations admin",
        "description": "Runs the servers\n(all of them)",
        "state": "ENABLED",
        "permissions": ["inventory.*"],
        "statements": [{"effect": "DENY", "actions": ["inventory.Server.delete"], "resources": ["prod/*"]}],
        "labels": ["ops", 2.0],
        "tags": {"team": "ops", "cost": {"center": 42.0}},
        "project_id": "project-1",
    }
    assert items[0]["policy"]["state"] == "DISABLED"
    assert items[1]["policy"]["statements"][0]["conditions"] == OFFICE
    assert items[4]["group"] == {
        "group_id": "ops",
        "name": "Operations",
        "description": "The ops team",
        "labels": ["team"],
        "tags": {"floor": 3.0},
    }
    expiring = [i["assignment"] for i in items if i.get("assignment", {}).get("expires_at")]
    assert [(a["subject"]["id"], a["expires_at"]) for a in expiring] == [("carol", FAR)]
    before = answers(client, domain)

    imported = bulk_import(client, other_domain, items)
    assert imported["policies"] == {"created": 3}
    assert imported["groups"] == {"created": 2} and imported["roles"] == {"created": 1}
    assert imported["assignments"] == {"created": 8}
    assert imported["consistency_token"] == f"ct1.{revision(client, other_domain)}"
    assert "changes" not in imported and "refused" not in imported

    # Exported again: the same content (assignment ids kept; times, versions and etags are the
    # importing domain's own, and not exported).
    again_header, again = bulk_export(client, other_domain)
    assert again == items
    assert again_header["counts"] == header["counts"]
    assert answers(client, other_domain) == before
    assert before[0][0] == "ALLOW" and before[1][0] == "DENY" and before[4][0] == "ALLOW"
    # the imported policies are new ones of that domain: version 1, restorable history of their own
    got = client.policy.get(ppb.GetRepositoryPolicyRequest(policy_id="ops-admin", domain_id=other_domain), timeout=10)
    assert (got.version, got.domain_id, got.is_managed) == (1, other_domain, False)

    # The same stream again changes nothing (and writes nothing).
    at = revision(client, other_domain)
    unchanged = bulk_import(client, other_domain, items)
    assert unchanged["policies"] == {"unchanged": 3} and unchanged["assignments"] == {"unchanged": 8}
    assert unchanged["consistency_token"] == f"ct1.{at}" and revision(client, other_domain) == at


def test_an_export_saved_as_it_streams_is_an_import(client, domain, other_domain):
    """The export's own messages, header included (its counts are checked), are a valid import."""
    build_domain(client, domain)
    messages = list(client.bulk.export_domain(bpb.ExportDomainRequest(domain_id=domain), timeout=30))
    answer = as_dict(client.bulk.import_domain(iter(messages), metadata=(("x_domain_id", other_domain),), timeout=30))
    assert answer["domain_id"] == other_domain and answer["assignments"] == {"created": 8}
    assert bulk_export(client, other_domain)[1] == bulk_export(client, domain)[1]

    # A truncated export (a message lost) is refused whole.
    truncated = messages[:1] + [bpb.BulkChunk(items=messages[1].items[:-1])] + messages[2:]
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.bulk.import_domain,
        iter(truncated),
        metadata=(("x_domain_id", f"{other_domain}-x"),),
    )
    assert field_violations(error) == ["header.counts.assignments"]
    assert bulk_export(client, f"{other_domain}-x")[0]["counts"] == {}


def test_an_empty_domain_exports_its_header_alone(client, domain):
    messages = list(client.bulk.export_domain(bpb.ExportDomainRequest(domain_id=domain), timeout=10))
    assert len(messages) == 1
    assert as_dict(messages[0]) == {"header": {**as_dict(messages[0].header), "counts": {}}}
    assert messages[0].header.consistency_token == "ct1.0"


def test_expired_assignments_are_not_exported(client, domain):
    create_sets(client, domain, groups=["ops"])
    soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2))
    assign(client, domain, ("USER", "alice"), ("GROUP", "ops"), expires_at=soon)
    assign(client, domain, ("USER", "bob"), ("GROUP", "ops"))
    time.sleep(2.2)
    _, items = bulk_export(client, domain)
    assert [i["assignment"]["subject"]["id"] for i in items if "assignment" in i] == ["bob"]


# --- MERGE, REPLACE, dry run ------------------------------------------------------------------


def edited(items):
    """The export with changes: ops-admin renamed, dormant and the sa-1 grant gone, a new policy
    and its grant, alice's assignment relabelled."""
    result = copy.deepcopy(items)
    result = [i for i in result if i.get("policy", {}).get("policy_id") != "dormant"]
    result = [i for i in result if i.get("assignment", {}).get("subject", {}).get("id") != "sa-1"]
    for item in result:
        if item.get("policy", {}).get("policy_id") == "ops-admin":
            item["policy"]["name"] = "Ops admin"
        if item.get("assignment", {}).get("subject") == {"type": "USER", "id": "alice"}:
            item["assignment"]["labels"] = ["b"]
    result.insert(
        0, {"policy": {"policy_id": "newcomer", "name": "Newcomer", "state": "ENABLED", "permissions": ["docs.*"]}}
    )
    result.append(
        {"assignment": {"subject": {"type": "USER", "id": "erin"}, "grant": {"type": "POLICY", "id": "newcomer"}}}
    )
    return result


def test_merge_creates_updates_and_keeps_the_rest(client, domain):
    build_domain(client, domain)
    _, items = bulk_export(client, domain)
    answer = bulk_import(client, domain, edited(items))
    assert answer["mode"] == "MERGE"
    assert answer["policies"] == {"created": 1, "updated": 1, "unchanged": 1}
    assert answer["assignments"] == {"created": 1, "updated": 1, "unchanged": 6}
    _, after = bulk_export(client, domain)
    ids = [i["policy"]["policy_id"] for i in after if "policy" in i]
    assert ids == ["dormant", "newcomer", "office-hours", "ops-admin"]  # dormant kept
    got = client.policy.get(ppb.GetRepositoryPolicyRequest(policy_id="ops-admin", domain_id=domain), timeout=10)
    assert (got.name, got.version) == ("Ops admin", 2)
    assert len([i for i in after if "assignment" in i]) == 9


def without_oncall(items):
    """The items without the group oncall and the assignments that name it."""
    return [
        item
        for item in items
        if item.get("group", {}).get("group_id") != "oncall"
        and "oncall"
        not in (
            item.get("assignment", {}).get("subject", {}).get("id"),
            item.get("assignment", {}).get("grant", {}).get("id"),
        )
    ]


def comparable(items):
    """Items as a sorted list, assignment ids left out (new ones are drawn for assignments
    imported without one)."""
    plain = []
    for item in items:
        item = copy.deepcopy(item)
        item.get("assignment", {}).pop("assignment_id", None)
        plain.append(json.dumps(item, sort_keys=True))
    return sorted(plain)


def test_replace_also_deletes_what_the_stream_lacks(client, domain):
    build_domain(client, domain)
    _, items = bulk_export(client, domain)
    before = answers(client, domain)
    stream = without_oncall(edited(items))
    answer = bulk_import(client, domain, stream, mode="REPLACE")
    assert answer["mode"] == "REPLACE"
    assert answer["policies"] == {"created": 1, "updated": 1, "deleted": 1, "unchanged": 1}
    assert answer["groups"] == {"deleted": 1, "unchanged": 1} and answer["roles"] == {"unchanged": 1}
    # sa-1's grant of dormant, and both assignments naming oncall
    assert answer["assignments"] == {"created": 1, "updated": 1, "deleted": 3, "unchanged": 4}
    _, after = bulk_export(client, domain)
    assert comparable(after) == comparable(stream)
    # A policy REPLACE deletes is soft-deleted, as Policy/delete does: restorable.
    expect_error(
        grpc.StatusCode.NOT_FOUND,
        client.policy.get,
        ppb.GetRepositoryPolicyRequest(policy_id="dormant", domain_id=domain),
    )
    restored = client.policy.restore(ppb.PolicyRequest(policy_id="dormant", domain_id=domain), timeout=10)
    assert restored.state == ppb.PolicyInfo.DISABLED
    # REPLACE with the first export brings the domain back exactly (deleted assignments come
    # back with their ids), the restored policy as it was.
    back = bulk_import(client, domain, items, mode="REPLACE")
    assert back["policies"] == {"updated": 1, "deleted": 1, "unchanged": 2}
    assert back["groups"] == {"created": 1, "unchanged": 1}
    assert back["assignments"] == {"created": 3, "updated": 1, "deleted": 1, "unchanged": 4}
    assert bulk_export(client, domain)[1] == items
    assert answers(client, domain) == before


def test_a_dry_run_writes_nothing_and_tells_exactly_what_the_import_would_do(client, domain, other_domain):
    build_domain(client, domain)
    _, items = bulk_export(client, domain)
    at = revision(client, domain)
    answer = bulk_import(client, domain, edited(items), mode="REPLACE", dry_run=True)
    assert answer["dry_run"] is True and answer["consistency_token"] == f"ct1.{at}"
    assert answer["policies"] == {"created": 1, "updated": 1, "deleted": 1, "unchanged": 1}
    assert answer["assignments"] == {"created": 1, "updated": 1, "deleted": 1, "unchanged": 6}
    changes = [(c["kind"], c["id"], c["operation"]) for c in answer["changes"] if c["kind"] != "ASSIGNMENT"]
    assert changes == [
        ("POLICY", "newcomer", "CREATE"),
        ("POLICY", "ops-admin", "UPDATE"),
        ("POLICY", "dormant", "DELETE"),
    ]
    assignment_changes = [
        (c["operation"], c["subject"]["id"], c["grant"]["id"]) for c in answer["changes"] if c["kind"] == "ASSIGNMENT"
    ]
    assert assignment_changes == [
        ("CREATE", "erin", "newcomer"),
        ("UPDATE", "alice", "ops"),
        ("DELETE", "sa-1", "dormant"),
    ]
    assert "changes_truncated" not in answer and "refused" not in answer
    # nothing written: same revision, same content, no change record
    assert revision(client, domain) == at
    assert bulk_export(client, domain)[1] == items
    assert client.app.managers.revision.changes_after(domain, at) == []

    # into an empty domain: everything would be created, and nothing is
    fresh = bulk_import(client, other_domain, items, dry_run=True)
    assert fresh["policies"] == {"created": 3} and fresh["assignments"] == {"created": 8}
    assert len(fresh["changes"]) == 14
    kept = {c["id"] for c in fresh["changes"] if c["kind"] == "ASSIGNMENT"}
    assert kept == {i["assignment"]["assignment_id"] for i in items if "assignment" in i}
    assert bulk_export(client, other_domain)[0]["counts"] == {} and revision(client, other_domain) == 0


def test_a_dry_run_lists_every_refused_item(client, domain):
    stream = [
        {"policy": {"policy_id": "fine", "name": "Fine", "permissions": ["a.*"]}},
        {"policy": {"policy_id": "Bad_Id", "name": "x"}},
        {
            "policy": {
                "policy_id": "bad-effect",
                "name": "x",
                "statements": [{"effect": "EFFECT_NONE", "actions": ["a"], "resources": ["*"]}],
            }
        },
        {"group": {"group_id": "g", "name": ""}},
        {"assignment": {"subject": {"type": "USER", "id": "u"}, "grant": {"type": "POLICY", "id": "nowhere"}}},
        {"policy": {"policy_id": "fine", "name": "Twice"}},
        {},
    ]
    answer = bulk_import(client, domain, stream, dry_run=True)
    refused = [(r["item_index"], r.get("kind"), r["code"], r["field"]) for r in answer["refused"]]
    assert refused == [
        (1, "POLICY", "INVALID_ARGUMENT", "items[1].policy_id"),
        (2, "POLICY", "INVALID_ARGUMENT", "items[2].statements[0].effect"),
        (3, "GROUP", "INVALID_ARGUMENT", "items[3].name"),
        (4, "ASSIGNMENT", "NOT_FOUND", "items[4].grant.id"),
        (5, "POLICY", "INVALID_ARGUMENT", "items[5].policy_id"),
        (6, None, "INVALID_ARGUMENT", "items[6]"),
    ]
    assert answer["refused_count"] == 6
    assert "twice (items[0] and items[5])" in answer["refused"][4]["message"]
    assert answer["policies"] == {"created": 1}
    assert revision(client, domain) == 0


# --- all or nothing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, code, field",
    [
        (
            {
                "policy": {
                    "policy_id": "p9",
                    "name": "x",
                    "statements": [{"effect": "EFFECT_NONE", "actions": ["a"], "resources": ["*"]}],
                }
            },
            grpc.StatusCode.INVALID_ARGUMENT,
            "statements[0].effect",
        ),
        (
            {
                "policy": {
                    "policy_id": "p9",
                    "name": "x",
                    "statements": [
                        {
                            "effect": "ALLOW",
                            "actions": ["a"],
                            "resources": ["*"],
                            "conditions": {"all": [{"key": "k", "operator": "nope", "value": 1}]},
                        }
                    ],
                }
            },
            grpc.StatusCode.INVALID_ARGUMENT,
            "statements[0].conditions.all[0].operator",
        ),
        (
            {"policy": {"policy_id": "p9", "name": "x", "description": "d" * 5000}},
            grpc.StatusCode.INVALID_ARGUMENT,
            "description",
        ),
        ({"policy": {"policy_id": "p9", "name": "x", "state": "DELETED"}}, grpc.StatusCode.INVALID_ARGUMENT, "state"),
        ({"policy": {"policy_id": "managed-x", "name": "x"}}, grpc.StatusCode.FAILED_PRECONDITION, "policy_id"),
        (
            {"group": {"group_id": "g9", "name": "x", "tags": {"$bad": 1}}},
            grpc.StatusCode.INVALID_ARGUMENT,
            "tags.$bad",
        ),
        ({"role": {"role_id": "R9", "name": "x"}}, grpc.StatusCode.INVALID_ARGUMENT, "role_id"),
        (
            {
                "assignment": {
                    "subject": {"type": "USER", "id": "u"},
                    "grant": {"type": "POLICY", "id": "p1"},
                    "expires_at": "2001-01-01T00:00:00Z",
                }
            },
            grpc.StatusCode.INVALID_ARGUMENT,
            "expires_at",
        ),
        ({"assignment": {"subject": {"type": "USER", "id": "u"}}}, grpc.StatusCode.INVALID_ARGUMENT, "grant"),
        (
            {"assignment": {"subject": {"type": "GROUP", "id": "ghost"}, "grant": {"type": "POLICY", "id": "p1"}}},
            grpc.StatusCode.NOT_FOUND,
            "subject.id",
        ),
        (
            {"assignment": {"subject": {"type": "USER", "id": "u"}, "grant": {"type": "ROLE", "id": "ghost"}}},
            grpc.StatusCode.NOT_FOUND,
            "grant.id",
        ),
    ],
)
def test_one_bad_item_anywhere_and_nothing_is_written(client, domain, bad, code, field):
    good = [{"policy": {"policy_id": f"p{i}", "name": f"P{i}", "permissions": ["a.*"]}} for i in range(5)]
    good += [{"assignment": {"subject": {"type": "USER", "id": "u"}, "grant": {"type": "POLICY", "id": "p1"}}}]
    stream = good[:3] + [bad] + good[3:]
    error = expect_error(code, client.bulk.import_domain, bulk_stream(domain, stream, per_message=2))
    assert error_info(error).metadata["field"] == f"items[3].{field}"
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        assert field_violations(error) == [f"items[3].{field}"]
    assert bulk_export(client, domain)[0]["counts"] == {}
    assert revision(client, domain) == 0


def test_an_assignment_naming_what_will_not_exist_is_not_found(client, domain):
    build_domain(client, domain)
    _, items = bulk_export(client, domain)
    at = revision(client, domain)
    # MERGE: the domain keeps oncall, so naming it is fine; REPLACE without it is NOT_FOUND
    stream = [i for i in items if i.get("group", {}).get("group_id") != "oncall"]
    merged = bulk_import(client, domain, stream)
    assert merged["groups"] == {"unchanged": 1} and merged["assignments"] == {"unchanged": 8}
    error = expect_error(
        grpc.StatusCode.NOT_FOUND, client.bulk.import_domain, bulk_stream(domain, stream, mode="REPLACE")
    )
    position = next(
        i for i, item in enumerate(stream) if item.get("assignment", {}).get("subject", {}).get("id") == "oncall"
    )
    assert error_info(error).metadata["field"] == f"items[{position}].subject.id"
    assert "Group not found (group_id=oncall)" in error.details()
    assert "more items refused" in error.details()  # carol's membership names it too
    assert revision(client, domain) == at
    assert bulk_export(client, domain)[1] == items


def test_a_failure_half_way_leaves_the_domain_as_it_was(client, domain, monkeypatch):
    build_domain(client, domain)
    _, items = bulk_export(client, domain)
    before = {
        p: client.policy.get(ppb.GetRepositoryPolicyRequest(policy_id=p, domain_id=domain), timeout=10).etag
        for p in ("ops-admin", "office-hours", "dormant")
    }
    stream = without_oncall(edited(items))
    stream.append({"role": {"role_id": "newrole", "name": "New"}})
    service = client.app.services.bulk
    calls = []

    def fail(*args):
        calls.append(args)
        raise ConcurrentChange("injected failure after every write")

    monkeypatch.setattr(service, "_recheck", fail)
    at = revision(client, domain)
    error = expect_error(
        grpc.StatusCode.ABORTED, client.bulk.import_domain, bulk_stream(domain, stream, mode="REPLACE")
    )
    assert "injected failure" in error.details() and calls
    assert bulk_export(client, domain)[1] == items
    after = {
        p: client.policy.get(ppb.GetRepositoryPolicyRequest(policy_id=p, domain_id=domain), timeout=10).etag
        for p in ("ops-admin", "office-hours", "dormant")
    }
    assert after == before
    # the failed write moved the revision (an index may have seen it) and logged no change
    records = client.app.managers.revision.changes_after(domain, at)
    assert [r["changes"] for r in records] == [[]]
    # nothing audited
    audited = client.audit.list(
        parse(
            audit_pb2.AuditQuery,
            {
                "domain_id": domain,
                "query": {"filter": [{"k": "method", "v": "repository.Bulk.import_domain", "o": "eq"}]},
            },
        ),
        timeout=10,
    )
    assert audited.total_count == 0
    monkeypatch.undo()
    # and the same import then works
    assert bulk_import(client, domain, stream, mode="REPLACE")["roles"] == {"created": 1, "unchanged": 1}


def test_a_failure_while_inserting_undoes_the_earlier_steps(client, domain, monkeypatch):
    build_domain(client, domain)
    _, items = bulk_export(client, domain)
    manager = client.app.managers.assignment

    def fail(records, progress):
        raise ConcurrentChange("injected: an assignment was created meanwhile")

    monkeypatch.setattr(manager, "insert_bulk", fail)
    expect_error(grpc.StatusCode.ABORTED, client.bulk.import_domain, bulk_stream(domain, edited(items), mode="REPLACE"))
    assert bulk_export(client, domain)[1] == items


# --- bounds -----------------------------------------------------------------------------------


@pytest.fixture
def server_with(client):
    """Extra servers on `client`'s database with some config keys changed."""
    started = []

    def start(**changes):
        app = build_application(replace(client.app.config, port=free_port(), **changes), client.app.database)
        server = PolicyHubServer(app)
        server.start()
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        started.append((server, channel))
        return app, channel

    yield start
    for server, channel in started:
        channel.close()
        server.stop(grace=0)


def many_assignments(count):
    return [
        {
            "assignment": {
                "subject": {"type": "USER", "id": f"u{i:05d}"},
                "grant": {"type": "POLICY", "id": "managed-read-only"},
            }
        }
        for i in range(count)
    ]


def test_too_many_items_or_bytes_are_refused_before_anything_is_written(client, domain, server_with):
    _, channel = server_with(import_max_items=10, import_max_bytes=2000)
    stub = bulk_pb2_grpc.BulkStub(channel)
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT, stub.import_domain, bulk_stream(domain, many_assignments(11), per_message=3)
    )
    assert field_violations(error) == ["items"] and "at most 10 items" in error.details()
    big = [{"policy": {"policy_id": f"p{i}", "name": "x" * 200}} for i in range(10)]
    error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, stub.import_domain, bulk_stream(domain, big, per_message=1))
    assert "larger than 2000 bytes" in error.details()
    assert revision(client, domain) == 0
    # within both bounds it imports
    answer = as_dict(stub.import_domain(bulk_stream(domain, many_assignments(10), per_message=3), timeout=30))
    assert answer["assignments"] == {"created": 10}


def test_the_default_bound_is_200000_items(client, domain):
    """200,001 items (empty ones: the bound is read before any item is checked) are refused."""
    assert client.app.config.import_max_items == 200_000
    messages = [bpb.BulkChunk(header=bpb.BulkHeader(domain_id=domain))]
    messages += [bpb.BulkChunk(items=[bpb.BulkItem()] * 50_000) for _ in range(4)]
    messages.append(bpb.BulkChunk(items=[bpb.BulkItem()]))
    error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, client.bulk.import_domain, iter(messages))
    assert "at most 200000 items per import" in error.details()


def test_exports_are_cut_into_messages_within_max_message_bytes(client, domain, other_domain, server_with):
    limit = 8_000
    _, channel = server_with(max_message_bytes=limit)
    stub = bulk_pb2_grpc.BulkStub(channel)
    bulk_import(SimpleNamespace(bulk=stub), domain, many_assignments(600), per_message=100)
    messages = list(stub.export_domain(bpb.ExportDomainRequest(domain_id=domain), timeout=30))
    assert len(messages) > 3 and all(m.ByteSize() <= limit for m in messages)
    assert sum(len(m.items) for m in messages) == 600
    # and those messages are an import for a server with the same limit
    answer = stub.import_domain(iter(messages), metadata=(("x_domain_id", other_domain),), timeout=30)
    assert answer.assignments.created == 600


def test_reading_the_stream_honours_the_call_deadline(client, domain):
    def slow():
        yield from bulk_stream(domain, many_assignments(2), per_message=1)
        time.sleep(2)
        yield from bulk_stream(domain, many_assignments(3)[2:], per_message=1)

    with pytest.raises(grpc.RpcError) as info:
        client.bulk.import_domain(slow(), timeout=0.5)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    time.sleep(2)
    assert revision(client, domain) == 0


def test_the_header_comes_first_and_once(client, domain):
    items = many_assignments(1)
    error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, client.bulk.import_domain, iter([bpb.BulkChunk()]))
    assert field_violations(error) == ["header"]
    error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, client.bulk.import_domain, iter([]))
    assert field_violations(error) == ["header"]
    stream = list(bulk_stream(domain, items)) + list(bulk_stream(domain, items))
    error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, client.bulk.import_domain, iter(stream))
    assert field_violations(error) == ["header"] and "only the first message" in error.details()
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.bulk.import_domain,
        iter([bpb.BulkChunk(header=bpb.BulkHeader(domain_id=domain, mode=7))]),
    )
    assert field_violations(error) == ["header.mode"]
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT, client.bulk.import_domain, iter([bpb.BulkChunk(header=bpb.BulkHeader())])
    )
    assert field_violations(error) == ["domain_id"]
    assert revision(client, domain) == 0


# --- consistency ------------------------------------------------------------------------------


def test_an_export_reads_again_when_a_write_lands_while_it_reads(client, domain, monkeypatch):
    build_domain(client, domain)
    manager = client.app.managers.assignment
    original = manager.snapshot
    reads = []

    def snapshot_while_a_write_lands(domain_id):
        reads.append(domain_id)
        if len(reads) == 1:
            assign(client, domain, ("USER", "frank"), ("GROUP", "ops"))
        return original(domain_id)

    monkeypatch.setattr(manager, "snapshot", snapshot_while_a_write_lands)
    header, items = bulk_export(client, domain)
    assert len(reads) == 2
    assert header["consistency_token"] == f"ct1.{revision(client, domain)}"
    assert "frank" in [i["assignment"]["subject"]["id"] for i in items if "assignment" in i]


def test_an_export_of_a_domain_that_keeps_changing_is_aborted(client, domain, monkeypatch):
    create_sets(client, domain, groups=["ops"])
    manager = client.app.managers.assignment
    original = manager.snapshot

    def always_changing(domain_id):
        client.app.managers.revision.bump(domain_id)
        return original(domain_id)

    monkeypatch.setattr(manager, "snapshot", always_changing)
    error = expect_error(grpc.StatusCode.ABORTED, _first_message(client), bpb.ExportDomainRequest(domain_id=domain))
    assert error_reason(error) == "ERROR_CONCURRENT_CHANGE"
    assert "kept changing" in error.details()


def _first_message(client):
    def call(request, timeout, **kwargs):
        return next(iter(client.bulk.export_domain(request, timeout=timeout, **kwargs)))

    return call


def test_checks_never_see_half_an_import(client, domain, monkeypatch):
    """While an import is being written, a process whose index is current answers from the
    state before it, and one that needs a new index waits for the import to land."""
    create_sets(client, domain, groups=["ops"])
    policy(client, domain, "read-a", permissions=["a.read"])
    policy(client, domain, "read-b", permissions=["a.read"])
    grant_policy(client, domain, "alice", "read-a")
    _, items = bulk_export(client, domain)
    # The new state: alice holds read-b instead of read-a; half of it (read-a's grant deleted,
    # read-b's not yet created) would deny her.
    stream = [i for i in items if "assignment" not in i] + [
        {"assignment": {"subject": {"type": "USER", "id": "alice"}, "grant": {"type": "POLICY", "id": "read-b"}}}
    ]
    assert allowed(client, domain, "alice")  # this process's index is current
    other = build_application(replace(client.app.config, port=free_port()), client.app.database)
    other_server = PolicyHubServer(other)
    other_server.start()
    other_channel = grpc.insecure_channel(f"127.0.0.1:{other_server.port}")
    other_client = SimpleNamespace(assignment=assignment_pb2_grpc.AssignmentStub(other_channel))
    manager = client.app.managers.assignment
    original = manager.insert_bulk
    seen = {}

    def insert_while_others_ask(records, progress):
        # read-a's grant is deleted by now, read-b's is not created yet
        seen["current"] = allowed(client, domain, "alice")
        waiting = threading.Thread(target=lambda: seen.setdefault("cold", allowed(other_client, domain, "alice")))
        waiting.start()
        waiting.join(0.5)
        seen["cold_waited"] = waiting.is_alive()
        seen["thread"] = waiting
        return original(records, progress)

    monkeypatch.setattr(manager, "insert_bulk", insert_while_others_ask)
    try:
        answer = bulk_import(client, domain, stream, mode="REPLACE")
        seen["thread"].join(10)
    finally:
        other_channel.close()
        other_server.stop(grace=0)
    assert answer["assignments"] == {"created": 1, "deleted": 1}
    assert seen["current"] is True  # the state before the import
    assert seen["cold_waited"] is True and seen["cold"] is True  # waited, then the state after it


# --- change log and audit -----------------------------------------------------------------------


def test_the_change_log_records_every_change_at_the_import_token(client, domain):
    build_domain(client, domain)
    _, items = bulk_export(client, domain)
    at = revision(client, domain)
    answer = bulk_import(client, domain, edited(items), mode="REPLACE")
    records = client.app.managers.revision.changes_after(domain, at)
    assert [r["seq"] for r in records] == [at + 1]
    assert answer["consistency_token"] == f"ct1.{at + 1}"
    changes = [(str(c["kind"]), str(c["operation"])) for c in records[0]["changes"]]
    assert sorted(changes) == sorted(
        [
            ("POLICY", "CREATE"),
            ("POLICY", "UPDATE"),
            ("POLICY", "DELETE"),
            ("ASSIGNMENT", "CREATE"),
            ("ASSIGNMENT", "UPDATE"),
            ("ASSIGNMENT", "DELETE"),
        ]
    )
    by_kind = {(str(c["kind"]), str(c["operation"])): c["id"] for c in records[0]["changes"]}
    assert by_kind[("POLICY", "DELETE")] == "dormant"
    assert records[0]["transaction_id"]


def test_an_import_of_many_changes_lands_as_several_revisions_at_once(client, domain, monkeypatch):
    import policyhub.manager.revision_manager as revision_manager

    monkeypatch.setattr(revision_manager, "CHANGES_PER_RECORD", 7)
    at = revision(client, domain)
    answer = bulk_import(client, domain, many_assignments(20))
    records = client.app.managers.revision.changes_after(domain, at)
    assert [r["seq"] for r in records] == [at + 1, at + 2, at + 3]
    assert [len(r["changes"]) for r in records] == [7, 7, 6]
    assert len({r["transaction_id"] for r in records}) == 1
    assert answer["consistency_token"] == f"ct1.{at + 3}"


def test_an_import_is_audited_once_and_per_policy_group_and_role(client, domain):
    build_domain(client, domain)
    _, items = bulk_export(client, domain)
    bulk_import(client, domain, edited(items), mode="REPLACE")
    found = as_dict(
        client.audit.list(
            parse(
                audit_pb2.AuditQuery,
                {
                    "domain_id": domain,
                    "query": {"filter": [{"k": "method", "v": "repository.Bulk.import_domain", "o": "eq"}]},
                },
            ),
            timeout=10,
        )
    )
    entries = {(e["resource_type"], e["resource_id"]): e for e in found["results"]}
    assert set(entries) == {("Bulk", domain), ("Policy", "newcomer"), ("Policy", "ops-admin"), ("Policy", "dormant")}
    summary = entries[("Bulk", domain)]["after"]
    assert summary["mode"] == "REPLACE"
    assert summary["assignments"] == {"created": 1, "updated": 1, "deleted": 1, "unchanged": 6}
    assert entries[("Policy", "ops-admin")]["before"]["name"] == "Operations admin"
    assert entries[("Policy", "ops-admin")]["after"]["name"] == "Ops admin"
    assert "after" not in entries[("Policy", "dormant")]
    assert len({e["transaction_id"] for e in found["results"]}) == 1


# --- authorization and tenancy ------------------------------------------------------------------


def admin(secure, domain):
    return secure.metadata(f"admin-{domain}", did=domain, rol="DOMAIN_ADMIN")


def test_only_system_and_domain_admins_may_import(secure, domain):
    stream = lambda: bulk_stream(domain, many_assignments(2))  # noqa: E731
    for grant in ("managed-full-access", "managed-policy-admin"):
        grant_policy(secure, domain, f"user-{grant}", grant, admin(secure, domain))
        error = expect_error(
            grpc.StatusCode.PERMISSION_DENIED,
            secure.bulk.import_domain,
            stream(),
            metadata=secure.metadata(f"user-{grant}", did=domain),
        )
        assert "repository.Bulk.import_domain is for SYSTEM and DOMAIN_ADMIN callers only" in error.details()
    answer = as_dict(secure.bulk.import_domain(stream(), metadata=admin(secure, domain), timeout=30))
    assert answer["assignments"] == {"created": 2}
    system = secure.metadata("root", did="", rol="SYSTEM", typ="SERVICE_ACCOUNT")
    assert as_dict(secure.bulk.import_domain(stream(), metadata=system, timeout=30))["assignments"] == {"unchanged": 2}


def test_export_needs_its_permission(secure, domain):
    request = bpb.ExportDomainRequest(domain_id=domain)
    nobody = secure.metadata("nobody", did=domain)
    error = expect_error(grpc.StatusCode.PERMISSION_DENIED, _first_message(secure), request, metadata=nobody)
    assert "repository.Bulk.export_domain on domain" in error.details()
    grant_policy(secure, domain, "reader", "managed-read-only", admin(secure, domain))
    expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        _first_message(secure),
        request,
        metadata=secure.metadata("reader", did=domain),
    )
    # managed-policy-admin may export (it may read everything an export holds)
    grant_policy(secure, domain, "keeper", "managed-policy-admin", admin(secure, domain))
    header, items = bulk_export(secure, domain, metadata=secure.metadata("keeper", did=domain))
    assert header["counts"] == {"assignments": 2} and len(items) == 2


def test_a_domain_admin_exports_and_imports_its_own_domain_whatever_the_header_says(secure, domain, other_domain):
    policy(secure, other_domain, "theirs", metadata=admin(secure, other_domain), permissions=["x.*"])
    mine = admin(secure, domain)
    header, items = bulk_export(secure, other_domain, metadata=mine)
    assert header["domain_id"] == domain and items == []
    answer = bulk_import(secure, other_domain, many_assignments(1), metadata=mine, mode="REPLACE")
    assert answer["domain_id"] == domain and answer["assignments"] == {"created": 1}
    # the other domain is untouched (REPLACE in it would have deleted its policy)
    header, items = bulk_export(secure, other_domain, metadata=admin(secure, other_domain))
    assert header["counts"] == {"policies": 1} and items[0]["policy"]["policy_id"] == "theirs"
    # naming the other domain with x_domain_id is for SYSTEM callers only
    expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        secure.bulk.import_domain,
        bulk_stream(other_domain, many_assignments(1)),
        metadata=(*mine, ("x_domain_id", other_domain)),
    )
