"""Sibling services calling: `authorization: Bearer` credentials, "may I?" checks that need no
permission, and batch_check's correlation ids and bound, through the gRPC API."""

from __future__ import annotations

import grpc
import pytest

from helpers import as_dict, expect_error, field_violations, grant_policy, parse, without_token
from policyhub._gen.spaceone.api.repository.v1 import api_key_pb2 as kpb
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2 as apb
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2 as pb


def admin(secure, domain):
    return secure.metadata(f"admin-{domain}", did=domain, rol="DOMAIN_ADMIN")


def system(secure):
    return secure.metadata("root", did="", rol="SYSTEM", typ="SERVICE_ACCOUNT")


def bearer(credential: str, scheme: str = "Bearer") -> tuple:
    return (("authorization", f"{scheme} {credential}"),)


def create_policy(stub, domain, policy_id, permissions, metadata=()):
    stub.policy.create(
        parse(
            pb.CreatePolicyRequest,
            {"policy_id": policy_id, "name": policy_id, "domain_id": domain, "permissions": permissions},
        ),
        metadata=metadata,
        timeout=10,
    )


def check(stub, domain, metadata=(), **fields) -> dict:
    request = parse(apb.CheckRequest, {"action": "a.read", "resource": "r", "domain_id": domain, **fields})
    return without_token(as_dict(stub.assignment.check(request, metadata=metadata, timeout=10)))


def batch(domain, items) -> apb.BatchCheckRequest:
    return parse(apb.BatchCheckRequest, {"domain_id": domain, "items": items})


def item(subject=None, action="a.read", correlation_id="") -> dict:
    out = {"action": action, "resource": "r", "correlation_id": correlation_id}
    return out if subject is None else {**out, "subject": subject}


# --- authorization: Bearer -----------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_bearer_carries_a_jwt(secure, domain, scheme):
    token = secure.token(f"admin-{domain}", did=domain, rol="DOMAIN_ADMIN")
    create_policy(secure, domain, "by-bearer", ["a.read"], metadata=bearer(token, scheme))
    listed = secure.policy.list(
        pb.PolicyQuery(domain_id=domain, exclude_managed=True), metadata=bearer(token, scheme), timeout=10
    )
    assert [p.policy_id for p in listed.results] == ["by-bearer"]
    # The same caller as with `token`: a plain user gets what its assignments allow, nothing more.
    user = secure.token("nobody", did=domain, rol="USER")
    expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        secure.policy.list,
        pb.PolicyQuery(domain_id=domain),
        metadata=bearer(user, scheme),
    )


def test_bearer_carries_an_api_key(secure, domain):
    created = secure.api_key.create(
        kpb.CreateApiKeyRequest(service_account_id="robot", name="sibling", domain_id=domain),
        metadata=system(secure),
        timeout=10,
    )
    key = bearer(created.api_key)
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
    # May I? The key's service account, asked without naming it.
    answer = check(secure, domain, metadata=key, action="inventory.Server.get")
    assert answer["decision"] == "ALLOW" and answer["policy_id"] == "managed-read-only"
    assert answer["via"] == [{"type": "SERVICE_ACCOUNT", "id": "robot"}]
    secure.api_key.revoke(
        kpb.ApiKeyRequest(api_key_id=created.api_key_id, domain_id=domain), metadata=system(secure), timeout=10
    )
    error = expect_error(
        grpc.StatusCode.UNAUTHENTICATED, secure.policy.list, pb.PolicyQuery(domain_id=domain), metadata=key
    )
    assert error.details() == "ERROR_AUTHENTICATE_FAILURE: API key revoked"


@pytest.mark.parametrize(
    "value, reason",
    [
        ("", "empty authorization metadata; send `Bearer <token>`"),
        ("Basic dXNlcjpwYXNzd29yZA==", "authorization metadata must use the Bearer scheme (`Bearer <token>`)"),
        ("{token}", "authorization metadata must use the Bearer scheme (`Bearer <token>`)"),
        ("Token {token}", "authorization metadata must use the Bearer scheme (`Bearer <token>`)"),
        ("Bearer", "authorization metadata has no credential after Bearer"),
        ("Bearer ", "authorization metadata has no credential after Bearer"),
        (
            "Bearer {token} {token}",
            "authorization metadata must be `Bearer <token>`: one space, then exactly one credential",
        ),
        (
            "Bearer  {token}",
            "authorization metadata must be `Bearer <token>`: one space, then exactly one credential",
        ),
        ("Bearer not-a-token", "malformed token"),
    ],
)
def test_malformed_authorization_is_unauthenticated(secure, domain, value, reason):
    token = secure.token(f"admin-{domain}", did=domain, rol="DOMAIN_ADMIN")
    error = expect_error(
        grpc.StatusCode.UNAUTHENTICATED,
        secure.policy.list,
        pb.PolicyQuery(domain_id=domain),
        metadata=(("authorization", value.format(token=token)),),
    )
    assert error.details() == f"ERROR_AUTHENTICATE_FAILURE: {reason}"


