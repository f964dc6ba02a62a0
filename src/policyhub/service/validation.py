"""Input rules shared by the services. Each failure is InvalidArgument naming the field."""
from __future__ import annotations

import math
import re
from typing import Any

from policyhub.errors import InvalidArgument, RequiredParameter

POLICY_ID_RE = re.compile(r"[a-z0-9][a-z0-9-]*")
POLICY_ID_MAX = 48
DOMAIN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
DOMAIN_ID_MAX = 64
NAME_MAX = 255
DESCRIPTION_MAX = 4096
PATTERN_MAX = 512
MAX_PERMISSIONS = 1000
MAX_STATEMENTS = 100
MAX_PATTERNS_PER_STATEMENT = 100
MAX_LABELS = 100
MAX_TAGS = 100
MAX_BATCH_IDS = 1000
EFFECTS = ("ALLOW", "DENY")


def require(value: Any, field: str) -> Any:
    if value is None or value == "":
        raise RequiredParameter(field)
    return value


def policy_id(value: str, field: str = "policy_id") -> str:
    require(value, field)
    # fullmatch: SpaceONE's re.match let a bad last character through.
    if len(value) > POLICY_ID_MAX or not POLICY_ID_RE.fullmatch(value):
        raise InvalidArgument(field, f"must match ^[a-z0-9][a-z0-9-]*$ and have at most {POLICY_ID_MAX} characters")
    return value


def domain_id(value: str, field: str = "domain_id") -> str:
    require(value, field)
    if len(value) > DOMAIN_ID_MAX or not DOMAIN_ID_RE.fullmatch(value):
        raise InvalidArgument(field, f"must match ^[A-Za-z0-9][A-Za-z0-9_.-]*$ and have at most {DOMAIN_ID_MAX} characters")
    return value


def text(value: str, field: str, max_length: int, required: bool = False) -> str:
    if required:
        require(value, field)
    if len(value) > max_length:
        raise InvalidArgument(field, f"must have at most {max_length} characters")
    return value


def pattern(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(field, "must be a non-empty string")
    if len(value) > PATTERN_MAX:
        raise InvalidArgument(field, f"must have at most {PATTERN_MAX} characters")
    if value != value.strip():
        raise InvalidArgument(field, "must not start or end with whitespace")
    return value


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
    if effect not in EFFECTS:
        raise InvalidArgument(f"{field}.effect", "must be ALLOW or DENY")
    result = {"effect": effect}
    for key in ("actions", "resources"):
        patterns = value.get(key) or []
        if not patterns:
            raise InvalidArgument(f"{field}.{key}", "must have at least one pattern")
        if len(patterns) > MAX_PATTERNS_PER_STATEMENT:
            raise InvalidArgument(f"{field}.{key}", f"must have at most {MAX_PATTERNS_PER_STATEMENT} patterns")
        result[key] = [pattern(item, f"{field}.{key}[{index}]") for index, item in enumerate(patterns)]
    if value.get("conditions"):
        # Refused rather than ignored: an unevaluated condition on an ALLOW would over-grant.
        raise InvalidArgument(f"{field}.conditions", "conditions are not evaluated by this version; leave it empty")
    result["conditions"] = {}
    return result


def labels(values: list[Any], field: str = "labels") -> list[Any]:
    if len(values) > MAX_LABELS:
        raise InvalidArgument(field, f"must have at most {MAX_LABELS} entries")
    for index, value in enumerate(values):
        json_value(value, f"{field}[{index}]")
    return [_integral(value) for value in values]


def json_object(value: dict[str, Any], field: str, max_keys: int = MAX_TAGS) -> dict[str, Any]:
    if len(value) > max_keys:
        raise InvalidArgument(field, f"must have at most {max_keys} keys")
    json_value(value, field)
    return {key: _integral(item) for key, item in value.items()}


def json_value(value: Any, field: str, depth: int = 0) -> None:
    """Values stored verbatim must be safe MongoDB documents: no `$` or `.` in keys, bounded depth."""
    if depth > 10:
        raise InvalidArgument(field, "is nested too deeply (at most 10 levels)")
    if isinstance(value, dict):
        for key, item in value.items():
            if not key or key.startswith("$") or "." in key or "\0" in key:
                raise InvalidArgument(f"{field}.{key}", "keys must be non-empty and contain no '$' prefix, '.' or NUL")
            json_value(item, f"{field}.{key}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            json_value(item, f"{field}[{index}]", depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidArgument(field, "must be a finite number")


def _integral(value: Any) -> Any:
    """protobuf Struct carries every number as a double; keep whole numbers whole."""
    # Only within BSON's 8-byte integers; larger whole numbers stay doubles.
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2 ** 63 - 1:
        return int(value)
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral(item) for item in value]
    return value


SUBJECT_TYPES = ("USER", "GROUP", "ROLE", "SERVICE_ACCOUNT")
GRANT_TYPES = ("POLICY", "ROLE", "GROUP")
IDENTIFIER_MAX = 128


def identifier(value: str, field: str) -> str:
    """Subject, role and group ids: non-empty, bounded, no control characters."""
    require(value, field)
    if len(value) > IDENTIFIER_MAX:
        raise InvalidArgument(field, f"must have at most {IDENTIFIER_MAX} characters")
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise InvalidArgument(field, "must not contain control characters")
    return value


def choice(value: str, field: str, allowed: tuple[str, ...]) -> str:
    if not value or value.endswith("NONE"):
        raise RequiredParameter(field)
    if value not in allowed:
        raise InvalidArgument(field, f"must be one of {list(allowed)}")
    return value


def subject(value: dict[str, str] | None, field: str = "subject") -> dict[str, str]:
    if not value:
        raise RequiredParameter(field)
    return {"type": choice(value.get("type", ""), f"{field}.type", SUBJECT_TYPES),
            "id": identifier(value.get("id", ""), f"{field}.id")}


def grant(value: dict[str, str] | None, field: str = "grant") -> dict[str, str]:
    if not value:
        raise RequiredParameter(field)
    grant_type = choice(value.get("type", ""), f"{field}.type", GRANT_TYPES)
    if grant_type == "POLICY":
        return {"type": grant_type, "id": policy_id(value.get("id", ""), f"{field}.id")}
    return {"type": grant_type, "id": identifier(value.get("id", ""), f"{field}.id")}
