"""Workers benchmark: Policy.get and Assignment.check with `workers: 1` and with `workers: N`, on the
MongoDB wire protocol (a secantusdb server started alongside), each as a ratio to a health check.

For each worker count it starts `python -m policyhub` on a fresh database, seeds a domain with policies
and one user granted a policy, then measures health.Check, Policy.get and Assignment.check at
concurrency 16 and 64. The calling threads are spread over several client processes (one Python
process would be the bottleneck long before two servers are), each thread with its own connection
(SO_REUSEPORT gives each new connection to one worker). It prints one table per worker count (ratios to
the health check of the same run and concurrency) and then, per operation and concurrency, calls/s with
N workers / calls/s with 1. Server, database and clients share this machine's cores: on a small machine
the gain is bounded by what the clients and the database leave to the workers.

    .venv/bin/python tests/bench/bench_workers.py [--workers N] [--policies N] [--seconds S] [--clients K] [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor

import bench_api as bench
import grpc
from google.protobuf import json_format

from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2 as apb
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2_grpc, policy_pb2, policy_pb2_grpc

CONCURRENCIES = (16, 64)
OPERATIONS = ("health.Check", "Policy.get", "Assignment.check")
READER = "bench-reader"


def check_request(index: int) -> apb.CheckRequest:
    return json_format.ParseDict(
        {
            "subject": {"type": "USER", "id": "alice"},
            "action": "inventory.Server.read",
            "resource": f"server/{index}",
            "domain_id": bench.SEED_DOMAIN,
        },
        apb.CheckRequest(),
    )


def check_call(channel: grpc.Channel, thread: int, concurrency: int) -> bench.Call:
    stub = assignment_pb2_grpc.AssignmentStub(channel)
    requests = [check_request(index) for index in range(100)]
    counter = iter(range(10**9))

    def call():
        reply = stub.check(requests[next(counter) % len(requests)], timeout=bench.CALL_TIMEOUT)
        if reply.decision != apb.CheckResult.ALLOW:
            raise RuntimeError(f"check answered {apb.CheckResult.Decision.Name(reply.decision)}, expected ALLOW")
        return reply

    return call


def factory(operation: str, policies: int) -> bench.CallFactory:
    return {
        "health.Check": bench.health_call,
        "Policy.get": bench.get_call_factory(policies),
        "Assignment.check": check_call,
    }[operation]


def seed_check(address: str) -> None:
    with bench.make_channel(address) as channel:
        policy_pb2_grpc.PolicyStub(channel).create(
            policy_pb2.CreatePolicyRequest(
                policy_id=READER, name="reader", domain_id=bench.SEED_DOMAIN, permissions=["inventory.Server.read"]
            ),
            timeout=bench.CALL_TIMEOUT,
        )
        assignment_pb2_grpc.AssignmentStub(channel).create(
            json_format.ParseDict(
                {
                    "subject": {"type": "USER", "id": "alice"},
                    "grant": {"type": "POLICY", "id": READER},
                    "domain_id": bench.SEED_DOMAIN,
                },
                apb.CreateAssignmentRequest(),
            ),
            timeout=bench.CALL_TIMEOUT,
        )


def client_part(address: str, operation: str, policies: int, threads: int, seconds: float):
    """One client process's share of a cell (run in a spawned process: no gRPC state crosses a fork)."""
    cell = bench.run_cell(address, operation, factory(operation, policies), threads, seconds)
    return cell.latencies, cell.elapsed, cell.errors


def run_cell(
    pool: ProcessPoolExecutor, clients: int, address: str, operation: str, policies: int, concurrency: int, seconds
) -> bench.Cell:
    parts = [concurrency // clients + (1 if index < concurrency % clients else 0) for index in range(clients)]
    futures = [pool.submit(client_part, address, operation, policies, threads, seconds) for threads in parts if threads]
    cell = bench.Cell(operation, concurrency)
    for future in futures:
        latencies, elapsed, errors = future.result()
        cell.latencies.extend(latencies)
        cell.elapsed = max(cell.elapsed, elapsed)
        cell.errors.update(errors)
    return cell


def measure(args: argparse.Namespace, workers: int, pool: ProcessPoolExecutor) -> list[bench.Cell]:
    processes: list[subprocess.Popen] = []
    try:
        address = bench.start_servers(
            "wire", processes, {"POLICYHUB_WORKERS": str(workers), "POLICYHUB_MAX_WORKERS": "32"}
        )
        bench.seed(address, args.policies)
        seed_check(address)
        cells = []
        for concurrency in CONCURRENCIES:
            for operation in OPERATIONS:
                cells.append(run_cell(pool, args.clients, address, operation, args.policies, concurrency, args.seconds))
        return cells
    finally:
        bench.stop_servers(processes)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="worker processes compared with 1 (default 2)")
    parser.add_argument("--policies", type=int, default=None, help="policies seeded (default 500)")
    parser.add_argument("--seconds", type=float, default=None, help="measuring time per cell (default 5)")
    parser.add_argument("--clients", type=int, default=2, help="client processes sharing the threads (default 2)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 s per cell, 100 policies")
    args = parser.parse_args(argv)
    args.policies = args.policies if args.policies is not None else (100 if args.quick else 500)
    args.seconds = args.seconds if args.seconds is not None else (1.0 if args.quick else 5.0)
    if args.workers < 2 or args.clients < 1 or args.policies < 1 or args.seconds <= 0:
        parser.error("--workers must be at least 2, --clients and --policies at least 1, --seconds positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench.interrupt_on_sigterm()
    print(
        f"policyhub workers benchmark: nproc={len(os.sched_getaffinity(0))} backend=wire workers=1 vs "
        f"{args.workers} N={args.policies} seconds/cell={args.seconds:g} client processes={args.clients} "
        f"python={platform.python_version()} grpcio={grpc.__version__}",
        flush=True,
    )
    results: dict[int, list[bench.Cell]] = {}
    try:
        with ProcessPoolExecutor(args.clients, mp_context=multiprocessing.get_context("spawn")) as pool:
            for workers in (1, args.workers):
                results[workers] = measure(args, workers, pool)
                print(f"\nworkers: {workers}")
                bench.print_table(results[workers])
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (RuntimeError, grpc.RpcError) as exc:
        message = bench.describe_error(exc) if isinstance(exc, grpc.RpcError) else exc
        print(f"bench_workers: {message}", file=sys.stderr)
        return 1
    print(f"\n{'operation':<17} {'conc':>4} {'x thru, ' + str(args.workers) + ' workers / 1':>24}")
    for one, many in zip(results[1], results[args.workers], strict=True):
        print(
            f"{one.operation:<17} {one.concurrency:>4} {bench.ratio(many.calls_per_second, one.calls_per_second):>24}"
        )
    failed = sum(bench.print_errors(cells, f", workers={workers}") for workers, cells in results.items())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
