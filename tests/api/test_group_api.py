"""The Group service through the public gRPC API (both backends): the group document, its
members and grants (assignments), renames and deletes that carry them along, bad input,
authorization and tenancy."""

from __future__ import annotations

import grpc
import pytest

from helpers import (
    as_dict,
    assign,
    audited,
    audits,
    bulk_import,
    changes_after,
    check_user,
    create_policy,
    create_sets,
    edges,
    error_info,
    expect_error,
    field_violations,
    outcomes,
    parse,
    without_token,
)
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2 as apb
from policyhub._gen.spaceone.api.repository.v1 import group_pb2 as gpb
from policyhub._gen.spaceone.api.repository.v1 import role_pb2 as rpb

# --- helpers ------------------------------------------------------------------------------------


def create(stub, domain, group_id, metadata=(), **fields):
    body = {"group_id": group_id, "name": fields.pop("name", group_id), "domain_id": domain, **fields}
    return as_dict(stub.group.create(parse(gpb.CreateGroupRequest, body), metadata=metadata, timeout=10))


def get(stub, domain, group_id, metadata=()):
    return as_dict(stub.group.get(gpb.GroupRequest(group_id=group_id, domain_id=domain), metadata=metadata, timeout=10))


def list_groups(stub, domain, query=None, metadata=(), **fields):
    body = {"domain_id": domain, **({"query": query} if query is not None else {}), **fields}
    return as_dict(stub.group.list(parse(gpb.GroupQuery, body), metadata=metadata, timeout=10))


def ids(result, field="group_id"):
    return [r[field] for r in result.get("results", [])]


def users_request(domain, group_id, user_ids):
    return gpb.GroupUsersRequest(group_id=group_id, user_ids=list(user_ids), domain_id=domain)


def add_users(stub, domain, group_id, user_ids, metadata=()):
    return as_dict(stub.group.add_users(users_request(domain, group_id, user_ids), metadata=metadata, timeout=10))


def list_users(stub, domain, group_id, metadata=(), **fields):
    body = {"group_id": group_id, "domain_id": domain, **fields}
    return as_dict(stub.group.list_users(parse(gpb.ListGroupUsersRequest, body), metadata=metadata, timeout=10))


# --- the document -------------------------------------------------------------------------------


def test_create_get_list_and_stat(client, domain, other_domain):
    created = create(
        client,
        domain,
        "ops",
        name="Operations",
        description="on call\n\tweekdays",
        labels=["infra", "paged"],
        tags={"cost": "ops", "size": 3},
    )
    assert created["group_id"] == "ops" and created["name"] == "Operations"
    assert created["description"] == "on call\n\tweekdays"
    assert created["labels"] == ["infra", "paged"] and created["tags"] == {"cost": "ops", "size": 3}
    assert created["domain_id"] == domain and created["created_at"] and created["updated_at"]
    assert "member_count" not in created and "policy_ids" not in created  # zero and empty
    assert get(client, domain, "ops") == without_token(created)
    create(client, domain, "dev", name="Developers", labels=["infra"])
    create(client, domain, "sales", name="Sales")
    create(client, other_domain, "intruder", name="Operations intruder", labels=["infra"])

    everything = list_groups(client, domain)
    assert everything["total_count"] == 3 and sorted(ids(everything)) == ["dev", "ops", "sales"]
    infra = list_groups(client, domain, {"filter": [{"k": "labels", "v": "infra", "o": "eq"}]})
    assert infra["total_count"] == 2 and sorted(ids(infra)) == ["dev", "ops"]
    keyword = list_groups(client, domain, {"keyword": "operat"})
    assert ids(keyword) == ["ops"] and keyword["total_count"] == 1
    paged = list_groups(client, domain, {"sort": {"key": "group_id"}, "page": {"start": 2, "limit": 1}})
    assert ids(paged) == ["ops"] and paged["total_count"] == 3
    narrowed = list_groups(client, domain, {"filter": [{"k": "labels", "v": "infra", "o": "eq"}]}, group_id="dev")
    assert ids(narrowed) == ["dev"] and narrowed["total_count"] == 1
    assert list_groups(client, domain, group_id="intruder").get("total_count", 0) == 0

    stat = as_dict(
        client.group.stat(
            parse(
                gpb.GroupStatQuery,
                {
                    "domain_id": domain,
                    "query": {
                        "filter": [{"k": "labels", "v": "infra", "o": "eq"}],
                        "aggregate": [{"count": {"name": "n"}}],
                    },
                },
            ),
            timeout=10,
        )
    )
    assert stat["results"] == [{"n": 2}]
    expect_error(grpc.StatusCode.NOT_FOUND, client.group.get, gpb.GroupRequest(group_id="intruder", domain_id=domain))
    expect_error(
        grpc.StatusCode.ALREADY_EXISTS,
        client.group.create,
        gpb.CreateGroupRequest(group_id="ops", name="again", domain_id=domain),
    )
    assert get(client, domain, "ops")["name"] == "Operations"
    # The same id in another domain is another group.
    create(client, other_domain, "ops", name="Theirs")
    assert get(client, domain, "ops")["name"] == "Operations"


def test_update_sets_the_fields_given_and_is_audited(client, domain):
    create(client, domain, "ops", name="Ops", description="first", labels=["a"], tags={"k": "v"})
    renamed = as_dict(
        client.group.update(gpb.UpdateGroupRequest(group_id="ops", name="Operations", domain_id=domain), timeout=10)
    )
    assert renamed["name"] == "Operations" and renamed["description"] == "first"
    assert renamed["labels"] == ["a"] and renamed["tags"] == {"k": "v"}
    changed = as_dict(
        client.group.update(
            parse(
                gpb.UpdateGroupRequest,
                {
                    "group_id": "ops",
                    "description": "second",
                    "labels": ["b", "c"],
                    "tags": {"team": "sre"},
                    "domain_id": domain,
                },
            ),
            timeout=10,
        )
    )
    assert changed["name"] == "Operations" and changed["description"] == "second"
    assert changed["labels"] == ["b", "c"] and changed["tags"] == {"team": "sre"}
    assert changed["updated_at"] >= renamed["updated_at"] and changed["created_at"] == renamed["created_at"]
    assert get(client, domain, "ops") == without_token(changed)
    entries = audits(client, domain, resource_type="Group", resource_id="ops")
    assert sorted(e["method"] for e in entries) == [
        "repository.Group.create",
        "repository.Group.update",
        "repository.Group.update",
    ]
    last = [e for e in entries if e["method"] == "repository.Group.update" and e["after"]["labels"] == ["b", "c"]]
    assert len(last) == 1 and last[0]["before"]["labels"] == ["a"] and last[0]["before"]["name"] == "Operations"
    expect_error(
        grpc.StatusCode.NOT_FOUND,
        client.group.update,
        gpb.UpdateGroupRequest(group_id="nobody", name="x", domain_id=domain),
    )


