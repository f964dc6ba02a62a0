"""Bounded sizes, clean identifiers, unambiguous credentials and rate limits, through the gRPC API."""

from __future__ import annotations

import time
from dataclasses import replace

import grpc
import pytest
from conftest import free_port
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from helpers import as_dict, create_sets, error_reason, expect_error, field_violations, parse
from policyhub._gen.spaceone.api.repository.v1 import api_key_pb2 as kpb
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2 as apb
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2_grpc, audit_pb2, policy_pb2_grpc
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2 as pb
from policyhub._gen.spaceone.api.repository.v1 import repository_pb2 as rpb
from policyhub.bootstrap import build_application
from policyhub.server import PolicyHubServer

HUGE = "x" * 10_000
UNSAFE = ["a\x00b", "a\x1b[31mb", "a\u202eb", "a\u200bb", "a\u2028b", "a\x7fb", "a\ue000b"]


def short(error: grpc.RpcError) -> None:
    """The whole status (message and details) repeats at most a short prefix of a bad value."""
    assert "x" * 65 not in error.details()
    assert "x" * 65 not in str(rpc_status.from_call(error))


def system(secure):
    return secure.metadata("root", did="", rol="SYSTEM", typ="SERVICE_ACCOUNT")


def retry_delay(error: grpc.RpcError) -> float:
    for detail in rpc_status.from_call(error).details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.ToMilliseconds() / 1000
    raise AssertionError("no RetryInfo detail")


def create_policy(stub, domain, policy_id, **fields):
    return stub.create(
        parse(
            pb.CreatePolicyRequest,
            {"policy_id": policy_id, "name": policy_id, "domain_id": domain, "permissions": ["a.read"], **fields},
        ),
        timeout=10,
    )


@pytest.fixture
def server_with(client):
    """Starts extra servers on `client`'s database with some config keys changed."""
    started = []

    def start(base=None, **changes):
        base = base or client.app
        app = build_application(replace(base.config, port=free_port(), **changes), client.app.database)
        server = PolicyHubServer(app)
        server.start()
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        started.append((server, channel))
        return app, channel

    yield start
    for server, channel in started:
        channel.close()
        server.stop(grace=0)


# --- identifiers: bounded before any lookup, never echoed in full -----------------------------


@pytest.mark.parametrize(
    "call, request_, field",
    [
        ("repository.get", rpb.GetRepositoryRequest(repository_id=HUGE), "repository_id"),
        ("repository.update", rpb.UpdateRepositoryRequest(repository_id=HUGE, name="n"), "repository_id"),
        ("repository.deregister", rpb.RepositoryRequest(repository_id=HUGE), "repository_id"),
        ("repository.list", rpb.RepositoryQuery(repository_id=HUGE), "repository_id"),
        (
            "policy.get",
            pb.GetRepositoryPolicyRequest(policy_id="p", repository_id=HUGE, domain_id="d"),
            "repository_id",
        ),
        ("policy.get", pb.GetRepositoryPolicyRequest(policy_id=HUGE, domain_id="d"), "policy_id"),
        ("policy.list", pb.PolicyQuery(repository_id=HUGE, domain_id="d"), "repository_id"),
        ("policy.list", pb.PolicyQuery(policy_id=HUGE, domain_id="d"), "policy_id"),
        ("policy.stat", pb.PolicyStatQuery(repository_id=HUGE, domain_id="d"), "repository_id"),
        ("policy.delete", pb.PolicyRequest(policy_id="p", etag=HUGE, domain_id="d"), "etag"),
        ("policy.get", pb.GetRepositoryPolicyRequest(policy_id="p", domain_id=HUGE), "domain_id"),
        ("assignment.get", apb.GetAssignmentRequest(assignment_id=HUGE, domain_id="d"), "assignment_id"),
        ("assignment.delete", apb.AssignmentRequest(assignment_id=HUGE, domain_id="d"), "assignment_id"),
        ("assignment.list", apb.AssignmentQuery(subject=apb.Subject(id=HUGE), domain_id="d"), "subject.id"),
        (
            "assignment.create",
            apb.CreateAssignmentRequest(
                subject=apb.Subject(type="USER", id=HUGE), grant=apb.Grant(type="ROLE", id="r"), domain_id="d"
            ),
            "subject.id",
        ),
        (
            "assignment.create",
            apb.CreateAssignmentRequest(
                subject=apb.Subject(type="USER", id="u"), grant=apb.Grant(type="GROUP", id=HUGE), domain_id="d"
            ),
            "grant.id",
        ),
        ("audit.list", audit_pb2.AuditQuery(resource_id=HUGE, domain_id="d"), "resource_id"),
    ],
)
def test_oversized_identifiers_are_invalid_argument_naming_the_field(client, call, request_, field):
    service, method = call.split(".")
    error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, getattr(getattr(client, service), method), request_)
    assert field_violations(error) == [field]
    short(error)


