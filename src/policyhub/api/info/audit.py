"""Audit records -> spaceone.api.repository.v1 AuditInfo (audit entries are only ever read out)."""

from __future__ import annotations

from typing import Any

from policyhub._gen.spaceone.api.repository.v1 import audit_pb2 as pb
from policyhub.api.info.common import to_iso, to_struct


def to_audit_info(record: dict[str, Any]) -> pb.AuditInfo:
    fields: dict[str, Any] = {
        key: record.get(key, "")
        for key in (
            "audit_id",
            "transaction_id",
            "caller_type",
            "caller_id",
            "method",
            "resource_type",
            "resource_id",
            "domain_id",
        )
    }
    fields["created_at"] = to_iso(record.get("created_at"))
    for key in ("before", "after"):
        if record.get(key) is not None:
            fields[key] = to_struct(record[key])
    return pb.AuditInfo(**fields)
