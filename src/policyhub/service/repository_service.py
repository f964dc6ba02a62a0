"""Repositories: the built-in managed and local ones, and remote ones (another installation's
Policy API, read-only, served through RemotePolicyManager)."""

from __future__ import annotations

import secrets
from typing import Any

from policyhub.domain import BUILT_IN, LOCAL_REPOSITORY_ID, MANAGED_REPOSITORY_ID, RepositoryType, values
from policyhub.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    ManagedReadOnly,
    NotFound,
    RequiredParameter,
)
from policyhub.manager.audit_trail import AuditTrail
from policyhub.manager.remote_policy_manager import RemotePolicyManager
from policyhub.manager.repository_manager import RepositoryManager
from policyhub.service import validation
from policyhub.service.context import Clock, RequestContext, is_anonymous
from policyhub.service.guard import Guard
from policyhub.service.permissions import (
    REPOSITORY_DEREGISTER,
    REPOSITORY_GET,
    REPOSITORY_LIST,
    REPOSITORY_REGISTER,
    REPOSITORY_STAT,
    REPOSITORY_UPDATE,
)
from policyhub.service.shortcuts import narrowed


class RepositoryService:
    def __init__(
        self,
        repositories: RepositoryManager,
        guard: Guard,
        audit: AuditTrail,
        clock: Clock,
        remote: RemotePolicyManager,
    ):
        self.repositories = repositories
        self.guard = guard
        self.audit = audit
        self.clock = clock
        self.remote = remote

    def ensure_built_in(self) -> None:
        """The managed and the local repository exist from first start (SpaceONE answers
        INTERNAL until someone registers one)."""
        for repository_id, fields in BUILT_IN.items():
            self.repositories.ensure(
                {"repository_id": repository_id, "endpoint": "", "created_at": self.clock(), **fields}
            )

    def register(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        # Every field is checked before anything else happens (the endpoint is dialled last).
        repository_type = params.get("repository_type", "")
        # The local repository is built in: registering it only (re)names it, so a name is optional.
        name = validation.name(params.get("name", ""), required=repository_type != RepositoryType.LOCAL)
        if not repository_type:
            raise RequiredParameter("repository_type")
        if repository_type not in values(RepositoryType):
            raise InvalidArgument(
                "repository_type",
                f"must be one of {list(values(RepositoryType))}",
                spaceone_name="ERROR_INVALID_REPOSITORY_TYPE",
            )
        endpoint = (
            self.remote.parse_endpoint(params.get("endpoint", "")) if repository_type == RepositoryType.REMOTE else ""
        )
        self.guard.require(ctx, REPOSITORY_REGISTER, "repository")
        if repository_type == RepositoryType.LOCAL:
            return self._register_local(ctx, name)
        if repository_type == RepositoryType.MANAGED:
            raise FailedPrecondition(
                f"the managed repository is built in and already exists ({MANAGED_REPOSITORY_ID})",
                spaceone_name="ERROR_MANAGED_REPOSITORY_ALREADY_EXIST",
            )
        clash = self.repositories.conflict(name, endpoint)
        if clash:
            raise AlreadyExists("Repository", *clash)
        # Reachable and naming its local repository, within the deadline; UNAVAILABLE (naming the
        # endpoint) otherwise, and nothing is stored. The remote's id is kept beside ours, not
        # used as ours (SpaceONE does): every policyhub's local repository is `repo-local`, and
        # one installation may be registered under two endpoints.
        remote_repository_id = self.remote.probe(endpoint, ctx.domain_id)
        created = self.repositories.create(
            {
                "repository_id": f"repo-{secrets.token_hex(6)}",
                "name": name,
                "repository_type": RepositoryType.REMOTE,
                "endpoint": endpoint,
                "remote_repository_id": remote_repository_id,
                "created_at": self.clock(),
            }
        )
        self.audit.record(ctx, REPOSITORY_REGISTER, created["repository_id"], None, created)
        return created

    def _register_local(self, ctx: RequestContext, name: str) -> dict[str, Any]:
        """SpaceONE deployments register their local repository at first start: the answer is
        the built-in one, renamed (and audited) only when a new name is given."""
        before = self.repositories.get(LOCAL_REPOSITORY_ID)
        if not name or name == before["name"]:
            return before
        renamed = self.repositories.rename(LOCAL_REPOSITORY_ID, name)
        self.audit.record(ctx, REPOSITORY_REGISTER, LOCAL_REPOSITORY_ID, before, renamed)
        return renamed

    def update(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        repository_id = validation.identifier(params.get("repository_id", ""), "repository_id")
        name = validation.name(params.get("name", ""), required=True)
        self.guard.require(ctx, REPOSITORY_UPDATE, "repository")
        before = self.repositories.get(repository_id)
        if repository_id == MANAGED_REPOSITORY_ID:
            raise ManagedReadOnly(
                "the managed repository cannot be changed", spaceone_name="ERROR_NOT_UPDATE_MANAGED_REPOSITORY"
            )
        renamed = self.repositories.rename(repository_id, name)
        self.audit.record(ctx, REPOSITORY_UPDATE, repository_id, before, renamed)
        return renamed

    def deregister(self, ctx: RequestContext, params: dict[str, Any]) -> None:
        repository_id = validation.identifier(params.get("repository_id", ""), "repository_id")
        self.guard.require(ctx, REPOSITORY_DEREGISTER, "repository")
        repository = self.repositories.get(repository_id)
        if repository_id in BUILT_IN:
            raise FailedPrecondition(
                f"the {repository['repository_type']} repository is built in and cannot be "
                f"deregistered ({repository_id})"
            )
        self.repositories.delete(repository_id)
        if repository.get("endpoint"):
            self.remote.forget(repository["endpoint"])
        self.audit.record(ctx, REPOSITORY_DEREGISTER, repository_id, repository, None)

    def get(self, ctx: RequestContext, repository_id: str) -> dict[str, Any]:
        repository_id = validation.identifier(repository_id, "repository_id")
        self.guard.require(ctx, REPOSITORY_GET, "repository")
        if is_anonymous(ctx) and repository_id not in BUILT_IN:
            # Remote repositories (their endpoints) are this installation's business.
            raise NotFound("Repository", "repository_id", repository_id)
        return self.repositories.get(repository_id)

    def list(self, ctx: RequestContext, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
        validation.optional_identifier(params.get("repository_id"), "repository_id")
        validation.optional_identifier(params.get("repository_type"), "repository_type")
        validation.name(params.get("name") or "")
        self.guard.require(ctx, REPOSITORY_LIST, "repository")
        fields = {key: params.get(key) for key in ("repository_id", "name", "repository_type")}
        query = narrowed(params.get("query"), fields)
        if is_anonymous(ctx):
            query["filter"] = [*(query.get("filter") or []), {"k": "repository_id", "v": list(BUILT_IN), "o": "in"}]
        return self.repositories.list(query)

    def stat(self, ctx: RequestContext, params: dict[str, Any]) -> tuple[list, int | None]:
        self.guard.require(ctx, REPOSITORY_STAT, "repository")
        query = params.get("query")
        if not query:
            raise RequiredParameter("query")
        return self.repositories.stat(query)
