"""Statement conditions: parsed once, evaluated against a request's context.

A statement's ``conditions`` is ``{"all": [item, ...]}`` or ``{"any": [item, ...]}``, where an
item is a rule ``{"key", "operator", "value"}`` or itself such a group. A rule reads one
context value by its dotted key (``request.ip``; the context's nested objects are addressed
the same way, see :func:`flatten_context`).

Evaluation is three-valued: a condition is true, false, or unknown because the context lacks
keys it needs (:class:`Unknown` names them). ``all`` is false when one item is false, else
unknown when one is unknown, else true; ``any`` is true when one item is true, else unknown
when one is unknown, else false. A statement whose condition is false does not apply; one
whose condition is unknown makes the decision CONDITIONAL (see the evaluator).

Operators (the value's type in brackets):

- ``string_equals`` / ``string_not_equals`` [string or list of strings]: equal to one of them.
- ``string_like`` [pattern or list]: the ``*``/``?`` patterns of actions and resources
  (case-sensitive).
- ``numeric_lt``/``lte``/``gt``/``gte``/``eq`` [number]; a context string that reads as a
  number counts as that number.
- ``date_lt``/``lte``/``gt``/``gte`` [ISO-8601 date-time; no offset means UTC].
- ``bool`` [true/false]; the context strings ``"true"``/``"false"`` count too.
- ``ip_address`` / ``not_ip_address`` [CIDR or list of CIDRs].
- ``in`` / ``not_in`` [list of strings, numbers, booleans].
- ``time_of_day`` [``{"start": "HH:MM", "end": "HH:MM", "time_zone": "Area/City"}``]: the
  key's time, in that zone, falls in ``[start, end)`` (a window past midnight wraps).
- ``day_of_week`` [``{"days": ["mon", ...], "time_zone": ...}``].
- ``date_range`` [``{"start": iso, "end": iso}``]: ``[start, end)``.

The time rules read ``request.time`` unless they name another key. A context value that is a
list matches when one of its elements does (``not_*`` operators: when none does). A value of
the wrong type (``10.0.0.x`` for ``ip_address``, a word for ``numeric_lt``) makes the rule
false, whatever its operator: a mistyped context never satisfies a negation.
"""

from __future__ import annotations

import ipaddress
import json
import math
import operator as op
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Callable, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from policyhub.engine.patterns import compile_pattern

MAX_DEPTH = 4  # nested groups
MAX_RULES = 32  # rules in one statement's conditions
MAX_VALUES = 100  # entries of a list value
MAX_KEY = 256
MAX_STRING = 1024
MAX_CONTEXT_KEYS = 256
MAX_CONTEXT_DEPTH = 8

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
TIME_KEY = "request.time"


class ConditionError(ValueError):
    """A condition that cannot be evaluated; ``path`` is relative to the conditions object
    (``all[0].value``; empty for the object itself)."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True, slots=True)
class Unknown:
    """The context lacks these keys."""

    missing: frozenset[str]


Truth = bool | Unknown


@dataclass(frozen=True, slots=True)
class Rule:
    key: str
    operator: str
    # normalized by the operator's parser: hashable, compared structurally
    value: Any

    def evaluate(self, context: Mapping[str, Any]) -> Truth:
        if self.key not in context:
            return Unknown(frozenset((self.key,)))
        positive, test, parse = OPERATORS[self.operator]
        raw = context[self.key]
        elements = raw if isinstance(raw, list) else [raw]
        parsed = [parse(element) for element in elements]
        if not parsed or any(value is _INVALID for value in parsed):
            return False
        hit = any(test(value, self.value) for value in parsed)
        return hit if positive else not hit


@dataclass(frozen=True, slots=True)
class Group:
    mode: str  # "all" | "any"
    items: tuple[Rule | Group, ...]
    # the conditions as written (canonical JSON), shown back in effective statements
    source: str = ""

    def evaluate(self, context: Mapping[str, Any]) -> Truth:
        missing: set[str] = set()
        decisive = self.mode == "any"  # the item value that settles the group
        for item in self.items:
            outcome = item.evaluate(context)
            if isinstance(outcome, Unknown):
                missing |= outcome.missing
            elif outcome is decisive:
                return decisive
        return Unknown(frozenset(missing)) if missing else not decisive


Condition = Group

UNREADABLE_KEY = "(unreadable conditions)"


@dataclass(frozen=True, slots=True)
class _Unreadable(Group):
    """Unknown whatever the context: no context key, even one named like its rule's, makes it hold."""

    def evaluate(self, context: Mapping[str, Any]) -> Truth:
        return Unknown(frozenset((UNREADABLE_KEY,)))


