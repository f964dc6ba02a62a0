"""Telemetry of calls through the public gRPC API (both backends): each RPC's span, with the
semantic-convention attributes, continuing the caller's `traceparent` and an ERROR status only
when the server failed; the gRPC server metrics of unary and streaming calls."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from types import SimpleNamespace

import grpc
import pytest
from conftest import free_port
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from helpers import bulk_stream, expect_error
from policyhub._gen.spaceone.api.repository.v1 import (
    bulk_pb2,
    bulk_pb2_grpc,
    change_pb2,
    change_pb2_grpc,
    policy_pb2_grpc,
)
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2 as pb
from policyhub.bootstrap import build_application
from policyhub.server import PolicyHubServer

POLICY = "spaceone.api.repository.v1.Policy"
BULK = "spaceone.api.repository.v1.Bulk"
CHANGE = "spaceone.api.repository.v1.Change"


@pytest.fixture(scope="module")
def traced(client):
    """A server of its own on `client`'s database, whose spans land in memory."""
    app = build_application(replace(client.app.config, port=free_port()), client.app.database)
    spans = InMemorySpanExporter()
    app.tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    server = PolicyHubServer(app)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    yield SimpleNamespace(
        app=app,
        spans=spans,
        policy=policy_pb2_grpc.PolicyStub(channel),
        bulk=bulk_pb2_grpc.BulkStub(channel),
        change=change_pb2_grpc.ChangeStub(channel),
        health=health_pb2_grpc.HealthStub(channel),
        reflection=reflection_pb2_grpc.ServerReflectionStub(channel),
    )
    channel.close()
    server.stop(grace=1)


def traceparent() -> tuple[str, str, tuple[tuple[str, str]]]:
    trace_id, span_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    return trace_id, span_id, (("traceparent", f"00-{trace_id}-{span_id}-01"),)


def span_of(traced, trace_id: str):
    """The one server span of the trace `trace_id`."""
    found = [span for span in traced.spans.get_finished_spans() if format(span.context.trace_id, "032x") == trace_id]
    assert len(found) == 1, [span.name for span in found]
    return found[0]


def sample(traced, name: str, **labels: str) -> float:
    return traced.app.metrics.registry.get_sample_value(name, labels) or 0.0


def rpc(service: str, method: str, kind: str = "unary") -> dict[str, str]:
    return {"grpc_service": service, "grpc_method": method, "grpc_type": kind}


def test_a_call_continues_the_callers_trace_with_the_semantic_convention_attributes(traced, domain):
    trace_id, parent_id, metadata = traceparent()
    traced.policy.create(pb.CreatePolicyRequest(policy_id="p", name="n", domain_id=domain), metadata=metadata)
    span = span_of(traced, trace_id)
    assert span.name == f"{POLICY}/create" and span.kind == SpanKind.SERVER
    assert span.parent is not None and format(span.parent.span_id, "016x") == parent_id and span.parent.is_remote
    assert span.status.status_code == StatusCode.UNSET
    attributes = dict(span.attributes)
    assert {key: attributes[key] for key in ("rpc.system", "rpc.service", "rpc.method", "rpc.grpc.status_code")} == {
        "rpc.system": "grpc",
        "rpc.service": POLICY,
        "rpc.method": "create",
        "rpc.grpc.status_code": 0,
    }
    assert attributes["policyhub.domain_id"] == domain and attributes["policyhub.caller"] == "USER:developer"
    assert span.resource.attributes["service.name"] == "policyhub"


