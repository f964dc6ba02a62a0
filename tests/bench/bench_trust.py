"""Cost of the trust paths of the engine, in process: the escalation rule, the resource listing and the
index rebuild, each as a ratio to `DomainIndex.check` measured in the same run on the same index.

For each size S (statements per domain; default 1k, 10k, 100k) the seeded workload of bench_check.py is
generated and indexed, and a typical non-admin caller is chosen: the user holding the median number of
statements. Then, per size (p50 of warm calls unless said otherwise):

1. `check` over the sampled questions: the baseline of that size.
2. The escalation rule as `Guard.require_held` runs it: `first_uncovered(index.held_statements(caller),
   wanted)` for a wanted policy of 5 ALLOW statements taken from the caller's own holdings (covered: every
   pair is proven, the full scan), for one of up to 100 such statements (the API's cap per policy; fewer
   when the caller holds fewer), and for the 5-statement policy whose first statement the caller does not
   hold (refused at once), with the coverage steps spent against the rule's budget; `held_statements`
   alone; `grants_explicitly(caller, escalate, "policy/x")` for the caller (not held: `check` says no) and
   for a twin of the caller that also holds `repository.Policy.*` on `policy/*` (allowed by the wildcard,
   so every held statement is scanned for the name).
3. `list_authorized_resources(caller)` and with an action filter, with the answer size (entries,
   exceptions), so growth with the answer shows apart from growth with the domain. When the listing's
   step budget is spent (its answer then turns conservative) the unbudgeted answer size is shown too.
4. The rebuild: `DomainIndex` construction from the domain's policies and edges (any write bumps the
   domain revision and the next authorized call rebuilds), and the caller's first `check` on the fresh
   index (its lazily built view). This one is expected to grow with the domain: the known cost.

The final "growth" lines give, per operation, ratio(largest S) / ratio(smallest S) next to the growth of
its answer and of its work (the caller's held statements it scans, times the wanted statements), and flag
a ratio growing more than 3x while the answer does not. `check` itself grows with the caller's holdings,
so a ratio understates growth: the same-run p50 growth is printed too, and an operation whose p50 grows
more than 3x faster than both its answer and its work is marked SUPERLINEAR. Nothing here asserts on time.

    .venv/bin/python tests/bench/bench_trust.py [--sizes 1000,10000,100000] [--seconds S] [--seed N] [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

# The workload of the check benchmark (same directory, which is sys.path[0] when this runs as a script).
import bench_check
from bench_check import (
    PROJECTS,
    RESOURCE_TYPES,
    SERVICES,
    VERBS,
    Workload,
    build_index,
    concretize,
    generate_workload,
    reached_policies,
)

from policyhub.engine import DomainIndex, Statement, Subject, evaluator
from policyhub.engine.coverage import DEFAULT_STEPS, Budget, BudgetExceeded, first_uncovered
from policyhub.service.permissions import POLICY_ESCALATE

ESCALATE = POLICY_ESCALATE.name

DEFAULT_SIZES = (1_000, 10_000, 100_000)
QUESTIONS = 500  # sampled check questions per size (the baseline)
WANTED = 5  # statements of the wanted policy in the escalation questions
GROWTH_FLAG = 3.0  # flag a cost growing more than this while its size does not
MIN_REPS, MAX_REPS = 5, 200_000
HARD_CAP_SECONDS = 20.0  # one operation stops being repeated after this long (MIN_REPS permitting)
BUILD_REPS = 5  # rebuilds timed per size (3 with --quick)
UNBOUNDED_STEPS = 10**12  # the listing's budget when its exact (unbudgeted) answer size is reported
POLICY_CAP = bench_check.MAX_STATEMENTS_PER_POLICY  # the API's statements-per-policy cap
PROBE_POLICY = "bench-trust-policy-admin"
TWIN = "utwin"  # the caller's twin holding the probe policy


# ---------------------------------------------------------------------------------------------- timing


def p50_ns(fn: Callable[[], object], seconds: float) -> tuple[float, int]:
    """Median ns of fn() (already warmed by the caller): repeated until `seconds` and MIN_REPS."""
    clock = time.perf_counter_ns
    samples: list[int] = []
    start = clock()
    while len(samples) < MAX_REPS:
        began = clock()
        fn()
        now = clock()
        samples.append(now - began)
        elapsed = (now - start) / 1e9
        if len(samples) >= MIN_REPS and elapsed >= seconds or elapsed >= HARD_CAP_SECONDS:
            break
    return statistics.median(samples), len(samples)


def check_p50_ns(index: DomainIndex, workload: Workload, seconds: float) -> float:
    for user, action, resource in workload.questions:  # warm: views of every asked subject
        index.check(Subject("USER", user), action, resource)
    bench_check.OURS_SECONDS = seconds
    return statistics.median(bench_check.time_ours(index, workload.questions))


class RecordingBudget(Budget):
    """A Budget that remembers how much it was given (to report the steps a listing used)."""

    made: list["RecordingBudget"] = []

    def __init__(self, steps: int = DEFAULT_STEPS):
        super().__init__(steps)
        self.given = steps
        RecordingBudget.made.append(self)


def listing_steps(
    index: DomainIndex, subject: Subject, action: str | None, steps: int | None = None
) -> tuple[int, int]:
    """(pattern-algebra steps one listing spends, its budget), from one untimed call; `steps` replaces
    the listing budget for that call."""
    RecordingBudget.made.clear()
    saved, saved_steps = evaluator.Budget, evaluator.LISTING_STEPS
    evaluator.Budget = RecordingBudget
    if steps is not None:
        evaluator.LISTING_STEPS = steps
    try:
        index.list_authorized_resources(subject, action=action)
    finally:
        evaluator.Budget, evaluator.LISTING_STEPS = saved, saved_steps
    if not RecordingBudget.made:
        return 0, evaluator.LISTING_STEPS
    budget = RecordingBudget.made[-1]
    return budget.given - budget.left, budget.given


def unbounded_listing_size(index: DomainIndex, subject: Subject, action: str | None) -> tuple[int, int]:
    """(entries, exceptions) of the listing with no practical step budget (untimed)."""
    saved = evaluator.LISTING_STEPS
    evaluator.LISTING_STEPS = UNBOUNDED_STEPS
    try:
        listing = index.list_authorized_resources(subject, action=action)
    finally:
        evaluator.LISTING_STEPS = saved
    return len(listing), sum(len(e.exceptions) for e in listing)


# ---------------------------------------------------------------------------------------------- the caller


def held_counts(workload: Workload) -> dict[str, int]:
    """user id -> statements of the distinct policies it reaches."""
    return {user: sum(len(workload.policies[pid]) for pid in pids) for user, pids in reached_policies(workload).items()}


def typical_caller(workload: Workload) -> str:
    counts = held_counts(workload)
    ranked = sorted((n, user) for user, n in counts.items() if n)
    return ranked[len(ranked) // 2][1]


def add_twin(workload: Workload, caller: str) -> None:
    """A user with the caller's memberships and policies, plus `repository.Policy.*` on `policy/*`:
    `grants_explicitly(escalate)` then passes `check` and scans every held statement for the name."""
    workload.policies[PROBE_POLICY] = [
        {"effect": "ALLOW", "actions": ["repository.Policy.*"], "resources": ["policy/*"]}
    ]
    twin_edges = [("USER", TWIN, gt, gid) for st, sid, gt, gid in workload.edges if (st, sid) == ("USER", caller)]
    workload.edges.extend(twin_edges + [("USER", TWIN, "POLICY", PROBE_POLICY)])


def covered_wanted(rng: random.Random, held: list[Statement], count: int) -> list[Statement]:
    """Up to `count` of the caller's ALLOW statements that it holds clear of its denies."""
    allows = [s for s in held if s.effect == "ALLOW"]
    rng.shuffle(allows)
    out: list[Statement] = []
    for s in allows:
        if len(out) == count:
            break
        if s not in out and first_uncovered(held, [s]) is None:
            out.append(s)
    return out


