"""Assignments: bind subjects to policies and to role/group membership, within the caller's domain."""

from __future__ import annotations

import secrets
from datetime import datetime
from itertools import product
from typing import Any

from policyhub.domain import GrantType, SubjectType, as_utc
from policyhub.errors import InvalidArgument, NotFound, RequiredParameter
from policyhub.manager.assignment_manager import AssignmentManager, key_of
from policyhub.manager.audit_trail import AuditTrail
from policyhub.manager.policy_manager import PolicyManager
from policyhub.manager.revision_manager import RevisionManager
from policyhub.manager.subject_set_manager import SubjectSetManager
from policyhub.service import validation
from policyhub.service.context import Clock, RequestContext
from policyhub.service.guard import Guard
from policyhub.service.invalidation import invalidating
from policyhub.service.permissions import (
    ASSIGNMENT_ADD,
    ASSIGNMENT_CREATE,
    ASSIGNMENT_DELETE,
    ASSIGNMENT_GET,
    ASSIGNMENT_LIST,
    ASSIGNMENT_REMOVE,
    ASSIGNMENT_STAT,
    Permission,
)
from policyhub.service.shortcuts import narrowed
from policyhub.service.undo import Undo

MAX_BATCH = 10_000
# The roles and groups an assignment can name, as subject or as grant: each must exist.
SET_TYPES = (SubjectType.GROUP, SubjectType.ROLE)


def new_assignment_id() -> str:
    return f"asg-{secrets.token_hex(8)}"


