"""The per-domain compiled evaluation index, and when to bring it up to date.

The index of a domain is brought up to date when the domain's revision (or the managed
policies' revision) changed since it was built — read with one cheap query per call, so a write
through any server process is seen by the next call of every process — or when an assignment it
contains expires. Up to date means, when it can: the cached index plus the delta of the writes
since, read from the domain's change log (policyhub.model.change): the policies, assignments and
roles/groups those writes touched are loaded again and applied (DomainIndex.with_changes), at a
cost of what they touched rather than of the domain. When the writes only created and deleted
assignments, each logged with its edge and found so in the store once its writer's revision
had moved (policyhub.service.invalidation.settled), and updated single policies, each logged
with its rule fields as written, the log alone is the delta: nothing is loaded, and the index is exactly the
domain at the revision read, so it is kept without reading the revision again. It is rebuilt
from the whole domain instead when the managed policies changed, when an assignment in it
expired, when it is more than MAX_DELTA_RECORDS revisions or MAX_DELTA_CHANGES changes behind,
or when the log does not cover the range: a record still missing after HOLE_WAIT_SECONDS (its
writer bumps the revision, then writes the record), expired, marked incomplete (a write that
failed part-way) or without the assignment pairs a delta needs.

A write of several documents that must be seen at once (a rename) marks itself under way
before it starts and lands with the revision bump (see policyhub.service.invalidation). An
index is kept only when the revisions read after building it equal those read before, with
no such write under way: so a kept index never holds half of one. While one is under way, an
index built before it still answers (its revision is unchanged); a reader that needs a new one
waits for the write to land.

`get` is that fully consistent read, what the Guard and every other caller use. `at` takes the
caller's consistency requirement (policyhub.service.consistency) and answers with the domain
revision of the index it used: with AT_LEAST_AS_FRESH the cached index answers without the read
when it is at or after the token's revision, with MINIMIZE_LATENCY when a read found it current at
most `max_staleness` seconds ago; otherwise (and when it is missing or holds an assignment that has
expired since) the read decides, as for `get`.

A domain's index is brought up to date by one refresh at a time, in a thread of its own, which
every caller that needs it shares: it runs to the end (a domain too large to read within one
call's bound still gets its index), while each caller waits for it no longer than the bound of
its own call (its deadline, at most the database's limit), then answers UNAVAILABLE. So a domain
whose build takes long holds no more of the server's threads, for no longer, than slow database
calls would.
"""

from __future__ import annotations

import contextlib
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from policyhub.domain import MANAGED_DOMAIN_ID, ChangeKind, Operation, as_utc
from policyhub.engine import DomainIndex, Edge, PolicyRules, Subject
from policyhub.errors import Unavailable
from policyhub.manager.assignment_manager import AssignmentManager
from policyhub.manager.policy_manager import PolicyManager
from policyhub.manager.revision_manager import RevisionManager, RevisionState
from policyhub.service.consistency import FULLY_CONSISTENT, Consistency, Requirement, consistency_token
from policyhub.service.context import Clock

# How often a reader looks again while a write of several documents is under way, and how
# many times a build that saw the revision move is tried before its index answers uncached.
WAIT_STEP_SECONDS = 0.005
WAIT_STEP_MAX_SECONDS = 0.05
BUILD_ATTEMPTS = 3
# How many whole builds (a whole domain's read each) a process runs at once; the others wait.
BUILDS_AT_ONCE = 4
# How long after a read found a cached index current MINIMIZE_LATENCY may answer from it unread.
DEFAULT_MAX_STALENESS_SECONDS = 5.0
# Beyond this many revisions, or changes, behind, a whole build is cheaper than the delta: the delta
# loads the touched documents by id (and every edge of a touched role, group or renamed policy),
# a build scans the domain's two collections once. 1,000 records keep the log read to one page.
MAX_DELTA_RECORDS = 1_000
MAX_DELTA_CHANGES = 20_000
# How long a reader waits for the change record of a revision it has seen before it rebuilds
# (the bump and the record are two database calls, milliseconds apart; a writer that died in
# between leaves a hole for good).
HOLE_WAIT_SECONDS = 0.05


@dataclass
class _Built:
    revision: tuple[int, ...]
    index: DomainIndex
    next_expiry: datetime | None
    # time.monotonic() just before the latest revision read that found this index current
    confirmed: float


