"""Server-level behaviour: health, reflection, ServerInfo, configuration, graceful shutdown."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace

import grpc
import pytest
from conftest import BIN, free_port
from google.protobuf import descriptor_pb2, empty_pb2
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

import policyhub
from policyhub._gen.grpc.reflection.v1 import reflection_pb2 as reflection_v1_pb2
from policyhub._gen.grpc.reflection.v1 import reflection_pb2_grpc as reflection_v1_pb2_grpc
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
        "grpc.reflection.v1.ServerReflection",
    } <= names


def test_reflection_v1_answers_as_v1alpha_does(client):
    v1 = reflection_v1_pb2_grpc.ServerReflectionStub(client.channel)
    v1alpha = reflection_pb2_grpc.ServerReflectionStub(client.channel)
    requests = [
        {"list_services": ""},
        {"file_containing_symbol": "spaceone.api.repository.v1.Bulk"},
        {"file_containing_symbol": "grpc.reflection.v1.ServerReflection"},
        {"file_by_filename": "no/such.proto"},
    ]
    answered = list(
        v1.ServerReflectionInfo(iter([reflection_v1_pb2.ServerReflectionRequest(**r) for r in requests]), timeout=10)
    )
    expected = list(
        v1alpha.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(**r) for r in requests]), timeout=10)
    )
    assert [a.SerializeToString() for a in answered] == [e.SerializeToString() for e in expected]
    listed, bulk, itself, missing = answered
    assert "spaceone.api.repository.v1.Bulk" in {s.name for s in listed.list_services_response.service}
    file = descriptor_pb2.FileDescriptorProto.FromString(bulk.file_descriptor_response.file_descriptor_proto[0])
    assert file.name == "spaceone/api/repository/v1/bulk.proto"
    own = descriptor_pb2.FileDescriptorProto.FromString(itself.file_descriptor_response.file_descriptor_proto[0])
    assert (own.package, own.service[0].name) == ("grpc.reflection.v1", "ServerReflection")
    assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def test_buf_curl_asking_reflection_v1_only(client, domain):
    """buf curl, restricted to reflection v1, lists the services and calls a method it learnt from it."""
    base = [str(BIN / "buf"), "curl", "--protocol", "grpc", "--http2-prior-knowledge", "--reflect-protocol", "grpc-v1"]
    listed = subprocess.run(
        [*base, "--list-services", f"http://{client.address}"], capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    assert {"spaceone.api.repository.v1.Policy", "grpc.reflection.v1.ServerReflection"} <= set(listed.stdout.split())
    got = subprocess.run(
        [
            *base,
            "-d",
            json.dumps({"policy_id": "managed-read-only", "domain_id": domain}),
            f"http://{client.address}/spaceone.api.repository.v1.Policy/get",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["policyId"] == "managed-read-only"


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


def test_version():
    for command in ([sys.executable, "-m", "policyhub", "--version"], [str(BIN / "policyhub"), "--version"]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
        assert (result.returncode, result.stdout) == (0, f"policyhub {policyhub.__version__}\n")


def _start_error(env_extra: dict, *args: str) -> str:
    """The one line a server that cannot start prints (exit 1), logs quiet."""
    process = _spawn({"POLICYHUB_LOG_LEVEL": "ERROR", **env_extra}, *args)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1, err
    [line] = err.splitlines()
    return line


def test_a_port_in_use_is_one_line():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        line = _start_error({"POLICYHUB_PORT": str(port)})
    assert line == f"policyhub: cannot start: cannot listen on 127.0.0.1:{port}: Address already in use"


def test_an_unreadable_key_file_is_one_line(tmp_path):
    keys = {"POLICYHUB_JWT_ISSUER": "https://idp.test", "POLICYHUB_JWT_AUDIENCE": "policyhub"}
    missing = _start_error({**keys, "POLICYHUB_JWKS_FILE": str(tmp_path / "missing.json"), "POLICYHUB_PORT": "0"})
    assert missing == (
        f"policyhub: cannot start: config key jwks_file: key file {tmp_path / 'missing.json'}: "
        "cannot read (No such file or directory)"
    )
    directory = _start_error({**keys, "POLICYHUB_JWKS_FILE": str(tmp_path), "POLICYHUB_PORT": "0"})
    assert directory.startswith(f"policyhub: cannot start: config key jwks_file: key file {tmp_path}: ")


def test_an_unreachable_database_is_one_line_within_its_timeout():
    closed = free_port()
    line = _start_error(
        {
            "POLICYHUB_MONGODB_URI": f"mongodb://user:secret@127.0.0.1:{closed}/",
            "POLICYHUB_DB_TIMEOUT_MS": "500",
            "POLICYHUB_WORKERS": "1",
            "POLICYHUB_PORT": "0",
        }
    )
    assert line == (
        f"policyhub: cannot start: database mongodb://127.0.0.1:{closed}/ did not answer within db_timeout_ms (500 ms)"
    )


def test_a_malformed_database_uri_is_one_line():
    line = _start_error({"POLICYHUB_MONGODB_URI": "mongodb://127.0.0.1:1/?colour=red", "POLICYHUB_WORKERS": "1"})
    assert line.startswith("policyhub: cannot start: config key mongodb_uri: Unknown option: colour.")


def test_sigterm_stops_the_server_cleanly():
    """`policyhub serve`, with the command-line client's variables set in the same shell (not settings)."""
    port = free_port()
    process = _spawn(
        {"POLICYHUB_PORT": str(port), "POLICYHUB_ENDPOINT": "127.0.0.1:1", "POLICYHUB_TOKEN": "x"}, "serve"
    )
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
