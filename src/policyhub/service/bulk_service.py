"""Export and import of a whole domain: its live local policies, its groups and roles, and its
assignments (a backup, a copy to another domain or installation; SpiceDB's bulk export/import,
`zed backup`, `fga store export/import`).

Export: a consistent snapshot at one consistency token. The revision state is read, then
everything, then the state again; when a write landed in between (or one spanning several
documents is under way) the snapshot is read again, a bounded number of times, else
ConcurrentChange (ABORTED). A single-document write landing at that very moment may be in the
snapshot although its revision is the next one: the change log after the token repeats it.

Import: all or nothing. Every item is checked by the rules of its own API (ids, sizes,
statements and their conditions, ...); assignments must name policies, groups and roles that
exist after the import (in the stream, or in the domain and kept; managed policies always).
Then the changes are planned against the domain as read (MERGE: create what is missing, update
what differs, keep the rest; REPLACE: also delete what the stream lacks) and written inside one
`invalidating_at_once`, in bulk, each step's undo pushed as it succeeds, so a failure leaves
the domain as it was and no check ever sees half an import. A dry run stops after planning and
answers every change it would make and every item it refuses.

Only SYSTEM and DOMAIN_ADMIN callers may import: an import gives whatever its stream holds, so
the escalation rule would have to cover every statement of it (see service/guard.py).

Audit: one entry for the import (its mode and counts) and one per policy, group and role it
changed (before and after, as their own APIs record them); the assignments it changed are
counted in the import's entry and listed one by one in the change log, under the same
transaction id.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable

from policyhub.domain import (
    LOCAL_REPOSITORY_ID,
    ChangeKind,
    GrantType,
    Operation,
    PolicyState,
    SubjectType,
    as_utc,
)
from policyhub.errors import (
    ConcurrentChange,
    InvalidArgument,
    NotFound,
    PolicyHubError,
    RequiredParameter,
    clip,
)
from policyhub.manager.assignment_manager import AssignmentManager, key_of
from policyhub.manager.audit_trail import AuditTrail
from policyhub.manager.policy_manager import PolicyManager
from policyhub.manager.revision_manager import RevisionManager
from policyhub.manager.subject_set_manager import SubjectSetManager
from policyhub.service import validation
from policyhub.service.assignment_writer import assignment_extras, new_assignment_id
from policyhub.service.context import Clock, RequestContext
from policyhub.service.guard import Guard
from policyhub.service.invalidation import ChangeSet, assignment_change, consistency_token, invalidating_at_once
from policyhub.service.permissions import BULK_EXPORT_DOMAIN, BULK_IMPORT_DOMAIN
from policyhub.service.policy_rules import content, refuse_managed_id, within_size
from policyhub.service.subject_set_service import UNSET, set_labels_and_tags
from policyhub.service.undo import Undo

MERGE = "MERGE"
REPLACE = "REPLACE"
MODES = (MERGE, REPLACE)
# The kinds of item, in the order an export streams them.
KINDS = (ChangeKind.POLICY, ChangeKind.GROUP, ChangeKind.ROLE, ChangeKind.ASSIGNMENT)
PLURAL = {
    ChangeKind.POLICY: "policies",
    ChangeKind.GROUP: "groups",
    ChangeKind.ROLE: "roles",
    ChangeKind.ASSIGNMENT: "assignments",
}
# Snapshot reads an export makes before it gives up on a domain that keeps changing, and the
# pause between them (doubling).
EXPORT_ATTEMPTS = 5
EXPORT_PAUSE_SECONDS = 0.05
# Refused items a dry run lists (all are counted).
MAX_REFUSALS_SHOWN = 1000
# What an import compares and writes, per kind (the rest is the importing installation's own:
# times, versions, etags).
POLICY_FIELDS = ("name", "description", "state", "permissions", "statements", "labels", "tags", "project_id")
SET_FIELDS = ("name", "description", "labels", "tags")
ASSIGNMENT_FIELDS = ("expires_at", "labels", "tags")
IMPORTED = BULK_IMPORT_DOMAIN.name


@dataclass(frozen=True)
class _Imported:
    """Audits each policy, group or role an import changed under the import's permission."""

    resource_type: str
    name: str = IMPORTED


