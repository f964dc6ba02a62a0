"""OpenTelemetry tracer set-up: W3C `traceparent` in, spans out (console exporter optional)."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

from policyhub import __version__


def make_tracer(exporter: str) -> trace.Tracer:
    provider = TracerProvider(resource=Resource.create({"service.name": "policyhub", "service.version": __version__}))
    if exporter == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    return provider.get_tracer("policyhub")
