"""Caller identity and tenancy through a server with authentication on."""

from __future__ import annotations

import base64
import json
import time

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from helpers import as_dict, expect_error, grant_policy, parse
from policyhub._gen.spaceone.api.repository.v1 import api_key_pb2 as kpb
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2 as apb
from policyhub._gen.spaceone.api.repository.v1 import audit_pb2
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2 as pb
from policyhub._gen.spaceone.api.repository.v1 import repository_pb2 as rpb


def admin(secure, domain):
    return secure.metadata(f"admin-{domain}", did=domain, rol="DOMAIN_ADMIN")


def system(secure):
    return secure.metadata("root", did="", rol="SYSTEM", typ="SERVICE_ACCOUNT")


def create(secure, domain, policy_id, metadata, **fields):
    return secure.policy.create(
        parse(
            pb.CreatePolicyRequest,
            {"policy_id": policy_id, "name": policy_id, "domain_id": domain, "permissions": ["a.read"], **fields},
        ),
        metadata=metadata,
        timeout=10,
    )


def unsigned(payload: dict) -> str:
    encode = lambda part: base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()  # noqa: E731
    return f"{encode({'alg': 'none', 'typ': 'JWT'})}.{encode(payload)}."


def test_missing_token_is_unauthenticated(secure, domain):
    error = expect_error(
        grpc.StatusCode.UNAUTHENTICATED,
        secure.policy.get,
        pb.GetRepositoryPolicyRequest(policy_id="managed-read-only", domain_id=domain),
    )
    assert error.details() == "ERROR_AUTHENTICATE_FAILURE: missing token metadata"


@pytest.mark.parametrize(
    "claims, reason",
    [
        ({"exp": int(time.time()) - 3600}, "token expired"),
        ({"nbf": int(time.time()) + 3600}, "token not yet valid"),
        ({"aud": "someone-else"}, "wrong audience"),
        ({"iss": "evil"}, "wrong issuer"),
        ({"did": None}, "missing claim did"),
        ({"rol": "ROOT"}, "invalid claim rol"),
    ],
)
def test_bad_tokens_are_unauthenticated_with_a_reason(secure, domain, claims, reason):
    token = secure.token("mallory", **{"did": domain, **claims})
    error = expect_error(
        grpc.StatusCode.UNAUTHENTICATED,
        secure.policy.list,
        pb.PolicyQuery(domain_id=domain),
        metadata=(("token", token),),
    )
    assert error.details() == f"ERROR_AUTHENTICATE_FAILURE: {reason}"
    assert domain not in error.details()


def test_wrong_signature_and_alg_none_are_refused(secure, domain):
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = secure.token("mallory", did=domain, rol="DOMAIN_ADMIN", key=other_key)
    error = expect_error(
        grpc.StatusCode.UNAUTHENTICATED,
        secure.policy.list,
        pb.PolicyQuery(domain_id=domain),
        metadata=(("token", forged),),
    )
    assert error.details().endswith("bad signature")
    none_token = unsigned(
        {
            "sub": "mallory",
            "did": domain,
            "rol": "SYSTEM",
            "typ": "USER",
            "iss": "policyhub-tests",
            "aud": "policyhub",
            "exp": int(time.time()) + 600,
        }
    )
    error = expect_error(
        grpc.StatusCode.UNAUTHENTICATED,
        secure.policy.list,
        pb.PolicyQuery(domain_id=domain),
        metadata=(("token", none_token),),
    )
    assert error.details().endswith("unsupported algorithm none")


def test_callers_domain_replaces_the_body(secure, domain, other_domain):
    create(secure, domain, "mine", admin(secure, domain))
    # A token for `domain` naming other_domain in the body still works in `domain` only.
    created = create(secure, other_domain, "sneaky", admin(secure, domain))
    assert created.domain_id == domain
    got = secure.policy.get(
        pb.GetRepositoryPolicyRequest(policy_id="mine", domain_id=other_domain),
        metadata=admin(secure, domain),
        timeout=10,
    )
    assert got.domain_id == domain
    create(secure, other_domain, "theirs", admin(secure, other_domain))
    expect_error(
        grpc.StatusCode.NOT_FOUND,
        secure.policy.get,
        pb.GetRepositoryPolicyRequest(policy_id="theirs", domain_id=other_domain),
        metadata=admin(secure, domain),
    )