@dataclass
class Snapshot:
    """A domain as exported: records in the order and form an import takes back."""

    domain_id: str
    consistency_token: str
    exported_at: datetime
    policies: list[dict[str, Any]]
    groups: list[dict[str, Any]]
    roles: list[dict[str, Any]]
    assignments: list[dict[str, Any]]


@dataclass
class Refusal:
    index: int
    kind: str
    item_id: str
    error: PolicyHubError


@dataclass
class _KindPlan:
    """What an import does to one kind: creates (records), updates ((as read, changes)),
    deletes (as read), and how many items it leaves as they are."""

    creates: list[dict[str, Any]] = field(default_factory=list)
    updates: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    deletes: list[dict[str, Any]] = field(default_factory=list)
    unchanged: int = 0

    @property
    def empty(self) -> bool:
        return not (self.creates or self.updates or self.deletes)

    def counts(self) -> dict[str, int]:
        return {
            "created": len(self.creates),
            "updated": len(self.updates),
            "deleted": len(self.deletes),
            "unchanged": self.unchanged,
        }


@dataclass
class _Plan:
    policies: _KindPlan
    groups: _KindPlan
    roles: _KindPlan
    assignments: _KindPlan

    def by_kind(self) -> dict[str, _KindPlan]:
        return {
            ChangeKind.POLICY: self.policies,
            ChangeKind.GROUP: self.groups,
            ChangeKind.ROLE: self.roles,
            ChangeKind.ASSIGNMENT: self.assignments,
        }


@dataclass(frozen=True)
class _SetKind:
    kind: str  # GROUP | ROLE
    manager: SubjectSetManager

    @property
    def id_field(self) -> str:
        return self.manager.id_field