def test_member_count_and_policy_ids_follow_the_assignments(client, domain):
    create_policy(client, domain, "p1", ["a.read"])
    create_policy(client, domain, "p2", ["a.write"])
    create_sets(client, domain, groups=["ops", "sub"])
    add_users(client, domain, "ops", ["u1", "u2"])
    assign(client, domain, "SERVICE_ACCOUNT", "robot", "GROUP", "ops")
    assign(client, domain, "GROUP", "sub", "GROUP", "ops")
    assign(client, domain, "GROUP", "ops", "POLICY", "p2")
    assign(client, domain, "GROUP", "ops", "POLICY", "p1")
    assign(client, domain, "GROUP", "sub", "POLICY", "p1")
    described = get(client, domain, "ops")
    assert described["member_count"] == 4 and described["policy_ids"] == ["p1", "p2"]
    listed = {r["group_id"]: r for r in list_groups(client, domain)["results"]}
    assert listed["ops"]["member_count"] == 4 and listed["ops"]["policy_ids"] == ["p1", "p2"]
    assert listed["sub"].get("member_count", 0) == 0 and listed["sub"]["policy_ids"] == ["p1"]


# --- rename ---------------------------------------------------------------------------------------


def test_rename_keeps_members_and_grants(client, domain):
    create_policy(client, domain, "reader", ["inventory.Server.read"])
    create_sets(client, domain, groups=["ops", "sub", "everyone"])
    add_users(client, domain, "ops", ["bob"])
    add_users(client, domain, "sub", ["carol"])
    assign(client, domain, "GROUP", "sub", "GROUP", "ops")
    assign(client, domain, "GROUP", "ops", "POLICY", "reader")
    assign(client, domain, "GROUP", "ops", "GROUP", "everyone")
    before = check_user(client, domain, "bob", "inventory.Server.read")
    assert before["decision"] == "ALLOW" and before["via"] == [
        {"type": "USER", "id": "bob"},
        {"type": "GROUP", "id": "ops"},
    ]
    assert check_user(client, domain, "carol", "inventory.Server.read")["decision"] == "ALLOW"

    renamed = as_dict(
        client.group.update(
            gpb.UpdateGroupRequest(group_id="ops", new_group_id="operators", name="Operators", domain_id=domain),
            timeout=10,
        )
    )
    assert renamed["group_id"] == "operators" and renamed["name"] == "Operators"
    assert renamed["member_count"] == 2 and renamed["policy_ids"] == ["reader"]
    after = check_user(client, domain, "bob", "inventory.Server.read")
    assert after["decision"] == before["decision"] and after["policy_id"] == before["policy_id"]
    assert after["via"] == [{"type": "USER", "id": "bob"}, {"type": "GROUP", "id": "operators"}]
    carol = check_user(client, domain, "carol", "inventory.Server.read")
    assert carol["decision"] == "ALLOW"
    assert carol["via"] == [
        {"type": "USER", "id": "carol"},
        {"type": "GROUP", "id": "sub"},
        {"type": "GROUP", "id": "operators"},
    ]
    expect_error(grpc.StatusCode.NOT_FOUND, client.group.get, gpb.GroupRequest(group_id="ops", domain_id=domain))
    assert get(client, domain, "operators")["created_at"] == renamed["created_at"]
    assert edges(client, domain) == {
        ("USER", "bob", "GROUP", "operators"),
        ("USER", "carol", "GROUP", "sub"),
        ("GROUP", "sub", "GROUP", "operators"),
        ("GROUP", "operators", "POLICY", "reader"),
        ("GROUP", "operators", "GROUP", "everyone"),
    }
    nested = list_users(client, domain, "operators", include_nested=True)
    assert [(m["user_id"], m.get("via", [])) for m in nested["results"]] == [
        ("bob", []),
        ("carol", [{"type": "GROUP", "id": "sub"}]),
    ]
    assert list_users(client, domain, "everyone", include_nested=True)["total_count"] == 2
    # The old id is free again, and a new group of that id has nothing of the old one.
    assert create(client, domain, "ops").get("member_count", 0) == 0
    assert get(client, domain, "ops").get("policy_ids", []) == []


def test_rename_onto_an_existing_id_is_already_exists_and_changes_nothing(client, domain):
    create_policy(client, domain, "p", ["a.read"])
    create(client, domain, "blue", name="Blue")
    create(client, domain, "green", name="Green")
    add_users(client, domain, "blue", ["b1"])
    add_users(client, domain, "green", ["g1"])
    assign(client, domain, "GROUP", "blue", "POLICY", "p")
    before = edges(client, domain)
    blue, green = get(client, domain, "blue"), get(client, domain, "green")
    expect_error(
        grpc.StatusCode.ALREADY_EXISTS,
        client.group.update,
        gpb.UpdateGroupRequest(group_id="blue", new_group_id="green", name="Renamed", domain_id=domain),
    )
    assert edges(client, domain) == before
    assert get(client, domain, "blue") == blue and get(client, domain, "green") == green
    assert check_user(client, domain, "b1", "a.read")["decision"] == "ALLOW"
    assert check_user(client, domain, "g1", "a.read")["decision"] == "DENY"
    # Renaming onto its own id is no rename at all.
    same = as_dict(
        client.group.update(gpb.UpdateGroupRequest(group_id="blue", new_group_id="blue", domain_id=domain), timeout=10)
    )
    assert same["group_id"] == "blue" and edges(client, domain) == before


# --- delete ---------------------------------------------------------------------------------------


def test_delete_is_refused_while_the_group_has_members_or_grants(client, domain):
    create_policy(client, domain, "p", ["a.read"])
    create_sets(client, domain, groups=["busy", "holder", "empty"])
    add_users(client, domain, "busy", ["u1", "u2"])
    assign(client, domain, "GROUP", "busy", "POLICY", "p")
    assign(client, domain, "GROUP", "holder", "POLICY", "p")
    error = expect_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        client.group.delete,
        gpb.DeleteGroupRequest(group_id="busy", domain_id=domain),
    )
    assert "busy has 2 members and 1 grant" in error.details()
    metadata = error_info(error).metadata
    assert (metadata["group_id"], metadata["member_count"], metadata["grant_count"]) == ("busy", "2", "1")
    error = expect_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        client.group.delete,
        gpb.DeleteGroupRequest(group_id="holder", domain_id=domain),
    )
    assert "holder has 0 members and 1 grant" in error.details()
    assert get(client, domain, "busy")["member_count"] == 2 and get(client, domain, "holder")["policy_ids"] == ["p"]
    assert len(edges(client, domain)) == 4
    client.group.delete(gpb.DeleteGroupRequest(group_id="empty", domain_id=domain), timeout=10)
    expect_error(grpc.StatusCode.NOT_FOUND, client.group.get, gpb.GroupRequest(group_id="empty", domain_id=domain))
    expect_error(
        grpc.StatusCode.NOT_FOUND, client.group.delete, gpb.DeleteGroupRequest(group_id="empty", domain_id=domain)
    )
    entries = audits(client, domain, resource_type="Group", resource_id="empty")
    (entry,) = [e for e in entries if e["method"] == "repository.Group.delete"]
    assert entry["before"]["group_id"] == "empty"
    assert "after" not in entry


