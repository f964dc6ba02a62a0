"""What groups and roles share: named sets of subjects that can themselves hold grants.

A set is a document (policyhub.model.subject_set); who is in it and what it holds stay
assignments, which the evaluation engine reads as before. This service keeps the two
consistent: an assignment naming a set that does not exist is refused (see
AssignmentService), a rename moves every assignment that names the set in one step that
checks see at once, and a cascade delete removes them with it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from policyhub.domain import Operation, SubjectType
from policyhub.engine import DomainIndex, Subject
from policyhub.errors import FailedPrecondition, InvalidArgument, NotFound, RequiredParameter
from policyhub.manager.assignment_manager import AssignmentManager
from policyhub.manager.audit_trail import AuditTrail
from policyhub.manager.revision_manager import RevisionManager
from policyhub.manager.subject_set_manager import SubjectSetManager
from policyhub.service import validation
from policyhub.service.assignment_service import MAX_BATCH
from policyhub.service.assignment_writer import AssignmentWriter
from policyhub.service.context import Clock, RequestContext
from policyhub.service.guard import Guard
from policyhub.service.index_cache import IndexCache
from policyhub.service.invalidation import invalidating, invalidating_at_once
from policyhub.service.permissions import ASSIGNMENT_DELETE, Permission
from policyhub.service.shortcuts import narrowed
from policyhub.service.undo import Undo

log = logging.getLogger(__name__)

# What a field the stored document leaves out stands for.
UNSET: dict[str, Any] = {"description": "", "labels": [], "tags": {}}
SET_LABELS_MAX_BYTES = validation.ASSIGNMENT_LABELS_MAX_BYTES
SET_TAGS_MAX_BYTES = validation.ASSIGNMENT_TAGS_MAX_BYTES


@dataclass(frozen=True)
class SetPermissions:
    create: Permission
    update: Permission
    delete: Permission
    get: Permission
    list: Permission
    stat: Permission
    add_users: Permission
    remove_users: Permission
    list_users: Permission


@dataclass(frozen=True)
class SetKind:
    # GROUP or ROLE: the subject type and the grant type that name a set of this kind
    type: str
    permissions: SetPermissions

    @property
    def id_field(self) -> str:
        return f"{self.type.lower()}_id"

    def resource(self, set_id: str) -> str:
        """What the permissions are checked on: `group/<id>`, `role/<id>`."""
        return f"{self.type.lower()}/{set_id}"


class SubjectSetService:
    def __init__(
        self,
        kind: SetKind,
        sets: SubjectSetManager,
        assignments: AssignmentManager,
        writer: AssignmentWriter,
        indexes: IndexCache,
        revisions: RevisionManager,
        audit: AuditTrail,
        guard: Guard,
        clock: Clock,
    ):
        self.kind = kind
        self.sets = sets
        self.assignments = assignments
        self.writer = writer
        self.indexes = indexes
        self.revisions = revisions
        self.audit = audit
        self.guard = guard
        self.clock = clock

    # -- the document ------------------------------------------------------------------------

    def create(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        id_field = self.kind.id_field
        set_id = validation.new_id(params.get(id_field, ""), id_field)
        record = {
            id_field: set_id,
            "name": validation.name(params.get("name", ""), required=True),
            "description": validation.description(params.get("description") or ""),
            **self._labels_and_tags(params),
            "domain_id": ctx.domain_id,
        }
        self.guard.require(ctx, self.kind.permissions.create, self.kind.resource(set_id))
        record["created_at"] = record["updated_at"] = self.clock()
        with invalidating(self.revisions, ctx.domain_id, ctx.transaction_id) as logged:
            created = self.sets.create(record)
            logged.add(self.kind.type, set_id, Operation.CREATE)
        self.audit.record(ctx, self.kind.permissions.create, set_id, None, created)
        return {**self._described(ctx, [created])[0], "consistency_token": logged.token}

    def update(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Sets the fields given (name, description, labels, tags); `new_<kind>_id` renames the
        set, and every assignment naming it moves with it in one step that checks see at once."""
        id_field = self.kind.id_field
        set_id = validation.identifier(params.get(id_field, ""), id_field)
        changes: dict[str, Any] = {}
        if params.get("name"):
            changes["name"] = validation.name(params["name"])
        if params.get("description"):
            changes["description"] = validation.description(params["description"])
        given = {key: value for key, value in self._labels_and_tags(params).items() if params.get(key)}
        changes.update(given)
        new_field = f"new_{id_field}"
        new_id = params.get(new_field) or ""
        if new_id and new_id != set_id:
            changes[id_field] = validation.new_id(new_id, new_field)
        permissions = self.kind.permissions
        self.guard.require(ctx, permissions.update, self.kind.resource(set_id))
        if id_field in changes:
            # A rename creates the new id: scoped permissions must not be escaped by renaming.
            self.guard.require(ctx, permissions.create, self.kind.resource(new_id))
        before = self.sets.get(ctx.domain_id, set_id)
        if not changes:
            return self._described(ctx, [before])[0]
        if id_field not in changes:
            with invalidating(self.revisions, ctx.domain_id, ctx.transaction_id) as logged:
                updated = self.sets.update(ctx.domain_id, set_id, changes, self.clock())
                logged.add(self.kind.type, set_id, Operation.UPDATE)
            token = logged.token
        else:
            updated, token = self._rename(ctx, before, new_id, changes)
        self.audit.record(ctx, permissions.update, set_id, before, updated)
        return {**self._described(ctx, [updated])[0], "consistency_token": token}

    def _rename(
        self, ctx: RequestContext, before: dict[str, Any], new_id: str, changes: dict[str, Any]
    ) -> tuple[dict[str, Any], str]:
        set_id = before[self.kind.id_field]
        # The document first: an assignment added to the old id from now on fails its own
        # re-check (the old id is gone), and one added before is moved below.
        with invalidating_at_once(self.revisions, ctx.domain_id, ctx.transaction_id) as logged, Undo() as undo:
            updated = self.sets.update(ctx.domain_id, set_id, changes, self.clock())
            undo.push(self.assignments.rename_set, ctx.domain_id, self.kind.type, new_id, set_id)
            # Back to what it was: its id and whatever else this call changed.
            undo.push(
                self.sets.update,
                ctx.domain_id,
                new_id,
                {key: before.get(key, UNSET.get(key)) for key in changes},
                before["updated_at"],
            )
            self.assignments.rename_set(ctx.domain_id, self.kind.type, set_id, new_id)
            # Its assignments move with it: no change of their own.
            logged.add(self.kind.type, set_id, Operation.DELETE)
            logged.add(self.kind.type, new_id, Operation.CREATE)
        return updated, logged.token

    def delete(self, ctx: RequestContext, params: dict[str, Any]) -> str:
        """Returns the consistency token of the write."""
        id_field = self.kind.id_field
        set_id = validation.identifier(params.get(id_field, ""), id_field)
        return self.delete_ids(ctx, [set_id], bool(params.get("cascade")), self.kind.permissions.delete)

    def delete_ids(self, ctx: RequestContext, set_ids: list[str], cascade: bool, audited_as: Permission) -> str:
        """Deletes the sets, all or nothing. One that still has members or grants is refused,
        unless `cascade`: those assignments are then deleted with it (and audited)."""
        for set_id in set_ids:
            self.guard.require(ctx, self.kind.permissions.delete, self.kind.resource(set_id))
        found = self.sets.get_many(ctx.domain_id, set_ids)
        missing = [set_id for set_id in set_ids if set_id not in found]
        if missing:
            raise NotFound(self.sets.resource, self.kind.id_field, ",".join(missing))
        counts = self.assignments.count_naming(ctx.domain_id, self.kind.type, set_ids)
        if counts and not cascade:
            raise self._still_named(counts)
        members = [set_id for set_id, (count, _) in counts.items() if count]
        if members:
            # Taking members out of a set lifts whatever it denies them: the escalation rule.
            self.guard.require_bindable(ctx, [{"type": self.kind.type, "id": i} for i in members], removing=True)
        with invalidating_at_once(self.revisions, ctx.domain_id, ctx.transaction_id) as logged, Undo() as undo:
            # The documents first: an assignment added from now on fails its own re-check.
            self.sets.delete_ids(ctx.domain_id, set_ids)
            undo.push(self.sets.put_back, [found[i] for i in set_ids])
            if cascade:
                removed = self.assignments.naming(ctx.domain_id, self.kind.type, set_ids)
                undo.push(self.assignments.put_back, removed)
                # An assignment inserted after this read fails its adder's re-check and is undone
                # by it: deleting what was read removes (and logs) exactly what this call audits.
                self.assignments.delete_ids(ctx.domain_id, [a["assignment_id"] for a in removed])
            else:
                removed = []
                # Added after our count, while the documents still existed: the adder won.
                late = self.assignments.count_naming(ctx.domain_id, self.kind.type, set_ids)
                if late:
                    raise self._still_named(late)
            for set_id in set_ids:
                logged.add(self.kind.type, set_id, Operation.DELETE)
            for assignment in removed:
                logged.add_assignment(assignment, Operation.DELETE)
        self.audit.record_many(ctx, audited_as, [(i, found[i], None) for i in set_ids])
        self.audit.record_many(ctx, ASSIGNMENT_DELETE, [(a["assignment_id"], a, None) for a in removed])
        return logged.token

    def _still_named(self, counts: dict[str, tuple[int, int]]) -> FailedPrecondition:
        parts = [
            f"{set_id} has {_count(members, 'member')} and {_count(grants, 'grant')}"
            for set_id, (members, grants) in sorted(counts.items())
        ]
        return FailedPrecondition(
            f"{self.sets.resource} still in use: {'; '.join(parts)}; remove them first, or delete with cascade",
            metadata={
                self.kind.id_field: ",".join(sorted(counts)),
                "member_count": str(sum(m for m, _ in counts.values())),
                "grant_count": str(sum(g for _, g in counts.values())),
            },
        )

    def get(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        id_field = self.kind.id_field
        set_id = validation.identifier(params.get(id_field, ""), id_field)
        self.guard.require(ctx, self.kind.permissions.get, self.kind.resource(set_id))
        return self._described(ctx, [self.sets.get(ctx.domain_id, set_id)])[0]

    def list(self, ctx: RequestContext, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
        id_field = self.kind.id_field
        fields = {id_field: validation.optional_identifier(params.get(id_field), id_field)}
        self.guard.require(ctx, self.kind.permissions.list, self.kind.type.lower())
        found, total = self.sets.list(ctx.domain_id, narrowed(params.get("query"), fields))
        return self._described(ctx, found), total

    def stat(self, ctx: RequestContext, params: dict[str, Any]) -> tuple[list, int | None]:
        self.guard.require(ctx, self.kind.permissions.stat, self.kind.type.lower())
        query = params.get("query")
        if not query:
            raise RequiredParameter("query")
        return self.sets.stat(ctx.domain_id, query)

    # -- members -----------------------------------------------------------------------------

    def add_users(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Puts users in the set (per-user outcomes, as Assignment.add). Adding a user gives it
        what the set holds: the escalation rule applies as to any grant."""
        set_id, pairs = self._user_pairs(params)
        return self.writer.add(ctx, self.kind.permissions.add_users, pairs, params)

    def remove_users(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        set_id, pairs = self._user_pairs(params)
        self.guard.require(ctx, self.kind.permissions.remove_users, self.kind.resource(set_id))
        self.sets.get(ctx.domain_id, set_id)
        return self.writer.remove(ctx, self.kind.permissions.remove_users, pairs)

    def list_users(self, ctx: RequestContext, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
        """The users in the set, directly or (include_nested) through sets in it, with the sets
        between (`via`); paged, sorted by user id."""
        id_field = self.kind.id_field
        set_id = validation.identifier(params.get(id_field, ""), id_field)
        start, limit = validation.page(params.get("page"), self.sets.schema.max_limit)
        self.guard.require(ctx, self.kind.permissions.list_users, self.kind.resource(set_id))
        self.sets.get(ctx.domain_id, set_id)
        users = self.indexes.get(ctx.domain_id).members(
            Subject(self.kind.type, set_id), bool(params.get("include_nested")), SubjectType.USER
        )
        page = users[start - 1 : start - 1 + limit]
        return [{"user_id": user.id, "via": via} for user, via in page], len(users)

    def _user_pairs(self, params: dict[str, Any]) -> tuple[str, list[tuple[dict, dict]]]:
        id_field = self.kind.id_field
        set_id = validation.identifier(params.get(id_field, ""), id_field)
        user_ids = params.get("user_ids") or []
        if not user_ids:
            raise RequiredParameter("user_ids")
        if len(user_ids) > MAX_BATCH:
            raise InvalidArgument("user_ids", f"at most {MAX_BATCH} users per call, got {len(user_ids)}")
        grant = {"type": self.kind.type, "id": set_id}
        users = dict.fromkeys(validation.identifier(u, f"user_ids[{i}]") for i, u in enumerate(user_ids))
        return set_id, [({"type": SubjectType.USER.value, "id": user_id}, grant) for user_id in users]

    # -- helpers ------------------------------------------------------------------------------

    def _labels_and_tags(self, params: dict[str, Any]) -> dict[str, Any]:
        return set_labels_and_tags(params)

    def _described(self, ctx: RequestContext, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The records with what the assignments say about each set: its direct member count
        and the policies granted to it directly."""
        if not records:
            return records
        index = self.indexes.get(ctx.domain_id)
        return [self._describe(index, record) for record in records]

    def _describe(self, index: DomainIndex, record: dict[str, Any]) -> dict[str, Any]:
        set_id = record.get(self.kind.id_field)
        if set_id is None:
            return record  # a list query's `only` left the id out
        subject = Subject(self.kind.type, set_id)
        return {
            **record,
            "member_count": index.member_count(subject),
            "policy_ids": list(index.granted_policies(subject)),
        }

    # -- start-up ----------------------------------------------------------------------------

    def adopt_named(self, named: list[tuple[str, str]]) -> int:
        """Creates a document (name = id) for each (domain_id, id) of this kind that assignments
        name but no document holds: sets that earlier versions knew only as ids. Idempotent."""
        now = self.clock()
        return self.sets.ensure(
            [
                {
                    self.kind.id_field: set_id,
                    "name": set_id,
                    "domain_id": domain_id,
                    "created_at": now,
                    "updated_at": now,
                }
                for domain_id, set_id in named
            ]
        )


def set_labels_and_tags(params: dict[str, Any]) -> dict[str, Any]:
    """A group's or role's labels and tags, checked (bounded)."""
    return {
        "labels": validation.labels(params.get("labels") or [], max_bytes=SET_LABELS_MAX_BYTES),
        "tags": validation.json_object(params.get("tags") or {}, "tags", max_bytes=SET_TAGS_MAX_BYTES),
    }


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def adopt_named_sets(assignments: AssignmentManager, services: list[SubjectSetService]) -> dict[str, int]:
    """The start-up migration: every group and role that an assignment names has a document
    (earlier versions knew them only as ids). Returns how many of each kind it created."""
    named = assignments.named_sets()
    created = {}
    for service in services:
        mine = [(domain_id, set_id) for domain_id, set_type, set_id in named if set_type == service.kind.type]
        created[service.kind.type] = service.adopt_named(mine) if mine else 0
    if any(created.values()):
        log.info(
            "created documents (name = id) for groups and roles that only assignments named: %s",
            ", ".join(f"{count} {kind.lower()}" for kind, count in sorted(created.items())),
        )
    return created
