"""Repository records <-> spaceone.api.repository.v1 RepositoryInfo."""

from __future__ import annotations

from typing import Any

from policyhub._gen.spaceone.api.repository.v1 import repository_pb2
from policyhub.api.info.common import to_iso


def to_repository_info(record: dict[str, Any], only: list[str] | None = None) -> repository_pb2.RepositoryInfo:
    fields = {
        "repository_id": record.get("repository_id", ""),
        "name": record.get("name", ""),
        "repository_type": record.get("repository_type", ""),
        "endpoint": record.get("endpoint", ""),
        "remote_repository_id": record.get("remote_repository_id", ""),
        "created_at": to_iso(record.get("created_at")),
    }
    if only:
        fields = {key: value for key, value in fields.items() if key in only}
    return repository_pb2.RepositoryInfo(**fields)