@pytest.mark.parametrize(
    "metadata",
    [
        lambda token: (("token", token), ("authorization", f"Bearer {token}")),
        lambda token: (("authorization", f"Bearer {token}"), ("authorization", f"Bearer {token}")),
        lambda token: (("authorization", f"Bearer {token}"), ("authorization", "")),
    ],
)
def test_a_credential_sent_twice_is_ambiguous(secure, domain, metadata):
    token = secure.token(f"admin-{domain}", did=domain, rol="DOMAIN_ADMIN")
    error = expect_error(
        grpc.StatusCode.UNAUTHENTICATED, secure.policy.list, pb.PolicyQuery(domain_id=domain), metadata=metadata(token)
    )
    assert "ambiguous credentials" in error.details()


# --- may I? --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "subject",
    [None, {}, {"type": "TYPE_NONE"}, {"type": "USER", "id": "carol"}],
    ids=["unset", "empty", "type-none", "explicit-self"],
)
def test_a_caller_without_assignments_may_check_itself(secure, domain, subject):
    carol = secure.metadata("carol", did=domain, rol="USER")
    fields = {} if subject is None else {"subject": subject}
    assert check(secure, domain, metadata=carol, **fields) == {
        "decision": "DENY",
        "reason": "NO_MATCHING_ALLOW",
        "statement_index": -1,
    }
    answers = secure.assignment.batch_check(
        batch(domain, [item(subject, correlation_id="mine")]), metadata=carol, timeout=10
    )
    assert [as_dict(a) for a in answers.results] == [
        {"decision": "DENY", "reason": "NO_MATCHING_ALLOW", "statement_index": -1, "correlation_id": "mine"}
    ]


def test_check_for_itself_answers_from_the_callers_assignments(secure, domain):
    create_policy(secure, domain, "reader", ["a.read"], metadata=admin(secure, domain))
    grant_policy(secure, domain, "dave", "reader", metadata=admin(secure, domain))
    dave = secure.metadata("dave", did=domain, rol="USER")
    assert check(secure, domain, metadata=dave) == {
        "decision": "ALLOW",
        "reason": "ALLOWED",
        "policy_id": "reader",
        "via": [{"type": "USER", "id": "dave"}],
    }
    assert check(secure, domain, metadata=dave, action="a.write")["decision"] == "DENY"
    # As the same question asked about dave by someone allowed to ask.
    assert check(secure, domain, metadata=admin(secure, domain), subject={"type": "USER", "id": "dave"}) == check(
        secure, domain, metadata=dave
    )


@pytest.mark.parametrize(
    "subject",
    [{"type": "USER", "id": "dave"}, {"type": "SERVICE_ACCOUNT", "id": "carol"}, {"type": "GROUP", "id": "carol"}],
    ids=["another-user", "same-id-other-type", "a-group"],
)
def test_asking_about_anyone_else_needs_the_permission(secure, domain, subject):
    carol = secure.metadata("carol", did=domain, rol="USER")
    error = expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        secure.assignment.check,
        parse(apb.CheckRequest, {"subject": subject, "action": "a.read", "resource": "r", "domain_id": domain}),
        metadata=carol,
    )
    assert "repository.Assignment.check" in error.details()
    expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        secure.assignment.batch_check,
        batch(domain, [item(subject)]),
        metadata=carol,
    )