@pytest.mark.parametrize(
    "code, request_of",
    [
        (grpc.StatusCode.NOT_FOUND, lambda domain: pb.GetRepositoryPolicyRequest(policy_id="nope", domain_id=domain)),
        (
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda domain: pb.GetRepositoryPolicyRequest(policy_id="", domain_id=domain),
        ),
        (grpc.StatusCode.INVALID_ARGUMENT, lambda domain: pb.GetRepositoryPolicyRequest(policy_id="p", domain_id="")),
    ],
    ids=["not_found", "invalid_policy_id", "no_domain"],
)
def test_a_client_error_is_recorded_on_the_span_but_is_no_error_span(traced, domain, code, request_of):
    trace_id, _, metadata = traceparent()
    expect_error(code, traced.policy.get, request_of(domain), metadata=metadata)
    span = span_of(traced, trace_id)
    assert span.attributes["rpc.grpc.status_code"] == code.value[0]
    assert span.status.status_code == StatusCode.UNSET


def test_an_already_exists_is_no_error_span_either(traced, domain):
    request = pb.CreatePolicyRequest(policy_id="twice", name="n", domain_id=domain)
    traced.policy.create(request, timeout=10)
    trace_id, _, metadata = traceparent()
    expect_error(grpc.StatusCode.ALREADY_EXISTS, traced.policy.create, request, metadata=metadata)
    span = span_of(traced, trace_id)
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.ALREADY_EXISTS.value[0]
    assert span.status.status_code == StatusCode.UNSET


