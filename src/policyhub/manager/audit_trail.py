"""Writing the audit trail: every mutation records who, when, what (before/after) and the
transaction id, in the database (read back by AuditService's list/stat) and as a structured
log line."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from typing import Any, Callable, Protocol

import bson

from policyhub.manager.audit_manager import AuditManager

log = logging.getLogger("policyhub.audit")
# Bookkeeping that says nothing about the change itself.
_OMITTED = ("parked_assignments", "repository_info")
SNAPSHOT_MAX_BYTES = 16 * 1024
FIELD_MAX_BYTES = 1024

Change = tuple[str, dict[str, Any] | None, dict[str, Any] | None]


class Actor(Protocol):
    """Who made the change (the services' RequestContext)."""

    @property
    def domain_id(self) -> str: ...

    @property
    def caller_type(self) -> str: ...

    @property
    def caller_id(self) -> str: ...

    @property
    def transaction_id(self) -> str: ...


class Action(Protocol):
    """What was done (the services' Permission): its name is the entry's method."""

    @property
    def name(self) -> str: ...

    @property
    def resource_type(self) -> str: ...


class AuditTrail:
    def __init__(self, audits: AuditManager, clock: Callable[[], datetime]):
        self.audits = audits
        self.clock = clock

    def record(
        self,
        actor: Actor,
        action: Action,
        resource_id: str,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
    ) -> None:
        self.record_many(actor, action, [(resource_id, before, after)])

    def record_many(self, actor: Actor, action: Action, changes: list[Change]) -> None:
        """One entry per changed resource, written together (batch calls change thousands)."""
        if not changes:
            return
        now = self.clock()
        entries = [
            {
                "audit_id": f"audit-{secrets.token_hex(8)}",
                "transaction_id": actor.transaction_id,
                "caller_type": actor.caller_type,
                "caller_id": actor.caller_id,
                "method": action.name,
                "resource_type": action.resource_type,
                "resource_id": resource_id,
                "before": _snapshot(before),
                "after": _snapshot(after),
                "domain_id": actor.domain_id,
                "created_at": now,
            }
            for resource_id, before, after in changes
        ]
        self.audits.add_many(entries)
        log.info(
            "%s %s x%d",
            action.name,
            action.resource_type,
            len(entries),
            extra={
                "audit": {
                    "transaction_id": actor.transaction_id,
                    "domain_id": actor.domain_id,
                    "caller_type": actor.caller_type,
                    "caller_id": actor.caller_id,
                    "method": action.name,
                    "resources": [entry["resource_id"] for entry in entries[:100]],
                }
            },
        )


def _snapshot(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """The record as the entry keeps it. Entries stay small whatever they record, so a page of
    them always fits a reply: above SNAPSHOT_MAX_BYTES, every field above FIELD_MAX_BYTES is
    replaced by {"truncated_bytes": <its size>}."""
    if record is None:
        return None
    kept = {key: value for key, value in record.items() if key not in _OMITTED}
    size = _encoded_size(kept)
    if size <= SNAPSHOT_MAX_BYTES:
        return kept
    summary = {}
    for key, value in kept.items():
        field_size = _encoded_size(value)
        summary[key] = value if field_size <= FIELD_MAX_BYTES else {"truncated_bytes": field_size}
    if _encoded_size(summary) > SNAPSHOT_MAX_BYTES:
        return {"truncated_bytes": size}
    return summary


def _encoded_size(value: Any) -> int:
    """Bytes the value takes as a BSON field (as policyhub.service.validation measures it)."""
    return len(bson.encode({"": value}))
