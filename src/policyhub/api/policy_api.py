"""spaceone.api.repository.v1.Policy servicer."""

from __future__ import annotations

from typing import Any

from policyhub._gen.spaceone.api.repository.v1 import policy_pb2, policy_pb2_grpc
from policyhub.api.consistency import empty_with_token
from policyhub.api.context import CallerResolver, from_remote_installation
from policyhub.api.info.common import list_values, optional_message, struct_dict, to_stat_struct
from policyhub.api.info.policy import requested_statement, to_delete_policies_info, to_policy_info
from policyhub.api.paging import fitted
from policyhub.domain import PolicyState
from policyhub.service.policy_lifecycle import PolicyLifecycleService
from policyhub.service.policy_service import PolicyService

STATE_NAMES = {
    policy_pb2.PolicyQuery.ENABLED: "ENABLED",
    policy_pb2.PolicyQuery.DISABLED: "DISABLED",
    policy_pb2.PolicyQuery.DELETED: "DELETED",
}


class PolicyAPI(policy_pb2_grpc.PolicyServicer):
    def __init__(
        self, service: PolicyService, lifecycle: PolicyLifecycleService, caller: CallerResolver, max_message_bytes: int
    ):
        self.service = service
        self.lifecycle = lifecycle
        self.caller = caller
        self.max_message_bytes = max_message_bytes

    def create(self, request, context):
        params = {
            "policy_id": request.policy_id,
            "name": request.name,
            "description": request.description,
            "permissions": list(request.permissions),
            "statements": [requested_statement(s, f"statements[{i}]") for i, s in enumerate(request.statements)],
            "labels": list_values(request.labels, "labels"),
            "tags": struct_dict(request.tags, "tags"),
            "project_id": request.project_id,
        }
        return to_policy_info(self.service.create(self.caller(request, context), params))

    def update(self, request, context):
        params: dict[str, Any] = {
            "policy_id": request.policy_id,
            "name": request.name,
            "description": request.description,
            "permissions": list(request.permissions),
            "statements": [requested_statement(s, f"statements[{i}]") for i, s in enumerate(request.statements)],
            "labels": list_values(request.labels, "labels") if request.HasField("labels") else None,
            "tags": struct_dict(request.tags, "tags") if request.HasField("tags") else None,
            "etag": request.etag,
            "new_policy_id": request.new_policy_id,
        }
        if request.HasField("update_mask"):
            params["update_mask"] = list(request.update_mask.paths)
        return to_policy_info(self.service.update(self.caller(request, context), params))

    def delete(self, request, context):
        token = self.lifecycle.delete(self.caller(request, context), _policy_request(request))
        return empty_with_token(context, token)

    def restore(self, request, context):
        return to_policy_info(self.lifecycle.restore(self.caller(request, context), _policy_request(request)))

    def enable(self, request, context):
        return to_policy_info(
            self.service.set_state(self.caller(request, context), _policy_request(request), PolicyState.ENABLED)
        )

    def disable(self, request, context):
        return to_policy_info(
            self.service.set_state(self.caller(request, context), _policy_request(request), PolicyState.DISABLED)
        )

    def delete_many(self, request, context):
        return to_delete_policies_info(
            self.lifecycle.delete_many(
                self.caller(request, context), {"policy_ids": list(request.policy_ids), "cascade": request.cascade}
            )
        )

    def get(self, request, context):
        record = self.service.get(
            self.caller(request, context, public_read=True),
            {
                "policy_id": request.policy_id,
                "repository_id": request.repository_id,
                "include_deleted": request.include_deleted,
                "local_only": from_remote_installation(context),
            },
        )
        return to_policy_info(record, only=list(request.only))

    def list(self, request, context):
        params = {
            "query": optional_message(request, "query"),
            "policy_id": request.policy_id,
            "name": request.name,
            "project_id": request.project_id,
            "repository_id": request.repository_id,
            "state": STATE_NAMES.get(request.state),
            "exclude_managed": request.exclude_managed,
            "include_deleted": request.include_deleted,
        }
        results, total = self.service.list(self.caller(request, context, public_read=True), params)
        return policy_pb2.PoliciesInfo(
            results=fitted([to_policy_info(r) for r in results], self.max_message_bytes), total_count=total
        )

    def stat(self, request, context):
        params = {"query": optional_message(request, "query"), "repository_id": request.repository_id}
        results, total = self.service.stat(self.caller(request, context), params)
        return to_stat_struct(results, total)


def _policy_request(request) -> dict[str, Any]:
    return {"policy_id": request.policy_id, "etag": request.etag, "cascade": request.cascade}
