"""The per-domain compiled evaluation index, and when to rebuild it.

The index of a domain is rebuilt when the domain's revision (or the managed policies'
revision) changed since it was built — read with one cheap query per call, so a write
through any server process is seen by the next call of every process — or when an
assignment it contains expires.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from policyhub.domain import MANAGED_DOMAIN_ID
from policyhub.engine import DomainIndex, Edge, PolicyRules, Subject
from policyhub.manager.assignment_manager import AssignmentManager
from policyhub.manager.policy_manager import PolicyManager
from policyhub.manager.revision_manager import RevisionManager
from policyhub.service.context import Clock


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
        revision = self._revisions.current([domain_id, MANAGED_DOMAIN_ID])
        now = self._clock()
        built = self._built.get(domain_id)
        if built and built.revision == revision and (built.next_expiry is None or now < built.next_expiry):
            self.hits += 1
            return built.index
        with self._lock(domain_id):
            built = self._built.get(domain_id)
            if not (built and built.revision == revision and (built.next_expiry is None or now < built.next_expiry)):
                self.misses += 1
                index = self._build(domain_id, now)
                built = _Built(revision, index, index.next_expiry)
                self._built[domain_id] = built
            return built.index

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