def test_oversized_x_domain_id_is_invalid_argument(client):
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.policy.list,
        pb.PolicyQuery(domain_id="d"),
        metadata=(("x_domain_id", "x" * 1000),),
    )
    assert field_violations(error) == ["x_domain_id"]
    short(error)


def test_x_domain_id_sent_twice_is_invalid_argument(client, domain, other_domain):
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.policy.list,
        pb.PolicyQuery(),
        metadata=(("x_domain_id", domain), ("x_domain_id", other_domain)),
    )
    assert field_violations(error) == ["x_domain_id"]


def test_not_found_repeats_only_a_prefix_of_the_id(client, domain):
    error = expect_error(
        grpc.StatusCode.NOT_FOUND, client.repository.get, rpb.GetRepositoryRequest(repository_id="x" * 128)
    )
    assert "x" * 64 + "..." in error.details()
    short(error)
    # A thousand missing ids: one short answer, not a transport error.
    error = expect_error(
        grpc.StatusCode.NOT_FOUND,
        client.policy.delete_many,
        pb.DeletePoliciesRequest(policy_ids=[f"x{i:040d}" for i in range(1000)], domain_id=domain),
    )
    assert len(error.details()) < 200


def test_hostile_tag_keys_are_clipped_in_the_field_path(client, domain):
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.policy.create,
        parse(pb.CreatePolicyRequest, {"policy_id": "p", "name": "p", "domain_id": domain, "tags": {HUGE: 1}}),
    )
    assert field_violations(error) == ["tags." + "x" * 64 + "..."]
    short(error)


# --- control, format and bidirectional characters ----------------------------------------------


@pytest.mark.parametrize("value", UNSAFE)
def test_unsafe_characters_in_names_and_ids_are_invalid_argument(client, domain, value):
    create_sets(client, domain, roles=["r"])
    cases = [
        (client.policy.create, pb.CreatePolicyRequest(policy_id="p", name=value, domain_id=domain), "name"),
        (
            client.policy.create,
            pb.CreatePolicyRequest(policy_id="p", name="p", permissions=[value], domain_id=domain),
            "permissions[0]",
        ),
        (
            client.policy.create,
            parse(pb.CreatePolicyRequest, {"policy_id": "p", "name": "p", "domain_id": domain, "tags": {value: "v"}}),
            f"tags.{value}",
        ),
        (
            client.policy.create,
            pb.CreatePolicyRequest(policy_id="p", name="p", description=value, domain_id=domain),
            "description",
        ),
        (client.policy.update, pb.UpdatePolicyRequest(policy_id="p", name=value, domain_id=domain), "name"),
        (client.repository.update, rpb.UpdateRepositoryRequest(repository_id="repo-local", name=value), "name"),
        (client.repository.get, rpb.GetRepositoryRequest(repository_id=value), "repository_id"),
        (
            client.assignment.create,
            apb.CreateAssignmentRequest(
                subject=apb.Subject(type="USER", id=value), grant=apb.Grant(type="ROLE", id="r"), domain_id=domain
            ),
            "subject.id",
        ),
        (client.assignment.get, apb.GetAssignmentRequest(assignment_id=value, domain_id=domain), "assignment_id"),
        (client.policy.list, pb.PolicyQuery(domain_id=value), "domain_id"),
    ]
    for call, request_, field in cases:
        error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, call, request_)
        assert field_violations(error) == [field], request_
        if field != "domain_id":  # domain ids have a pattern of their own
            assert f"U+{ord(value[1]):04X}" in error.details()


