"""Consistency tokens and requirements through the public gRPC API (both backends): every write
answers with a larger token, every authorization answer carries the token it was computed at,
MINIMIZE_LATENCY answers from the process's cached index (and misses a write made through another
application on the same database) while AT_LEAST_AS_FRESH with that write's token sees it, the
service's own permission check stays fully consistent, and bad input is refused naming the field."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import grpc
import pytest
from conftest import free_port

from helpers import as_dict, error_reason, expect_error, field_violations, parse
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2 as apb
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2_grpc, group_pb2_grpc, policy_pb2_grpc
from policyhub._gen.spaceone.api.repository.v1 import group_pb2 as gpb
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2 as ppb
from policyhub._gen.spaceone.api.repository.v1 import role_pb2 as rpb
from policyhub.api.consistency import TOKEN_METADATA
from policyhub.bootstrap import build_application
from policyhub.server import PolicyHubServer

# Long enough that nothing in a test outlives it: a MINIMIZE_LATENCY answer of the reader is
# stale exactly when the test made it so.
LONG_STALENESS = 3600.0

MINIMIZE = {"requirement": "MINIMIZE_LATENCY"}
FULLY = {"requirement": "FULLY_CONSISTENT"}


def fresh(token: str) -> dict:
    return {"requirement": "AT_LEAST_AS_FRESH", "token": token}


def revision(token: str) -> int:
    assert token.startswith("ct1."), token
    return int(token[len("ct1.") :])


def serve(config, database):
    """Another application on the same database (its own evaluation index cache), served on a
    free port: a process that knows nothing of the writes made through the others."""
    app = build_application(replace(config, port=free_port(), max_staleness_seconds=LONG_STALENESS), database)
    server = PolicyHubServer(app)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    stubs = SimpleNamespace(
        app=app,
        assignment=assignment_pb2_grpc.AssignmentStub(channel),
        group=group_pb2_grpc.GroupStub(channel),
        policy=policy_pb2_grpc.PolicyStub(channel),
    )
    return stubs, lambda: (channel.close(), server.stop(grace=1))


@pytest.fixture(scope="module")
def reader(client):
    """A second application in development mode, sharing `client`'s database."""
    stubs, stop = serve(client.app.config, client.app.database)
    yield stubs
    stop()


@pytest.fixture(scope="module")
def secure_reader(secure):
    """A second application with authentication on (`secure`'s keys), sharing its database."""
    stubs, stop = serve(secure.app.config, secure.app.database)
    yield stubs
    stop()


def check(stub, domain, user="alice", action="a.read", consistency=None, metadata=()) -> apb.CheckResult:
    body = {"subject": {"type": "USER", "id": user}, "action": action, "resource": "r", "domain_id": domain}
    if consistency is not None:
        body["consistency"] = consistency
    return stub.assignment.check(parse(apb.CheckRequest, body), metadata=metadata, timeout=10)


def decision(result: apb.CheckResult) -> str:
    return apb.CheckResult.Decision.Name(result.decision)


def create_policy(stub, domain, policy_id="reader", permissions=("a.read",), metadata=()) -> ppb.PolicyInfo:
    request = ppb.CreatePolicyRequest(policy_id=policy_id, name=policy_id, permissions=permissions, domain_id=domain)
    return stub.policy.create(request, metadata=metadata, timeout=10)


def grant(stub, domain, user="alice", policy_id="reader", metadata=()) -> apb.AssignmentInfo:
    body = {"subject": {"type": "USER", "id": user}, "grant": {"type": "POLICY", "id": policy_id}, "domain_id": domain}
    return stub.assignment.create(parse(apb.CreateAssignmentRequest, body), metadata=metadata, timeout=10)


def trailing_token(call) -> str:
    return dict(call.trailing_metadata())[TOKEN_METADATA]


# --- tokens on writes and on answers ------------------------------------------------------------


