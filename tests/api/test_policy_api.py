"""Policy API behaviour through a real gRPC server (mongomock and wire-protocol backends)."""

from __future__ import annotations

import re

import grpc
import pytest

from helpers import as_dict, error_reason, expect_error, field_violations, parse, without_token
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2 as pb

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def create(client, domain, policy_id="p1", **fields):
    body = {"policy_id": policy_id, "name": fields.pop("name", f"Policy {policy_id}"), "domain_id": domain, **fields}
    return client.policy.create(parse(pb.CreatePolicyRequest, body), timeout=10)


def test_create_returns_the_stored_policy(client, domain):
    info = create(
        client,
        domain,
        "ops-admin",
        permissions=["inventory.*", "identity.User.read"],
        labels=["ops", 3],
        tags={"team": "ops", "level": 2},
        description="ops",
        statements=[{"effect": "DENY", "actions": ["inventory.Server.delete"], "resources": ["srv/*"]}],
    )
    got = as_dict(info)
    assert got["policy_id"] == "ops-admin"
    assert got["state"] == "ENABLED"
    assert got["permissions"] == ["inventory.*", "identity.User.read"]
    assert got["labels"] == ["ops", 3]
    assert got["tags"] == {"team": "ops", "level": 2}
    assert got["domain_id"] == domain
    assert got["version"] == 1 and got["etag"]
    assert got["repository_info"]["repository_id"] == "repo-local"
    assert got["repository_info"]["repository_type"] == "local"
    assert got["statements"][0]["effect"] == "DENY"
    assert ISO_MS.match(got["created_at"]) and got["created_at"] == got["updated_at"]
    assert "is_managed" not in got


def test_get_returns_what_create_returned(client, domain):
    created = create(client, domain, "p-get", permissions=["a.b"])
    got = client.policy.get(pb.GetRepositoryPolicyRequest(policy_id="p-get", domain_id=domain), timeout=10)
    assert got == without_token(created)


def test_get_with_only_returns_only_those_fields(client, domain):
    create(client, domain, "p-only", permissions=["a.b"])
    got = client.policy.get(
        pb.GetRepositoryPolicyRequest(policy_id="p-only", domain_id=domain, only=["name"]), timeout=10
    )
    assert as_dict(got) == {"name": "Policy p-only"}


@pytest.mark.parametrize("policy_id", ["abc_", "Abc", "a b", "x" * 49, "-abc", "abc!", "ab\u00e9"])
def test_create_refuses_bad_policy_ids(client, domain, policy_id):
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.policy.create,
        pb.CreatePolicyRequest(policy_id=policy_id, name="n", domain_id=domain),
    )
    assert field_violations(error) == ["policy_id"]
    assert error.details().startswith("ERROR_INVALID_PARAMETER: policy_id")


def test_create_accepts_a_48_character_id(client, domain):
    assert create(client, domain, "a" * 48).policy_id == "a" * 48


@pytest.mark.parametrize(
    "request_fields, field",
    [
        ({"name": "n"}, "policy_id"),
        ({"policy_id": "p"}, "name"),
        ({"policy_id": "p", "name": "n", "domain_id": ""}, "domain_id"),
    ],
)
def test_create_requires_fields(client, domain, request_fields, field):
    request = pb.CreatePolicyRequest(**{"domain_id": domain, **request_fields})
    error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, client.policy.create, request)
    assert field_violations(error) == [field]
    assert error.details().startswith(f"ERROR_REQUIRED_PARAMETER: {field}")


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"name": "x" * 256}, "name"),
        ({"permissions": [""]}, "permissions[0]"),
        ({"permissions": ["ok", "  "]}, "permissions[1]"),
        ({"permissions": ["a" * 513]}, "permissions[0]"),
        ({"statements": [{"actions": ["a"], "resources": ["*"]}]}, "statements[0].effect"),
        ({"statements": [{"effect": "ALLOW", "resources": ["*"]}]}, "statements[0].actions"),
        ({"statements": [{"effect": "ALLOW", "actions": ["a"], "resources": [""]}]}, "statements[0].resources[0]"),
        ({"tags": {"$where": "1"}}, "tags.$where"),
        ({"tags": {"a.b": 1}}, "tags.a.b"),
        ({"domain_id": "bad domain"}, "domain_id"),
    ],
)
def test_create_validates_content(client, domain, fields, field):
    body = {"policy_id": "p-bad", "name": "n", "domain_id": domain, **fields}
    error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, client.policy.create, parse(pb.CreatePolicyRequest, body))
    assert field_violations(error) == [field]


def test_duplicate_create_is_already_exists_and_changes_nothing(client, domain):
    first = create(client, domain, "dup", permissions=["a"])
    error = expect_error(
        grpc.StatusCode.ALREADY_EXISTS,
        client.policy.create,
        pb.CreatePolicyRequest(policy_id="dup", name="other", domain_id=domain),
    )
    assert error.details().startswith("ERROR_ALREADY_EXISTS")
    assert client.policy.get(
        pb.GetRepositoryPolicyRequest(policy_id="dup", domain_id=domain), timeout=10
    ) == without_token(first)


