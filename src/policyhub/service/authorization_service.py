"""Authorization questions (check, list-authorized, who-can, effective permissions),
answered from a per-domain compiled evaluation index.

The index of a domain is rebuilt when the domain's revision (or the managed policies'
revision) changed since it was built — read with one cheap query per call, so a write
through any server process is seen by the next call of every process — or when an
assignment it contains expires.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from policyhub.engine import DomainIndex, Edge, PolicyRules, Subject
from policyhub.errors import InvalidArgument, RequiredParameter
from policyhub.manager.assignment_manager import AssignmentManager
from policyhub.manager.policy_manager import PolicyManager
from policyhub.manager.revision_manager import RevisionManager
from policyhub.model.policy import MANAGED_DOMAIN_ID
from policyhub.service import validation
from policyhub.service.context import Clock, RequestContext

MAX_BATCH_CHECK = 10_000
ACTION_MAX = 512


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


class AuthorizationService:
    def __init__(self, policies: PolicyManager, assignments: AssignmentManager, revisions: RevisionManager,
                 clock: Clock, page_max_limit: int):
        self.policies = policies
        self.assignments = assignments
        self.page_max_limit = page_max_limit
        self.cache = IndexCache(self._build_index, revisions, clock)

    def _build_index(self, domain_id: str, now: datetime) -> DomainIndex:
        rules = [PolicyRules.from_policy(p["policy_id"], p.get("statements") or [], p.get("permissions") or [],
                                         enabled=p.get("state") == "ENABLED")
                 for p in self.policies.rules(domain_id)]
        edges = [Edge(Subject(e["subject_type"], e["subject_id"]), e["grant_type"], e["grant_id"],
                      _aware(e.get("expires_at")))
                 for e in self.assignments.edges(domain_id)]
        return DomainIndex(rules, edges, now)

    def check(self, ctx: RequestContext, params: dict[str, Any]):
        subject, action, resource = _question(params, "")
        return self.cache.get(ctx.domain_id).check(subject, action, resource)

    def batch_check(self, ctx: RequestContext, params: dict[str, Any]) -> list:
        items = params.get("items") or []
        if not items:
            raise RequiredParameter("items")
        if len(items) > MAX_BATCH_CHECK:
            raise InvalidArgument("items", f"at most {MAX_BATCH_CHECK} items per call, got {len(items)}")
        questions = [_question(item, f"items[{index}].") for index, item in enumerate(items)]
        return self.cache.get(ctx.domain_id).batch_check(questions)

    def list_authorized_resources(self, ctx: RequestContext, params: dict[str, Any]) -> tuple[list, int]:
        subject = _subject(params.get("subject"), "subject")
        prefix = params.get("resource_prefix") or ""
        if len(prefix) > ACTION_MAX:
            raise InvalidArgument("resource_prefix", f"must have at most {ACTION_MAX} characters")
        action = params.get("action") or None
        if action is not None:
            validation.pattern(action, "action")
        found = self.cache.get(ctx.domain_id).list_authorized_resources(subject, prefix, action)
        return self._page(found, params.get("page")), len(found)

    def list_subjects(self, ctx: RequestContext, params: dict[str, Any]) -> tuple[list, int]:
        policy_id = params.get("policy_id") or ""
        action, resource = params.get("action") or "", params.get("resource") or ""
        index = self.cache.get(ctx.domain_id)
        if policy_id:
            if action or resource:
                raise InvalidArgument("policy_id", "give either policy_id, or action and resource, not both")
            found = index.subjects_holding(validation.policy_id(policy_id))
        elif action or resource:
            found = index.who_can(validation.pattern(action, "action"), validation.pattern(resource, "resource"))
        else:
            raise RequiredParameter("policy_id")
        return self._page(found, params.get("page")), len(found)

    def effective_permissions(self, ctx: RequestContext, params: dict[str, Any]) -> list:
        subject = _subject(params.get("subject"), "subject")
        return self.cache.get(ctx.domain_id).effective_statements(subject)

    def _page(self, items: list, page: dict | None) -> list:
        page = page or {}
        start = max(int(page.get("start") or 1), 1)
        limit = min(int(page.get("limit") or self.page_max_limit), self.page_max_limit)
        return items[start - 1:start - 1 + limit]


def _subject(value: dict | None, field: str) -> Subject:
    checked = validation.subject(value, field)
    return Subject(checked["type"], checked["id"])


def _question(item: dict[str, Any], prefix: str) -> tuple[Subject, str, str]:
    subject = _subject(item.get("subject"), f"{prefix}subject")
    action = validation.pattern(item.get("action") or "", f"{prefix}action")
    resource = validation.pattern(item.get("resource") or "", f"{prefix}resource")
    return subject, action, resource


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value
