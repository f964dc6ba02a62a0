"""The Role service through the public gRPC API (both backends): the role document, its
bindings and policies (assignments), the inspect view grouped by service, renames and deletes
that carry them along, bad input, authorization and tenancy. (What roles share with groups
is covered at length in test_group_api.py; here each behaviour once, through the role.)"""

from __future__ import annotations

import grpc
import pytest

from helpers import (
    as_dict,
    assign,
    audits,
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
from policyhub._gen.spaceone.api.repository.v1 import role_pb2 as rpb

# --- helpers ------------------------------------------------------------------------------------


def create(stub, domain, role_id, metadata=(), **fields):
    body = {"role_id": role_id, "name": fields.pop("name", role_id), "domain_id": domain, **fields}
    return as_dict(stub.role.create(parse(rpb.CreateRoleRequest, body), metadata=metadata, timeout=10))


def get(stub, domain, role_id, metadata=()):
    return as_dict(stub.role.get(rpb.RoleRequest(role_id=role_id, domain_id=domain), metadata=metadata, timeout=10))


def list_roles(stub, domain, query=None, metadata=(), **fields):
    body = {"domain_id": domain, **({"query": query} if query is not None else {}), **fields}
    return as_dict(stub.role.list(parse(rpb.RoleQuery, body), metadata=metadata, timeout=10))


def ids(result):
    return [r["role_id"] for r in result.get("results", [])]


def users_request(domain, role_id, user_ids):
    return rpb.RoleUsersRequest(role_id=role_id, user_ids=list(user_ids), domain_id=domain)


def bind(stub, domain, role_id, user_ids, metadata=()):
    return as_dict(stub.role.bind_users(users_request(domain, role_id, user_ids), metadata=metadata, timeout=10))


def list_users(stub, domain, role_id, metadata=(), **fields):
    body = {"role_id": role_id, "domain_id": domain, **fields}
    return as_dict(stub.role.list_users(parse(rpb.ListRoleUsersRequest, body), metadata=metadata, timeout=10))


# --- the document -------------------------------------------------------------------------------


def test_create_get_list_stat_and_update(client, domain, other_domain):
    created = create(client, domain, "viewer", name="Viewer", description="reads", labels=["std"], tags={"t": 1})
    assert (created["role_id"], created["name"], created["description"]) == ("viewer", "Viewer", "reads")
    assert created["labels"] == ["std"] and created["tags"] == {"t": 1} and created["domain_id"] == domain
    assert "is_bound" not in created and "permission_groups" not in created
    assert get(client, domain, "viewer") == without_token(created)
    create(client, domain, "editor", name="Editor", labels=["std"])
    create(client, domain, "owner", name="Owner")
    create(client, other_domain, "intruder", labels=["std"])
    assert sorted(ids(list_roles(client, domain))) == ["editor", "owner", "viewer"]
    std = list_roles(client, domain, {"filter": [{"k": "labels", "v": "std", "o": "eq"}], "sort": {"key": "role_id"}})
    assert ids(std) == ["editor", "viewer"] and std["total_count"] == 2
    assert ids(list_roles(client, domain, role_id="owner")) == ["owner"]
    assert list_roles(client, domain, role_id="intruder").get("total_count", 0) == 0
    stat = as_dict(
        client.role.stat(
            parse(rpb.RoleStatQuery, {"domain_id": domain, "query": {"aggregate": [{"count": {"name": "n"}}]}}),
            timeout=10,
        )
    )
    assert stat["results"] == [{"n": 3}]
    updated = as_dict(
        client.role.update(
            parse(
                rpb.UpdateRoleRequest, {"role_id": "viewer", "name": "Reader", "tags": {"t": 2}, "domain_id": domain}
            ),
            timeout=10,
        )
    )
    assert (updated["name"], updated["description"], updated["labels"], updated["tags"]) == (
        "Reader",
        "reads",
        ["std"],
        {"t": 2},
    )
    assert get(client, domain, "viewer") == without_token(updated)
    expect_error(
        grpc.StatusCode.ALREADY_EXISTS,
        client.role.create,
        rpb.CreateRoleRequest(role_id="viewer", name="again", domain_id=domain),
    )
    expect_error(grpc.StatusCode.NOT_FOUND, client.role.get, rpb.RoleRequest(role_id="intruder", domain_id=domain))
    methods = sorted(e["method"] for e in audits(client, domain, resource_type="Role", resource_id="viewer"))
    assert methods == ["repository.Role.create", "repository.Role.update"]


def test_get_groups_the_effective_statements_by_service(client, domain):
    create_policy(
        client,
        domain,
        "p-inv",
        statements=[
            {
                "effect": "ALLOW",
                "actions": ["inventory.Server.get", "identity.User.list", "Inventory.Server.list"],
                "resources": ["*"],
            },
            {"effect": "DENY", "actions": ["inventory.Server.delete"], "resources": ["prod/*"]},
        ],
    )
    wild = ["*", "billing.export", "*.get", "inv*.list"]
    create_policy(client, domain, "p-wild", statements=[{"effect": "ALLOW", "actions": wild, "resources": ["*"]}])
    create_policy(client, domain, "p-other", permissions=["billing.read"])
    create_sets(client, domain, roles=["ops", "base"])
    assign(client, domain, "ROLE", "ops", "POLICY", "p-wild")
    assign(client, domain, "ROLE", "ops", "POLICY", "p-inv")
    assign(client, domain, "ROLE", "base", "POLICY", "p-other")
    assign(client, domain, "ROLE", "ops", "ROLE", "base")  # what ops holds through base counts too
    role = get(client, domain, "ops")
    assert role["policy_ids"] == ["p-inv", "p-wild"]
    ops, base = {"type": "ROLE", "id": "ops"}, {"type": "ROLE", "id": "base"}

    def entry(policy_id, index, effect, actions, resources, via):
        return {
            "policy_id": policy_id,
            **({"statement_index": index} if index else {}),
            "statement": {"effect": effect, "actions": actions, "resources": resources},
            "via": via,
        }

    assert role["permission_groups"] == [
        {"service": "*", "statements": [entry("p-wild", 0, "ALLOW", ["*", "*.get", "inv*.list"], ["*"], [ops])]},
        {
            "service": "billing",
            "statements": [
                entry("p-wild", 0, "ALLOW", ["billing.export"], ["*"], [ops]),
                entry("p-other", 0, "ALLOW", ["billing.read"], ["*"], [ops, base]),
            ],
        },
        {"service": "identity", "statements": [entry("p-inv", 0, "ALLOW", ["identity.User.list"], ["*"], [ops])]},
        {
            "service": "inventory",
            "statements": [
                entry("p-inv", 0, "ALLOW", ["inventory.Server.get", "Inventory.Server.list"], ["*"], [ops]),
                entry("p-inv", 1, "DENY", ["inventory.Server.delete"], ["prod/*"], [ops]),
            ],
        },
    ]
    # The inspect view is get's only; list carries the rest.
    (listed,) = [r for r in list_roles(client, domain)["results"] if r["role_id"] == "ops"]
    assert "permission_groups" not in listed and listed["policy_ids"] == ["p-inv", "p-wild"]
    assert get(client, domain, "base")["permission_groups"] == [
        {"service": "billing", "statements": [entry("p-other", 0, "ALLOW", ["billing.read"], ["*"], [base])]}
    ]
    # A role that holds nothing has no groups.
    create_sets(client, domain, roles=["bare"])
    assert "permission_groups" not in get(client, domain, "bare")


def test_list_items_carry_is_bound_and_member_count(client, domain):
    create_sets(client, domain, roles=["bound", "unbound", "via-group"], groups=["team"])
    bind(client, domain, "bound", ["u1", "u2"])
    assign(client, domain, "GROUP", "team", "ROLE", "via-group")
    listed = {r["role_id"]: r for r in list_roles(client, domain)["results"]}
    assert (listed["bound"]["is_bound"], listed["bound"]["member_count"]) == (True, 2)
    assert (listed["via-group"]["is_bound"], listed["via-group"]["member_count"]) == (True, 1)
    assert "is_bound" not in listed["unbound"] and "member_count" not in listed["unbound"]
    assert get(client, domain, "bound")["is_bound"] is True
    client.role.unbind_users(users_request(domain, "bound", ["u1", "u2"]), timeout=10)
    assert "is_bound" not in get(client, domain, "bound")


def test_bind_unbind_and_list_users(client, domain):
    create_policy(client, domain, "reader", ["inventory.Server.read"])
    create_sets(client, domain, roles=["ops"], groups=["team", "subteam"])
    assign(client, domain, "ROLE", "ops", "POLICY", "reader")
    first = bind(client, domain, "ops", ["u1", "u2", "u1"])
    assert outcomes(first) == [("u1", "CREATED"), ("u2", "CREATED")] and first["changed_count"] == 2
    assert all(r["grant"] == {"type": "ROLE", "id": "ops"} for r in first["results"])
    again = bind(client, domain, "ops", ["u2", "u3"])
    assert outcomes(again) == [("u2", "ALREADY_EXISTS"), ("u3", "CREATED")] and again["changed_count"] == 1
    assert check_user(client, domain, "u3", "inventory.Server.read")["decision"] == "ALLOW"
    unbound = as_dict(client.role.unbind_users(users_request(domain, "ops", ["u3", "u9"]), timeout=10))
    assert outcomes(unbound) == [("u3", "REMOVED"), ("u9", "NOT_FOUND")] and unbound["changed_count"] == 1
    assert check_user(client, domain, "u3", "inventory.Server.read")["decision"] == "DENY"

    assign(client, domain, "GROUP", "team", "ROLE", "ops")
    assign(client, domain, "GROUP", "subteam", "GROUP", "team")
    assign(client, domain, "SERVICE_ACCOUNT", "robot", "ROLE", "ops")
    assign(client, domain, "USER", "gus", "GROUP", "team")
    assign(client, domain, "USER", "sue", "GROUP", "subteam")
    direct = list_users(client, domain, "ops")
    assert [m["user_id"] for m in direct["results"]] == ["u1", "u2"] and direct["total_count"] == 2
    nested = list_users(client, domain, "ops", include_nested=True)
    team, subteam = {"type": "GROUP", "id": "team"}, {"type": "GROUP", "id": "subteam"}
    assert [(m["user_id"], m.get("via", [])) for m in nested["results"]] == [
        ("gus", [team]),
        ("sue", [subteam, team]),
        ("u1", []),
        ("u2", []),
    ]
    assert nested["total_count"] == 4
    page = list_users(client, domain, "ops", include_nested=True, page={"start": 2, "limit": 2})
    assert [m["user_id"] for m in page["results"]] == ["sue", "u1"] and page["total_count"] == 4
    methods = sorted({e["method"] for e in audits(client, domain) if "_users" in e["method"]})
    assert methods == ["repository.Role.bind_users", "repository.Role.unbind_users"]
    for call in (client.role.bind_users, client.role.unbind_users):
        error = expect_error(grpc.StatusCode.NOT_FOUND, call, users_request(domain, "ghost", ["u1"]))
        assert error_info(error).metadata["role_id"] == "ghost"
    expect_error(
        grpc.StatusCode.NOT_FOUND, client.role.list_users, rpb.ListRoleUsersRequest(role_id="ghost", domain_id=domain)
    )


def test_rename_keeps_bindings_and_policies(client, domain):
    create_policy(client, domain, "reader", ["inventory.Server.read"])
    create_sets(client, domain, roles=["ops", "taken"])
    bind(client, domain, "ops", ["bob"])
    assign(client, domain, "ROLE", "ops", "POLICY", "reader")
    before = check_user(client, domain, "bob", "inventory.Server.read")
    assert before["decision"] == "ALLOW" and before["via"][-1] == {"type": "ROLE", "id": "ops"}
    expect_error(
        grpc.StatusCode.ALREADY_EXISTS,
        client.role.update,
        rpb.UpdateRoleRequest(role_id="ops", new_role_id="taken", domain_id=domain),
    )
    assert edges(client, domain) == {("USER", "bob", "ROLE", "ops"), ("ROLE", "ops", "POLICY", "reader")}
    renamed = as_dict(
        client.role.update(rpb.UpdateRoleRequest(role_id="ops", new_role_id="operators", domain_id=domain), timeout=10)
    )
    assert renamed["role_id"] == "operators" and renamed["is_bound"] and renamed["policy_ids"] == ["reader"]
    after = check_user(client, domain, "bob", "inventory.Server.read")
    assert after["decision"] == "ALLOW" and after["policy_id"] == before["policy_id"]
    assert after["via"] == [{"type": "USER", "id": "bob"}, {"type": "ROLE", "id": "operators"}]
    expect_error(grpc.StatusCode.NOT_FOUND, client.role.get, rpb.RoleRequest(role_id="ops", domain_id=domain))
    assert edges(client, domain) == {("USER", "bob", "ROLE", "operators"), ("ROLE", "operators", "POLICY", "reader")}
    assert [g["service"] for g in get(client, domain, "operators")["permission_groups"]] == ["inventory"]


def test_delete_refused_in_use_and_cascade_takes_the_assignments(client, domain):
    create_policy(client, domain, "p", ["a.read"])
    create_sets(client, domain, roles=["ops", "empty"], groups=["team"])
    bind(client, domain, "ops", ["u1"])
    assign(client, domain, "GROUP", "team", "ROLE", "ops")
    assign(client, domain, "ROLE", "ops", "POLICY", "p")
    assign(client, domain, "USER", "u2", "GROUP", "team")
    error = expect_error(
        grpc.StatusCode.FAILED_PRECONDITION, client.role.delete, rpb.DeleteRoleRequest(role_id="ops", domain_id=domain)
    )
    assert "ops has 2 members and 1 grant" in error.details()
    metadata = error_info(error).metadata
    assert (metadata["role_id"], metadata["member_count"], metadata["grant_count"]) == ("ops", "2", "1")
    assert len(edges(client, domain)) == 4 and get(client, domain, "ops")["member_count"] == 2
    client.role.delete(rpb.DeleteRoleRequest(role_id="empty", domain_id=domain), timeout=10)
    client.role.delete(rpb.DeleteRoleRequest(role_id="ops", cascade=True, domain_id=domain), timeout=10)
    assert ids(list_roles(client, domain)) == []
    assert edges(client, domain) == {("USER", "u2", "GROUP", "team")}
    assert check_user(client, domain, "u1", "a.read")["decision"] == "DENY"
    assert check_user(client, domain, "u2", "a.read")["decision"] == "DENY"
    deleted = [e for e in audits(client, domain, resource_type="Role") if e["method"] == "repository.Role.delete"]
    assert sorted(e["resource_id"] for e in deleted) == ["empty", "ops"]
    removed = [e for e in audits(client, domain, resource_type="Assignment") if e["method"].endswith(".delete")]
    assert len(removed) == 3 and all("ops" in (e["before"]["subject_id"], e["before"]["grant_id"]) for e in removed)
    expect_error(grpc.StatusCode.NOT_FOUND, client.role.delete, rpb.DeleteRoleRequest(role_id="ops", domain_id=domain))


def test_assignments_naming_a_missing_role_are_not_found_and_write_nothing(client, domain, other_domain):
    create_policy(client, domain, "p", ["a.read"])
    create_sets(client, domain, roles=["real"])
    create_sets(client, other_domain, roles=["theirs"])
    for subject, grant in (
        ({"type": "USER", "id": "u"}, {"type": "ROLE", "id": "ghost"}),
        ({"type": "ROLE", "id": "ghost"}, {"type": "POLICY", "id": "p"}),
        ({"type": "ROLE", "id": "real"}, {"type": "ROLE", "id": "ghost"}),
        ({"type": "USER", "id": "u"}, {"type": "ROLE", "id": "theirs"}),
    ):
        error = expect_error(
            grpc.StatusCode.NOT_FOUND,
            client.assignment.create,
            parse(apb.CreateAssignmentRequest, {"subject": subject, "grant": grant, "domain_id": domain}),
        )
        assert error_info(error).metadata["resource"] == "Role"
    error = expect_error(
        grpc.StatusCode.NOT_FOUND,
        client.assignment.add,
        parse(
            apb.AssignmentsRequest,
            {
                "grants": [{"type": "ROLE", "id": "real"}, {"type": "ROLE", "id": "ghost"}],
                "subject_type": "USER",
                "subject_ids": ["u1"],
                "domain_id": domain,
            },
        ),
    )
    assert error_info(error).metadata["role_id"] == "ghost"
    assert edges(client, domain) == set()
    assign(client, domain, "USER", "u", "ROLE", "real")
    assert edges(client, domain) == {("USER", "u", "ROLE", "real")}


# --- bad input ----------------------------------------------------------------------------------


def _create(**body):
    return "create", parse(rpb.CreateRoleRequest, {"role_id": "new", "name": "New", **body})


def _update(**body):
    return "update", parse(rpb.UpdateRoleRequest, {"role_id": "r", **body})


BAD_REQUESTS = [
    (*_create(role_id=""), "role_id"),
    (*_create(role_id="Upper"), "role_id"),
    (*_create(role_id="x" * 49), "role_id"),
    (*_create(role_id="bell\u0007"), "role_id"),
    (*_create(role_id="bidi\u202e"), "role_id"),
    (*_create(name=""), "name"),
    (*_create(name="n" * 256), "name"),
    (*_create(description="d" * 4097), "description"),
    (*_create(labels=["v" * 4000 for _ in range(5)]), "labels"),
    (*_create(tags={f"k{i}": "v" * 4000 for i in range(5)}), "tags"),
    (*_update(role_id=""), "role_id"),
    (*_update(new_role_id="Upper"), "new_role_id"),
    (*_update(new_role_id="x" * 49), "new_role_id"),
    (*_update(new_role_id="bell\u0007"), "new_role_id"),
    (*_update(new_role_id="bidi\u202e"), "new_role_id"),
    (*_update(name="n" * 256), "name"),
    ("delete", rpb.DeleteRoleRequest(), "role_id"),
    ("get", rpb.RoleRequest(), "role_id"),
    ("get", rpb.RoleRequest(role_id="bidi\u202e"), "role_id"),
    ("list", rpb.RoleQuery(role_id="x" * 129), "role_id"),
    ("stat", rpb.RoleStatQuery(), "query"),
    ("bind_users", rpb.RoleUsersRequest(user_ids=["u"]), "role_id"),
    ("bind_users", rpb.RoleUsersRequest(role_id="r"), "user_ids"),
    ("bind_users", rpb.RoleUsersRequest(role_id="r", user_ids=[f"u{i}" for i in range(10_001)]), "user_ids"),
    ("bind_users", rpb.RoleUsersRequest(role_id="r", user_ids=["u", "bell\u0007"]), "user_ids[1]"),
    ("unbind_users", rpb.RoleUsersRequest(user_ids=["u"]), "role_id"),
    ("unbind_users", rpb.RoleUsersRequest(role_id="r"), "user_ids"),
    ("unbind_users", rpb.RoleUsersRequest(role_id="r", user_ids=["bidi\u202e"]), "user_ids[0]"),
    ("list_users", rpb.ListRoleUsersRequest(), "role_id"),
]


@pytest.mark.parametrize(
    "method, request_, field",
    BAD_REQUESTS,
    ids=[f"{m}-{f}-{i}" for i, (m, _, f) in enumerate(BAD_REQUESTS)],
)
def test_bad_input_is_invalid_argument_naming_the_field(client, domain, method, request_, field):
    create_sets(client, domain, roles=["r"])
    bind(client, domain, "r", ["u"])
    before = edges(client, domain), list_roles(client, domain)
    request_ = type(request_).FromString(request_.SerializeToString())
    request_.domain_id = domain
    error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, getattr(client.role, method), request_)
    assert field_violations(error) == [field]
    assert (edges(client, domain), list_roles(client, domain)) == before


