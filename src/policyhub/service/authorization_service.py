"""Authorization questions (check, list-authorized, who-can, effective permissions),
answered from the per-domain compiled evaluation index (see policyhub.service.index_cache)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from policyhub.engine import Subject
from policyhub.errors import InvalidArgument, RequiredParameter
from policyhub.service import validation
from policyhub.service.context import Clock, RequestContext
from policyhub.service.guard import Guard
from policyhub.service.index_cache import IndexCache
from policyhub.service.permissions import (
    ASSIGNMENT_BATCH_CHECK,
    ASSIGNMENT_CHECK,
    ASSIGNMENT_EFFECTIVE_PERMISSIONS,
    ASSIGNMENT_LIST_AUTHORIZED_RESOURCES,
    ASSIGNMENT_LIST_SUBJECTS,
    Permission,
)

MAX_BATCH_CHECK = 10_000
ACTION_MAX = 512
# Filled with the time of the request unless the caller's context gives it.
REQUEST_TIME = "request.time"


@dataclass(frozen=True)
class AuthorizedListing:
    results: list
    total_count: int
    # context keys that statement conditions needed and the request lacked
    missing_context: tuple[str, ...]


class AuthorizationService:
    def __init__(self, cache: IndexCache, guard: Guard, page_max_limit: int, clock: Clock):
        self.cache = cache
        self.guard = guard
        self.page_max_limit = page_max_limit
        self.clock = clock

    def check(self, ctx: RequestContext, params: dict[str, Any]):
        subject, action, resource = _question(params, "")
        context = self._context(params.get("context"), "context")
        self.guard.require(ctx, ASSIGNMENT_CHECK, "assignment")
        return self.cache.get(ctx.domain_id).check(subject, action, resource, context)

    def batch_check(self, ctx: RequestContext, params: dict[str, Any]) -> list:
        items = params.get("items") or []
        if not items:
            raise RequiredParameter("items")
        if len(items) > MAX_BATCH_CHECK:
            raise InvalidArgument("items", f"at most {MAX_BATCH_CHECK} items per call, got {len(items)}")
        questions = [_question(item, f"items[{index}].") for index, item in enumerate(items)]
        shared = self._context(params.get("context"), "context")
        contexts = [
            {**shared, **validation.context(item.get("context"), f"items[{index}].context")}
            if item.get("context")
            else shared
            for index, item in enumerate(items)
        ]
        self.guard.require(ctx, ASSIGNMENT_BATCH_CHECK, "assignment")
        index = self.cache.get(ctx.domain_id)
        return [index.check(*question, context) for question, context in zip(questions, contexts, strict=True)]

    def _context(self, value: dict[str, Any] | None, field: str) -> dict[str, Any]:
        """The request's context, flattened, with request.time (now) unless the caller gave it."""
        context = validation.context(value, field)
        context.setdefault(REQUEST_TIME, self.clock().isoformat())
        return context

    def list_authorized_resources(self, ctx: RequestContext, params: dict[str, Any]) -> AuthorizedListing:
        subject = _subject(params.get("subject"), "subject")
        return self.authorized_resources(ctx, subject, params, ASSIGNMENT_LIST_AUTHORIZED_RESOURCES, "assignment")

    def authorized_resources(
        self, ctx: RequestContext, subject: Subject, params: dict[str, Any], permission: Permission, resource: str
    ) -> AuthorizedListing:
        """What the subject may act on (`resource_prefix`, `action`, `context`, `page` from
        params), asked with `permission` on `resource`."""
        prefix = validation.text(params.get("resource_prefix") or "", "resource_prefix", ACTION_MAX)
        action = params.get("action") or None
        if action is not None:
            validation.pattern(action, "action")
        context = self._context(params.get("context"), "context")
        self.guard.require(ctx, permission, resource)
        missing: set[str] = set()
        found = self.cache.get(ctx.domain_id).list_authorized_resources(subject, prefix, action, context, missing)
        return AuthorizedListing(self._page(found, params.get("page")), len(found), tuple(sorted(missing)))

    def list_subjects(self, ctx: RequestContext, params: dict[str, Any]) -> tuple[list, int]:
        policy_id = params.get("policy_id") or ""
        action, resource = params.get("action") or "", params.get("resource") or ""
        if policy_id:
            if action or resource:
                raise InvalidArgument("policy_id", "give either policy_id, or action and resource, not both")
            validation.policy_id(policy_id)
        elif action or resource:
            validation.pattern(action, "action")
            validation.pattern(resource, "resource")
        else:
            raise RequiredParameter("policy_id")
        self.guard.require(ctx, ASSIGNMENT_LIST_SUBJECTS, "assignment")
        index = self.cache.get(ctx.domain_id)
        found = index.subjects_holding(policy_id) if policy_id else index.who_can(action, resource)
        return self._page(found, params.get("page")), len(found)

    def effective_permissions(self, ctx: RequestContext, params: dict[str, Any]) -> list:
        subject = _subject(params.get("subject"), "subject")
        self.guard.require(ctx, ASSIGNMENT_EFFECTIVE_PERMISSIONS, "assignment")
        return self.cache.get(ctx.domain_id).effective_statements(subject)

    def _page(self, items: list, page: dict | None) -> list:
        start, limit = validation.page(page, self.page_max_limit)
        return items[start - 1 : start - 1 + limit]


def _subject(value: dict | None, field: str) -> Subject:
    checked = validation.subject(value, field)
    return Subject(checked["type"], checked["id"])


def _question(item: dict[str, Any], prefix: str) -> tuple[Subject, str, str]:
    subject = _subject(item.get("subject"), f"{prefix}subject")
    action = validation.pattern(item.get("action") or "", f"{prefix}action")
    resource = validation.pattern(item.get("resource") or "", f"{prefix}resource")
    return subject, action, resource
