"""Bulk benchmark: Bulk/import_domain of N assignments (100k by default, plus the policies and groups they
name) into an empty domain over gRPC, and Bulk/export_domain of the result, next to the per-item cost of
Assignment/create measured on the same server in the same run.

A fresh `python -m policyhub` (on a secantusdb MongoDB wire-protocol server by default, or `--backend mongomock`
for the embedded store) gets, in one import stream: 100 policies, 100 groups, one assignment per group holding a
policy, and N - 100 users each in a group or holding a policy directly (half and half). Measured, each once:

- import dry run: the whole stream read, checked and planned, nothing written;
- import: the same stream written (bulk inserts, one write that checks see at once);
- export: the domain streamed back (the snapshot read, then chunks within max_message_bytes), and its items
  compared with what was imported;
- import again: the same stream, now all unchanged (read, checked, compared; nothing written);
- Assignment/add, add again (every pair ALREADY_EXISTS) and remove of 1,000 and 10,000 pairs (one policy x N
  users) in one call each, Policy/delete_many of 1,000 policies and Group/delete_many of 1,000 groups (one in
  ten with a member, cascade), on domains of their own; each also as
  its RATIO to one grpc.health.v1.Health/Check (p50 of HEALTH_CALLS) of the same run;
- Assignment/create: SINGLE_CREATES calls one after the other on another domain holding the same policies, the
  reference per-item cost of the single-item API (each call: checks, an insert, a recheck, a revision bump,
  a change record and an audit entry).

Each line gives the seconds, items/s, the cost per item, and its RATIO to one Assignment/create of the same run.
After the import, a few Assignment/check answers of imported users are verified. Absolute numbers on shared,
noisy machines mislead; nothing here asserts on time. The servers run with their defaults (db_timeout_ms 5 s:
the import writes in batches that stay well within it).

    .venv/bin/python tests/bench/bench_bulk.py [--assignments N] [--backend wire|mongomock] [--quick]
                                               [--db-timeout-ms MS]

All traffic goes to 127.0.0.1; every call has a deadline; the servers are stopped on exit, errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

import grpc

# The server start/stop and channel helpers of the API benchmark (same directory, which is sys.path[0] when this
# file runs as a script).
from bench_api import describe_error, health_call, interrupt_on_sigterm, make_channel, start_servers, stop_servers

from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2 as apb
from policyhub._gen.spaceone.api.repository.v1 import (
    assignment_pb2_grpc,
    bulk_pb2_grpc,
    group_pb2_grpc,
    policy_pb2_grpc,
)
from policyhub._gen.spaceone.api.repository.v1 import bulk_pb2 as bpb
from policyhub._gen.spaceone.api.repository.v1 import group_pb2 as gpb
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2 as ppb

DEFAULT_ASSIGNMENTS = 100_000
SETS = 100  # policies, and groups (each group holds one policy)
SINGLE_CREATES = 200
ITEMS_PER_MESSAGE = 20_000  # well within the default max_message_bytes (4 MiB): ~70 bytes per assignment
DOMAIN = "bench-bulk"
SINGLE_DOMAIN = "bench-bulk-single"
CALL_TIMEOUT = 900.0
BATCH_SIZES = (1_000, 10_000)  # pairs per Assignment/add and remove call (10,000: the API's cap)
DELETE_MANY = 1_000  # ids per Policy/delete_many and Group/delete_many call: the API's cap
HEALTH_CALLS = 200
# The batch calls are measured on their own domains, under the server's default bounds (a batch write:
# db_query_timeout_ms, 20 s); one that runs out of it is reported as such (undone whole) and the run goes on.


def policy_id(index: int) -> str:
    return f"p{index:03d}"


def group_id(index: int) -> str:
    return f"g{index:03d}"


def user_id(index: int) -> str:
    return f"u{index:06d}"


def stream_items(assignments: int) -> list[bpb.BulkItem]:
    items = [
        bpb.BulkItem(policy=bpb.BulkPolicy(policy_id=policy_id(i), name=f"Policy {i}", permissions=[f"svc{i}.*"]))
        for i in range(SETS)
    ]
    items += [bpb.BulkItem(group=bpb.BulkGroup(group_id=group_id(i), name=f"Group {i}")) for i in range(SETS)]
    items += [
        bpb.BulkItem(
            assignment=bpb.BulkAssignment(
                subject=apb.Subject(type=apb.Subject.GROUP, id=group_id(i)),
                grant=apb.Grant(type=apb.Grant.POLICY, id=policy_id(i)),
            )
        )
        for i in range(SETS)
    ]
    for i in range(assignments - SETS):
        grant = (
            apb.Grant(type=apb.Grant.GROUP, id=group_id(i % SETS))
            if i % 2
            else apb.Grant(type=apb.Grant.POLICY, id=policy_id(i % SETS))
        )
        items.append(
            bpb.BulkItem(
                assignment=bpb.BulkAssignment(subject=apb.Subject(type=apb.Subject.USER, id=user_id(i)), grant=grant)
            )
        )
    return items


def messages(items: list[bpb.BulkItem], **header) -> list[bpb.BulkChunk]:
    chunks = [bpb.BulkChunk(header=bpb.BulkHeader(domain_id=DOMAIN, **header))]
    chunks += [bpb.BulkChunk(items=items[i : i + ITEMS_PER_MESSAGE]) for i in range(0, len(items), ITEMS_PER_MESSAGE)]
    return chunks


def timed(call):
    began = time.perf_counter()
    result = call()
    return result, time.perf_counter() - began


def single_create_seconds(address: str) -> list[float]:
    """Assignment/create one after the other (USER -> one of the policies), on a domain of its own."""
    with make_channel(address) as channel:
        policies = policy_pb2_grpc.PolicyStub(channel)
        assignments = assignment_pb2_grpc.AssignmentStub(channel)
        for i in range(SETS):
            policies.create(
                ppb.CreatePolicyRequest(policy_id=policy_id(i), name=f"Policy {i}", domain_id=SINGLE_DOMAIN),
                timeout=60,
            )
        seconds = []
        for i in range(SINGLE_CREATES + 5):
            request = apb.CreateAssignmentRequest(
                subject=apb.Subject(type=apb.Subject.USER, id=user_id(i)),
                grant=apb.Grant(type=apb.Grant.POLICY, id=policy_id(i % SETS)),
                domain_id=SINGLE_DOMAIN,
            )
            began = time.perf_counter()
            assignments.create(request, timeout=60)
            if i >= 5:  # warm-up: connection, first-call imports, cold caches
                seconds.append(time.perf_counter() - began)
    return seconds


def health_seconds(address: str) -> float:
    """p50 of a trivial RPC on the same server: what the batch rows are compared with."""
    with make_channel(address) as channel:
        call = health_call(channel, 0, 1)
        seconds = []
        for _ in range(HEALTH_CALLS):
            began = time.perf_counter()
            call()
            seconds.append(time.perf_counter() - began)
    return statistics.median(seconds)


def batch_rows(address: str) -> list[tuple[str, int, float]]:
    """Assignment/add, add again and remove of N pairs, Policy/delete_many and Group/delete_many, each one call."""
    rows = []
    with make_channel(address) as channel:
        policies = policy_pb2_grpc.PolicyStub(channel)
        assignments = assignment_pb2_grpc.AssignmentStub(channel)
        for size in BATCH_SIZES:
            domain = f"bench-batch-{size}"
            policies.create(ppb.CreatePolicyRequest(policy_id="p", name="p", domain_id=domain), timeout=60)
            request = apb.AssignmentsRequest(
                grants=[apb.Grant(type=apb.Grant.POLICY, id="p")],
                subject_type=apb.Subject.USER,
                subject_ids=[user_id(i) for i in range(size)],
                domain_id=domain,
            )
            for name, call, expected in (
                ("add", assignments.add, size),
                ("add again (all exist)", assignments.add, 0),
                ("remove", assignments.remove, size),
            ):
                began = time.perf_counter()
                try:
                    reply = call(request, timeout=CALL_TIMEOUT)
                except grpc.RpcError as exc:
                    if exc.code() != grpc.StatusCode.UNAVAILABLE:
                        raise
                    # Out of the server's bound (db_query_timeout_ms): undone whole; say so and go on.
                    rows.append((f"Assignment/{name}", size, -(time.perf_counter() - began)))
                    continue
                seconds = time.perf_counter() - began
                if reply.changed_count != expected or len(reply.results) != size:
                    raise RuntimeError(
                        f"Assignment/{name} of {size}: changed {reply.changed_count}, expected {expected}"
                    )
                rows.append((f"Assignment/{name}", size, seconds))
        domain = "bench-delete-many"
        ids = [f"d{i:04d}" for i in range(DELETE_MANY)]
        for policy in ids:
            policies.create(ppb.CreatePolicyRequest(policy_id=policy, name=policy, domain_id=domain), timeout=60)
        reply, seconds = timed(
            lambda: policies.delete_many(
                ppb.DeletePoliciesRequest(policy_ids=ids, domain_id=domain), timeout=CALL_TIMEOUT
            )
        )
        if reply.deleted_count != DELETE_MANY:
            raise RuntimeError(f"Policy/delete_many: deleted {reply.deleted_count}, expected {DELETE_MANY}")
        rows.append(("Policy/delete_many", DELETE_MANY, seconds))
        rows.append(group_delete_many(channel))
    return rows


def group_delete_many(channel) -> tuple[str, int, float]:
    """Group/delete_many of DELETE_MANY groups, one in ten with a member, with cascade."""
    domain = "bench-delete-many-groups"
    ids = [f"g{i:04d}" for i in range(DELETE_MANY)]
    items = [bpb.BulkItem(group=bpb.BulkGroup(group_id=group, name=group)) for group in ids]
    items += [
        bpb.BulkItem(
            assignment=bpb.BulkAssignment(
                subject=apb.Subject(type=apb.Subject.USER, id=f"u-{group}"),
                grant=apb.Grant(type=apb.Grant.GROUP, id=group),
            )
        )
        for group in ids[::10]
    ]
    chunks = [bpb.BulkChunk(header=bpb.BulkHeader(domain_id=domain)), bpb.BulkChunk(items=items)]
    bulk_pb2_grpc.BulkStub(channel).import_domain(iter(chunks), timeout=CALL_TIMEOUT)
    request = gpb.DeleteGroupsRequest(group_ids=ids, cascade=True, domain_id=domain)
    reply, seconds = timed(lambda: group_pb2_grpc.GroupStub(channel).delete_many(request, timeout=CALL_TIMEOUT))
    if reply.deleted_count != DELETE_MANY:
        raise RuntimeError(f"Group/delete_many: deleted {reply.deleted_count}, expected {DELETE_MANY}")
    return ("Group/delete_many (cascade)", DELETE_MANY, seconds)


def verify(address: str, assignments: int) -> None:
    """A user in a group is allowed by the group's policy, a direct holder by its own, another service
    denied: the import answers as built."""
    with make_channel(address) as channel:
        stub = assignment_pb2_grpc.AssignmentStub(channel)
        problems = []
        for index in (0, 1, assignments - SETS - 1):
            grant_index = index % SETS
            request = apb.CheckRequest(
                subject=apb.Subject(type=apb.Subject.USER, id=user_id(index)),
                action=f"svc{grant_index}.Thing.get",
                resource="r/1",
                domain_id=DOMAIN,
            )
            answer = stub.check(request, timeout=CALL_TIMEOUT)
            via = [s.id for s in answer.via]
            expected = [user_id(index), group_id(grant_index)] if index % 2 else [user_id(index)]
            if (
                answer.decision != apb.CheckResult.ALLOW
                or answer.policy_id != policy_id(grant_index)
                or via != expected
            ):
                problems.append(f"{user_id(index)}: {apb.CheckResult.Decision.Name(answer.decision)} via {via}")
            request.action = f"svc{(grant_index + 1) % SETS}.Thing.get"
            if stub.check(request, timeout=CALL_TIMEOUT).decision != apb.CheckResult.DENY:
                problems.append(f"{user_id(index)}: allowed another service")
    if problems:
        raise RuntimeError("the imported domain does not answer as built:\n  " + "\n  ".join(problems))


def run(address: str, assignments: int) -> list[tuple[str, int, float]]:
    items = stream_items(assignments)
    total = len(items)
    rows = []
    with grpc.insecure_channel(address) as channel:
        bulk = bulk_pb2_grpc.BulkStub(channel)
        dry, seconds = timed(lambda: bulk.import_domain(iter(messages(items, dry_run=True)), timeout=CALL_TIMEOUT))
        if dry.assignments.created != assignments or dry.refused_count:
            raise RuntimeError(f"dry run: {dry.assignments.created} assignments to create, {dry.refused_count} refused")
        rows.append(("import dry run", total, seconds))
        done, seconds = timed(lambda: bulk.import_domain(iter(messages(items)), timeout=CALL_TIMEOUT))
        if (done.assignments.created, done.policies.created, done.groups.created) != (assignments, SETS, SETS):
            raise RuntimeError(f"import: {done}")
        rows.append(("import", total, seconds))
        print(f"imported at {done.consistency_token}", flush=True)
        exported, seconds = timed(
            lambda: list(bulk.export_domain(bpb.ExportDomainRequest(domain_id=DOMAIN), timeout=CALL_TIMEOUT))
        )
        got = [item for message in exported for item in message.items]
        header = exported[0].header
        if header.counts.assignments != assignments or len(got) != total:
            raise RuntimeError(f"export: {header.counts} and {len(got)} items, expected {total}")
        pairs = {(a.assignment.subject.id, a.assignment.grant.id) for a in got if a.HasField("assignment")}
        if pairs != {(a.assignment.subject.id, a.assignment.grant.id) for a in items if a.HasField("assignment")}:
            raise RuntimeError("export: the assignments differ from those imported")
        rows.append((f"export ({len(exported)} messages)", total, seconds))
        again, seconds = timed(lambda: bulk.import_domain(iter(messages(items)), timeout=CALL_TIMEOUT))
        if again.assignments.unchanged != assignments or again.consistency_token != done.consistency_token:
            raise RuntimeError(f"import again: {again}")
        rows.append(("import again (unchanged)", total, seconds))
    verify(address, assignments)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assignments", type=int, default=None, help=f"default {DEFAULT_ASSIGNMENTS}")
    parser.add_argument("--backend", choices=("wire", "mongomock"), default="wire")
    parser.add_argument("--quick", action="store_true", help="smoke run: 10,000 assignments")
    parser.add_argument(
        "--db-timeout-ms",
        type=int,
        default=None,
        help="the servers' db_timeout_ms (default: theirs, 5000); a busy machine may need more",
    )
    args = parser.parse_args(argv)
    assignments = args.assignments or (10_000 if args.quick else DEFAULT_ASSIGNMENTS)
    if assignments < 2 * SETS:
        parser.error(f"--assignments must be at least {2 * SETS}")
    interrupt_on_sigterm()
    print(
        f"policyhub bulk benchmark: nproc={len(os.sched_getaffinity(0))} backend={args.backend} "
        f"assignments={assignments:,} (+{SETS} policies, {SETS} groups) python={platform.python_version()} "
        f"grpcio={grpc.__version__}",
        flush=True,
    )
    processes: list[subprocess.Popen] = []
    try:
        settings = None
        if args.db_timeout_ms:
            # list and stat are bounded by at least as much as a point read
            settings = {
                "POLICYHUB_DB_TIMEOUT_MS": str(args.db_timeout_ms),
                "POLICYHUB_DB_QUERY_TIMEOUT_MS": str(max(args.db_timeout_ms, 20000)),
            }
        address = start_servers(args.backend, processes, settings)
        single = single_create_seconds(address)
        health = health_seconds(address)
        batches = batch_rows(address)
        rows = run(address, assignments)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (RuntimeError, grpc.RpcError) as exc:
        print(f"bench_bulk: {describe_error(exc) if isinstance(exc, grpc.RpcError) else exc}", file=sys.stderr)
        return 1
    finally:
        stop_servers(processes)
    per_create = statistics.median(single)
    print()
    print(
        f"Assignment/create, {len(single)} calls one after the other: p50 {per_create * 1000:.2f} ms "
        f"(mean {statistics.fmean(single) * 1000:.2f} ms) per assignment"
    )
    header = f"{'operation':<28} {'items':>8} {'seconds':>8} {'items/s':>9} {'us/item':>8} {'x create':>9}"
    print(header)
    print("-" * len(header))
    for name, items, seconds in rows:
        per_item = seconds / items
        print(
            f"{name:<28} {items:>8,} {seconds:>8.2f} {items / seconds:>9,.0f} {per_item * 1e6:>8.1f} "
            f"{per_item / per_create:>9.3f}"
        )
    print(
        "x create = cost per item / p50 of one Assignment/create in this run (0.010: a hundred items for the "
        f"price of one create); {assignments:,} creates one by one would take ~{assignments * per_create:,.0f} s"
    )
    print(f"\nbatch calls (one call each), health.Check p50 {health * 1000:.2f} ms:")
    header = f"{'call':<34} {'items':>8} {'seconds':>8} {'x health':>10} {'x create/item':>14}"
    print(header)
    print("-" * len(header))
    for name, items, seconds in batches:
        if seconds < 0:
            print(f"{name:<34} {items:>8,} UNAVAILABLE after {-seconds:.2f} s: over the server's bound, undone")
            continue
        print(
            f"{name:<34} {items:>8,} {seconds:>8.2f} {seconds / health:>10,.0f} {seconds / items / per_create:>14.3f}"
        )
    print("x health = the call's seconds / p50 of one health.Check; x create/item = per item / one Assignment/create")
    return 0


if __name__ == "__main__":
    sys.exit(main())