# Stands for stored conditions that no longer parse: never true, never false.
UNREADABLE: Group = _Unreadable("all", (Rule(UNREADABLE_KEY, "string_equals", ("",)),), "{}")


# -- context --------------------------------------------------------------------------------


def flatten_context(context: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted keys for nested objects: ``{"request": {"ip": "10.1.2.3"}}`` gives
    ``request.ip``. A key that already has dots is kept as it is; lists are values."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any, depth: int) -> None:
        if isinstance(value, Mapping) and depth < MAX_CONTEXT_DEPTH:
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item, depth + 1)
        elif prefix:
            flat[prefix] = value

    walk("", context, 0)
    return flat


# -- parsing (write time and index build) -----------------------------------------------------


def parse_conditions(raw: Mapping[str, Any] | None) -> Condition | None:
    """The conditions object of a statement, parsed; None for an empty one. ConditionError
    names what is wrong, by path."""
    if not raw:
        return None
    group = _group(raw, "", 0, [0])
    return Group(group.mode, group.items, json.dumps(raw, sort_keys=True, separators=(",", ":")))


def stored_conditions(raw: Mapping[str, Any] | None) -> Condition | None:
    """As parse_conditions, for conditions already stored: they were checked when written, but
    one that no longer parses (written by another version) never holds, so its statement
    never silently applies: the decision turns CONDITIONAL."""
    try:
        return parse_conditions(raw)
    except ConditionError:
        return UNREADABLE


def _group(raw: Any, path: str, depth: int, counter: list[int]) -> Group:
    if not isinstance(raw, Mapping) or len(raw) != 1 or next(iter(raw)) not in ("all", "any"):
        raise ConditionError(path, 'must be {"all": [...]} or {"any": [...]}')
    if depth >= MAX_DEPTH:
        raise ConditionError(path, f"groups nest at most {MAX_DEPTH} deep")
    mode = next(iter(raw))
    items = raw[mode]
    here = f"{path}.{mode}" if path else mode
    if not isinstance(items, list) or not items:
        raise ConditionError(here, "must be a non-empty list of rules or groups")
    parsed: list[Rule | Group] = []
    for index, item in enumerate(items):
        item_path = f"{here}[{index}]"
        if isinstance(item, Mapping) and ("all" in item or "any" in item):
            parsed.append(_group(item, item_path, depth + 1, counter))
        else:
            counter[0] += 1
            if counter[0] > MAX_RULES:
                raise ConditionError(item_path, f"at most {MAX_RULES} rules per statement")
            parsed.append(_rule(item, item_path))
    return Group(mode, tuple(parsed))


def _rule(raw: Any, path: str) -> Rule:
    if not isinstance(raw, Mapping):
        raise ConditionError(path, "must be a rule {key, operator, value} or a group")
    unknown = sorted(set(raw) - {"key", "operator", "value"})
    if unknown:
        raise ConditionError(f"{path}.{unknown[0]}", "unknown field (a rule has key, operator, value)")
    name = raw.get("operator")
    if not isinstance(name, str) or name not in OPERATORS:
        raise ConditionError(f"{path}.operator", f"must be one of {sorted(OPERATORS)}")
    key = raw.get("key")
    if key is None and name in TIME_OPERATORS:
        key = TIME_KEY
    if not isinstance(key, str) or not key or len(key) > MAX_KEY or not _clean(key):
        raise ConditionError(
            f"{path}.key",
            f"must be a non-empty context key of at most {MAX_KEY} characters, without control characters",
        )
    if "value" not in raw:
        raise ConditionError(f"{path}.value", "is required")
    try:
        value = VALUE_PARSERS[name](raw["value"])
    except ConditionError as error:
        raise ConditionError(f"{path}.value{error.path}", error.message) from None
    return Rule(key, name, value)


def _clean(text: str) -> bool:
    # control, format (bidi overrides), surrogate, private-use, line/paragraph separators
    return text.isprintable() or not any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp") for c in text)


# -- value parsers: request values (the rule's) and context values (the request's) ------------

_INVALID = object()  # a context value of the wrong type


def _fail(message: str, path: str = "") -> ConditionError:
    return ConditionError(path, message)