@dataclass(frozen=True)
class IndexAt:
    """An index and the domain revision it was built at: it holds every write of the domain up to
    that revision (and may hold later single-document writes whole)."""

    index: DomainIndex
    revision: int

    @property
    def token(self) -> str:
        return consistency_token(self.revision)


class IndexCache:
    """Compiled evaluation indexes by domain, each tagged with the revision it was built from."""

    def __init__(
        self,
        build: Callable[[str, datetime], DomainIndex],
        revisions: RevisionManager,
        clock: Clock,
        max_staleness: float = DEFAULT_MAX_STALENESS_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
        advance: Advance | None = None,
        seconds_left: Callable[[], float | None] = lambda: None,
    ):
        self._build = build
        # How long the calling thread may still wait for a refresh (None: until it ends).
        self._seconds_left = seconds_left
        self._advance = advance
        self._revisions = revisions
        self._clock = clock
        self.max_staleness = max_staleness
        self._monotonic = monotonic
        self._built: dict[str, _Built] = {}
        # The refresh of each domain under way: at most one at a time, which the callers share.
        self._refreshes: dict[str, _Refresh] = {}
        self._refreshes_guard = threading.Lock()
        # Whole builds read a domain each: a few at once, whatever the number of domains waiting.
        self._builds_at_once = threading.BoundedSemaphore(BUILDS_AT_ONCE)
        self.hits = 0
        self.misses = 0
        # of the misses: indexes brought up to date by a delta, and whole builds
        self.deltas = 0
        self.builds = 0

    def get(self, domain_id: str) -> DomainIndex:
        """The domain's index at its current revision (FULLY_CONSISTENT)."""
        return self._read(domain_id).index

    def at(self, domain_id: str, consistency: Consistency = FULLY_CONSISTENT) -> IndexAt:
        """The domain's index as fresh as `consistency` asks, with its revision (module doc)."""
        built = self._built.get(domain_id)
        if built is not None and self._fresh_enough(built, consistency):
            self.hits += 1
            return IndexAt(built.index, built.revision[0])
        return self._read(domain_id)

    def _fresh_enough(self, built: _Built, consistency: Consistency) -> bool:
        """May the cached index answer without reading the revision?"""
        if consistency.requirement == Requirement.FULLY_CONSISTENT:
            return False
        if built.next_expiry is not None and self._clock() >= built.next_expiry:
            return False
        if consistency.requirement == Requirement.AT_LEAST_AS_FRESH:
            return built.revision[0] >= consistency.revision
        return self._monotonic() - built.confirmed < self.max_staleness

    def _read(self, domain_id: str) -> IndexAt:
        """Reads the revisions; the cached index when it is current, else a new one."""
        domains = [domain_id, MANAGED_DOMAIN_ID]
        asked = self._monotonic()
        state = self._revisions.state(domains)
        now = self._clock()
        built = self._built.get(domain_id)
        if built and self._current(built, state.revisions, now):
            built.confirmed = asked
            self.hits += 1
            return IndexAt(built.index, built.revision[0])
        while True:
            refresh, ours = self._refresh_for(domain_id, domains, state, now, asked)
            if not refresh.done.wait(self._seconds_left()):
                raise Unavailable(
                    "the domain's evaluation index is being brought up to date and was not ready within "
                    "this call's bound; retry"
                )
            if refresh.error is not None:
                raise refresh.error
            # A refresh another caller started answers only when it was asked for at least the
            # revisions this caller read; else this caller's refresh comes next.
            if ours or all(a >= b for a, b in zip(refresh.revisions, state.revisions, strict=True)):
                assert refresh.answer is not None
                return refresh.answer

    def _refresh_for(
        self, domain_id: str, domains: list[str], state: RevisionState, now: datetime, asked: float
    ) -> tuple[_Refresh, bool]:
        """The domain's refresh under way, or a new one started for `state` (True): it runs in a
        thread of its own, to the end even when its callers give up first (a domain too large to
        read within one call's bound still gets its index, which a later call finds), and no
        caller waits for it longer than its own bound."""
        with self._refreshes_guard:
            running = self._refreshes.get(domain_id)
            if running is not None:
                return running, False
            refresh = self._refreshes[domain_id] = _Refresh(state.revisions)
        try:
            threading.Thread(
                target=self._run,
                args=(domain_id, domains, state, now, asked, refresh),
                name="index-refresh",
                daemon=True,
            ).start()
        except BaseException as exc:  # no thread (a process limit): this refresh ends now, failed
            self._end(domain_id, refresh, exc)
            raise
        return refresh, True

    def _run(
        self, domain_id: str, domains: list[str], state: RevisionState, now: datetime, asked: float, refresh: _Refresh
    ) -> None:
        try:
            refresh.answer = self._refresh(domain_id, domains, state, now, asked)
        except BaseException as exc:  # handed to every caller waiting for it
            self._end(domain_id, refresh, exc)
        else:
            self._end(domain_id, refresh, None)

    def _end(self, domain_id: str, refresh: _Refresh, error: BaseException | None) -> None:
        refresh.error = error
        with self._refreshes_guard:
            del self._refreshes[domain_id]
        refresh.done.set()

    def _refresh(
        self, domain_id: str, domains: list[str], state: RevisionState, now: datetime, asked: float
    ) -> IndexAt:
        """The index at `state`'s revisions: the cached one when a refresh before this one brought
        it there, else a new one (the cached one plus a delta, or a build), kept when the revisions
        read after it are unchanged."""
        attempts = 0
        while True:
            state = self._settled(domains, state)
            built = self._built.get(domain_id)
            if built and self._current(built, state.revisions, now):
                return IndexAt(built.index, built.revision[0])
            self.misses += 1
            index, exact, asked_after, after = self._load_and_confirm(domain_id, domains, built, state.revisions, now)
            if exact:
                # Applied from the log alone: the domain at exactly that revision, whatever
                # landed since, so there is nothing to read again.
                self._built[domain_id] = _Built(state.revisions, index, index.next_expiry, asked)
                return IndexAt(index, state.revisions[0])
            asked = asked_after
            if after == state:
                self._built[domain_id] = _Built(state.revisions, index, index.next_expiry, asked)
                return IndexAt(index, state.revisions[0])
            attempts += 1
            if attempts >= BUILD_ATTEMPTS and after.same_writes(state):
                # Single-document writes keep landing while we build: answer from this index
                # without keeping it (each of those writes is in it whole, or not at all; it
                # holds at least every write up to the revision read before building it).
                return IndexAt(index, state.revisions[0])
            state = after

    def _load_and_confirm(
        self, domain_id: str, domains: list[str], built: _Built | None, revisions: tuple[int, ...], now: datetime
    ) -> tuple[DomainIndex, bool, float, RevisionState | None]:
        """`_load`, then (unless the index came from the log alone) the time of and the revisions
        read right after it."""
        index, exact = self._load(domain_id, built, revisions, now)
        if exact:
            return index, exact, 0.0, None
        asked = self._monotonic()
        return index, exact, asked, self._revisions.state(domains)

    def _load(
        self, domain_id: str, built: _Built | None, revisions: tuple[int, ...], now: datetime
    ) -> tuple[DomainIndex, bool]:
        """The cached index plus the delta since, when the delta can be applied; else a build.
        True with an index taken from the log alone (Advanced.exact)."""
        if (
            self._advance is not None
            and built is not None
            and built.revision[1:] == revisions[1:]
            and (built.next_expiry is None or now < built.next_expiry)
            and 0 < revisions[0] - built.revision[0] <= MAX_DELTA_RECORDS
        ):
            advanced = self._advance(domain_id, built.index, built.revision[0], revisions[0], now)
            if advanced is not None:
                self.deltas += 1
                return advanced.index, advanced.exact
        self.builds += 1
        with self._builds_at_once:
            return self._build(domain_id, now), False

    def _settled(self, domains: list[str], state: RevisionState) -> RevisionState:
        """The revision state once no write of several documents is under way (their marks run
        out, so a writer that died does not hold readers back for longer than that)."""
        step = WAIT_STEP_SECONDS
        while state.writing:
            time.sleep(step)
            step = min(step * 2, WAIT_STEP_MAX_SECONDS)
            state = self._revisions.state(domains)
        return state

    @staticmethod
    def _current(built: _Built, revisions: tuple[int, ...], now: datetime) -> bool:
        return built.revision == revisions and (built.next_expiry is None or now < built.next_expiry)


