"""Prometheus metrics, on a registry of their own (one per server, so tests can run several)."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from pymongo import monitoring

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# The labels of go-grpc-prometheus (and py-grpc-prometheus), so their dashboards and alerts work as
# they are: grpc_type is unary, client_stream, server_stream or bidi_stream.
RPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        # process_* (CPU, memory, open files, start time) and python_* (version, garbage collection).
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.started = Counter(
            "grpc_server_started_total", "RPCs started on the server", RPC_LABELS, registry=self.registry
        )
        self.handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, by status code",
            (*RPC_LABELS, "grpc_code"),
            registry=self.registry,
        )
        self.handling_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Time from an RPC's start to its completion (to its last message, for a server stream)",
            RPC_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.msg_received = Counter(
            "grpc_server_msg_received_total", "Request messages received", RPC_LABELS, registry=self.registry
        )
        self.msg_sent = Counter(
            "grpc_server_msg_sent_total", "Response messages sent", RPC_LABELS, registry=self.registry
        )
        self.rate_limited = Counter(
            "policyhub_rate_limited_total", "Calls refused by a rate limit, by limit", ["kind"], registry=self.registry
        )
        self.db_seconds = Histogram(
            "policyhub_db_command_seconds",
            "MongoDB command latency (wire protocol only)",
            ["command", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._http = None

    def watch_index_cache(self, cache) -> None:
        """Exports the evaluation-index cache's hits and misses (and the hit ratio) at scrape time."""
        self.registry.register(_IndexCacheCollector(cache))

    def command_listener(self) -> monitoring.CommandListener:
        return _CommandTimer(self.db_seconds)

    def serve(self, host: str, port: int) -> int:
        """Serves /metrics on host:port (0: a free port); returns the port."""
        self._http = start_http_server(port, addr=host, registry=self.registry)
        return self._http[0].server_port

    def close(self) -> None:
        if self._http:
            server, thread = self._http
            server.shutdown()
            thread.join(timeout=5)


class _IndexCacheCollector:
    def __init__(self, cache):
        self.cache = cache

    def collect(self):
        hits, misses = self.cache.hits, self.cache.misses
        yield CounterMetricFamily("policyhub_index_cache_hits", "Checks answered from a warm index", value=hits)
        yield CounterMetricFamily("policyhub_index_cache_misses", "Indexes brought up to date", value=misses)
        yield CounterMetricFamily(
            "policyhub_index_cache_deltas",
            "Indexes brought up to date by the delta of the change log",
            value=self.cache.deltas,
        )
        yield CounterMetricFamily(
            "policyhub_index_cache_builds", "Indexes built from the whole domain", value=self.cache.builds
        )
        yield GaugeMetricFamily(
            "policyhub_index_cache_hit_ratio",
            "hits / (hits + misses)",
            value=hits / (hits + misses) if hits + misses else 0.0,
        )


class _CommandTimer(monitoring.CommandListener):
    def __init__(self, histogram: Histogram):
        self.histogram = histogram

    def started(self, event):
        pass

    def succeeded(self, event):
        self.histogram.labels(event.command_name, "ok").observe(event.duration_micros / 1e6)

    def failed(self, event):
        self.histogram.labels(event.command_name, "error").observe(event.duration_micros / 1e6)
