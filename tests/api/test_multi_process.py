"""Two server processes on one database (wire protocol): a write through one is seen by the
next check of the other, whose compiled evaluation index was already warm, and by a watcher of
the change log on the other."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import grpc
import pytest
from conftest import free_port

from helpers import parse
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2 as apb
from policyhub._gen.spaceone.api.repository.v1 import (
    assignment_pb2_grpc,
    change_pb2,
    change_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
)


@pytest.fixture
def second_process(client):
    if client.backend != "wire":
        pytest.skip("needs a database shared between processes")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLICYHUB_")}
    env.update(
        POLICYHUB_PORT=str(port),
        POLICYHUB_MONGODB_URI=client.app.config.mongodb_uri,
        POLICYHUB_DATABASE=client.app.config.database,
        POLICYHUB_LOG_LEVEL="WARNING",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "policyhub"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=30)
        yield SimpleNamespace(
            check=assignment_pb2_grpc.AssignmentStub(channel).check,
            policy=policy_pb2_grpc.PolicyStub(channel),
            change=change_pb2_grpc.ChangeStub(channel),
        )
    finally:
        channel.close()
        process.terminate()
        process.wait(timeout=30)


def test_write_in_one_process_is_seen_by_check_in_the_other(client, second_process, domain):
    question = parse(
        apb.CheckRequest,
        {"subject": {"type": "USER", "id": "dave"}, "action": "a.read", "resource": "r/1", "domain_id": domain},
    )
    assert second_process.check(question, timeout=10).decision == apb.CheckResult.DENY  # warms its index
    client.policy.create(
        policy_pb2.CreatePolicyRequest(policy_id="reader", name="r", domain_id=domain, permissions=["a.read"]),
        timeout=10,
    )
    client.assignment.create(
        parse(
            apb.CreateAssignmentRequest,
            {
                "subject": {"type": "USER", "id": "dave"},
                "grant": {"type": "POLICY", "id": "reader"},
                "domain_id": domain,
            },
        ),
        timeout=10,
    )
    assert second_process.check(question, timeout=10).decision == apb.CheckResult.ALLOW
    client.policy.update(
        parse(policy_pb2.UpdatePolicyRequest, {"policy_id": "reader", "domain_id": domain, "permissions": ["a.write"]}),
        timeout=10,
    )
    assert second_process.check(question, timeout=10).decision == apb.CheckResult.DENY


def test_write_in_one_process_is_seen_by_get_and_list_in_the_other(client, second_process, domain):
    client.policy.create(policy_pb2.CreatePolicyRequest(policy_id="seen", name="v1", domain_id=domain), timeout=10)
    assert (
        second_process.policy.get(
            policy_pb2.GetRepositoryPolicyRequest(policy_id="seen", domain_id=domain), timeout=10
        ).name
        == "v1"
    )
    client.policy.update(policy_pb2.UpdatePolicyRequest(policy_id="seen", name="v2", domain_id=domain), timeout=10)
    listed = second_process.policy.list(policy_pb2.PolicyQuery(domain_id=domain, exclude_managed=True), timeout=10)
    assert [(p.policy_id, p.name) for p in listed.results] == [("seen", "v2")]


def test_concurrent_creates_of_one_id_through_both_processes_give_one_success(client, second_process, domain):
    stubs = [client.policy, second_process.policy] * 4

    def create(index: int):
        try:
            stubs[index].create(
                policy_pb2.CreatePolicyRequest(policy_id="race", name=f"from-{index}", domain_id=domain), timeout=20
            )
            return grpc.StatusCode.OK
        except grpc.RpcError as error:
            return error.code()

    with ThreadPoolExecutor(len(stubs)) as pool:
        codes = list(pool.map(create, range(len(stubs))))
    assert codes.count(grpc.StatusCode.OK) == 1
    assert codes.count(grpc.StatusCode.ALREADY_EXISTS) == len(stubs) - 1


def test_a_watcher_on_one_process_sees_the_writes_made_through_the_other(client, second_process, domain):
    seen = []
    call = second_process.change.watch(change_pb2.WatchChangesRequest(domain_id=domain), timeout=60)
    try:
        first = next(call)
        assert first.HasField("heartbeat")  # caught up: the watch is live
        for i in range(3):
            client.policy.create(
                policy_pb2.CreatePolicyRequest(policy_id=f"p{i}", name="p", domain_id=domain), timeout=10
            )
        client.policy.delete(policy_pb2.PolicyRequest(policy_id="p1", domain_id=domain), timeout=10)
        second_process.policy.create(
            policy_pb2.CreatePolicyRequest(policy_id="theirs", name="t", domain_id=domain), timeout=10
        )
        for message in call:
            if message.HasField("change"):
                seen.append(message.change)
            if len(seen) == 5:
                break
    finally:
        call.cancel()
    operation = change_pb2.ChangeInfo.Operation
    assert [(c.id, operation.Name(c.operation)) for c in seen] == [
        ("p0", "CREATE"),
        ("p1", "CREATE"),
        ("p2", "CREATE"),
        ("p1", "DELETE"),
        ("theirs", "CREATE"),
    ]
    # both processes list the same log
    listed = client.change.list(change_pb2.ChangeQuery(domain_id=domain), timeout=10).results
    assert [c.continuation_token for c in listed] == [c.continuation_token for c in seen]
