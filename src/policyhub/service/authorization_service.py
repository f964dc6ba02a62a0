"""Authorization questions (check, list-authorized, who-can, effective permissions),
answered from the per-domain compiled evaluation index (see policyhub.service.index_cache).

"May I?": `check` and `batch_check` about the caller itself need no permission, so any
authenticated caller (a sibling service, a user's front end) can ask what it may do. A question
is about the caller when its subject is left empty (it then stands for the caller) or equals the
caller's own subject (its token's `typ` and `sub`, or its API key's service account). Only
authenticated callers have such a subject: in development mode (a stand-in caller, every caller
SYSTEM) and for anonymous readers the subject stays required. The answer is the subject's own,
from its assignments, as if another caller had asked: a caller's role (SYSTEM, DOMAIN_ADMIN)
bypasses the service's permissions but is not an assignment, so it is not in the answer.
Questions about anyone else need `repository.Assignment.check` (`batch_check`: once, if any item
is about someone else).

Every question takes a `consistency` requirement (policyhub.service.consistency), checked with the
rest of the request before any authorization, and every answer carries the consistency token of
the domain revision it was computed at. The service's own permission check stays fully consistent
(see Guard).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from policyhub.engine import Decision, Subject
from policyhub.errors import InvalidArgument, RequiredParameter
from policyhub.service import consistency, validation
from policyhub.service.context import Clock, RequestContext
from policyhub.service.guard import Guard
from policyhub.service.index_cache import IndexCache
from policyhub.service.permissions import (
    ASSIGNMENT_BATCH_CHECK,
    ASSIGNMENT_CHECK,
    ASSIGNMENT_EFFECTIVE_PERMISSIONS,
    ASSIGNMENT_LIST_AUTHORIZED_RESOURCES,
    ASSIGNMENT_LIST_SUBJECTS,
)
from policyhub.service.resource_listing import AuthorizedListing, ResourceListing, condition_context

MAX_BATCH_CHECK = 1_000


# Bounded and clean like an id: it comes back in the answer (and may end up in a caller's logs).
CORRELATION_ID_MAX = validation.IDENTIFIER_MAX


class Answer(NamedTuple):
    """One batch_check answer: the decision and the correlation id of the item it answers."""

    decision: Decision
    correlation_id: str


class Checked(NamedTuple):
    """check's answer: the decision and the consistency token of the revision it was made at."""

    decision: Decision
    consistency_token: str


class Answered(NamedTuple):
    """An answer of list_subjects (a page) or effective_permissions (all of them), with the total
    and the consistency token of the revision it was computed at."""

    results: list
    total_count: int
    consistency_token: str


class Question(NamedTuple):
    subject: Subject
    action: str
    resource: str
    # The subject is the caller: no permission is needed to ask.
    for_self: bool


