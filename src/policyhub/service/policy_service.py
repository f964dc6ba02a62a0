"""Policies: create, update (and rename), enable/disable, get, list, stat, within the caller's
domain (the soft-delete lifecycle is policyhub.service.policy_lifecycle)."""

from __future__ import annotations

from typing import Any

from policyhub.domain import (
    BUILT_IN,
    LOCAL_REPOSITORY_ID,
    MANAGED_DOMAIN_ID,
    MANAGED_ID_PREFIX,
    MANAGED_REPOSITORY_ID,
    ChangeKind,
    Operation,
    PolicyState,
)
from policyhub.errors import InvalidArgument, NotFound, RequiredParameter
from policyhub.manager.assignment_manager import AssignmentManager
from policyhub.manager.audit_trail import AuditTrail
from policyhub.manager.policy_manager import PolicyManager
from policyhub.manager.remote_policy_manager import RemotePolicyManager
from policyhub.manager.revision_manager import RevisionManager
from policyhub.service import validation
from policyhub.service.context import Clock, RequestContext, is_anonymous
from policyhub.service.guard import Guard
from policyhub.service.invalidation import invalidating, invalidating_at_once
from policyhub.service.permissions import (
    POLICY_CREATE,
    POLICY_DISABLE,
    POLICY_ENABLE,
    POLICY_GET,
    POLICY_LIST,
    POLICY_STAT,
    POLICY_UPDATE,
)
from policyhub.service.policy_rules import (
    allows,
    content,
    denies,
    live,
    refuse_managed_id,
    removed_denies,
    require_held,
    within_size,
)
from policyhub.service.policy_rules import (
    etag as request_etag,
)
from policyhub.service.shortcuts import narrowed
from policyhub.service.undo import Undo

# Fields an update may write; also the valid update_mask paths.
UPDATABLE_FIELDS = ("name", "description", "permissions", "statements", "labels", "tags")
# PolicyQuery's own fields that narrow a list (stored under the same names).
LIST_SHORTCUTS = ("policy_id", "name", "project_id", "repository_id", "state")