def test_same_id_in_two_domains_is_two_policies(client, domain, other_domain):
    create(client, domain, "shared", name="mine")
    create(client, other_domain, "shared", name="theirs")
    assert client.policy.get(pb.GetRepositoryPolicyRequest(policy_id="shared", domain_id=domain)).name == "mine"


def test_other_domains_policies_are_invisible(client, domain, other_domain):
    create(client, other_domain, "secret")
    expect_error(
        grpc.StatusCode.NOT_FOUND,
        client.policy.get,
        pb.GetRepositoryPolicyRequest(policy_id="secret", domain_id=domain),
    )
    expect_error(
        grpc.StatusCode.NOT_FOUND,
        client.policy.update,
        pb.UpdatePolicyRequest(policy_id="secret", name="x", domain_id=domain),
    )
    expect_error(
        grpc.StatusCode.NOT_FOUND, client.policy.delete, pb.PolicyRequest(policy_id="secret", domain_id=domain)
    )
    listed = client.policy.list(pb.PolicyQuery(domain_id=domain, exclude_managed=True), timeout=10)
    assert listed.total_count == 0


def test_update_changes_only_what_is_set(client, domain):
    created = create(client, domain, "upd", permissions=["a"], labels=["x"], tags={"k": "v"}, description="d")
    updated = client.policy.update(
        pb.UpdatePolicyRequest(policy_id="upd", name="renamed", domain_id=domain), timeout=10
    )
    assert updated.name == "renamed"
    assert list(updated.permissions) == ["a"] and as_dict(updated)["tags"] == {"k": "v"}
    assert updated.description == "d"
    assert updated.version == created.version + 1 and updated.etag != created.etag
    assert updated.created_at == created.created_at


def test_update_mask_clears_lists_and_objects(client, domain):
    create(client, domain, "mask", permissions=["a"], labels=["x"], tags={"k": "v"}, description="d")
    request = parse(
        pb.UpdatePolicyRequest,
        {"policy_id": "mask", "domain_id": domain, "update_mask": "permissions,labels,tags,description"},
    )
    updated = as_dict(client.policy.update(request, timeout=10))
    assert "permissions" not in updated and updated.get("labels", []) == [] and updated.get("tags", {}) == {}
    assert "description" not in updated and updated["name"] == "Policy mask"


def test_update_with_present_empty_tags_clears_them(client, domain):
    create(client, domain, "tags", tags={"k": "v"})
    updated = client.policy.update(
        parse(pb.UpdatePolicyRequest, {"policy_id": "tags", "domain_id": domain, "tags": {}}), timeout=10
    )
    assert as_dict(updated).get("tags", {}) == {}


@pytest.mark.parametrize("mask, field", [("policyId", "update_mask"), ("etag", "update_mask"), ("name", "name")])
def test_update_mask_errors(client, domain, mask, field):
    create(client, domain, "mask-bad")
    request = parse(pb.UpdatePolicyRequest, {"policy_id": "mask-bad", "domain_id": domain, "update_mask": mask})
    error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, client.policy.update, request)
    assert field_violations(error) == [field]


def test_update_with_stale_etag_is_aborted_and_writes_nothing(client, domain):
    created = create(client, domain, "etag")
    client.policy.update(pb.UpdatePolicyRequest(policy_id="etag", name="v2", domain_id=domain, etag=created.etag))
    error = expect_error(
        grpc.StatusCode.ABORTED,
        client.policy.update,
        pb.UpdatePolicyRequest(policy_id="etag", name="v3", domain_id=domain, etag=created.etag),
    )
    assert error.details().startswith("ERROR_ETAG_MISMATCH")
    assert client.policy.get(pb.GetRepositoryPolicyRequest(policy_id="etag", domain_id=domain)).name == "v2"
    expect_error(
        grpc.StatusCode.ABORTED,
        client.policy.delete,
        pb.PolicyRequest(policy_id="etag", domain_id=domain, etag=created.etag),
    )
    assert client.policy.get(pb.GetRepositoryPolicyRequest(policy_id="etag", domain_id=domain)).name == "v2"


def test_update_and_delete_of_missing_policy_is_not_found(client, domain):
    expect_error(
        grpc.StatusCode.NOT_FOUND,
        client.policy.update,
        pb.UpdatePolicyRequest(policy_id="nope", name="x", domain_id=domain),
    )
    error = expect_error(
        grpc.StatusCode.NOT_FOUND, client.policy.delete, pb.PolicyRequest(policy_id="nope", domain_id=domain)
    )
    assert error.details().startswith("ERROR_NOT_FOUND")


def test_delete_removes_the_policy(client, domain):
    created = create(client, domain, "del")
    client.policy.delete(pb.PolicyRequest(policy_id="del", domain_id=domain, etag=created.etag), timeout=10)
    expect_error(
        grpc.StatusCode.NOT_FOUND, client.policy.get, pb.GetRepositoryPolicyRequest(policy_id="del", domain_id=domain)
    )