class AuthorizationService:
    def __init__(self, cache: IndexCache, guard: Guard, listing: ResourceListing, page_max_limit: int, clock: Clock):
        self.cache = cache
        self.guard = guard
        self.listing = listing
        self.page_max_limit = page_max_limit
        self.clock = clock

    def check(self, ctx: RequestContext, params: dict[str, Any]) -> Checked:
        question = _question(ctx, params, "")
        context = self._context(params.get("context"), "context")
        required = consistency.requested(params.get("consistency"))
        if not question.for_self:
            self.guard.require(ctx, ASSIGNMENT_CHECK, "assignment")
        at = self.cache.at(ctx.domain_id, required)
        return Checked(at.index.check(question.subject, question.action, question.resource, context), at.token)

    def batch_check(self, ctx: RequestContext, params: dict[str, Any]) -> tuple[list[Answer], str]:
        """The decisions in the order of the items, each with its item's `correlation_id`, all at
        one revision, and that revision's consistency token."""
        items = params.get("items") or []
        if not items:
            raise RequiredParameter("items")
        if len(items) > MAX_BATCH_CHECK:
            raise InvalidArgument("items", f"at most {MAX_BATCH_CHECK} items per call, got {len(items)}")
        questions, correlation_ids = [], []
        for index, item in enumerate(items):
            prefix = f"items[{index}]."
            questions.append(_question(ctx, item, prefix))
            correlation_ids.append(
                validation.text(item.get("correlation_id") or "", f"{prefix}correlation_id", CORRELATION_ID_MAX)
            )
        shared = self._context(params.get("context"), "context")
        contexts = [
            {**shared, **validation.context(item.get("context"), f"items[{index}].context")}
            if item.get("context")
            else shared
            for index, item in enumerate(items)
        ]
        required = consistency.requested(params.get("consistency"))
        if not all(question.for_self for question in questions):
            self.guard.require(ctx, ASSIGNMENT_BATCH_CHECK, "assignment")
        at = self.cache.at(ctx.domain_id, required)
        answers = [
            Answer(at.index.check(q.subject, q.action, q.resource, context), correlation_id)
            for q, context, correlation_id in zip(questions, contexts, correlation_ids, strict=True)
        ]
        return answers, at.token

    def _context(self, value: dict[str, Any] | None, field: str) -> dict[str, Any]:
        return condition_context(value, field, self.clock)

    def list_authorized_resources(self, ctx: RequestContext, params: dict[str, Any]) -> AuthorizedListing:
        subject = _subject(params.get("subject"), "subject")
        return self.listing.authorized_resources(
            ctx, subject, params, ASSIGNMENT_LIST_AUTHORIZED_RESOURCES, "assignment"
        )

    def list_subjects(self, ctx: RequestContext, params: dict[str, Any]) -> Answered:
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
        required = consistency.requested(params.get("consistency"))
        self.guard.require(ctx, ASSIGNMENT_LIST_SUBJECTS, "assignment")
        at = self.cache.at(ctx.domain_id, required)
        found = at.index.subjects_holding(policy_id) if policy_id else at.index.who_can(action, resource)
        return Answered(self._page(found, params.get("page")), len(found), at.token)

    def effective_permissions(self, ctx: RequestContext, params: dict[str, Any]) -> Answered:
        subject = _subject(params.get("subject"), "subject")
        required = consistency.requested(params.get("consistency"))
        self.guard.require(ctx, ASSIGNMENT_EFFECTIVE_PERMISSIONS, "assignment")
        at = self.cache.at(ctx.domain_id, required)
        found = at.index.effective_statements(subject)
        return Answered(found, len(found), at.token)

    def _page(self, items: list, page: dict | None) -> list:
        start, limit = validation.page(page, self.page_max_limit)
        return items[start - 1 : start - 1 + limit]


def _subject(value: dict | None, field: str) -> Subject:
    checked = validation.subject(value, field)
    return Subject(checked["type"], checked["id"])


def _question(ctx: RequestContext, item: dict[str, Any], prefix: str) -> Question:
    field = f"{prefix}subject"
    caller = _caller_subject(ctx)
    if not _is_empty(item.get("subject")):
        subject = _subject(item.get("subject"), field)
    elif caller is not None:
        subject = caller
    else:
        raise RequiredParameter(field, "left empty it stands for the caller, and without authentication there is none")
    action = validation.pattern(item.get("action") or "", f"{prefix}action")
    resource = validation.pattern(item.get("resource") or "", f"{prefix}resource")
    return Question(subject, action, resource, for_self=subject == caller)


def _caller_subject(ctx: RequestContext) -> Subject | None:
    """The caller as a subject of its domain, when it was authenticated (else it names nobody)."""
    return Subject(ctx.caller_type, ctx.caller_id) if ctx.authenticated else None


def _is_empty(subject: dict[str, str] | None) -> bool:
    """A subject left out: not set, or set to its zero value (TYPE_NONE, no id)."""
    return not subject or (subject.get("type", "") in ("", "TYPE_NONE") and not subject.get("id"))