@dataclass
class _Refresh:
    """A domain's index being brought up to the revisions read by the caller that started it."""

    revisions: tuple[int, ...]
    done: threading.Event = field(default_factory=threading.Event)
    answer: IndexAt | None = None
    error: BaseException | None = None


@dataclass(frozen=True)
class Advanced:
    """An index brought up to date by a delta. `exact`: taken from the change log alone, it is
    the domain at exactly the revision reached; otherwise what the delta touched was loaded as
    it is now, and may hold writes landed since (which the caller must rule out)."""

    index: DomainIndex
    exact: bool


# (domain_id, index at revision `since`, since, the revision to reach, now) -> the index at that
# revision, or None when the change log cannot bring it there.
Advance = Callable[[str, DomainIndex, int, int, datetime], "Advanced | None"]


class IndexLoader:
    """Loads a domain's index from the store: whole (`build`), or by the delta of its change
    records (`advance`; see the module doc)."""

    def __init__(
        self,
        policies: PolicyManager,
        assignments: AssignmentManager,
        revisions: RevisionManager,
        monotonic: Callable[[], float] = time.monotonic,
        whole_read: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
    ):
        self._policies = policies
        self._assignments = assignments
        self._revisions = revisions
        self._monotonic = monotonic
        # The bound of a build's reads, which grow with the domain (the database's build limit).
        self._whole_read = whole_read

    def build(self, domain_id: str, now: datetime) -> DomainIndex:
        """A fresh index of the domain's policies (with the managed ones) and assignments."""
        with self._whole_read():
            policies = self._policies.rules(domain_id)
            assignments = self._assignments.edges(domain_id)
        return DomainIndex([_rules(raw) for raw in policies], [_edge(raw) for raw in assignments], now)

    def advance(self, domain_id: str, index: DomainIndex, since: int, upto: int, now: datetime) -> Advanced | None:
        """`index` (at revision `since`) with the writes of revisions (since, upto] applied; None
        when the log cannot tell them. Assignments created and deleted come from the log when it
        holds their edges; anything else they touched is loaded as it is now, so a write landing
        meanwhile is in the result whole or not at all, as in a build."""
        records = self._records(domain_id, since, upto)
        touched = _Touched.of(records) if records is not None else None
        if touched is None:
            return None
        removed = [Edge(Subject(st, si), gt, gi) for st, si, gt, gi in touched.pairs]
        if touched.logged_only:
            logged_rules = _newer_than_held(index, touched.logged_rules)
            if logged_rules is not None:
                added = [edge for edge in touched.logged.values() if edge is not None]
                return Advanced(index.with_changes(logged_rules, (), added, removed, now), exact=True)
        # Not from the log alone: every touched policy is loaded as it is now, updates told whole too.
        to_load = touched.policies | touched.logged_rules.keys()
        rules = [_rules(raw) for raw in self._policies.rules_of(domain_id, sorted(to_load))] if to_load else []
        found = (
            self._assignments.edges_naming(domain_id, touched.pairs, touched.named_policies, touched.sets)
            if touched.pairs or touched.named_policies or touched.sets
            else []
        )
        # Every edge the writes may have changed goes, then what the store holds of them comes back.
        removed += index.edges_naming([Subject(t, i) for t, i in touched.sets], touched.named_policies)
        live = {rule.policy_id for rule in rules}
        changed = index.with_changes(rules, to_load - live, [_edge(raw) for raw in found], removed, now)
        return Advanced(changed, exact=False)

    def _records(self, domain_id: str, since: int, upto: int) -> list[dict[str, Any]] | None:
        """The records of revisions (since, upto], once all are there (None if one stays missing)."""
        wanted = list(range(since + 1, upto + 1))
        deadline = self._monotonic() + HOLE_WAIT_SECONDS
        step = WAIT_STEP_SECONDS
        while True:
            records = self._revisions.changes_after(domain_id, since, limit=len(wanted), upto=upto)
            if [record["seq"] for record in records] == wanted:
                return records
            if self._monotonic() >= deadline:
                return None
            time.sleep(step)
            step = min(step * 2, WAIT_STEP_MAX_SECONDS)


