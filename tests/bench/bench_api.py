"""API benchmark: throughput and latency of the Policy API relative to a trivial RPC of the same server.

Starts `python -m policyhub` as a subprocess on a free loopback port (embedded mongomock store, or with
`--backend wire` a secantusdb MongoDB wire-protocol server started alongside), seeds one domain with N
policies, then runs every operation at concurrency 1 and 16 for a fixed time each and prints
calls/s and p50/p99 latency next to the RATIO to grpc.health.v1.Health/Check measured at the same
concurrency in the same run. Absolute numbers on shared, noisy machines mislead; the ratios say how much
the API costs above the gRPC + Python floor that every call pays anyway.

    .venv/bin/python tests/bench/bench_api.py [--backend mongomock|wire] [--policies N] [--seconds S] [--quick]

All traffic goes to 127.0.0.1; every loop is bounded by a deadline plus a per-call timeout; the servers are
stopped on exit, errors and Ctrl-C. Exits 1 if any call failed (errors are counted and shown per cell).
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import grpc
from google.protobuf import json_format, struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from policyhub._gen.spaceone.api.core.v1 import query_pb2
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2 as pb
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2_grpc

BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
DATABASE_CACHE = "8G"
CONCURRENCIES = (1, 16)
# Bounds every single call, so a stuck server ends a cell at deadline + CALL_TIMEOUT at worst.
CALL_TIMEOUT = 10.0
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
# Untimed calls per thread before the clock starts: connection set-up, first-call lazy imports and
# cold caches of either side are not what we want to measure.
WARMUP_CALLS = 3
LABELS = [f"team-{i}" for i in range(10)]
SEED_DOMAIN = "bench-domain"
# create writes into its own domain so the read operations always see exactly N policies.
CREATE_DOMAIN = "bench-create"
SEED_WORKERS = 8
# A console's page: the list operation asks for this many of the policies one label filters.
LIST_PAGE = 10

# A call: one RPC, made by one worker thread; raising means the call failed.
Call = Callable[[], object]
# Builds the call of one worker thread from its channel, its index and the cell's concurrency.
CallFactory = Callable[[grpc.Channel, int, int], Call]


# ---------------------------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM if this script dies without cleaning up (e.g. SIGKILL)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def start_process(argv: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen, object]:
    """Starts a server in its own session, so a Ctrl-C reaches only this script, which then stops the
    servers in order (policyhub before its database) instead of all of them dying at once mid-call.
    Output goes to a temporary file (a pipe nobody reads could fill up and block the server)."""
    log = tempfile.TemporaryFile(mode="w+")
    process = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    return process, log


def stop_process(process: subprocess.Popen | None) -> None:
    """SIGTERM (graceful), then SIGKILL if it does not exit in time."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT)


def log_tail(log, limit: int = 2000) -> str:
    log.flush()
    log.seek(0)
    return log.read()[-limit:]


def wait_for_wire_db(process: subprocess.Popen, log, uri: str) -> None:
    import pymongo  # only needed for --backend wire

    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        try:
            with pymongo.MongoClient(uri, serverSelectionTimeoutMS=500) as client:
                client.admin.command("ping")
            return
        except pymongo.errors.PyMongoError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"secantusdb did not start at {uri}:\n{log_tail(log)}") from None
            time.sleep(0.2)


def wait_for_policyhub(process: subprocess.Popen, log, address: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"policyhub did not start on {address}:\n{log_tail(log)}")
            time.sleep(0.2)


def policyhub_env(port: int, mongodb_uri: str) -> dict[str, str]:
    # Inherited POLICYHUB_* settings would make the run depend on the caller's shell; drop them.
    env = {key: value for key, value in os.environ.items() if not key.startswith("POLICYHUB_")}
    env.update(
        POLICYHUB_HOST=HOST,
        POLICYHUB_PORT=str(port),
        POLICYHUB_LOG_LEVEL="WARNING",
        POLICYHUB_DATABASE="policyhub_bench",
        POLICYHUB_SHUTDOWN_GRACE_SECONDS="1",
        # The benchmark measures the server, not the per-domain limit (all its calls are in one domain).
        POLICYHUB_RATE_LIMIT_DOMAIN_PER_SECOND="0",
    )
    if mongodb_uri:
        env["POLICYHUB_MONGODB_URI"] = mongodb_uri
    return env