def test_a_server_failure_is_an_error_span(traced, domain, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(traced.app.services.policy, "get", broken)
    trace_id, _, metadata = traceparent()
    before = sample(traced, "grpc_server_handled_total", **rpc(POLICY, "get"), grpc_code="INTERNAL")
    request = pb.GetRepositoryPolicyRequest(policy_id="p", domain_id=domain)
    expect_error(grpc.StatusCode.INTERNAL, traced.policy.get, request, metadata=metadata)
    span = span_of(traced, trace_id)
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INTERNAL.value[0]
    assert span.status.status_code == StatusCode.ERROR and span.status.description == "INTERNAL"
    after = sample(traced, "grpc_server_handled_total", **rpc(POLICY, "get"), grpc_code="INTERNAL")
    assert after == before + 1


def test_unary_calls_are_counted_by_code_with_one_message_each_way(traced, domain):
    labels = rpc(POLICY, "update")
    before = {
        name: sample(traced, name, **labels)
        for name in ("grpc_server_started_total", "grpc_server_msg_received_total", "grpc_server_msg_sent_total")
    }
    handled_ok = sample(traced, "grpc_server_handled_total", **labels, grpc_code="OK")
    handled_missing = sample(traced, "grpc_server_handled_total", **labels, grpc_code="NOT_FOUND")
    timed = sample(traced, "grpc_server_handling_seconds_count", **labels)
    traced.policy.create(pb.CreatePolicyRequest(policy_id="u", name="n", domain_id=domain), timeout=10)
    traced.policy.update(pb.UpdatePolicyRequest(policy_id="u", name="m", domain_id=domain), timeout=10)
    expect_error(
        grpc.StatusCode.NOT_FOUND,
        traced.policy.update,
        pb.UpdatePolicyRequest(policy_id="missing", name="m", domain_id=domain),
    )
    assert sample(traced, "grpc_server_started_total", **labels) == before["grpc_server_started_total"] + 2
    assert sample(traced, "grpc_server_msg_received_total", **labels) == before["grpc_server_msg_received_total"] + 2
    # The failed call sent no answer.
    assert sample(traced, "grpc_server_msg_sent_total", **labels) == before["grpc_server_msg_sent_total"] + 1
    assert sample(traced, "grpc_server_handled_total", **labels, grpc_code="OK") == handled_ok + 1
    assert sample(traced, "grpc_server_handled_total", **labels, grpc_code="NOT_FOUND") == handled_missing + 1
    assert sample(traced, "grpc_server_handling_seconds_count", **labels) == timed + 2


def test_streams_count_each_message_and_span_the_whole_call(traced, domain, other_domain):
    for policy_id in ("s1", "s2"):
        traced.policy.create(pb.CreatePolicyRequest(policy_id=policy_id, name="n", domain_id=domain), timeout=10)
    export, imports = rpc(BULK, "export_domain", "server_stream"), rpc(BULK, "import_domain", "client_stream")
    sent = sample(traced, "grpc_server_msg_sent_total", **export)
    received = sample(traced, "grpc_server_msg_received_total", **imports)
    trace_id, _, metadata = traceparent()
    request = bulk_pb2.ExportDomainRequest(domain_id=domain)
    messages = list(traced.bulk.export_domain(request, metadata=metadata, timeout=30))
    span = span_of(traced, trace_id)
    assert span.name == f"{BULK}/export_domain" and span.attributes["rpc.grpc.status_code"] == 0
    assert span.attributes["policyhub.domain_id"] == domain
    assert sample(traced, "grpc_server_msg_sent_total", **export) == sent + len(messages)
    assert sample(traced, "grpc_server_handled_total", **export, grpc_code="OK") >= 1

    items = [{"policy": {"policy_id": f"i{n}", "name": "n"}} for n in range(5)]
    stream = list(bulk_stream(other_domain, items, per_message=2))
    traced.bulk.import_domain(iter(stream), timeout=30)
    assert sample(traced, "grpc_server_msg_received_total", **imports) == received + len(stream)
    assert sample(traced, "grpc_server_msg_sent_total", **imports) >= 1


def watch_ended(traced, code: grpc.StatusCode, before: float) -> None:
    labels = rpc(CHANGE, "watch", "server_stream")
    deadline = time.monotonic() + 30
    while sample(traced, "grpc_server_handled_total", **labels, grpc_code=code.name) == before:
        assert time.monotonic() < deadline, f"the server never counted the watch as {code.name}"
        time.sleep(0.05)


def test_a_caller_that_leaves_a_watch_ends_it_cancelled_which_is_no_error_span(traced, domain):
    traced.policy.create(pb.CreatePolicyRequest(policy_id="w", name="n", domain_id=domain), timeout=10)
    cancelled = sample(
        traced, "grpc_server_handled_total", **rpc(CHANGE, "watch", "server_stream"), grpc_code="CANCELLED"
    )
    trace_id, _, metadata = traceparent()
    call = traced.change.watch(change_pb2.WatchChangesRequest(domain_id=domain), metadata=metadata, timeout=60)
    assert next(call).HasField("change")
    call.cancel()
    watch_ended(traced, grpc.StatusCode.CANCELLED, cancelled)
    span = span_of(traced, trace_id)
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.CANCELLED.value[0]
    assert span.status.status_code == StatusCode.UNSET


def test_health_checks_are_counted_but_not_traced(traced):
    labels = rpc("grpc.health.v1.Health", "Check")
    before = sample(traced, "grpc_server_handled_total", **labels, grpc_code="OK")
    spans_before = len(traced.spans.get_finished_spans())
    traced.health.Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert sample(traced, "grpc_server_handled_total", **labels, grpc_code="OK") == before + 1
    assert not [span for span in traced.spans.get_finished_spans()[spans_before:] if "Health" in span.name]


def test_a_bidirectional_stream_counts_each_message_both_ways(traced):
    labels = rpc("grpc.reflection.v1alpha.ServerReflection", "ServerReflectionInfo", "bidi_stream")
    received = sample(traced, "grpc_server_msg_received_total", **labels)
    sent = sample(traced, "grpc_server_msg_sent_total", **labels)
    handled = sample(traced, "grpc_server_handled_total", **labels, grpc_code="OK")
    asks = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=POLICY),
    ]
    answers = list(traced.reflection.ServerReflectionInfo(iter(asks), timeout=10))
    assert len(answers) == 2
    assert sample(traced, "grpc_server_msg_received_total", **labels) == received + 2
    assert sample(traced, "grpc_server_msg_sent_total", **labels) == sent + 2
    assert sample(traced, "grpc_server_handled_total", **labels, grpc_code="OK") == handled + 1
