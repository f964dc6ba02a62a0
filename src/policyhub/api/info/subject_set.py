"""Group and role records <-> spaceone.api.repository.v1 GroupInfo, RoleInfo and MembersInfo."""

from __future__ import annotations

from typing import Any

from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2, group_pb2, role_pb2
from policyhub.api.info.assignment import to_effective_statement, to_subject
from policyhub.api.info.common import to_iso, to_list_value, to_struct


def _common(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": record.get("name", ""),
        "description": record.get("description", ""),
        "labels": to_list_value(record.get("labels", [])),
        "tags": to_struct(record.get("tags", {})),
        "member_count": record.get("member_count", 0),
        "policy_ids": record.get("policy_ids", []),
        "domain_id": record.get("domain_id", ""),
        "created_at": to_iso(record.get("created_at")),
        "updated_at": to_iso(record.get("updated_at")),
        "consistency_token": record.get("consistency_token", ""),
    }


def to_group_info(record: dict[str, Any]) -> group_pb2.GroupInfo:
    return group_pb2.GroupInfo(group_id=record.get("group_id", ""), **_common(record))


def to_role_info(record: dict[str, Any]) -> role_pb2.RoleInfo:
    return role_pb2.RoleInfo(
        role_id=record.get("role_id", ""),
        is_bound=record.get("is_bound", False),
        permission_groups=[
            role_pb2.RolePermissionGroup(
                service=group["service"], statements=[to_effective_statement(s) for s in group["statements"]]
            )
            for group in record.get("permission_groups", [])
        ],
        **_common(record),
    )


def to_member_info(member: dict[str, Any]) -> assignment_pb2.MemberInfo:
    return assignment_pb2.MemberInfo(user_id=member["user_id"], via=[to_subject(s) for s in member["via"]])
