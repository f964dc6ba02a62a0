"""SpaceONE's own gRPC client (spaceone-core 1.12, spaceone-api 1.12) driving a SpaceONE-style sequential
workload, one call at a time, as SpaceONE's repository service is driven by its own client: N
Policy.create, then Policy.get, Policy.list (a page of 10 filtered by label) and Policy.stat (count
per label), each preceded by the same number of grpc.health.v1.Health/Check calls for the baseline.

Run by tests/bench/bench_scale.py in the SpaceONE virtualenv (tests/spaceone/.venv, which
tests/api/test_spaceone_client.py creates), against policyhub's SpaceONE listener or, with --peer,
against SpaceONE's own repository service:
    sequential.py <host:port> <domain_id> <N> <seconds per operation> <timeout per call> [--peer]
Each operation stops after N calls or once its seconds have passed, whichever comes first. list and stat
each start with one untimed call (as the benchmark's grpcio workload does); an operation whose first call
answers that the method is not implemented is reported as such and not measured.
Prints one JSON object: {"ok": true, "cells": [{"operation", "latencies", "elapsed", "errors"}],
"unimplemented": {operation: error}} or {"ok": false, "error": "..."}.
"""

import json
import sys
import time

from spaceone.core.pygrpc import client

LABELS = [f"team-{i}" for i in range(10)]
# What grpcio's generated servicer answers for a method the server does not override; spaceone-core's
# client keeps only this text (as INTERNAL), not the UNIMPLEMENTED code.
UNIMPLEMENTED = "Method not implemented"


def local_repository(conn, timeout):
    """The id of SpaceONE's local repository. Its Policy.create stores into it, so a fresh service has to
    have one (an installation registers it once), and its Policy.list names the repository to read."""
    found = conn.Repository.list({"repository_type": "local"}, timeout=timeout).results
    if found:
        return found[0].repository_id
    return conn.Repository.register({"name": "local", "repository_type": "local"}, timeout=timeout).repository_id


def requests(domain_id, count, repository_id=None):
    """Each operation's requests, as dicts (spaceone-core's client turns them into messages)."""
    policy_ids = [f"so-{i:06d}" for i in range(count)]
    group = {"keys": [{"key": "labels", "name": "label"}], "fields": [{"operator": "count", "name": "count"}]}
    lists = [
        {
            "query": {"filter": [{"k": "labels", "v": LABELS[i % len(LABELS)], "o": "eq"}], "page": {"limit": 10}},
            "domain_id": domain_id,
        }
        for i in range(count)
    ]
    if repository_id:
        for request in lists:
            request["repository_id"] = repository_id
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
        "list": lists,
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
            # spaceone-core's errors span lines: one line each.
            text = f"{type(exc).__name__}: {' '.join(str(exc).split())[:100]}"
            errors[text] = errors.get(text, 0) + 1
            continue
        latencies.append(time.perf_counter() - start)
        if done is not None:
            done.append(request)
    return {"latencies": latencies, "elapsed": time.perf_counter() - began, "errors": errors}


def main(endpoint, domain_id, count, seconds, timeout, peer=False):
    conn = client(endpoint=endpoint, version="v1")
    repository_id = local_repository(conn, timeout) if peer else None
    cells, created, unimplemented = [], [], {}
    for operation, calls in requests(domain_id, count, repository_id).items():
        method = getattr(conn.Policy, operation)
        warmup = {}
        if operation == "get":
            # Only what was created (the creates may have stopped at their deadline), each in turn, N calls.
            calls = [calls[int(request["policy_id"][3:])] for request in created]
            calls = [calls[i % len(calls)] for i in range(count)] if calls else []
        elif operation in ("list", "stat"):
            warmup = run(method, calls[:1], seconds, timeout)["errors"]
            missing = [text for text in warmup if UNIMPLEMENTED in text]
            if missing:
                unimplemented[operation] = missing[0]
                continue
        # Warm-up of the connection and of spaceone-core's message conversion, not measured.
        conn.Health.Check({}, timeout=timeout)
        health = run(conn.Health.Check, [{}] * len(calls), seconds, timeout)
        cells.append({"operation": f"health before {operation}", **health})
        measured = run(method, calls, seconds, timeout, created if operation == "create" else None)
        # A failed warm-up call still counts, as in the benchmark's own measure().
        for text, times in warmup.items():
            measured["errors"][text] = measured["errors"].get(text, 0) + times
        cells.append({"operation": operation, **measured})
    return {"ok": True, "cells": cells, "unimplemented": unimplemented}


if __name__ == "__main__":
    try:
        out = main(
            sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), "--peer" in sys.argv[6:]
        )
    except Exception as exc:  # reported as JSON, the benchmark shows it
        out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(out))
