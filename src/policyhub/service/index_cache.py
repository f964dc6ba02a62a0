"""The per-domain compiled evaluation index, and when to rebuild it.

The index of a domain is rebuilt when the domain's revision (or the managed policies'
revision) changed since it was built — read with one cheap query per call, so a write
through any server process is seen by the next call of every process — or when an
assignment it contains expires.

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
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from policyhub.domain import MANAGED_DOMAIN_ID
from policyhub.engine import DomainIndex, Edge, PolicyRules, Subject
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
# How long after a read found a cached index current MINIMIZE_LATENCY may answer from it unread.
DEFAULT_MAX_STALENESS_SECONDS = 5.0


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
    ):
        self._build = build
        self._revisions = revisions
        self._clock = clock
        self.max_staleness = max_staleness
        self._monotonic = monotonic
        self._built: dict[str, _Built] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self.hits = 0
        self.misses = 0

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
        with self._lock(domain_id):
            attempts = 0
            while True:
                state = self._settled(domains, state)
                built = self._built.get(domain_id)
                if built and self._current(built, state.revisions, now):
                    return IndexAt(built.index, built.revision[0])
                self.misses += 1
                index = self._build(domain_id, now)
                asked = self._monotonic()
                after = self._revisions.state(domains)
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

    def _lock(self, domain_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(domain_id, threading.Lock())


def index_builder(policies: PolicyManager, assignments: AssignmentManager) -> Callable[[str, datetime], DomainIndex]:
    """Loads a domain's policies (with the managed ones) and assignments into a fresh index."""

    def build(domain_id: str, now: datetime) -> DomainIndex:
        rules = [
            PolicyRules.from_policy(
                p["policy_id"],
                p.get("statements") or [],
                p.get("permissions") or [],
                enabled=p.get("state") == "ENABLED",
            )
            for p in policies.rules(domain_id)
        ]
        edges = [
            Edge(Subject(e["subject_type"], e["subject_id"]), e["grant_type"], e["grant_id"], e.get("expires_at"))
            for e in assignments.edges(domain_id)
        ]
        return DomainIndex(rules, edges, now)

    return build
