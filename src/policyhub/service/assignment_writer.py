"""The checked write path of assignments, shared by the Assignment, Group and Role services:
authorization per grant (like IAM's PassRole), the escalation rule, existence of what an
assignment names, races with concurrent deletes and renames, cache invalidation and audit."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from policyhub.domain import GrantType, Operation, SubjectType, as_utc
from policyhub.errors import InvalidArgument, NotFound
from policyhub.manager.assignment_manager import AssignmentManager, key_of
from policyhub.manager.audit_trail import AuditTrail
from policyhub.manager.policy_manager import PolicyManager
from policyhub.manager.revision_manager import RevisionManager
from policyhub.manager.subject_set_manager import SubjectSetManager
from policyhub.service import validation
from policyhub.service.context import Clock, RequestContext
from policyhub.service.guard import Guard
from policyhub.service.invalidation import invalidating
from policyhub.service.permissions import Permission
from policyhub.service.undo import Undo

# The roles and groups an assignment can name, as subject or as grant: each must exist.
SET_TYPES = (SubjectType.GROUP, SubjectType.ROLE)


def new_assignment_id() -> str:
    return f"asg-{secrets.token_hex(8)}"


@dataclass(frozen=True)
class _AssignmentAction:
    """Audits each assignment a call changed as an Assignment, under the permission the call
    was made with (`repository.Group.add_users`, ...)."""

    name: str
    resource_type: str = "Assignment"


class AssignmentWriter:
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

    def create(
        self, ctx: RequestContext, permission: Permission, subject: dict, grant: dict, params: dict[str, Any]
    ) -> dict[str, Any]:
        """One assignment; an existing (subject, grant) pair is ALREADY_EXISTS."""
        self._authorize(ctx, permission, [grant])
        extras = self._extras(params)
        self._require_named(ctx, [(subject, grant)])
        self.guard.require_bindable(ctx, [grant], removing=False)
        record = self._record(ctx, subject, grant, extras)
        with invalidating(self.revisions, ctx.domain_id, ctx.transaction_id, self.assignments) as changes:
            created = self.assignments.create(record)
            self._recheck_named(ctx, [record])
            changes.add_assignment(created, Operation.CREATE)
        self.audit.record(ctx, permission, created["assignment_id"], None, created)
        return {**created, "consistency_token": changes.token}

    def add(
        self, ctx: RequestContext, permission: Permission, pairs: list[tuple[dict, dict]], params: dict[str, Any]
    ) -> dict[str, Any]:
        """Creates the (subject, grant) pairs that do not exist yet, all or nothing; each grant
        authorized as `permission` on it; `params` may set expires_at, labels and tags."""
        self._authorize(ctx, permission, [grant for _, grant in pairs])
        extras = self._extras(params)
        self._require_named(ctx, pairs)
        self.guard.require_bindable(ctx, [grant for _, grant in pairs], removing=False)
        existing = self.assignments.find_by_keys(ctx.domain_id, [pair_key(s, g) for s, g in pairs])
        new_records = {
            pair_key(subject, grant): self._record(ctx, subject, grant, extras)
            for subject, grant in pairs
            if pair_key(subject, grant) not in existing
        }
        created: list[dict[str, Any]] = []
        token = ""
        if new_records:
            with invalidating(self.revisions, ctx.domain_id, ctx.transaction_id, self.assignments) as changes:
                # Pairs created meanwhile by someone else are theirs: reported, not created.
                existing.update(self.assignments.insert_new(list(new_records.values())))
                created = [record for key, record in new_records.items() if key not in existing]
                self._recheck_named(ctx, created)
                for record in created:
                    changes.add_assignment(record, Operation.CREATE)
            token = changes.token
            self.audit.record_many(
                ctx, _AssignmentAction(permission.name), [(record["assignment_id"], None, record) for record in created]
            )
        results = []
        for subject, grant in pairs:
            found = existing.get(pair_key(subject, grant))
            if found:
                results.append(_change(subject, grant, "ALREADY_EXISTS", found["assignment_id"]))
            else:
                results.append(
                    _change(subject, grant, "CREATED", new_records[pair_key(subject, grant)]["assignment_id"])
                )
        return {"results": results, "changed_count": len(created), "consistency_token": token}

    def remove(self, ctx: RequestContext, permission: Permission, pairs: list[tuple[dict, dict]]) -> dict[str, Any]:
        """Removes the (subject, grant) pairs that exist, all or nothing; each grant authorized
        as `permission` on it."""
        self._authorize(ctx, permission, [grant for _, grant in pairs])
        existing = self.assignments.find_by_keys(ctx.domain_id, [pair_key(s, g) for s, g in pairs])
        self.guard.require_bindable(
            ctx, [{"type": a["grant_type"], "id": a["grant_id"]} for a in existing.values()], removing=True
        )
        removed: set[str] = set()
        token = ""
        if existing:
            with invalidating(self.revisions, ctx.domain_id, ctx.transaction_id, self.assignments) as changes:
                # Pairs removed meanwhile by someone else are not counted as ours.
                removed = self.assignments.remove_ids(ctx.domain_id, [a["assignment_id"] for a in existing.values()])
                for assignment in sorted(existing.values(), key=lambda a: a["assignment_id"]):
                    if assignment["assignment_id"] in removed:
                        changes.add_assignment(assignment, Operation.DELETE)
            token = changes.token
            self.audit.record_many(
                ctx,
                _AssignmentAction(permission.name),
                [(a["assignment_id"], a, None) for a in existing.values() if a["assignment_id"] in removed],
            )
        results = []
        for subject, grant in pairs:
            found = existing.get(pair_key(subject, grant))
            if found and found["assignment_id"] in removed:
                results.append(_change(subject, grant, "REMOVED", found["assignment_id"]))
            else:
                results.append(_change(subject, grant, "NOT_FOUND", ""))
        return {"results": results, "changed_count": len(removed), "consistency_token": token}

    def delete(self, ctx: RequestContext, permission: Permission, assignment_id: str) -> str:
        """One assignment by id (the caller holds `permission` on `assignment`); returns the
        consistency token of the write."""
        before = self.assignments.get(ctx.domain_id, assignment_id)
        grant = {"type": before["grant_type"], "id": before["grant_id"]}
        self._authorize(ctx, permission, [grant])
        self.guard.require_bindable(ctx, [grant], removing=True)
        with invalidating(self.revisions, ctx.domain_id, ctx.transaction_id, self.assignments) as changes:
            self.assignments.delete(ctx.domain_id, assignment_id)
            changes.add_assignment(before, Operation.DELETE)
        self.audit.record(ctx, permission, assignment_id, before, None)
        return changes.token

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
        return assignment_extras(params, self.clock())

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


def assignment_extras(params: dict[str, Any], now: datetime) -> dict[str, Any]:
    """An assignment's optional fields, checked: expires_at (ISO-8601, in the future), labels
    and tags (bounded)."""
    return {
        "expires_at": _expiry(params.get("expires_at") or "", now),
        "labels": validation.labels(params.get("labels") or [], max_bytes=validation.ASSIGNMENT_LABELS_MAX_BYTES),
        "tags": validation.json_object(
            params.get("tags") or {}, "tags", max_bytes=validation.ASSIGNMENT_TAGS_MAX_BYTES
        ),
    }


def _expiry(value: str, now: datetime) -> datetime | None:
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
    if expires_at <= now:
        raise InvalidArgument("expires_at", "must be in the future")
    return expires_at


def pair_key(subject: dict[str, str], grant: dict[str, str]) -> tuple[str, str, str, str]:
    """What makes an assignment unique in a domain, from a validated subject and grant."""
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
