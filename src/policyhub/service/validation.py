"""Input rules shared by the services. Each failure is InvalidArgument naming the field."""

from __future__ import annotations

import math
import unicodedata
from typing import Any

import bson

from policyhub.domain import (
    DOMAIN_ID_MAX,
    DOMAIN_ID_RE,
    POLICY_ID_MAX,
    POLICY_ID_RE,
    ChangeKind,
    Effect,
    GrantType,
    SubjectType,
    values,
)
from policyhub.engine.conditions import MAX_CONTEXT_KEYS, ConditionError, flatten_context, parse_conditions
from policyhub.engine.conditions import MAX_KEY as MAX_CONTEXT_KEY
from policyhub.errors import InvalidArgument, RequiredParameter, clip

NAME_MAX = 255
DESCRIPTION_MAX = 4096
PATTERN_MAX = 512
MAX_PERMISSIONS = 1000
MAX_STATEMENTS = 100
MAX_PATTERNS_PER_STATEMENT = 100
MAX_LABELS = 100
MAX_TAGS = 100
MAX_BATCH_IDS = 1000
IDENTIFIER_MAX = 128
# Tags and labels: every string in them (keys and values, at any depth) is bounded, so anything
# that scans them (e.g. a regex filter) has a bounded cost per value.
TAG_KEY_MAX = 255
STRING_VALUE_MAX = 4096
# Stored sizes, measured as BSON (what MongoDB stores).
POLICY_MAX_BYTES = 64 * 1024
ASSIGNMENT_TAGS_MAX_BYTES = 16 * 1024
ASSIGNMENT_LABELS_MAX_BYTES = 16 * 1024
CONTEXT_MAX_BYTES = 16 * 1024
# Descriptions are prose: line breaks and tabs are fine there, nowhere else.
DESCRIPTION_CHARACTERS = "\n\t"
# Control (Cc), format (Cf: zero-width characters, bidirectional overrides such as U+202E),
# surrogate (Cs), private-use (Co), line and paragraph separator (Zl, Zp) characters make two
# different values look alike, or reorder what a reader sees.
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})


def require(value: Any, field: str) -> Any:
    if value is None or value == "":
        raise RequiredParameter(field)
    return value


def policy_id(value: str, field: str = "policy_id") -> str:
    return new_id(value, field, spaceone_name="ERROR_INVALID_POLICY_ID_FORMAT")


def new_id(value: str, field: str, spaceone_name: str = "") -> str:
    """The id of a policy, or of a group or role being created or renamed: lower-case letters,
    digits and hyphens. (Groups and roles that earlier versions knew only as ids inside
    assignments keep their ids; they are looked up by the looser `identifier` rule.)"""
    require(value, field)
    # fullmatch: SpaceONE's re.match let a bad last character through.
    if len(value) > POLICY_ID_MAX or not POLICY_ID_RE.fullmatch(value):
        raise InvalidArgument(
            field,
            f"must match ^[a-z0-9][a-z0-9-]*$ and have at most {POLICY_ID_MAX} characters",
            spaceone_name=spaceone_name,
        )
    return value


def domain_id(value: str, field: str = "domain_id") -> str:
    require(value, field)
    if len(value) > DOMAIN_ID_MAX or not DOMAIN_ID_RE.fullmatch(value):
        raise InvalidArgument(
            field, f"must match ^[A-Za-z0-9][A-Za-z0-9_.-]*$ and have at most {DOMAIN_ID_MAX} characters"
        )
    return value


def clean(value: str, field: str, allowed: str = "") -> str:
    """Refuses the characters of UNSAFE_CATEGORIES (except those in `allowed`)."""
    # isprintable() is False for all of them (and for a few harmless ones): a fast path.
    if value.isprintable():
        return value
    for position, char in enumerate(value):
        if char not in allowed and unicodedata.category(char) in UNSAFE_CATEGORIES:
            raise InvalidArgument(
                field,
                f"must not contain control, format or bidirectional characters "
                f"(U+{ord(char):04X} at position {position})",
            )
    return value


def text(value: str, field: str, max_length: int, required: bool = False, allowed: str = "") -> str:
    """Names and other free text: bounded, clean (but for the `allowed` characters)."""
    if required:
        require(value, field)
    if len(value) > max_length:
        raise InvalidArgument(field, f"must have at most {max_length} characters")
    return clean(value, field, allowed)


def name(value: str, field: str = "name", required: bool = False) -> str:
    return text(value, field, NAME_MAX, required)


def description(value: str, field: str = "description") -> str:
    return text(value, field, DESCRIPTION_MAX, allowed=DESCRIPTION_CHARACTERS)


