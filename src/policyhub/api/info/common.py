"""The codecs every resource's mapping shares: enum names, times, Struct and ListValue."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId
from google.protobuf import json_format, struct_pb2
from google.protobuf.message import Message

from policyhub.domain import as_utc
from policyhub.errors import InvalidArgument


def enum_name(enum_type, number: int, *, lenient: bool = False) -> str:
    """The value's name. proto3 enums are open, so a number may have none: in a request it
    becomes its digits, which validation then refuses as INVALID_ARGUMENT instead of failing
    here; `lenient` (answers of a remote, which are read, not validated) gives the zero value."""
    try:
        return enum_type.Name(number)
    except ValueError:
        return enum_type.Name(0) if lenient else str(number)


# -- time: SpaceONE's ISO-8601 strings <-> aware UTC datetimes ---------------------------------


def to_iso(value: datetime | None) -> str:
    """ISO-8601, UTC, milliseconds, `Z` (SpaceONE's form); a naive value is taken as UTC."""
    if value is None:
        return ""
    value = as_utc(value)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def from_iso(text: str) -> datetime | None:
    """An ISO-8601 string as an aware UTC datetime; empty or unreadable is None, so one bad
    time in a remote's answer does not fail the whole read."""
    if not text:
        return None
    try:
        return as_utc(datetime.fromisoformat(text))
    except (ValueError, OverflowError):
        return None


# -- request messages -> plain Python (validated: the caller's mistake is INVALID_ARGUMENT) ----


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


# -- plain Python <-> Struct / ListValue in replies and answers --------------------------------


def to_struct(data: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(json_safe(data))
    return struct


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
        return to_iso(value)
    if isinstance(value, ObjectId):
        return str(value)
    return value


def to_stat_struct(results: list, total_count: int | None) -> struct_pb2.Struct:
    """stat's response body: {"results": [...], "total_count": N} (total_count only when paged)."""
    body: dict[str, Any] = {"results": results}
    if total_count is not None:
        body["total_count"] = total_count
    return to_struct(body)


def from_stat_struct(body: struct_pb2.Struct) -> tuple[list, int | None]:
    """A stat answer as (results, total_count); a body of another shape raises TypeError."""
    plain = _integral(json_format.MessageToDict(body))
    results = plain.get("results")
    if results is not None and not isinstance(results, list):
        raise TypeError(f"results is a {type(results).__name__}, not a list")
    total = plain.get("total_count")
    if total is not None and (isinstance(total, bool) or not isinstance(total, (int, float))):
        raise TypeError(f"total_count is a {type(total).__name__}, not a number")
    return list(results or []), None if total is None else int(total)


def _integral(value: Any) -> Any:
    """Struct numbers are doubles; counts read better as integers."""
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def from_value_field(message: Message, field: str, unset: Any) -> Any:
    """A Struct or ListValue field as plain Python, `unset` when absent. Unlike message_dict
    this raises ValueError (not INVALID_ARGUMENT) for NaN or Infinity: it reads answers."""
    return json_format.MessageToDict(getattr(message, field)) if message.HasField(field) else unset
