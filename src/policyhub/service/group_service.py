"""Groups (Authing's user groups): named sets of users, service accounts and other groups that
hold grants of their own. See policyhub.service.subject_set_service for what they share with
roles."""

from __future__ import annotations

from typing import Any

from policyhub.domain import SubjectType
from policyhub.engine import Subject
from policyhub.errors import InvalidArgument, RequiredParameter
from policyhub.service import validation
from policyhub.service.context import RequestContext
from policyhub.service.permissions import (
    GROUP_ADD_USERS,
    GROUP_CREATE,
    GROUP_DELETE,
    GROUP_DELETE_MANY,
    GROUP_GET,
    GROUP_LIST,
    GROUP_LIST_AUTHORIZED_RESOURCES,
    GROUP_LIST_USERS,
    GROUP_REMOVE_USERS,
    GROUP_STAT,
    GROUP_UPDATE,
)
from policyhub.service.resource_listing import AuthorizedListing, ResourceListing
from policyhub.service.subject_set_service import SetKind, SetPermissions, SubjectSetService

GROUP = SetKind(
    SubjectType.GROUP.value,
    SetPermissions(
        create=GROUP_CREATE,
        update=GROUP_UPDATE,
        delete=GROUP_DELETE,
        get=GROUP_GET,
        list=GROUP_LIST,
        stat=GROUP_STAT,
        add_users=GROUP_ADD_USERS,
        remove_users=GROUP_REMOVE_USERS,
        list_users=GROUP_LIST_USERS,
    ),
)


class GroupService(SubjectSetService):
    def __init__(self, *args: Any, listing: ResourceListing, **kwargs: Any):
        super().__init__(GROUP, *args, **kwargs)
        self.listing = listing

    def delete_many(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """All or nothing: every id is checked before anything is deleted."""
        raw_ids = params.get("group_ids") or []
        if not raw_ids:
            raise RequiredParameter("group_ids")
        if len(raw_ids) > validation.MAX_BATCH_IDS:
            raise InvalidArgument("group_ids", f"at most {validation.MAX_BATCH_IDS} ids per call, got {len(raw_ids)}")
        group_ids = list(
            dict.fromkeys(validation.identifier(value, f"group_ids[{i}]") for i, value in enumerate(raw_ids))
        )
        token = self.delete_ids(ctx, group_ids, bool(params.get("cascade")), GROUP_DELETE_MANY)
        return {
            "results": [{"group_id": group_id, "outcome": "DELETED"} for group_id in group_ids],
            "deleted_count": len(group_ids),
            "consistency_token": token,
        }

    def list_authorized_resources(self, ctx: RequestContext, params: dict[str, Any]) -> AuthorizedListing:
        """What the group's members may act on through the group (exceptions included)."""
        group_id = validation.identifier(params.get("group_id", ""), "group_id")
        found = self.listing.authorized_resources(
            ctx, Subject(GROUP.type, group_id), params, GROUP_LIST_AUTHORIZED_RESOURCES, GROUP.resource(group_id)
        )
        self.sets.get(ctx.domain_id, group_id)
        return found
