"""Two server processes on one database (wire protocol): a write through one is seen by the
next check of the other, whose compiled evaluation index was already warm."""
from __future__ import annotations

import os
import subprocess
import sys

import grpc
import pytest

from conftest import free_port
from helpers import parse
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2 as apb
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2_grpc, policy_pb2


@pytest.fixture
def second_process(client):
    if client.backend != "wire":
        pytest.skip("needs a database shared between processes")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLICYHUB_")}
    env.update(POLICYHUB_PORT=str(port), POLICYHUB_MONGODB_URI=client.app.config.mongodb_uri,
               POLICYHUB_DATABASE=client.app.config.database, POLICYHUB_LOG_LEVEL="WARNING")
    process = subprocess.Popen([sys.executable, "-m", "policyhub"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=30)
        yield assignment_pb2_grpc.AssignmentStub(channel)
    finally:
        channel.close()
        process.terminate()
        process.wait(timeout=30)


def test_write_in_one_process_is_seen_by_check_in_the_other(client, second_process, domain):
    question = parse(apb.CheckRequest, {"subject": {"type": "USER", "id": "dave"}, "action": "a.read",
                                        "resource": "r/1", "domain_id": domain})
    assert second_process.check(question, timeout=10).decision == apb.CheckResult.DENY  # warms its index
    client.policy.create(policy_pb2.CreatePolicyRequest(policy_id="reader", name="r", domain_id=domain,
                                                        permissions=["a.read"]), timeout=10)
    client.assignment.create(parse(apb.CreateAssignmentRequest, {
        "subject": {"type": "USER", "id": "dave"}, "grant": {"type": "POLICY", "id": "reader"},
        "domain_id": domain}), timeout=10)
    assert second_process.check(question, timeout=10).decision == apb.CheckResult.ALLOW
    client.policy.update(parse(policy_pb2.UpdatePolicyRequest, {"policy_id": "reader", "domain_id": domain,
                                                                "permissions": ["a.write"]}), timeout=10)
    assert second_process.check(question, timeout=10).decision == apb.CheckResult.DENY
