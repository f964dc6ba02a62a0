"""Repositories: the built-in managed and local ones, and remote ones (another installation's
Policy API, read-only, served through policyhub.remote)."""
from __future__ import annotations

import secrets
from typing import Any

from policyhub.errors import AlreadyExists, FailedPrecondition, InvalidArgument, ManagedReadOnly, RequiredParameter
from policyhub.manager.repository_manager import RepositoryManager
from policyhub.remote.client import RemotePolicyClient, parse_endpoint
from policyhub.service import validation
from policyhub.service.audit_service import AuditService
from policyhub.service.context import Clock, RequestContext
from policyhub.service.guard import Guard
from policyhub.service.shortcuts import narrowed

MANAGED_REPOSITORY_ID = "repo-managed"
LOCAL_REPOSITORY_ID = "repo-local"
REPOSITORY_TYPES = ("local", "managed", "remote")
BUILT_IN = {
    MANAGED_REPOSITORY_ID: {"name": "Managed Repository", "repository_type": "managed"},
    LOCAL_REPOSITORY_ID: {"name": "Local Repository", "repository_type": "local"},
}


class RepositoryService:
    def __init__(self, repositories: RepositoryManager, guard: Guard, audit: AuditService, clock: Clock,
                 remote: RemotePolicyClient):
        self.repositories = repositories
        self.guard = guard
        self.audit = audit
        self.clock = clock
        self.remote = remote

    def ensure_built_in(self) -> None:
        """The managed and the local repository exist from first start (SpaceONE answers
        INTERNAL until someone registers one)."""
        for repository_id, fields in BUILT_IN.items():
            self.repositories.ensure({"repository_id": repository_id, "endpoint": "",
                                      "created_at": self.clock(), **fields})

    def local_repository_id(self) -> str:
        return LOCAL_REPOSITORY_ID

    def require_exists(self, repository_id: str) -> dict[str, Any]:
        """For other services (already authorized for their own call): the repository, NOT_FOUND
        when missing."""
        return self.repositories.get(repository_id)

    def remote_repositories(self) -> list[dict[str, Any]]:
        """For other services: every remote repository, oldest first."""
        return self.repositories.of_type("remote")

    def register(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        # Every field is checked before anything else happens (the endpoint is dialled last).
        name = validation.name(params.get("name", ""), required=True)
        repository_type = params.get("repository_type", "")
        if not repository_type:
            raise RequiredParameter("repository_type")
        if repository_type not in REPOSITORY_TYPES:
            raise InvalidArgument("repository_type", f"must be one of {list(REPOSITORY_TYPES)}")
        endpoint = parse_endpoint(params.get("endpoint", "")).url if repository_type == "remote" else ""
        self.guard.require(ctx, "repository.Repository.register", "repository")
        if repository_type in ("local", "managed"):
            raise FailedPrecondition(f"the {repository_type} repository is built in and already exists "
                                     f"({LOCAL_REPOSITORY_ID if repository_type == 'local' else MANAGED_REPOSITORY_ID})")
        clash = self.repositories.conflict(name, endpoint)
        if clash:
            raise AlreadyExists("Repository", *clash)
        # Reachable and speaking the Policy API, within the deadline; UNAVAILABLE (naming the
        # endpoint) otherwise, and nothing is stored.
        self.remote.probe(endpoint, ctx.domain_id)
        created = self.repositories.create({"repository_id": f"repo-{secrets.token_hex(6)}", "name": name,
                                            "repository_type": "remote", "endpoint": endpoint,
                                            "created_at": self.clock()})
        self.audit.record(ctx, "repository.Repository.register", "Repository", created["repository_id"], None,
                          created)
        return created

    def update(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        repository_id = validation.identifier(params.get("repository_id", ""), "repository_id")
        name = validation.name(params.get("name", ""), required=True)
        self.guard.require(ctx, "repository.Repository.update", "repository")
        before = self.repositories.get(repository_id)
        if repository_id == MANAGED_REPOSITORY_ID:
            raise ManagedReadOnly("the managed repository cannot be changed")
        renamed = self.repositories.rename(repository_id, name)
        self.audit.record(ctx, "repository.Repository.update", "Repository", repository_id, before, renamed)
        return renamed

    def deregister(self, ctx: RequestContext, params: dict[str, Any]) -> None:
        repository_id = validation.identifier(params.get("repository_id", ""), "repository_id")
        self.guard.require(ctx, "repository.Repository.deregister", "repository")
        repository = self.repositories.get(repository_id)
        if repository_id in BUILT_IN:
            raise FailedPrecondition(f"the {repository['repository_type']} repository is built in and cannot be "
                                     f"deregistered ({repository_id})")
        self.repositories.delete(repository_id)
        if repository.get("endpoint"):
            self.remote.forget(repository["endpoint"])
        self.audit.record(ctx, "repository.Repository.deregister", "Repository", repository_id, repository, None)

    def get(self, ctx: RequestContext, repository_id: str) -> dict[str, Any]:
        repository_id = validation.identifier(repository_id, "repository_id")
        self.guard.require(ctx, "repository.Repository.get", "repository")
        return self.repositories.get(repository_id)

    def list(self, ctx: RequestContext, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
        validation.optional_identifier(params.get("repository_id"), "repository_id")
        validation.optional_identifier(params.get("repository_type"), "repository_type")
        validation.name(params.get("name") or "")
        self.guard.require(ctx, "repository.Repository.list", "repository")
        fields = {key: params.get(key) for key in ("repository_id", "name", "repository_type")}
        return self.repositories.list(narrowed(params.get("query"), fields))

    def stat(self, ctx: RequestContext, params: dict[str, Any]) -> tuple[list, int | None]:
        self.guard.require(ctx, "repository.Repository.stat", "repository")
        query = params.get("query")
        if not query:
            raise RequiredParameter("query")
        return self.repositories.stat(query)

