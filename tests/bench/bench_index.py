"""Evaluation index benchmark: the first check after a write against a warm check, by domain size.

Starts `python -m policyhub` on the wire-protocol store (a secantusdb server, or `--backend mongomock`
is refused: the embedded store is per process and cannot be seeded from outside). For each size N
(policies; default 1k, 10k, 100k) one domain is seeded straight into the database through the
managers' bulk inserts (N policies of a few statements, `--assignments-per-policy` x N assignments:
users holding policies directly and through 100 groups), then:

- first build: the first check of the domain (the server builds its index from the whole domain),
  and the server's RSS before and after it (the memory the domain's index takes, memos of one
  check included);
- warm: sequential checks of sampled users, the index current (each reads the domain revision);
- after a write: rounds of one write through the API (a policy update, an assignment added, the
  same assignment removed, in turn) then one timed check, which brings the index up to date;
- health: grpc.health.v1.Health/Check, the floor every call pays.

Printed as median ms and as ratios: "after write / warm" (target <= 3 at 100k) and each to health.

    .venv/bin/python tests/bench/bench_index.py [--sizes 1000,10000,100000] [--assignments-per-policy K]
                                                [--rounds R] [--quick] [--database URI]

100k policies with 1M assignments (`--sizes 100000 --assignments-per-policy 10`) take about 20 minutes
of seeding on secantusdb. `--database URI` runs on a database of the caller's instead of a fresh
secantusdb, left running: what an earlier run seeded there is kept and only the rest is inserted, so
a seeding cut off can be resumed and a seeded domain measured again.

All traffic goes to 127.0.0.1; the servers the bench started are stopped on exit, errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from datetime import datetime, timezone

import grpc
from bench_api import (
    describe_error,
    interrupt_on_sigterm,
    make_channel,
    policyhub_env,
    start_database,
    start_policyhub,
    stop_servers,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc

from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2 as apb
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2_grpc, policy_pb2_grpc
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2 as ppb
from policyhub.domain import LOCAL_REPOSITORY_ID
from policyhub.manager.assignment_manager import AssignmentManager
from policyhub.manager.database import Database, collection
from policyhub.manager.policy_manager import PolicyManager
from policyhub.manager.revision_manager import RevisionManager
from policyhub.model import AssignmentDocument, PolicyDocument

DEFAULT_SIZES = (1_000, 10_000, 100_000)
TARGET_SIZE = 100_000
TARGET_RATIO = 3.0  # first check after a write <= this x a warm check, at TARGET_SIZE
GROUPS = 100
SERVICES = 20
WARM_CHECKS = 300
ROUNDS = 30
CALL_TIMEOUT = 60.0
# Seeding's bound per database call: a batch insert into a store already holding a million
# documents can take minutes on secantusdb.
SEED_CALL_TIMEOUT = 900.0
FIRST_CHECK_TIMEOUT = 600.0  # the first check of a domain builds the index from the whole store


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def seed(domain: str, policies: int, per_policy: int, seed_value: int) -> list[str]:
    """Writes the domain straight into the store; returns the user ids."""
    rng = random.Random(seed_value)
    now = datetime.now(timezone.utc)
    records = [
        {
            "policy_id": f"p{i}",
            "name": f"p{i}",
            "description": "",
            "state": "ENABLED",
            "permissions": [],
            "statements": [
                {"effect": "ALLOW", "actions": [f"svc{i % SERVICES}.res{i % 7}.*"], "resources": ["*"]},
                {"effect": "ALLOW", "actions": [f"svc{i % SERVICES}.res{i % 5}.get"], "resources": [f"proj{i % 50}/*"]},
                {"effect": "DENY", "actions": [f"svc{i % SERVICES}.res{i % 7}.delete"], "resources": ["proj0/*"]},
            ],
            "labels": [],
            "tags": {},
            "project_id": "",
            "repository_id": LOCAL_REPOSITORY_ID,
            "domain_id": domain,
            "is_managed": False,
            "created_at": now,
            "updated_at": now,
        }
        for i in range(policies)
    ]
    # Only what is not there yet: a database seeded (or partly seeded) by an earlier run is resumed.
    seeded = _stored_ids(PolicyDocument, domain, "policy_id")
    PolicyManager(1000).insert_bulk([r for r in records if r["policy_id"] not in seeded], lambda: None)
    users = [f"u{j}" for j in range(max(10, policies * per_policy // 4))]
    pairs: set[tuple[str, str, str, str]] = set()
    for user in users:
        pairs.add(("USER", user, "GROUP", f"g{rng.randrange(GROUPS)}"))
    for g in range(GROUPS):
        for _ in range(3):
            pairs.add(("GROUP", f"g{g}", "POLICY", f"p{rng.randrange(policies)}"))
    while len(pairs) < policies * per_policy:
        pairs.add(("USER", rng.choice(users), "POLICY", f"p{rng.randrange(policies)}"))
    assignments = [
        {
            "assignment_id": f"asg-{n}",
            "subject_type": st,
            "subject_id": si,
            "grant_type": gt,
            "grant_id": gi,
            "expires_at": None,
            "labels": [],
            "tags": {},
            "domain_id": domain,
            "created_at": now,
        }
        for n, (st, si, gt, gi) in enumerate(sorted(pairs))
    ]
    seeded = _stored_ids(AssignmentDocument, domain, "assignment_id")
    assignments = [a for a in assignments if a["assignment_id"] not in seeded]
    manager = AssignmentManager(1000)
    for start in range(0, len(assignments), 50_000):
        manager.insert_bulk(assignments[start : start + 50_000], lambda: None)
    RevisionManager().bump(domain)
    return users


def _stored_ids(document, domain: str, field: str) -> set[str]:
    return {raw[field] for raw in collection(document).find({"domain_id": domain}, {"_id": 0, field: 1})}


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def check_request(domain: str, user: str, rng: random.Random) -> apb.CheckRequest:
    request = apb.CheckRequest(action=f"svc{rng.randrange(SERVICES)}.res{rng.randrange(7)}.get", resource="proj1/x")
    request.subject.type = apb.Subject.USER
    request.subject.id = user
    request.domain_id = domain
    return request


def measure(address: str, pid: int, size: int, per_policy: int, rounds: int) -> dict:
    domain = f"bench-index-{size}"
    rng = random.Random(size)
    started = time.monotonic()
    users = seed(domain, size, per_policy, size)
    seeded = time.monotonic() - started
    channel = make_channel(address)
    check = assignment_pb2_grpc.AssignmentStub(channel).check
    assignment = assignment_pb2_grpc.AssignmentStub(channel)
    policy = policy_pb2_grpc.PolicyStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    try:
        print(f"  {size:,} policies: seeded in {seeded:.0f} s; the first check builds the index", flush=True)
        before = rss_kib(pid)
        build_ms = timed(lambda: check(check_request(domain, users[0], rng), timeout=FIRST_CHECK_TIMEOUT))
        index_kib = rss_kib(pid) - before
        print(f"  {size:,} policies: first build {build_ms / 1000:.1f} s", flush=True)
        for _ in range(20):
            health.Check(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT)
            check(check_request(domain, rng.choice(users), rng), timeout=CALL_TIMEOUT)
        health_ms = [
            timed(lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT))
            for _ in range(WARM_CHECKS)
        ]
        warm_ms = [
            timed(lambda: check(check_request(domain, rng.choice(users), rng), timeout=CALL_TIMEOUT))
            for _ in range(WARM_CHECKS)
        ]
        after_ms = []
        grant = None
        for n in range(rounds):
            kind = n % 3
            if kind == 0:
                target = f"p{rng.randrange(size)}"
                action = f"svc{rng.randrange(SERVICES)}.res{rng.randrange(7)}.*"
                policy.update(
                    ppb.UpdatePolicyRequest(policy_id=target, domain_id=domain, permissions=[action]),
                    timeout=CALL_TIMEOUT,
                )
            elif kind == 1:
                request = apb.CreateAssignmentRequest(domain_id=domain)
                request.subject.type = apb.Subject.USER
                request.subject.id = f"bench-user-{n}"
                request.grant.type = apb.Grant.POLICY
                request.grant.id = f"p{rng.randrange(size)}"
                grant = assignment.create(request, timeout=CALL_TIMEOUT).assignment_id
            else:
                assignment.delete(apb.AssignmentRequest(assignment_id=grant, domain_id=domain), timeout=CALL_TIMEOUT)
            after_ms.append(timed(lambda: check(check_request(domain, rng.choice(users), rng), timeout=CALL_TIMEOUT)))
    finally:
        channel.close()
    return {
        "size": size,
        "assignments": size * per_policy,
        "seeded_s": seeded,
        "build_ms": build_ms,
        "index_mib": index_kib / 1024,
        "health_ms": statistics.median(health_ms),
        "warm_ms": statistics.median(warm_ms),
        "after_ms": statistics.median(after_ms),
        "after_p90_ms": sorted(after_ms)[int(len(after_ms) * 0.9)],
    }


def print_table(rows: list[dict]) -> None:
    print()
    print(
        f"{'policies':>9} {'assignments':>11} {'first build':>12} {'index RSS':>10} {'health':>8} {'warm':>8} "
        f"{'after write':>12} {'p90':>8} {'after/warm':>11} {'warm/health':>12} {'after/health':>13}"
    )
    for r in rows:
        print(
            f"{r['size']:>9,} {r['assignments']:>11,} {r['build_ms']:>10.0f}ms {r['index_mib']:>8.1f}MB "
            f"{r['health_ms']:>6.2f}ms {r['warm_ms']:>6.2f}ms {r['after_ms']:>10.2f}ms {r['after_p90_ms']:>6.2f}ms "
            f"{r['after_ms'] / r['warm_ms']:>10.2f}x {r['warm_ms'] / r['health_ms']:>11.2f}x "
            f"{r['after_ms'] / r['health_ms']:>12.2f}x"
        )
    target = [r for r in rows if r["size"] == TARGET_SIZE]
    if target:
        ratio = target[0]["after_ms"] / target[0]["warm_ms"]
        verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
        print(
            f"\ntarget: first check after a write <= {TARGET_RATIO:g}x a warm check at {TARGET_SIZE:,}: "
            f"{ratio:.2f}x {verdict}"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES))
    parser.add_argument("--assignments-per-policy", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument(
        "--database",
        default="",
        help="a MongoDB URI to use instead of a fresh secantusdb (left running; what a run seeded there is kept, "
        "and a seeding cut off is resumed)",
    )
    parser.add_argument("--metrics-port", type=int, default=0, help="serve the server's metrics there")
    parser.add_argument("--quick", action="store_true", help="1k and 10k only, 9 rounds")
    args = parser.parse_args(argv)
    args.sizes = [1_000, 10_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    if args.quick:
        args.rounds = 9
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    interrupt_on_sigterm()
    print(
        f"policyhub index benchmark: nproc={len(os.sched_getaffinity(0))} backend=wire sizes={args.sizes} "
        f"assignments/policy={args.assignments_per_policy} rounds={args.rounds} python={platform.python_version()}",
        flush=True,
    )
    processes: list = []
    rows = []
    metrics = {"POLICYHUB_METRICS_PORT": str(args.metrics_port)} if args.metrics_port else {}
    try:
        # A whole build of the largest domain reads more than the default bound of a database call.
        bound = str(int(FIRST_CHECK_TIMEOUT * 1000))
        # One server process: the index is per process, and its RSS is the one process's.
        settings = {"POLICYHUB_WORKERS": "1", "POLICYHUB_DB_TIMEOUT_MS": bound, "POLICYHUB_DB_QUERY_TIMEOUT_MS": bound}
        uri = args.database or start_database(processes)
        address = start_policyhub(uri, processes, {**settings, **metrics})
        server = processes[-1]
        # The bench seeds through the managers, on the server's database.
        database = Database(
            uri,
            policyhub_env(0, "")["POLICYHUB_DATABASE"],
            int(SEED_CALL_TIMEOUT * 1000),
            int(SEED_CALL_TIMEOUT * 1000),
        )
        database.connect()
        for size in args.sizes:
            row = measure(address, server.pid, size, args.assignments_per_policy, args.rounds)
            print(
                f"  {size:,} policies: seeded in {row['seeded_s']:.0f} s, first build {row['build_ms']:.0f} ms, "
                f"warm {row['warm_ms']:.2f} ms, after a write {row['after_ms']:.2f} ms",
                flush=True,
            )
            rows.append(row)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (RuntimeError, grpc.RpcError) as exc:
        print(f"bench_index: {describe_error(exc) if isinstance(exc, grpc.RpcError) else exc}", file=sys.stderr)
        return 1
    finally:
        stop_servers(processes)
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
