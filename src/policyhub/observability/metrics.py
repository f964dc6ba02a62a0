"""Prometheus metrics, on a registry of their own (one per server, so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from pymongo import monitoring

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.rpc_total = Counter(
            "policyhub_rpc_total", "RPCs handled, by method and status code", ["method", "code"], registry=self.registry
        )
        self.rpc_seconds = Histogram(
            "policyhub_rpc_seconds", "RPC latency", ["method"], buckets=LATENCY_BUCKETS, registry=self.registry
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

    def serve(self, host: str, port: int) -> None:
        self._http = start_http_server(port, addr=host, registry=self.registry)

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
