"""The soft-delete lifecycle of policies: delete (one or many, optionally with their
assignments), restore within the retention period, and the purge of expired ones."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from policyhub.domain import ChangeKind, Operation
from policyhub.errors import FailedPrecondition, InvalidArgument, NotFound, RequiredParameter
from policyhub.manager.assignment_manager import AssignmentManager
from policyhub.manager.audit_trail import AuditTrail
from policyhub.manager.policy_manager import PolicyManager
from policyhub.manager.revision_manager import RevisionManager
from policyhub.service import validation
from policyhub.service.context import Clock, RequestContext
from policyhub.service.guard import Guard
from policyhub.service.invalidation import ChangeSet, invalidating
from policyhub.service.permissions import POLICY_DELETE, POLICY_DELETE_MANY, POLICY_RESTORE
from policyhub.service.policy_rules import allows, denies, live, refuse_managed_id, require_held
from policyhub.service.policy_rules import etag as request_etag
from policyhub.service.undo import Undo


class PolicyLifecycleService:
    def __init__(
        self,
        policies: PolicyManager,
        assignments: AssignmentManager,
        revisions: RevisionManager,
        audit: AuditTrail,
        guard: Guard,
        clock: Clock,
        retention: timedelta,
    ):
        self.policies = policies
        self.assignments = assignments
        self.revisions = revisions
        self.audit = audit
        self.guard = guard
        self.clock = clock
        self.retention = retention

    def delete(self, ctx: RequestContext, params: dict[str, Any]) -> str:
        """Returns the consistency token of the write."""
        policy_id = validation.policy_id(params.get("policy_id", ""))
        etag = request_etag(params)
        self.guard.require(ctx, POLICY_DELETE, f"policy/{policy_id}")
        refuse_managed_id(policy_id, "deleted")
        cascade = bool(params.get("cascade"))
        self._refuse_if_assigned(ctx, [policy_id], cascade)
        before = live(self.policies, ctx, policy_id)
        if require_held(self.guard, ctx, policy_id, lifts=denies(before)):
            etag = etag or before["etag"]
        with invalidating(self.revisions, ctx.domain_id, ctx.transaction_id) as changes:
            self._soft_delete(ctx, policy_id, etag, cascade, changes)
        self.audit.record(ctx, POLICY_DELETE, policy_id, before, None)
        return changes.token

    def delete_many(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """All or nothing: every id is checked before anything is deleted, and a failure
        half-way undoes what this call already wrote. Written in bulk: one read of the policies,
        one compare-and-set soft delete of them all (a policy changed since it was read makes
        the call ABORTED), the cascade's assignments parked on their policies and removed in
        batches, one re-check for assignments added meanwhile."""
        raw_ids = params.get("policy_ids") or []
        if not raw_ids:
            raise RequiredParameter("policy_ids")
        if len(raw_ids) > validation.MAX_BATCH_IDS:
            raise InvalidArgument("policy_ids", f"at most {validation.MAX_BATCH_IDS} ids per call")
        policy_ids = list(
            dict.fromkeys(validation.policy_id(value, f"policy_ids[{index}]") for index, value in enumerate(raw_ids))
        )
        for policy_id in policy_ids:
            self.guard.require(ctx, POLICY_DELETE, f"policy/{policy_id}")
            refuse_managed_id(policy_id, "deleted")
        current = self.policies.live_stored(ctx.domain_id, policy_ids)
        missing = [policy_id for policy_id in policy_ids if policy_id not in current]
        if missing:
            raise NotFound("Policy", "policy_id", ",".join(missing))
        cascade = bool(params.get("cascade"))
        self._refuse_if_assigned(ctx, policy_ids, cascade)
        for policy_id in policy_ids:
            require_held(self.guard, ctx, policy_id, lifts=denies(current[policy_id]))
        with invalidating(self.revisions, ctx.domain_id, ctx.transaction_id) as changes, Undo() as undo:
            parked = self.assignments.for_policies(ctx.domain_id, policy_ids) if cascade else {}
            now = self.clock()
            raws = [current[policy_id] for policy_id in policy_ids]
            reverts = self.policies.soft_delete_bulk(raws, now, now + self.retention, changes.keep_alive, parked)
            undo.push(self.policies.revert_bulk, reverts, changes.keep_alive)
            for policy_id in policy_ids:
                changes.add(ChangeKind.POLICY, policy_id, Operation.DELETE)
            # Parked on the policies first, so a failure here loses nothing: restore re-inserts them.
            self._remove(ctx, [a for granting in parked.values() for a in granting], changes, undo)
            # Assignments added while we deleted (their re-check may have run before our write):
            # a cascade parks them too; otherwise the delete backs off, as if it had seen them.
            late = self.assignments.for_policies(ctx.domain_id, policy_ids)
            if late and not cascade:
                raise _still_assigned({policy_id: len(granting) for policy_id, granting in late.items()})
            for policy_id, granting in late.items():
                self.policies.park(ctx.domain_id, policy_id, now, granting)
            self._remove(ctx, [a for granting in late.values() for a in granting], changes, undo)
        self.audit.record_many(ctx, POLICY_DELETE_MANY, [(policy_id, None, None) for policy_id in policy_ids])
        return {
            "results": [{"policy_id": policy_id, "outcome": "DELETED"} for policy_id in policy_ids],
            "deleted_count": len(policy_ids),
            "consistency_token": changes.token,
        }

    def restore(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        policy_id = validation.policy_id(params.get("policy_id", ""))
        self.guard.require(ctx, POLICY_RESTORE, f"policy/{policy_id}")
        refuse_managed_id(policy_id, "restored")
        deleted = self.policies.restorable(ctx.domain_id, policy_id, self.clock())
        require_held(self.guard, ctx, policy_id, gives=allows(deleted))
        with invalidating(self.revisions, ctx.domain_id, ctx.transaction_id) as changes:
            restored = self._restore(ctx, policy_id, deleted, changes)
        self.audit.record(ctx, POLICY_RESTORE, policy_id, None, restored)
        return {**restored, "consistency_token": changes.token}

    def purge_expired(self) -> int:
        purged = self.policies.purge_expired(self.clock())
        for domain_id, policy_id in purged:
            if self.policies.existing_ids(domain_id, [policy_id]):
                continue  # created again: the grants left on the id are the live policy's
            # Nothing may grant an id that is free again: a new policy must not inherit grants.
            with invalidating(self.revisions, domain_id, assignments=self.assignments) as changes:
                granted = self.assignments.for_policy(domain_id, policy_id)
                self.assignments.delete_ids(domain_id, [a["assignment_id"] for a in granted])
                for assignment in granted:
                    changes.add_assignment(assignment, Operation.DELETE)
        return len(purged)

    def _soft_delete(
        self, ctx: RequestContext, policy_id: str, etag: str | None, cascade: bool, changes: ChangeSet
    ) -> None:
        parked = self.assignments.for_policy(ctx.domain_id, policy_id) if cascade else []
        now = self.clock()
        self.policies.soft_delete(ctx.domain_id, policy_id, etag, now, now + self.retention, parked)
        changes.add(ChangeKind.POLICY, policy_id, Operation.DELETE)
        if parked:
            # Parked on the policy first, so a failure here loses nothing: restore re-inserts them.
            self.assignments.delete_ids(ctx.domain_id, [a["assignment_id"] for a in parked])
            for assignment in parked:
                changes.add_assignment(assignment, Operation.DELETE)
        # Assignments added while we deleted (their re-check may have run before our write):
        # a cascade parks them too; otherwise the delete backs off, as if it had seen them.
        late = self.assignments.for_policy(ctx.domain_id, policy_id)
        if late and cascade:
            self.policies.park(ctx.domain_id, policy_id, now, late)
            self.assignments.delete_ids(ctx.domain_id, [a["assignment_id"] for a in late])
            for assignment in late:
                changes.add_assignment(assignment, Operation.DELETE)
        elif late:
            self._restore(ctx, policy_id)
            raise FailedPrecondition(
                f"policies still have assignments: {policy_id} ({len(late)}); remove them or pass cascade",
                metadata={"assignments": len(late)},
            )

    def _restore(
        self,
        ctx: RequestContext,
        policy_id: str,
        deleted: dict[str, Any] | None = None,
        changes: ChangeSet | None = None,
    ) -> dict[str, Any]:
        restored, parked = self.policies.restore(ctx.domain_id, policy_id, self.clock(), deleted)
        self.assignments.put_back(parked)
        if changes is not None:
            changes.add(ChangeKind.POLICY, policy_id, Operation.CREATE)
            for assignment in parked:
                changes.add_assignment(assignment, Operation.CREATE)
        return restored

    def _remove(self, ctx: RequestContext, removed: list[dict[str, Any]], changes: ChangeSet, undo: Undo) -> None:
        """Deletes the assignments (parked on their policies already), in batches."""
        if not removed:
            return
        self.assignments.delete_ids(ctx.domain_id, [a["assignment_id"] for a in removed])
        undo.push(self.assignments.put_back, removed)
        for assignment in removed:
            changes.add_assignment(assignment, Operation.DELETE)

    def _refuse_if_assigned(self, ctx: RequestContext, policy_ids: list[str], cascade: bool) -> None:
        if cascade:
            return
        counts = self.assignments.count_for_policy(ctx.domain_id, policy_ids)
        if counts:
            raise _still_assigned(counts)


def _still_assigned(counts: dict[str, int]) -> FailedPrecondition:
    listed = ", ".join(f"{policy_id} ({count})" for policy_id, count in sorted(counts.items()))
    return FailedPrecondition(
        f"policies still have assignments: {listed}; remove them or pass cascade",
        metadata={"assignments": sum(counts.values())},
    )