def test_every_write_answers_with_a_larger_token_and_every_answer_carries_the_latest(client, domain):
    tokens: list[tuple[str, str]] = []

    def wrote(what: str, token: str) -> None:
        tokens.append((what, token))
        # answered fully consistently (the default), a check is at the revision of the last write
        assert check(client, domain).consistency_token == token, what

    wrote("Policy/create", create_policy(client, domain).consistency_token)
    policy = ppb.PolicyRequest(policy_id="reader", domain_id=domain)
    update = ppb.UpdatePolicyRequest(policy_id="reader", name="Reader", domain_id=domain)
    wrote("Policy/update", client.policy.update(update, timeout=10).consistency_token)
    wrote("Policy/disable", client.policy.disable(policy, timeout=10).consistency_token)
    wrote("Policy/enable", client.policy.enable(policy, timeout=10).consistency_token)
    assignment = grant(client, domain)
    wrote("Assignment/create", assignment.consistency_token)
    batch = parse(
        apb.AssignmentsRequest,
        {
            "grants": [{"type": "POLICY", "id": "reader"}],
            "subject_type": "USER",
            "subject_ids": ["bob", "carol"],
            "domain_id": domain,
        },
    )
    wrote("Assignment/add", client.assignment.add(batch, timeout=10).consistency_token)
    wrote("Assignment/remove", client.assignment.remove(batch, timeout=10).consistency_token)
    _, call = client.assignment.delete.with_call(
        apb.AssignmentRequest(assignment_id=assignment.assignment_id, domain_id=domain), timeout=10
    )
    wrote("Assignment/delete", trailing_token(call))
    group = gpb.CreateGroupRequest(group_id="ops", name="ops", domain_id=domain)
    wrote("Group/create", client.group.create(group, timeout=10).consistency_token)
    users = gpb.GroupUsersRequest(group_id="ops", user_ids=["alice"], domain_id=domain)
    wrote("Group/add_users", client.group.add_users(users, timeout=10).consistency_token)
    wrote("Group/remove_users", client.group.remove_users(users, timeout=10).consistency_token)
    rename = gpb.UpdateGroupRequest(group_id="ops", new_group_id="sre", domain_id=domain)
    wrote("Group/update", client.group.update(rename, timeout=10).consistency_token)
    _, call = client.group.delete.with_call(gpb.DeleteGroupRequest(group_id="sre", domain_id=domain), timeout=10)
    wrote("Group/delete", trailing_token(call))
    for group_id in ("g1", "g2"):
        client.group.create(gpb.CreateGroupRequest(group_id=group_id, name=group_id, domain_id=domain), timeout=10)
    many = gpb.DeleteGroupsRequest(group_ids=["g1", "g2"], domain_id=domain)
    wrote("Group/delete_many", client.group.delete_many(many, timeout=10).consistency_token)
    role = rpb.CreateRoleRequest(role_id="auditor", name="auditor", domain_id=domain)
    wrote("Role/create", client.role.create(role, timeout=10).consistency_token)
    bind = rpb.RoleUsersRequest(role_id="auditor", user_ids=["dave"], domain_id=domain)
    wrote("Role/bind_users", client.role.bind_users(bind, timeout=10).consistency_token)
    wrote("Role/unbind_users", client.role.unbind_users(bind, timeout=10).consistency_token)
    _, call = client.role.delete.with_call(rpb.DeleteRoleRequest(role_id="auditor", domain_id=domain), timeout=10)
    wrote("Role/delete", trailing_token(call))
    _, call = client.policy.delete.with_call(policy, timeout=10)
    wrote("Policy/delete", trailing_token(call))
    wrote("Policy/restore", client.policy.restore(policy, timeout=10).consistency_token)
    many = ppb.DeletePoliciesRequest(policy_ids=["reader"], domain_id=domain)
    wrote("Policy/delete_many", client.policy.delete_many(many, timeout=10).consistency_token)

    revisions = [revision(token) for _, token in tokens]
    assert revisions == sorted(set(revisions)), tokens  # strictly increasing


