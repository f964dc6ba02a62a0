"""The audit trail: every mutation records who, when, what (before/after) and the transaction id,
in the database (queryable with list/stat) and as a structured log line."""
from __future__ import annotations

import logging
import secrets
from typing import Any

from policyhub.errors import RequiredParameter
from policyhub.manager.audit_manager import AuditManager
from policyhub.service import validation
from policyhub.service.context import Clock, RequestContext
from policyhub.service.guard import Guard
from policyhub.service.shortcuts import narrowed

log = logging.getLogger("policyhub.audit")
# Bookkeeping that says nothing about the change itself.
_OMITTED = ("parked_assignments", "repository_info")
SNAPSHOT_MAX_BYTES = 16 * 1024
FIELD_MAX_BYTES = 1024


class AuditService:
    def __init__(self, audits: AuditManager, guard: Guard, clock: Clock):
        self.audits = audits
        self.guard = guard
        self.clock = clock

    def record(self, ctx: RequestContext, method: str, resource_type: str, resource_id: str,
               before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
        self.record_many(ctx, method, resource_type, [(resource_id, before, after)])

    def record_many(self, ctx: RequestContext, method: str, resource_type: str,
                    changes: list[tuple[str, dict[str, Any] | None, dict[str, Any] | None]]) -> None:
        """One entry per changed resource, written together (batch calls change thousands)."""
        if not changes:
            return
        now = self.clock()
        entries = [{
            "audit_id": f"audit-{secrets.token_hex(8)}",
            "transaction_id": ctx.transaction_id,
            "caller_type": ctx.caller_type,
            "caller_id": ctx.caller_id,
            "method": method,
            "resource_type": resource_type,
            "resource_id": resource_id,
            "before": _snapshot(before),
            "after": _snapshot(after),
            "domain_id": ctx.domain_id,
            "created_at": now,
        } for resource_id, before, after in changes]
        self.audits.add_many(entries)
        log.info("%s %s x%d", method, resource_type, len(entries), extra={"audit": {
            "transaction_id": ctx.transaction_id, "domain_id": ctx.domain_id, "caller_type": ctx.caller_type,
            "caller_id": ctx.caller_id, "method": method,
            "resources": [entry["resource_id"] for entry in entries[:100]]}})

    def list(self, ctx: RequestContext, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
        fields = {key: validation.optional_identifier(params.get(key), key)
                  for key in ("resource_type", "resource_id", "transaction_id")}
        self.guard.require(ctx, "repository.Audit.list", "audit")
        return self.audits.list(ctx.domain_id, narrowed(params.get("query"), fields))

    def stat(self, ctx: RequestContext, params: dict[str, Any]) -> tuple[list, int | None]:
        self.guard.require(ctx, "repository.Audit.stat", "audit")
        query = params.get("query")
        if not query:
            raise RequiredParameter("query")
        return self.audits.stat(ctx.domain_id, query)


def _snapshot(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """The record as the entry keeps it. Entries stay small whatever they record, so a page of
    them always fits a reply: above SNAPSHOT_MAX_BYTES, every field above FIELD_MAX_BYTES is
    replaced by {"truncated_bytes": <its size>}."""
    if record is None:
        return None
    kept = {key: value for key, value in record.items() if key not in _OMITTED}
    size = validation.encoded_size(kept)
    if size <= SNAPSHOT_MAX_BYTES:
        return kept
    summary = {}
    for key, value in kept.items():
        field_size = validation.encoded_size(value)
        summary[key] = value if field_size <= FIELD_MAX_BYTES else {"truncated_bytes": field_size}
    if validation.encoded_size(summary) > SNAPSHOT_MAX_BYTES:
        return {"truncated_bytes": size}
    return summary
