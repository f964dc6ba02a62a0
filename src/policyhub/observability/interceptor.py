"""One interceptor for what every RPC gets: a span (continuing the caller's `traceparent`),
per-method metrics by status code, and the log fields of the call."""

from __future__ import annotations

import time

import grpc
from opentelemetry import propagate, trace

from policyhub.observability import logs
from policyhub.observability.metrics import Metrics


class ObservabilityInterceptor(grpc.ServerInterceptor):
    def __init__(self, metrics: Metrics, tracer: trace.Tracer):
        self.metrics = metrics
        self.tracer = tracer

    def intercept_service(self, continuation, handler_call_details):
        """Unary and streaming calls alike; for a server-streaming call the span and the metrics
        cover the call up to its answer's first message being ready (the iteration of an
        answer computed up front, as the bulk export's, is not measured)."""
        handler = continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=self._observed(handler.unary_unary, method))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=self._observed_stream(handler.unary_stream, method))
        if handler.stream_unary is not None:
            # A client stream is read inside the handler: one observation for the whole call.
            return handler._replace(stream_unary=self._observed(handler.stream_unary, method))
        return handler

    def _observed_stream(self, behavior, method: str):
        """As _observed, for a server-streaming call: one span and one observation for the
        whole stream, however it ends (a caller that leaves ends it as CANCELLED)."""

        def wrapper(request, context):
            carrier = {key: value for key, value in (context.invocation_metadata() or ()) if isinstance(value, str)}
            started = time.perf_counter()
            with self.tracer.start_as_current_span(
                method, context=propagate.extract(carrier), kind=trace.SpanKind.SERVER
            ) as span:
                trace_id = format(span.get_span_context().trace_id, "032x")
                logs.call_fields.set({"method": method, "trace_id": trace_id})
                code = grpc.StatusCode.OK
                try:
                    yield from behavior(request, context)
                except GeneratorExit:
                    code = grpc.StatusCode.CANCELLED
                    raise
                except Exception:
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise
                finally:
                    span.set_attribute("rpc.grpc.status_code", code.value[0])
                    self.metrics.rpc_total.labels(method, code.name).inc()
                    self.metrics.rpc_seconds.labels(method).observe(time.perf_counter() - started)

        return wrapper

    def _observed(self, behavior, method: str):
        def wrapper(request, context):
            carrier = {key: value for key, value in (context.invocation_metadata() or ()) if isinstance(value, str)}
            started = time.perf_counter()
            with self.tracer.start_as_current_span(
                method, context=propagate.extract(carrier), kind=trace.SpanKind.SERVER
            ) as span:
                trace_id = format(span.get_span_context().trace_id, "032x")
                logs.call_fields.set({"method": method, "trace_id": trace_id})
                code = grpc.StatusCode.OK
                try:
                    return behavior(request, context)
                except Exception:
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise
                finally:
                    span.set_attribute("rpc.grpc.status_code", code.value[0])
                    self.metrics.rpc_total.labels(method, code.name).inc()
                    self.metrics.rpc_seconds.labels(method).observe(time.perf_counter() - started)

        return wrapper