def test_every_authorization_answer_carries_the_token_it_was_computed_at(client, domain):
    create_policy(client, domain)
    client.group.create(gpb.CreateGroupRequest(group_id="ops", name="ops", domain_id=domain), timeout=10)
    token = grant(client, domain, policy_id="reader").consistency_token
    subject = {"type": "USER", "id": "alice"}
    item = {"subject": subject, "action": "a.read", "resource": "r"}
    for consistency in (None, FULLY, MINIMIZE, fresh(token)):
        extra = {} if consistency is None else {"consistency": consistency}
        answers = {
            "check": check(client, domain, consistency=consistency),
            "batch_check": client.assignment.batch_check(
                parse(
                    apb.BatchCheckRequest,
                    {"items": [item], "domain_id": domain, **extra},
                ),
                timeout=10,
            ),
            "list_authorized_resources": client.assignment.list_authorized_resources(
                parse(apb.ListAuthorizedResourcesRequest, {"subject": subject, "domain_id": domain, **extra}),
                timeout=10,
            ),
            "list_subjects": client.assignment.list_subjects(
                parse(apb.ListSubjectsRequest, {"policy_id": "reader", "domain_id": domain, **extra}), timeout=10
            ),
            "effective_permissions": client.assignment.effective_permissions(
                parse(apb.EffectivePermissionsRequest, {"subject": subject, "domain_id": domain, **extra}),
                timeout=10,
            ),
            "Group/list_authorized_resources": client.group.list_authorized_resources(
                parse(gpb.GroupAuthorizedResourcesRequest, {"group_id": "ops", "domain_id": domain, **extra}),
                timeout=10,
            ),
        }
        # This process made every write, and checked after each: its index is at the last one.
        assert {name: answer.consistency_token for name, answer in answers.items()} == dict.fromkeys(answers, token)
        assert decision(answers["check"]) == "ALLOW"
        assert answers["batch_check"].results[0].decision == apb.CheckResult.ALLOW
        assert answers["batch_check"].results[0].consistency_token == ""  # carried once, by the batch
        assert [r.resource for r in answers["list_authorized_resources"].results] == ["*"]
        assert [e.subject.id for e in answers["list_subjects"].results] == ["alice"]
        assert answers["effective_permissions"].total_count == 1


def test_a_domain_never_written_answers_at_revision_zero(client, domain):
    assert check(client, domain).consistency_token == "ct1.0"
    assert check(client, domain, consistency=MINIMIZE).consistency_token == "ct1.0"


# --- requirements across two applications on one database --------------------------------------


def test_minimize_latency_misses_a_write_made_elsewhere_and_the_writes_token_sees_it(client, reader, domain):
    create_policy(client, domain)
    warm = check(reader, domain)  # the reader's index, cached
    assert decision(warm) == "DENY"
    # A write through the other application: the reader's process is not told.
    written = grant(client, domain).consistency_token
    assert revision(written) > revision(warm.consistency_token)

    stale = check(reader, domain, consistency=MINIMIZE)
    assert decision(stale) == "DENY"
    assert stale.consistency_token == warm.consistency_token  # and its token says how old it is

    seen = check(reader, domain, consistency=fresh(written))
    assert decision(seen) == "ALLOW"
    assert revision(seen.consistency_token) >= revision(written)
    # That read refreshed the cached index: MINIMIZE_LATENCY answers from it now.
    assert decision(check(reader, domain, consistency=MINIMIZE)) == "ALLOW"

    # Fully consistent (asked, or by default) sees a write made elsewhere at once.
    revoked = client.policy.disable(ppb.PolicyRequest(policy_id="reader", domain_id=domain), timeout=10)
    assert decision(check(reader, domain, consistency=MINIMIZE)) == "ALLOW"  # stale again
    for consistency in (FULLY, None, {"requirement": "REQUIREMENT_NONE"}):
        result = check(reader, domain, consistency=consistency)
        assert decision(result) == "DENY" and result.consistency_token == revoked.consistency_token


