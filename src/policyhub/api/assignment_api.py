"""spaceone.api.repository.v1.Assignment servicer."""
from __future__ import annotations

from typing import Any

from google.protobuf import empty_pb2

from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2 as pb
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2_grpc, policy_pb2
from policyhub.api.context import CallerResolver
from policyhub.api.convert import (enum_name, fitted, iso, list_values, optional_message, stat_struct,
                                   struct_dict, to_list_value, to_struct)
from policyhub.engine import SubjectDecision
from policyhub.service.assignment_service import AssignmentService
from policyhub.service.authorization_service import AuthorizationService


class AssignmentAPI(assignment_pb2_grpc.AssignmentServicer):
    def __init__(self, assignments: AssignmentService, authorization: AuthorizationService, caller: CallerResolver,
                 max_message_bytes: int):
        self.assignments = assignments
        self.authorization = authorization
        self.caller = caller
        self.max_message_bytes = max_message_bytes

    def create(self, request, context):
        params = {"subject": _subject_dict(request, "subject"), "grant": _grant_dict(request, "grant"),
                  "expires_at": request.expires_at, "labels": list_values(request.labels, "labels"),
                  "tags": struct_dict(request.tags, "tags")}
        return assignment_info(self.assignments.create(self.caller(request, context), params))

    def add(self, request, context):
        return _changes(self.assignments.add(self.caller(request, context), _batch_params(request)))

    def remove(self, request, context):
        return _changes(self.assignments.remove(self.caller(request, context), _batch_params(request)))

    def delete(self, request, context):
        self.assignments.delete(self.caller(request, context), {"assignment_id": request.assignment_id})
        return empty_pb2.Empty()

    def get(self, request, context):
        record = self.assignments.get(self.caller(request, context), {"assignment_id": request.assignment_id})
        return assignment_info(record, only=list(request.only))

    def list(self, request, context):
        params = {"query": optional_message(request, "query"), "assignment_id": request.assignment_id,
                  "subject": _subject_dict(request, "subject"), "grant": _grant_dict(request, "grant")}
        results, total = self.assignments.list(self.caller(request, context), params)
        return pb.AssignmentsInfo(results=fitted([assignment_info(r) for r in results], self.max_message_bytes),
                                  total_count=total)

    def stat(self, request, context):
        results, total = self.assignments.stat(self.caller(request, context),
                                               {"query": optional_message(request, "query")})
        return stat_struct(results, total)

    def check(self, request, context):
        params = {"subject": _subject_dict(request, "subject"), "action": request.action,
                  "resource": request.resource}
        return check_result(self.authorization.check(self.caller(request, context), params))

    def batch_check(self, request, context):
        items = [{"subject": _subject_dict(item, "subject"), "action": item.action, "resource": item.resource}
                 for item in request.items]
        decisions = self.authorization.batch_check(self.caller(request, context), {"items": items})
        return pb.BatchCheckResult(results=[check_result(d) for d in decisions])

    def list_authorized_resources(self, request, context):
        params = {"subject": _subject_dict(request, "subject"), "resource_prefix": request.resource_prefix,
                  "action": request.action, "page": optional_message(request, "page")}
        found, total = self.authorization.list_authorized_resources(self.caller(request, context), params)
        return pb.AuthorizedResourcesInfo(
            results=fitted([authorized_resource(r) for r in found], self.max_message_bytes), total_count=total)

    def list_subjects(self, request, context):
        params = {"policy_id": request.policy_id, "action": request.action, "resource": request.resource,
                  "page": optional_message(request, "page")}
        found, total = self.authorization.list_subjects(self.caller(request, context), params)
        return pb.SubjectsInfo(results=fitted([_subject_entry(entry, request.policy_id) for entry in found],
                                              self.max_message_bytes), total_count=total)

    def effective_permissions(self, request, context):
        params = {"subject": _subject_dict(request, "subject")}
        found = self.authorization.effective_permissions(self.caller(request, context), params)
        return pb.EffectivePermissionsInfo(results=[_effective(s) for s in found], total_count=len(found))


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
    return {"grants": [{"type": enum_name(pb.Grant.Type, g.type), "id": g.id} for g in request.grants],
            "subject_type": enum_name(pb.Subject.Type, request.subject_type), "subject_ids": list(request.subject_ids),
            "expires_at": request.expires_at, "labels": list_values(request.labels, "labels"),
            "tags": struct_dict(request.tags, "tags")}


def _subject_message(subject) -> pb.Subject:
    return pb.Subject(type=subject.type, id=subject.id)


def _changes(outcome: dict[str, Any]) -> pb.AssignmentChangesInfo:
    return pb.AssignmentChangesInfo(changed_count=outcome["changed_count"], results=[
        pb.AssignmentChange(subject=pb.Subject(**change["subject"]), grant=pb.Grant(**change["grant"]),
                            outcome=change["outcome"], assignment_id=change["assignment_id"])
        for change in outcome["results"]])


def assignment_info(record: dict[str, Any], only: list[str] | None = None) -> pb.AssignmentInfo:
    fields: dict[str, Any] = {
        "assignment_id": record.get("assignment_id", ""),
        # `only` may have projected one half of a pair away: build what is there.
        "subject": _pair(pb.Subject, record, "subject"),
        "grant": _pair(pb.Grant, record, "grant"),
        "expires_at": iso(record.get("expires_at")),
        "labels": to_list_value(record.get("labels", [])),
        "tags": to_struct(record.get("tags", {})),
        "domain_id": record.get("domain_id", ""),
        "created_at": iso(record.get("created_at")),
    }
    fields = {key: value for key, value in fields.items() if value is not None and (not only or key in only)}
    return pb.AssignmentInfo(**fields)


def _pair(message_type, record: dict[str, Any], prefix: str):
    if f"{prefix}_type" not in record and f"{prefix}_id" not in record:
        return None
    return message_type(type=record.get(f"{prefix}_type") or "TYPE_NONE", id=record.get(f"{prefix}_id", ""))


def check_result(decision) -> pb.CheckResult:
    return pb.CheckResult(decision="ALLOW" if decision.allowed else "DENY", reason=decision.reason,
                          policy_id=decision.policy_id, statement_index=decision.statement_index,
                          via=[_subject_message(s) for s in decision.via])


def _subject_entry(entry, policy_id: str) -> pb.SubjectEntry:
    """A holder of the asked policy (SubjectGrant), or a subject allowed by some policy (SubjectDecision)."""
    if isinstance(entry, SubjectDecision):
        policy_id, via = entry.decision.policy_id, entry.decision.via
    else:
        via = entry.via
    return pb.SubjectEntry(subject=_subject_message(entry.subject), via=[_subject_message(s) for s in via],
                           policy_id=policy_id)


def _effective(statement) -> pb.EffectiveStatement:
    return pb.EffectiveStatement(
        policy_id=statement.policy_id, statement_index=statement.statement_index,
        statement=policy_pb2.Statement(effect=statement.effect, actions=statement.actions,
                                       resources=statement.resources),
        via=[_subject_message(s) for s in statement.via])


def authorized_resource(entry) -> pb.AuthorizedResource:
    return pb.AuthorizedResource(resource=entry.resource, actions=entry.actions, exceptions=[
        pb.AuthorizedException(resource=e.resource, actions=e.actions) for e in entry.exceptions])
