"""Scale benchmark: how the cost of each call grows with the size of one domain, and SpaceONE-style
sequential workloads, each as a ratio to grpc.health.v1.Health/Check measured in the same run.

Scale section (the MongoDB wire protocol by default: a secantusdb server started alongside `python -m
policyhub`, both fresh for each size): one domain is seeded with N policies and A = N x
--assignments-per-policy assignments (user -> policy) through Bulk/import_domain (MERGE streams of at most
IMPORT_ITEMS items: bulk inserts, never one RPC per item; on the wire protocol by a seeding server whose bound on
database calls fits the import, then the measured server starts on the seeded database), then, one call at a time:

- health: grpc.health.v1.Health/Check, the baseline;
- first check: the first Assignment/check after seeding (builds the domain's evaluation index), once: repeated
  while it answers UNAVAILABLE because the build outlasts a call's bound, and timed to the answer;
- get: Policy.get of a random seeded policy;
- list: Policy.list filtered by label, a page of 10 (with its total_count);
- stat: Policy.stat, count per label (a group by);
- check (warm): Assignment/check of a user holding a policy, the index built;
- update / check after write: Policy.update of one policy's permissions, then Assignment/check, repeated.

Each line gives calls, p50 and p99 latency, `x health` = health p50 / p50 (1.00: as fast as a no-op RPC; the
targets below are in this sense) and `cost` = p50 / health p50. The memory line gives the server's RSS
(/proc/<pid>/status VmRSS, its worker processes included) after seeding and after the first check, and their
difference: what the domain's evaluation index holds. Then the targets, each PASS or MISS: get >= 0.4x health,
list page >= 0.2x health, check after a write <= 3x warm check; at the end, how each p50 grew from the smallest
size to the largest. A measured server that cannot start, or a call that fails, ends the run with exit 1 (with
the defaults, a database call that outlasts db_timeout_ms answers UNAVAILABLE), after the other sizes and
sections have run. The server runs with its defaults (`--set KEY=VALUE` passes a POLICYHUB_KEY setting, e.g.
`--set db_timeout_ms=60000` to see how long what times out would have taken).

Sequential section, on the embedded store and on the wire protocol: N Policy.create, then N get, list and stat,
one call at a time (as SpaceONE's repository service is driven by its own client), each with calls/s next to
the health check's calls/s measured just before it; and, when SpaceONE's client is installed
(tests/spaceone/.venv, created by tests/api/test_spaceone_client.py, or --spaceone-python), the same calls
through spaceone-core's client (tests/spaceone/sequential.py) on the server's SpaceONE listener.

With `--peer HOST:PORT` (SpaceONE's client needed), the sequential section then runs the same SpaceONE-client
workload on SpaceONE's own repository service, started beforehand (the "peer"), in a domain of its own per run:
its Policy.list names the local repository (which the benchmark registers when the peer has none, as its
Policy.create needs one), and an operation it does not implement is shown as such, not measured
(spaceone-repository 1.12.5 has no Policy.stat). Then, per call, policyhub's calls/s over the peer's, both through
SpaceONE's client in this run, on each backend, with PASS/MISS for the target create, get and list >= 3x the peer;
the health row compares the health checks. The peer, on a secantusdb server (no Redis, no identity service:
no handlers), from a virtualenv outside the repository:

    mkdir -p /tmp/peer && cd /tmp/peer
    python3 -m venv venv
    venv/bin/pip install spaceone-repository==1.12.5 spaceone-core==1.12.39 spaceone-api==1.12.54 protobuf==3.20.3
    cat > repository.yml <<'EOF'
    GLOBAL:
      DATABASES:
        default:
          db: repository
          host: mongodb://127.0.0.1:27117/
          username: ''
          password: ''
      CACHES:
        default: {}
      HANDLERS: {}
      LOG:
        loggers:
          spaceone:
            level: INFO
    EOF
    cd -  # back to the repository
    .venv/bin/secantusd-py --host 127.0.0.1 --port 27117 --storage-path :memory: &> /tmp/peer/db.log &
    /tmp/peer/venv/bin/spaceone grpc spaceone.repository -p 50151 -c /tmp/peer/repository.yml &> /tmp/peer/peer.log &
    .venv/bin/python tests/bench/bench_scale.py --sections sequential --peer 127.0.0.1:50151

In that configuration the empty user replaces the package's own ("repository"), `CACHES: default: {}` leaves
only the in-process cache (no Redis), `HANDLERS: {}` keeps spaceone-core's empty handler lists (no
authentication, authorization or mutation: no identity service), and INFO drops the peer's per-call DEBUG lines.

    .venv/bin/python tests/bench/bench_scale.py [--sizes 1000,10000] [--assignments-per-policy 10]
        [--backend wire|mongomock] [--sequential N] [--sections scale,sequential] [--peer HOST:PORT] [--quick]

`make bench` runs the default sizes, 1k and 10k policies (110k items to seed at 10k: a few minutes on the wire
protocol, ten on a busy 2-CPU machine). The 100k row (100k policies, 1M assignments: 1.1M items, from 15 minutes
of seeding on 2 idle CPUs, secantusdb being the bottleneck) runs alone:

    .venv/bin/python tests/bench/bench_scale.py --sizes 100000 --sections scale

`--backend mongomock` seeds the embedded store through the measured server itself, for small sizes only: that
store checks unique indexes by scanning on every insert (2,200 items took two minutes on 2 busy CPUs).

All traffic goes to 127.0.0.1. Everything is bounded: seeding by --seed-timeout, every call by CALL_TIMEOUT,
every line by --cell-seconds (after which no new call starts); the servers are stopped on exit, errors and
Ctrl-C. Exits 1 if any call failed (each failure is shown with its line); nothing asserts on time.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import grpc
from bench_api import (
    Cell,
    describe_error,
    free_port,
    interrupt_on_sigterm,
    make_channel,
    print_errors,
    start_database,
    start_policyhub,
    start_servers,
    stop_process,
    stop_servers,
)
from google.protobuf import field_mask_pb2, json_format, struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from policyhub._gen.spaceone.api.core.v1 import query_pb2
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2 as apb
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2_grpc, bulk_pb2_grpc, policy_pb2_grpc
from policyhub._gen.spaceone.api.repository.v1 import bulk_pb2 as bpb
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]
SPACEONE_PYTHON = ROOT / "tests" / "spaceone" / ".venv" / "bin" / "python"
SPACEONE_DRIVER = ROOT / "tests" / "spaceone" / "sequential.py"
DOMAIN = "bench-scale"
SEQUENTIAL_DOMAIN = "bench-sequential"
LABELS = [f"team-{i}" for i in range(10)]
SERVICES = 100  # policy i allows svc{i % SERVICES}.*
# Well within the server's default import caps (200,000 items, 64 MiB) and message size (4 MiB: ~70 bytes
# per assignment, ~150 per policy).
IMPORT_ITEMS = 100_000
MESSAGE_ITEMS = 20_000
CALL_TIMEOUT = 60.0
# The first check waits this long at most for the domain's index to be built (the server's build limit,
# index_build_timeout_ms, is 300 s), repeating while it answers UNAVAILABLE with INDEX_BUILDING.
FIRST_CHECK_SECONDS = 360.0
INDEX_BUILDING = "evaluation index is being brought up to date"
WARMUP_CALLS = 1
TARGET_GET = 0.4  # get >= 0.4x health
TARGET_LIST = 0.2  # list page >= 0.2x health
TARGET_CHECK_AFTER_WRITE = 3.0  # check after a write <= 3x warm check
TARGET_PEER = 3.0  # create, get and list >= 3x the calls/s of SpaceONE's repository service (--peer)
PEER_TARGETS = ("create", "get", "list")

Call = Callable[[], object]


# ---------------------------------------------------------------------------------------------- seeding


def policy_id(index: int) -> str:
    return f"p{index:06d}"


def user_id(index: int) -> str:
    return f"u{index:07d}"


def label_of(index: int) -> str:
    return LABELS[index % len(LABELS)]


def permissions_of(index: int) -> list[str]:
    return [f"svc{index % SERVICES}.*", "inventory.Server.read"]


def seed_items(policies: int, assignments: int) -> Iterator[bpb.BulkItem]:
    """The policies first (an import checks that the policies its assignments grant exist), then user j
    holding policy j % N."""
    for i in range(policies):
        labels = struct_pb2.ListValue()
        labels.append(label_of(i))
        tags = struct_pb2.Struct()
        tags.update({"tier": str(i % 4), "owner": f"user-{i % 50}"})
        yield bpb.BulkItem(
            policy=bpb.BulkPolicy(
                policy_id=policy_id(i),
                name=f"Scale policy {i}",
                permissions=permissions_of(i),
                labels=labels,
                tags=tags,
            )
        )
    for j in range(assignments):
        yield bpb.BulkItem(
            assignment=bpb.BulkAssignment(
                subject=apb.Subject(type=apb.Subject.USER, id=user_id(j)),
                grant=apb.Grant(type=apb.Grant.POLICY, id=policy_id(j % policies)),
            )
        )


def import_streams(items: Iterator[bpb.BulkItem]) -> Iterator[list[bpb.BulkChunk]]:
    """MERGE imports of at most IMPORT_ITEMS items each, in messages of MESSAGE_ITEMS."""
    batch: list[bpb.BulkItem] = []
    for item in items:
        batch.append(item)
        if len(batch) == IMPORT_ITEMS:
            yield chunks(batch)
            batch = []
    if batch:
        yield chunks(batch)


def chunks(items: list[bpb.BulkItem]) -> list[bpb.BulkChunk]:
    header = bpb.BulkChunk(header=bpb.BulkHeader(domain_id=DOMAIN, mode=bpb.BulkHeader.MERGE))
    return [header] + [bpb.BulkChunk(items=items[i : i + MESSAGE_ITEMS]) for i in range(0, len(items), MESSAGE_ITEMS)]


def seed(channel: grpc.Channel, policies: int, assignments: int, timeout: float) -> float:
    """Imports the domain; any refusal, or running past `timeout`, aborts the run. Returns the seconds taken."""
    bulk = bulk_pb2_grpc.BulkStub(channel)
    began = time.perf_counter()
    deadline = began + timeout
    created = 0
    for stream in import_streams(seed_items(policies, assignments)):
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise RuntimeError(f"seeding took longer than --seed-timeout {timeout:g} s ({created:,} items imported)")
        answer = bulk.import_domain(iter(stream), timeout=remaining)
        if answer.refused_count:
            raise RuntimeError(f"the import refused {answer.refused_count} items: {answer}")
        created += answer.policies.created + answer.assignments.created
    if created != policies + assignments:
        raise RuntimeError(f"the imports created {created:,} items, expected {policies + assignments:,}")
    return time.perf_counter() - began


# ---------------------------------------------------------------------------------------------- requests


def list_request(domain_id: str, label: str) -> pb.PolicyQuery:
    query = query_pb2.Query(
        filter=[query_pb2.Filter(k="labels", v=struct_pb2.Value(string_value=label), o="eq")],
        page=query_pb2.Page(limit=10),
    )
    return pb.PolicyQuery(domain_id=domain_id, query=query)


def stat_request(domain_id: str) -> pb.PolicyStatQuery:
    group = query_pb2.AggregateGroup(
        keys=[query_pb2.AggregateGroupKey(key="labels", name="label")],
        fields=[query_pb2.AggregateGroupField(operator="count", name="count")],
    )
    query = query_pb2.StatisticsQuery(aggregate=[query_pb2.StatisticsAggregate(group=group)])
    return pb.PolicyStatQuery(domain_id=domain_id, query=query)


def check_request() -> apb.CheckRequest:
    """User 0 holds policy 0, which allows svc0.*."""
    return apb.CheckRequest(
        subject=apb.Subject(type=apb.Subject.USER, id=user_id(0)),
        action="svc0.Thing.get",
        resource="r/1",
        domain_id=DOMAIN,
    )


def create_request(domain_id: str, index: int) -> pb.CreatePolicyRequest:
    return json_format.ParseDict(
        {
            "policy_id": f"s-{index:06d}",
            "name": f"Sequential policy {index}",
            "permissions": ["inventory.Server.read", f"svc{index % 5}.*"],
            "labels": [label_of(index)],
            "tags": {"tier": str(index % 4)},
            "domain_id": domain_id,
        },
        pb.CreatePolicyRequest(),
    )


def verify_scale(channel: grpc.Channel, policies: int) -> None:
    """Refuses to measure calls that do not answer as seeded (an empty list is fast and says nothing). A call
    that fails here is not checked: its own line counts and shows its failures."""
    stub = policy_pb2_grpc.PolicyStub(channel)
    expected = len(range(0, policies, len(LABELS)))
    last = policy_id(policies - 1)

    def get() -> str | None:
        got = stub.get(pb.GetRepositoryPolicyRequest(policy_id=last, domain_id=DOMAIN), timeout=CALL_TIMEOUT)
        return None if got.policy_id == last else f"get answered {got.policy_id!r}"

    def listed() -> str | None:
        page = stub.list(list_request(DOMAIN, LABELS[0]), timeout=CALL_TIMEOUT)
        if page.total_count == expected and len(page.results) == min(10, expected):
            return None
        return f"list saw {page.total_count} / {len(page.results)}, expected {expected} / 10"

    def stat() -> str | None:
        rows = json_format.MessageToDict(stub.stat(stat_request(DOMAIN), timeout=CALL_TIMEOUT))["results"]
        counted = sum(row["count"] for row in rows if row.get("label") in ([label] for label in LABELS))
        return None if counted == policies else f"stat counted {counted}, expected {policies}"

    problems = []
    for verify in (get, listed, stat):
        try:
            problem = verify()
        except grpc.RpcError:
            continue
        if problem:
            problems.append(problem)
    if problems:
        raise RuntimeError("the seeded domain does not answer as seeded: " + "; ".join(problems))


def verify_check(answer: apb.CheckResult) -> None:
    if answer.decision != apb.CheckResult.ALLOW or answer.policy_id != policy_id(0):
        decision = apb.CheckResult.Decision.Name(answer.decision)
        raise RuntimeError(f"check of {user_id(0)} answered {decision} by {answer.policy_id!r}, expected ALLOW by p0")


# ---------------------------------------------------------------------------------------------- measuring


def timed(cell: Cell, call: Call) -> object | None:
    """One call into `cell`: its latency on success, its error (counted by text) on failure."""
    began = time.perf_counter()
    try:
        result = call()
    except grpc.RpcError as exc:
        cell.errors[describe_error(exc)] += 1
        return None
    cell.latencies.append(time.perf_counter() - began)
    return result


def measure(name: str, call: Call, calls: int, seconds: float, warmup: int = WARMUP_CALLS) -> Cell:
    """`warmup` untimed calls (failures still counted), then up to `calls` calls one after the other, none
    started after `seconds`; calls/s is over the measured calls' whole time."""
    cell = Cell(name, 1)
    for _ in range(warmup):
        timed(cell, call)
    cell.latencies.clear()
    began = time.perf_counter()
    for _ in range(calls):
        if time.perf_counter() - began > seconds:
            break
        timed(cell, call)
    cell.elapsed = time.perf_counter() - began
    return cell