def test_batch_check_mixing_self_and_others_needs_the_permission_once(secure, domain):
    carol = secure.metadata("carol", did=domain, rol="USER")
    create_policy(secure, domain, "reader", ["a.read"], metadata=admin(secure, domain))
    grant_policy(secure, domain, "dave", "reader", metadata=admin(secure, domain))
    items = [
        item(correlation_id="me"),
        item({"type": "USER", "id": "dave"}, correlation_id="dave"),
        item({"type": "USER", "id": "carol"}, correlation_id="me-again"),
    ]
    error = expect_error(
        grpc.StatusCode.PERMISSION_DENIED, secure.assignment.batch_check, batch(domain, items), metadata=carol
    )
    assert "repository.Assignment.batch_check" in error.details()
    create_policy(
        secure, domain, "batch-checker", ["repository.Assignment.batch_check"], metadata=admin(secure, domain)
    )
    grant_policy(secure, domain, "carol", "batch-checker", metadata=admin(secure, domain))
    results = secure.assignment.batch_check(batch(domain, items), metadata=carol, timeout=10).results
    assert [(r.correlation_id, apb.CheckResult.Decision.Name(r.decision)) for r in results] == [
        ("me", "DENY"),
        ("dave", "ALLOW"),
        ("me-again", "DENY"),
    ]
    # batch_check's permission is not check's.
    expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        secure.assignment.check,
        parse(
            apb.CheckRequest,
            {"subject": {"type": "USER", "id": "dave"}, "action": "a", "resource": "r", "domain_id": domain},
        ),
        metadata=carol,
    )


def test_without_authentication_the_subject_is_required(client, domain):
    """Development mode has no authenticated caller for an empty subject to stand for."""
    for fields in [{}, {"subject": {}}, {"subject": {"type": "TYPE_NONE"}}]:
        error = expect_error(
            grpc.StatusCode.INVALID_ARGUMENT,
            client.assignment.check,
            parse(apb.CheckRequest, {"action": "a.read", "resource": "r", "domain_id": domain, **fields}),
        )
        assert field_violations(error) == ["subject"]
        assert "without authentication" in error.details()
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.assignment.batch_check,
        batch(domain, [item({"type": "USER", "id": "u"}), item()]),
    )
    assert field_violations(error) == ["items[1].subject"]
    # A half-empty subject is not an empty one.
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.assignment.check,
        parse(apb.CheckRequest, {"subject": {"id": "u"}, "action": "a", "resource": "r", "domain_id": domain}),
    )
    assert field_violations(error) == ["subject.type"]


# --- batch_check: correlation ids and bound ------------------------------------------------------


def test_correlation_ids_are_echoed_in_order(client, domain):
    create_policy(client, domain, "reader", ["a.read"])
    grant_policy(client, domain, "u", "reader")
    ids = [f"req-{index:04d}" if index % 3 else "" for index in range(1000)]
    items = [
        item({"type": "USER", "id": "u"}, "a.read" if index % 2 == 0 else "a.write", correlation_id)
        for index, correlation_id in enumerate(ids)
    ]
    items[7]["correlation_id"] = "é-" + "x" * 126  # 128 characters, not ASCII: fine
    ids[7] = items[7]["correlation_id"]
    results = client.assignment.batch_check(batch(domain, items), timeout=30).results
    assert [r.correlation_id for r in results] == ids
    assert [r.decision for r in results] == [
        apb.CheckResult.ALLOW if index % 2 == 0 else apb.CheckResult.DENY for index in range(1000)
    ]
    single = client.assignment.check(
        parse(
            apb.CheckRequest,
            {"subject": {"type": "USER", "id": "u"}, "action": "a.read", "resource": "r", "domain_id": domain},
        ),
        timeout=10,
    )
    assert single.correlation_id == ""


def test_batch_check_takes_at_most_1000_items(client, domain):
    one = apb.CheckItem(subject=apb.Subject(type=apb.Subject.USER, id="u"), action="a", resource="r")
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.assignment.batch_check,
        apb.BatchCheckRequest(domain_id=domain, items=[one] * 1001),
    )
    assert field_violations(error) == ["items"]
    assert "at most 1000 items per call, got 1001" in error.details()
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT, client.assignment.batch_check, apb.BatchCheckRequest(domain_id=domain)
    )
    assert field_violations(error) == ["items"]


@pytest.mark.parametrize(
    "correlation_id",
    ["x" * 129, "x" * 10_000, "a\x00b", "a\x1b[31mb", "a\u202eb", "a\u200bb", "a\u2028b", "a\nb", "a\ue000b"],
)
def test_bad_correlation_ids_are_invalid(client, domain, correlation_id):
    items = [
        item({"type": "USER", "id": "u"}, correlation_id="fine"),
        item({"type": "USER", "id": "u"}, correlation_id=correlation_id),
    ]
    error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, client.assignment.batch_check, batch(domain, items))
    assert field_violations(error) == ["items[1].correlation_id"]
    assert "x" * 65 not in error.details()
