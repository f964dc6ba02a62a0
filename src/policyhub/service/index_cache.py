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
from policyhub.service.context import Clock

# How often a reader looks again while a write of several documents is under way, and how
# many times a build that saw the revision move is tried before its index answers uncached.
WAIT_STEP_SECONDS = 0.005
WAIT_STEP_MAX_SECONDS = 0.05
BUILD_ATTEMPTS = 3


@dataclass(frozen=True)
class _Built:
    revision: tuple[int, ...]
    index: DomainIndex
    next_expiry: datetime | None


class IndexCache:
    """Compiled evaluation indexes by domain, each tagged with the revision it was built from."""

    def __init__(self, build: Callable[[str, datetime], DomainIndex], revisions: RevisionManager, clock: Clock):
        self._build = build
        self._revisions = revisions
        self._clock = clock
        self._built: dict[str, _Built] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, domain_id: str) -> DomainIndex:
        domains = [domain_id, MANAGED_DOMAIN_ID]
        state = self._revisions.state(domains)
        now = self._clock()
        built = self._built.get(domain_id)
        if built and self._current(built, state.revisions, now):
            self.hits += 1
            return built.index
        with self._lock(domain_id):
            attempts = 0
            while True:
                state = self._settled(domains, state)
                built = self._built.get(domain_id)
                if built and self._current(built, state.revisions, now):
                    return built.index
                self.misses += 1
                index = self._build(domain_id, now)
                after = self._revisions.state(domains)
                if after == state:
                    self._built[domain_id] = _Built(state.revisions, index, index.next_expiry)
                    return index
                attempts += 1
                if attempts >= BUILD_ATTEMPTS and after.same_writes(state):
                    # Single-document writes keep landing while we build: answer from this index
                    # without keeping it (each of those writes is in it whole, or not at all).
                    return index
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