def rss_kib(pid: int) -> int:
    """VmRSS of the process and of its descendants (server worker processes), in KiB."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # The parent pid is the 2nd field after the command, which is in parentheses and may hold spaces.
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return total


def p50(cell: Cell) -> float:
    return cell.percentile_ms(0.50)


def speed(base: float, value: float) -> float:
    """base / value: how many times as fast as the baseline (nan when either is missing)."""
    return base / value if value and not math.isnan(value) and not math.isnan(base) else math.nan


def fmt(value: float, digits: int = 2) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


# ---------------------------------------------------------------------------------------------- scale


@dataclass
class SizeRun:
    policies: int
    assignments: int
    seed_seconds: float = math.nan
    rss_started: int = 0
    rss_seeded: int = 0
    rss_indexed: int = 0
    first_check_retries: int = 0
    cells: list[Cell] = field(default_factory=list)

    def cell(self, name: str) -> Cell:
        return next(cell for cell in self.cells if cell.operation == name)


def run_size(args: argparse.Namespace, policies: int) -> SizeRun:
    run = SizeRun(policies, policies * args.assignments_per_policy)
    processes: list[subprocess.Popen] = []
    try:
        uri = start_database(processes) if args.backend == "wire" else ""
        if uri:
            # The wire backend's data outlives a server: a seeding server imports with a bound on each database
            # call that fits the import (its batches outgrow the default on a busy machine), then the measured
            # server starts on the seeded database with its own settings and a memory of its own.
            bound = str(int(args.seed_timeout * 1000))
            seeder = start_policyhub(
                uri, processes, {"POLICYHUB_DB_TIMEOUT_MS": bound, "POLICYHUB_DB_QUERY_TIMEOUT_MS": bound}
            )
            with make_channel(seeder) as channel:
                run.seed_seconds = seed(channel, run.policies, run.assignments, args.seed_timeout)
            stop_process(processes.pop())
        address = start_policyhub(uri, processes, args.settings)
        pid = processes[-1].pid
        run.rss_started = rss_kib(pid)
        with make_channel(address) as channel:
            if not uri:
                run.seed_seconds = seed(channel, run.policies, run.assignments, args.seed_timeout)
            print(
                f"  seeded {run.policies:,} policies and {run.assignments:,} assignments in {run.seed_seconds:.1f} s",
                flush=True,
            )
            verify_scale(channel, policies)
            run.rss_seeded = rss_kib(pid)
            run.cells = scale_cells(channel, args, policies, pid, run)
    finally:
        stop_servers(processes)
    return run


def scale_cells(channel: grpc.Channel, args: argparse.Namespace, policies: int, pid: int, run: SizeRun) -> list[Cell]:
    health = health_pb2_grpc.HealthStub(channel)
    policy = policy_pb2_grpc.PolicyStub(channel)
    assignment = assignment_pb2_grpc.AssignmentStub(channel)
    health_request, check = health_pb2.HealthCheckRequest(), check_request()
    rng = random.Random(policies)
    gets = [pb.GetRepositoryPolicyRequest(policy_id=policy_id(i), domain_id=DOMAIN) for i in range(policies)]
    lists = [list_request(DOMAIN, label) for label in LABELS]
    stat = stat_request(DOMAIN)
    calls, seconds = args.calls, args.cell_seconds
    cells = [measure("health", lambda: health.Check(health_request, timeout=CALL_TIMEOUT), calls, seconds)]

    first, answer = first_check(lambda: assignment.check(check, timeout=CALL_TIMEOUT), run)
    run.rss_indexed = rss_kib(pid)
    if isinstance(answer, apb.CheckResult):
        verify_check(answer)
    cells.append(first)

    cells.append(measure("get", lambda: policy.get(rng.choice(gets), timeout=CALL_TIMEOUT), calls, seconds))
    cells.append(
        measure("list page of 10", lambda: policy.list(rng.choice(lists), timeout=CALL_TIMEOUT), calls, seconds)
    )
    cells.append(measure("stat group by", lambda: policy.stat(stat, timeout=CALL_TIMEOUT), calls, seconds))
    cells.append(measure("check (warm)", lambda: assignment.check(check, timeout=CALL_TIMEOUT), calls, seconds))
    cells.extend(write_then_check(policy, assignment, check, policies, args))
    return cells


def first_check(call: Call, run: SizeRun) -> tuple[Cell, object | None]:
    """The first check of the seeded domain, which builds its evaluation index. A call that the build
    outlasts answers UNAVAILABLE (retry) once its bound (db_timeout_ms) is spent while the build goes on, so
    the check is repeated until it answers, for at most FIRST_CHECK_SECONDS: the cell's one latency is the
    time from the first call to the answer, and `run.first_check_retries` how many calls answered so."""
    cell = Cell("first check", 1)
    began = time.perf_counter()
    while True:
        try:
            answer = call()
        except grpc.RpcError as exc:
            building = exc.code() == grpc.StatusCode.UNAVAILABLE and INDEX_BUILDING in (exc.details() or "")
            if building and time.perf_counter() - began < FIRST_CHECK_SECONDS:
                run.first_check_retries += 1
                continue
            cell.errors[describe_error(exc)] += 1
            return cell, None
        cell.latencies.append(time.perf_counter() - began)
        return cell, answer


def write_then_check(
    policy: policy_pb2_grpc.PolicyStub,
    assignment: assignment_pb2_grpc.AssignmentStub,
    check: apb.CheckRequest,
    policies: int,
    args: argparse.Namespace,
) -> list[Cell]:
    """Policy.update of the last policy's permissions (a change that can change decisions, so every cached
    index of the domain is stale), then the check; repeated, toggling between two permission lists."""
    update, after = Cell("update", 1), Cell("check after write", 1)
    target = policies - 1
    began = time.perf_counter()
    for round_ in range(args.write_rounds):
        if time.perf_counter() - began > args.cell_seconds:
            break
        extra = ["extra.Thing.read"] if round_ % 2 == 0 else []
        request = pb.UpdatePolicyRequest(
            policy_id=policy_id(target),
            domain_id=DOMAIN,
            permissions=permissions_of(target) + extra,
            update_mask=field_mask_pb2.FieldMask(paths=["permissions"]),
        )
        timed(update, lambda request=request: policy.update(request, timeout=CALL_TIMEOUT))
        timed(after, lambda: assignment.check(check, timeout=CALL_TIMEOUT))
    update.elapsed = after.elapsed = time.perf_counter() - began
    return [update, after]


def print_size(run: SizeRun) -> None:
    base = p50(run.cell("health"))
    header = f"{'operation':<18} {'calls':>6} {'p50 ms':>9} {'p99 ms':>9} {'x health':>9} {'cost':>9} {'errors':>6}"
    print(header)
    print("-" * len(header))
    for cell in run.cells:
        value = p50(cell)
        print(
            f"{cell.operation:<18} {len(cell.latencies):>6} {fmt(value):>9} {fmt(cell.percentile_ms(0.99)):>9} "
            f"{fmt(speed(base, value), 3):>9} {fmt(speed(value, base), 1):>9} {sum(cell.errors.values()):>6}"
        )
    mib = 1024
    print(
        f"memory (server RSS): started {run.rss_started / mib:.0f} MiB, seeded {run.rss_seeded / mib:.0f} MiB, "
        f"after the first check {run.rss_indexed / mib:.0f} MiB: the index holds "
        f"~{(run.rss_indexed - run.rss_seeded) / mib:.0f} MiB"
    )
    if run.first_check_retries:
        print(
            f"first check: {run.first_check_retries} call(s) answered UNAVAILABLE (retry) while the index was built, "
            "then one answered; its latency is the whole wait"
        )
    print("x health = health p50 / p50 (1.00: as fast as a no-op RPC), cost = p50 / health p50, in this run")
    targets = [
        ("get", speed(base, p50(run.cell("get"))), f">= {TARGET_GET}x health", lambda r: r >= TARGET_GET),
        (
            "list page of 10",
            speed(base, p50(run.cell("list page of 10"))),
            f">= {TARGET_LIST}x health",
            lambda r: r >= TARGET_LIST,
        ),
        (
            "check after write",
            speed(p50(run.cell("check after write")), p50(run.cell("check (warm)"))),
            f"<= {TARGET_CHECK_AFTER_WRITE:g}x warm check",
            lambda r: r <= TARGET_CHECK_AFTER_WRITE,
        ),
    ]
    for name, value, wanted, met in targets:
        verdict = "PASS" if not math.isnan(value) and met(value) else "MISS"
        print(f"{verdict} N={run.policies:,}: {name} {fmt(value, 3)}x, target {wanted}")


def print_growth(runs: list[SizeRun]) -> None:
    """p50 at the largest size / p50 at the smallest, per operation: what grows with the domain."""
    small, large = runs[0], runs[-1]
    print(
        f"\ngrowth from N={small.policies:,} to N={large.policies:,} "
        f"({large.policies / small.policies:g}x the policies):"
    )
    for cell in small.cells:
        before, after = p50(cell), p50(large.cell(cell.operation))
        print(f"  {cell.operation:<18} p50 {fmt(before):>9} -> {fmt(after):>9} ms  ({fmt(speed(after, before), 1)}x)")


# ---------------------------------------------------------------------------------------------- sequential


def sequential_ours(address: str, domain_id: str, args: argparse.Namespace) -> list[Cell]:
    """N creates, then N gets, lists and stats, one call at a time, each after a health baseline of its own."""
    count, seconds = args.sequential, args.cell_seconds
    cells = []
    with make_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        policy = policy_pb2_grpc.PolicyStub(channel)
        health_request = health_pb2.HealthCheckRequest()
        creates = iter([create_request(domain_id, i) for i in range(count)])
        created: list[pb.GetRepositoryPolicyRequest] = []
        # get walks what was created (the creates may have stopped at their deadline), each in turn.
        gets = itertools.cycle(created)

        def create() -> None:
            request = next(creates)
            policy.create(request, timeout=CALL_TIMEOUT)
            created.append(pb.GetRepositoryPolicyRequest(policy_id=request.policy_id, domain_id=domain_id))

        lists = [list_request(domain_id, label) for label in LABELS]
        list_index = iter(range(10**9))
        stat = stat_request(domain_id)
        operations: list[tuple[str, Call, int]] = [
            ("create", create, 0),
            ("get", lambda: policy.get(next(gets), timeout=CALL_TIMEOUT), 0),
            ("list", lambda: policy.list(lists[next(list_index) % len(lists)], timeout=CALL_TIMEOUT), 1),
            ("stat", lambda: policy.stat(stat, timeout=CALL_TIMEOUT), 1),
        ]
        for name, call, warmup in operations:
            if name == "get" and not created:
                continue  # every create failed, and their line shows why
            cell = measure(
                f"health before {name}", lambda: health.Check(health_request, timeout=CALL_TIMEOUT), count, seconds
            )
            cells.append(cell)
            # create walks its ids once, and get what was created: no untimed warm-up call leaves one out.
            cells.append(measure(name, call, count, seconds, warmup=warmup))
    return cells


def sequential_spaceone(
    address: str, domain_id: str, args: argparse.Namespace, peer: bool = False
) -> tuple[list[Cell], dict[str, str]]:
    """The same workload through spaceone-core's client (tests/spaceone/sequential.py in its own virtualenv),
    on policyhub's SpaceONE listener or, with `peer`, on SpaceONE's repository service; returns the cells and
    the operations the server does not implement (with their error)."""
    bound = 8 * (args.cell_seconds + CALL_TIMEOUT) + 60  # 8 lines, each stopped after its seconds
    result = subprocess.run(
        [
            str(args.spaceone_python),
            str(SPACEONE_DRIVER),
            address,
            domain_id,
            str(args.sequential),
            str(args.cell_seconds),
            str(CALL_TIMEOUT),
            *(["--peer"] if peer else []),
        ],
        cwd=SPACEONE_DRIVER.parent,
        capture_output=True,
        text=True,
        timeout=bound,
    )
    lines = result.stdout.strip().splitlines()
    out = json.loads(lines[-1]) if result.returncode == 0 and lines else {"ok": False, "error": result.stderr[-2000:]}
    if not out["ok"]:
        raise RuntimeError(f"SpaceONE client: {out['error']}")
    cells = []
    for item in out["cells"]:
        cell = Cell(item["operation"], 1, elapsed=item["elapsed"], latencies=item["latencies"])
        cell.errors.update(item["errors"])
        cells.append(cell)
    return cells, out["unimplemented"]


def print_sequential(
    backend: str, client: str, count: int, cells: list[Cell], unimplemented: dict[str, str] | None = None
) -> int:
    """The table of one backend and client; returns how many lines had failed calls."""
    print(f"\n{backend}, {client}, concurrency 1, N={count}:")
    header = f"{'operation':<8} {'calls':>6} {'calls/s':>9} {'p50 ms':>8} {'health/s':>9} {'x health':>9} {'errors':>6}"
    print(header)
    print("-" * len(header))
    for base, cell in zip(cells[::2], cells[1::2], strict=True):
        print(
            f"{cell.operation:<8} {len(cell.latencies):>6} {cell.calls_per_second:>9.1f} {fmt(p50(cell)):>8} "
            f"{base.calls_per_second:>9.1f} {fmt(speed(cell.calls_per_second, base.calls_per_second), 3):>9} "
            f"{sum(cell.errors.values()) + sum(base.errors.values()):>6}"
        )
    for operation, error in (unimplemented or {}).items():
        print(f"{operation:<8} not implemented by this server, not measured ({error})")
    return print_errors(cells, f", {backend}, {client}")


def rates(cells: list[Cell]) -> dict[str, tuple[float, float]]:
    """Per operation: calls/s and x health (over the health line just before it); `health`: every health
    line's calls over their whole time."""
    result = {
        cell.operation: (cell.calls_per_second, speed(cell.calls_per_second, base.calls_per_second))
        for base, cell in zip(cells[::2], cells[1::2], strict=True)
    }
    health = cells[::2]
    elapsed = sum(cell.elapsed for cell in health)
    result["health"] = (sum(len(cell.latencies) for cell in health) / elapsed if elapsed else math.nan, 1.0)
    return result