def _string(value: Any, path: str = "") -> str:
    if not isinstance(value, str) or len(value) > MAX_STRING:
        raise _fail(f"must be a string of at most {MAX_STRING} characters", path)
    return value


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (_string(value),)
    if not isinstance(value, list) or not value or len(value) > MAX_VALUES:
        raise _fail(f"must be a string or a list of 1 to {MAX_VALUES} strings")
    return tuple(_string(item, f"[{index}]") for index, item in enumerate(value))


def _patterns(value: Any) -> tuple[str, ...]:
    patterns = _strings(value)
    for index, pattern in enumerate(patterns):
        if not pattern:
            raise _fail("must not be empty", f"[{index}]" if isinstance(value, list) else "")
    return patterns


def _finite(value: int | float) -> float | None:
    """The number as a finite float; None for NaN, the infinities and integers too large for a float."""
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _number(value: Any) -> float:
    number = None if isinstance(value, bool) or not isinstance(value, int | float) else _finite(value)
    if number is None:
        raise _fail("must be a finite number")
    return number


def _instant(value: Any, path: str = "") -> datetime:
    parsed = _read_instant(value)
    if not isinstance(parsed, datetime):
        raise _fail("must be an ISO-8601 date-time, e.g. 2030-01-31T00:00:00Z", path)
    return parsed


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail("must be true or false")
    return value


def _networks(value: Any) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    texts = _strings(value)
    networks = []
    for index, text in enumerate(texts):
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise _fail(
                "must be an IP address or CIDR, e.g. 10.0.0.0/8", f"[{index}]" if isinstance(value, list) else ""
            ) from None
    return tuple(networks)


def _members(value: Any) -> tuple[tuple[str, Any], ...]:
    if not isinstance(value, list) or not value or len(value) > MAX_VALUES:
        raise _fail(f"must be a list of 1 to {MAX_VALUES} strings, numbers or booleans")
    members = []
    for index, item in enumerate(value):
        member = _member(item)
        if member is _INVALID:
            raise _fail("must be a string, a finite number or a boolean", f"[{index}]")
        members.append(member)
    return tuple(members)


