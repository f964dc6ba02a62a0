"""Roles (a tenant role service's roles): named sets of subjects that hold policies; users are
bound to them. See policyhub.service.subject_set_service for what they share with groups."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from policyhub.domain import SubjectType
from policyhub.engine import DomainIndex, EffectiveStatement, Subject
from policyhub.engine.patterns import action_segment
from policyhub.service.context import RequestContext
from policyhub.service.permissions import (
    ROLE_BIND_USERS,
    ROLE_CREATE,
    ROLE_DELETE,
    ROLE_GET,
    ROLE_LIST,
    ROLE_LIST_USERS,
    ROLE_STAT,
    ROLE_UNBIND_USERS,
    ROLE_UPDATE,
)
from policyhub.service.subject_set_service import SetKind, SetPermissions, SubjectSetService

ROLE = SetKind(
    SubjectType.ROLE.value,
    SetPermissions(
        create=ROLE_CREATE,
        update=ROLE_UPDATE,
        delete=ROLE_DELETE,
        get=ROLE_GET,
        list=ROLE_LIST,
        stat=ROLE_STAT,
        add_users=ROLE_BIND_USERS,
        remove_users=ROLE_UNBIND_USERS,
        list_users=ROLE_LIST_USERS,
    ),
)


class RoleService(SubjectSetService):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(ROLE, *args, **kwargs)

    def get(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """The role with its effective statements grouped by service (the first segment of each
        action: `inventory`, `identity`; `*` for actions that name no service): the inspect view."""
        role = super().get(ctx, params)
        statements = self.indexes.get(ctx.domain_id).effective_statements(Subject(ROLE.type, role["role_id"]))
        return {**role, "permission_groups": grouped_by_service(statements)}

    def _describe(self, index: DomainIndex, record: dict[str, Any]) -> dict[str, Any]:
        described = super()._describe(index, record)
        if "member_count" not in described:
            return described
        return {**described, "is_bound": described["member_count"] > 0}

    def bind_users(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return self.add_users(ctx, params)

    def unbind_users(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return self.remove_users(ctx, params)


def grouped_by_service(statements: list[EffectiveStatement]) -> list[dict[str, Any]]:
    """[{service, statements}] sorted by service; each statement keeps, in each group, the
    actions of that service only."""
    groups: dict[str, list[EffectiveStatement]] = {}
    for statement in statements:
        by_service: dict[str, list[str]] = {}
        for action in statement.actions:
            by_service.setdefault(_service(action), []).append(action)
        for service, actions in by_service.items():
            groups.setdefault(service, []).append(replace(statement, actions=tuple(actions)))
    return [{"service": service, "statements": groups[service]} for service in sorted(groups)]


def _service(action: str) -> str:
    segment = action_segment(action.lower())
    # A wildcard in the first segment (`*`, `inv*`) may stand for any service.
    return "*" if not segment or "*" in segment or "?" in segment else segment