def uncovered_statement(held: list[Statement], wanted: list[Statement]) -> Statement:
    """A held allow's action on a project the caller holds nothing in (checked to be uncovered)."""
    mentioned = {r.split("/", 1)[0] for s in held for r in s.resources}
    free = next((f"proj{p}" for p in range(PROJECTS) if f"proj{p}" not in mentioned), "nowhere")
    for candidate in (Statement("ALLOW", wanted[0].actions, (f"{free}/*",)), Statement("ALLOW", ("svcx.*",), ("*",))):
        if first_uncovered(held, [candidate]) is not None:
            return candidate
    raise RuntimeError("could not build a statement the caller does not hold")


def filter_action(rng: random.Random, wanted: list[Statement]) -> str:
    fills = [
        lambda: f"svc{rng.randrange(SERVICES)}",
        lambda: f"Resource{rng.randrange(RESOURCE_TYPES)}",
        lambda: rng.choice(VERBS),
    ]
    return concretize(rng, wanted[0].actions[0], ".", fills)


# ---------------------------------------------------------------------------------------------- per size


@dataclass
class Row:
    name: str
    ns: float
    answer: float  # size of what the operation returns (1 for a decision)
    work: float  # what it must look at: the caller's held statements (x wanted), or S
    note: str = ""


@dataclass
class SizeResult:
    size: int
    caller: str
    held: int
    check_ns: float
    rows: list[Row] = field(default_factory=list)

    def row(self, name: str) -> Row:
        return next(r for r in self.rows if r.name == name)