def _zone(value: Mapping[str, Any]) -> str:
    name = value.get("time_zone", "UTC")
    if not isinstance(name, str) or not name or len(name) > 64:
        raise _fail("must be an IANA time zone such as Europe/Paris", ".time_zone")
    try:
        _zone_info(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory of the database ("America")
        raise _fail(f"unknown time zone {name[:64]!r}", ".time_zone") from None
    return name


def _object(value: Any, fields: set[str], required: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(f"must be an object with {sorted(fields)}")
    for name in sorted(set(value) - fields):
        raise _fail(f"unknown field (expected {sorted(fields)})", f".{name}")
    for name in sorted(required - set(value)):
        raise _fail("is required", f".{name}")
    return value


def _clock(text: Any, path: str) -> int:
    if (
        isinstance(text, str)
        and len(text) == 5
        and text.isascii()  # not the other digits int() reads ("٠٩:٣٠") or refuses ("0²:00")
        and text[2] == ":"
        and text[:2].isdigit()
        and text[3:].isdigit()
    ):
        hours, minutes = int(text[:2]), int(text[3:])
        if hours < 24 and minutes < 60:
            return hours * 60 + minutes
    if text == "24:00":
        return 24 * 60
    raise _fail('must be a time of day "HH:MM" (00:00 to 24:00)', path)


def _time_window(value: Any) -> tuple[int, int, str]:
    window = _object(value, {"start", "end", "time_zone"}, {"start", "end"})
    start, end = _clock(window["start"], ".start"), _clock(window["end"], ".end")
    if start == 24 * 60:
        raise _fail('must be a time of day "HH:MM" before 24:00', ".start")
    if start == end:
        raise _fail("must differ from start", ".end")
    return start, end, _zone(window)


def _weekdays(value: Any) -> tuple[frozenset[int], str]:
    spec = _object(value, {"days", "time_zone"}, {"days"})
    days = spec["days"]
    if not isinstance(days, list) or not days or len(days) > 7:
        raise _fail("must be a list of days: mon, tue, wed, thu, fri, sat, sun", ".days")
    found = set()
    for index, day in enumerate(days):
        name = day.lower() if isinstance(day, str) else ""
        if name not in DAYS and name not in FULL_DAYS:
            raise _fail("must be a day: mon, tue, wed, thu, fri, sat, sun (or its full name)", f".days[{index}]")
        found.add(DAYS.index(name[:3]))
    return frozenset(found), _zone(spec)


def _date_range(value: Any) -> tuple[datetime, datetime]:
    spec = _object(value, {"start", "end"}, {"start", "end"})
    start, end = _instant(spec["start"], ".start"), _instant(spec["end"], ".end")
    if end <= start:
        raise _fail("must be after start", ".end")
    return start, end


@lru_cache(maxsize=512)
def _zone_info(name: str) -> ZoneInfo:
    return ZoneInfo(name)


# context readers: a context value, or _INVALID when it has the wrong type


def _read_string(value: Any) -> Any:
    return value if isinstance(value, str) else _INVALID


def _read_number(value: Any) -> Any:
    if isinstance(value, bool):
        return _INVALID
    if isinstance(value, int | float):
        number = _finite(value)
        return _INVALID if number is None else number
    if isinstance(value, str) and len(value) <= 64:
        try:
            number = float(value)
        except ValueError:
            return _INVALID
        return number if math.isfinite(number) else _INVALID
    return _INVALID


def _read_instant(value: Any) -> Any:
    if not isinstance(value, str) or len(value) > 64:
        return _INVALID
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return _INVALID
    try:
        return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
    except OverflowError:
        return _INVALID


def _read_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return _INVALID


def _read_ip(value: Any) -> Any:
    if not isinstance(value, str) or len(value) > 64:
        return _INVALID
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return _INVALID


def _member(value: Any) -> Any:
    """A typed, hashable form: booleans, numbers and strings never equal each other."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        number = _finite(value)
        return _INVALID if number is None else ("number", number)
    if isinstance(value, str):
        return ("string", value)
    return _INVALID


# tests: (parsed context value, rule value) -> bool


def _like(value: str, patterns: tuple[str, ...]) -> bool:
    return any(compile_pattern(pattern)(value) for pattern in patterns)


def _in_network(address: Any, networks: tuple[Any, ...]) -> bool:
    return any(address.version == network.version and address in network for network in networks)


def _in_window(moment: datetime, window: tuple[int, int, str]) -> bool:
    start, end, zone = window
    try:
        local = moment.astimezone(_zone_info(zone))
    except OverflowError:  # an instant at the edge of the calendar has no local time there
        return False
    minute = local.hour * 60 + local.minute
    return start <= minute < end if start < end else minute >= start or minute < end


def _on_day(moment: datetime, spec: tuple[frozenset[int], str]) -> bool:
    days, zone = spec
    try:
        return moment.astimezone(_zone_info(zone)).weekday() in days
    except OverflowError:  # as in _in_window
        return False


# operator -> (positive, test, context reader)
OPERATORS: dict[str, tuple[bool, Callable[[Any, Any], bool], Callable[[Any], Any]]] = {
    "string_equals": (True, lambda v, allowed: v in allowed, _read_string),
    "string_not_equals": (False, lambda v, allowed: v in allowed, _read_string),
    "string_like": (True, _like, _read_string),
    "numeric_lt": (True, op.lt, _read_number),
    "numeric_lte": (True, op.le, _read_number),
    "numeric_gt": (True, op.gt, _read_number),
    "numeric_gte": (True, op.ge, _read_number),
    "numeric_eq": (True, op.eq, _read_number),
    "date_lt": (True, op.lt, _read_instant),
    "date_lte": (True, op.le, _read_instant),
    "date_gt": (True, op.gt, _read_instant),
    "date_gte": (True, op.ge, _read_instant),
    "bool": (True, op.eq, _read_boolean),
    "ip_address": (True, _in_network, _read_ip),
    "not_ip_address": (False, _in_network, _read_ip),
    "in": (True, lambda v, members: v in members, _member),
    "not_in": (False, lambda v, members: v in members, _member),
    "time_of_day": (True, _in_window, _read_instant),
    "day_of_week": (True, _on_day, _read_instant),
    "date_range": (True, lambda moment, span: span[0] <= moment < span[1], _read_instant),
}

VALUE_PARSERS: dict[str, Callable[[Any], Any]] = {
    "string_equals": _strings,
    "string_not_equals": _strings,
    "string_like": _patterns,
    "numeric_lt": _number,
    "numeric_lte": _number,
    "numeric_gt": _number,
    "numeric_gte": _number,
    "numeric_eq": _number,
    "date_lt": _instant,
    "date_lte": _instant,
    "date_gt": _instant,
    "date_gte": _instant,
    "bool": _boolean,
    "ip_address": _networks,
    "not_ip_address": _networks,
    "in": _members,
    "not_in": _members,
    "time_of_day": _time_window,
    "day_of_week": _weekdays,
    "date_range": _date_range,
}

TIME_OPERATORS = frozenset({"time_of_day", "day_of_week", "date_range"})
