"""The service authorizes its own API with its own evaluation engine.

Every RPC names a permission (`repository.Policy.create`, ...) and a resource
(`policy/<policy_id>` for one policy; `policy/<id>`, `role/<id>` or `group/<id>` for each grant
of an assignment write; otherwise the resource kind: `policy`, `assignment`, `audit`,
`repository`, `api_key`). SYSTEM callers may do everything, DOMAIN_ADMIN callers
everything within their own domain, and other callers what their assignments allow
(e.g. the managed policy `managed-policy-admin`). Some permissions are for SYSTEM callers only.
"""
from __future__ import annotations

from policyhub.engine import Subject
from policyhub.errors import PermissionDenied
from policyhub.service.index_cache import IndexCache
from policyhub.service.context import RequestContext

SYSTEM_ONLY = frozenset({
    "repository.Repository.register", "repository.Repository.update", "repository.Repository.deregister",
    "repository.ApiKey.create", "repository.ApiKey.revoke", "repository.ApiKey.list",
})


class Guard:
    def __init__(self, indexes: IndexCache):
        self.indexes = indexes

    def require(self, ctx: RequestContext, permission: str, resource: str) -> None:
        if ctx.role_type == "SYSTEM":
            return
        if permission in SYSTEM_ONLY:
            raise PermissionDenied(f"{permission} is for system callers only")
        if ctx.role_type == "DOMAIN_ADMIN":
            return
        decision = self.indexes.get(ctx.domain_id).check(Subject(ctx.caller_type, ctx.caller_id), permission, resource)
        if not decision.allowed:
            raise PermissionDenied(f"{ctx.caller_type} {ctx.caller_id} may not {permission} on {resource}",
                                   metadata={"permission": permission, "resource": resource})