def test_managed_policies_are_visible_and_read_only(client, domain):
    managed = client.policy.get(pb.GetRepositoryPolicyRequest(policy_id="managed-full-access", domain_id=domain))
    assert managed.is_managed and list(managed.permissions) == ["*"]
    assert managed.repository_info.repository_id == "repo-managed" and managed.domain_id == ""
    for call, request in [
        (client.policy.create, pb.CreatePolicyRequest(policy_id="managed-full-access", name="x", domain_id=domain)),
        (client.policy.create, pb.CreatePolicyRequest(policy_id="managed-new", name="x", domain_id=domain)),
        (client.policy.update, pb.UpdatePolicyRequest(policy_id="managed-full-access", name="x", domain_id=domain)),
        (client.policy.delete, pb.PolicyRequest(policy_id="managed-full-access", domain_id=domain)),
    ]:
        error = expect_error(grpc.StatusCode.FAILED_PRECONDITION, call, request)
        assert error_reason(error) == "ERROR_MANAGED_RESOURCE_READ_ONLY"
    assert (
        client.policy.get(pb.GetRepositoryPolicyRequest(policy_id="managed-full-access", domain_id=domain)).name
        == managed.name
    )


def test_get_by_repository(client, domain):
    create(client, domain, "in-local")
    got = client.policy.get(
        pb.GetRepositoryPolicyRequest(policy_id="in-local", domain_id=domain, repository_id="repo-local")
    )
    assert got.policy_id == "in-local"
    expect_error(
        grpc.StatusCode.NOT_FOUND,
        client.policy.get,
        pb.GetRepositoryPolicyRequest(policy_id="in-local", domain_id=domain, repository_id="repo-managed"),
    )
    expect_error(
        grpc.StatusCode.NOT_FOUND,
        client.policy.get,
        pb.GetRepositoryPolicyRequest(policy_id="in-local", domain_id=domain, repository_id="repo-nope"),
    )


def test_non_utf8_string_is_invalid_argument(client, domain):
    call = client.channel.unary_unary("/spaceone.api.repository.v1.Policy/create")
    # field 1 (name), length 2, bytes that are not UTF-8
    payload = b"\x0a\x02\xff\xfe" + pb.CreatePolicyRequest(policy_id="p", domain_id=domain).SerializeToString()
    with pytest.raises(grpc.RpcError) as info:
        call(payload, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "UTF-8" in info.value.details()


def test_five_megabyte_request_is_refused(client, domain):
    request = pb.CreatePolicyRequest(policy_id="big", name="n", domain_id=domain, description="x" * (5 * 1024 * 1024))
    expect_error(grpc.StatusCode.RESOURCE_EXHAUSTED, client.policy.create, request)
    expect_error(
        grpc.StatusCode.NOT_FOUND, client.policy.get, pb.GetRepositoryPolicyRequest(policy_id="big", domain_id=domain)
    )


def test_large_description_within_message_limit_is_invalid_argument(client, domain):
    request = pb.CreatePolicyRequest(policy_id="big", name="n", domain_id=domain, description="x" * 100_000)
    error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, client.policy.create, request)
    assert field_violations(error) == ["description"]


def test_statement_conditions_are_refused_not_ignored(client, domain):
    body = {
        "policy_id": "cond",
        "name": "n",
        "domain_id": domain,
        "statements": [{"effect": "ALLOW", "actions": ["a"], "resources": ["*"], "conditions": {"ip": "10.0.0.0/8"}}],
    }
    error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, client.policy.create, parse(pb.CreatePolicyRequest, body))
    assert field_violations(error) == ["statements[0].conditions"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"tags": {"x": float("nan")}}, "tags"),
        ({"labels": [float("inf")]}, "labels"),
        (
            {
                "statements": [
                    {"effect": "ALLOW", "actions": ["a"], "resources": ["*"], "conditions": {"x": float("-inf")}}
                ]
            },
            "statements[0].conditions",
        ),
    ],
)
def test_nan_and_infinity_are_invalid_argument(client, domain, body, field):
    request = parse(pb.CreatePolicyRequest, {"policy_id": "nan", "name": "n", "domain_id": domain, **body})
    error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, client.policy.create, request)
    assert field_violations(error) == [field]


def test_nan_in_a_query_value_is_invalid_argument(client, domain):
    request = parse(
        pb.PolicyQuery,
        {"domain_id": domain, "query": {"filter": [{"k": "version", "v": [1, float("nan")], "o": "in"}]}},
    )
    error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, client.policy.list, request)
    assert field_violations(error) == ["query"]


def test_huge_whole_numbers_are_stored_as_doubles(client, domain):
    created = client.policy.create(
        parse(
            pb.CreatePolicyRequest,
            {"policy_id": "big", "name": "n", "domain_id": domain, "labels": [1e20], "tags": {"x": 1e19}},
        ),
        timeout=10,
    )
    assert as_dict(created)["labels"] == [1e20] and as_dict(created)["tags"] == {"x": 1e19}
