"""Server-level behaviour: health, reflection, ServerInfo, configuration, graceful shutdown."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import grpc
import pytest
from google.protobuf import empty_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

import policyhub
from conftest import free_port
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2, policy_pb2_grpc


def test_health_serving(client):
    for service in ("", "spaceone.api.repository.v1.Policy"):
        reply = client.health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_server_info_version(client):
    assert client.server_info.get_version(empty_pb2.Empty(), timeout=10).version == policyhub.__version__


def test_reflection_lists_every_service(client):
    stub = reflection_pb2_grpc.ServerReflectionStub(client.channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                          timeout=10)
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert {"spaceone.api.repository.v1.Policy", "spaceone.api.repository.v1.Repository",
            "spaceone.api.core.v1.ServerInfo", "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection"} <= names


def _spawn(env_extra: dict, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLICYHUB_")}
    env.update(env_extra)
    return subprocess.Popen([sys.executable, "-m", "policyhub", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_unknown_config_key_stops_start_with_a_clear_error(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("port: 1\nmongo_url: x\n")
    process = _spawn({}, "--config", str(config))
    _, err = process.communicate(timeout=30)
    assert process.returncode == 2
    assert "unknown keys ['mongo_url']" in err


def test_unknown_env_var_stops_start_with_a_clear_error():
    process = _spawn({"POLICYHUB_PROT": "1"})
    _, err = process.communicate(timeout=30)
    assert process.returncode == 2 and "POLICYHUB_PROT" in err


def test_sigterm_lets_in_flight_calls_finish():
    port = free_port()
    process = _spawn({"POLICYHUB_PORT": str(port), "POLICYHUB_SHUTDOWN_GRACE_SECONDS": "20"})
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=30)
        stub = policy_pb2_grpc.PolicyStub(channel)
        # A list with a large page of a big domain keeps the server busy while SIGTERM arrives.
        for index in range(200):
            stub.create(policy_pb2.CreatePolicyRequest(policy_id=f"p{index}", name="n", domain_id="d",
                                                       permissions=[f"a.{i}" for i in range(200)]), timeout=10)
        futures = [stub.list.future(policy_pb2.PolicyQuery(domain_id="d"), timeout=30) for _ in range(8)]
        time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        results = [future.result() for future in futures]
        assert all(result.total_count == 204 for result in results)
        assert process.wait(timeout=30) == 0
        _, err = process.communicate()
        assert "EMBEDDED IN-MEMORY" in err and "stopped" in err
    finally:
        channel.close()
        if process.poll() is None:
            process.kill()
