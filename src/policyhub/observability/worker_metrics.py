"""The metrics port of a server with several workers: the parent serves it, reading every
worker's own registry at scrape time (each worker serves it on a loopback port of its own) and
labelling each sample with `worker` (its slot, 0..workers-1, kept by a restarted worker), so one
scrape target per host sees every worker and `sum without (worker)` gives the host's totals."""

from __future__ import annotations

import urllib.request
from typing import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

# A worker that does not answer within this long is reported down for this scrape.
SCRAPE_TIMEOUT_SECONDS = 2.0


class WorkerMetrics:
    """`workers()` lists the running workers as (slot, pid, metrics port; 0 until it is ready)."""

    def __init__(self, workers: Callable[[], list[tuple[int, int, int]]]):
        self.registry = CollectorRegistry()
        self.restarts = Counter(
            "policyhub_worker_restarts",
            "Workers started again after an unexpected exit, by slot",
            ["worker"],
            registry=self.registry,
        )
        self.registry.register(_FanIn(workers))


class _FanIn:
    def __init__(self, workers: Callable[[], list[tuple[int, int, int]]]):
        self.workers = workers

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        up = GaugeMetricFamily("policyhub_worker_up", "1 when the worker's metrics were read", labels=["worker"])
        pid = GaugeMetricFamily("policyhub_worker_pid", "Process id of the worker", labels=["worker"])
        for slot, process_id, port in self.workers():
            worker = str(slot)
            pid.add_metric([worker], process_id)
            text = _read(port) if port else None
            up.add_metric([worker], 0 if text is None else 1)
            for family in text_string_to_metric_families(text or ""):
                into = merged.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type, family.unit)
                )
                into.samples.extend(
                    sample._replace(labels={**sample.labels, "worker": worker}) for sample in family.samples
                )
        yield from merged.values()
        yield up
        yield pid


def _read(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=SCRAPE_TIMEOUT_SECONDS) as reply:
            return reply.read().decode()
    except OSError:
        return None