def print_versus_peer(peer: str, count: int, ours: dict[str, list[Cell]], theirs: list[Cell]) -> None:
    """policyhub's calls/s over the peer's, both through SpaceONE's client in this run, per backend, with
    the target for create, get and list; the health row says how far apart the bare servers are."""
    peer_rates = rates(theirs)
    our_rates = {backend: rates(cells) for backend, cells in ours.items()}
    print(f"\npolicyhub over the peer (SpaceONE repository service at {peer}), SpaceONE client, N={count}:")
    header = f"{'call':<8} {'peer/s':>8} {'x health':>8}" + "".join(
        f" | {backend + '/s':>11} {'x health':>8} {'/ peer':>7} {'target':>6}" for backend in ours
    )
    print(header)
    print("-" * len(header))
    nan = (math.nan, math.nan)
    for operation in ("create", "get", "list", "stat", "health"):
        peer_speed, peer_health = peer_rates.get(operation, nan)
        line = f"{operation:<8} {fmt(peer_speed, 1):>8} {fmt(peer_health, 3):>8}"
        for backend in ours:
            our_speed, our_health = our_rates[backend].get(operation, nan)
            ratio = speed(our_speed, peer_speed)
            target = "-" if operation not in PEER_TARGETS else "PASS" if ratio >= TARGET_PEER else "MISS"
            line += f" | {fmt(our_speed, 1):>11} {fmt(our_health, 3):>8} {fmt(ratio):>7} {target:>6}"
        print(line)
    print(
        f"/ peer = policyhub calls/s / peer calls/s; target: {', '.join(PEER_TARGETS)} >= {TARGET_PEER:g}x the peer "
        "(MISS where the peer was not measured)"
    )