# ---------------------------------------------------------------------------------------------- clients


def make_channel(address: str) -> grpc.Channel:
    """One channel, and thus one TCP/HTTP2 connection, per worker thread, as independent callers would have.

    A single shared channel would multiplex all threads onto one connection and add that connection's
    queuing to every number. gRPC shares subchannels (connections) between channels with equal arguments
    by default, so a local subchannel pool is needed to really get a connection each. What remains shared
    is the client process and its GIL: that overhead is paid by the health-check baseline too, which is why
    the table reports ratios.
    """
    return grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])


def label_of(index: int) -> str:
    return LABELS[index % len(LABELS)]


def seed_request(index: int) -> pb.CreatePolicyRequest:
    return json_format.ParseDict(
        {
            "policy_id": f"seed-{index:06d}",
            "name": f"Bench policy {index}",
            "domain_id": SEED_DOMAIN,
            "permissions": ["inventory.Server.read", f"svc{index % 5}.*"],
            "labels": [label_of(index)],
            "tags": {"tier": index % 4, "owner": f"user-{index % 50}"},
            "description": "seeded by bench_api.py",
        },
        pb.CreatePolicyRequest(),
    )


def seed(address: str, policies: int) -> None:
    """Creates the N policies with a few threads (seeding is set-up, not measured); any failure aborts."""
    from concurrent.futures import ThreadPoolExecutor

    with make_channel(address) as channel:
        stub = policy_pb2_grpc.PolicyStub(channel)
        pool = ThreadPoolExecutor(max_workers=SEED_WORKERS)
        try:
            for _ in pool.map(lambda i: stub.create(seed_request(i), timeout=CALL_TIMEOUT), range(policies)):
                pass
        finally:
            # On a failure or Ctrl-C, drop the creates not yet started instead of waiting for all of them.
            pool.shutdown(wait=True, cancel_futures=True)


def list_request(label: str) -> pb.PolicyQuery:
    query = query_pb2.Query(
        filter=[query_pb2.Filter(k="labels", v=struct_pb2.Value(string_value=label), o="eq")],
        page=query_pb2.Page(limit=LIST_PAGE),
    )
    return pb.PolicyQuery(domain_id=SEED_DOMAIN, query=query)


def stat_request() -> pb.PolicyStatQuery:
    group = query_pb2.AggregateGroup(
        keys=[query_pb2.AggregateGroupKey(key="labels", name="label")],
        fields=[query_pb2.AggregateGroupField(operator="count", name="count")],
    )
    query = query_pb2.StatisticsQuery(aggregate=[query_pb2.StatisticsAggregate(group=group)])
    return pb.PolicyStatQuery(domain_id=SEED_DOMAIN, query=query)


def check_seeded_data(address: str, policies: int) -> None:
    """Refuses to benchmark queries that return nothing: list and stat must see the seeded policies."""
    with make_channel(address) as channel:
        stub = policy_pb2_grpc.PolicyStub(channel)
        listed = stub.list(list_request(LABELS[0]), timeout=CALL_TIMEOUT)
        expected = len(range(0, policies, len(LABELS)))
        if listed.total_count != expected or len(listed.results) != min(LIST_PAGE, expected):
            raise RuntimeError(f"list saw {listed.total_count} / {len(listed.results)} policies, expected {expected}")
        stat = json_format.MessageToDict(stub.stat(stat_request(), timeout=CALL_TIMEOUT))
        counted = sum(row["count"] for row in stat["results"] if row.get("label") in ([label] for label in LABELS))
        if counted != policies:
            raise RuntimeError(f"stat counted {counted} seeded policies, expected {policies}: {stat}")


# Every factory builds its requests up front where it can, so the timed loop spends its client-side time
# in gRPC rather than in building messages (create alone needs a new id per call).