def measure(size: int, seed: int, seconds: float, build_reps: int) -> SizeResult:
    workload = generate_workload(size, seed, QUESTIONS)
    caller_id = typical_caller(workload)
    add_twin(workload, caller_id)
    index, _ = build_index(workload)
    caller, twin = Subject("USER", caller_id), Subject("USER", TWIN)
    rng = random.Random(f"{seed}-{size}-trust")

    result = SizeResult(size, caller_id, 0, check_p50_ns(index, workload, seconds))
    held = index.held_statements(caller)
    n = result.held = len(held)
    capped = covered_wanted(rng, held, POLICY_CAP)
    wanted = capped[:WANTED]
    if not wanted:
        raise RuntimeError(f"S={size}: the caller holds no allow clear of its denies")
    refused = [uncovered_statement(held, wanted)] + wanted[1:]
    action = filter_action(rng, wanted)

    def escalation(policy: list[Statement]):
        budget = Budget()
        try:
            found = first_uncovered(index.held_statements(caller), policy, budget)
        except BudgetExceeded:
            return "BUDGET EXCEEDED", DEFAULT_STEPS - budget.left
        return found, DEFAULT_STEPS - budget.left

    def add(name: str, fn: Callable[[], object], answer: float, work: float, note: str = "") -> None:
        fn()  # warm
        ns, _reps = p50_ns(fn, seconds)
        result.rows.append(Row(name, ns, answer, work, note))

    def steps_note(steps: int) -> str:
        return f"steps {steps:,}/{DEFAULT_STEPS:,}" + (
            " BUDGET SPENT: refused, escalate needed" if steps >= DEFAULT_STEPS else ""
        )

    add("held_statements", lambda: index.held_statements(caller), n, n)
    for name, policy in (
        (f"escalation covered ({len(wanted)} stmts)", wanted),
        (f"escalation covered ({len(capped)} stmts, cap {POLICY_CAP})", capped),
    ):
        found, steps = escalation(policy)
        if found is not None and found != "BUDGET EXCEEDED":
            raise RuntimeError(f"S={size}: the covered wanted policy came back {found}")
        add(
            name,
            lambda policy=policy: escalation(policy),
            1,
            n * len(policy),
            f"wanted {len(policy)}; " + steps_note(steps),
        )
    found, steps = escalation(refused)
    if found is None or isinstance(found, str) or found.statement_index != 0:
        raise RuntimeError(f"S={size}: the refused wanted policy came back {found}")
    add("escalation refused (1st uncovered)", lambda: escalation(refused), 1, n, steps_note(steps))
    if index.grants_explicitly(caller, ESCALATE, "policy/x") or index.grants_explicitly(twin, ESCALATE, "policy/x"):
        raise RuntimeError(f"S={size}: escalate is granted by name in the synthetic workload")
    add("grants_explicitly, not held", lambda: index.grants_explicitly(caller, ESCALATE, "policy/x"), 1, n)
    add(
        "grants_explicitly, wildcard held",
        lambda: index.grants_explicitly(twin, ESCALATE, "policy/x"),
        1,
        len(index.held_statements(twin)),
    )
    for name, act in (("list_authorized_resources", None), (f"list_authorized, action={action}", action)):
        listing = index.list_authorized_resources(caller, action=act)
        entries, exceptions = len(listing), sum(len(e.exceptions) for e in listing)
        used, given = listing_steps(index, caller, act)
        note = f"{entries:,} entries, {exceptions:,} exceptions; steps {used:,}/{given:,}"
        if used >= given:
            exact_entries, exact_exceptions = unbounded_listing_size(index, caller, act)
            needed, _ = listing_steps(index, caller, act, UNBOUNDED_STEPS)
            note += (
                f" BUDGET SPENT: conservative answer; unbudgeted it is {exact_entries:,} entries, "
                f"{exact_exceptions:,} exceptions in {needed:,} steps"
            )
        add(name, lambda act=act: index.list_authorized_resources(caller, action=act), entries + exceptions, n, note)

    # The rebuild: whole fresh indexes, then the caller's first (cold) check on each.
    asked = [q for q in workload.questions if q[0] == caller_id] or [(caller_id, wanted[0].actions[0], "proj0/x")]
    builds, colds = [], []
    for _ in range(build_reps):
        fresh, seconds_built = build_index(workload)
        began = time.perf_counter_ns()
        fresh.check(caller, asked[0][1], asked[0][2])
        colds.append(time.perf_counter_ns() - began)
        builds.append(seconds_built * 1e9)
        del fresh
    statements = workload.statements
    result.rows.append(
        Row(
            "REBUILD: DomainIndex(...) after a write",
            statistics.median(builds),
            statements,
            statements,
            f"{build_reps} builds of {statements:,} statements; the known cost",
        )
    )
    result.rows.append(
        Row("REBUILD: caller's 1st check, cold", statistics.median(colds), 1, n, "builds the caller's view lazily")
    )
    return result


