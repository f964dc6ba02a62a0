"""spaceone.api.repository.v1.Audit servicer."""

from __future__ import annotations

from policyhub._gen.spaceone.api.repository.v1 import audit_pb2 as pb
from policyhub._gen.spaceone.api.repository.v1 import audit_pb2_grpc
from policyhub.api.context import CallerResolver
from policyhub.api.info.audit import to_audit_info
from policyhub.api.info.common import optional_message, to_stat_struct
from policyhub.api.paging import fitted
from policyhub.service.audit_service import AuditService


class AuditAPI(audit_pb2_grpc.AuditServicer):
    def __init__(self, service: AuditService, caller: CallerResolver, max_message_bytes: int):
        self.service = service
        self.caller = caller
        self.max_message_bytes = max_message_bytes

    def list(self, request, context):
        params = {
            "query": optional_message(request, "query"),
            "resource_type": request.resource_type,
            "resource_id": request.resource_id,
            "transaction_id": request.transaction_id,
        }
        results, total = self.service.list(self.caller(request, context), params)
        return pb.AuditsInfo(
            results=fitted([to_audit_info(r) for r in results], self.max_message_bytes), total_count=total
        )

    def stat(self, request, context):
        results, total = self.service.stat(self.caller(request, context), {"query": optional_message(request, "query")})
        return to_stat_struct(results, total)