class BulkService:
    def __init__(
        self,
        policies: PolicyManager,
        groups: SubjectSetManager,
        roles: SubjectSetManager,
        assignments: AssignmentManager,
        revisions: RevisionManager,
        audit: AuditTrail,
        guard: Guard,
        clock: Clock,
        retention: timedelta,
    ):
        self.policies = policies
        self.sets = {
            ChangeKind.GROUP: _SetKind(ChangeKind.GROUP, groups),
            ChangeKind.ROLE: _SetKind(ChangeKind.ROLE, roles),
        }
        self.assignments = assignments
        self.revisions = revisions
        self.audit = audit
        self.guard = guard
        self.clock = clock
        self.retention = retention

    # -- export ------------------------------------------------------------------------------

    def export(self, ctx: RequestContext, params: dict[str, Any]) -> Snapshot:
        self.guard.require(ctx, BULK_EXPORT_DOMAIN, "domain")
        domain_id = ctx.domain_id
        pause = EXPORT_PAUSE_SECONDS
        for _ in range(EXPORT_ATTEMPTS):
            before = self.revisions.state([domain_id])
            if not before.writing:
                now = self.clock()
                policies = self.policies.local_snapshot(domain_id)
                groups = self.sets[ChangeKind.GROUP].manager.snapshot(domain_id)
                roles = self.sets[ChangeKind.ROLE].manager.snapshot(domain_id)
                assignments = self.assignments.snapshot(domain_id)
                if self.revisions.state([domain_id]) == before:
                    return Snapshot(
                        domain_id=domain_id,
                        consistency_token=consistency_token(before.revisions[0]),
                        exported_at=now,
                        policies=sorted((_policy_fields(raw) for raw in policies), key=lambda p: p["policy_id"]),
                        groups=sorted((_set_fields(raw, "group_id") for raw in groups), key=lambda g: g["group_id"]),
                        roles=sorted((_set_fields(raw, "role_id") for raw in roles), key=lambda r: r["role_id"]),
                        assignments=sorted(
                            (_assignment_fields(raw) for raw in assignments if _unexpired(raw, now)), key=key_of
                        ),
                    )
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
        raise ConcurrentChange(
            f"domain {domain_id} kept changing while it was exported ({EXPORT_ATTEMPTS} attempts); retry",
            metadata={"domain_id": domain_id},
        )

    # -- import ------------------------------------------------------------------------------

    def check_header(self, ctx: RequestContext, header: dict[str, Any]) -> dict[str, Any]:
        """The import's header, checked, and the caller's right to import (before its items
        are read)."""
        mode = header.get("mode") or "MODE_NONE"
        if mode == "MODE_NONE":
            mode = MERGE
        if mode not in MODES:
            raise InvalidArgument("header.mode", f"must be one of {list(MODES)}")
        counts = header.get("counts")
        self.guard.require(ctx, BULK_IMPORT_DOMAIN, "domain")
        return {"mode": mode, "dry_run": bool(header.get("dry_run")), "counts": counts}

    def import_domain(
        self, ctx: RequestContext, header: dict[str, Any], items: list[tuple[str, dict[str, Any]]]
    ) -> dict[str, Any]:
        """`items`: (kind, fields) in stream order, kind POLICY/GROUP/ROLE/ASSIGNMENT ("" for an
        item that sets none). Returns the counts per kind, the token, and for a dry run the
        changes it would make and the items it refuses. A real import refusing any item fails
        with the first one's error, writing nothing."""
        header = self.check_header(ctx, header)
        _check_counts(header["counts"], items)
        domain_id, mode, now = ctx.domain_id, header["mode"], self.clock()
        revision = self.revisions.current([domain_id])[0]
        existing = {
            ChangeKind.POLICY: {raw["policy_id"]: raw for raw in self.policies.local_snapshot(domain_id)},
            **{
                kind: {raw[set_kind.id_field]: raw for raw in set_kind.manager.snapshot(domain_id)}
                for kind, set_kind in self.sets.items()
            },
        }
        assignments = self.assignments.snapshot(domain_id)
        checker = _Checker(self, ctx, mode, now, existing)
        checked = checker.check(items)
        plan = self._plan(mode, now, existing, assignments, checked)
        refused = sorted(checker.refusals, key=lambda refusal: refusal.index)
        outcome: dict[str, Any] = {
            "domain_id": domain_id,
            "mode": mode,
            "dry_run": header["dry_run"],
            "counts": {kind: kind_plan.counts() for kind, kind_plan in plan.by_kind().items()},
            "refused": refused[:MAX_REFUSALS_SHOWN],
            "refused_count": len(refused),
            "changes": [],
            "consistency_token": consistency_token(revision),
        }
        if header["dry_run"]:
            outcome["changes"] = _changes(plan)
            return outcome
        if refused:
            raise _first_refusal(refused)
        if not all(kind_plan.empty for kind_plan in plan.by_kind().values()):
            outcome["consistency_token"] = self._apply(ctx, mode, now, plan)
        return outcome

    def _plan(
        self,
        mode: str,
        now: datetime,
        existing: dict[str, dict[str, dict[str, Any]]],
        assignments: list[dict[str, Any]],
        checked: dict[str, list[dict[str, Any]]],
    ) -> _Plan:
        policies = _plan_documents(
            checked[ChangeKind.POLICY], existing[ChangeKind.POLICY], "policy_id", POLICY_FIELDS, _policy_fields, mode
        )
        groups = _plan_documents(
            checked[ChangeKind.GROUP], existing[ChangeKind.GROUP], "group_id", SET_FIELDS, _group_fields, mode
        )
        roles = _plan_documents(
            checked[ChangeKind.ROLE], existing[ChangeKind.ROLE], "role_id", SET_FIELDS, _role_fields, mode
        )
        return _Plan(policies, groups, roles, _plan_assignments(checked[ChangeKind.ASSIGNMENT], assignments, mode))

    def _apply(self, ctx: RequestContext, mode: str, now: datetime, plan: _Plan) -> str:
        """Writes the plan in one step that checks see whole; returns the consistency token it
        landed at."""
        domain_id = ctx.domain_id
        groups, roles = self.sets[ChangeKind.GROUP].manager, self.sets[ChangeKind.ROLE].manager
        with (
            invalidating_at_once(self.revisions, domain_id, ctx.transaction_id, self.assignments) as logged,
            Undo() as undo,
        ):
            keep = logged.keep_alive
            for manager, kind_plan in ((groups, plan.groups), (roles, plan.roles)):
                created = [
                    {**record, "domain_id": domain_id, "created_at": now, "updated_at": now}
                    for record in kind_plan.creates
                ]
                if created:
                    undo.push(manager.remove_bulk, manager.insert_bulk(created, keep), keep)
                if kind_plan.updates:
                    undo.push(manager.revert_bulk, manager.update_bulk(kind_plan.updates, now, keep), keep)
            if plan.policies.creates:
                records = [_new_policy(record, domain_id, now) for record in plan.policies.creates]
                undo.push(self.policies.remove_bulk, self.policies.insert_bulk(records, keep), keep)
            if plan.policies.updates:
                undo.push(self.policies.revert_bulk, self.policies.update_bulk(plan.policies.updates, now, keep), keep)
            if plan.assignments.deletes:
                removed = self.assignments.delete_bulk(plan.assignments.deletes, keep)
                undo.push(self.assignments.put_back_bulk, removed, keep)
            if plan.assignments.updates:
                undo.push(
                    self.assignments.revert_bulk, self.assignments.update_bulk(plan.assignments.updates, keep), keep
                )
            if plan.assignments.creates:
                records = [{**record, "domain_id": domain_id, "created_at": now} for record in plan.assignments.creates]
                undo.push(self.assignments.remove_bulk, self.assignments.insert_bulk(records, keep), keep)
            if plan.policies.deletes:
                purge_at = now + self.retention
                reverts = self.policies.soft_delete_bulk(plan.policies.deletes, now, purge_at, keep)
                undo.push(self.policies.revert_bulk, reverts, keep)
            for manager, kind_plan in ((groups, plan.groups), (roles, plan.roles)):
                if kind_plan.deletes:
                    undo.push(manager.put_back_bulk, manager.delete_bulk(kind_plan.deletes, keep), keep)
            self._recheck(domain_id, plan)
            _log(logged, plan)
        self._audit(ctx, mode, plan)
        return logged.token

    def _recheck(self, domain_id: str, plan: _Plan) -> None:
        """Closes the races with concurrent writers (as the single-item writes do): everything
        the new assignments name still exists, and nothing names what this import deleted (an
        assignment added meanwhile to a policy, group or role the import removed)."""
        if plan.assignments.creates:
            policy_ids = self.policies.live_ids(domain_id) | self.policies.managed_ids()
            set_ids = {kind: set_kind.manager.ids(domain_id) for kind, set_kind in self.sets.items()}
            for record in plan.assignments.creates:
                for part_type, part_id in _named(record):
                    if part_id not in (policy_ids if part_type == GrantType.POLICY else set_ids[part_type]):
                        raise ConcurrentChange(
                            f"{part_type.lower()} {clip(part_id)} was deleted meanwhile by another call; "
                            "nothing was imported, retry",
                            metadata={"resource": part_type.title(), "id": part_id},
                        )
        deleted = [raw["policy_id"] for raw in plan.policies.deletes]
        if deleted and self.assignments.count_for_policy(domain_id, deleted):
            raise ConcurrentChange(
                "a policy this import deletes was granted meanwhile by another call; nothing was imported, retry"
            )
        for kind, kind_plan in ((ChangeKind.GROUP, plan.groups), (ChangeKind.ROLE, plan.roles)):
            ids = [raw[self.sets[kind].id_field] for raw in kind_plan.deletes]
            if ids and self.assignments.count_naming(domain_id, kind, ids):
                raise ConcurrentChange(
                    f"a {kind.lower()} this import deletes was named meanwhile by another call; "
                    "nothing was imported, retry"
                )

    def _audit(self, ctx: RequestContext, mode: str, plan: _Plan) -> None:
        summary = {
            "mode": mode,
            **{PLURAL[kind]: kind_plan.counts() for kind, kind_plan in plan.by_kind().items()},
        }
        self.audit.record(ctx, BULK_IMPORT_DOMAIN, ctx.domain_id, None, summary)
        for kind, kind_plan, id_field in (
            (ChangeKind.POLICY, plan.policies, "policy_id"),
            (ChangeKind.GROUP, plan.groups, "group_id"),
            (ChangeKind.ROLE, plan.roles, "role_id"),
        ):
            entries = [(record[id_field], None, record) for record in kind_plan.creates]
            entries += [
                (raw[id_field], _stored(raw), {**_stored(raw), **changes}) for raw, changes in kind_plan.updates
            ]
            entries += [(raw[id_field], _stored(raw), None) for raw in kind_plan.deletes]
            self.audit.record_many(ctx, _Imported(kind.title()), entries)