def run_sequential(args: argparse.Namespace) -> int:
    """Both backends, our client then SpaceONE's, then SpaceONE's client on the peer when given; returns how
    many lines had failed calls."""
    failed = 0
    spaceone_cells: dict[str, list[Cell]] = {}
    for backend in ("mongomock", "wire"):
        processes: list[subprocess.Popen] = []
        spaceone = args.spaceone_python.is_file()
        settings = dict(args.settings)
        spaceone_port = free_port()
        if spaceone:
            settings["POLICYHUB_SPACEONE_PORT"] = str(spaceone_port)
        try:
            address = start_servers(backend, processes, settings)
            ours = sequential_ours(address, SEQUENTIAL_DOMAIN, args)
            failed += print_sequential(backend, "policyhub stubs (grpcio)", args.sequential, ours)
            if spaceone:
                theirs, unimplemented = sequential_spaceone(
                    f"{address.rsplit(':', 1)[0]}:{spaceone_port}", f"{SEQUENTIAL_DOMAIN}-so", args
                )
                spaceone_cells[backend] = theirs
                failed += print_sequential(
                    backend, "SpaceONE client (SpaceONE listener)", args.sequential, theirs, unimplemented
                )
        finally:
            stop_servers(processes)
        if not spaceone:
            print(
                f"(SpaceONE client rows skipped: no {args.spaceone_python}; "
                "tests/api/test_spaceone_client.py creates it)"
            )
    if args.peer:
        # The peer's database outlives this run: a domain of its own per run keeps the policy ids fresh
        # (unique per domain) and list's total_count to this run's N policies. Measured once no policyhub
        # server runs, so both had the machine to themselves.
        domain_id = f"{SEQUENTIAL_DOMAIN}-{time.strftime('%Y%m%d%H%M%S')}"
        theirs, unimplemented = sequential_spaceone(args.peer, domain_id, args, peer=True)
        failed += print_sequential(
            "peer",
            f"SpaceONE client (SpaceONE repository service at {args.peer})",
            args.sequential,
            theirs,
            unimplemented,
        )
        print_versus_peer(args.peer, args.sequential, spaceone_cells, theirs)
    print("x health = calls/s / calls/s of the health check measured just before, with the same client")
    return failed


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=None, help="policies in the domain, per run (default 1000,10000)")
    parser.add_argument("--assignments-per-policy", type=int, default=10, help="assignments seeded = N x this (10)")
    parser.add_argument("--backend", choices=("wire", "mongomock"), default="wire", help="store of the scale section")
    parser.add_argument("--sections", default="scale,sequential", help="scale, sequential or both (default)")
    parser.add_argument("--sequential", type=int, default=None, help="N of the sequential workloads (default 500)")
    parser.add_argument("--calls", type=int, default=None, help="calls per line at most (default 200)")
    parser.add_argument("--write-rounds", type=int, default=None, help="write + check rounds (default 30)")
    parser.add_argument(
        "--cell-seconds", type=float, default=None, help="no new call after this, per line (default 15)"
    )
    parser.add_argument("--seed-timeout", type=float, default=1800.0, help="bound on seeding one size, s (1800)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a POLICYHUB_KEY server setting"
    )
    parser.add_argument("--spaceone-python", type=Path, default=SPACEONE_PYTHON, help="python of SpaceONE's client")
    parser.add_argument(
        "--peer", metavar="HOST:PORT", help="a SpaceONE repository service to compare the sequential section with"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 200 policies, N=30, few calls")
    args = parser.parse_args(argv)
    # Explicit values win over --quick.
    args.sizes = [int(size) for size in (args.sizes or ("200" if args.quick else "1000,10000")).split(",")]
    args.sequential = args.sequential or (30 if args.quick else 500)
    args.calls = args.calls or (20 if args.quick else 200)
    args.write_rounds = args.write_rounds or (6 if args.quick else 30)
    args.cell_seconds = args.cell_seconds or (2.0 if args.quick else 15.0)
    args.sections = set(args.sections.split(","))
    if not args.sections or not args.sections <= {"scale", "sequential"}:
        parser.error("--sections takes scale, sequential or both, comma-separated")
    if args.peer and "sequential" not in args.sections:
        parser.error("--peer compares the sequential section: add it to --sections")
    if args.peer and not args.spaceone_python.is_file():
        parser.error(f"--peer is driven by SpaceONE's client: no {args.spaceone_python} (see --spaceone-python)")
    if any(size < len(LABELS) for size in args.sizes) or args.assignments_per_policy < 1 or args.sequential < 1:
        parser.error(f"every size must be at least {len(LABELS)}; --assignments-per-policy and --sequential positive")
    try:
        args.settings = {f"POLICYHUB_{key.upper()}": value for key, value in (item.split("=", 1) for item in args.set)}
    except ValueError:
        parser.error("--set takes KEY=VALUE")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    interrupt_on_sigterm()
    print(
        f"policyhub scale benchmark: nproc={len(os.sched_getaffinity(0))} backend={args.backend} "
        f"sizes={','.join(f'{size:,}' for size in args.sizes)} assignments/policy={args.assignments_per_policy} "
        f"sequential N={args.sequential} settings={args.settings or 'defaults'} python={platform.python_version()} "
        f"grpcio={grpc.__version__}",
        flush=True,
    )
    failed = 0
    try:
        if "scale" in args.sections:
            runs = []
            for size in sorted(args.sizes):
                print(
                    f"\nN={size:,} policies, {size * args.assignments_per_policy:,} assignments, {args.backend}:",
                    flush=True,
                )
                try:
                    run = run_size(args, size)
                except (RuntimeError, grpc.RpcError) as exc:
                    # One size that cannot be seeded or served says so; the others still run.
                    print(f"FAILED N={size:,}: {describe_error(exc) if isinstance(exc, grpc.RpcError) else exc}")
                    failed += 1
                    continue
                print_size(run)
                failed += print_errors(run.cells, f", N={size:,}")
                runs.append(run)
            if len(runs) > 1:
                print_growth(runs)
        if "sequential" in args.sections:
            failed += run_sequential(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (RuntimeError, grpc.RpcError, subprocess.TimeoutExpired) as exc:
        print(f"bench_scale: {describe_error(exc) if isinstance(exc, grpc.RpcError) else exc}", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