# --- authorization ------------------------------------------------------------------------------


def admin(secure, domain):
    return secure.metadata(f"admin-{domain}", did=domain, rol="DOMAIN_ADMIN")


def user(secure, domain, name):
    return secure.metadata(name, did=domain)


EVERY_RPC = [
    ("create", rpb.CreateRoleRequest(role_id="new", name="new")),
    ("update", rpb.UpdateRoleRequest(role_id="r", name="renamed")),
    ("delete", rpb.DeleteRoleRequest(role_id="empty")),
    ("get", rpb.RoleRequest(role_id="r")),
    ("list", rpb.RoleQuery()),
    ("stat", parse(rpb.RoleStatQuery, {"query": {"aggregate": [{"count": {"name": "n"}}]}})),
    ("bind_users", rpb.RoleUsersRequest(role_id="r", user_ids=["zed"])),
    ("unbind_users", rpb.RoleUsersRequest(role_id="r", user_ids=["u"])),
    ("list_users", rpb.ListRoleUsersRequest(role_id="r")),
]


def test_a_user_without_assignments_may_call_no_role_rpc_and_an_admin_every_one(secure, domain):
    boss = admin(secure, domain)
    create_sets(secure, domain, roles=["r", "empty"], metadata=boss)
    bind(secure, domain, "r", ["u"], metadata=boss)
    nobody = user(secure, domain, "nobody")
    for method, request_ in EVERY_RPC:
        request_ = type(request_).FromString(request_.SerializeToString())
        request_.domain_id = domain
        error = expect_error(grpc.StatusCode.PERMISSION_DENIED, getattr(secure.role, method), request_, metadata=nobody)
        assert f"repository.Role.{method}" in error.details(), error.details()
    assert sorted(ids(list_roles(secure, domain, metadata=boss))) == ["empty", "r"]
    assert edges(secure, domain, metadata=boss) == {("USER", "u", "ROLE", "r")}
    for method, request_ in EVERY_RPC:
        request_ = type(request_).FromString(request_.SerializeToString())
        request_.domain_id = domain
        getattr(secure.role, method)(request_, metadata=boss, timeout=10)
    assert sorted(ids(list_roles(secure, domain, metadata=boss))) == ["new", "r"]
    assert edges(secure, domain, metadata=boss) == {("USER", "zed", "ROLE", "r")}


