"""spaceone.api.repository.v1.Audit servicer."""
from __future__ import annotations

from typing import Any

from policyhub._gen.spaceone.api.repository.v1 import audit_pb2 as pb
from policyhub._gen.spaceone.api.repository.v1 import audit_pb2_grpc
from policyhub.api.context import CallerResolver
from policyhub.api.convert import fitted, iso, optional_message, stat_struct, to_struct
from policyhub.service.audit_service import AuditService


class AuditAPI(audit_pb2_grpc.AuditServicer):
    def __init__(self, service: AuditService, caller: CallerResolver, max_message_bytes: int):
        self.service = service
        self.caller = caller
        self.max_message_bytes = max_message_bytes

    def list(self, request, context):
        params = {"query": optional_message(request, "query"), "resource_type": request.resource_type,
                  "resource_id": request.resource_id, "transaction_id": request.transaction_id}
        results, total = self.service.list(self.caller(request, context), params)
        return pb.AuditsInfo(results=fitted([audit_info(r) for r in results], self.max_message_bytes),
                             total_count=total)

    def stat(self, request, context):
        results, total = self.service.stat(self.caller(request, context),
                                           {"query": optional_message(request, "query")})
        return stat_struct(results, total)


def audit_info(record: dict[str, Any]) -> pb.AuditInfo:
    fields: dict[str, Any] = {key: record.get(key, "") for key in (
        "audit_id", "transaction_id", "caller_type", "caller_id", "method", "resource_type", "resource_id",
        "domain_id")}
    fields["created_at"] = iso(record.get("created_at"))
    for key in ("before", "after"):
        if record.get(key) is not None:
            fields[key] = to_struct(record[key])
    return pb.AuditInfo(**fields)