class PolicyService:
    def __init__(
        self,
        policies: PolicyManager,
        remote: RemotePolicyManager,
        assignments: AssignmentManager,
        revisions: RevisionManager,
        audit: AuditTrail,
        guard: Guard,
        clock: Clock,
        managed_policies: list[dict[str, Any]],
    ):
        self.policies = policies
        self.remote = remote
        self.assignments = assignments
        self.revisions = revisions
        self.audit = audit
        self.guard = guard
        self.clock = clock
        self.managed_policies = managed_policies

    def sync_managed(self) -> None:
        records = [
            {
                **policy,
                "domain_id": MANAGED_DOMAIN_ID,
                "repository_id": MANAGED_REPOSITORY_ID,
                "is_managed": True,
                "state": PolicyState.ENABLED,
                "project_id": "",
            }
            for policy in self.managed_policies
        ]
        if self.policies.sync_managed(records, self.clock()):
            self.revisions.bump(MANAGED_DOMAIN_ID)

    def create(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        policy_id = validation.policy_id(params.get("policy_id", ""))
        name = validation.name(params.get("name", ""), required=True)
        checked = content(params, partial=False)
        project_id = validation.name(params.get("project_id", ""), "project_id")
        self.guard.require(ctx, POLICY_CREATE, f"policy/{policy_id}")
        refuse_managed_id(policy_id, "created")
        now = self.clock()
        record = {
            "policy_id": policy_id,
            "name": name,
            **checked,
            "state": PolicyState.ENABLED,
            "project_id": project_id,
            "repository_id": LOCAL_REPOSITORY_ID,
            "domain_id": ctx.domain_id,
            "is_managed": False,
            "created_at": now,
            "updated_at": now,
        }
        within_size(record)
        require_held(self.guard, ctx, policy_id, gives=allows(record))
        with invalidating(self.revisions, ctx.domain_id, ctx.transaction_id) as changes:
            created = self.policies.create(record)
            changes.add(ChangeKind.POLICY, policy_id, Operation.CREATE)
        self.audit.record(ctx, POLICY_CREATE, policy_id, None, created)
        return {**created, "consistency_token": changes.token}

    def update(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        policy_id = validation.policy_id(params.get("policy_id", ""))
        etag = request_etag(params)
        mask = params.get("update_mask")
        if mask is not None:
            changes = self._masked_changes(params, mask)
        else:
            changes = content(params, partial=True)
            if params.get("name"):
                changes["name"] = validation.name(params["name"])
        new_policy_id = params.get("new_policy_id") or ""
        if new_policy_id and new_policy_id != policy_id:
            changes["policy_id"] = validation.policy_id(new_policy_id, "new_policy_id")
        # The changes alone may already be too large: refused before any lookup.
        within_size(changes)
        self.guard.require(ctx, POLICY_UPDATE, f"policy/{policy_id}")
        refuse_managed_id(policy_id, "updated")
        if "policy_id" in changes:
            # A rename creates the new id: scoped permissions must not be escaped by renaming.
            self.guard.require(ctx, POLICY_CREATE, f"policy/{new_policy_id}")
            refuse_managed_id(new_policy_id, "created")
        before = live(self.policies, ctx, policy_id)
        after = {**before, **changes}
        within_size(after)
        if {"policy_id", "permissions", "statements"} & changes.keys() and require_held(
            self.guard, ctx, policy_id, gives=allows(after), lifts=removed_denies(before, after)
        ):
            # The rule was applied to this version: a concurrent change makes the write ABORTED.
            etag = etag or before["etag"]
        # A rename moves the policy's assignments too: checks see the whole of it at once.
        landing = invalidating_at_once if "policy_id" in changes else invalidating
        with landing(self.revisions, ctx.domain_id, ctx.transaction_id) as logged, Undo() as undo:
            updated = self.policies.update(ctx.domain_id, policy_id, changes, etag, self.clock())
            if "policy_id" not in changes:
                logged.add_policy_update(updated)
            else:
                logged.add(ChangeKind.POLICY, policy_id, Operation.DELETE)
                logged.add(ChangeKind.POLICY, changes["policy_id"], Operation.CREATE)
                # Renamed back if its assignments cannot follow: none may be left on a free id.
                undo.push(
                    self.policies.update,
                    ctx.domain_id,
                    changes["policy_id"],
                    {"policy_id": policy_id},
                    None,
                    self.clock(),
                )
                # The assignments follow the policy to its new id (Authing newCode). One added
                # concurrently to the old id is undone by its own re-check (the old id is gone).
                self.assignments.regrant(ctx.domain_id, policy_id, changes["policy_id"])
        self.audit.record(ctx, POLICY_UPDATE, policy_id, before, updated)
        return {**updated, "consistency_token": logged.token}

    def set_state(self, ctx: RequestContext, params: dict[str, Any], state: PolicyState) -> dict[str, Any]:
        policy_id = validation.policy_id(params.get("policy_id", ""))
        etag = request_etag(params)
        enabling = state == PolicyState.ENABLED
        permission = POLICY_ENABLE if enabling else POLICY_DISABLE
        self.guard.require(ctx, permission, f"policy/{policy_id}")
        refuse_managed_id(policy_id, "enabled or disabled")
        before = live(self.policies, ctx, policy_id)
        gives, lifts = (allows(before), ()) if enabling else ((), denies(before))
        if require_held(self.guard, ctx, policy_id, gives=gives, lifts=lifts):
            etag = etag or before["etag"]
        with invalidating(self.revisions, ctx.domain_id, ctx.transaction_id) as changes:
            updated = self.policies.update(ctx.domain_id, policy_id, {"state": state}, etag, self.clock())
            changes.add_policy_update(updated)
        self.audit.record(ctx, permission, policy_id, before, updated)
        return {**updated, "consistency_token": changes.token}

    def get(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """With repository_id: only there (a remote repository asks its endpoint). Without:
        managed and local first (one read; they cannot collide, `managed-` ids are reserved);
        an id held there, even by a soft-deleted policy, is never looked up remotely, so a remote
        policy cannot shadow it. Otherwise every remote repository is asked (see
        RemotePolicyManager.get_anywhere)."""
        policy_id = validation.policy_id(params.get("policy_id", ""))
        repository_id = validation.optional_identifier(params.get("repository_id"), "repository_id") or None
        self.guard.require(ctx, POLICY_GET, f"policy/{policy_id}")
        # The public catalogue is this installation's live policies: no remote, no deleted ones.
        public = is_anonymous(ctx)
        include_deleted = bool(params.get("include_deleted")) and not public
        if repository_id:
            repository = None if public else self._remote_repository(repository_id)
            if repository:
                return self.remote.get(repository, ctx.domain_id, policy_id, include_deleted)
            return self.policies.get(ctx.domain_id, policy_id, repository_id, include_deleted)
        try:
            found = self.policies.get(ctx.domain_id, policy_id, None, include_deleted=True)
        except NotFound:
            # A call from another installation (remote hop) is answered from here only: no loops.
            if public or params.get("local_only") or policy_id.startswith(MANAGED_ID_PREFIX):
                raise
            return self.remote.get_anywhere(ctx.domain_id, policy_id, include_deleted)
        if found.get("state") == PolicyState.DELETED and not include_deleted:
            raise NotFound("Policy", "policy_id", policy_id)
        return found

    def _remote_repository(self, repository_id: str | None) -> dict[str, Any] | None:
        """The repository when repository_id names a remote one, else None: the policies are then
        local or managed. An unknown id is NOT_FOUND, as in SpaceONE."""
        if not repository_id or repository_id in BUILT_IN:
            return None
        return self.remote.repository(repository_id)

    def list(self, ctx: RequestContext, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
        """Without repository_id: local and managed policies (one round trip); remote policies
        are listed per repository, by the remote (the query passes through, validated here)."""
        for key in ("policy_id", "repository_id"):
            validation.optional_identifier(params.get(key), key)
        # The same rules as on create, so whatever a policy holds can be listed by.
        validation.name(params.get("name") or "")
        validation.name(params.get("project_id") or "", "project_id")
        self.guard.require(ctx, POLICY_LIST, "policy")
        public = is_anonymous(ctx)
        repository = None if public else self._remote_repository(params.get("repository_id"))
        if repository:
            query = self.policies.remote_query(params.get("query"))
            return self.remote.list(repository, ctx.domain_id, {**params, "query": query})
        query = narrowed(params.get("query"), {key: params.get(key) for key in LIST_SHORTCUTS})
        include_deleted = not public and (
            bool(params.get("include_deleted")) or params.get("state") == PolicyState.DELETED
        )
        return self.policies.list(
            ctx.domain_id, query, include_managed=not params.get("exclude_managed"), include_deleted=include_deleted
        )

    def stat(self, ctx: RequestContext, params: dict[str, Any]) -> tuple[list, int | None]:
        repository_id = validation.optional_identifier(params.get("repository_id"), "repository_id")
        self.guard.require(ctx, POLICY_STAT, "policy")
        query = params.get("query")
        if not query:
            raise RequiredParameter("query")
        repository = self._remote_repository(repository_id)
        if repository:
            return self.remote.stat(repository, ctx.domain_id, self.policies.remote_query(query, stat=True))
        if repository_id:
            query = narrowed(query, {"repository_id": repository_id})
        return self.policies.stat(ctx.domain_id, query)

    def _masked_changes(self, params: dict[str, Any], mask: list[str]) -> dict[str, Any]:
        if not mask:
            raise InvalidArgument("update_mask", "must name at least one path")
        unknown = [path for path in mask if path not in UPDATABLE_FIELDS]
        if unknown:
            raise InvalidArgument("update_mask", f"unknown paths {unknown}; allowed: {list(UPDATABLE_FIELDS)}")
        full = {"name": validation.name(params.get("name", "")), **content(params, partial=False)}
        if "name" in mask and not full["name"]:
            raise InvalidArgument("name", "cannot be cleared")
        return {path: full[path] for path in mask}
