"""Groups benchmark: the cost of large and nested groups over gRPC, relative to a trivial RPC of the same server.

For each size N (members; default 1k and 10k) a fresh `python -m policyhub` (on a secantusdb MongoDB
wire-protocol server by default, or `--backend mongomock` for the embedded store) gets one domain with a
chain of five nested groups, `g1` <- `g2` <- ... <- `g5` (each group a member of the one before), a policy
granted to the top group `g1`, N users in the innermost group `g5` (added with Group/add_users, at most
10,000 user ids per call), and one user holding the policy directly. The seeded data is checked through the
API first (totals, `via` paths, decisions). Then, at concurrency 1 and 16, each next to
grpc.health.v1.Health/Check measured at the same concurrency in the same run:

- Group/list_users of `g5`, a page of 100 (a random page of its N direct members each call);
- Group/list_users of `g1` with include_nested, a page of 100 (the same N users, four groups away);
- Assignment/check of a member of `g5` (allowed by the policy of `g1`, through the five groups; the members
  asked rotate over a sample);
- Assignment/check of the user holding the policy directly (the reference: no groups in the way).

The table gives calls/s, p50/p99 and the RATIO of each p50 to the health check's; the last lines give, per
operation, how that ratio grows from the smallest size to the largest. Absolute numbers on shared, noisy
machines mislead; nothing here asserts on time.

Why the wire backend by default, unlike the other benchmarks: the embedded store checks unique indexes by
scanning the collection on every insert (mongomock's own check and the embedded store's), so adding N members
costs O(N^2) there (1k: ~6 s; 10k: many minutes). An add of 10,000 users takes seconds on secantusdb but may
take longer than the default `db_timeout_ms` (5 s) on a busy machine, so the servers here run with a longer
one (seeding only: the measured calls take milliseconds). `bench_bulk.py` times the batch writes themselves.

    .venv/bin/python tests/bench/bench_sets.py [--sizes 1000,10000] [--backend mongomock|wire] [--seconds S]
                                               [--quick]

All traffic goes to 127.0.0.1; every loop is bounded by a deadline plus a per-call timeout; the servers are
stopped on exit, errors and Ctrl-C. Exits 1 if any call failed (errors are counted and shown per cell).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import subprocess
import sys
import time
from dataclasses import dataclass

import grpc

# The server start/stop, channel and cell-measuring helpers of the API benchmark (same directory, which
# is sys.path[0] when this file runs as a script).
from bench_api import (
    CALL_TIMEOUT,
    CallFactory,
    Cell,
    describe_error,
    health_call,
    interrupt_on_sigterm,
    make_channel,
    print_errors,
    run_cell,
    start_servers,
    stop_servers,
)

from policyhub._gen.spaceone.api.core.v1 import query_pb2
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2 as apb
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2_grpc, group_pb2_grpc, policy_pb2_grpc
from policyhub._gen.spaceone.api.repository.v1 import group_pb2 as gpb
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2 as ppb

DEFAULT_SIZES = (1_000, 10_000)
CONCURRENCIES = (1, 16)
DEPTH = 5  # groups in the chain: g1 (holds the policy) <- g2 <- ... <- g5 (holds the members)
PAGE = 100
ADD_BATCH = 10_000  # user ids per Group/add_users call: the API's cap
CHECKED_MEMBERS = 1_000  # Assignment/check rotates over this many members (or all, when fewer)
POLICY_ID = "bench-sets-servers"
DIRECT_USER = "direct-holder"
ACTION, RESOURCE = "inventory.Server.reboot", "prod/web1"
# Seeding is set-up, not measured: generous per-call bound (an add of 10,000 users is one call).
SEED_TIMEOUT = 300.0
FIRST_CALL_TIMEOUT = 300.0  # the first question of a domain builds the server's index from the store
# A bound on each database call long enough for an add of 10,000 users on the test backends (see above).
# list and stat are bounded by at least as much as a point read
SERVER_SETTINGS = {
    "POLICYHUB_DB_TIMEOUT_MS": str(int(SEED_TIMEOUT * 1000)),
    "POLICYHUB_DB_QUERY_TIMEOUT_MS": str(int(SEED_TIMEOUT * 1000)),
}


def domain_of(size: int) -> str:
    return f"bench-sets-{size}"


def group_chain() -> list[str]:
    """Top first: g1 holds the policy, g5 the members."""
    return [f"g{level}" for level in range(1, DEPTH + 1)]


def user_ids(size: int) -> list[str]:
    return [f"u{index:06d}" for index in range(size)]


# ---------------------------------------------------------------------------------------------- seeding


@dataclass
class Seeded:
    size: int
    add_calls: int
    seed_seconds: float
    first_list_seconds: float
    first_check_seconds: float
    cells: list[Cell]


def seed(address: str, size: int) -> tuple[int, float]:
    """The policy, the chain of groups, the grants, then the N members in batches. Returns (add_users
    calls, seconds)."""
    domain, began = domain_of(size), time.perf_counter()
    groups = group_chain()
    with make_channel(address) as channel:
        policies = policy_pb2_grpc.PolicyStub(channel)
        group_stub = group_pb2_grpc.GroupStub(channel)
        assignments = assignment_pb2_grpc.AssignmentStub(channel)
        policies.create(
            ppb.CreatePolicyRequest(
                policy_id=POLICY_ID,
                name="Operate servers",
                permissions=["inventory.Server.*"],
                statements=[
                    ppb.Statement(effect=ppb.Statement.DENY, actions=["inventory.Server.delete"], resources=["prod/*"])
                ],
                domain_id=domain,
            ),
            timeout=SEED_TIMEOUT,
        )
        for group_id in groups:
            group_stub.create(
                gpb.CreateGroupRequest(group_id=group_id, name=group_id, domain_id=domain), timeout=SEED_TIMEOUT
            )
        policy = apb.Grant(type=apb.Grant.POLICY, id=POLICY_ID)
        edges = [(apb.Subject(type=apb.Subject.GROUP, id=groups[0]), policy)]
        edges += [
            (apb.Subject(type=apb.Subject.GROUP, id=inner), apb.Grant(type=apb.Grant.GROUP, id=outer))
            for outer, inner in zip(groups[:-1], groups[1:], strict=True)
        ]
        edges.append((apb.Subject(type=apb.Subject.USER, id=DIRECT_USER), policy))
        for subject, grant in edges:
            assignments.create(
                apb.CreateAssignmentRequest(subject=subject, grant=grant, domain_id=domain), timeout=SEED_TIMEOUT
            )
        users, added, calls = user_ids(size), 0, 0
        for start in range(0, size, ADD_BATCH):
            reply = group_stub.add_users(
                gpb.GroupUsersRequest(group_id=groups[-1], user_ids=users[start : start + ADD_BATCH], domain_id=domain),
                timeout=SEED_TIMEOUT,
            )
            added += reply.changed_count
            calls += 1
    if added != size:
        raise RuntimeError(f"Group/add_users added {added} members, expected {size}")
    return calls, time.perf_counter() - began


def list_users_request(size: int, group_id: str, nested: bool, start: int = 1) -> gpb.ListGroupUsersRequest:
    return gpb.ListGroupUsersRequest(
        group_id=group_id,
        include_nested=nested,
        page=query_pb2.Page(start=start, limit=PAGE),
        domain_id=domain_of(size),
    )


def check_request(size: int, user_id: str) -> apb.CheckRequest:
    return apb.CheckRequest(
        subject=apb.Subject(type=apb.Subject.USER, id=user_id),
        action=ACTION,
        resource=RESOURCE,
        domain_id=domain_of(size),
    )


def verify(address: str, size: int) -> tuple[float, float]:
    """Refuses to benchmark answers that are not what was seeded: both listings see the N members (with the
    right `via`), a member and the direct holder are allowed by the policy along the expected paths. Also warms
    the server's index. Returns the first list_users and the first check's seconds."""
    groups = group_chain()
    with make_channel(address) as channel:
        group_stub = group_pb2_grpc.GroupStub(channel)
        assignments = assignment_pb2_grpc.AssignmentStub(channel)
        began = time.perf_counter()
        direct = group_stub.list_users(list_users_request(size, groups[-1], False), timeout=FIRST_CALL_TIMEOUT)
        first_list = time.perf_counter() - began
        nested = group_stub.list_users(list_users_request(size, groups[0], True), timeout=CALL_TIMEOUT)
        began = time.perf_counter()
        member = assignments.check(check_request(size, user_ids(size)[-1]), timeout=FIRST_CALL_TIMEOUT)
        first_check = time.perf_counter() - began
        holder = assignments.check(check_request(size, DIRECT_USER), timeout=CALL_TIMEOUT)
    expected_users = user_ids(size)[:PAGE]
    problems = []
    if direct.total_count != size or [m.user_id for m in direct.results] != expected_users:
        problems.append(f"list_users {groups[-1]}: total {direct.total_count}, first page {len(direct.results)}")
    if any(m.via for m in direct.results):
        problems.append(f"list_users {groups[-1]}: a direct member has a via")
    # The members of g5 reach g1 through g5, g4, g3 and g2 (nearest the user first); the direct holder is no
    # member of any group.
    nested_via = list(reversed(groups[1:]))
    if nested.total_count != size or [m.user_id for m in nested.results] != expected_users:
        problems.append(f"list_users {groups[0]} nested: total {nested.total_count}, first page {len(nested.results)}")
    if any([s.id for s in m.via] != nested_via for m in nested.results):
        problems.append(f"list_users {groups[0]} nested: via is not {nested_via}")
    if member.decision != apb.CheckResult.ALLOW or [s.id for s in member.via][1:] != list(reversed(groups)):
        problems.append(f"check of a member: {apb.CheckResult.Decision.Name(member.decision)} via {list(member.via)}")
    if holder.decision != apb.CheckResult.ALLOW or len(holder.via) != 1:
        problems.append(f"check of the direct holder: {apb.CheckResult.Decision.Name(holder.decision)}")
    if problems:
        raise RuntimeError(f"N={size:,}: the seeded data does not answer as expected:\n  " + "\n  ".join(problems))
    return first_list, first_check


# ---------------------------------------------------------------------------------------------- calls


def list_users_factory(size: int, group_id: str, nested: bool) -> CallFactory:
    starts = list(range(1, size + 1, PAGE))

    def factory(channel: grpc.Channel, thread: int, concurrency: int):
        stub, rng = group_pb2_grpc.GroupStub(channel), random.Random(thread)
        requests = [list_users_request(size, group_id, nested, start) for start in starts]
        return lambda: stub.list_users(rng.choice(requests), timeout=CALL_TIMEOUT)

    return factory


def check_members_factory(size: int) -> CallFactory:
    users = user_ids(size)
    sample = random.Random(size).sample(users, min(CHECKED_MEMBERS, size))

    def factory(channel: grpc.Channel, thread: int, concurrency: int):
        stub = assignment_pb2_grpc.AssignmentStub(channel)
        requests = [check_request(size, user) for user in sample]
        # Each thread walks the sample from its own offset, so concurrent calls ask about different members.
        position = iter(range(thread * 37, 10**12))
        return lambda: stub.check(requests[next(position) % len(requests)], timeout=CALL_TIMEOUT)

    return factory


def check_direct_factory(size: int) -> CallFactory:
    def factory(channel: grpc.Channel, thread: int, concurrency: int):
        stub, request = assignment_pb2_grpc.AssignmentStub(channel), check_request(size, DIRECT_USER)
        return lambda: stub.check(request, timeout=CALL_TIMEOUT)

    return factory


def operations(size: int) -> list[tuple[str, CallFactory]]:
    groups = group_chain()
    return [
        ("health.Check", health_call),
        ("list_users page", list_users_factory(size, groups[-1], False)),
        ("list_users nested", list_users_factory(size, groups[0], True)),
        ("check 5 groups deep", check_members_factory(size)),
        ("check direct grant", check_direct_factory(size)),
    ]


def measure(address: str, size: int, seconds: float) -> Seeded:
    try:
        add_calls, seed_seconds = seed(address, size)
    except grpc.RpcError as exc:
        raise RuntimeError(f"seeding N={size:,} failed: {describe_error(exc)}") from exc
    try:
        first_list, first_check = verify(address, size)
    except grpc.RpcError as exc:
        raise RuntimeError(f"checking the seeded N={size:,} failed: {describe_error(exc)}") from exc
    cells = []
    # Concurrency-major: each baseline is measured right before the operations compared with it.
    for concurrency in CONCURRENCIES:
        for name, factory in operations(size):
            cells.append(run_cell(address, name, factory, concurrency, seconds))
    return Seeded(size, add_calls, seed_seconds, first_list, first_check, cells)


# ---------------------------------------------------------------------------------------------- report


def x_p50(cell: Cell, cells: list[Cell]) -> float:
    base = next(c for c in cells if c.operation == "health.Check" and c.concurrency == cell.concurrency)
    return cell.percentile_ms(0.5) / base.percentile_ms(0.5)


def print_results(results: list[Seeded]) -> None:
    print()
    for r in results:
        print(
            f"N={r.size:,}: seeded ({DEPTH} nested groups, {r.add_calls} Group/add_users) in {r.seed_seconds:.1f} s; "
            f"first list_users (server builds its index) {r.first_list_seconds * 1000:.0f} ms, first check "
            f"{r.first_check_seconds * 1000:.0f} ms; answers verified"
        )
    header = (
        f"{'N':>7} {'operation':<20} {'conc':>4} {'calls/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'x p50':>6} {'errors':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        for c in r.cells:
            print(
                f"{r.size:>7} {c.operation:<20} {c.concurrency:>4} {c.calls_per_second:>9.0f} "
                f"{c.percentile_ms(0.5):>8.2f} {c.percentile_ms(0.99):>8.2f} {x_p50(c, r.cells):>6.2f} "
                f"{sum(c.errors.values()):>6}"
            )
    print("x p50 = p50 / health.Check p50 at the same concurrency in the same run")
    if len(results) < 2:
        return
    small, large = results[0], results[-1]
    print(f"\ngrowth of x p50 from N={small.size:,} to N={large.size:,} ({large.size / small.size:g}x the members):")
    for c in large.cells:
        if c.operation == "health.Check":
            continue
        before = next(b for b in small.cells if (b.operation, b.concurrency) == (c.operation, c.concurrency))
        print(
            f"  {c.operation:<20} conc {c.concurrency:>2}: x{x_p50(before, small.cells):.2f} -> "
            f"x{x_p50(c, large.cells):.2f} ({x_p50(c, large.cells) / x_p50(before, small.cells):.2f}x)"
        )


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=None, help="comma-separated member counts (default 1000,10000)")
    parser.add_argument(
        "--backend",
        choices=("mongomock", "wire"),
        default="wire",
        help="a secantusdb wire-protocol server (default) or the embedded mongomock store (slow to seed)",
    )
    parser.add_argument("--seconds", type=float, default=None, help="measuring time per cell (default 3)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 s per cell")
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else None
    except ValueError:
        parser.error("--sizes must be comma-separated integers")
    args.sizes = sorted(sizes or DEFAULT_SIZES)
    # Explicit values win over --quick.
    args.seconds = args.seconds if args.seconds is not None else (1.0 if args.quick else 3.0)
    if min(args.sizes) < PAGE or args.seconds <= 0:
        parser.error(f"--sizes must be at least {PAGE} (one full page), --seconds positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    interrupt_on_sigterm()
    print(
        f"policyhub groups benchmark: nproc={len(os.sched_getaffinity(0))} backend={args.backend} "
        f"sizes={','.join(map(str, args.sizes))} depth={DEPTH} page={PAGE} seconds/cell={args.seconds:g} "
        f"python={platform.python_version()} grpcio={grpc.__version__}",
        flush=True,
    )
    results: list[Seeded] = []
    processes: list[subprocess.Popen] = []  # the running servers, stopped in reverse
    try:
        for size in args.sizes:
            # A fresh server (and database) per size: each size is measured with only its own data.
            address = start_servers(args.backend, processes, SERVER_SETTINGS)
            results.append(measure(address, size, args.seconds))
            stop_servers(processes)
            print(f"N={size:,} done", flush=True)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (RuntimeError, grpc.RpcError) as exc:
        print(f"bench_sets: {describe_error(exc) if isinstance(exc, grpc.RpcError) else exc}", file=sys.stderr)
        return 1
    finally:
        stop_servers(processes)
    print_results(results)
    failed = sum(print_errors(r.cells, f", N={r.size:,}") for r in results)
    if failed:
        print(f"FAILED: {failed} cell(s) had failed calls", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
