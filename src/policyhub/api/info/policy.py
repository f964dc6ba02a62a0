"""Policy records <-> spaceone.api.repository.v1 PolicyInfo (and its list and delete_many replies)."""

from __future__ import annotations

from typing import Any

from policyhub._gen.spaceone.api.repository.v1 import policy_pb2
from policyhub.api.info.common import (
    enum_name,
    from_iso,
    from_value_field,
    struct_dict,
    to_iso,
    to_list_value,
    to_struct,
)
from policyhub.api.info.repository import to_repository_info


def to_policy_info(record: dict[str, Any], only: list[str] | None = None) -> policy_pb2.PolicyInfo:
    fields: dict[str, Any] = {
        "policy_id": record.get("policy_id", ""),
        "name": record.get("name", ""),
        "state": record.get("state") or "NONE",
        "permissions": record.get("permissions", []),
        "labels": to_list_value(record.get("labels", [])),
        "tags": to_struct(record.get("tags", {})),
        "project_id": record.get("project_id", ""),
        # Managed policies belong to no domain.
        "domain_id": "" if record.get("is_managed") else record.get("domain_id", ""),
        "created_at": to_iso(record.get("created_at")),
        "updated_at": to_iso(record.get("updated_at")),
        "description": record.get("description", ""),
        "statements": [to_statement(s) for s in record.get("statements", [])],
        "version": record.get("version", 0),
        "etag": record.get("etag", ""),
        "is_managed": record.get("is_managed", False),
        "deleted_at": to_iso(record.get("deleted_at")),
        "purge_at": to_iso(record.get("purge_at")),
        "consistency_token": record.get("consistency_token", ""),
    }
    if "repository_info" in record:
        fields["repository_info"] = to_repository_info(record["repository_info"])
    if only:
        fields = {key: value for key, value in fields.items() if key in only}
    return policy_pb2.PolicyInfo(**fields)


def from_policy_info(info: policy_pb2.PolicyInfo) -> dict[str, Any]:
    """A remote's policy as our record. repository_info is the remote's own view and is left
    out: the service says which repository the policy came from."""
    record: dict[str, Any] = {
        "policy_id": info.policy_id,
        "name": info.name,
        "state": enum_name(policy_pb2.PolicyInfo.State, info.state, lenient=True),
        "permissions": list(info.permissions),
        "labels": from_value_field(info, "labels", []),
        "tags": from_value_field(info, "tags", {}),
        "project_id": info.project_id,
        "domain_id": info.domain_id,
        "created_at": from_iso(info.created_at),
        "updated_at": from_iso(info.updated_at),
        "description": info.description,
        "statements": [from_statement(statement) for statement in info.statements],
        "version": info.version,
        "etag": info.etag,
        "is_managed": info.is_managed,
    }
    for key in ("deleted_at", "purge_at"):
        value = from_iso(getattr(info, key))
        if value is not None:
            record[key] = value
    return record


def to_statement(statement: dict[str, Any]) -> policy_pb2.Statement:
    return policy_pb2.Statement(
        effect=statement.get("effect") or "EFFECT_NONE",
        actions=statement.get("actions", []),
        resources=statement.get("resources", []),
        conditions=to_struct(statement.get("conditions") or {}),
    )


def requested_statement(statement: policy_pb2.Statement, field: str) -> dict[str, Any]:
    """A statement of a request, read strictly: a bad effect or a non-finite condition is
    INVALID_ARGUMENT naming `field` (from_statement reads a remote's answer and is lenient instead)."""
    return {
        "effect": enum_name(policy_pb2.Statement.Effect, statement.effect),
        "actions": list(statement.actions),
        "resources": list(statement.resources),
        "conditions": struct_dict(statement.conditions, f"{field}.conditions"),
    }


def from_statement(statement: policy_pb2.Statement) -> dict[str, Any]:
    return {
        "effect": enum_name(policy_pb2.Statement.Effect, statement.effect, lenient=True),
        "actions": list(statement.actions),
        "resources": list(statement.resources),
        "conditions": from_value_field(statement, "conditions", {}),
    }


def from_policies_info(response: policy_pb2.PoliciesInfo) -> tuple[list[dict[str, Any]], int]:
    return [from_policy_info(info) for info in response.results], response.total_count


def to_delete_policies_info(outcome: dict[str, Any]) -> policy_pb2.DeletePoliciesInfo:
    return policy_pb2.DeletePoliciesInfo(
        results=[policy_pb2.PolicyOutcome(**result) for result in outcome["results"]],
        deleted_count=outcome["deleted_count"],
        consistency_token=outcome.get("consistency_token", ""),
    )