def health_call(channel: grpc.Channel, thread: int, concurrency: int) -> Call:
    stub, request = health_pb2_grpc.HealthStub(channel), health_pb2.HealthCheckRequest()
    return lambda: stub.Check(request, timeout=CALL_TIMEOUT)


def create_call(channel: grpc.Channel, thread: int, concurrency: int) -> Call:
    stub, counter = policy_pb2_grpc.PolicyStub(channel), iter(range(10**9))

    def call():
        # Unique across the run: the cell's concurrency, the thread and a per-thread counter.
        request = pb.CreatePolicyRequest(
            policy_id=f"c{concurrency}-t{thread}-{next(counter)}",
            name="Bench create",
            domain_id=CREATE_DOMAIN,
            permissions=["inventory.Server.read"],
        )
        request.labels.values.add(string_value=label_of(thread))
        return stub.create(request, timeout=CALL_TIMEOUT)

    return call


def get_call_factory(policies: int) -> CallFactory:
    def factory(channel: grpc.Channel, thread: int, concurrency: int) -> Call:
        stub, rng = policy_pb2_grpc.PolicyStub(channel), random.Random(thread)
        requests = [
            pb.GetRepositoryPolicyRequest(policy_id=f"seed-{i:06d}", domain_id=SEED_DOMAIN) for i in range(policies)
        ]
        return lambda: stub.get(rng.choice(requests), timeout=CALL_TIMEOUT)

    return factory


def update_call_factory(policies: int) -> CallFactory:
    """Updates a random seeded policy's description (a write of one policy: the compare-and-set on
    its live record, the revision bump and the audit entry)."""

    def factory(channel: grpc.Channel, thread: int, concurrency: int) -> Call:
        stub, rng, counter = policy_pb2_grpc.PolicyStub(channel), random.Random(thread), iter(range(10**9))

        def call():
            request = pb.UpdatePolicyRequest(
                policy_id=f"seed-{rng.randrange(policies):06d}",
                description=f"updated by thread {thread} at {concurrency}: {next(counter)}",
                domain_id=SEED_DOMAIN,
            )
            return stub.update(request, timeout=CALL_TIMEOUT)

        return call

    return factory


def list_call(channel: grpc.Channel, thread: int, concurrency: int) -> Call:
    stub, rng = policy_pb2_grpc.PolicyStub(channel), random.Random(thread)
    requests = [list_request(label) for label in LABELS]
    return lambda: stub.list(rng.choice(requests), timeout=CALL_TIMEOUT)


def stat_call(channel: grpc.Channel, thread: int, concurrency: int) -> Call:
    stub, request = policy_pb2_grpc.PolicyStub(channel), stat_request()
    return lambda: stub.stat(request, timeout=CALL_TIMEOUT)


# ---------------------------------------------------------------------------------------------- measuring


@dataclass
class Cell:
    operation: str
    concurrency: int
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: collections.Counter = field(default_factory=collections.Counter)

    @property
    def calls_per_second(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def percentile_ms(self, fraction: float) -> float:
        """Nearest-rank percentile of the successful calls, in milliseconds."""
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)] * 1000


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        return f"{exc.code().name}: {(exc.details() or '')[:100]}"
    return f"{type(exc).__name__}: {str(exc)[:100]}"


