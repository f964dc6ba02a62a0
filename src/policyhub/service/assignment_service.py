"""Assignments: bind subjects to policies and to role/group membership, within the caller's domain."""

from __future__ import annotations

from itertools import product
from typing import Any

from policyhub.errors import InvalidArgument, RequiredParameter
from policyhub.manager.assignment_manager import AssignmentManager
from policyhub.service import validation
from policyhub.service.assignment_writer import AssignmentWriter, pair_key
from policyhub.service.context import RequestContext
from policyhub.service.guard import Guard
from policyhub.service.permissions import (
    ASSIGNMENT_ADD,
    ASSIGNMENT_CREATE,
    ASSIGNMENT_DELETE,
    ASSIGNMENT_GET,
    ASSIGNMENT_LIST,
    ASSIGNMENT_REMOVE,
    ASSIGNMENT_STAT,
)
from policyhub.service.shortcuts import narrowed

MAX_BATCH = 10_000


class AssignmentService:
    def __init__(self, assignments: AssignmentManager, writer: AssignmentWriter, guard: Guard):
        self.assignments = assignments
        self.writer = writer
        self.guard = guard

    def create(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        subject = validation.subject(params.get("subject"))
        grant = validation.grant(params.get("grant"))
        return self.writer.create(ctx, ASSIGNMENT_CREATE, subject, grant, params)

    def add(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return self.writer.add(ctx, ASSIGNMENT_ADD, self._pairs(params), params)

    def remove(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return self.writer.remove(ctx, ASSIGNMENT_REMOVE, self._pairs(params))

    def delete(self, ctx: RequestContext, params: dict[str, Any]) -> str:
        """Returns the consistency token of the write."""
        assignment_id = validation.identifier(params.get("assignment_id", ""), "assignment_id")
        self.guard.require(ctx, ASSIGNMENT_DELETE, "assignment")
        return self.writer.delete(ctx, ASSIGNMENT_DELETE, assignment_id)

    def get(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        assignment_id = validation.identifier(params.get("assignment_id", ""), "assignment_id")
        self.guard.require(ctx, ASSIGNMENT_GET, "assignment")
        return self.assignments.get(ctx.domain_id, assignment_id)

    def list(self, ctx: RequestContext, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
        fields = {"assignment_id": validation.optional_identifier(params.get("assignment_id"), "assignment_id")}
        for prefix in ("subject", "grant"):
            part = params.get(prefix) or {}
            if not part.get("type", "").endswith("NONE"):
                fields[f"{prefix}_type"] = part.get("type")
            fields[f"{prefix}_id"] = validation.optional_identifier(part.get("id"), f"{prefix}.id")
        self.guard.require(ctx, ASSIGNMENT_LIST, "assignment")
        return self.assignments.list(ctx.domain_id, narrowed(params.get("query"), fields))

    def stat(self, ctx: RequestContext, params: dict[str, Any]) -> tuple[list, int | None]:
        self.guard.require(ctx, ASSIGNMENT_STAT, "assignment")
        query = params.get("query")
        if not query:
            raise RequiredParameter("query")
        return self.assignments.stat(ctx.domain_id, query)

    def _pairs(self, params: dict[str, Any]) -> list[tuple[dict, dict]]:
        """grants x subject_ids, validated, de-duplicated, in request order; nothing is written on error."""
        grants = params.get("grants") or []
        subject_ids = params.get("subject_ids") or []
        if not grants:
            raise RequiredParameter("grants")
        if not subject_ids:
            raise RequiredParameter("subject_ids")
        if len(grants) * len(subject_ids) > MAX_BATCH:
            raise InvalidArgument(
                "subject_ids",
                f"grants x subject_ids is {len(grants) * len(subject_ids)} assignments; at most {MAX_BATCH} per call",
            )
        subject_type = params.get("subject_type", "")
        valid_grants = [validation.grant(g, f"grants[{i}]") for i, g in enumerate(grants)]
        subjects = [
            validation.subject({"type": subject_type, "id": sid}, f"subject_ids[{i}]")
            for i, sid in enumerate(subject_ids)
        ]
        seen: set = set()
        pairs = []
        for grant, subject in product(valid_grants, subjects):
            key = pair_key(subject, grant)
            if key not in seen:
                seen.add(key)
                pairs.append((subject, grant))
        return pairs
