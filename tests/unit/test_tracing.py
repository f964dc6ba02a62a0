"""Tracing set-up and span status (no server): which codes make an ERROR span, where the OTLP
exporter sends (configuration keys over the standard variables), the resource, and spans
batched until shutdown arriving at an OTLP/HTTP receiver."""

from __future__ import annotations

import http.server
import threading

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.trace import StatusCode

from policyhub.config import Config
from policyhub.errors import ConfigError
from policyhub.observability.interceptor import span_status
from policyhub.observability.tracing import make_tracer_provider, otlp_protocol

CLIENT_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.CANCELLED,
}
SERVER_ERRORS = {
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.UNIMPLEMENTED,
}


def test_every_code_is_either_ok_a_client_error_or_a_server_error():
    assert {grpc.StatusCode.OK} | CLIENT_ERRORS | SERVER_ERRORS == set(grpc.StatusCode)


@pytest.mark.parametrize("code", sorted(CLIENT_ERRORS | {grpc.StatusCode.OK}, key=lambda code: code.value[0]))
def test_a_success_or_a_client_error_leaves_the_span_status_unset(code):
    assert span_status(code).status_code == StatusCode.UNSET


@pytest.mark.parametrize("code", sorted(SERVER_ERRORS, key=lambda code: code.value[0]))
def test_a_server_error_is_an_error_span_named_by_its_code(code):
    status = span_status(code)
    assert status.status_code == StatusCode.ERROR and status.description == code.name


def test_the_protocol_key_wins_over_the_standard_variables():
    env = {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}
    assert otlp_protocol(Config(tracing_exporter="otlp", otlp_protocol="http/protobuf"), env) == "http/protobuf"


def test_without_the_key_the_traces_variable_wins_over_the_general_one_and_grpc_is_the_default():
    config = Config(tracing_exporter="otlp")
    assert otlp_protocol(config, {}) == "grpc"
    assert otlp_protocol(config, {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}) == "http/protobuf"
    env = {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}
    assert otlp_protocol(config, env) == "grpc"


def test_a_bad_protocol_variable_is_a_configuration_error_naming_it():
    with pytest.raises(ConfigError) as info:
        otlp_protocol(Config(tracing_exporter="otlp"), {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    assert str(info.value) == (
        "environment variable OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' is not one of ['grpc', 'http/protobuf']"
    )


def test_the_resource_is_policyhub_unless_the_standard_variables_say_otherwise(monkeypatch):
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    assert make_tracer_provider(Config()).resource.attributes["service.name"] == "policyhub"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "policyhub-eu")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod,service.namespace=iam")
    attributes = make_tracer_provider(Config()).resource.attributes
    assert attributes["service.name"] == "policyhub-eu" and attributes["service.version"]
    assert attributes["deployment.environment"] == "prod" and attributes["service.namespace"] == "iam"


class _Receiver(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP collector: keeps each export's path, headers and decoded request."""

    received: list[tuple[str, dict[str, str], ExportTraceServiceRequest]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, dict(self.headers), ExportTraceServiceRequest.FromString(body)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    _Receiver.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], _Receiver.received
    server.shutdown()
    server.server_close()
    thread.join()


def test_spans_are_batched_and_sent_at_shutdown_where_the_keys_say(receiver, monkeypatch):
    port, received = receiver
    # The standard variables point elsewhere: the configuration keys win.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=other")
    # The batch processor's own variable: nothing leaves before shutdown.
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")
    config = Config(
        tracing_exporter="otlp",
        otlp_endpoint=f"http://127.0.0.1:{port}/",
        otlp_protocol="http/protobuf",
        otlp_headers="x-tenant=iam, x-api-key=s3cret",
    )
    provider = make_tracer_provider(config)
    with provider.get_tracer("test").start_as_current_span("spaceone.api.repository.v1.Policy/get") as span:
        span.set_attribute("rpc.system", "grpc")
        trace_id = span.get_span_context().trace_id
    assert received == []
    provider.shutdown()
    assert len(received) == 1
    path, headers, request = received[0]
    assert path == "/v1/traces"
    assert headers["x-tenant"] == "iam" and headers["x-api-key"] == "s3cret"
    [resource_spans] = request.resource_spans
    resource = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
    assert resource["service.name"] == "policyhub"
    [sent] = [span for scope in resource_spans.scope_spans for span in scope.spans]
    assert sent.name == "spaceone.api.repository.v1.Policy/get" and sent.trace_id == trace_id.to_bytes(16, "big")
    assert [(kv.key, kv.value.string_value) for kv in sent.attributes] == [("rpc.system", "grpc")]