class _Checker:
    """Checks an import's items: each by the rules of its own API, then across items
    (duplicates, what assignments name). Collects every refusal."""

    def __init__(
        self,
        service: BulkService,
        ctx: RequestContext,
        mode: str,
        now: datetime,
        existing: dict[str, dict[str, dict[str, Any]]],
    ):
        self.service = service
        self.ctx = ctx
        self.mode = mode
        self.now = now
        self.existing = existing
        self.refusals: list[Refusal] = []

    def check(self, items: list[tuple[str, dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
        """The checked records by kind, each with its `index`."""
        checked: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
        for index, (kind, fields) in enumerate(items):
            try:
                if kind == ChangeKind.POLICY:
                    record = self._policy(fields)
                elif kind in self.service.sets:
                    record = self._set(self.service.sets[kind], fields)
                elif kind == ChangeKind.ASSIGNMENT:
                    record = self._assignment(fields)
                else:
                    raise InvalidArgument("item", "must set one of policy, group, role, assignment")
            except PolicyHubError as error:
                self.refusals.append(Refusal(index, kind, _item_id(kind, fields), _at_item(error, index, kind, fields)))
                continue
            checked[kind].append({**record, "index": index})
        for kind, id_field in (
            (ChangeKind.POLICY, "policy_id"),
            (ChangeKind.GROUP, "group_id"),
            (ChangeKind.ROLE, "role_id"),
        ):
            checked[kind] = self._unique(checked[kind], kind, lambda record, f=id_field: record[f], id_field)
        checked[ChangeKind.ASSIGNMENT] = self._unique(
            checked[ChangeKind.ASSIGNMENT], ChangeKind.ASSIGNMENT, key_of, "subject"
        )
        checked[ChangeKind.ASSIGNMENT] = self._naming_what_exists(items, checked[ChangeKind.ASSIGNMENT])
        return checked

    def _policy(self, fields: dict[str, Any]) -> dict[str, Any]:
        """As Policy/create checks it (and its state)."""
        policy_id = validation.policy_id(fields.get("policy_id", ""))
        name = validation.name(fields.get("name", ""), required=True)
        checked = content(fields, partial=False)
        project_id = validation.name(fields.get("project_id", ""), "project_id")
        refuse_managed_id(policy_id, "imported")
        state = fields.get("state") or "NONE"
        if state == "NONE":
            state = PolicyState.ENABLED
        if state not in (PolicyState.ENABLED, PolicyState.DISABLED):
            raise InvalidArgument("state", "must be ENABLED or DISABLED")
        record = {
            "policy_id": policy_id,
            "name": name,
            **checked,
            "state": str(state),
            "project_id": project_id,
        }
        within_size(_new_policy(record, self.ctx.domain_id, self.now))
        return record

    def _set(self, set_kind: _SetKind, fields: dict[str, Any]) -> dict[str, Any]:
        """As Group/create or Role/create checks it; an id the domain has is looked up by the
        looser rule of other ids (sets adopted at start keep ids outside the rule)."""
        id_field = set_kind.id_field
        set_id = fields.get(id_field, "")
        if set_id in self.existing[set_kind.kind]:
            validation.identifier(set_id, id_field)
        else:
            validation.new_id(set_id, id_field)
        return {
            id_field: set_id,
            "name": validation.name(fields.get("name", ""), required=True),
            "description": validation.description(fields.get("description") or ""),
            **set_labels_and_tags(fields),
        }

    def _assignment(self, fields: dict[str, Any]) -> dict[str, Any]:
        """As Assignment/create checks it (and its id, kept when given)."""
        subject = validation.subject(fields.get("subject"))
        grant = validation.grant(fields.get("grant"))
        assignment_id = validation.optional_identifier(fields.get("assignment_id"), "assignment_id")
        extras = assignment_extras(fields, self.now)
        if extras["expires_at"] is not None:
            # as stored (milliseconds), so a second import of the same export finds it unchanged
            expires_at = extras["expires_at"]
            extras["expires_at"] = expires_at.replace(microsecond=expires_at.microsecond // 1000 * 1000)
        return {
            "assignment_id": assignment_id,
            "subject_type": subject["type"],
            "subject_id": subject["id"],
            "grant_type": grant["type"],
            "grant_id": grant["id"],
            **extras,
        }

    def _unique(self, records: list[dict[str, Any]], kind: str, key, field_name: str) -> list[dict[str, Any]]:
        """Each policy, group, role (by id) and assignment (by subject and grant) at most once."""
        first: dict[Any, int] = {}
        kept = []
        for record in records:
            seen = first.setdefault(key(record), record["index"])
            if seen == record["index"]:
                kept.append(record)
                continue
            what = "(subject, grant) pair" if kind == ChangeKind.ASSIGNMENT else f"{kind.lower()} id"
            error = InvalidArgument(
                f"items[{record['index']}].{field_name}",
                f"the stream has this {what} twice (items[{seen}] and items[{record['index']}]); each may appear once",
            )
            self.refusals.append(Refusal(record["index"], kind, _record_id(kind, record), error))
        return kept

    def _naming_what_exists(
        self, items: list[tuple[str, dict[str, Any]]], records: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Every policy, group and role an assignment names exists after the import: in the
        stream, or (MERGE) in the domain; managed policies always."""
        streamed: dict[str, set[str]] = {kind: set() for kind in KINDS}
        id_fields = {ChangeKind.POLICY: "policy_id", ChangeKind.GROUP: "group_id", ChangeKind.ROLE: "role_id"}
        for kind, fields in items:
            if kind in id_fields and isinstance(fields.get(id_fields[kind]), str):
                streamed[kind].add(fields[id_fields[kind]])
        kept_ones = self.mode == MERGE
        known = {
            kind: streamed[kind] | (set(self.existing[kind]) if kept_ones else set())
            for kind in (ChangeKind.POLICY, ChangeKind.GROUP, ChangeKind.ROLE)
        }
        named_policies = {r["grant_id"] for r in records if r["grant_type"] == GrantType.POLICY}
        if named_policies - known[ChangeKind.POLICY]:
            known[ChangeKind.POLICY] |= self.service.policies.managed_ids()
        kept = []
        for record in records:
            missing = [
                (path, part_type, part_id)
                for path, (part_type, part_id) in zip(("subject.id", "grant.id"), _parts(record), strict=True)
                if part_type in known and part_id not in known[part_type]
            ]
            if not missing:
                kept.append(record)
                continue
            path, part_type, part_id = missing[0]
            resource = part_type.title()
            error = NotFound(
                resource,
                f"{part_type.lower()}_id",
                part_id,
                f"named by items[{record['index']}].{path}; neither in the stream nor"
                + (" in the domain" if kept_ones else " kept by REPLACE"),
            )
            error.metadata["field"] = f"items[{record['index']}].{path}"
            self.refusals.append(
                Refusal(record["index"], ChangeKind.ASSIGNMENT, _record_id(ChangeKind.ASSIGNMENT, record), error)
            )
        return kept


# -- planning -------------------------------------------------------------------------------


def _plan_documents(
    records: list[dict[str, Any]],
    existing: dict[str, dict[str, Any]],
    id_field: str,
    fields: tuple[str, ...],
    stored_fields,
    mode: str,
) -> _KindPlan:
    plan = _KindPlan()
    streamed = set()
    for record in records:
        item = {key: value for key, value in record.items() if key != "index"}
        streamed.add(item[id_field])
        raw = existing.get(item[id_field])
        if raw is None:
            plan.creates.append(item)
            continue
        current = stored_fields(raw)
        changes = {key: item[key] for key in fields if item[key] != current[key]}
        if changes:
            plan.updates.append((raw, changes))
        else:
            plan.unchanged += 1
    if mode == REPLACE:
        plan.deletes = [raw for item_id, raw in sorted(existing.items()) if item_id not in streamed]
    return plan


def _plan_assignments(records: list[dict[str, Any]], existing: list[dict[str, Any]], mode: str) -> _KindPlan:
    """Assignments are matched by their (subject, grant) pair; a matched one keeps its id."""
    plan = _KindPlan()
    by_key = {key_of(raw): raw for raw in existing}
    streamed = {key_of(record) for record in records}
    if mode == REPLACE:
        plan.deletes = [raw for key, raw in sorted(by_key.items()) if key not in streamed]
    deleted = {raw["assignment_id"] for raw in plan.deletes}
    used = {raw["assignment_id"] for raw in existing if raw["assignment_id"] not in deleted}
    for record in records:
        item = {key: value for key, value in record.items() if key != "index"}
        raw = by_key.get(key_of(item))
        if raw is None:
            wanted = item["assignment_id"]
            item["assignment_id"] = wanted if wanted and wanted not in used else new_assignment_id()
            used.add(item["assignment_id"])
            plan.creates.append(item)
            continue
        current = _assignment_fields(raw)
        changes = {key: item[key] for key in ASSIGNMENT_FIELDS if not _same(item[key], current[key])}
        if changes:
            plan.updates.append((raw, changes))
        else:
            plan.unchanged += 1
    return plan


def _changes(plan: _Plan) -> list[dict[str, Any]]:
    """Every change of the plan: creates, updates, then deletes of each kind."""
    changes = []
    for kind, kind_plan in plan.by_kind().items():
        for operation, records in (
            (Operation.CREATE, kind_plan.creates),
            (Operation.UPDATE, [raw for raw, _ in kind_plan.updates]),
            (Operation.DELETE, kind_plan.deletes),
        ):
            for record in records:
                if kind == ChangeKind.ASSIGNMENT:
                    changes.append(assignment_change(record, operation))
                else:
                    changes.append({"kind": kind, "id": _record_id(kind, record), "operation": operation})
    return changes


def _log(logged: ChangeSet, plan: _Plan) -> None:
    logged.items.extend(_changes(plan))


# -- records --------------------------------------------------------------------------------


def _stored(raw: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in raw.items() if key != "_id"}


def _policy_fields(raw: dict[str, Any]) -> dict[str, Any]:
    """A stored policy as an export carries it (and as an import compares it)."""
    return {
        "policy_id": raw["policy_id"],
        "name": raw.get("name", ""),
        "description": raw.get("description") or "",
        "state": raw.get("state") or PolicyState.ENABLED,
        "permissions": list(raw.get("permissions") or []),
        "statements": [
            {
                "effect": s.get("effect"),
                "actions": list(s.get("actions") or []),
                "resources": list(s.get("resources") or []),
                "conditions": s.get("conditions") or {},
            }
            for s in raw.get("statements") or []
        ],
        "labels": list(raw.get("labels") or []),
        "tags": dict(raw.get("tags") or {}),
        "project_id": raw.get("project_id") or "",
    }


def _set_fields(raw: dict[str, Any], id_field: str) -> dict[str, Any]:
    return {
        id_field: raw[id_field],
        **{key: raw.get(key, UNSET.get(key, "")) for key in SET_FIELDS},
    }


def _group_fields(raw: dict[str, Any]) -> dict[str, Any]:
    return _set_fields(raw, "group_id")


def _role_fields(raw: dict[str, Any]) -> dict[str, Any]:
    return _set_fields(raw, "role_id")


def _assignment_fields(raw: dict[str, Any]) -> dict[str, Any]:
    expires_at = raw.get("expires_at")
    return {
        "assignment_id": raw["assignment_id"],
        "subject_type": raw["subject_type"],
        "subject_id": raw["subject_id"],
        "grant_type": raw["grant_type"],
        "grant_id": raw["grant_id"],
        "expires_at": as_utc(expires_at) if expires_at is not None else None,
        "labels": list(raw.get("labels") or []),
        "tags": dict(raw.get("tags") or {}),
    }


def _new_policy(record: dict[str, Any], domain_id: str, now: datetime) -> dict[str, Any]:
    """A checked policy as Policy/create stores it."""
    return {
        **record,
        "repository_id": LOCAL_REPOSITORY_ID,
        "domain_id": domain_id,
        "is_managed": False,
        "created_at": now,
        "updated_at": now,
    }


def _unexpired(raw: dict[str, Any], now: datetime) -> bool:
    expires_at = raw.get("expires_at")
    return expires_at is None or as_utc(expires_at) > now


def _same(left: Any, right: Any) -> bool:
    if isinstance(left, datetime) and isinstance(right, datetime):
        return as_utc(left) == as_utc(right)
    return left == right


def _parts(record: dict[str, Any]) -> tuple[tuple[str, str], tuple[str, str]]:
    return (record["subject_type"], record["subject_id"]), (record["grant_type"], record["grant_id"])


def _named(record: dict[str, Any]) -> list[tuple[str, str]]:
    """The policies, groups and roles an assignment names (not users or service accounts)."""
    return [
        (part_type, part_id)
        for part_type, part_id in _parts(record)
        if part_type in (GrantType.POLICY, SubjectType.GROUP, SubjectType.ROLE)
    ]


def _record_id(kind: str, record: dict[str, Any]) -> str:
    if kind == ChangeKind.ASSIGNMENT:
        return record.get("assignment_id") or ""
    return record.get(f"{kind.lower()}_id") or ""


def _item_id(kind: str, fields: dict[str, Any]) -> str:
    value = _record_id(kind, fields) if kind in KINDS else ""
    return value if isinstance(value, str) else ""


def _describe(kind: str, fields: dict[str, Any]) -> str:
    """How a refusal names its item: `policy ops-admin`, `assignment USER alice -> POLICY x`."""
    if kind == ChangeKind.ASSIGNMENT:
        subject, grant = fields.get("subject") or {}, fields.get("grant") or {}
        if "subject_type" in fields:
            subject = {"type": fields["subject_type"], "id": fields["subject_id"]}
            grant = {"type": fields["grant_type"], "id": fields["grant_id"]}
        return (
            f"assignment {clip(subject.get('type', ''))} {clip(subject.get('id', ''))} -> "
            f"{clip(grant.get('type', ''))} {clip(grant.get('id', ''))}"
        )
    if kind in KINDS:
        return f"{kind.lower()} {clip(_item_id(kind, fields))}"
    return "an item of no kind"


def _at_item(error: PolicyHubError, index: int, kind: str, fields: dict[str, Any]) -> PolicyHubError:
    """The error of an item's own check, moved to where the item is in the stream:
    `statements[0].effect` becomes `items[12].statements[0].effect`."""
    label = _describe(kind, fields)
    if isinstance(error, InvalidArgument):
        path = f"items[{index}]" if error.field == "item" else f"items[{index}].{error.field}"
        moved = InvalidArgument(path, f"{error.description} ({label})", spaceone_name=error.spaceone_name)
        if isinstance(error, RequiredParameter):
            moved.name = RequiredParameter.name  # type: ignore[misc]
        return moved
    path = f"items[{index}].{kind.lower()}_id" if kind in (ChangeKind.POLICY,) else f"items[{index}]"
    error.message = f"{error.message} ({path}: {label})"
    error.args = (error.message,)
    error.metadata["field"] = path
    return error


def _field_of(error: PolicyHubError) -> str:
    return error.field if isinstance(error, InvalidArgument) else error.metadata.get("field", "")


def _first_refusal(refused: list[Refusal]) -> PolicyHubError:
    """What a real import answers when it refuses items: the first one's error (saying how many
    more there are)."""
    error = refused[0].error
    if len(refused) > 1:
        more = f"; {len(refused) - 1} more items refused (a dry run lists them)"
        if isinstance(error, InvalidArgument):
            moved = InvalidArgument(error.field, error.description + more, spaceone_name=error.spaceone_name)
            moved.name = error.name  # type: ignore[misc]
            return moved
        error.message += more
        error.args = (error.message,)
    return error


def refusal_fields(refusal: Refusal) -> dict[str, Any]:
    """A refusal as the import's answer lists it."""
    return {
        "item_index": refusal.index,
        "kind": refusal.kind if refusal.kind in KINDS else "KIND_NONE",
        "id": refusal.item_id,
        "code": refusal.error.code,
        "field": _field_of(refusal.error),
        "message": clip(str(refusal.error), 512),
    }


def _check_counts(counts: dict[str, int] | None, items: Iterable[tuple[str, dict[str, Any]]]) -> None:
    """A header that says how many items follow (an export's does) must be right: a truncated
    stream is refused whole, not imported in part."""
    if counts is None:
        return
    received = Counter(kind for kind, _ in items)
    for kind in KINDS:
        announced = int(counts.get(PLURAL[kind]) or 0)
        if announced != received[kind]:
            raise InvalidArgument(
                f"header.counts.{PLURAL[kind]}",
                f"the header announces {announced} {PLURAL[kind]}, the stream has {received[kind]}; is it complete?",
            )
