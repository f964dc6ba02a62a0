"""Change log messages: ChangeInfo, and a watch's change or heartbeat."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from policyhub._gen.spaceone.api.repository.v1 import change_pb2 as pb
from policyhub.api.info.common import to_iso


def _enum(enum_type, name: str) -> int:
    try:
        return enum_type.Value(name)
    except ValueError:
        return 0


def to_change_info(change: dict[str, Any]) -> pb.ChangeInfo:
    return pb.ChangeInfo(
        kind=_enum(pb.ChangeInfo.Kind, change["kind"]),
        id=change["id"],
        operation=_enum(pb.ChangeInfo.Operation, change["operation"]),
        consistency_token=change["consistency_token"],
        created_at=to_iso(change["created_at"]),
        transaction_id=change["transaction_id"],
        continuation_token=change["continuation_token"],
    )


def to_heartbeat(continuation_token: str, epoch_seconds: float) -> pb.WatchChangesResponse:
    return pb.WatchChangesResponse(
        heartbeat=pb.ChangeHeartbeat(
            continuation_token=continuation_token,
            time=to_iso(datetime.fromtimestamp(epoch_seconds, timezone.utc)),
        )
    )