def pattern(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(field, "must be a non-empty string")
    if len(value) > PATTERN_MAX:
        raise InvalidArgument(field, f"must have at most {PATTERN_MAX} characters")
    if value != value.strip():
        raise InvalidArgument(field, "must not start or end with whitespace")
    return clean(value, field)


def permissions(values: list[str], field: str = "permissions") -> list[str]:
    if len(values) > MAX_PERMISSIONS:
        raise InvalidArgument(field, f"must have at most {MAX_PERMISSIONS} entries")
    return [pattern(value, f"{field}[{index}]") for index, value in enumerate(values)]


def statements(values: list[dict[str, Any]], field: str = "statements") -> list[dict[str, Any]]:
    if len(values) > MAX_STATEMENTS:
        raise InvalidArgument(field, f"must have at most {MAX_STATEMENTS} statements")
    return [statement(value, f"{field}[{index}]") for index, value in enumerate(values)]


def statement(value: dict[str, Any], field: str) -> dict[str, Any]:
    effect = value.get("effect")
    if effect not in values(Effect):
        raise InvalidArgument(f"{field}.effect", "must be ALLOW or DENY")
    result = {"effect": effect}
    for key in ("actions", "resources"):
        patterns = value.get(key) or []
        if not patterns:
            raise InvalidArgument(f"{field}.{key}", "must have at least one pattern")
        if len(patterns) > MAX_PATTERNS_PER_STATEMENT:
            raise InvalidArgument(f"{field}.{key}", f"must have at most {MAX_PATTERNS_PER_STATEMENT} patterns")
        result[key] = [pattern(item, f"{field}.{key}[{index}]") for index, item in enumerate(patterns)]
    result["conditions"] = conditions(value.get("conditions") or {}, f"{field}.conditions")
    return result


def conditions(value: dict[str, Any], field: str) -> dict[str, Any]:
    """A statement's conditions, checked as the engine will evaluate them (stored as given)."""
    try:
        parse_conditions(value)
    except ConditionError as error:
        raise InvalidArgument(f"{field}.{error.path}" if error.path else field, error.message) from None
    return value


def context(value: dict[str, Any] | None, field: str = "context") -> dict[str, Any]:
    """A request's context for conditions, flattened to dotted keys (bounded in size, depth
    and number of keys)."""
    if not value:
        return {}
    # Not stored: its keys may have dots (`{"request.ip": ...}` is the same as the nested form).
    json_value(value, field, stored=False)
    bounded_size(value, field, CONTEXT_MAX_BYTES)
    flat = flatten_context(value)
    if len(flat) > MAX_CONTEXT_KEYS:
        raise InvalidArgument(field, f"must have at most {MAX_CONTEXT_KEYS} keys, got {len(flat)}")
    for key in flat:
        if len(key) > MAX_CONTEXT_KEY:
            raise InvalidArgument(field, f"keys must have at most {MAX_CONTEXT_KEY} characters")
        clean(key, field)
    return flat


def labels(values: list[Any], field: str = "labels", max_bytes: int | None = None) -> list[Any]:
    if len(values) > MAX_LABELS:
        raise InvalidArgument(field, f"must have at most {MAX_LABELS} entries")
    for index, value in enumerate(values):
        json_value(value, f"{field}[{index}]")
    result = [_integral(value) for value in values]
    if max_bytes is not None:
        bounded_size(result, field, max_bytes)
    return result


def json_object(
    value: dict[str, Any], field: str, max_keys: int = MAX_TAGS, max_bytes: int | None = None
) -> dict[str, Any]:
    if len(value) > max_keys:
        raise InvalidArgument(field, f"must have at most {max_keys} keys")
    json_value(value, field)
    result = {key: _integral(item) for key, item in value.items()}
    if max_bytes is not None:
        bounded_size(result, field, max_bytes)
    return result


def json_value(value: Any, field: str, depth: int = 0, stored: bool = True) -> None:
    """Values stored verbatim must be safe MongoDB documents: no `$` or `.` in keys, bounded depth,
    bounded strings, clean keys. Values that are not stored (`stored=False`) may have such keys."""
    if depth > 10:
        raise InvalidArgument(field, "is nested too deeply (at most 10 levels)")
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{field}.{clip(key)}"
            if len(key) > TAG_KEY_MAX:
                raise InvalidArgument(path, f"keys must have at most {TAG_KEY_MAX} characters")
            if not key or (stored and (key.startswith("$") or "." in key)):
                raise InvalidArgument(path, "keys must be non-empty and contain no '$' prefix or '.'")
            clean(key, path)
            json_value(item, path, depth + 1, stored)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            json_value(item, f"{field}[{index}]", depth + 1, stored)
    elif isinstance(value, str) and len(value) > STRING_VALUE_MAX:
        raise InvalidArgument(field, f"strings must have at most {STRING_VALUE_MAX} characters")
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidArgument(field, "must be a finite number")


def encoded_size(value: Any) -> int:
    """Bytes the value takes as a BSON field (what MongoDB stores)."""
    return len(bson.encode({"": value}))


def bounded_size(value: Any, field: str, max_bytes: int) -> None:
    size = encoded_size(value)
    if size > max_bytes:
        raise InvalidArgument(field, f"is {size} bytes stored; at most {max_bytes} bytes are allowed")


def record_size(record: dict[str, Any], max_bytes: int, fields: tuple[str, ...], what: str) -> None:
    """The whole stored record within max_bytes; too large names its largest field of `fields`
    (the ones a caller writes)."""
    size = len(bson.encode(record))
    if size <= max_bytes:
        return
    sizes = {key: encoded_size(record[key]) for key in fields if key in record}
    largest = max(sizes, key=sizes.__getitem__, default=what)
    raise InvalidArgument(
        largest,
        f"makes the stored {what} {size} bytes; at most {max_bytes} bytes are "
        f"allowed ({largest} takes {sizes.get(largest, size)})",
    )


def _integral(value: Any) -> Any:
    """protobuf Struct carries every number as a double; keep whole numbers whole."""
    # Only within BSON's 8-byte integers; larger whole numbers stay doubles.
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**63 - 1:
        return int(value)
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral(item) for item in value]
    return value


