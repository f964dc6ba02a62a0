"""What a subject may act on (list_authorized_resources), shared by the Assignment and Group
services, and the context that statement conditions are evaluated against."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from policyhub.engine import Subject
from policyhub.service import consistency, validation
from policyhub.service.context import Clock, RequestContext
from policyhub.service.guard import Guard
from policyhub.service.index_cache import IndexCache
from policyhub.service.permissions import Permission

ACTION_MAX = 512
# Filled with the time of the request unless the caller's context gives it.
REQUEST_TIME = "request.time"


def condition_context(value: dict[str, Any] | None, field: str, clock: Clock) -> dict[str, Any]:
    """A request's context, validated and flattened, with request.time (now) unless given."""
    context = validation.context(value, field)
    context.setdefault(REQUEST_TIME, clock().isoformat())
    return context


@dataclass(frozen=True)
class AuthorizedListing:
    results: list
    total_count: int
    # context keys that statement conditions needed and the request lacked
    missing_context: tuple[str, ...]
    # the consistency token of the domain revision the listing was computed at
    consistency_token: str


class ResourceListing:
    def __init__(self, indexes: IndexCache, guard: Guard, page_max_limit: int, clock: Clock):
        self.indexes = indexes
        self.guard = guard
        self.page_max_limit = page_max_limit
        self.clock = clock

    def authorized_resources(
        self, ctx: RequestContext, subject: Subject, params: dict[str, Any], permission: Permission, resource: str
    ) -> AuthorizedListing:
        """What the subject may act on (`resource_prefix`, `action`, `context`, `page`,
        `consistency` from params), asked with `permission` on `resource`."""
        prefix = validation.text(params.get("resource_prefix") or "", "resource_prefix", ACTION_MAX)
        action = params.get("action") or None
        if action is not None:
            validation.pattern(action, "action")
        context = condition_context(params.get("context"), "context", self.clock)
        required = consistency.requested(params.get("consistency"))
        self.guard.require(ctx, permission, resource)
        missing: set[str] = set()
        at = self.indexes.at(ctx.domain_id, required)
        found = at.index.list_authorized_resources(subject, prefix, action, context, missing)
        start, limit = validation.page(params.get("page"), self.page_max_limit)
        return AuthorizedListing(found[start - 1 : start - 1 + limit], len(found), tuple(sorted(missing)), at.token)
