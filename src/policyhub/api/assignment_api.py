"""spaceone.api.repository.v1.Assignment servicer."""

from __future__ import annotations

from typing import Any

from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2 as pb
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2_grpc
from policyhub.api.consistency import consistency_params, empty_with_token
from policyhub.api.context import CallerResolver
from policyhub.api.info.assignment import (
    to_assignment_changes_info,
    to_assignment_info,
    to_authorized_resources_info,
    to_check_result,
    to_decision_entry,
    to_effective_statement,
    to_holder_entry,
)
from policyhub.api.info.common import (
    enum_name,
    list_values,
    message_dict,
    optional_message,
    struct_dict,
    to_stat_struct,
)
from policyhub.api.paging import fitted
from policyhub.service.assignment_service import AssignmentService
from policyhub.service.authorization_service import AuthorizationService


class AssignmentAPI(assignment_pb2_grpc.AssignmentServicer):
    def __init__(
        self,
        assignments: AssignmentService,
        authorization: AuthorizationService,
        caller: CallerResolver,
        max_message_bytes: int,
    ):
        self.assignments = assignments
        self.authorization = authorization
        self.caller = caller
        self.max_message_bytes = max_message_bytes

    def create(self, request, context):
        params = {
            "subject": _subject_dict(request, "subject"),
            "grant": _grant_dict(request, "grant"),
            "expires_at": request.expires_at,
            "labels": list_values(request.labels, "labels"),
            "tags": struct_dict(request.tags, "tags"),
        }
        return to_assignment_info(self.assignments.create(self.caller(request, context), params))

    def add(self, request, context):
        return to_assignment_changes_info(self.assignments.add(self.caller(request, context), _batch_params(request)))

    def remove(self, request, context):
        return to_assignment_changes_info(
            self.assignments.remove(self.caller(request, context), _batch_params(request))
        )

    def delete(self, request, context):
        token = self.assignments.delete(self.caller(request, context), {"assignment_id": request.assignment_id})
        return empty_with_token(context, token)

    def get(self, request, context):
        record = self.assignments.get(self.caller(request, context), {"assignment_id": request.assignment_id})
        return to_assignment_info(record, only=list(request.only))

    def list(self, request, context):
        params = {
            "query": optional_message(request, "query"),
            "assignment_id": request.assignment_id,
            "subject": _subject_dict(request, "subject"),
            "grant": _grant_dict(request, "grant"),
        }
        results, total = self.assignments.list(self.caller(request, context), params)
        return pb.AssignmentsInfo(
            results=fitted([to_assignment_info(r) for r in results], self.max_message_bytes), total_count=total
        )

    def stat(self, request, context):
        results, total = self.assignments.stat(
            self.caller(request, context), {"query": optional_message(request, "query")}
        )
        return to_stat_struct(results, total)

    def check(self, request, context):
        params = {
            "subject": _subject_dict(request, "subject"),
            "action": request.action,
            "resource": request.resource,
            "context": optional_message(request, "context"),
            "consistency": consistency_params(request),
        }
        checked = self.authorization.check(self.caller(request, context), params)
        return to_check_result(checked.decision, consistency_token=checked.consistency_token)

    def batch_check(self, request, context):
        items = [
            {
                "subject": _subject_dict(item, "subject"),
                "action": item.action,
                "resource": item.resource,
                "context": message_dict(item.context, f"items[{index}].context") if item.HasField("context") else None,
                "correlation_id": item.correlation_id,
            }
            for index, item in enumerate(request.items)
        ]
        params = {
            "items": items,
            "context": optional_message(request, "context"),
            "consistency": consistency_params(request),
        }
        answers, token = self.authorization.batch_check(self.caller(request, context), params)
        return pb.BatchCheckResult(
            results=[to_check_result(a.decision, correlation_id=a.correlation_id) for a in answers],
            consistency_token=token,
        )

    def list_authorized_resources(self, request, context):
        params = {
            "subject": _subject_dict(request, "subject"),
            "resource_prefix": request.resource_prefix,
            "action": request.action,
            "page": optional_message(request, "page"),
            "context": optional_message(request, "context"),
            "consistency": consistency_params(request),
        }
        listing = self.authorization.list_authorized_resources(self.caller(request, context), params)
        return to_authorized_resources_info(listing, self.max_message_bytes)

    def list_subjects(self, request, context):
        params = {
            "policy_id": request.policy_id,
            "action": request.action,
            "resource": request.resource,
            "page": optional_message(request, "page"),
            "consistency": consistency_params(request),
        }
        found = self.authorization.list_subjects(self.caller(request, context), params)
        # Asked by policy_id the service answers its holders, else the subjects the policies allow.
        entries = (
            [to_holder_entry(grant, request.policy_id) for grant in found.results]
            if request.policy_id
            else [to_decision_entry(allowed) for allowed in found.results]
        )
        return pb.SubjectsInfo(
            results=fitted(entries, self.max_message_bytes),
            total_count=found.total_count,
            consistency_token=found.consistency_token,
        )

    def effective_permissions(self, request, context):
        params = {"subject": _subject_dict(request, "subject"), "consistency": consistency_params(request)}
        found = self.authorization.effective_permissions(self.caller(request, context), params)
        return pb.EffectivePermissionsInfo(
            results=[to_effective_statement(s) for s in found.results],
            total_count=found.total_count,
            consistency_token=found.consistency_token,
        )


def _subject_dict(request, field: str) -> dict[str, str] | None:
    if not request.HasField(field):
        return None
    value = getattr(request, field)
    return {"type": enum_name(pb.Subject.Type, value.type), "id": value.id}


def _grant_dict(request, field: str) -> dict[str, str] | None:
    if not request.HasField(field):
        return None
    value = getattr(request, field)
    return {"type": enum_name(pb.Grant.Type, value.type), "id": value.id}


def _batch_params(request) -> dict[str, Any]:
    return {
        "grants": [{"type": enum_name(pb.Grant.Type, g.type), "id": g.id} for g in request.grants],
        "subject_type": enum_name(pb.Subject.Type, request.subject_type),
        "subject_ids": list(request.subject_ids),
        "expires_at": request.expires_at,
        "labels": list_values(request.labels, "labels"),
        "tags": struct_dict(request.tags, "tags"),
    }
