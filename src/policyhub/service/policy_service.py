"""Policies: create, update (and rename), soft delete and restore, enable/disable, get, list, stat,
within the caller's domain."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from policyhub.engine import Statement
from policyhub.errors import (FailedPrecondition, InvalidArgument, ManagedReadOnly, NotFound, PolicyHubError,
                             RequiredParameter)
from policyhub.manager.assignment_manager import AssignmentManager
from policyhub.manager.policy_manager import DELETED, MANAGED_DOMAIN_ID, MANAGED_ID_PREFIX, PolicyManager
from policyhub.manager.revision_manager import RevisionManager
from policyhub.remote.client import RemotePolicyClient
from policyhub.service import validation
from policyhub.service.audit_service import AuditService
from policyhub.service.context import Clock, RequestContext
from policyhub.service.guard import ESCALATE, Guard, Labelled
from policyhub.service.invalidation import invalidating
from policyhub.service.shortcuts import narrowed
from policyhub.service.repository_service import BUILT_IN, MANAGED_REPOSITORY_ID, RepositoryService

# Fields an update may write; also the valid update_mask paths.
UPDATABLE_FIELDS = ("name", "description", "permissions", "statements", "labels", "tags")
# PolicyQuery's own fields that narrow a list (stored under the same names).
LIST_SHORTCUTS = ("policy_id", "name", "project_id", "repository_id", "state")
# What a caller writes into a policy: the field named when the stored record would be too large.
WRITTEN_FIELDS = ("name", "description", "permissions", "statements", "labels", "tags", "project_id")
# Not part of the stored record (joined at read time).
_NOT_STORED = ("repository_info",)


class PolicyService:
    def __init__(self, policies: PolicyManager, assignments: AssignmentManager, repositories: RepositoryService,
                 revisions: RevisionManager, audit: AuditService, guard: Guard, clock: Clock,
                 managed_policies: list[dict[str, Any]], retention: timedelta, remote: RemotePolicyClient):
        self.policies = policies
        self.assignments = assignments
        self.repositories = repositories
        self.revisions = revisions
        self.audit = audit
        self.guard = guard
        self.clock = clock
        self.managed_policies = managed_policies
        self.retention = retention
        self.remote = remote

    def sync_managed(self) -> None:
        records = [{**policy, "domain_id": MANAGED_DOMAIN_ID, "repository_id": MANAGED_REPOSITORY_ID,
                    "is_managed": True, "state": "ENABLED", "project_id": ""}
                   for policy in self.managed_policies]
        if self.policies.sync_managed(records, self.clock()):
            self.revisions.bump(MANAGED_DOMAIN_ID)

    def create(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        policy_id = validation.policy_id(params.get("policy_id", ""))
        name = validation.name(params.get("name", ""), required=True)
        content = self._content(params, partial=False)
        project_id = validation.text(params.get("project_id", ""), "project_id", validation.NAME_MAX)
        self.guard.require(ctx, "repository.Policy.create", f"policy/{policy_id}")
        self._refuse_managed_id(policy_id, "created")
        now = self.clock()
        record = {
            "policy_id": policy_id,
            "name": name,
            **content,
            "state": "ENABLED",
            "project_id": project_id,
            "repository_id": self.repositories.local_repository_id(),
            "domain_id": ctx.domain_id,
            "is_managed": False,
            "created_at": now,
            "updated_at": now,
        }
        _within_size(record)
        self._require_held(ctx, policy_id, gives=_allows(record))
        with invalidating(self.revisions, ctx.domain_id):
            created = self.policies.create(record)
        self.audit.record(ctx, "repository.Policy.create", "Policy", policy_id, None, created)
        return created

    def update(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        policy_id = validation.policy_id(params.get("policy_id", ""))
        etag = _etag(params)
        mask = params.get("update_mask")
        if mask is not None:
            changes = self._masked_changes(params, mask)
        else:
            changes = self._content(params, partial=True)
            if params.get("name"):
                changes["name"] = validation.name(params["name"])
        new_policy_id = params.get("new_policy_id") or ""
        if new_policy_id and new_policy_id != policy_id:
            changes["policy_id"] = validation.policy_id(new_policy_id, "new_policy_id")
        # The changes alone may already be too large: refused before any lookup.
        _within_size(changes)
        self.guard.require(ctx, "repository.Policy.update", f"policy/{policy_id}")
        self._refuse_managed_id(policy_id, "updated")
        if "policy_id" in changes:
            # A rename creates the new id: scoped permissions must not be escaped by renaming.
            self.guard.require(ctx, "repository.Policy.create", f"policy/{new_policy_id}")
            self._refuse_managed_id(new_policy_id, "created")
        before = self._own(ctx, policy_id)
        if before is not None:
            after = {**before, **changes}
            _within_size(after)
            if {"policy_id", "permissions", "statements"} & changes.keys() and self._require_held(
                    ctx, policy_id, gives=_allows(after), lifts=_removed_denies(before, after)):
                # The rule was applied to this version: a concurrent change makes the write ABORTED.
                etag = etag or before["etag"]
        with invalidating(self.revisions, ctx.domain_id):
            updated = self.policies.update(ctx.domain_id, policy_id, changes, etag, self.clock())
            if "policy_id" in changes:
                # The assignments follow the policy to its new id (Authing newCode). One added
                # concurrently to the old id is undone by its own re-check (the old id is gone).
                self.assignments.regrant(ctx.domain_id, policy_id, changes["policy_id"])
        self.audit.record(ctx, "repository.Policy.update", "Policy", policy_id, before, updated)
        return updated

    def delete(self, ctx: RequestContext, params: dict[str, Any]) -> None:
        policy_id = validation.policy_id(params.get("policy_id", ""))
        etag = _etag(params)
        self.guard.require(ctx, "repository.Policy.delete", f"policy/{policy_id}")
        self._refuse_managed_id(policy_id, "deleted")
        cascade = bool(params.get("cascade"))
        self._refuse_if_assigned(ctx, [policy_id], cascade)
        before = self._own(ctx, policy_id)
        if before is not None and self._require_held(ctx, policy_id, lifts=_denies(before)):
            etag = etag or before["etag"]
        with invalidating(self.revisions, ctx.domain_id):
            self._soft_delete(ctx, policy_id, etag, cascade)
        self.audit.record(ctx, "repository.Policy.delete", "Policy", policy_id, before, None)

    def delete_many(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """All or nothing: every id is checked before anything is deleted, and a failure
        half-way restores what this call already deleted."""
        raw_ids = params.get("policy_ids") or []
        if not raw_ids:
            raise RequiredParameter("policy_ids")
        if len(raw_ids) > validation.MAX_BATCH_IDS:
            raise InvalidArgument("policy_ids", f"at most {validation.MAX_BATCH_IDS} ids per call")
        policy_ids = list(dict.fromkeys(validation.policy_id(value, f"policy_ids[{index}]")
                                        for index, value in enumerate(raw_ids)))
        for policy_id in policy_ids:
            self.guard.require(ctx, "repository.Policy.delete", f"policy/{policy_id}")
            self._refuse_managed_id(policy_id, "deleted")
        live = self.policies.existing_ids(ctx.domain_id, policy_ids)
        missing = [policy_id for policy_id in policy_ids if policy_id not in live]
        if missing:
            raise NotFound("Policy", "policy_id", ",".join(missing))
        cascade = bool(params.get("cascade"))
        self._refuse_if_assigned(ctx, policy_ids, cascade)
        etags: dict[str, str | None] = {}
        for policy_id in policy_ids:
            before = self.policies.get(ctx.domain_id, policy_id)
            etags[policy_id] = before["etag"] if self._require_held(ctx, policy_id, lifts=_denies(before)) else None
        done: list[str] = []
        with invalidating(self.revisions, ctx.domain_id):
            try:
                for policy_id in policy_ids:
                    self._soft_delete(ctx, policy_id, etags[policy_id], cascade)
                    done.append(policy_id)
            except Exception:
                for policy_id in done:
                    self._restore(ctx, policy_id)
                raise
        self.audit.record_many(ctx, "repository.Policy.delete_many", "Policy",
                               [(policy_id, None, None) for policy_id in policy_ids])
        return {"results": [{"policy_id": policy_id, "outcome": "DELETED"} for policy_id in policy_ids],
                "deleted_count": len(done)}

    def restore(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        policy_id = validation.policy_id(params.get("policy_id", ""))
        self.guard.require(ctx, "repository.Policy.restore", f"policy/{policy_id}")
        self._refuse_managed_id(policy_id, "restored")
        deleted = self.policies.get(ctx.domain_id, policy_id, include_deleted=True)
        self._require_held(ctx, policy_id, gives=_allows(deleted))
        with invalidating(self.revisions, ctx.domain_id):
            restored = self._restore(ctx, policy_id)
        self.audit.record(ctx, "repository.Policy.restore", "Policy", policy_id, None, restored)
        return restored

    def set_state(self, ctx: RequestContext, params: dict[str, Any], state: str) -> dict[str, Any]:
        policy_id = validation.policy_id(params.get("policy_id", ""))
        etag = _etag(params)
        self.guard.require(ctx, f"repository.Policy.{'enable' if state == 'ENABLED' else 'disable'}", f"policy/{policy_id}")
        self._refuse_managed_id(policy_id, "enabled or disabled")
        before = self._own(ctx, policy_id)
        if before is not None:
            gives, lifts = (_allows(before), ()) if state == "ENABLED" else ((), _denies(before))
            if self._require_held(ctx, policy_id, gives=gives, lifts=lifts):
                etag = etag or before["etag"]
        with invalidating(self.revisions, ctx.domain_id):
            updated = self.policies.update(ctx.domain_id, policy_id, {"state": state}, etag, self.clock())
        method = "repository.Policy.enable" if state == "ENABLED" else "repository.Policy.disable"
        self.audit.record(ctx, method, "Policy", policy_id, before, updated)
        return updated

    def _require_held(self, ctx: RequestContext, policy_id: str, gives: Labelled = (), lifts: Labelled = ()) -> bool:
        return self.guard.require_held(ctx, gives, lifts, ESCALATE, f"policy/{policy_id}")

    def _own(self, ctx: RequestContext, policy_id: str) -> dict[str, Any] | None:
        """The policy as it is before a change, for the audit trail (None when not live)."""
        try:
            return self.policies.get(ctx.domain_id, policy_id)
        except NotFound:
            return None

    def purge_expired(self) -> int:
        purged = self.policies.purge_expired(self.clock())
        for domain_id, policy_id in purged:
            # Nothing may grant an id that is free again: a new policy must not inherit grants.
            with invalidating(self.revisions, domain_id):
                self.assignments.delete_ids(domain_id, [a["assignment_id"]
                                                        for a in self.assignments.for_policy(domain_id, policy_id)])
        return len(purged)

    def _soft_delete(self, ctx: RequestContext, policy_id: str, etag: str | None, cascade: bool) -> None:
        parked = self.assignments.for_policy(ctx.domain_id, policy_id) if cascade else []
        now = self.clock()
        self.policies.soft_delete(ctx.domain_id, policy_id, etag, now, now + self.retention, parked)
        if parked:
            # Parked on the policy first, so a failure here loses nothing: restore re-inserts them.
            self.assignments.delete_ids(ctx.domain_id, [a["assignment_id"] for a in parked])
        # Assignments added while we deleted (their re-check may have run before our write):
        # a cascade parks them too; otherwise the delete backs off, as if it had seen them.
        late = self.assignments.for_policy(ctx.domain_id, policy_id)
        if late and cascade:
            self.policies.park(ctx.domain_id, policy_id, late)
            self.assignments.delete_ids(ctx.domain_id, [a["assignment_id"] for a in late])
        elif late:
            self._restore(ctx, policy_id)
            raise FailedPrecondition(f"policies still have assignments: {policy_id} ({len(late)}); "
                                     "remove them or pass cascade", metadata={"assignments": len(late)})

    def _restore(self, ctx: RequestContext, policy_id: str) -> dict[str, Any]:
        restored, parked = self.policies.restore(ctx.domain_id, policy_id, self.clock())
        self.assignments.put_back(parked)
        return restored

    def _refuse_if_assigned(self, ctx: RequestContext, policy_ids: list[str], cascade: bool) -> None:
        if cascade:
            return
        counts = self.assignments.count_for_policy(ctx.domain_id, policy_ids)
        if counts:
            listed = ", ".join(f"{policy_id} ({count})" for policy_id, count in sorted(counts.items()))
            raise FailedPrecondition(f"policies still have assignments: {listed}; remove them or pass cascade",
                                     metadata={"assignments": sum(counts.values())})

    def get(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """With repository_id: only there (a remote repository asks its endpoint). Without:
        managed and local first (one read; they cannot collide, `managed-` ids are reserved);
        an id held there, even by a soft-deleted policy, is never looked up remotely, so a remote
        policy cannot shadow it. Otherwise every remote repository is asked (in parallel): the
        answer is the one that has it; several -> FAILED_PRECONDITION (ambiguous: pass
        repository_id); a remote that cannot answer -> UNAVAILABLE naming it (the answer would
        depend on which remotes happen to be up)."""
        policy_id = validation.policy_id(params.get("policy_id", ""))
        repository_id = validation.optional_identifier(params.get("repository_id"), "repository_id") or None
        self.guard.require(ctx, "repository.Policy.get", f"policy/{policy_id}")
        include_deleted = bool(params.get("include_deleted"))
        if repository_id:
            repository = self.repositories.require_exists(repository_id)
            if repository["repository_type"] == "remote":
                found = self.remote.get(repository["endpoint"], ctx.domain_id, policy_id, include_deleted)
                if found is None:
                    raise NotFound("Policy", "policy_id", policy_id)
                return _from_remote(found, repository)
            return self.policies.get(ctx.domain_id, policy_id, repository_id, include_deleted)
        try:
            found = self.policies.get(ctx.domain_id, policy_id, None, include_deleted=True)
        except NotFound:
            # A call from another installation (remote hop) is answered from here only: no loops.
            if params.get("local_only") or policy_id.startswith(MANAGED_ID_PREFIX):
                raise
            return self._get_from_remotes(ctx, policy_id, include_deleted)
        if found.get("state") == DELETED and not include_deleted:
            raise NotFound("Policy", "policy_id", policy_id)
        return found

    def _get_from_remotes(self, ctx: RequestContext, policy_id: str, include_deleted: bool) -> dict[str, Any]:
        remotes = self.repositories.remote_repositories()
        if not remotes:
            raise NotFound("Policy", "policy_id", policy_id)
        outcomes = self.remote.get_each([r["endpoint"] for r in remotes], ctx.domain_id, policy_id, include_deleted)
        found = [(repository, outcome) for repository, outcome in zip(remotes, outcomes) if isinstance(outcome, dict)]
        if len(found) > 1:
            holders = ", ".join(repository["repository_id"] for repository, _ in found)
            raise FailedPrecondition(f"policy {policy_id} exists in several remote repositories ({holders}); "
                                     f"pass repository_id to choose one",
                                     metadata={"policy_id": policy_id, "repository_ids": holders})
        failures = [outcome for outcome in outcomes if isinstance(outcome, PolicyHubError)]
        if failures:
            raise failures[0]
        if found:
            return _from_remote(found[0][1], found[0][0])
        raise NotFound("Policy", "policy_id", policy_id)

    def _remote_repository(self, repository_id: str | None) -> dict[str, Any] | None:
        """The repository when repository_id names a remote one, else None (an unknown id keeps
        filtering local policies, matching nothing)."""
        if not repository_id or repository_id in BUILT_IN:
            return None
        try:
            repository = self.repositories.require_exists(repository_id)
        except NotFound:
            return None
        return repository if repository["repository_type"] == "remote" else None

    def list(self, ctx: RequestContext, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
        """Without repository_id: local and managed policies (one round trip); remote policies
        are listed per repository, by the remote (the query passes through, validated here)."""
        for key in ("policy_id", "project_id", "repository_id"):
            validation.optional_identifier(params.get(key), key)
        validation.name(params.get("name") or "")
        self.guard.require(ctx, "repository.Policy.list", "policy")
        repository = self._remote_repository(params.get("repository_id"))
        if repository:
            query = self.policies.remote_query(params.get("query"))
            records, total = self.remote.list(repository["endpoint"], ctx.domain_id, {**params, "query": query})
            return [_from_remote(record, repository) for record in records], total
        query = narrowed(params.get("query"), {key: params.get(key) for key in LIST_SHORTCUTS})
        include_deleted = bool(params.get("include_deleted")) or params.get("state") == "DELETED"
        return self.policies.list(ctx.domain_id, query, include_managed=not params.get("exclude_managed"),
                                  include_deleted=include_deleted)

    def stat(self, ctx: RequestContext, params: dict[str, Any]) -> tuple[list, int | None]:
        repository_id = validation.optional_identifier(params.get("repository_id"), "repository_id")
        self.guard.require(ctx, "repository.Policy.stat", "policy")
        query = params.get("query")
        if not query:
            raise RequiredParameter("query")
        repository = self._remote_repository(repository_id)
        if repository:
            return self.remote.stat(repository["endpoint"], ctx.domain_id, self.policies.remote_query(query, stat=True))
        if repository_id:
            query = narrowed(query, {"repository_id": repository_id})
        return self.policies.stat(ctx.domain_id, query)

    def _refuse_managed_id(self, policy_id: str, verb: str) -> None:
        if policy_id.startswith(MANAGED_ID_PREFIX):
            raise ManagedReadOnly(f"policy ids starting with {MANAGED_ID_PREFIX!r} belong to managed (built-in) "
                                  f"policies, which cannot be {verb} by tenants ({policy_id})",
                                  metadata={"policy_id": policy_id})

    def _content(self, params: dict[str, Any], partial: bool) -> dict[str, Any]:
        """The optional content fields; with partial, only those the request sets."""
        content: dict[str, Any] = {}
        if not partial or params.get("description"):
            content["description"] = validation.description(params.get("description", ""))
        if not partial or params.get("permissions"):
            content["permissions"] = validation.permissions(params.get("permissions") or [])
        if not partial or params.get("statements"):
            content["statements"] = validation.statements(params.get("statements") or [])
        if not partial or params.get("labels") is not None:
            content["labels"] = validation.labels(params.get("labels") or [])
        if not partial or params.get("tags") is not None:
            content["tags"] = validation.json_object(params.get("tags") or {}, "tags")
        return content

    def _masked_changes(self, params: dict[str, Any], mask: list[str]) -> dict[str, Any]:
        if not mask:
            raise InvalidArgument("update_mask", "must name at least one path")
        unknown = [path for path in mask if path not in UPDATABLE_FIELDS]
        if unknown:
            raise InvalidArgument("update_mask", f"unknown paths {unknown}; allowed: {list(UPDATABLE_FIELDS)}")
        full = {"name": validation.name(params.get("name", "")),
                **self._content(params, partial=False)}
        if "name" in mask and not full["name"]:
            raise InvalidArgument("name", "cannot be cleared")
        return {path: full[path] for path in mask}


def _labelled(record: dict[str, Any]) -> list[tuple[str, Statement]]:
    """A policy's effective statements (statements, then one allow on `*` per permission), named."""
    labelled = [(f"statements[{index}]", Statement(s["effect"], tuple(s["actions"]), tuple(s["resources"])))
                for index, s in enumerate(record.get("statements") or [])]
    labelled += [(f"permissions[{index}]", Statement("ALLOW", (permission,), ("*",)))
                 for index, permission in enumerate(record.get("permissions") or [])]
    return labelled


def _allows(record: dict[str, Any]) -> Labelled:
    return [(label, s) for label, s in _labelled(record) if s.effect == "ALLOW"]


def _denies(record: dict[str, Any]) -> Labelled:
    return [(label, s) for label, s in _labelled(record) if s.effect == "DENY"]


def _removed_denies(before: dict[str, Any], after: dict[str, Any]) -> Labelled:
    kept = {s for _, s in _denies(after)}
    return [(label, s) for label, s in _denies(before) if s not in kept]


def _etag(params: dict[str, Any]) -> str | None:
    return validation.optional_identifier(params.get("etag"), "etag") or None


def _within_size(record: dict[str, Any]) -> None:
    stored = {key: value for key, value in record.items() if key not in _NOT_STORED}
    validation.record_size(stored, validation.POLICY_MAX_BYTES, WRITTEN_FIELDS, "policy")


def _from_remote(record: dict[str, Any], repository: dict[str, Any]) -> dict[str, Any]:
    """A remote policy as we serve it: read-only, in the remote repository."""
    return {**record, "repository_id": repository["repository_id"], "repository_info": repository}