def test_descriptions_keep_line_breaks_and_tabs(client, domain):
    created = create_policy(client.policy, domain, "prose", description="first line\n\tindented")
    assert created.description == "first line\n\tindented"
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.policy.create,
        pb.CreatePolicyRequest(policy_id="p", name="a\tb", domain_id=domain),
    )
    assert field_violations(error) == ["name"]


def test_register_refuses_a_bad_name_before_dialling_the_endpoint(client):
    # A non-routable address: dialling it would take the whole remote timeout.
    started = time.monotonic()
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.repository.register,
        rpb.CreateRepositoryRequest(
            name="evil\u202eexe.txt", repository_type="remote", endpoint="grpc://10.255.255.1:50051"
        ),
    )
    assert field_violations(error) == ["name"]
    assert time.monotonic() - started < 1


# --- document sizes --------------------------------------------------------------------------


def test_policy_documents_are_at_most_64_kib(client, domain):
    big = [f"service{i:03d}.{'a' * 480}" for i in range(150)]
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.policy.create,
        pb.CreatePolicyRequest(policy_id="big", name="big", permissions=big, domain_id=domain),
    )
    assert field_violations(error) == ["permissions"]
    assert "65536" in error.details()
    # The changes alone, and the policy they would make.
    create_policy(client.policy, domain, "grows", permissions=big[:80])
    expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.policy.update,
        pb.UpdatePolicyRequest(policy_id="grows", permissions=big, domain_id=domain),
    )
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.policy.update,
        parse(
            pb.UpdatePolicyRequest,
            {"policy_id": "grows", "domain_id": domain, "tags": {f"k{i}": "v" * 4000 for i in range(8)}},
        ),
    )
    assert field_violations(error) == ["permissions"]
    assert (
        client.policy.get(pb.GetRepositoryPolicyRequest(policy_id="grows", domain_id=domain), timeout=10).version == 1
    )


def test_tag_and_label_strings_are_at_most_4096_characters(client, domain):
    create_sets(client, domain, roles=["r"])
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.policy.create,
        parse(
            pb.CreatePolicyRequest,
            {"policy_id": "p", "name": "p", "domain_id": domain, "tags": {"a": {"b": ["v" * 4097]}}},
        ),
    )
    assert field_violations(error) == ["tags.a.b[0]"]
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.assignment.create,
        parse(
            apb.CreateAssignmentRequest,
            {
                "subject": {"type": "USER", "id": "u"},
                "grant": {"type": "ROLE", "id": "r"},
                "domain_id": domain,
                "labels": ["ok", "v" * 4097],
            },
        ),
    )
    assert field_violations(error) == ["labels[1]"]
    create_policy(client.policy, domain, "edge", tags={"a": "v" * 4096})


def test_assignment_tags_and_labels_are_capped(client, domain):
    create_sets(client, domain, roles=["r"])
    request_ = {"subject": {"type": "USER", "id": "u"}, "grant": {"type": "ROLE", "id": "r"}, "domain_id": domain}
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.assignment.create,
        parse(apb.CreateAssignmentRequest, {**request_, "tags": {f"k{i}": "v" * 4000 for i in range(5)}}),
    )
    assert field_violations(error) == ["tags"]
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.assignment.create,
        parse(apb.CreateAssignmentRequest, {**request_, "labels": ["v" * 4000 for _ in range(5)]}),
    )
    assert field_violations(error) == ["labels"]
    client.assignment.create(parse(apb.CreateAssignmentRequest, {**request_, "tags": {"k": "v" * 4000}}), timeout=10)