def test_at_least_as_fresh_with_an_older_token_may_answer_from_the_cached_index(client, reader, domain):
    first = create_policy(client, domain).consistency_token
    assert decision(check(reader, domain)) == "DENY"  # cached at the policy's creation
    grant(client, domain)
    # An older (or equal) token is satisfied by the cached index: no read, the grant is not seen.
    result = check(reader, domain, consistency=fresh(first))
    assert decision(result) == "DENY" and result.consistency_token == first
    assert decision(check(reader, domain, consistency=fresh("ct1.0"))) == "DENY"


def test_a_token_beyond_the_domains_revision_is_answered_at_the_current_revision(client, reader, domain, other_domain):
    written = create_policy(client, domain).consistency_token
    grant(client, domain)
    current = check(client, domain).consistency_token
    # Another domain's revision far ahead of this one's.
    for number in range(revision(current) + 3):
        group = gpb.CreateGroupRequest(group_id=f"g{number}", name="g", domain_id=other_domain)
        client.group.create(group, timeout=10)
    foreign = check(client, other_domain).consistency_token
    assert revision(foreign) > revision(current)
    for token in (foreign, "ct1.999999999999999999"):
        for stub in (client, reader):
            result = check(stub, domain, consistency=fresh(token))  # answered, not waited for (timeout=10)
            assert decision(result) == "ALLOW"
            assert result.consistency_token == current
    assert revision(written) < revision(current)


def test_the_services_own_permission_check_stays_fully_consistent(secure, secure_reader, domain):
    """A caller whose permission to ask was revoked through another process is refused at once,
    MINIMIZE_LATENCY or not, while the answers that do not involve that permission are stale."""
    admin = secure.metadata(f"admin-{domain}", did=domain, rol="DOMAIN_ADMIN")
    alice = secure.metadata("alice", did=domain, rol="USER")
    create_policy(secure, domain, "checker", ("repository.Assignment.check",), metadata=admin)
    assignment = grant(secure, domain, "alice", "checker", metadata=admin)
    # Alice may ask about bob: the reader's index is warm, with her grant.
    assert decision(check(secure_reader, domain, "bob", consistency=MINIMIZE, metadata=alice)) == "DENY"
    revoked = secure.assignment.delete(
        apb.AssignmentRequest(assignment_id=assignment.assignment_id, domain_id=domain), metadata=admin, timeout=10
    )
    assert revoked is not None
    # About herself ("may I?", no permission needed) the reader's cached index still has the grant...
    stale = check(secure_reader, domain, "alice", "repository.Assignment.check", MINIMIZE, metadata=alice)
    assert decision(stale) == "ALLOW"
    # ... but asking about someone else needs the permission, checked at the current revision.
    for consistency in (MINIMIZE, None, fresh("ct1.0")):
        expect_error(
            grpc.StatusCode.PERMISSION_DENIED,
            secure_reader.assignment.check,
            parse(
                apb.CheckRequest,
                {
                    "subject": {"type": "USER", "id": "bob"},
                    "action": "a.read",
                    "resource": "r",
                    "domain_id": domain,
                    **({"consistency": consistency} if consistency else {}),
                },
            ),
            metadata=alice,
        )


# --- bad input ----------------------------------------------------------------------------------

BAD_TOKENS = [
    "ct1.",
    "ct1.-1",
    "ct1.+1",
    "ct1. 1",
    "ct1.1 ",
    "ct1.1\n",
    "ct1.0x1",
    "ct1.1.2",
    "ct2.1",
    "CT1.1",
    "1",
    "ct1.1234567890123456789",  # 19 digits
    "ct1.\u0661",  # an Arabic-Indic digit: not an ASCII one
    "x" * 10_000,
]