def test_cascade_delete_removes_every_assignment_naming_the_group_and_audits_each(client, domain):
    create_policy(client, domain, "p", ["a.read"])
    create_policy(client, domain, "q", ["a.write"])
    create_sets(client, domain, groups=["ops", "sub", "all"], roles=["oncall"])
    add_users(client, domain, "ops", ["u1", "u2"])
    assign(client, domain, "SERVICE_ACCOUNT", "robot", "GROUP", "ops")
    assign(client, domain, "GROUP", "sub", "GROUP", "ops")  # a group in it
    assign(client, domain, "GROUP", "ops", "GROUP", "all")  # it in a group
    assign(client, domain, "GROUP", "ops", "ROLE", "oncall")  # it bound to a role
    assign(client, domain, "GROUP", "ops", "POLICY", "p")  # its grant
    # Not naming ops: these stay.
    add_users(client, domain, "sub", ["u3"])
    assign(client, domain, "GROUP", "all", "POLICY", "q")
    assign(client, domain, "USER", "u2", "POLICY", "q")
    named = client.assignment.list(apb.AssignmentQuery(domain_id=domain), timeout=10).results
    doomed = {a.assignment_id for a in named if "ops" in (a.subject.id, a.grant.id)}
    assert len(doomed) == 7
    assert check_user(client, domain, "u1", "a.read")["decision"] == "ALLOW"
    assert check_user(client, domain, "u3", "a.write")["decision"] == "ALLOW"  # sub -> ops -> all -> q

    client.group.delete(gpb.DeleteGroupRequest(group_id="ops", cascade=True, domain_id=domain), timeout=10)
    expect_error(grpc.StatusCode.NOT_FOUND, client.group.get, gpb.GroupRequest(group_id="ops", domain_id=domain))
    assert edges(client, domain) == {
        ("USER", "u3", "GROUP", "sub"),
        ("GROUP", "all", "POLICY", "q"),
        ("USER", "u2", "POLICY", "q"),
    }
    assert check_user(client, domain, "u1", "a.read")["decision"] == "DENY"
    assert check_user(client, domain, "u3", "a.write")["decision"] == "DENY"
    assert check_user(client, domain, "u2", "a.write")["decision"] == "ALLOW"
    assert get(client, domain, "sub").get("member_count", 0) == 1
    assert get(client, domain, "all").get("member_count", 0) == 0

    (deleted,) = [e for e in audits(client, domain, resource_type="Group") if e["method"] == "repository.Group.delete"]
    assert deleted["resource_id"] == "ops" and deleted["before"]["group_id"] == "ops"
    removed = [
        e for e in audits(client, domain, resource_type="Assignment") if e["method"] == "repository.Assignment.delete"
    ]
    assert {e["resource_id"] for e in removed} == doomed and len(removed) == len(doomed)
    assert all("after" not in e and "ops" in (e["before"]["subject_id"], e["before"]["grant_id"]) for e in removed)
    assert {e["transaction_id"] for e in removed} == {deleted["transaction_id"]}


def test_delete_many_is_all_or_nothing(client, domain):
    create_sets(client, domain, groups=["a", "b", "busy"])
    add_users(client, domain, "busy", ["u"])

    def remaining():
        return sorted(ids(list_groups(client, domain)))

    error = expect_error(
        grpc.StatusCode.NOT_FOUND,
        client.group.delete_many,
        gpb.DeleteGroupsRequest(group_ids=["a", "missing", "b"], domain_id=domain),
    )
    assert "missing" in error.details() and "a" not in error_info(error).metadata["group_id"].split(",")
    assert remaining() == ["a", "b", "busy"]
    error = expect_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        client.group.delete_many,
        gpb.DeleteGroupsRequest(group_ids=["a", "busy"], domain_id=domain),
    )
    assert "busy has 1 member and 0 grants" in error.details()
    assert remaining() == ["a", "b", "busy"] and edges(client, domain) == {("USER", "u", "GROUP", "busy")}

    done = as_dict(
        client.group.delete_many(gpb.DeleteGroupsRequest(group_ids=["b", "a"], domain_id=domain), timeout=10)
    )
    assert without_token(done) == {
        "results": [{"group_id": "b", "outcome": "DELETED"}, {"group_id": "a", "outcome": "DELETED"}],
        "deleted_count": 2,
    }
    assert remaining() == ["busy"]
    done = as_dict(
        client.group.delete_many(
            gpb.DeleteGroupsRequest(group_ids=["busy"], cascade=True, domain_id=domain), timeout=10
        )
    )
    assert done["deleted_count"] == 1 and remaining() == [] and edges(client, domain) == set()
    methods = sorted(e["method"] for e in audits(client, domain) if e["method"].endswith("delete_many"))
    assert methods == ["repository.Group.delete_many"] * 3


def test_delete_many_of_a_thousand_groups_with_cascade(client, domain, long_calls):
    group_ids = [f"g{i:04d}" for i in range(1000)]  # the API's cap on ids per call
    items = [{"policy": {"policy_id": "p", "name": "p", "permissions": ["a.read"]}}]
    items += [{"group": {"group_id": g, "name": g}} for g in group_ids]
    # One group in ten has a member; one in fifty holds the policy.
    items += [
        {"assignment": {"subject": {"type": "USER", "id": f"u-{g}"}, "grant": {"type": "GROUP", "id": g}}}
        for g in group_ids[::10]
    ]
    items += [
        {"assignment": {"subject": {"type": "GROUP", "id": g}, "grant": {"type": "POLICY", "id": "p"}}}
        for g in group_ids[::50]
    ]
    bulk_import(client, domain, items, per_message=500)
    named = client.assignment.list(apb.AssignmentQuery(domain_id=domain), timeout=10).results
    assert len(named) == 120
    _, before = changes_after(client, domain)

    error = expect_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        client.group.delete_many,
        gpb.DeleteGroupsRequest(group_ids=group_ids, domain_id=domain),
        timeout=120,
    )
    assert "g0000 has 1 member and 1 grant; g0010 has 1 member and 0 grants" in error.details()
    assert len(ids(list_groups(client, domain, query={"page": {"limit": 1000}}))) == 1000
    assert len(edges(client, domain)) == 120
    assert changes_after(client, domain, before)[0] == []

    done = as_dict(
        client.group.delete_many(
            gpb.DeleteGroupsRequest(group_ids=group_ids, cascade=True, domain_id=domain), timeout=120
        )
    )
    assert without_token(done) == {
        "results": [{"group_id": g, "outcome": "DELETED"} for g in group_ids],
        "deleted_count": 1000,
    }
    assert ids(list_groups(client, domain)) == [] and edges(client, domain) == set()
    deleted = audited(client, domain, "repository.Group.delete_many")
    assert sorted(e["resource_id"] for e in deleted) == group_ids
    removed = audited(client, domain, "repository.Assignment.delete")
    assert sorted(e["resource_id"] for e in removed) == sorted(a.assignment_id for a in named)
    assert {e["transaction_id"] for e in deleted + removed} == {deleted[0]["transaction_id"]}
    logged, _ = changes_after(client, domain, before)
    assert sorted(logged) == sorted(
        [("GROUP", g, "DELETE") for g in group_ids] + [("ASSIGNMENT", a.assignment_id, "DELETE") for a in named]
    )