class Clock:
    """The measuring window of one cell, fixed when the last thread has finished its warm-up."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.began = self.deadline = math.nan

    def start(self) -> None:
        self.began = time.perf_counter()
        self.deadline = self.began + self.seconds


def worker(call: Call, ready: threading.Barrier, clock: Clock, cell: Cell, lock: threading.Lock) -> None:
    latencies: list[float] = []
    errors: collections.Counter = collections.Counter()

    def timed_call() -> None:
        began = time.perf_counter()
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - every failure is counted and shown, none hidden
            errors[describe_error(exc)] += 1
            return
        latencies.append(time.perf_counter() - began)

    for _ in range(WARMUP_CALLS):
        timed_call()
    latencies.clear()  # warm-up failures stay counted
    try:
        ready.wait()  # bounded by the barrier's timeout; its action starts the clock
    except threading.BrokenBarrierError:
        errors["warm-up did not finish in time"] += 1
    else:
        while time.perf_counter() < clock.deadline:
            timed_call()
    with lock:
        cell.latencies.extend(latencies)
        cell.errors.update(errors)
        cell.elapsed = max(cell.elapsed, time.perf_counter() - clock.began)


def run_cell(address: str, operation: str, factory: CallFactory, concurrency: int, seconds: float) -> Cell:
    """Every thread warms up, then all call in a loop from the same moment until the same deadline.

    calls/s is the successful calls over the time from the start until the last thread finished (its last
    call may run past the deadline), so a slow tail is not hidden by a short denominator.
    """
    cell, clock, lock = Cell(operation, concurrency), Clock(seconds), threading.Lock()
    warmup_bound = WARMUP_CALLS * CALL_TIMEOUT + 5
    ready = threading.Barrier(concurrency, action=clock.start, timeout=warmup_bound)
    channels = [make_channel(address) for _ in range(concurrency)]
    try:
        threads = [
            threading.Thread(
                target=worker,
                daemon=True,
                name=f"bench-{operation}-{index}",
                args=(factory(channel, index, concurrency), ready, clock, cell, lock),
            )
            for index, channel in enumerate(channels)
        ]
        for thread in threads:
            thread.start()
        give_up = time.perf_counter() + warmup_bound + seconds + CALL_TIMEOUT + 5
        for thread in threads:
            thread.join(timeout=max(0.0, give_up - time.perf_counter()))
        if any(thread.is_alive() for thread in threads):
            with lock:
                cell.errors["worker thread did not finish in time"] += 1
    finally:
        for channel in channels:
            channel.close()
    return cell


# ---------------------------------------------------------------------------------------------- report


def operations(policies: int) -> list[tuple[str, CallFactory]]:
    return [
        ("health.Check", health_call),
        ("Policy.create", create_call),
        ("Policy.get", get_call_factory(policies)),
        ("Policy.list", list_call),
        ("Policy.stat", stat_call),
        ("Policy.update", update_call_factory(policies)),
    ]


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}" if base and not math.isnan(value) and not math.isnan(base) else "-"


def ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def print_table(cells: list[Cell]) -> None:
    """Each row next to the health check at the same concurrency.

    x thru = calls/s of the operation / calls/s of the health check (1.00: as fast as a no-op RPC);
    x p50  = p50 of the operation / p50 of the health check (how many no-op RPCs one call costs).
    """
    baseline = {cell.concurrency: cell for cell in cells if cell.operation == "health.Check"}
    header = (
        f"{'operation':<17} {'conc':>4} {'calls/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'x thru':>7} {'x p50':>6} "
        f"{'errors':>6}"
    )
    print(header)
    print("-" * len(header))
    for cell in cells:
        base = baseline[cell.concurrency]
        p50 = cell.percentile_ms(0.50)
        print(
            f"{cell.operation:<17} {cell.concurrency:>4} {cell.calls_per_second:>9.0f} {ms(p50):>8} "
            f"{ms(cell.percentile_ms(0.99)):>8} {ratio(cell.calls_per_second, base.calls_per_second):>7} "
            f"{ratio(p50, base.percentile_ms(0.50)):>6} {sum(cell.errors.values()):>6}"
        )
    print("x thru = calls/s / health calls/s, x p50 = p50 / health p50, at the same concurrency in this run")


def print_errors(cells: list[Cell], where: str = "") -> int:
    """Prints the failed calls of each cell (`where` says which run, e.g. `, S=1,000`)."""
    failed = [cell for cell in cells if cell.errors]
    for cell in failed:
        print(f"errors in {cell.operation} at concurrency {cell.concurrency}{where}:")
        for message, count in cell.errors.most_common():
            print(f"  {count:>6} x {message}")
    if failed:
        print(f"FAILED: {len(failed)} cell(s) had failed calls", file=sys.stderr)
    return len(failed)


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backend",
        choices=("mongomock", "wire"),
        default="mongomock",
        help="embedded mongomock store (default) or a secantusdb wire-protocol server",
    )
    parser.add_argument("--policies", type=int, default=None, help="policies seeded in the domain (default 1000)")
    parser.add_argument("--seconds", type=float, default=None, help="measuring time per cell (default 3)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 s per cell, 200 policies")
    args = parser.parse_args(argv)
    # Explicit values win over --quick.
    args.policies = args.policies if args.policies is not None else (200 if args.quick else 1000)
    args.seconds = args.seconds if args.seconds is not None else (1.0 if args.quick else 3.0)
    if args.policies < len(LABELS) or args.seconds <= 0:
        parser.error(f"--policies must be at least {len(LABELS)} and --seconds positive")
    return args


def benchmark(address: str, args: argparse.Namespace) -> list[Cell]:
    began = time.perf_counter()
    seed(address, args.policies)
    check_seeded_data(address, args.policies)
    print(f"seeded {args.policies} policies in {time.perf_counter() - began:.1f} s", flush=True)
    cells = []
    # Concurrency-major order: each baseline is measured right before the operations compared with it.
    for concurrency in CONCURRENCIES:
        for name, factory in operations(args.policies):
            cells.append(run_cell(address, name, factory, concurrency, args.seconds))
    return cells


def interrupt_on_sigterm() -> None:
    """SIGTERM would end Python without running `finally`; make it a KeyboardInterrupt like Ctrl-C."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def start_servers(backend: str, processes: list[subprocess.Popen], settings: dict[str, str] | None = None) -> str:
    """Optional secantusdb, then policyhub (with `settings`, extra POLICYHUB_* variables); appended
    to `processes` as started so the caller's finally stops whatever did start."""
    return start_policyhub(start_database(processes) if backend == "wire" else "", processes, settings)