def test_x_domain_id_is_for_system_callers_only(secure, domain, other_domain):
    create(secure, other_domain, "target", admin(secure, other_domain))
    error = expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        secure.policy.get,
        pb.GetRepositoryPolicyRequest(policy_id="target"),
        metadata=admin(secure, domain) + (("x_domain_id", other_domain),),
    )
    assert "x_domain_id" in error.details()
    got = secure.policy.get(
        pb.GetRepositoryPolicyRequest(policy_id="target"),
        metadata=system(secure) + (("x_domain_id", other_domain),),
        timeout=10,
    )
    assert got.domain_id == other_domain


def test_permissions_come_from_assignments(secure, domain):
    user = secure.metadata("bob", did=domain)
    error = expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        secure.policy.create,
        pb.CreatePolicyRequest(policy_id="p", name="p", domain_id=domain),
        metadata=user,
    )
    assert "repository.Policy.create" in error.details()
    grant_policy(secure, domain, "bob", "managed-read-only", admin(secure, domain))
    assert secure.policy.list(pb.PolicyQuery(domain_id=domain), metadata=user, timeout=10).total_count >= 4
    expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        secure.policy.create,
        pb.CreatePolicyRequest(policy_id="p", name="p", domain_id=domain),
        metadata=user,
    )
    grant_policy(secure, domain, "bob", "managed-policy-admin", admin(secure, domain))
    # Only what bob holds himself can go into a policy he writes (the escalation rule).
    assert create(secure, domain, "p", user, permissions=["repository.Policy.list"]).policy_id == "p"
    entry = as_dict(
        secure.audit.list(
            audit_pb2.AuditQuery(domain_id=domain, resource_id="p"), metadata=admin(secure, domain), timeout=10
        ).results[0]
    )
    assert (entry["caller_type"], entry["caller_id"]) == ("USER", "bob")
    # The deny guardrail beats the admin policy's allow.
    grant_policy(secure, domain, "bob", "managed-deny-policy-changes", admin(secure, domain))
    expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        secure.policy.update,
        pb.UpdatePolicyRequest(policy_id="p", name="x", domain_id=domain),
        metadata=user,
    )
    # Every write, including the lifecycle ones; reads and checks stay allowed.
    for call in (secure.policy.disable, secure.policy.enable, secure.policy.delete):
        expect_error(
            grpc.StatusCode.PERMISSION_DENIED, call, pb.PolicyRequest(policy_id="p", domain_id=domain), metadata=user
        )
    assert secure.policy.get(pb.GetRepositoryPolicyRequest(policy_id="p", domain_id=domain), metadata=user).name
    check = parse(
        apb.CheckRequest,
        {"subject": {"type": "USER", "id": "bob"}, "action": "x", "resource": "y", "domain_id": domain},
    )
    assert secure.assignment.check(check, metadata=user, timeout=10).decision == apb.CheckResult.DENY


def test_repository_changes_are_system_only(secure, domain):
    expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        secure.repository.update,
        rpb.UpdateRepositoryRequest(repository_id="repo-local", name="x"),
        metadata=admin(secure, domain),
    )
    listed = secure.repository.list(rpb.RepositoryQuery(), metadata=admin(secure, domain), timeout=10)
    assert listed.total_count >= 2
    local = rpb.CreateRepositoryRequest(repository_type="local")
    expect_error(grpc.StatusCode.PERMISSION_DENIED, secure.repository.register, local, metadata=admin(secure, domain))
    registered = secure.repository.register(local, metadata=system(secure), timeout=10)
    assert registered.repository_id == "repo-local"


def test_policy_get_needs_a_token_and_works_with_a_service_token(secure, domain):
    service = secure.metadata("inventory-service", did="", rol="SYSTEM", typ="SERVICE_ACCOUNT")
    got = secure.policy.get(
        pb.GetRepositoryPolicyRequest(policy_id="managed-read-only", domain_id=domain), metadata=service, timeout=10
    )
    assert got.is_managed


