"""Running in production: database faults (UNAVAILABLE within the deadline, health NOT_SERVING,
recovery without restart), Prometheus metrics, JSON logs with masked secrets, tracing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import grpc
import pymongo
import pytest
from conftest import BIN, free_port
from grpc_health.v1 import health_pb2, health_pb2_grpc

from policyhub._gen.spaceone.api.repository.v1 import policy_pb2 as pb
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2_grpc


def start_mongo(port: int, storage: str) -> subprocess.Popen:
    process = subprocess.Popen(
        [str(BIN / "secantusd-py"), "--host", "127.0.0.1", "--port", str(port), "--storage-path", storage],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            pymongo.MongoClient(f"mongodb://127.0.0.1:{port}", serverSelectionTimeoutMS=300).admin.command("ping")
            return process
        except pymongo.errors.PyMongoError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("secantusdb did not start")


def start_policyhub(env_extra: dict) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLICYHUB_")}
    env.update(POLICYHUB_PORT=str(port), **env_extra)
    process = subprocess.Popen(
        [sys.executable, "-m", "policyhub"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return process, port


def stop(process: subprocess.Popen) -> tuple[str, str]:
    """Stops the server; returns what it printed (stdout, stderr)."""
    process.terminate()
    try:
        out, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    return out or "", err or ""


def health(channel) -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status


def wait_for(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_database_outage_is_unavailable_then_recovers_without_restart(tmp_path):
    mongo_port = free_port()
    storage = str(tmp_path / "db")
    mongo = start_mongo(mongo_port, storage)
    server, port = start_policyhub(
        {
            "POLICYHUB_MONGODB_URI": f"mongodb://127.0.0.1:{mongo_port}",
            "POLICYHUB_DB_TIMEOUT_MS": "1500",
            "POLICYHUB_HEALTH_INTERVAL_SECONDS": "0.5",
        }
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = policy_pb2_grpc.PolicyStub(channel)
    try:
        grpc.channel_ready_future(channel).result(timeout=30)
        stub.create(pb.CreatePolicyRequest(policy_id="before", name="n", domain_id="d"), timeout=10)
        mongo.terminate()
        mongo.wait(timeout=30)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as info:
            stub.get(pb.GetRepositoryPolicyRequest(policy_id="before", domain_id="d"), timeout=8)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value.details()
        assert info.value.details().startswith("ERROR_UNAVAILABLE")
        assert time.monotonic() - started < 8
        assert wait_for(lambda: health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING, 15)
        mongo = start_mongo(mongo_port, storage)
        assert wait_for(lambda: health(channel) == health_pb2.HealthCheckResponse.SERVING, 30)
        got = stub.get(pb.GetRepositoryPolicyRequest(policy_id="before", domain_id="d"), timeout=10)
        assert got.name == "n"
    finally:
        channel.close()
        stop(server)
        mongo.terminate()
        mongo.wait(timeout=30)


def test_metrics_json_logs_and_tracing():
    metrics_port = free_port()
    server, port = start_policyhub(
        {
            "POLICYHUB_METRICS_PORT": str(metrics_port),
            "POLICYHUB_LOG_FORMAT": "json",
            "POLICYHUB_TRACING_EXPORTER": "console",
        }
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = policy_pb2_grpc.PolicyStub(channel)
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    try:
        grpc.channel_ready_future(channel).result(timeout=30)
        stub.create(
            pb.CreatePolicyRequest(policy_id="m1", name="n", domain_id="dm"),
            timeout=10,
            metadata=(("traceparent", f"00-{trace_id}-b7ad6b7169203331-01"),),
        )
        with pytest.raises(grpc.RpcError):
            stub.get(pb.GetRepositoryPolicyRequest(policy_id="nope", domain_id="dm"), timeout=10)
        for _ in range(3):
            stub.list(pb.PolicyQuery(domain_id="dm"), timeout=10)
        body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
        policy = 'grpc_service="spaceone.api.repository.v1.Policy",grpc_type="unary"'
        assert f'grpc_server_started_total{{grpc_method="create",{policy}}} 1.0' in body
        assert f'grpc_server_handled_total{{grpc_code="OK",grpc_method="create",{policy}}} 1.0' in body
        assert f'grpc_server_handled_total{{grpc_code="NOT_FOUND",grpc_method="get",{policy}}} 1.0' in body
        assert f'grpc_server_handling_seconds_count{{grpc_method="list",{policy}}} 3.0' in body
        assert f'grpc_server_msg_received_total{{grpc_method="list",{policy}}} 3.0' in body
        assert f'grpc_server_msg_sent_total{{grpc_method="list",{policy}}} 3.0' in body
        # A failed call sent no answer.
        assert f'grpc_server_msg_sent_total{{grpc_method="get",{policy}}}' not in body
        for family in ("process_cpu_seconds_total", "process_resident_memory_bytes", "python_info{"):
            assert family in body
        assert "python_gc_collections_total" in body
        assert "policyhub_index_cache_hit_ratio" in body
    finally:
        channel.close()
        out, err = stop(server)
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    audit = [line for line in lines if line.get("logger") == "policyhub.audit"]
    assert audit and audit[0]["trace_id"] == trace_id and audit[0]["domain_id"] == "dm"
    assert audit[0]["caller"] == "USER:developer" and audit[0]["method"].endswith("Policy/create")
    assert audit[0]["audit"]["transaction_id"] == trace_id
    spans = json.loads("[" + out.replace("}\n{", "},{") + "]") if out.strip() else []
    create_span = [span for span in spans if span["name"].endswith("Policy/create")]
    assert create_span and create_span[0]["context"]["trace_id"] == f"0x{trace_id}"