@dataclass
class _Touched:
    """What a run of change records touched, as the index sees it."""

    policies: set[str]  # policies to load again (their rules)
    # the policies whose last change the log tells whole (an update logged with its rule fields)
    logged_rules: dict[str, dict[str, Any]]
    named_policies: set[str]  # policies created or deleted (a rename too): every edge granting them
    sets: set[tuple[str, str]]  # (GROUP|ROLE, id) created or deleted (a rename too): every edge naming them
    pairs: set[tuple[str, str, str, str]]  # (subject type, id, grant type, id) of assignments written
    # the pairs whose last change the log tells whole: created (its edge) or deleted (None)
    logged: dict[tuple[str, str, str, str], Edge | None]

    @property
    def logged_only(self) -> bool:
        """Did the writes only create and delete assignments and update policies, each told whole
        by the log?"""
        return not (self.policies or self.named_policies or self.sets) and self.logged.keys() == self.pairs

    @classmethod
    def of(cls, records: list[dict[str, Any]]) -> _Touched | None:
        """None when the records cannot be applied as a delta (see the module doc)."""
        touched = cls(set(), {}, set(), set(), set(), {})
        count = 0
        for record in records:
            if record.get("incomplete"):
                return None
            for change in record.get("changes") or []:
                count += 1
                if count > MAX_DELTA_CHANGES:
                    return None
                kind, item, operation = change.get("kind"), change.get("id", ""), change.get("operation")
                if kind == ChangeKind.POLICY:
                    rules = change.get("rules")
                    if operation == Operation.UPDATE and isinstance(rules, dict) and item not in touched.policies:
                        # Only updates told whole, and of one document: the latest write of them.
                        held = touched.logged_rules.get(item)
                        if held is None or (_written(rules) or _UNKNOWN) > (_written(held) or _UNKNOWN):
                            touched.logged_rules[item] = rules
                    else:
                        touched.policies.add(item)
                        touched.logged_rules.pop(item, None)
                        if operation != Operation.UPDATE:
                            touched.named_policies.add(item)
                elif kind in (ChangeKind.GROUP, ChangeKind.ROLE):
                    # An update of a role or group changes its name or tags, nothing evaluated.
                    if operation != Operation.UPDATE:
                        touched.sets.add((kind, item))
                elif kind == ChangeKind.ASSIGNMENT and change.get("subject") and change.get("grant"):
                    subject, grant = change["subject"], change["grant"]
                    pair = (subject["type"], subject["id"], grant["type"], grant["id"])
                    touched.pairs.add(pair)
                    if change.get("recheck"):  # the store held otherwise once it was logged: loaded
                        touched.logged.pop(pair, None)
                    elif operation == Operation.DELETE:
                        touched.logged[pair] = None
                    elif operation == Operation.CREATE and "expires_at" in change:
                        edge = Edge(Subject(pair[0], pair[1]), pair[2], pair[3], change["expires_at"])
                        touched.logged[pair] = edge
                    else:  # an update, or a creation logged by an earlier version (no expiry): loaded
                        touched.logged.pop(pair, None)
                else:
                    return None  # a kind this version does not know, or an assignment logged without its pair
        return touched