def start_database(processes: list[subprocess.Popen]) -> str:
    """A secantusdb wire-protocol server, appended to `processes`; returns its MongoDB URI."""
    db_port = free_port()
    # secantusdb's storage engine cache defaults to 1 GB, and writes past it fail with an internal
    # error (WT_CACHE_FULL: at ~700k assignments with 100k policies); the scale rows need more.
    process, log = start_process(
        [str(BIN / "secantusd-py"), "--host", HOST, "--port", str(db_port), "--storage-path", ":memory:"]
        + ["--cache-size", DATABASE_CACHE]
    )
    processes.append(process)
    uri = f"mongodb://{HOST}:{db_port}"
    wait_for_wire_db(process, log, uri)
    return uri


def start_policyhub(uri: str, processes: list[subprocess.Popen], settings: dict[str, str] | None = None) -> str:
    """policyhub on `uri` (empty: the embedded store), appended to `processes`; returns its address."""
    port = free_port()
    process, log = start_process(
        [sys.executable, "-m", "policyhub"], env={**policyhub_env(port, uri), **(settings or {})}
    )
    processes.append(process)
    address = f"{HOST}:{port}"
    wait_for_policyhub(process, log, address)
    return address


def stop_servers(processes: list[subprocess.Popen]) -> None:
    """policyhub before its database; empties the list."""
    while processes:
        stop_process(processes.pop())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    interrupt_on_sigterm()
    print(
        f"policyhub API benchmark: nproc={len(os.sched_getaffinity(0))} backend={args.backend} "
        f"N={args.policies} seconds/cell={args.seconds:g} python={platform.python_version()} "
        f"grpcio={grpc.__version__}",
        flush=True,
    )
    processes: list[subprocess.Popen] = []  # stopped in reverse: policyhub before its database
    try:
        cells = benchmark(start_servers(args.backend, processes), args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (RuntimeError, grpc.RpcError) as exc:
        print(f"bench_api: {describe_error(exc) if isinstance(exc, grpc.RpcError) else exc}", file=sys.stderr)
        return 1
    finally:
        stop_servers(processes)
    print_table(cells)
    return 1 if print_errors(cells) else 0


if __name__ == "__main__":
    sys.exit(main())