def _questions(domain: str, consistency: dict) -> list[tuple[str, object, object]]:
    subject = {"type": "USER", "id": "alice"}
    return [
        (
            "check",
            "assignment.check",
            parse(
                apb.CheckRequest,
                {"subject": subject, "action": "a", "resource": "r", "domain_id": domain, "consistency": consistency},
            ),
        ),
        (
            "batch_check",
            "assignment.batch_check",
            parse(
                apb.BatchCheckRequest,
                {
                    "items": [{"subject": subject, "action": "a", "resource": "r"}],
                    "domain_id": domain,
                    "consistency": consistency,
                },
            ),
        ),
        (
            "list_authorized_resources",
            "assignment.list_authorized_resources",
            parse(
                apb.ListAuthorizedResourcesRequest,
                {"subject": subject, "domain_id": domain, "consistency": consistency},
            ),
        ),
        (
            "list_subjects",
            "assignment.list_subjects",
            parse(apb.ListSubjectsRequest, {"policy_id": "reader", "domain_id": domain, "consistency": consistency}),
        ),
        (
            "effective_permissions",
            "assignment.effective_permissions",
            parse(
                apb.EffectivePermissionsRequest, {"subject": subject, "domain_id": domain, "consistency": consistency}
            ),
        ),
        (
            "Group/list_authorized_resources",
            "group.list_authorized_resources",
            parse(
                gpb.GroupAuthorizedResourcesRequest,
                {"group_id": "ops", "domain_id": domain, "consistency": consistency},
            ),
        ),
    ]


def _call(stub, path: str):
    service, method = path.split(".")
    return getattr(getattr(stub, service), method)


@pytest.mark.parametrize("token", BAD_TOKENS)
def test_a_malformed_token_is_invalid_argument_naming_consistency_token(client, domain, token):
    for name, path, request in _questions(domain, fresh(token)):
        error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, _call(client, path), request)
        assert field_violations(error) == ["consistency.token"], name
        assert error_reason(error) == "ERROR_INVALID_PARAMETER"
        assert len(error.details()) < 300  # the value is clipped


def test_at_least_as_fresh_without_a_token_is_a_required_parameter(client, domain):
    for name, path, request in _questions(domain, {"requirement": "AT_LEAST_AS_FRESH"}):
        error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, _call(client, path), request)
        assert field_violations(error) == ["consistency.token"], name
        assert error_reason(error) == "ERROR_REQUIRED_PARAMETER"


@pytest.mark.parametrize("requirement", ["REQUIREMENT_NONE", "MINIMIZE_LATENCY", "FULLY_CONSISTENT"])
def test_a_token_with_another_requirement_is_refused(client, domain, requirement):
    token = create_policy(client, domain).consistency_token
    for name, path, request in _questions(domain, {"requirement": requirement, "token": token}):
        error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, _call(client, path), request)
        assert field_violations(error) == ["consistency.token"], name
        assert "AT_LEAST_AS_FRESH only" in error.details()


def test_an_unknown_requirement_number_is_invalid_argument(client, domain):
    request = apb.CheckRequest(
        subject=apb.Subject(type=apb.Subject.USER, id="alice"),
        action="a",
        resource="r",
        domain_id=domain,
        consistency=apb.Consistency(requirement=42),
    )
    error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, client.assignment.check, request)
    assert field_violations(error) == ["consistency.requirement"]


def test_consistency_is_checked_before_authorization(secure, domain):
    """A caller without any permission asking about someone else: the bad token is named first."""
    nobody = secure.metadata("nobody", did=domain, rol="USER")
    for name, path, request in _questions(domain, fresh("ct1.x")):
        error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, _call(secure, path), request, metadata=nobody)
        assert field_violations(error) == ["consistency.token"], name
    request = parse(
        apb.CheckRequest,
        {"subject": {"type": "USER", "id": "bob"}, "action": "a", "resource": "r", "domain_id": domain},
    )
    expect_error(grpc.StatusCode.PERMISSION_DENIED, secure.assignment.check, request, metadata=nobody)


def test_the_consistency_field_in_json_as_grpcurl_sends_it(client, domain):
    create_policy(client, domain)
    token = grant(client, domain).consistency_token
    body = {
        "subject": {"type": "USER", "id": "alice"},
        "action": "a.read",
        "resource": "r",
        "domain_id": domain,
        "consistency": {"requirement": "AT_LEAST_AS_FRESH", "token": token},
    }
    answer = as_dict(client.assignment.check(parse(apb.CheckRequest, body), timeout=10))
    assert answer["decision"] == "ALLOW" and answer["consistency_token"] == token
