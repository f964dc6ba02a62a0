"""What every RPC gets besides its span: the gRPC server metrics, the log fields of the call, and
the call's final status on its span.

The span itself comes from OpenTelemetry's gRPC server interceptor, placed just outside this one
(see `telemetry_interceptors`): it continues the caller's `traceparent` and sets the semantic
convention attributes (rpc.system, rpc.service, rpc.method, net.peer.*). It learns a status only
from `context.abort` and `context.set_code`, not from `abort_with_status` (how our errors carry
their details) nor from a caller that leaves a stream, so this interceptor, inside its span, sets
rpc.grpc.status_code and the span status from the status the call really ended with."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import filters, server_interceptor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

from policyhub.observability import logs
from policyhub.observability.metrics import Metrics

# The codes that say the server failed; any other (INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED,
# CANCELLED, RESOURCE_EXHAUSTED…) is the caller's doing and leaves the span status unset, as the
# semantic conventions for gRPC server spans ask.
SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


def telemetry_interceptors(metrics: Metrics, tracer_provider: TracerProvider) -> list[grpc.ServerInterceptor]:
    """Outermost first: the span, then the metrics and log fields inside it. Health checks get no
    span: Kubernetes probes call them every few seconds, and their spans would drown the others."""
    return [
        server_interceptor(tracer_provider, filters.negate(filters.health_check())),
        ObservabilityInterceptor(metrics),
    ]


def span_status(code: grpc.StatusCode) -> Status:
    return Status(StatusCode.ERROR, code.name) if code in SERVER_ERRORS else Status(StatusCode.UNSET)


def rpc_type(handler: grpc.RpcMethodHandler) -> str:
    if handler.request_streaming:
        return "bidi_stream" if handler.response_streaming else "client_stream"
    return "server_stream" if handler.response_streaming else "unary"


class ObservabilityInterceptor(grpc.ServerInterceptor):
    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def intercept_service(self, continuation, handler_call_details):
        """A server stream is observed until its last message is sent or its caller leaves:
        CANCELLED, whether the caller cancelled or its deadline passed (the server cannot tell
        which came first, and a watch ending with its caller's deadline is no failure); a client
        stream's messages are counted as the handler reads them."""
        handler = continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        service, _, name = method.lstrip("/").partition("/")
        labels = (rpc_type(handler), service, name)
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=self._observed(handler.unary_unary, method, labels, False))
        if handler.stream_unary is not None:
            return handler._replace(stream_unary=self._observed(handler.stream_unary, method, labels, True))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=self._observed_stream(handler.unary_stream, method, labels, False))
        return handler._replace(stream_stream=self._observed_stream(handler.stream_stream, method, labels, True))

    def _observed(self, behavior, method: str, labels: tuple[str, ...], request_streaming: bool):
        def wrapper(request, context):
            call = _Call(self.metrics, method, labels)
            code = grpc.StatusCode.OK
            try:
                response = behavior(call.received(request, request_streaming), context)
                code = context.code() or grpc.StatusCode.OK
                if code == grpc.StatusCode.OK:
                    call.sent()
                return response
            except Exception:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            finally:
                call.end(code)

        return wrapper

    def _observed_stream(self, behavior, method: str, labels: tuple[str, ...], request_streaming: bool):
        def wrapper(request, context):
            call = _Call(self.metrics, method, labels)
            code = grpc.StatusCode.OK
            try:
                for response in behavior(call.received(request, request_streaming), context):
                    call.sent()
                    yield response
                # A stream that watches the call (Change/watch) ends by itself once the caller left.
                code = context.code() or (grpc.StatusCode.OK if context.is_active() else grpc.StatusCode.CANCELLED)
            except GeneratorExit:
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            finally:
                call.end(code)

        return wrapper


class _Call:
    """One RPC's observation, begun in the span OpenTelemetry's interceptor made current."""

    def __init__(self, metrics: Metrics, method: str, labels: tuple[str, ...]):
        self.metrics = metrics
        self.labels = labels
        self.span = trace.get_current_span()
        # The semantic conventions' span name: package.Service/method, without the path's slash.
        self.span.update_name(method.lstrip("/"))
        self.started = time.perf_counter()
        fields = {"method": method}
        span_context = self.span.get_span_context()
        if span_context.is_valid:
            fields["trace_id"] = format(span_context.trace_id, "032x")
        logs.call_fields.set(fields)
        metrics.started.labels(*labels).inc()

    def received(self, request, streaming: bool):
        if not streaming:
            self.metrics.msg_received.labels(*self.labels).inc()
            return request
        return self._counted(request)

    def _counted(self, requests) -> Iterator:
        counter = self.metrics.msg_received.labels(*self.labels)
        for request in requests:
            counter.inc()
            yield request

    def sent(self) -> None:
        self.metrics.msg_sent.labels(*self.labels).inc()

    def end(self, code: grpc.StatusCode) -> None:
        self.metrics.handled.labels(*self.labels, code.name).inc()
        self.metrics.handling_seconds.labels(*self.labels).observe(time.perf_counter() - self.started)
        self.span.set_attribute("rpc.grpc.status_code", code.value[0])
        self.span.set_status(span_status(code))
