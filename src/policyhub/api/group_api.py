"""spaceone.api.repository.v1.Group servicer."""

from __future__ import annotations

from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2, group_pb2, group_pb2_grpc
from policyhub.api.consistency import consistency_params, empty_with_token
from policyhub.api.context import CallerResolver
from policyhub.api.info.assignment import to_assignment_changes_info, to_authorized_resources_info
from policyhub.api.info.common import list_values, optional_message, struct_dict, to_stat_struct
from policyhub.api.info.subject_set import to_group_info, to_member_info
from policyhub.api.paging import fitted
from policyhub.service.group_service import GroupService


class GroupAPI(group_pb2_grpc.GroupServicer):
    def __init__(self, groups: GroupService, caller: CallerResolver, max_message_bytes: int):
        self.groups = groups
        self.caller = caller
        self.max_message_bytes = max_message_bytes

    def create(self, request, context):
        params = {
            "group_id": request.group_id,
            "name": request.name,
            "description": request.description,
            "labels": list_values(request.labels, "labels"),
            "tags": struct_dict(request.tags, "tags"),
        }
        return to_group_info(self.groups.create(self.caller(request, context), params))

    def update(self, request, context):
        params = {
            "group_id": request.group_id,
            "new_group_id": request.new_group_id,
            "name": request.name,
            "description": request.description,
            "labels": list_values(request.labels, "labels"),
            "tags": struct_dict(request.tags, "tags"),
        }
        return to_group_info(self.groups.update(self.caller(request, context), params))

    def delete(self, request, context):
        token = self.groups.delete(
            self.caller(request, context), {"group_id": request.group_id, "cascade": request.cascade}
        )
        return empty_with_token(context, token)

    def delete_many(self, request, context):
        params = {"group_ids": list(request.group_ids), "cascade": request.cascade}
        outcome = self.groups.delete_many(self.caller(request, context), params)
        return group_pb2.DeleteGroupsInfo(
            results=[group_pb2.GroupOutcome(**result) for result in outcome["results"]],
            deleted_count=outcome["deleted_count"],
            consistency_token=outcome["consistency_token"],
        )

    def get(self, request, context):
        return to_group_info(self.groups.get(self.caller(request, context), {"group_id": request.group_id}))

    def list(self, request, context):
        params = {"query": optional_message(request, "query"), "group_id": request.group_id}
        results, total = self.groups.list(self.caller(request, context), params)
        return group_pb2.GroupsInfo(
            results=fitted([to_group_info(r) for r in results], self.max_message_bytes), total_count=total
        )

    def stat(self, request, context):
        results, total = self.groups.stat(self.caller(request, context), {"query": optional_message(request, "query")})
        return to_stat_struct(results, total)

    def add_users(self, request, context):
        params = {"group_id": request.group_id, "user_ids": list(request.user_ids)}
        return to_assignment_changes_info(self.groups.add_users(self.caller(request, context), params))

    def remove_users(self, request, context):
        params = {"group_id": request.group_id, "user_ids": list(request.user_ids)}
        return to_assignment_changes_info(self.groups.remove_users(self.caller(request, context), params))

    def list_users(self, request, context):
        params = {
            "group_id": request.group_id,
            "include_nested": request.include_nested,
            "page": optional_message(request, "page"),
        }
        members, total = self.groups.list_users(self.caller(request, context), params)
        return assignment_pb2.MembersInfo(
            results=fitted([to_member_info(m) for m in members], self.max_message_bytes), total_count=total
        )

    def list_authorized_resources(self, request, context):
        params = {
            "group_id": request.group_id,
            "resource_prefix": request.resource_prefix,
            "action": request.action,
            "page": optional_message(request, "page"),
            "context": optional_message(request, "context"),
            "consistency": consistency_params(request),
        }
        listing = self.groups.list_authorized_resources(self.caller(request, context), params)
        return to_authorized_resources_info(listing, self.max_message_bytes)