# ---------------------------------------------------------------------------------------------- output


def fmt_us(ns: float) -> str:
    us = ns / 1000
    return f"{us:,.1f}" if us < 1000 else f"{us:,.0f}"


def print_size(r: SizeResult, width: int) -> None:
    print(f"\nS={r.size:,} statements  caller=USER:{r.caller} holds {r.held:,} statements")
    print(f"  {'operation':<{width}} {'p50 µs':>10} {'x check':>9} {'answer':>7}  notes")
    print(f"  {'check (baseline, sampled questions)':<{width}} {fmt_us(r.check_ns):>10} {1.0:>9.1f} {1:>7,}")
    for row in r.rows:
        print(
            f"  {row.name:<{width}} {fmt_us(row.ns):>10} {row.ns / r.check_ns:>9.1f} {row.answer:>7,.0f}"
            + (f"  {row.note}" if row.note else "")
        )


def short(name: str) -> str:
    for prefix, label in (
        ("list_authorized, action=", "list_authorized, action filter"),
        ("escalation covered (", None),
    ):
        if name.startswith(prefix):
            if label:
                return label
            return "escalation covered (cap)" if "cap" in name else "escalation covered (5 stmts)"
    return name


def print_growth(first: SizeResult, last: SizeResult, width: int) -> int:
    """ratio(last)/ratio(first) per operation; returns how many were flagged."""
    print(
        f"\ngrowth S={first.size:,} -> S={last.size:,} (x{last.size / first.size:,.0f} statements; the typical "
        f"caller's holdings x{last.held / first.held:,.1f}). 'ratio x' = ratio(S={last.size:,})/"
        f"ratio(S={first.size:,}); check's own p50 grew x{last.check_ns / first.check_ns:.1f}, so 'p50 x' "
        f"(same run) is given too"
    )
    print(f"  {'operation':<{width}} {'ratio x':>8} {'p50 x':>8} {'answer x':>9} {'work x':>7}  verdict")
    flagged = 0
    for a, b in zip(first.rows, last.rows, strict=True):
        ratio = (b.ns / last.check_ns) / (a.ns / first.check_ns)
        p50 = b.ns / a.ns
        answer, work = b.answer / a.answer, b.work / a.work
        if b.name.startswith("REBUILD: DomainIndex"):
            verdict = "KNOWN COST: grows with the domain (paid after every write)"
        elif ratio > GROWTH_FLAG and answer <= GROWTH_FLAG:
            verdict = f"FLAG: grows while its answer does not (tracks the held statements it scans, x{work:,.0f})"
            flagged += 1
        elif ratio > GROWTH_FLAG:
            verdict = "grows with its answer"
        else:
            verdict = "flat (within 3x of check)"
        if p50 / max(answer, work) > GROWTH_FLAG:
            verdict += f"; SUPERLINEAR: p50 x{p50:,.0f} for answer x{answer:,.0f}, work x{work:,.0f}"
        print(f"  {short(b.name):<{width}} {ratio:>8.2f} {p50:>8.1f} {answer:>9.1f} {work:>7.1f}  {verdict}")
    return flagged


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=None, help="comma-separated statement counts (default 1000,10000,100000)")
    parser.add_argument("--seconds", type=float, default=None, help="measuring time per operation (default 1)")
    parser.add_argument("--seed", type=int, default=1, help="workload seed (default 1)")
    parser.add_argument("--quick", action="store_true", help="short run: 0.2 s per operation, 3 rebuilds")
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else list(DEFAULT_SIZES)
    args.seconds = args.seconds if args.seconds is not None else (0.2 if args.quick else 1.0)
    args.build_reps = 3 if args.quick else BUILD_REPS
    if min(args.sizes) < 1 or args.seconds <= 0:
        parser.error("--sizes and --seconds must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"policyhub trust-path benchmark (in process): nproc={len(os.sched_getaffinity(0))} "
        f"sizes={','.join(map(str, args.sizes))} seed={args.seed} seconds/op={args.seconds:g} "
        f"python={platform.python_version()}",
        flush=True,
    )
    print("ratios are to DomainIndex.check p50 of the same size, measured in this run", flush=True)
    results: list[SizeResult] = []
    try:
        for size in args.sizes:
            results.append(measure(size, args.seed, args.seconds, args.build_reps))
            width = max(36, *(len(row.name) for row in results[-1].rows))
            print_size(results[-1], width)
            sys.stdout.flush()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"bench_trust: {exc}", file=sys.stderr)
        return 1
    if len(results) > 1:
        width = max(36, *(len(short(row.name)) for row in results[0].rows))
        flagged = print_growth(results[0], results[-1], width)
        print(
            f"{flagged} operation(s) flagged: ratio to check grows > {GROWTH_FLAG:g}x with the domain while the "
            f"answer does not"
            if flagged
            else f"no operation's ratio to check grows > {GROWTH_FLAG:g}x with the domain without its answer"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
