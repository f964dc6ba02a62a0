"""spaceone.api.repository.v1.Repository servicer."""

from __future__ import annotations

from google.protobuf import empty_pb2

from policyhub._gen.spaceone.api.repository.v1 import repository_pb2, repository_pb2_grpc
from policyhub.api.context import CallerResolver
from policyhub.api.info.common import optional_message, to_stat_struct
from policyhub.api.info.repository import to_repository_info
from policyhub.api.paging import fitted
from policyhub.service.repository_service import RepositoryService


class RepositoryAPI(repository_pb2_grpc.RepositoryServicer):
    """Repositories are installation-wide: a request's domain_id does not narrow them. It is still
    validated, and it decides, as for every call, whose rate limit the call counts against."""

    def __init__(self, service: RepositoryService, caller: CallerResolver, max_message_bytes: int):
        self.service = service
        self.caller = caller
        self.max_message_bytes = max_message_bytes

    def _context(self, request, context, public_read: bool = False):
        # Repositories are installation-wide: a domain is optional here.
        return self.caller(request, context, domain_required=False, public_read=public_read)

    def register(self, request, context):
        return to_repository_info(
            self.service.register(
                self._context(request, context),
                {"name": request.name, "repository_type": request.repository_type, "endpoint": request.endpoint},
            )
        )

    def update(self, request, context):
        return to_repository_info(
            self.service.update(
                self._context(request, context), {"repository_id": request.repository_id, "name": request.name}
            )
        )

    def deregister(self, request, context):
        self.service.deregister(self._context(request, context), {"repository_id": request.repository_id})
        return empty_pb2.Empty()

    def get(self, request, context):
        return to_repository_info(
            self.service.get(self._context(request, context, public_read=True), request.repository_id),
            only=list(request.only),
        )

    def list(self, request, context):
        results, total = self.service.list(
            self._context(request, context, public_read=True),
            {
                "query": optional_message(request, "query"),
                "repository_id": request.repository_id,
                "name": request.name,
                "repository_type": request.repository_type,
            },
        )
        return repository_pb2.RepositoriesInfo(
            results=fitted([to_repository_info(r) for r in results], self.max_message_bytes), total_count=total
        )

    def stat(self, request, context):
        results, total = self.service.stat(
            self._context(request, context), {"query": optional_message(request, "query")}
        )
        return to_stat_struct(results, total)