def test_delete_many_of_groups_named_meanwhile_is_refused_whole(client, domain, monkeypatch):
    group_ids = [f"g{i:04d}" for i in range(450)]  # several `$in` batches
    bulk_import(client, domain, [{"group": {"group_id": g, "name": g}} for g in group_ids], per_message=450)
    manager = client.app.managers.group
    original = manager.delete_ids

    def member_first(*args, **kwargs):
        # A member lands after the delete counted members, before its write.
        add_users(client, domain, "g0449", ["late"])
        return original(*args, **kwargs)

    monkeypatch.setattr(manager, "delete_ids", member_first)
    error = expect_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        client.group.delete_many,
        gpb.DeleteGroupsRequest(group_ids=group_ids, domain_id=domain),
        timeout=60,
    )
    assert "g0449 has 1 member" in error.details()
    assert sorted(ids(list_groups(client, domain, query={"page": {"limit": 1000}}))) == group_ids
    assert edges(client, domain) == {("USER", "late", "GROUP", "g0449")}
    assert audited(client, domain, "repository.Group.delete_many") == []


def test_a_group_and_a_role_of_the_same_id_are_kept_apart(client, domain):
    create_policy(client, domain, "p", ["a.read"])
    create_policy(client, domain, "q", ["a.write"])
    create_sets(client, domain, groups=["ops"], roles=["ops"])
    add_users(client, domain, "ops", ["gus"])
    client.role.bind_users(rpb.RoleUsersRequest(role_id="ops", user_ids=["rob"], domain_id=domain), timeout=10)
    assign(client, domain, "GROUP", "ops", "POLICY", "p")
    assign(client, domain, "ROLE", "ops", "POLICY", "q")
    role_edges = {("USER", "rob", "ROLE", "ops"), ("ROLE", "ops", "POLICY", "q")}
    client.group.update(gpb.UpdateGroupRequest(group_id="ops", new_group_id="team", domain_id=domain), timeout=10)
    assert edges(client, domain) == role_edges | {("USER", "gus", "GROUP", "team"), ("GROUP", "team", "POLICY", "p")}
    # A new group ops: the role's assignments are not its members or grants.
    create_sets(client, domain, groups=["ops"])
    assert get(client, domain, "ops").get("member_count", 0) == 0
    client.group.delete(gpb.DeleteGroupRequest(group_id="ops", domain_id=domain), timeout=10)
    create_sets(client, domain, groups=["ops"])
    add_users(client, domain, "ops", ["gil"])
    client.group.delete(gpb.DeleteGroupRequest(group_id="ops", cascade=True, domain_id=domain), timeout=10)
    client.group.delete(gpb.DeleteGroupRequest(group_id="team", cascade=True, domain_id=domain), timeout=10)
    assert edges(client, domain) == role_edges
    assert check_user(client, domain, "rob", "a.write")["decision"] == "ALLOW"


# --- members ------------------------------------------------------------------------------------


def test_add_and_remove_users_report_each_user(client, domain):
    create_sets(client, domain, groups=["ops"])
    first = add_users(client, domain, "ops", ["u1", "u2"])
    assert outcomes(first) == [("u1", "CREATED"), ("u2", "CREATED")] and first["changed_count"] == 2
    assert all(r["grant"] == {"type": "GROUP", "id": "ops"} and r["assignment_id"] for r in first["results"])
    assert all(r["subject"]["type"] == "USER" for r in first["results"])
    again = add_users(client, domain, "ops", ["u2", "u3", "u3", "u2"])
    assert outcomes(again) == [("u2", "ALREADY_EXISTS"), ("u3", "CREATED")] and again["changed_count"] == 1
    assert again["results"][0]["assignment_id"] == first["results"][1]["assignment_id"]
    assert edges(client, domain) == {("USER", u, "GROUP", "ops") for u in ("u1", "u2", "u3")}

    removed = as_dict(client.group.remove_users(users_request(domain, "ops", ["u1", "nobody", "u1"]), timeout=10))
    assert outcomes(removed) == [("u1", "REMOVED"), ("nobody", "NOT_FOUND")] and removed["changed_count"] == 1
    assert removed["results"][0]["assignment_id"] == first["results"][0]["assignment_id"]
    assert [m["user_id"] for m in list_users(client, domain, "ops")["results"]] == ["u2", "u3"]
    entries = audits(client, domain)
    assert sorted(e["method"] for e in entries if "users" in e["method"]) == [
        "repository.Group.add_users",
        "repository.Group.add_users",
        "repository.Group.add_users",
        "repository.Group.remove_users",
    ]
    # Each is filed under the assignment it changed, so the audit of an assignment finds it.
    removed_id = removed["results"][0]["assignment_id"]
    assert sorted((e["resource_type"], e["method"]) for e in audits(client, domain, resource_id=removed_id)) == [
        ("Assignment", "repository.Group.add_users"),
        ("Assignment", "repository.Group.remove_users"),
    ]


def test_users_of_a_missing_group_are_not_found_and_nothing_is_written(client, domain, other_domain):
    create_sets(client, other_domain, groups=["theirs"])
    for group_id in ("missing", "theirs"):
        for call in (client.group.add_users, client.group.remove_users):
            error = expect_error(grpc.StatusCode.NOT_FOUND, call, users_request(domain, group_id, ["u"]))
            assert error_info(error).metadata["group_id"] == group_id
        expect_error(
            grpc.StatusCode.NOT_FOUND,
            client.group.list_users,
            gpb.ListGroupUsersRequest(group_id=group_id, domain_id=domain),
        )
        expect_error(
            grpc.StatusCode.NOT_FOUND,
            client.group.list_authorized_resources,
            gpb.GroupAuthorizedResourcesRequest(group_id=group_id, domain_id=domain),
        )
    assert edges(client, domain) == set() and edges(client, other_domain) == set()


def test_list_users_direct_and_nested_with_the_groups_between(client, domain):
    create_sets(client, domain, groups=["top", "mid", "low", "deep", "side"])
    assign(client, domain, "GROUP", "mid", "GROUP", "top")
    assign(client, domain, "GROUP", "low", "GROUP", "mid")
    assign(client, domain, "GROUP", "deep", "GROUP", "low")
    assign(client, domain, "GROUP", "side", "GROUP", "top")
    add_users(client, domain, "top", ["ann", "eve"])
    add_users(client, domain, "mid", ["bob"])
    add_users(client, domain, "low", ["cat", "eve"])  # eve is also direct: the shorter path counts
    add_users(client, domain, "deep", ["dan"])
    add_users(client, domain, "side", ["fay"])
    assign(client, domain, "SERVICE_ACCOUNT", "robot", "GROUP", "top")
    assign(client, domain, "SERVICE_ACCOUNT", "droid", "GROUP", "deep")

    direct = list_users(client, domain, "top")
    assert [(m["user_id"], m.get("via", [])) for m in direct["results"]] == [("ann", []), ("eve", [])]
    assert direct["total_count"] == 2  # the service account and the groups are members, not users

    def g(group_id):
        return {"type": "GROUP", "id": group_id}

    nested = list_users(client, domain, "top", include_nested=True)
    assert [(m["user_id"], m.get("via", [])) for m in nested["results"]] == [
        ("ann", []),
        ("bob", [g("mid")]),
        ("cat", [g("low"), g("mid")]),
        ("dan", [g("deep"), g("low"), g("mid")]),
        ("eve", []),
        ("fay", [g("side")]),
    ]
    assert nested["total_count"] == 6
    from_mid = list_users(client, domain, "mid", include_nested=True)
    assert [(m["user_id"], m.get("via", [])) for m in from_mid["results"]] == [
        ("bob", []),
        ("cat", [g("low")]),
        ("dan", [g("deep"), g("low")]),
        ("eve", [g("low")]),
    ]


