"""spaceone.api.repository.v1.ApiKey servicer."""

from __future__ import annotations

from policyhub._gen.spaceone.api.repository.v1 import api_key_pb2 as pb
from policyhub._gen.spaceone.api.repository.v1 import api_key_pb2_grpc
from policyhub.api.context import CallerResolver
from policyhub.api.info.api_key import to_api_key_info
from policyhub.api.info.common import optional_message
from policyhub.api.paging import fitted
from policyhub.service.api_key_service import ApiKeyService


class ApiKeyAPI(api_key_pb2_grpc.ApiKeyServicer):
    def __init__(self, service: ApiKeyService, caller: CallerResolver, max_message_bytes: int):
        self.service = service
        self.caller = caller
        self.max_message_bytes = max_message_bytes

    def create(self, request, context):
        return to_api_key_info(
            self.service.create(
                self.caller(request, context), {"service_account_id": request.service_account_id, "name": request.name}
            )
        )

    def revoke(self, request, context):
        return to_api_key_info(self.service.revoke(self.caller(request, context), {"api_key_id": request.api_key_id}))

    def list(self, request, context):
        results, total = self.service.list(self.caller(request, context), {"query": optional_message(request, "query")})
        return pb.ApiKeysInfo(
            results=fitted([to_api_key_info(r) for r in results], self.max_message_bytes), total_count=total
        )
