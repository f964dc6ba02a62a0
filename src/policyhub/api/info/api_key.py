"""API-key records -> spaceone.api.repository.v1 ApiKeyInfo (keys are only ever read out)."""

from __future__ import annotations

from typing import Any

from policyhub._gen.spaceone.api.repository.v1 import api_key_pb2 as pb
from policyhub.api.info.common import to_iso


def to_api_key_info(record: dict[str, Any]) -> pb.ApiKeyInfo:
    return pb.ApiKeyInfo(
        api_key_id=record.get("api_key_id", ""),
        api_key=record.get("api_key", ""),
        name=record.get("name", ""),
        service_account_id=record.get("service_account_id", ""),
        state=record.get("state", ""),
        domain_id=record.get("domain_id", ""),
        created_at=to_iso(record.get("created_at")),
        revoked_at=to_iso(record.get("revoked_at")),
    )
