"""The SpaceONE listener (`spaceone_port`): reflection listing what spaceone-api 1.12 has, and
domain-less reads answered anonymously from the public catalogue (the managed policies and
those of `public_domain_id`), in development mode and with authentication on."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

import grpc
import pytest
from conftest import free_port
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from helpers import as_dict, expect_error, parse
from policyhub._gen.grpc.reflection.v1 import reflection_pb2 as reflection_v1_pb2
from policyhub._gen.grpc.reflection.v1 import reflection_pb2_grpc as reflection_v1_pb2_grpc
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2 as pb
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2_grpc, repository_pb2_grpc
from policyhub._gen.spaceone.api.repository.v1 import repository_pb2 as rpb
from policyhub.bootstrap import build_application
from policyhub.server import PolicyHubServer

PUBLIC_DOMAIN = f"domain-public-{uuid.uuid4().hex[:8]}"
MANAGED = "managed-read-only"
SPACEONE_SERVICES = {
    "spaceone.api.repository.v1.Policy",
    "spaceone.api.repository.v1.Repository",
    "spaceone.api.core.v1.ServerInfo",
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
}


@dataclass
class Listener:
    channel: grpc.Channel
    policy: policy_pb2_grpc.PolicyStub
    repository: repository_pb2_grpc.RepositoryStub
    main: grpc.Channel


def _serve(config, database):
    server = PolicyHubServer(build_application(config, database))
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.spaceone_port}")
    main = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    return server, Listener(
        channel, policy_pb2_grpc.PolicyStub(channel), repository_pb2_grpc.RepositoryStub(channel), main
    )


@pytest.fixture(scope="module", params=["development", "authenticated"])
def listener(request, client):
    """A listener in development mode, and one with authentication on (`secure`'s keys)."""
    base = client.app.config if request.param == "development" else request.getfixturevalue("secure").app.config
    config = replace(base, port=free_port(), spaceone_port=free_port(), public_domain_id=PUBLIC_DOMAIN)
    server, listener = _serve(config, client.app.database)
    listener.mode = request.param
    yield listener
    listener.channel.close()
    listener.main.close()
    server.stop(grace=1)


def _create(client, domain, policy_id):
    client.policy.create(
        parse(pb.CreatePolicyRequest, {"policy_id": policy_id, "name": policy_id, "domain_id": domain}), timeout=10
    )


def _reflected(channel) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    (response,) = stub.ServerReflectionInfo(iter([request]), timeout=10)
    return {service.name for service in response.list_services_response.service}


def test_reflection_lists_only_what_spaceone_api_has(listener):
    assert _reflected(listener.channel) == SPACEONE_SERVICES
    # v1 is served (buf curl asks it first) and lists the same; spaceone-core has no v1 stubs to
    # import, so it is not listed.
    v1 = reflection_v1_pb2_grpc.ServerReflectionStub(listener.channel)
    (answer,) = v1.ServerReflectionInfo(iter([reflection_v1_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    assert {service.name for service in answer.list_services_response.service} == SPACEONE_SERVICES
    described = reflection_v1_pb2.ServerReflectionRequest(file_containing_symbol="spaceone.api.repository.v1.Policy")
    (answer,) = v1.ServerReflectionInfo(iter([described]), timeout=10)
    file = descriptor_pb2.FileDescriptorProto.FromString(answer.file_descriptor_response.file_descriptor_proto[0])
    assert "Statement" not in {m.name for m in file.message_type}
    # The main port keeps full reflection.
    assert "spaceone.api.repository.v1.ApiKey" in _reflected(listener.main)


def test_reflected_policy_file_has_only_spaceones_messages(listener):
    stub = reflection_pb2_grpc.ServerReflectionStub(listener.channel)
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol="spaceone.api.repository.v1.Policy")
    (response,) = stub.ServerReflectionInfo(iter([request]), timeout=10)
    file = descriptor_pb2.FileDescriptorProto.FromString(response.file_descriptor_response.file_descriptor_proto[0])
    assert "Statement" not in {m.name for m in file.message_type}
    assert {m.name for m in file.service[0].method} >= {"create", "update", "delete", "get", "list", "stat"}
    info = next(m for m in file.message_type if m.name == "PolicyInfo")
    assert "statements" not in {f.name for f in info.field} and "policy_id" in {f.name for f in info.field}


def test_anonymous_get_and_list_of_a_managed_policy(listener):
    got = listener.policy.get(pb.GetRepositoryPolicyRequest(policy_id=MANAGED, only=["policy_id", "name"]), timeout=10)
    assert (got.policy_id, got.name) == (MANAGED, "Read only")
    listed = listener.policy.list(
        parse(pb.PolicyQuery, {"query": {"filter": [{"k": "policy_id", "v": MANAGED, "o": "eq"}]}}), timeout=10
    )
    assert [p.policy_id for p in listed.results] == [MANAGED] and listed.total_count == 1


def test_anonymous_reads_see_the_public_domain_never_a_tenant(listener, client, domain):
    public_id = f"pub-{uuid.uuid4().hex[:8]}"
    _create(client, PUBLIC_DOMAIN, public_id)
    _create(client, domain, "tenant-secret")
    got = listener.policy.get(pb.GetRepositoryPolicyRequest(policy_id=public_id), timeout=10)
    assert got.domain_id == PUBLIC_DOMAIN
    expect_error(
        grpc.StatusCode.NOT_FOUND, listener.policy.get, pb.GetRepositoryPolicyRequest(policy_id="tenant-secret")
    )
    # SpaceONE's remote protocol: the local repository, then its policies.
    (local,) = listener.repository.list(rpb.RepositoryQuery(repository_type="local"), timeout=10).results
    listed = listener.policy.list(pb.PolicyQuery(repository_id=local.repository_id), timeout=10)
    ids = {p.policy_id for p in listed.results}
    assert public_id in ids and "tenant-secret" not in ids
    assert {p.domain_id for p in listed.results} == {PUBLIC_DOMAIN}
    everything = listener.policy.list(pb.PolicyQuery(query={"page": {"limit": 1000}}), timeout=10)
    # The managed policies (no domain) and the public domain's, nobody else's.
    assert {(p.domain_id, p.is_managed) for p in everything.results} == {("", True), (PUBLIC_DOMAIN, False)}


def test_anonymous_reads_never_see_deleted_policies(listener, client):
    policy_id = f"pub-{uuid.uuid4().hex[:8]}"
    _create(client, PUBLIC_DOMAIN, policy_id)
    client.policy.delete(pb.PolicyRequest(policy_id=policy_id, domain_id=PUBLIC_DOMAIN), timeout=10)
    expect_error(
        grpc.StatusCode.NOT_FOUND,
        listener.policy.get,
        pb.GetRepositoryPolicyRequest(policy_id=policy_id, include_deleted=True),
    )
    listed = listener.policy.list(pb.PolicyQuery(policy_id=policy_id, include_deleted=True), timeout=10)
    assert listed.total_count == 0


def test_anonymous_repository_reads_see_the_built_in_repositories_only(listener):
    listed = listener.repository.list(rpb.RepositoryQuery(), timeout=10)
    assert {r.repository_id for r in listed.results} == {"repo-managed", "repo-local"}
    expect_error(
        grpc.StatusCode.NOT_FOUND, listener.repository.get, rpb.GetRepositoryRequest(repository_id="repo-elsewhere")
    )
    assert listener.repository.get(rpb.GetRepositoryRequest(repository_id="repo-local"), timeout=10).name


def test_anonymous_writes_and_other_calls_are_refused(listener):
    # Development mode trusts a named domain; without one, only the public reads are served.
    code = grpc.StatusCode.UNAUTHENTICATED if listener.mode == "authenticated" else grpc.StatusCode.PERMISSION_DENIED
    expect_error(code, listener.policy.create, pb.CreatePolicyRequest(policy_id="anon", name="anon"))
    expect_error(code, listener.policy.delete, pb.PolicyRequest(policy_id=MANAGED))
    expect_error(code, listener.policy.stat, parse(pb.PolicyStatQuery, {"query": {"distinct": "policy_id"}}))
    expect_error(
        code,
        listener.repository.register,
        rpb.CreateRepositoryRequest(name="anon", repository_type="remote", endpoint="grpc://127.0.0.1:1"),
    )


def test_calls_with_a_domain_follow_the_normal_rules(listener, client, domain):
    _create(client, domain, "tenant-own")
    request = pb.GetRepositoryPolicyRequest(policy_id="tenant-own", domain_id=domain)
    if listener.mode == "authenticated":
        expect_error(grpc.StatusCode.UNAUTHENTICATED, listener.policy.get, request)
    else:
        assert listener.policy.get(request, timeout=10).domain_id == domain


def test_the_main_port_still_refuses_domainless_calls(listener):
    stub = policy_pb2_grpc.PolicyStub(listener.main)
    code = grpc.StatusCode.UNAUTHENTICATED if listener.mode == "authenticated" else grpc.StatusCode.INVALID_ARGUMENT
    expect_error(code, stub.get, pb.GetRepositoryPolicyRequest(policy_id=MANAGED))
    expect_error(code, stub.list, pb.PolicyQuery())


def test_anonymous_reads_are_rate_limited_per_peer(client):
    config = replace(
        client.app.config,
        port=free_port(),
        spaceone_port=free_port(),
        rate_limit_domain_per_second=0.001,
        rate_limit_domain_burst=2,
    )
    server, listener = _serve(config, client.app.database)
    try:
        request = pb.GetRepositoryPolicyRequest(policy_id=MANAGED)
        listener.policy.get(request, timeout=10)
        listener.policy.get(request, timeout=10)
        expect_error(grpc.StatusCode.RESOURCE_EXHAUSTED, listener.policy.get, request)
        # A domain's own calls keep their budget.
        domain_request = pb.GetRepositoryPolicyRequest(policy_id=MANAGED, domain_id="domain-limited")
        assert as_dict(listener.policy.get(domain_request, timeout=10))["policy_id"] == MANAGED
    finally:
        listener.channel.close()
        listener.main.close()
        server.stop(grace=1)