def test_list_users_pages_with_an_exact_total(client, domain):
    create_sets(client, domain, groups=["big", "inner"])
    add_users(client, domain, "big", [f"user-{i:02d}" for i in range(23)])
    assign(client, domain, "GROUP", "inner", "GROUP", "big")
    add_users(client, domain, "inner", ["user-99"])
    seen = []
    for start in (1, 11, 21):
        page = list_users(client, domain, "big", page={"start": start, "limit": 10})
        assert page["total_count"] == 23
        assert len(page["results"]) == min(10, 23 - start + 1)
        seen.extend(m["user_id"] for m in page["results"])
    assert seen == [f"user-{i:02d}" for i in range(23)]
    past = list_users(client, domain, "big", page={"start": 30, "limit": 10})
    assert past.get("results", []) == [] and past["total_count"] == 23
    nested = list_users(client, domain, "big", include_nested=True, page={"start": 23, "limit": 5})
    assert [m["user_id"] for m in nested["results"]] == ["user-22", "user-99"] and nested["total_count"] == 24


def test_list_authorized_resources_of_a_group_carries_its_exceptions(client, domain):
    create_policy(
        client,
        domain,
        "srv",
        statements=[
            {"effect": "ALLOW", "actions": ["inventory.*"], "resources": ["srv/*"]},
            {"effect": "DENY", "actions": ["inventory.Server.delete"], "resources": ["srv/prod/*"]},
        ],
    )
    create_policy(
        client, domain, "net", statements=[{"effect": "ALLOW", "actions": ["network.read"], "resources": ["net/*"]}]
    )
    create_sets(client, domain, groups=["ops", "parent"])
    assign(client, domain, "GROUP", "ops", "POLICY", "srv")
    assign(client, domain, "GROUP", "ops", "GROUP", "parent")
    assign(client, domain, "GROUP", "parent", "POLICY", "net")
    asked = {"action": "inventory.Server.delete"}
    found = as_dict(
        client.group.list_authorized_resources(
            parse(gpb.GroupAuthorizedResourcesRequest, {"group_id": "ops", "domain_id": domain, **asked}), timeout=10
        )
    )
    assert without_token(found) == {
        "results": [
            {
                "resource": "srv/*",
                "actions": ["inventory.*"],
                "exceptions": [{"resource": "srv/prod/*", "actions": ["inventory.Server.delete"]}],
            }
        ],
        "total_count": 1,
    }
    for extra in (asked, {}, {"resource_prefix": "net/"}, {"page": {"start": 2, "limit": 1}}):
        by_group = client.group.list_authorized_resources(
            parse(gpb.GroupAuthorizedResourcesRequest, {"group_id": "ops", "domain_id": domain, **extra}), timeout=10
        )
        by_assignment = client.assignment.list_authorized_resources(
            parse(
                apb.ListAuthorizedResourcesRequest,
                {"subject": {"type": "GROUP", "id": "ops"}, "domain_id": domain, **extra},
            ),
            timeout=10,
        )
        assert as_dict(by_group) == as_dict(by_assignment), extra
    everything = as_dict(
        client.group.list_authorized_resources(
            gpb.GroupAuthorizedResourcesRequest(group_id="ops", domain_id=domain), timeout=10
        )
    )
    assert [r["resource"] for r in everything["results"]] == ["net/*", "srv/*"]


# --- assignments naming groups ------------------------------------------------------------------


def test_assignments_naming_a_missing_group_are_not_found_and_write_nothing(client, domain, other_domain):
    create_policy(client, domain, "p", ["a.read"])
    create_sets(client, domain, groups=["real"])
    create_sets(client, other_domain, groups=["theirs"])
    for subject, grant in (
        ({"type": "USER", "id": "u"}, {"type": "GROUP", "id": "ghost"}),
        ({"type": "GROUP", "id": "ghost"}, {"type": "POLICY", "id": "p"}),
        ({"type": "GROUP", "id": "ghost"}, {"type": "GROUP", "id": "real"}),
        ({"type": "GROUP", "id": "real"}, {"type": "GROUP", "id": "theirs"}),
    ):
        error = expect_error(
            grpc.StatusCode.NOT_FOUND,
            client.assignment.create,
            parse(apb.CreateAssignmentRequest, {"subject": subject, "grant": grant, "domain_id": domain}),
        )
        assert error_info(error).metadata["resource"] == "Group"
    error = expect_error(
        grpc.StatusCode.NOT_FOUND,
        client.assignment.add,
        parse(
            apb.AssignmentsRequest,
            {
                "grants": [{"type": "GROUP", "id": "real"}, {"type": "GROUP", "id": "ghost"}],
                "subject_type": "USER",
                "subject_ids": ["u1", "u2"],
                "domain_id": domain,
            },
        ),
    )
    assert error_info(error).metadata["group_id"] == "ghost"
    error = expect_error(
        grpc.StatusCode.NOT_FOUND,
        client.assignment.add,
        parse(
            apb.AssignmentsRequest,
            {
                "grants": [{"type": "POLICY", "id": "p"}],
                "subject_type": "GROUP",
                "subject_ids": ["real", "ghost"],
                "domain_id": domain,
            },
        ),
    )
    assert error_info(error).metadata["group_id"] == "ghost"
    assert edges(client, domain) == set()
    assert get(client, domain, "real").get("member_count", 0) == 0
    assert not any(e["resource_type"] == "Assignment" for e in audits(client, domain))
    # With the group there, the same calls go through.
    assign(client, domain, "USER", "u", "GROUP", "real")
    assert edges(client, domain) == {("USER", "u", "GROUP", "real")}


# --- bad input ----------------------------------------------------------------------------------

TOO_MANY_USERS = [f"u{i}" for i in range(10_001)]
OVERSIZE_LABELS = ["v" * 4000 for _ in range(5)]  # each string allowed, 20 KB together
OVERSIZE_TAGS = {f"k{i}": "v" * 4000 for i in range(5)}


def _create(**body):
    return "create", parse(gpb.CreateGroupRequest, {"group_id": "new", "name": "New", **body})


def _update(**body):
    return "update", parse(gpb.UpdateGroupRequest, {"group_id": "g", **body})