def test_audit_entries_of_large_policies_are_summarised(client, domain):
    permissions = [f"service{i:03d}.{'a' * 480}" for i in range(100)]
    create_policy(client.policy, domain, "large", permissions=permissions, description="d" * 500)
    entries = client.audit.list(audit_pb2.AuditQuery(domain_id=domain, resource_id="large"), timeout=10).results
    after = as_dict(entries[0])["after"]
    assert after["permissions"] == {"truncated_bytes": pytest.approx(49_000, rel=0.1)}
    # Small fields are kept as they were.
    assert (after["policy_id"], after["description"]) == ("large", "d" * 500)
    assert entries[0].ByteSize() < 20_000


# --- list pages fit the message limit ----------------------------------------------------------


def test_list_pages_are_cut_to_fit_max_message_bytes(client, server_with, domain):
    permissions = [f"service{i:03d}.{'a' * 480}" for i in range(70)]
    for index in range(5):
        create_policy(client.policy, domain, f"p{index}", permissions=permissions)
    _, channel = server_with(max_message_bytes=100_000)
    small = policy_pb2_grpc.PolicyStub(channel)
    seen, start = [], 1
    while True:
        page = small.list(
            parse(
                pb.PolicyQuery,
                {
                    "domain_id": domain,
                    "exclude_managed": True,
                    "query": {"sort": {"key": "policy_id"}, "page": {"start": start, "limit": 10}},
                },
            ),
            timeout=10,
        )
        assert page.total_count == 5
        assert 0 < len(page.results) < 5 and page.ByteSize() <= 100_000
        seen += [policy.policy_id for policy in page.results]
        start += len(page.results)
        if start > page.total_count:
            break
    assert seen == [f"p{index}" for index in range(5)]


def test_a_result_too_large_for_any_page_is_resource_exhausted(client, server_with, domain):
    create_policy(client.policy, domain, "wide", permissions=[f"s{i:03d}.{'a' * 480}" for i in range(70)])
    _, channel = server_with(max_message_bytes=20_000)
    error = expect_error(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        policy_pb2_grpc.PolicyStub(channel).list,
        pb.PolicyQuery(domain_id=domain, exclude_managed=True),
    )
    assert error_reason(error) == "ERROR_RESULT_TOO_LARGE"
    assert "query.only" in error.details()


# --- ambiguous credentials -----------------------------------------------------------------------


def test_several_credentials_are_ambiguous(secure, domain):
    token = secure.token("alice", did=domain, rol="DOMAIN_ADMIN")
    for metadata in [
        (("token", token), ("token", token)),
        (("token", token), ("authorization", f"Bearer {token}")),
        (("authorization", f"Bearer {token}"), ("authorization", f"Bearer {token}")),
    ]:
        error = expect_error(
            grpc.StatusCode.UNAUTHENTICATED, secure.policy.list, pb.PolicyQuery(domain_id=domain), metadata=metadata
        )
        assert "ambiguous" in error.details()
    assert secure.policy.list(pb.PolicyQuery(domain_id=domain), metadata=(("token", token),), timeout=10)


def test_an_oversized_token_is_refused_unverified(secure, domain):
    error = expect_error(
        grpc.StatusCode.UNAUTHENTICATED,
        secure.policy.list,
        pb.PolicyQuery(domain_id=domain),
        metadata=(("token", "e" * 5000),),
    )
    assert error.details() == "ERROR_AUTHENTICATE_FAILURE: token too long"
    error = expect_error(
        grpc.StatusCode.UNAUTHENTICATED,
        secure.policy.list,
        pb.PolicyQuery(domain_id=domain),
        metadata=(("authorization", "Bearer " + "e" * 5000),),
    )
    assert error.details() == "ERROR_AUTHENTICATE_FAILURE: token too long"


