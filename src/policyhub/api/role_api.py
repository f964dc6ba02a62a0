"""spaceone.api.repository.v1.Role servicer."""

from __future__ import annotations

from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2, role_pb2, role_pb2_grpc
from policyhub.api.consistency import empty_with_token
from policyhub.api.context import CallerResolver
from policyhub.api.info.assignment import to_assignment_changes_info
from policyhub.api.info.common import list_values, optional_message, struct_dict, to_stat_struct
from policyhub.api.info.subject_set import to_member_info, to_role_info
from policyhub.api.paging import fitted
from policyhub.service.role_service import RoleService


class RoleAPI(role_pb2_grpc.RoleServicer):
    def __init__(self, roles: RoleService, caller: CallerResolver, max_message_bytes: int):
        self.roles = roles
        self.caller = caller
        self.max_message_bytes = max_message_bytes

    def create(self, request, context):
        params = {
            "role_id": request.role_id,
            "name": request.name,
            "description": request.description,
            "labels": list_values(request.labels, "labels"),
            "tags": struct_dict(request.tags, "tags"),
        }
        return to_role_info(self.roles.create(self.caller(request, context), params))

    def update(self, request, context):
        params = {
            "role_id": request.role_id,
            "new_role_id": request.new_role_id,
            "name": request.name,
            "description": request.description,
            "labels": list_values(request.labels, "labels"),
            "tags": struct_dict(request.tags, "tags"),
        }
        return to_role_info(self.roles.update(self.caller(request, context), params))

    def delete(self, request, context):
        token = self.roles.delete(
            self.caller(request, context), {"role_id": request.role_id, "cascade": request.cascade}
        )
        return empty_with_token(context, token)

    def get(self, request, context):
        return to_role_info(self.roles.get(self.caller(request, context), {"role_id": request.role_id}))

    def list(self, request, context):
        params = {"query": optional_message(request, "query"), "role_id": request.role_id}
        results, total = self.roles.list(self.caller(request, context), params)
        return role_pb2.RolesInfo(
            results=fitted([to_role_info(r) for r in results], self.max_message_bytes), total_count=total
        )

    def stat(self, request, context):
        results, total = self.roles.stat(self.caller(request, context), {"query": optional_message(request, "query")})
        return to_stat_struct(results, total)

    def bind_users(self, request, context):
        params = {"role_id": request.role_id, "user_ids": list(request.user_ids)}
        return to_assignment_changes_info(self.roles.bind_users(self.caller(request, context), params))

    def unbind_users(self, request, context):
        params = {"role_id": request.role_id, "user_ids": list(request.user_ids)}
        return to_assignment_changes_info(self.roles.unbind_users(self.caller(request, context), params))

    def list_users(self, request, context):
        params = {
            "role_id": request.role_id,
            "include_nested": request.include_nested,
            "page": optional_message(request, "page"),
        }
        members, total = self.roles.list_users(self.caller(request, context), params)
        return assignment_pb2.MembersInfo(
            results=fitted([to_member_info(m) for m in members], self.max_message_bytes), total_count=total
        )