BAD_REQUESTS = [
    (*_create(group_id=""), "group_id"),
    (*_create(group_id="Upper"), "group_id"),
    (*_create(group_id="x" * 49), "group_id"),
    (*_create(group_id="-leading"), "group_id"),
    (*_create(group_id="bad_underscore"), "group_id"),
    (*_create(group_id="bell\u0007"), "group_id"),
    (*_create(group_id="bidi\u202e"), "group_id"),
    (*_create(name=""), "name"),
    (*_create(name="n" * 256), "name"),
    (*_create(name="bell\u0007"), "name"),
    (*_create(name="bidi\u202e"), "name"),
    (*_create(description="d" * 4097), "description"),
    (*_create(description="bidi\u202e"), "description"),
    (*_create(labels=OVERSIZE_LABELS), "labels"),
    (*_create(labels=["ok", "v" * 4097]), "labels[1]"),
    (*_create(tags=OVERSIZE_TAGS), "tags"),
    (*_create(tags={"a.b": "v"}), "tags.a.b"),
    (*_update(group_id=""), "group_id"),
    (*_update(group_id="x" * 129), "group_id"),
    (*_update(group_id="bell\u0007"), "group_id"),
    (*_update(new_group_id="Upper"), "new_group_id"),
    (*_update(new_group_id="x" * 49), "new_group_id"),
    (*_update(new_group_id="bell\u0007"), "new_group_id"),
    (*_update(new_group_id="bidi\u202e"), "new_group_id"),
    (*_update(name="n" * 256), "name"),
    (*_update(description="d" * 4097), "description"),
    (*_update(labels=OVERSIZE_LABELS), "labels"),
    (*_update(tags=OVERSIZE_TAGS), "tags"),
    ("delete", gpb.DeleteGroupRequest(), "group_id"),
    ("delete", gpb.DeleteGroupRequest(group_id="bidi\u202e"), "group_id"),
    ("get", gpb.GroupRequest(), "group_id"),
    ("get", gpb.GroupRequest(group_id="x" * 129), "group_id"),
    ("list", gpb.GroupQuery(group_id="bell\u0007"), "group_id"),
    ("stat", gpb.GroupStatQuery(), "query"),
    ("delete_many", gpb.DeleteGroupsRequest(), "group_ids"),
    ("delete_many", gpb.DeleteGroupsRequest(group_ids=[f"g{i}" for i in range(1001)]), "group_ids"),
    ("delete_many", gpb.DeleteGroupsRequest(group_ids=["g", ""]), "group_ids[1]"),
    ("delete_many", gpb.DeleteGroupsRequest(group_ids=["g", "bell\u0007"]), "group_ids[1]"),
    ("add_users", gpb.GroupUsersRequest(user_ids=["u"]), "group_id"),
    ("add_users", gpb.GroupUsersRequest(group_id="g"), "user_ids"),
    ("add_users", gpb.GroupUsersRequest(group_id="g", user_ids=TOO_MANY_USERS), "user_ids"),
    ("add_users", gpb.GroupUsersRequest(group_id="g", user_ids=["u", "bell\u0007"]), "user_ids[1]"),
    ("add_users", gpb.GroupUsersRequest(group_id="g", user_ids=["u", "u", "x" * 129]), "user_ids[2]"),
    ("add_users", gpb.GroupUsersRequest(group_id="g", user_ids=["bidi\u202e"]), "user_ids[0]"),
    ("remove_users", gpb.GroupUsersRequest(user_ids=["u"]), "group_id"),
    ("remove_users", gpb.GroupUsersRequest(group_id="g"), "user_ids"),
    ("remove_users", gpb.GroupUsersRequest(group_id="g", user_ids=TOO_MANY_USERS), "user_ids"),
    ("remove_users", gpb.GroupUsersRequest(group_id="g", user_ids=["u", "bell\u0007"]), "user_ids[1]"),
    ("list_users", gpb.ListGroupUsersRequest(), "group_id"),
    ("list_users", gpb.ListGroupUsersRequest(group_id="bidi\u202e"), "group_id"),
    ("list_authorized_resources", gpb.GroupAuthorizedResourcesRequest(), "group_id"),
    ("list_authorized_resources", gpb.GroupAuthorizedResourcesRequest(group_id="g", action=" a"), "action"),
    (
        "list_authorized_resources",
        gpb.GroupAuthorizedResourcesRequest(group_id="g", resource_prefix="r" * 513),
        "resource_prefix",
    ),
]


@pytest.mark.parametrize(
    "method, request_, field",
    BAD_REQUESTS,
    ids=[f"{m}-{f}-{i}" for i, (m, _, f) in enumerate(BAD_REQUESTS)],
)
def test_bad_input_is_invalid_argument_naming_the_field(client, domain, method, request_, field):
    # The group exists and has a member: the bad input is the only thing wrong with the call.
    create_sets(client, domain, groups=["g"])
    add_users(client, domain, "g", ["u"])
    before = edges(client, domain), list_groups(client, domain)
    request_ = type(request_).FromString(request_.SerializeToString())
    request_.domain_id = domain
    error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, getattr(client.group, method), request_)
    assert field_violations(error) == [field]
    assert (edges(client, domain), list_groups(client, domain)) == before


def test_the_limits_themselves_are_accepted(client, domain):
    longest = "a" + "-" * 46 + "z"
    created = create(client, domain, longest, name="n" * 255, description="d" * 4096, tags={"k": "v" * 4000})
    assert created["group_id"] == longest and len(created["name"]) == 255
    renamed = as_dict(
        client.group.update(
            gpb.UpdateGroupRequest(group_id=longest, new_group_id="0" * 48, domain_id=domain), timeout=10
        )
    )
    assert renamed["group_id"] == "0" * 48
    # Groups that earlier versions knew only by id keep looser ids; they are found by the id rule.
    expect_error(
        grpc.StatusCode.NOT_FOUND, client.group.get, gpb.GroupRequest(group_id="Legacy_Group", domain_id=domain)
    )


# --- authorization ------------------------------------------------------------------------------


def admin(secure, domain):
    return secure.metadata(f"admin-{domain}", did=domain, rol="DOMAIN_ADMIN")


def user(secure, domain, name):
    return secure.metadata(name, did=domain)


EVERY_RPC = [
    ("create", gpb.CreateGroupRequest(group_id="new", name="new")),
    ("update", gpb.UpdateGroupRequest(group_id="g", name="renamed")),
    ("update", gpb.UpdateGroupRequest(group_id="g", new_group_id="g2")),
    ("delete", gpb.DeleteGroupRequest(group_id="empty")),
    ("delete_many", gpb.DeleteGroupsRequest(group_ids=["empty"])),
    ("get", gpb.GroupRequest(group_id="g")),
    ("list", gpb.GroupQuery()),
    ("stat", parse(gpb.GroupStatQuery, {"query": {"aggregate": [{"count": {"name": "n"}}]}})),
    ("add_users", gpb.GroupUsersRequest(group_id="g", user_ids=["zed"])),
    ("remove_users", gpb.GroupUsersRequest(group_id="g", user_ids=["u"])),
    ("list_users", gpb.ListGroupUsersRequest(group_id="g")),
    ("list_authorized_resources", gpb.GroupAuthorizedResourcesRequest(group_id="g")),
]


def test_a_user_without_assignments_may_call_no_group_rpc(secure, domain):
    boss = admin(secure, domain)
    create_sets(secure, domain, groups=["g", "empty"], metadata=boss)
    add_users(secure, domain, "g", ["u"], metadata=boss)
    nobody = user(secure, domain, "nobody")
    for method, request_ in EVERY_RPC:
        request_ = type(request_).FromString(request_.SerializeToString())
        request_.domain_id = domain
        error = expect_error(
            grpc.StatusCode.PERMISSION_DENIED, getattr(secure.group, method), request_, metadata=nobody
        )
        assert f"repository.Group.{method}" in error.details() or method == "delete_many", error.details()
    assert sorted(ids(list_groups(secure, domain, metadata=boss))) == ["empty", "g"]
    assert edges(secure, domain, metadata=boss) == {("USER", "u", "GROUP", "g")}
    # read-only may read, and nothing else.
    policy_holder = user(secure, domain, "reader")
    assign(secure, domain, "USER", "reader", "POLICY", "managed-read-only", metadata=boss)
    assert get(secure, domain, "g", metadata=policy_holder)["member_count"] == 1
    assert list_groups(secure, domain, metadata=policy_holder)["total_count"] == 2
    assert list_users(secure, domain, "g", metadata=policy_holder)["total_count"] == 1
    expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        secure.group.add_users,
        users_request(domain, "g", ["reader"]),
        metadata=policy_holder,
    )