def test_api_key_and_service_account_ids_are_bounded(secure):
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        secure.api_key.revoke,
        kpb.ApiKeyRequest(api_key_id=HUGE, domain_id="d"),
        metadata=system(secure),
    )
    assert field_violations(error) == ["api_key_id"]
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        secure.api_key.create,
        kpb.CreateApiKeyRequest(service_account_id="sa\x1b", name="n", domain_id="d"),
        metadata=system(secure),
    )
    assert field_violations(error) == ["service_account_id"]


# --- rate limits ---------------------------------------------------------------------------------


def test_failed_authentications_are_rate_limited(secure, server_with, domain):
    app, channel = server_with(secure.app, auth_failure_per_minute=5)
    stub = policy_pb2_grpc.PolicyStub(channel)
    wrong = [(("token", f"phk_{index:012x}_{'A' * 43}"),) for index in range(6)]
    for metadata in wrong[:5]:
        expect_error(grpc.StatusCode.UNAUTHENTICATED, stub.list, pb.PolicyQuery(domain_id=domain), metadata=metadata)
    error = expect_error(
        grpc.StatusCode.RESOURCE_EXHAUSTED, stub.list, pb.PolicyQuery(domain_id=domain), metadata=wrong[5]
    )
    assert error_reason(error) == "ERROR_RATE_LIMITED"
    assert 0 < retry_delay(error) <= 12
    # Refused without verifying, whatever is presented from that peer meanwhile.
    good = secure.metadata(f"admin-{domain}", did=domain, rol="DOMAIN_ADMIN")
    expect_error(grpc.StatusCode.RESOURCE_EXHAUSTED, stub.list, pb.PolicyQuery(domain_id=domain), metadata=good)
    assert app.metrics.registry.get_sample_value("policyhub_rate_limited_total", {"kind": "auth_failure_peer"}) == 2


def test_malformed_authorization_counts_as_a_failed_authentication(secure, server_with, domain):
    app, channel = server_with(secure.app, auth_failure_per_minute=3)
    stub = policy_pb2_grpc.PolicyStub(channel)
    good = f"Bearer {secure.token(f'admin-{domain}', did=domain, rol='DOMAIN_ADMIN')}"
    assert stub.list(pb.PolicyQuery(domain_id=domain), metadata=(("authorization", good),), timeout=10)
    for value in ["Basic dXNlcjpwYXNz", "Bearer", f"Bearer phk_{'0' * 12}_{'A' * 43}"]:
        expect_error(
            grpc.StatusCode.UNAUTHENTICATED,
            stub.list,
            pb.PolicyQuery(domain_id=domain),
            metadata=(("authorization", value),),
        )
    error = expect_error(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        stub.list,
        pb.PolicyQuery(domain_id=domain),
        metadata=(("authorization", good),),
    )
    assert error_reason(error) == "ERROR_RATE_LIMITED"
    assert app.metrics.registry.get_sample_value("policyhub_rate_limited_total", {"kind": "auth_failure_peer"}) == 1


def test_a_domain_over_its_budget_is_limited_and_others_still_answer(client, server_with, domain, other_domain):
    app, channel = server_with(rate_limit_domain_per_second=0.01, rate_limit_domain_burst=3)
    policies, assignments = policy_pb2_grpc.PolicyStub(channel), assignment_pb2_grpc.AssignmentStub(channel)
    for _ in range(3):
        policies.list(pb.PolicyQuery(domain_id=domain), timeout=10)
    error = expect_error(grpc.StatusCode.RESOURCE_EXHAUSTED, assignments.list, apb.AssignmentQuery(domain_id=domain))
    assert error_reason(error) == "ERROR_RATE_LIMITED"
    assert 90 < retry_delay(error) <= 100
    assert policies.list(pb.PolicyQuery(domain_id=other_domain), timeout=10).total_count >= 0
    assert app.metrics.registry.get_sample_value("policyhub_rate_limited_total", {"kind": "domain"}) == 1