class AssignmentService:
    def __init__(
        self,
        assignments: AssignmentManager,
        policies: PolicyManager,
        sets: dict[str, SubjectSetManager],
        revisions: RevisionManager,
        audit: AuditTrail,
        guard: Guard,
        clock: Clock,
    ):
        self.assignments = assignments
        self.policies = policies
        # by type (GROUP, ROLE): the managers of the documents an assignment may name
        self.sets = sets
        self.revisions = revisions
        self.audit = audit
        self.guard = guard
        self.clock = clock

    def create(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        subject = validation.subject(params.get("subject"))
        grant = validation.grant(params.get("grant"))
        self._authorize(ctx, ASSIGNMENT_CREATE, [grant])
        extras = self._extras(params)
        self._require_named(ctx, [(subject, grant)])
        self.guard.require_bindable(ctx, [grant], removing=False)
        record = self._record(ctx, subject, grant, extras)
        with invalidating(self.revisions, ctx.domain_id):
            created = self.assignments.create(record)
            self._recheck_named(ctx, [record])
        self.audit.record(ctx, ASSIGNMENT_CREATE, created["assignment_id"], None, created)
        return created

    def add(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return self.add_pairs(ctx, ASSIGNMENT_ADD, self._pairs(params), params)

    def remove(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return self.remove_pairs(ctx, ASSIGNMENT_REMOVE, self._pairs(params))

    def add_pairs(
        self, ctx: RequestContext, permission: Permission, pairs: list[tuple[dict, dict]], params: dict[str, Any]
    ) -> dict[str, Any]:
        """Creates the (subject, grant) pairs that do not exist yet, all or nothing; each grant
        authorized as `permission` on it; `params` may set expires_at, labels and tags."""
        self._authorize(ctx, permission, [grant for _, grant in pairs])
        extras = self._extras(params)
        self._require_named(ctx, pairs)
        self.guard.require_bindable(ctx, [grant for _, grant in pairs], removing=False)
        existing = self.assignments.find_by_keys(ctx.domain_id, [_key(s, g) for s, g in pairs])
        new_records = {
            _key(subject, grant): self._record(ctx, subject, grant, extras)
            for subject, grant in pairs
            if _key(subject, grant) not in existing
        }
        created: list[dict[str, Any]] = []
        if new_records:
            with invalidating(self.revisions, ctx.domain_id):
                # Pairs created meanwhile by someone else are theirs: reported, not created.
                existing.update(self.assignments.insert_new(list(new_records.values())))
                created = [record for key, record in new_records.items() if key not in existing]
                self._recheck_named(ctx, created)
            self.audit.record_many(ctx, permission, [(record["assignment_id"], None, record) for record in created])
        results = []
        for subject, grant in pairs:
            found = existing.get(_key(subject, grant))
            if found:
                results.append(_change(subject, grant, "ALREADY_EXISTS", found["assignment_id"]))
            else:
                results.append(_change(subject, grant, "CREATED", new_records[_key(subject, grant)]["assignment_id"]))
        return {"results": results, "changed_count": len(created)}

    def remove_pairs(
        self, ctx: RequestContext, permission: Permission, pairs: list[tuple[dict, dict]]
    ) -> dict[str, Any]:
        """Removes the (subject, grant) pairs that exist, all or nothing; each grant authorized
        as `permission` on it."""
        self._authorize(ctx, permission, [grant for _, grant in pairs])
        existing = self.assignments.find_by_keys(ctx.domain_id, [_key(s, g) for s, g in pairs])
        self.guard.require_bindable(
            ctx, [{"type": a["grant_type"], "id": a["grant_id"]} for a in existing.values()], removing=True
        )
        removed: set[str] = set()
        if existing:
            with invalidating(self.revisions, ctx.domain_id):
                # Pairs removed meanwhile by someone else are not counted as ours.
                removed = self.assignments.remove_ids(ctx.domain_id, [a["assignment_id"] for a in existing.values()])
            self.audit.record_many(
                ctx,
                permission,
                [(a["assignment_id"], a, None) for a in existing.values() if a["assignment_id"] in removed],
            )
        results = []
        for subject, grant in pairs:
            found = existing.get(_key(subject, grant))
            if found and found["assignment_id"] in removed:
                results.append(_change(subject, grant, "REMOVED", found["assignment_id"]))
            else:
                results.append(_change(subject, grant, "NOT_FOUND", ""))
        return {"results": results, "changed_count": len(removed)}

    def delete(self, ctx: RequestContext, params: dict[str, Any]) -> None:
        assignment_id = validation.identifier(params.get("assignment_id", ""), "assignment_id")
        self.guard.require(ctx, ASSIGNMENT_DELETE, "assignment")
        before = self.assignments.get(ctx.domain_id, assignment_id)
        grant = {"type": before["grant_type"], "id": before["grant_id"]}
        self._authorize(ctx, ASSIGNMENT_DELETE, [grant])
        self.guard.require_bindable(ctx, [grant], removing=True)
        with invalidating(self.revisions, ctx.domain_id):
            self.assignments.delete(ctx.domain_id, assignment_id)
        self.audit.record(ctx, ASSIGNMENT_DELETE, assignment_id, before, None)

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
            key = _key(subject, grant)
            if key not in seen:
                seen.add(key)
                pairs.append((subject, grant))
        return pairs

    def _authorize(self, ctx: RequestContext, permission: Permission, grants: list[dict[str, str]]) -> None:
        """Granting is authorized per grant (like IAM's PassRole): holding Assignment.add on
        `policy/x` does not let a caller hand out `policy/managed-full-access`."""
        for resource in sorted({f"{grant['type'].lower()}/{grant['id']}" for grant in grants}):
            self.guard.require(ctx, permission, resource)

    def _recheck_named(self, ctx: RequestContext, records: list[dict[str, Any]]) -> None:
        """Closes the race with a concurrent delete or rename of a granted policy, or of a named
        role or group: after our insert, each must still exist, else our insert is undone (a
        concurrent delete re-counts assignments after its own write, and a rename moves them
        after its own, so one of the two always backs off or carries ours along)."""
        if not records:
            return
        pairs = [
            (
                {"type": r["subject_type"], "id": r["subject_id"]},
                {"type": r["grant_type"], "id": r["grant_id"]},
            )
            for r in records
        ]
        with Undo() as undo:
            undo.push(self.assignments.delete_ids, ctx.domain_id, [r["assignment_id"] for r in records])
            self._require_named(ctx, pairs)

    def _require_named(self, ctx: RequestContext, pairs: list[tuple[dict, dict]]) -> None:
        """Every policy granted, and every role or group named (as subject or grant), exists.
        Users and service accounts live in the identity service: any id is taken."""
        wanted = sorted({grant["id"] for _, grant in pairs if grant["type"] == GrantType.POLICY})
        if wanted:
            existing = self.policies.existing_ids(ctx.domain_id, wanted)
            missing = [policy_id for policy_id in wanted if policy_id not in existing]
            if missing:
                raise NotFound("Policy", "policy_id", ",".join(missing))
        for set_type in SET_TYPES:
            named = sorted(
                {part["id"] for subject, grant in pairs for part in (subject, grant) if part["type"] == set_type}
            )
            if not named:
                continue
            manager = self.sets[set_type]
            existing = manager.existing_ids(ctx.domain_id, named)
            missing = [set_id for set_id in named if set_id not in existing]
            if missing:
                raise NotFound(manager.resource, manager.id_field, ",".join(missing))

    def _extras(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "expires_at": self._expiry(params.get("expires_at") or ""),
            "labels": validation.labels(params.get("labels") or [], max_bytes=validation.ASSIGNMENT_LABELS_MAX_BYTES),
            "tags": validation.json_object(
                params.get("tags") or {}, "tags", max_bytes=validation.ASSIGNMENT_TAGS_MAX_BYTES
            ),
        }

    def _expiry(self, value: str) -> datetime | None:
        if not value:
            return None
        try:
            expires_at = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidArgument("expires_at", "must be an ISO-8601 date-time, e.g. 2030-01-31T00:00:00Z") from None
        try:
            expires_at = as_utc(expires_at)
        except OverflowError:
            raise InvalidArgument("expires_at", "is out of range") from None
        if expires_at <= self.clock():
            raise InvalidArgument("expires_at", "must be in the future")
        return expires_at

    def _record(self, ctx: RequestContext, subject: dict, grant: dict, extras: dict[str, Any]) -> dict[str, Any]:
        return {
            "assignment_id": new_assignment_id(),
            "subject_type": subject["type"],
            "subject_id": subject["id"],
            "grant_type": grant["type"],
            "grant_id": grant["id"],
            "domain_id": ctx.domain_id,
            "created_at": self.clock(),
            **extras,
        }


def _key(subject: dict[str, str], grant: dict[str, str]) -> tuple[str, str, str, str]:
    return key_of(
        {
            "subject_type": subject["type"],
            "subject_id": subject["id"],
            "grant_type": grant["type"],
            "grant_id": grant["id"],
        }
    )


def _change(subject: dict, grant: dict, outcome: str, assignment_id: str) -> dict[str, Any]:
    return {"subject": subject, "grant": grant, "outcome": outcome, "assignment_id": assignment_id}
