"""Time values of the query language: relative expressions (`timediff_*` operators)
and ISO-8601 datetimes (`datetime_*` operators, datetime fields).

Grammar of a relative expression (spaces are ignored, as SpaceONE does):

    expr   := "now" [ "/" anchor ] { sign amount unit }
    anchor := "d" (start of the UTC day) | "w" (Monday 00:00 UTC) | "m" (1st of the month)
    sign   := "+" | "-"
    amount := 1 to 9 digits
    unit   := "s" | "m" (minutes) | "h" | "d" | "w"

Every result is a timezone-aware UTC datetime. Errors are `TimeExprError`
(a ValueError); the compiler turns them into InvalidArgument with a field path.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from policyhub.domain import as_utc

# A bounded amount keeps the arithmetic inside datetime's range for most inputs;
# the remaining overflows are caught in _apply_offsets.
_EXPR = re.compile(r"now(?:/(?P<anchor>[dwm]))?(?P<offsets>(?:[+-][0-9]{1,9}[smhdw])*)")
_OFFSET = re.compile(r"([+-])([0-9]{1,9})([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
MAX_ISO_LENGTH = 64  # longer than any ISO-8601 datetime; bounds the parser's input


class TimeExprError(ValueError):
    """The text is not a valid time expression or ISO-8601 datetime."""


def parse_timediff(text: object, now: datetime) -> datetime:
    """Resolve a relative expression such as `now/d-2w+1h` against `now`."""
    if not isinstance(text, str):
        raise TimeExprError("must be a string such as 'now-5d'")
    match = _EXPR.fullmatch(text.replace(" ", ""))
    if match is None:
        raise TimeExprError(
            f"invalid time expression {text[:64]!r} (expected e.g. 'now', 'now/d', 'now-5d', 'now/w+1h')"
        )
    start = _truncate(as_utc(now), match.group("anchor"))
    return _apply_offsets(start, match.group("offsets"))


def parse_iso_datetime(text: object) -> datetime:
    """Parse an ISO-8601 datetime; a value without an offset is taken as UTC."""
    if not isinstance(text, str) or len(text) > MAX_ISO_LENGTH:
        raise TimeExprError("must be an ISO-8601 datetime string such as '2024-01-31T12:00:00Z'")
    try:
        return as_utc(datetime.fromisoformat(text.strip()))
    except (ValueError, OverflowError):  # OverflowError: an offset pushes it out of range
        raise TimeExprError(f"invalid ISO-8601 datetime {text!r}") from None


def _truncate(moment: datetime, anchor: str | None) -> datetime:
    if anchor is None:
        return moment
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if anchor == "d":
        return day
    if anchor == "w":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _apply_offsets(start: datetime, offsets: str) -> datetime:
    result = start
    try:
        for sign, amount, unit in _OFFSET.findall(offsets):
            delta = timedelta(**{_UNITS[unit]: int(amount)})
            result = result + delta if sign == "+" else result - delta
    except OverflowError:
        raise TimeExprError("time expression is out of the supported date range") from None
    return result