def test_every_group_rpc_is_allowed_to_a_domain_admin(secure, domain):
    boss = admin(secure, domain)
    create_sets(secure, domain, groups=["g", "empty"], metadata=boss)
    add_users(secure, domain, "g", ["u"], metadata=boss)
    for method, request_ in EVERY_RPC:
        if method in ("delete_many",) or (method == "update" and request_.new_group_id):
            continue  # these change what the calls after them see; done last
        request_ = type(request_).FromString(request_.SerializeToString())
        request_.domain_id = domain
        getattr(secure.group, method)(request_, metadata=boss, timeout=10)
    secure.group.delete_many(gpb.DeleteGroupsRequest(group_ids=["new"], domain_id=domain), metadata=boss, timeout=10)
    secure.group.update(
        gpb.UpdateGroupRequest(group_id="g", new_group_id="g2", domain_id=domain), metadata=boss, timeout=10
    )
    assert sorted(ids(list_groups(secure, domain, metadata=boss))) == ["g2"]


TEAM_ADMIN = {"effect": "ALLOW", "actions": ["repository.Group.*"], "resources": ["group/team-*"]}


def test_scoped_grants_manage_only_the_groups_they_name(secure, domain):
    boss = admin(secure, domain)
    create_policy(secure, domain, "team-admin", statements=[TEAM_ADMIN], metadata=boss)
    assign(secure, domain, "USER", "tara", "POLICY", "team-admin", metadata=boss)
    create_sets(secure, domain, groups=["admins"], metadata=boss)
    tara = user(secure, domain, "tara")

    create(secure, domain, "team-a", metadata=tara, name="Team A")
    create(secure, domain, "team-b", metadata=tara)
    expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        secure.group.create,
        gpb.CreateGroupRequest(group_id="ops", name="ops", domain_id=domain),
        metadata=tara,
    )
    secure.group.update(
        gpb.UpdateGroupRequest(group_id="team-a", description="ours", domain_id=domain), metadata=tara, timeout=10
    )
    assert outcomes(add_users(secure, domain, "team-a", ["u1", "u2"], metadata=tara)) == [
        ("u1", "CREATED"),
        ("u2", "CREATED"),
    ]
    secure.group.remove_users(users_request(domain, "team-a", ["u2"]), metadata=tara, timeout=10)
    assert [m["user_id"] for m in list_users(secure, domain, "team-a", metadata=tara)["results"]] == ["u1"]
    assert get(secure, domain, "team-a", metadata=tara)["description"] == "ours"
    secure.group.delete(gpb.DeleteGroupRequest(group_id="team-b", domain_id=domain), metadata=tara, timeout=10)

    for method, request_ in [
        ("get", gpb.GroupRequest(group_id="admins")),
        ("update", gpb.UpdateGroupRequest(group_id="admins", name="mine")),
        ("delete", gpb.DeleteGroupRequest(group_id="admins")),
        ("delete_many", gpb.DeleteGroupsRequest(group_ids=["team-a", "admins"])),
        ("add_users", gpb.GroupUsersRequest(group_id="admins", user_ids=["tara"])),
        ("remove_users", gpb.GroupUsersRequest(group_id="admins", user_ids=["tara"])),
        ("list_users", gpb.ListGroupUsersRequest(group_id="admins")),
        ("list_authorized_resources", gpb.GroupAuthorizedResourcesRequest(group_id="admins")),
        # `group/team-*` is not the collection: listing and statistics are asked on `group`.
        ("list", gpb.GroupQuery()),
        ("stat", parse(gpb.GroupStatQuery, {"query": {"aggregate": [{"count": {"name": "n"}}]}})),
    ]:
        request_.domain_id = domain
        error = expect_error(grpc.StatusCode.PERMISSION_DENIED, getattr(secure.group, method), request_, metadata=tara)
        assert "group/admins" in error.details() or method in ("list", "stat"), error.details()
    assert sorted(ids(list_groups(secure, domain, metadata=boss))) == ["admins", "team-a"]
    assert get(secure, domain, "admins", metadata=boss)["name"] == "admins"
    assert edges(secure, domain, metadata=boss) == {
        ("USER", "tara", "POLICY", "team-admin"),
        ("USER", "u1", "GROUP", "team-a"),
    }


def test_a_rename_needs_create_on_the_new_id(secure, domain):
    boss = admin(secure, domain)
    updater = {"effect": "ALLOW", "actions": ["repository.Group.update"], "resources": ["group/team-*"]}
    create_policy(secure, domain, "team-updater", statements=[updater], metadata=boss)
    create_policy(secure, domain, "team-admin", statements=[TEAM_ADMIN], metadata=boss)
    assign(secure, domain, "USER", "uma", "POLICY", "team-updater", metadata=boss)
    assign(secure, domain, "USER", "tara", "POLICY", "team-admin", metadata=boss)
    create_sets(secure, domain, groups=["team-a"], metadata=boss)
    add_users(secure, domain, "team-a", ["u1"], metadata=boss)
    uma, tara = user(secure, domain, "uma"), user(secure, domain, "tara")

    def rename(metadata, old, new):
        return gpb.UpdateGroupRequest(group_id=old, new_group_id=new, domain_id=domain), metadata

    # update alone renames nothing, even within its scope; it may still set the name.
    request_, metadata = rename(uma, "team-a", "team-b")
    error = expect_error(grpc.StatusCode.PERMISSION_DENIED, secure.group.update, request_, metadata=metadata)
    assert "repository.Group.create" in error.details() and "group/team-b" in error.details()
    secure.group.update(gpb.UpdateGroupRequest(group_id="team-a", name="A", domain_id=domain), metadata=uma, timeout=10)
    # create on the new id too: within the scope, yes; out of it, no.
    request_, metadata = rename(tara, "team-a", "admins")
    error = expect_error(grpc.StatusCode.PERMISSION_DENIED, secure.group.update, request_, metadata=metadata)
    assert "group/admins" in error.details()
    assert ids(list_groups(secure, domain, metadata=boss)) == ["team-a"]
    assert edges(secure, domain, metadata=boss) >= {("USER", "u1", "GROUP", "team-a")}
    request_, metadata = rename(tara, "team-a", "team-b")
    assert as_dict(secure.group.update(request_, metadata=metadata, timeout=10))["group_id"] == "team-b"
    assert ("USER", "u1", "GROUP", "team-b") in edges(secure, domain, metadata=boss)


