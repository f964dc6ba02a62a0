"""SpaceONE's own gRPC client (spaceone-core 1.12, spaceone-api 1.12) driving a SpaceONE-style sequential
workload, one call at a time, as SpaceONE's repository service is driven by its own client: N
Policy.create, then Policy.get, Policy.list (a page of 10 filtered by label) and Policy.stat (count
per label), each preceded by the same number of grpc.health.v1.Health/Check calls for the baseline.

Run by tests/bench/bench_scale.py in the SpaceONE virtualenv (tests/spaceone/.venv, which
tests/api/test_spaceone_client.py creates):
    sequential.py <host:port> <domain_id> <N> <seconds per operation> <timeout per call>
Each operation stops after N calls or once its seconds have passed, whichever comes first.
Prints one JSON object: {"ok": true, "cells": [{"operation", "latencies", "elapsed", "errors"}]}
or {"ok": false, "error": "..."}.
"""

import json
import sys
import time

from spaceone.core.pygrpc import client

LABELS = [f"team-{i}" for i in range(10)]


def requests(domain_id, count):
    """Each operation's requests, as dicts (spaceone-core's client turns them into messages)."""
    policy_ids = [f"so-{i:06d}" for i in range(count)]
    group = {"keys": [{"key": "labels", "name": "label"}], "fields": [{"operator": "count", "name": "count"}]}
    return {
        "create": [
            {
                "policy_id": policy_id,
                "name": f"Sequential policy {i}",
                "permissions": ["inventory.Server.read", f"svc{i % 5}.*"],
                "labels": [LABELS[i % len(LABELS)]],
                "tags": {"tier": str(i % 4)},
                "domain_id": domain_id,
            }
            for i, policy_id in enumerate(policy_ids)
        ],
        "get": [{"policy_id": policy_id, "domain_id": domain_id} for policy_id in policy_ids],
        "list": [
            {
                "query": {"filter": [{"k": "labels", "v": LABELS[i % len(LABELS)], "o": "eq"}], "page": {"limit": 10}},
                "domain_id": domain_id,
            }
            for i in range(count)
        ],
        "stat": [{"query": {"aggregate": [{"group": group}]}, "domain_id": domain_id}] * count,
    }


def run(method, calls, seconds, timeout, done=None):
    """Calls one after the other until done or past the deadline; each failure counted by its text, each
    request that succeeded appended to `done` when given."""
    latencies, errors = [], {}
    began = time.perf_counter()
    deadline = began + seconds
    for request in calls:
        if time.perf_counter() > deadline:
            break
        start = time.perf_counter()
        try:
            method(request, timeout=timeout)
        except Exception as exc:  # counted and shown by the benchmark
            text = f"{type(exc).__name__}: {str(exc)[:100]}"
            errors[text] = errors.get(text, 0) + 1
            continue
        latencies.append(time.perf_counter() - start)
        if done is not None:
            done.append(request)
    return {"latencies": latencies, "elapsed": time.perf_counter() - began, "errors": errors}


def main(endpoint, domain_id, count, seconds, timeout):
    conn = client(endpoint=endpoint, version="v1")
    cells, created = [], []
    for operation, calls in requests(domain_id, count).items():
        if operation == "get":
            # Only what was created (the creates may have stopped at their deadline), each in turn, N calls.
            calls = [calls[int(request["policy_id"][3:])] for request in created]
            calls = [calls[i % len(calls)] for i in range(count)] if calls else []
        # Warm-up of the connection and of spaceone-core's message conversion, not measured.
        conn.Health.Check({}, timeout=timeout)
        health = run(conn.Health.Check, [{}] * len(calls), seconds, timeout)
        cells.append({"operation": f"health before {operation}", **health})
        done = created if operation == "create" else None
        cells.append({"operation": operation, **run(getattr(conn.Policy, operation), calls, seconds, timeout, done)})
    return {"ok": True, "cells": cells}


if __name__ == "__main__":
    try:
        out = main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]))
    except Exception as exc:  # reported as JSON, the benchmark shows it
        out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(out))