def _rules(raw: dict[str, Any]) -> PolicyRules:
    return PolicyRules.from_policy(
        raw["policy_id"],
        raw.get("statements") or [],
        raw.get("permissions") or [],
        enabled=raw.get("state") == "ENABLED",
        written=_written(raw),
    )


_UNKNOWN = ("", -1)  # orders a write of unknown version first


def _written(raw: dict[str, Any]) -> tuple[str, int] | None:
    """Which write of which document a stored or logged policy is: (its creation time, its
    version), None when either is missing (written by an earlier version)."""
    created_at, version = raw.get("created_at"), raw.get("version")
    if not isinstance(created_at, datetime) or not isinstance(version, int):
        return None
    return as_utc(created_at).isoformat(), version


def _newer_than_held(index: DomainIndex, logged: dict[str, dict[str, Any]]) -> list[PolicyRules] | None:
    """The logged policy updates the index does not hold yet: those of a later version of the
    document it holds (an update logged after a later one of the same policy is stale). None when
    one cannot be placed (the index holds another document of that id, or one of unknown version):
    then they are loaded."""
    newer = []
    for policy_id, fields in logged.items():
        rules, held = _rules({"policy_id": policy_id, **fields}), index.policy(policy_id)
        if rules.written is None or held is None or held.written is None or held.written[0] != rules.written[0]:
            return None
        if rules.written[1] > held.written[1]:
            newer.append(rules)
    return newer


def _edge(raw: dict[str, Any]) -> Edge:
    return Edge(
        Subject(raw["subject_type"], raw["subject_id"]), raw["grant_type"], raw["grant_id"], raw.get("expires_at")
    )
