"""Turning stored documents into the plain dicts the service layer works with."""

from __future__ import annotations

from typing import Any

from policyhub.query import Join

REPOSITORY_FIELDS = ("repository_id", "name", "repository_type", "endpoint", "remote_repository_id", "created_at")


def repository_info_lookup() -> dict:
    """The $lookup stage that joins a policy to its repository in the same round trip."""
    return {
        "$lookup": {
            "from": "repository",
            "localField": "repository_id",
            "foreignField": "repository_id",
            "as": "repository_info",
        }
    }


# A policy query naming `repository_info.<field>` joins the repository first, as one object (no
# array: a group or a sort by it then sees the value). `repository_info.repository_id` is the
# policy's own repository_id and needs no join.
REPOSITORY_INFO_JOIN = Join(
    prefix="repository_info",
    fields=frozenset(REPOSITORY_FIELDS) - {"repository_id"},
    local_field="repository_id",
    stages=(
        repository_info_lookup(),
        {"$unwind": {"path": "$repository_info", "preserveNullAndEmptyArrays": True}},
    ),
)


def policy_record(raw: dict[str, Any]) -> dict[str, Any]:
    record = {key: value for key, value in raw.items() if key != "_id"}
    joined = record.pop("repository_info", None)
    if joined:
        record["repository_info"] = repository_record(joined[0])
    return record


def repository_record(raw: dict[str, Any]) -> dict[str, Any]:
    return {key: raw[key] for key in REPOSITORY_FIELDS if key in raw}
