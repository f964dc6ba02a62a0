"""OpenTelemetry tracing: a tracer provider per server, its spans printed (`console`), sent to an
OTLP collector (`otlp`) or kept in the process only (`none`: spans still exist, so the caller's
`traceparent` trace id ties logs and audit entries together).

Where the OTLP exporter sends: the `otlp_*` configuration keys when set, otherwise the standard
OTEL_EXPORTER_OTLP_* variables (the exporter reads those itself), otherwise its defaults. The
resource is service.name=policyhub and service.version, which OTEL_SERVICE_NAME and
OTEL_RESOURCE_ATTRIBUTES override; the sampler and the batch processor read their own OTEL_*
variables (OTEL_TRACES_SAMPLER, OTEL_BSP_*)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.util.re import parse_env_headers

from policyhub import __version__
from policyhub.config import OTLP_PROTOCOLS, Config
from policyhub.errors import ConfigError

# As the OpenTelemetry Python SDK's own default.
DEFAULT_OTLP_PROTOCOL = "grpc"
# Appended to a base endpoint for OTLP over HTTP, as the exporter does with OTEL_EXPORTER_OTLP_ENDPOINT.
HTTP_TRACES_PATH = "v1/traces"


def make_tracer_provider(config: Config, env: Mapping[str, str] | None = None) -> TracerProvider:
    """The server's tracer provider; shut it down at exit (that flushes spans still batched)."""
    env = os.environ if env is None else env
    resource = Resource.create({SERVICE_NAME: "policyhub", SERVICE_VERSION: __version__}).merge(
        OTELResourceDetector().detect()
    )
    provider = TracerProvider(resource=resource)
    if config.tracing_exporter == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    elif config.tracing_exporter == "otlp":
        # Batched: exporting never holds up a call; what is still queued is sent at shutdown.
        provider.add_span_processor(BatchSpanProcessor(otlp_exporter(config, env)))
    return provider


def otlp_protocol(config: Config, env: Mapping[str, str]) -> str:
    """otlp_protocol (validated with the configuration), else the standard variables."""
    if config.otlp_protocol:
        return config.otlp_protocol
    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        if protocol := env.get(name, "").strip():
            if protocol not in OTLP_PROTOCOLS:
                raise ConfigError(f"environment variable {name}: {protocol!r} is not one of {list(OTLP_PROTOCOLS)}")
            return protocol
    return DEFAULT_OTLP_PROTOCOL


def otlp_exporter(config: Config, env: Mapping[str, str]) -> SpanExporter:
    headers = parse_env_headers(config.otlp_headers, liberal=True) if config.otlp_headers else None
    if otlp_protocol(config, env) == "grpc":
        return GrpcExporter(endpoint=config.otlp_endpoint or None, headers=headers)
    endpoint = f"{config.otlp_endpoint.removesuffix('/')}/{HTTP_TRACES_PATH}" if config.otlp_endpoint else None
    return HttpExporter(endpoint=endpoint, headers=headers)