def test_scoped_grants_rename_and_the_escalation_rule(secure, domain):
    boss = admin(secure, domain)
    team_admin = {"effect": "ALLOW", "actions": ["repository.Role.*"], "resources": ["role/team-*"]}
    binder = {"effect": "ALLOW", "actions": ["repository.Role.bind_users"], "resources": ["role/admins"]}
    create_policy(secure, domain, "team-admin", statements=[team_admin], metadata=boss)
    create_policy(secure, domain, "admins-binder", statements=[binder], metadata=boss)
    create_policy(secure, domain, "inventory-admin", permissions=["inventory.*"], metadata=boss)
    assign(secure, domain, "USER", "tara", "POLICY", "team-admin", metadata=boss)
    assign(secure, domain, "USER", "greg", "POLICY", "admins-binder", metadata=boss)
    create_sets(secure, domain, roles=["admins"], metadata=boss)
    tara, greg = user(secure, domain, "tara"), user(secure, domain, "greg")

    create(secure, domain, "team-a", metadata=tara)
    assert outcomes(bind(secure, domain, "team-a", ["u1"], metadata=tara)) == [("u1", "CREATED")]
    renamed = secure.role.update(
        rpb.UpdateRoleRequest(role_id="team-a", new_role_id="team-b", domain_id=domain), metadata=tara, timeout=10
    )
    assert renamed.role_id == "team-b"
    for method, request_ in [
        ("create", rpb.CreateRoleRequest(role_id="ops", name="ops")),
        ("update", rpb.UpdateRoleRequest(role_id="team-b", new_role_id="admins-2")),
        ("get", rpb.RoleRequest(role_id="admins")),
        ("delete", rpb.DeleteRoleRequest(role_id="admins")),
        ("bind_users", rpb.RoleUsersRequest(role_id="admins", user_ids=["tara"])),
        ("list", rpb.RoleQuery()),
    ]:
        request_.domain_id = domain
        expect_error(grpc.StatusCode.PERMISSION_DENIED, getattr(secure.role, method), request_, metadata=tara)
    assert sorted(ids(list_roles(secure, domain, metadata=boss))) == ["admins", "team-b"]
    assert ("USER", "u1", "ROLE", "team-b") in edges(secure, domain, metadata=boss)

    # Binding gives what the role holds: allowed while it holds nothing, refused once it holds more
    # than the binder does; a domain admin may.
    assert outcomes(bind(secure, domain, "admins", ["hal"], metadata=greg)) == [("hal", "CREATED")]
    assign(secure, domain, "ROLE", "admins", "POLICY", "inventory-admin", metadata=boss)
    error = expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        secure.role.bind_users,
        users_request(domain, "admins", ["greg"]),
        metadata=greg,
    )
    assert "via role/admins" in error.details()
    assert check_user(secure, domain, "greg", "inventory.Server.read", metadata=boss)["decision"] == "DENY"
    assert outcomes(bind(secure, domain, "admins", ["greg"], metadata=boss)) == [("greg", "CREATED")]
    assert check_user(secure, domain, "greg", "inventory.Server.read", metadata=boss)["decision"] == "ALLOW"