def test_adding_users_gives_what_the_group_holds_the_escalation_rule(secure, domain):
    boss = admin(secure, domain)
    adder = {"effect": "ALLOW", "actions": ["repository.Group.add_users"], "resources": ["group/admins"]}
    create_policy(secure, domain, "admins-adder", statements=[adder], metadata=boss)
    create_policy(secure, domain, "inventory-admin", permissions=["inventory.*"], metadata=boss)
    assign(secure, domain, "USER", "greg", "POLICY", "admins-adder", metadata=boss)
    create_sets(secure, domain, groups=["admins"], metadata=boss)
    greg = user(secure, domain, "greg")
    # While the group holds nothing, adding to it gives nothing: allowed.
    assert outcomes(add_users(secure, domain, "admins", ["hal"], metadata=greg)) == [("hal", "CREATED")]
    assign(secure, domain, "GROUP", "admins", "POLICY", "inventory-admin", metadata=boss)
    for users in (["ivy"], ["greg"], ["hal", "ivy"]):
        error = expect_error(
            grpc.StatusCode.PERMISSION_DENIED,
            secure.group.add_users,
            users_request(domain, "admins", users),
            metadata=greg,
        )
        assert "via group/admins" in error.details() and "inventory.*" in error.details()
    assert [m["user_id"] for m in list_users(secure, domain, "admins", metadata=boss)["results"]] == ["hal"]
    assert check_user(secure, domain, "greg", "inventory.Server.read", metadata=boss)["decision"] == "DENY"
    assert outcomes(add_users(secure, domain, "admins", ["ivy"], metadata=boss)) == [("ivy", "CREATED")]
    assert check_user(secure, domain, "ivy", "inventory.Server.read", metadata=boss)["decision"] == "ALLOW"


def test_taking_members_out_lifts_what_the_group_denies_them_the_escalation_rule(secure, domain):
    boss = admin(secure, domain)
    any_group = {"effect": "ALLOW", "actions": ["repository.Group.*"], "resources": ["group/*"]}
    create_policy(secure, domain, "group-admin", statements=[any_group], metadata=boss)
    no_prod = {"effect": "DENY", "actions": ["inventory.*"], "resources": ["prod/*"]}
    create_policy(secure, domain, "no-prod", statements=[no_prod], metadata=boss)
    create_policy(secure, domain, "inventory-reader", permissions=["inventory.Server.read"], metadata=boss)
    assign(secure, domain, "USER", "tara", "POLICY", "group-admin", metadata=boss)
    assign(secure, domain, "USER", "u1", "POLICY", "inventory-reader", metadata=boss)
    create_sets(secure, domain, groups=["quarantine", "plain"], metadata=boss)
    add_users(secure, domain, "quarantine", ["u1"], metadata=boss)
    add_users(secure, domain, "plain", ["u2"], metadata=boss)
    assign(secure, domain, "GROUP", "quarantine", "POLICY", "no-prod", metadata=boss)
    assign(secure, domain, "GROUP", "plain", "POLICY", "inventory-reader", metadata=boss)
    tara = user(secure, domain, "tara")
    before = edges(secure, domain, metadata=boss)
    assert check_user(secure, domain, "u1", "inventory.Server.read", "prod/1", metadata=boss)["decision"] == "DENY"
    for method, request_ in [
        ("remove_users", users_request(domain, "quarantine", ["u1"])),
        ("delete", gpb.DeleteGroupRequest(group_id="quarantine", cascade=True, domain_id=domain)),
        ("delete_many", gpb.DeleteGroupsRequest(group_ids=["plain", "quarantine"], cascade=True, domain_id=domain)),
    ]:
        error = expect_error(grpc.StatusCode.PERMISSION_DENIED, getattr(secure.group, method), request_, metadata=tara)
        assert "deny removed" in error.details() and "group/quarantine" in error.details(), error.details()
    assert edges(secure, domain, metadata=boss) == before
    assert sorted(ids(list_groups(secure, domain, metadata=boss))) == ["plain", "quarantine"]
    assert check_user(secure, domain, "u1", "inventory.Server.read", "prod/1", metadata=boss)["decision"] == "DENY"
    # Taking away what only allows lifts nothing: the same caller may.
    removed = as_dict(secure.group.remove_users(users_request(domain, "plain", ["u2"]), metadata=tara, timeout=10))
    assert outcomes(removed) == [("u2", "REMOVED")]
    secure.group.delete(
        gpb.DeleteGroupRequest(group_id="plain", cascade=True, domain_id=domain), metadata=tara, timeout=10
    )
    # A domain admin may lift the deny.
    secure.group.delete(
        gpb.DeleteGroupRequest(group_id="quarantine", cascade=True, domain_id=domain), metadata=boss, timeout=10
    )
    assert check_user(secure, domain, "u1", "inventory.Server.read", "prod/1", metadata=boss)["decision"] == "ALLOW"


def test_a_caller_of_one_domain_cannot_see_or_change_groups_of_another(secure, domain, other_domain):
    theirs = admin(secure, other_domain)
    create(secure, other_domain, "shared", metadata=theirs, name="Theirs")
    add_users(secure, other_domain, "shared", ["b1"], metadata=theirs)
    ours = admin(secure, domain)
    before = get(secure, other_domain, "shared", metadata=theirs)
    # The caller's domain replaces whatever the body names.
    for method, request_ in [
        ("get", gpb.GroupRequest(group_id="shared")),
        ("update", gpb.UpdateGroupRequest(group_id="shared", name="Mine")),
        ("update", gpb.UpdateGroupRequest(group_id="shared", new_group_id="stolen")),
        ("delete", gpb.DeleteGroupRequest(group_id="shared", cascade=True)),
        ("delete_many", gpb.DeleteGroupsRequest(group_ids=["shared"], cascade=True)),
        ("add_users", gpb.GroupUsersRequest(group_id="shared", user_ids=["mallory"])),
        ("remove_users", gpb.GroupUsersRequest(group_id="shared", user_ids=["b1"])),
        ("list_users", gpb.ListGroupUsersRequest(group_id="shared")),
        ("list_authorized_resources", gpb.GroupAuthorizedResourcesRequest(group_id="shared")),
    ]:
        request_.domain_id = other_domain
        expect_error(grpc.StatusCode.NOT_FOUND, getattr(secure.group, method), request_, metadata=ours)
    assert list_groups(secure, other_domain, metadata=ours).get("total_count", 0) == 0
    stat = as_dict(
        secure.group.stat(
            parse(gpb.GroupStatQuery, {"domain_id": other_domain, "query": {"aggregate": [{"count": {"name": "n"}}]}}),
            metadata=ours,
            timeout=10,
        )
    )
    assert stat.get("results", []) in ([], [{"n": 0}])
    # Their group cannot be named in our assignments either.
    expect_error(
        grpc.StatusCode.NOT_FOUND,
        secure.assignment.create,
        parse(
            apb.CreateAssignmentRequest,
            {"subject": {"type": "USER", "id": "mallory"}, "grant": {"type": "GROUP", "id": "shared"}},
        ),
        metadata=ours,
    )
    # Ids are per domain: ours may be called the same.
    assert create(secure, other_domain, "shared", metadata=ours)["domain_id"] == domain
    assert get(secure, other_domain, "shared", metadata=theirs) == before
    assert list_users(secure, other_domain, "shared", metadata=theirs)["total_count"] == 1
    assert edges(secure, other_domain, metadata=theirs) == {("USER", "b1", "GROUP", "shared")}
