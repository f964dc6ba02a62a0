"""Reading the audit trail (list, stat); policyhub.manager.audit_trail writes it."""

from __future__ import annotations

from typing import Any

from policyhub.errors import RequiredParameter
from policyhub.manager.audit_manager import AuditManager
from policyhub.service import validation
from policyhub.service.context import RequestContext
from policyhub.service.guard import Guard
from policyhub.service.permissions import AUDIT_LIST, AUDIT_STAT
from policyhub.service.shortcuts import narrowed


class AuditService:
    def __init__(self, audits: AuditManager, guard: Guard):
        self.audits = audits
        self.guard = guard

    def list(self, ctx: RequestContext, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
        fields = {
            key: validation.optional_identifier(params.get(key), key)
            for key in ("resource_type", "resource_id", "transaction_id")
        }
        self.guard.require(ctx, AUDIT_LIST, "audit")
        return self.audits.list(ctx.domain_id, narrowed(params.get("query"), fields))

    def stat(self, ctx: RequestContext, params: dict[str, Any]) -> tuple[list, int | None]:
        self.guard.require(ctx, AUDIT_STAT, "audit")
        query = params.get("query")
        if not query:
            raise RequiredParameter("query")
        return self.audits.stat(ctx.domain_id, query)
