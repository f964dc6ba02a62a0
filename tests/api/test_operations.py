"""Running in production: database faults (UNAVAILABLE within the deadline, health NOT_SERVING,
recovery without restart), Prometheus metrics, JSON and text logs with the call's fields,
tracing to the console and over OTLP to a collector."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from concurrent import futures

import grpc
import pymongo
import pytest
from conftest import BIN, free_port
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

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


class _Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC collector: keeps every export and the metadata it came with."""

    def __init__(self):
        self.exports: list[tuple[dict[str, str], trace_service_pb2.ExportTraceServiceRequest]] = []

    def Export(self, request, context):
        self.exports.append((dict(context.invocation_metadata()), request))
        return trace_service_pb2.ExportTraceServiceResponse()


def test_spans_leave_over_otlp_and_text_logs_carry_the_call_fields():
    collector = _Collector()
    receiver = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, receiver)
    collector_port = receiver.add_insecure_port("127.0.0.1:0")
    receiver.start()
    server, port = start_policyhub(
        {
            "POLICYHUB_TRACING_EXPORTER": "otlp",
            "POLICYHUB_LOG_FORMAT": "text",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector_port}",
            "OTEL_EXPORTER_OTLP_HEADERS": "x-collector-token=abc",
            "OTEL_SERVICE_NAME": "policyhub-otlp-test",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=ci",
        }
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = policy_pb2_grpc.PolicyStub(channel)
    trace_id, missing_trace_id = "4bf92f3577b34da6a3ce929d0e0e4736", "5bf92f3577b34da6a3ce929d0e0e4737"
    try:
        grpc.channel_ready_future(channel).result(timeout=30)
        stub.create(
            pb.CreatePolicyRequest(policy_id="o1", name="n", domain_id="d-otlp"),
            timeout=10,
            metadata=(("traceparent", f"00-{trace_id}-00f067aa0ba902b7-01"),),
        )
        with pytest.raises(grpc.RpcError) as info:
            stub.get(
                pb.GetRepositoryPolicyRequest(policy_id="nope", domain_id="d-otlp"),
                timeout=10,
                metadata=(("traceparent", f"00-{missing_trace_id}-00f067aa0ba902b7-01"),),
            )
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        channel.close()
        _, err = stop(server)
        receiver.stop(0)
    # Batched: everything arrived when the server stopped.
    assert server.returncode == 0, err
    assert collector.exports and all(headers["x-collector-token"] == "abc" for headers, _ in collector.exports)
    spans = {}
    for _, request in collector.exports:
        for resource_spans in request.resource_spans:
            resource = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
            assert resource["service.name"] == "policyhub-otlp-test"
            assert resource["deployment.environment"] == "ci"
            for scope in resource_spans.scope_spans:
                spans.update({span.trace_id.hex(): span for span in scope.spans})
    created, missing = spans[trace_id], spans[missing_trace_id]
    assert created.name == "spaceone.api.repository.v1.Policy/create"
    assert created.kind == trace_pb2.Span.SPAN_KIND_SERVER and created.parent_span_id.hex() == "00f067aa0ba902b7"
    attributes = {kv.key: kv.value for kv in missing.attributes}
    assert attributes["rpc.system"].string_value == "grpc" and attributes["rpc.method"].string_value == "get"
    assert attributes["rpc.service"].string_value == "spaceone.api.repository.v1.Policy"
    assert attributes["rpc.grpc.status_code"].int_value == grpc.StatusCode.NOT_FOUND.value[0]
    assert attributes["policyhub.domain_id"].string_value == "d-otlp"
    assert missing.status.code == trace_pb2.Status.STATUS_CODE_UNSET
    audit = [line for line in err.splitlines() if " INFO policyhub.audit [" in line]
    assert audit, err
    fields = dict(pair.split("=", 1) for pair in audit[0].split(" [", 1)[1].split("]: ", 1)[0].split(" "))
    assert fields == {
        "trace_id": trace_id,
        "method": "/spaceone.api.repository.v1.Policy/create",
        "domain_id": "d-otlp",
        "caller": "USER:developer",
    }
