"""Server-level behaviour: health, reflection, ServerInfo, configuration, graceful shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace

import grpc
import pytest
from conftest import free_port
from google.protobuf import empty_pb2
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

import policyhub
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2, policy_pb2_grpc
from policyhub.api.policy_api import PolicyAPI
from policyhub.server import PolicyHubServer
from policyhub.service.policy_service import PolicyService


def test_health_serving(client):
    for service in ("", "spaceone.api.repository.v1.Policy"):
        reply = client.health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_server_info_version(client):
    assert client.server_info.get_version(empty_pb2.Empty(), timeout=10).version == policyhub.__version__


def test_reflection_lists_every_service(client):
    stub = reflection_pb2_grpc.ServerReflectionStub(client.channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert {
        "spaceone.api.repository.v1.Policy",
        "spaceone.api.repository.v1.Repository",
        "spaceone.api.core.v1.ServerInfo",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names


def _spawn(env_extra: dict, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLICYHUB_")}
    env.update(env_extra)
    return subprocess.Popen(
        [sys.executable, "-m", "policyhub", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


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


def test_sigterm_stops_the_server_cleanly():
    port = free_port()
    process = _spawn({"POLICYHUB_PORT": str(port)})
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=30)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        _, err = process.communicate()
        assert "EMBEDDED IN-MEMORY" in err and "policyhub stopped" in err
    finally:
        channel.close()
        if process.poll() is None:
            process.kill()


class SlowPolicyService:
    """Wraps the real service; holds every list call until released, so the test knows the
    calls are in flight."""

    def __init__(self, inner: PolicyService):
        self.inner = inner
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def list(self, ctx, params):
        self.entered.release()
        self.release.wait(timeout=30)
        return self.inner.list(ctx, params)


def test_stop_lets_in_flight_calls_finish_and_refuses_new_ones(client):
    """A second server on the same database, whose list calls wait until the test lets them go."""
    slow = SlowPolicyService(client.app.services.policy)
    app = replace(
        client.app,
        config=replace(client.app.config, port=free_port(), shutdown_grace_seconds=10),
        policy_api=PolicyAPI(
            slow,
            client.app.services.policy_lifecycle,
            client.app.policy_api.caller,
            client.app.config.max_message_bytes,
        ),
    )
    server = PolicyHubServer(app)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    stub = policy_pb2_grpc.PolicyStub(channel)
    futures = [stub.list.future(policy_pb2.PolicyQuery(domain_id="d-graceful"), timeout=30) for _ in range(4)]
    for _ in futures:
        assert slow.entered.acquire(timeout=10)
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    time.sleep(0.2)
    with pytest.raises(grpc.RpcError) as refused:
        stub.list(policy_pb2.PolicyQuery(domain_id="d-graceful"), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    slow.release.set()
    assert [future.result().total_count for future in futures] == [4, 4, 4, 4]
    stopper.join(timeout=30)
    channel.close()