def test_api_keys_authenticate_and_revoke(secure, domain):
    expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        secure.api_key.create,
        kpb.CreateApiKeyRequest(service_account_id="robot", domain_id=domain),
        metadata=admin(secure, domain),
    )
    created = secure.api_key.create(
        kpb.CreateApiKeyRequest(service_account_id="robot", name="ci", domain_id=domain),
        metadata=system(secure),
        timeout=10,
    )
    assert created.api_key.startswith("phk_") and created.state == "ACTIVE" and created.domain_id == domain
    key = (("token", created.api_key),)
    expect_error(grpc.StatusCode.PERMISSION_DENIED, secure.policy.list, pb.PolicyQuery(domain_id=domain), metadata=key)
    secure.assignment.create(
        parse(
            apb.CreateAssignmentRequest,
            {
                "subject": {"type": "SERVICE_ACCOUNT", "id": "robot"},
                "grant": {"type": "POLICY", "id": "managed-read-only"},
                "domain_id": domain,
            },
        ),
        metadata=admin(secure, domain),
        timeout=10,
    )
    assert secure.policy.list(pb.PolicyQuery(domain_id=domain), metadata=key, timeout=10).total_count >= 4
    listed = secure.api_key.list(kpb.ApiKeyQuery(domain_id=domain), metadata=system(secure), timeout=10)
    assert [k.api_key_id for k in listed.results] == [created.api_key_id] and listed.results[0].api_key == ""
    revoked = secure.api_key.revoke(
        kpb.ApiKeyRequest(api_key_id=created.api_key_id, domain_id=domain), metadata=system(secure), timeout=10
    )
    assert revoked.state == "REVOKED" and revoked.revoked_at
    error = expect_error(
        grpc.StatusCode.UNAUTHENTICATED, secure.policy.list, pb.PolicyQuery(domain_id=domain), metadata=key
    )
    assert error.details().endswith("API key revoked")
    tampered = created.api_key[:-4] + ("AAAA" if not created.api_key.endswith("AAAA") else "BBBB")
    error = expect_error(
        grpc.StatusCode.UNAUTHENTICATED,
        secure.policy.list,
        pb.PolicyQuery(domain_id=domain),
        metadata=(("token", tampered),),
    )
    assert error.details().endswith("unknown API key")
    expect_error(
        grpc.StatusCode.UNAUTHENTICATED,
        secure.policy.list,
        pb.PolicyQuery(domain_id=domain),
        metadata=(("token", "phk_garbage"),),
    )
    expect_error(
        grpc.StatusCode.NOT_FOUND,
        secure.api_key.revoke,
        kpb.ApiKeyRequest(api_key_id="000000000000", domain_id=domain),
        metadata=system(secure),
    )


# --- per-grant authorization: rights over assignments and renames are scoped to the policies named


def test_assignment_rights_are_scoped_to_the_granted_policy(secure, domain):
    md = admin(secure, domain)
    secure.policy.create(
        parse(
            pb.CreatePolicyRequest,
            {
                "policy_id": "team-granter",
                "name": "n",
                "domain_id": domain,
                "statements": [
                    {"effect": "ALLOW", "actions": ["repository.Assignment.create"], "resources": ["policy/team-*"]},
                    {
                        "effect": "ALLOW",
                        "actions": ["repository.Policy.update", "repository.Policy.create"],
                        "resources": ["policy/team-*"],
                    },
                ],
            },
        ),
        metadata=md,
        timeout=10,
    )
    secure.policy.create(pb.CreatePolicyRequest(policy_id="team-x", name="x", domain_id=domain), metadata=md)
    grant_policy(secure, domain, "bob", "team-granter", md)
    bob = secure.metadata("bob", did=domain)
    grant_policy(secure, domain, "carol", "team-x", bob)
    error = expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        secure.assignment.create,
        parse(
            apb.CreateAssignmentRequest,
            {
                "subject": {"type": "USER", "id": "bob"},
                "grant": {"type": "POLICY", "id": "managed-full-access"},
                "domain_id": domain,
            },
        ),
        metadata=bob,
    )
    assert "policy/managed-full-access" in error.details()
    error = expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        secure.policy.update,
        pb.UpdatePolicyRequest(policy_id="team-x", new_policy_id="admin-root", domain_id=domain),
        metadata=bob,
    )
    assert "policy/admin-root" in error.details()
    renamed = secure.policy.update(
        pb.UpdatePolicyRequest(policy_id="team-x", new_policy_id="team-y", domain_id=domain), metadata=bob, timeout=10
    )
    assert renamed.policy_id == "team-y"
