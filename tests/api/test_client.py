"""policyhub.client (the Python SDK) against a real server: policies, assignments, check with its
reason and chain, export then import into another domain, health, errors as CallError naming
the field, the token as `authorization: Bearer`, and gRPC's own retries on UNAVAILABLE."""

from __future__ import annotations

import threading
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from policyhub.client import CallError, PolicyHub, as_dict

OPS = {
    "policy_id": "ops-servers",
    "name": "Operate servers",
    "permissions": ["inventory.Server.*"],
    "statements": [{"effect": "DENY", "actions": ["inventory.Server.delete"], "resources": ["prod/*"]}],
}


@pytest.fixture
def hub(client, domain):
    with PolicyHub(client.address, domain_id=domain, timeout=10) as hub:
        yield hub


def test_policy_create_get_list_delete(hub):
    created = hub.create_policy(OPS)
    assert (created.policy_id, created.version) == ("ops-servers", 1)
    assert as_dict(hub.get_policy("ops-servers"))["statements"][0]["effect"] == "DENY"
    listed = hub.list_policies({"filter": [{"k": "policy_id", "v": "ops", "o": "contain"}]}, exclude_managed=True)
    assert [policy.policy_id for policy in listed.results] == ["ops-servers"]
    hub.delete_policy("ops-servers")
    with pytest.raises(CallError) as missing:
        hub.get_policy("ops-servers")
    assert missing.value.code == grpc.StatusCode.NOT_FOUND
    assert hub.list_policies(exclude_managed=True).total_count == 0


def test_check_answers_the_reason_and_the_deciding_chain(hub):
    hub.create_policy(OPS)
    added = hub.add_assignments("USER", ["alice", "bob"], [("POLICY", "ops-servers")])
    assert added.changed_count == 2
    allowed = hub.check(("USER", "alice"), "inventory.Server.reboot", "prod/web1")
    assert as_dict(allowed) | {"consistency_token": ""} == {
        "decision": "ALLOW",
        "reason": "ALLOWED",
        "policy_id": "ops-servers",
        "statement_index": 1,
        "via": [{"type": "USER", "id": "alice"}],
        "consistency_token": "",
    }
    denied = hub.check(("USER", "bob"), "inventory.Server.delete", "prod/web1")
    assert (as_dict(denied)["decision"], as_dict(denied)["reason"], denied.statement_index) == (
        "DENY",
        "EXPLICIT_DENY",
        0,
    )
    assert as_dict(hub.check(("USER", "carol"), "inventory.Server.get", "x"))["reason"] == "NO_MATCHING_ALLOW"


def test_create_assignment_of_a_missing_policy_is_not_found(hub):
    with pytest.raises(CallError) as error:
        hub.create_assignment(("USER", "alice"), ("POLICY", "nobody-made-me"))
    assert error.value.code == grpc.StatusCode.NOT_FOUND


def test_bad_input_is_invalid_argument_naming_the_field(hub):
    with pytest.raises(CallError) as bad_id:
        hub.create_policy({**OPS, "policy_id": "Bad_Id"})
    assert (bad_id.value.code, bad_id.value.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["policy_id"])
    # Refused before any call: the dict does not fit the request message.
    with pytest.raises(CallError) as unknown:
        hub.create_policy({**OPS, "colour": "red"})
    assert unknown.value.code == grpc.StatusCode.INVALID_ARGUMENT and "colour" in unknown.value.message


def test_export_then_import_into_another_domain(hub, other_domain):
    hub.create_policy(OPS)
    hub.create_assignment(("USER", "alice"), ("POLICY", "ops-servers"))
    chunks = list(hub.export_domain())
    assert as_dict(chunks[0].header)["counts"] == {"policies": 1, "assignments": 1}
    dry = hub.import_domain(chunks, dry_run=True, domain_id=other_domain)
    assert dry.dry_run and (dry.policies.created, dry.assignments.created) == (1, 1)
    assert hub.list_policies(exclude_managed=True, domain_id=other_domain).total_count == 0
    imported = hub.import_domain(chunks, mode="replace", domain_id=other_domain)
    assert (imported.domain_id, imported.mode, imported.policies.created) == (other_domain, 2, 1)
    copy = hub.check(("USER", "alice"), "inventory.Server.get", "srv/1", domain_id=other_domain)
    assert (as_dict(copy)["decision"], copy.policy_id) == ("ALLOW", "ops-servers")


def test_health(hub):
    assert hub.health() == "SERVING"
    assert hub.health("spaceone.api.repository.v1.Policy") == "SERVING"


def test_token_travels_as_bearer(secure, domain):
    with PolicyHub(secure.address, token=secure.token(did=domain, rol="DOMAIN_ADMIN"), timeout=10) as hub:
        assert hub.create_policy(OPS).domain_id == domain
        assert hub.get_policy("ops-servers").policy_id == "ops-servers"
    with PolicyHub(secure.address, timeout=10) as anonymous, pytest.raises(CallError) as refused:
        anonymous.get_policy("ops-servers", domain_id=domain)
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED


class Flaky(health_pb2_grpc.HealthServicer):
    """Answers UNAVAILABLE to the first `failures` calls, then SERVING."""

    def __init__(self, failures: int):
        self.failures = failures
        self.calls = 0
        self.lock = threading.Lock()

    def Check(self, request, context):
        with self.lock:
            self.calls += 1
            failing = self.calls <= self.failures
        if failing:
            context.abort(grpc.StatusCode.UNAVAILABLE, "not yet")
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


@pytest.fixture
def flaky():
    def serve(failures: int):
        servicer = Flaky(failures)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        started.append(server)
        return servicer, f"127.0.0.1:{port}"

    started: list[grpc.Server] = []
    yield serve
    for server in started:
        server.stop(None)


def test_unavailable_is_retried_by_grpc(flaky):
    servicer, address = flaky(failures=2)
    with PolicyHub(address, timeout=10) as hub:
        assert hub.health() == "SERVING"
    assert servicer.calls == 3


def test_retries_stop_after_four_attempts(flaky):
    servicer, address = flaky(failures=10)
    with PolicyHub(address, timeout=10) as hub, pytest.raises(CallError) as error:
        hub.health()
    assert (error.value.code, error.value.message, servicer.calls) == (grpc.StatusCode.UNAVAILABLE, "not yet", 4)
