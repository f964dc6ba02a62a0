"""Message <-> plain Python conversions shared by the servicers."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from bson import ObjectId
from google.protobuf import json_format, struct_pb2
from google.protobuf.message import Message

from policyhub.errors import InvalidArgument, ResultTooLarge

# Room for a reply's other fields (total_count) and for each result's field tag and length prefix.
_REPLY_OVERHEAD = 64
_RESULT_OVERHEAD = 6


def iso(value: datetime | None) -> str:
    """ISO-8601, UTC, milliseconds, `Z` (SpaceONE's form)."""
    if value is None:
        return ""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def enum_name(enum_type, number: int) -> str:
    """The value's name; an unknown number (proto3 enums are open) becomes its digits, which
    validation then refuses as INVALID_ARGUMENT instead of failing here."""
    try:
        return enum_type.Name(number)
    except ValueError:
        return str(number)


def message_dict(message: Message, field: str) -> Any:
    """A message as plain Python. NaN and Infinity fit in a protobuf Value but not in JSON."""
    try:
        return json_format.MessageToDict(message, preserving_proto_field_name=True)
    except (ValueError, json_format.Error):
        raise InvalidArgument(field, "numbers must be finite (NaN and Infinity are not allowed)") from None


def optional_message(request: Message, field: str) -> dict[str, Any] | None:
    """A message field as a dict, or None when the request does not set it."""
    return message_dict(getattr(request, field), field) if request.HasField(field) else None


def struct_dict(struct: struct_pb2.Struct, field: str) -> dict[str, Any]:
    return message_dict(struct, field)


def list_values(values: struct_pb2.ListValue, field: str) -> list[Any]:
    return message_dict(values, field)


def fitted(results: list[Message], max_bytes: int) -> list[Message]:
    """The longest prefix of a page that fits one reply of max_bytes. A page too large for gRPC
    comes back shorter instead of failing; total_count stays exact, so the client pages on
    from `start + len(results)`."""
    budget = max_bytes - _REPLY_OVERHEAD
    for count, result in enumerate(results):
        budget -= result.ByteSize() + _RESULT_OVERHEAD
        if budget < 0:
            if count == 0:
                raise ResultTooLarge(f"the first result of the page ({result.ByteSize()} bytes) does not fit a "
                                     f"reply of {max_bytes} bytes; select fewer fields with query.only")
            return results[:count]
    return results


def to_struct(data: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(json_safe(data))
    return struct


def stat_struct(results: list, total_count: int | None) -> struct_pb2.Struct:
    """stat's response body: {"results": [...], "total_count": N} (total_count only when paged)."""
    body: dict[str, Any] = {"results": results}
    if total_count is not None:
        body["total_count"] = total_count
    return to_struct(body)


def to_list_value(data: list[Any]) -> struct_pb2.ListValue:
    values = struct_pb2.ListValue()
    values.extend(json_safe(data))
    return values


def json_safe(value: Any) -> Any:
    """Stat results and stored values may hold dates and ObjectIds; Struct holds only JSON."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, ObjectId):
        return str(value)
    return value