def identifier(value: str, field: str) -> str:
    """Ids (subject, role, group, assignment, repository, API key, ...): non-empty, bounded, clean.
    Checked before anything looks them up."""
    require(value, field)
    return optional_identifier(value, field)


def optional_identifier(value: str | None, field: str) -> str:
    """An id that may be left empty (e.g. one that narrows a list)."""
    value = value or ""
    if len(value) > IDENTIFIER_MAX:
        raise InvalidArgument(field, f"must have at most {IDENTIFIER_MAX} characters")
    return clean(value, field)


def choice(value: str, field: str, allowed: tuple[str, ...]) -> str:
    if not value or value.endswith("NONE"):
        raise RequiredParameter(field)
    if value not in allowed:
        raise InvalidArgument(field, f"must be one of {list(allowed)}")
    return value


def subject(value: dict[str, str] | None, field: str = "subject") -> dict[str, str]:
    if not value:
        raise RequiredParameter(field)
    return {
        "type": choice(value.get("type", ""), f"{field}.type", values(SubjectType)),
        "id": identifier(value.get("id", ""), f"{field}.id"),
    }


def grant(value: dict[str, str] | None, field: str = "grant") -> dict[str, str]:
    if not value:
        raise RequiredParameter(field)
    grant_type = choice(value.get("type", ""), f"{field}.type", values(GrantType))
    if grant_type == GrantType.POLICY:
        return {"type": grant_type, "id": policy_id(value.get("id", ""), f"{field}.id")}
    return {"type": grant_type, "id": identifier(value.get("id", ""), f"{field}.id")}


def page(value: dict[str, Any] | None, max_limit: int) -> tuple[int, int]:
    """(start, limit) of a SpaceONE Page: start counts from 1; limit at most max_limit (0: max)."""
    value = value or {}
    start = max(int(value.get("start") or 1), 1)
    limit = min(int(value.get("limit") or max_limit), max_limit)
    return start, max(limit, 1)


def change_kinds(value: list[str] | None, field: str = "kinds") -> frozenset[str] | None:
    """The kinds of changes asked for (None: all of them)."""
    known = values(ChangeKind)
    for i, kind in enumerate(value or ()):
        if kind not in known:
            raise InvalidArgument(f"{field}[{i}]", f"{clip(kind)!r} is not one of {', '.join(known)}")
    return frozenset(value) if value else None


HEARTBEAT_DEFAULT = 5
HEARTBEAT_MAX = 60


def heartbeat_seconds(value: int | None, field: str = "heartbeat_seconds") -> int:
    """Seconds between heartbeats of a watch: 1 to 60; 0 (unset) is the default, 5."""
    if not value:
        return HEARTBEAT_DEFAULT
    if not 1 <= value <= HEARTBEAT_MAX:
        raise InvalidArgument(field, f"must be between 1 and {HEARTBEAT_MAX} (0: {HEARTBEAT_DEFAULT})")
    return value


def continuation_page(value: dict[str, Any] | None, max_limit: int, field: str = "page") -> int:
    """The limit of a page of a log read with continuation tokens: `start` may only be 0 or 1."""
    value = value or {}
    if int(value.get("start") or 0) > 1:
        raise InvalidArgument(
            f"{field}.start", "must be 0 or 1: the change log pages with continuation tokens (`after`)"
        )
    return page(value, max_limit)[1]
