"""Assignment records and the engine's answers (decisions, subjects, effective statements,
authorized resources) <-> spaceone.api.repository.v1 assignment messages."""

from __future__ import annotations

import json
from typing import Any

from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2 as pb
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2
from policyhub.api.info.common import to_iso, to_list_value, to_struct
from policyhub.api.paging import fitted


def to_assignment_info(record: dict[str, Any], only: list[str] | None = None) -> pb.AssignmentInfo:
    fields: dict[str, Any] = {
        "assignment_id": record.get("assignment_id", ""),
        # `only` may have projected one half of a pair away: build what is there.
        "subject": _pair(pb.Subject, record, "subject"),
        "grant": _pair(pb.Grant, record, "grant"),
        "expires_at": to_iso(record.get("expires_at")),
        "labels": to_list_value(record.get("labels", [])),
        "tags": to_struct(record.get("tags", {})),
        "domain_id": record.get("domain_id", ""),
        "created_at": to_iso(record.get("created_at")),
        "consistency_token": record.get("consistency_token", ""),
    }
    fields = {key: value for key, value in fields.items() if value is not None and (not only or key in only)}
    return pb.AssignmentInfo(**fields)


def _pair(message_type, record: dict[str, Any], prefix: str):
    if f"{prefix}_type" not in record and f"{prefix}_id" not in record:
        return None
    return message_type(type=record.get(f"{prefix}_type") or "TYPE_NONE", id=record.get(f"{prefix}_id", ""))


def to_assignment_changes_info(outcome: dict[str, Any]) -> pb.AssignmentChangesInfo:
    return pb.AssignmentChangesInfo(
        changed_count=outcome["changed_count"],
        consistency_token=outcome.get("consistency_token", ""),
        results=[
            pb.AssignmentChange(
                subject=pb.Subject(**change["subject"]),
                grant=pb.Grant(**change["grant"]),
                outcome=change["outcome"],
                assignment_id=change["assignment_id"],
            )
            for change in outcome["results"]
        ],
    )


def to_subject(subject) -> pb.Subject:
    return pb.Subject(type=subject.type, id=subject.id)


def to_check_result(decision, correlation_id: str = "", consistency_token: str = "") -> pb.CheckResult:
    return pb.CheckResult(
        decision="ALLOW" if decision.allowed else "CONDITIONAL" if decision.conditional else "DENY",
        reason=decision.reason,
        policy_id=decision.policy_id,
        statement_index=decision.statement_index,
        via=[to_subject(s) for s in decision.via],
        missing_context=decision.missing_context,
        correlation_id=correlation_id,
        consistency_token=consistency_token,
    )


def to_holder_entry(grant, policy_id: str) -> pb.SubjectEntry:
    """A holder of the asked policy (a SubjectGrant): the policy is the one asked for."""
    return pb.SubjectEntry(
        subject=to_subject(grant.subject), via=[to_subject(s) for s in grant.via], policy_id=policy_id
    )


def to_decision_entry(allowed) -> pb.SubjectEntry:
    """A subject some policy allows the asked action on the resource (a SubjectDecision)."""
    return pb.SubjectEntry(
        subject=to_subject(allowed.subject),
        via=[to_subject(s) for s in allowed.decision.via],
        policy_id=allowed.decision.policy_id,
    )


def to_effective_statement(statement) -> pb.EffectiveStatement:
    shown = policy_pb2.Statement(effect=statement.effect, actions=statement.actions, resources=statement.resources)
    if statement.condition is not None:
        shown.conditions.CopyFrom(to_struct(json.loads(statement.condition.source)))
    return pb.EffectiveStatement(
        policy_id=statement.policy_id,
        statement_index=statement.statement_index,
        statement=shown,
        via=[to_subject(s) for s in statement.via],
    )


def to_authorized_resources_info(listing, max_message_bytes: int) -> pb.AuthorizedResourcesInfo:
    return pb.AuthorizedResourcesInfo(
        results=fitted([to_authorized_resource(r) for r in listing.results], max_message_bytes),
        total_count=listing.total_count,
        missing_context=listing.missing_context,
        consistency_token=listing.consistency_token,
    )


def to_authorized_resource(entry) -> pb.AuthorizedResource:
    return pb.AuthorizedResource(
        resource=entry.resource,
        actions=entry.actions,
        exceptions=[pb.AuthorizedException(resource=e.resource, actions=e.actions) for e in entry.exceptions],
    )