def test_a_caller_of_one_domain_cannot_see_or_change_roles_of_another(secure, domain, other_domain):
    theirs = admin(secure, other_domain)
    create(secure, other_domain, "shared", metadata=theirs)
    bind(secure, other_domain, "shared", ["b1"], metadata=theirs)
    before = get(secure, other_domain, "shared", metadata=theirs)
    ours = admin(secure, domain)
    for method, request_ in [
        ("get", rpb.RoleRequest(role_id="shared")),
        ("update", rpb.UpdateRoleRequest(role_id="shared", name="Mine")),
        ("update", rpb.UpdateRoleRequest(role_id="shared", new_role_id="stolen")),
        ("delete", rpb.DeleteRoleRequest(role_id="shared", cascade=True)),
        ("bind_users", rpb.RoleUsersRequest(role_id="shared", user_ids=["mallory"])),
        ("unbind_users", rpb.RoleUsersRequest(role_id="shared", user_ids=["b1"])),
        ("list_users", rpb.ListRoleUsersRequest(role_id="shared")),
    ]:
        request_.domain_id = other_domain
        expect_error(grpc.StatusCode.NOT_FOUND, getattr(secure.role, method), request_, metadata=ours)
    assert list_roles(secure, other_domain, metadata=ours).get("total_count", 0) == 0
    assert get(secure, other_domain, "shared", metadata=theirs) == before
    assert edges(secure, other_domain, metadata=theirs) == {("USER", "b1", "ROLE", "shared")}
