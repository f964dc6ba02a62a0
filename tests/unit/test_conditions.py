"""Statement conditions (policyhub.engine.conditions), against its module docstring: every
operator true, false and with context values of the wrong type; list context values; the
three-valued all/any logic; context flattening; every parse error with its path and message;
conditions that no longer parse; the canonical source."""

from __future__ import annotations

import json
from typing import Any

import pytest

from policyhub.engine.conditions import (
    MAX_CONTEXT_DEPTH,
    MAX_DEPTH,
    MAX_KEY,
    MAX_RULES,
    MAX_STRING,
    MAX_VALUES,
    OPERATORS,
    TIME_KEY,
    UNREADABLE,
    ConditionError,
    Group,
    Rule,
    Unknown,
    flatten_context,
    parse_conditions,
    stored_conditions,
)

MISSING = object()  # the context lacks the key


def one(operator: str, value: Any, key: str | None = "k") -> Group:
    raw: dict[str, Any] = {"operator": operator, "value": value}
    if key is not None:
        raw["key"] = key
    parsed = parse_conditions({"all": [raw]})
    assert parsed is not None
    return parsed


def outcome(operator: str, value: Any, context_value: Any, key: str | None = "k") -> bool | Unknown:
    group = one(operator, value, key)
    context = {} if context_value is MISSING else {key or TIME_KEY: context_value}
    return group.evaluate(context)


# ============================================================================ operators, one table

NAN, INF = float("nan"), float("inf")
WINDOW = {"start": "09:00", "end": "17:00"}
NIGHT = {"start": "22:00", "end": "06:00"}
EVENING = {"start": "20:00", "end": "24:00"}
JANUARY = {"start": "2024-01-01T00:00:00Z", "end": "2024-02-01T00:00:00Z"}
NY_WORK = {"start": "09:00", "end": "17:00", "time_zone": "America/New_York"}
NY_ONE_AM = {"start": "01:00", "end": "02:00", "time_zone": "America/New_York"}
NY_SKIPPED = {"start": "02:00", "end": "03:00", "time_zone": "America/New_York"}

# (operator, rule value, context value, expected)
CASES: list[tuple[str, Any, Any, bool]] = [
    # -- string_equals
    ("string_equals", "a", "a", True),
    ("string_equals", ["a", "b"], "b", True),
    ("string_equals", "a", "b", False),
    ("string_equals", "a", "A", False),  # case-sensitive
    ("string_equals", "a", "a ", False),
    ("string_equals", "1", 1, False),  # wrong type
    ("string_equals", "a", None, False),
    ("string_equals", "a", {"a": "a"}, False),
    ("string_equals", "a", ["x", "a"], True),  # a list: one element
    ("string_equals", "a", ["x", "y"], False),
    ("string_equals", "a", ["a", 1], False),  # one element of the wrong type: false
    # -- string_not_equals
    ("string_not_equals", "a", "b", True),
    ("string_not_equals", "a", "a", False),
    ("string_not_equals", ["a", "b"], "b", False),
    ("string_not_equals", ["a", "b"], "c", True),
    ("string_not_equals", "a", "A", True),
    ("string_not_equals", "a", 1, False),  # wrong type: false, even negated
    ("string_not_equals", "a", None, False),
    ("string_not_equals", "a", True, False),
    ("string_not_equals", "a", ["x", "y"], True),  # a list: none of its elements
    ("string_not_equals", "a", ["x", "a"], False),
    ("string_not_equals", "a", ["x", 2], False),
    # -- string_like
    ("string_like", "r/*", "r/x/y", True),
    ("string_like", "r/*", "r/", True),
    ("string_like", "*", "", True),
    ("string_like", "r/?", "r/x", True),
    ("string_like", "r/?", "r/xy", False),
    ("string_like", "r/?", "r/", False),
    ("string_like", "a*c", "abbbc", True),
    ("string_like", "a*c", "abbbd", False),
    ("string_like", "R/*", "r/x", False),  # case-sensitive
    ("string_like", "r/x", "r/x", True),
    ("string_like", ["q/*", "r/?"], "r/z", True),
    ("string_like", ["q/*", "r/?"], "s/z", False),
    ("string_like", "a.b", "axb", False),  # only * and ? are special
    ("string_like", "*", 3, False),  # wrong type
    ("string_like", "*", None, False),
    ("string_like", "r/*", ["s/1", "r/2"], True),
    ("string_like", "r/*", ["s/1", "s/2"], False),
    # -- numeric_lt
    ("numeric_lt", 10, 9, True),
    ("numeric_lt", 10, 9.999, True),
    ("numeric_lt", 10, 10, False),
    ("numeric_lt", 10, 11, False),
    ("numeric_lt", 10, -1e300, True),
    ("numeric_lt", 10, "9.5", True),  # a numeric string counts as its number
    ("numeric_lt", 10, "1e1", False),
    ("numeric_lt", 10, "-3", True),
    ("numeric_lt", 10, "abc", False),  # wrong type
    ("numeric_lt", 10, "", False),
    ("numeric_lt", 10, True, False),  # a boolean is not a number
    ("numeric_lt", 10, NAN, False),
    ("numeric_lt", 10, -INF, False),
    ("numeric_lt", 10, "nan", False),
    ("numeric_lt", 10, "-inf", False),
    ("numeric_lt", 10, "-Infinity", False),
    ("numeric_lt", 10, "-1e400", False),  # reads as -inf
    ("numeric_lt", 10, -(10**400), False),  # no float holds it
    ("numeric_lt", 10, "9" * 65, False),  # longer than a number is written
    ("numeric_lt", 10, None, False),
    ("numeric_lt", 10, [20, 5], True),
    ("numeric_lt", 10, [20, 30], False),
    ("numeric_lt", 10, [5, "x"], False),
    # -- numeric_lte
    ("numeric_lte", 10, 10, True),
    ("numeric_lte", 10, "10", True),
    ("numeric_lte", 10, 10.5, False),
    ("numeric_lte", 10, "ten", False),
    ("numeric_lte", 10, False, False),
    # -- numeric_gt
    ("numeric_gt", 10, 11, True),
    ("numeric_gt", 10, "10.5", True),
    ("numeric_gt", 10, 10, False),
    ("numeric_gt", 10, INF, False),  # not finite: wrong type, not "greater"
    ("numeric_gt", 10, "inf", False),
    ("numeric_gt", 10, 10**400, False),
    ("numeric_gt", 10, "1e400", False),
    ("numeric_gt", -0.5, 0, True),
    # -- numeric_gte
    ("numeric_gte", 10, 10, True),
    ("numeric_gte", 10, 9.99, False),
    ("numeric_gte", 10, " 10 ", True),  # float() reads surrounding spaces
    ("numeric_gte", 10, [1, 10], True),
    # -- numeric_eq
    ("numeric_eq", 10, 10, True),
    ("numeric_eq", 10, 10.0, True),
    ("numeric_eq", 10, "10", True),
    ("numeric_eq", 10, "10.0", True),
    ("numeric_eq", 10, "1e1", True),
    ("numeric_eq", 10, 10.000001, False),
    ("numeric_eq", 1, True, False),  # True is not 1
    ("numeric_eq", 0, "0x0", False),
    ("numeric_eq", 0, NAN, False),
    # -- date_lt
    ("date_lt", "2030-01-01T00:00:00Z", "2029-12-31T23:59:59Z", True),
    ("date_lt", "2030-01-01T00:00:00Z", "2030-01-01T00:00:00Z", False),
    ("date_lt", "2030-01-01T00:00:00Z", "2030-01-01T00:00:01Z", False),
    ("date_lt", "2030-01-01T00:00:00Z", "2030-01-01T00:30:00+01:00", True),  # 23:30 UTC the day before
    ("date_lt", "2030-01-01T00:00:00Z", "2029-12-31T19:30:00-05:00", False),  # 00:30 UTC
    ("date_lt", "2030-01-01T00:00:00Z", "2029-12-31T23:59:59", True),  # no offset: UTC
    ("date_lt", "2030-01-01T00:00:00Z", "2030-01-01T00:00:00", False),
    ("date_lt", "2030-01-01T00:00:00Z", "2029-12-31", True),  # a date: its midnight, UTC
    ("date_lt", "2030-01-01T00:00:00+02:00", "2029-12-31T22:30:00Z", False),  # the rule's offset counts
    ("date_lt", "2030-01-01T00:00:00+02:00", "2029-12-31T21:59:59Z", True),
    ("date_lt", "2030-01-01T00:00:00", "2029-12-31T23:59:59Z", True),  # rule without offset: UTC
    ("date_lt", "2030-01-01T00:00:00Z", "2029-12-31T23:59:59z", True),
    ("date_lt", "2030-01-01T00:00:00Z", "yesterday", False),  # wrong type
    ("date_lt", "2030-01-01T00:00:00Z", 1234567890, False),
    ("date_lt", "2030-01-01T00:00:00Z", "2029-13-01T00:00:00Z", False),
    ("date_lt", "2030-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00", False),  # before year 1 in UTC
    ("date_lt", "2030-01-01T00:00:00Z", None, False),
    ("date_lt", "2030-01-01T00:00:00Z", ["2031-01-01", "2029-01-01"], True),
    # -- date_lte / date_gt / date_gte
    ("date_lte", "2030-01-01T00:00:00Z", "2030-01-01T00:00:00Z", True),
    ("date_lte", "2030-01-01T00:00:00Z", "2030-01-01T01:00:00+01:00", True),  # the same instant
    ("date_lte", "2030-01-01T00:00:00Z", "2030-01-01T00:00:00.000001Z", False),
    ("date_lte", "2030-01-01T00:00:00Z", "soon", False),
    ("date_gt", "2030-01-01T00:00:00Z", "2030-01-01T00:00:01Z", True),
    ("date_gt", "2030-01-01T00:00:00Z", "2030-01-01T00:00:00Z", False),
    ("date_gt", "2030-01-01T00:00:00+02:00", "2029-12-31T23:00:00Z", True),  # 22:00 UTC < 23:00 UTC
    ("date_gt", "2030-01-01T00:00:00Z", "2029-12-31T20:00:00-05:00", True),  # 01:00 UTC
    ("date_gt", "2030-01-01T00:00:00Z", True, False),
    ("date_gte", "2030-01-01T00:00:00Z", "2030-01-01T00:00:00Z", True),
    ("date_gte", "2030-01-01T00:00:00Z", "2029-12-31T23:59:59.999999Z", False),
    ("date_gte", "2030-01-01T00:00:00Z", "2030-01-01T05:00:00+05:00", True),
    ("date_gte", "2030-01-01T00:00:00Z", "2030-01-01T05:00:00+05:01", False),
    # -- bool
    ("bool", True, True, True),
    ("bool", True, False, False),
    ("bool", True, "true", True),
    ("bool", True, "True", True),
    ("bool", True, "false", False),
    ("bool", True, 1, False),  # 1 is not true
    ("bool", True, "yes", False),
    ("bool", True, None, False),
    ("bool", False, False, True),
    ("bool", False, "false", True),
    ("bool", False, "FALSE", True),
    ("bool", False, "true", False),
    ("bool", False, 0, False),  # 0 is not false
    ("bool", False, "", False),
    ("bool", True, [False, "true"], True),
    ("bool", True, [False, "false"], False),
    # -- ip_address
    ("ip_address", "10.0.0.0/8", "10.1.2.3", True),
    ("ip_address", "10.0.0.0/8", "11.0.0.1", False),
    ("ip_address", "10.0.0.0/8", "10.0.0.x", False),  # wrong type
    ("ip_address", "10.0.0.0/8", "10.0.0.0/8", False),  # a network is not an address
    ("ip_address", "10.0.0.0/8", 167772161, False),
    ("ip_address", "10.0.0.0/8", None, False),
    ("ip_address", "10.1.2.3/8", "10.200.0.1", True),  # host bits are ignored
    ("ip_address", "192.168.1.1", "192.168.1.1", True),  # an address: a /32
    ("ip_address", "192.168.1.1", "192.168.1.2", False),
    ("ip_address", "2001:db8::/32", "2001:db8::1", True),
    ("ip_address", "2001:db8::/32", "2001:DB8:0:0::ffff", True),
    ("ip_address", "2001:db8::/32", "2001:db9::1", False),
    ("ip_address", "::/0", "10.0.0.1", False),  # mixed versions never match
    ("ip_address", "0.0.0.0/0", "::1", False),
    ("ip_address", "0.0.0.0/0", "255.255.255.255", True),
    ("ip_address", "10.0.0.0/8", "::ffff:10.0.0.1", False),  # an IPv6 address, even IPv4-mapped
    ("ip_address", ["10.0.0.0/8", "2001:db8::/32"], "2001:db8::5", True),
    ("ip_address", ["10.0.0.0/8", "2001:db8::/32"], "172.16.0.1", False),
    ("ip_address", "10.0.0.0/8", ["172.16.0.1", "10.9.9.9"], True),
    ("ip_address", "10.0.0.0/8", ["172.16.0.1", "172.16.0.2"], False),
    ("ip_address", "10.0.0.0/8", ["10.9.9.9", "nope"], False),
    # -- not_ip_address
    ("not_ip_address", "10.0.0.0/8", "11.0.0.1", True),
    ("not_ip_address", "10.0.0.0/8", "10.0.0.1", False),
    ("not_ip_address", "10.0.0.0/8", "10.0.0.x", False),  # wrong type: false, even negated
    ("not_ip_address", "10.0.0.0/8", "", False),
    ("not_ip_address", "10.0.0.0/8", 42, False),
    ("not_ip_address", "10.0.0.0/8", "::1", True),  # an IPv6 address is in no IPv4 network
    ("not_ip_address", "::/0", "10.0.0.1", True),
    ("not_ip_address", "::/0", "::1", False),
    ("not_ip_address", ["10.0.0.0/8", "fc00::/7"], "fd00::1", False),
    ("not_ip_address", ["10.0.0.0/8", "fc00::/7"], "fe80::1", True),
    ("not_ip_address", "10.0.0.0/8", ["11.0.0.1", "12.0.0.1"], True),  # a list: none of them
    ("not_ip_address", "10.0.0.0/8", ["11.0.0.1", "10.0.0.1"], False),
    ("not_ip_address", "10.0.0.0/8", ["11.0.0.1", "bogus"], False),
    # -- in: typed members
    ("in", ["a", 1, True], "a", True),
    ("in", ["a", 1, True], 1, True),
    ("in", ["a", 1, True], 1.0, True),
    ("in", ["a", 1, True], True, True),
    ("in", ["a", 1, True], "1", False),
    ("in", ["a", 1, True], "True", False),
    ("in", ["a", 1, True], 2, False),
    ("in", ["a", 1, True], False, False),
    ("in", [1], True, False),  # True is not 1
    ("in", [0], False, False),  # False is not 0
    ("in", [True], 1, False),
    ("in", ["1"], 1, False),  # "1" is not 1
    ("in", [1], "1", False),
    ("in", [1.5], 1.5, True),
    ("in", ["a"], "A", False),
    ("in", ["a"], None, False),  # wrong type
    ("in", [1], NAN, False),
    ("in", [1], {"a": 1}, False),
    ("in", ["a", 1], ["z", 1], True),
    ("in", ["a", 1], ["z", 2], False),
    ("in", ["a", 1], ["a", None], False),
    # -- not_in
    ("not_in", [1, "a"], 2, True),
    ("not_in", [1, "a"], "b", True),
    ("not_in", [1, "a"], 1, False),
    ("not_in", [1, "a"], 1.0, False),
    ("not_in", [1, "a"], "a", False),
    ("not_in", [1, "a"], True, True),  # True is not 1
    ("not_in", [1, "a"], "1", True),  # "1" is not 1
    ("not_in", [True], 1, True),
    ("not_in", [True], True, False),
    ("not_in", [1, "a"], None, False),  # wrong type: false, even negated
    ("not_in", [1, "a"], NAN, False),
    ("not_in", [1, "a"], INF, False),
    ("not_in", [1, "a"], {"x": 1}, False),
    ("not_in", [1, "a"], [2, 3], True),
    ("not_in", [1, "a"], [2, 1], False),
    ("not_in", [1, "a"], [2, [3]], False),
    # -- time_of_day: [start, end), UTC by default
    ("time_of_day", WINDOW, "2024-05-01T09:00:00Z", True),
    ("time_of_day", WINDOW, "2024-05-01T16:59:59Z", True),
    ("time_of_day", WINDOW, "2024-05-01T17:00:00Z", False),
    ("time_of_day", WINDOW, "2024-05-01T08:59:59Z", False),
    ("time_of_day", WINDOW, "2024-05-01T12:00:00", True),  # no offset: UTC
    ("time_of_day", WINDOW, "2024-05-01T10:00:00+02:00", False),  # 08:00 UTC
    ("time_of_day", WINDOW, "2024-05-01T18:30:00+02:00", True),  # 16:30 UTC
    ("time_of_day", WINDOW, "noon", False),  # wrong type
    ("time_of_day", WINDOW, 43200, False),
    ("time_of_day", WINDOW, ["2024-05-01T03:00:00Z", "2024-05-01T12:00:00Z"], True),
    ("time_of_day", WINDOW, ["2024-05-01T03:00:00Z", "2024-05-01T20:00:00Z"], False),
    # past midnight: wraps
    ("time_of_day", NIGHT, "2024-05-01T22:00:00Z", True),
    ("time_of_day", NIGHT, "2024-05-01T23:59:00Z", True),
    ("time_of_day", NIGHT, "2024-05-01T00:00:00Z", True),
    ("time_of_day", NIGHT, "2024-05-01T05:59:59Z", True),
    ("time_of_day", NIGHT, "2024-05-01T06:00:00Z", False),
    ("time_of_day", NIGHT, "2024-05-01T12:00:00Z", False),
    ("time_of_day", NIGHT, "2024-05-01T21:59:00Z", False),
    # 24:00: to the end of the day
    ("time_of_day", EVENING, "2024-05-01T20:00:00Z", True),
    ("time_of_day", EVENING, "2024-05-01T23:59:59Z", True),
    ("time_of_day", EVENING, "2024-05-02T00:00:00Z", False),
    ("time_of_day", EVENING, "2024-05-01T19:59:59Z", False),
    ("time_of_day", {"start": "00:00", "end": "24:00"}, "2024-05-01T00:00:00Z", True),
    ("time_of_day", {"start": "00:00", "end": "24:00"}, "2024-05-01T23:59:59Z", True),
    # a zone: Paris is UTC+2 in May
    ("time_of_day", {**WINDOW, "time_zone": "Europe/Paris"}, "2024-05-01T07:30:00Z", True),
    ("time_of_day", {**WINDOW, "time_zone": "Europe/Paris"}, "2024-05-01T06:59:00Z", False),
    ("time_of_day", {**WINDOW, "time_zone": "Europe/Paris"}, "2024-05-01T15:30:00Z", False),
    ("time_of_day", {**WINDOW, "time_zone": "Asia/Kolkata"}, "2024-05-01T03:30:00Z", True),  # +05:30
    ("time_of_day", {**WINDOW, "time_zone": "Asia/Kolkata"}, "2024-05-01T03:29:00Z", False),
    # America/New_York, 2024-03-10: 02:00 EST becomes 03:00 EDT (UTC-5 -> UTC-4)
    ("time_of_day", NY_WORK, "2024-03-09T13:30:00Z", False),  # 08:30 EST
    ("time_of_day", NY_WORK, "2024-03-09T14:00:00Z", True),  # 09:00 EST
    ("time_of_day", NY_WORK, "2024-03-10T13:30:00Z", True),  # 09:30 EDT: the same UTC time, now inside
    ("time_of_day", NY_WORK, "2024-03-10T12:59:00Z", False),  # 08:59 EDT
    ("time_of_day", NY_WORK, "2024-03-10T20:59:00Z", True),  # 16:59 EDT
    ("time_of_day", NY_WORK, "2024-03-10T21:00:00Z", False),  # 17:00 EDT
    ("time_of_day", NY_SKIPPED, "2024-03-10T06:59:00Z", False),  # 01:59 EST
    ("time_of_day", NY_SKIPPED, "2024-03-10T07:00:00Z", False),  # 03:00 EDT: 02:xx never happens
    ("time_of_day", NY_SKIPPED, "2024-03-11T06:30:00Z", True),  # 02:30 EDT the next day
    # 2024-11-03: 02:00 EDT becomes 01:00 EST, 01:xx happens twice
    ("time_of_day", NY_ONE_AM, "2024-11-03T05:30:00Z", True),  # 01:30 EDT
    ("time_of_day", NY_ONE_AM, "2024-11-03T06:30:00Z", True),  # 01:30 EST
    ("time_of_day", NY_ONE_AM, "2024-11-03T07:30:00Z", False),  # 02:30 EST
    ("time_of_day", NY_ONE_AM, "2024-11-03T04:59:00Z", False),  # 00:59 EDT
    # instants at the edge of the calendar have no local time there: false, not an error
    ("time_of_day", {**WINDOW, "time_zone": "Pacific/Kiritimati"}, "9999-12-31T23:59:00Z", False),
    ("time_of_day", {**NIGHT, "time_zone": "America/New_York"}, "0001-01-01T00:00:00Z", False),
    # -- day_of_week (2024-05-06 is a Monday)
    ("day_of_week", {"days": ["mon", "fri"]}, "2024-05-06T12:00:00Z", True),
    ("day_of_week", {"days": ["mon", "fri"]}, "2024-05-10T00:00:00Z", True),
    ("day_of_week", {"days": ["mon", "fri"]}, "2024-05-07T12:00:00Z", False),
    ("day_of_week", {"days": ["mon", "fri"]}, "2024-05-06T23:00:00-02:00", False),  # Tuesday 01:00 UTC
    ("day_of_week", {"days": ["Monday"]}, "2024-05-06T00:00:00Z", True),  # full names, any case
    ("day_of_week", {"days": ["SUN"]}, "2024-05-05T23:59:59Z", True),
    ("day_of_week", {"days": ["sat", "sun"]}, "2024-05-06T00:00:00Z", False),
    # Tokyo (UTC+9): Sunday 20:00 UTC is Monday there; Monday 16:00 UTC is Tuesday there
    ("day_of_week", {"days": ["mon"], "time_zone": "Asia/Tokyo"}, "2024-05-05T20:00:00Z", True),
    ("day_of_week", {"days": ["mon"], "time_zone": "Asia/Tokyo"}, "2024-05-06T16:00:00Z", False),
    ("day_of_week", {"days": ["mon"], "time_zone": "Asia/Tokyo"}, "2024-05-06T14:59:59Z", True),
    # Honolulu (UTC-10): Monday 05:00 UTC is still Sunday there
    ("day_of_week", {"days": ["sun"], "time_zone": "Pacific/Honolulu"}, "2024-05-06T05:00:00Z", True),
    ("day_of_week", {"days": ["mon"], "time_zone": "Pacific/Honolulu"}, "2024-05-06T05:00:00Z", False),
    ("day_of_week", {"days": ["mon"]}, "monday", False),  # wrong type
    ("day_of_week", {"days": ["mon"]}, None, False),
    ("day_of_week", {"days": ["mon"]}, ["2024-05-07T00:00:00Z", "2024-05-06T00:00:00Z"], True),
    ("day_of_week", {"days": ["fri"], "time_zone": "Pacific/Kiritimati"}, "9999-12-31T23:59:00Z", False),
    # -- date_range: [start, end)
    ("date_range", JANUARY, "2024-01-01T00:00:00Z", True),
    ("date_range", JANUARY, "2024-01-15T12:00:00Z", True),
    ("date_range", JANUARY, "2024-01-31T23:59:59.999999Z", True),
    ("date_range", JANUARY, "2024-02-01T00:00:00Z", False),
    ("date_range", JANUARY, "2023-12-31T23:59:59Z", False),
    ("date_range", JANUARY, "2024-02-01T00:30:00+01:00", True),  # 23:30 UTC on Jan 31
    ("date_range", JANUARY, "2024-01-01T00:30:00+01:00", False),  # 23:30 UTC on Dec 31
    ("date_range", JANUARY, "2024-01-10", True),
    ("date_range", {"start": "2024-01-01T00:00:00+05:00", "end": "2024-01-02T00:00:00Z"}, "2023-12-31T19:00:00Z", True),
    (
        "date_range",
        {"start": "2024-01-01T00:00:00+05:00", "end": "2024-01-02T00:00:00Z"},
        "2023-12-31T18:59:59Z",
        False,
    ),
    ("date_range", JANUARY, "January", False),  # wrong type
    ("date_range", JANUARY, 1704067200, False),
    ("date_range", JANUARY, ["2023-01-01T00:00:00Z", "2024-01-02T00:00:00Z"], True),
]


@pytest.mark.parametrize(
    "operator, value, context_value, expected", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_operator(operator, value, context_value, expected):
    key = None if operator in ("time_of_day", "day_of_week", "date_range") else "k"
    assert outcome(operator, value, context_value, key) is expected


def test_every_operator_has_true_false_and_wrong_type_cases():
    wrong = (None, {"x": 1}, NAN, [[]])
    for name in OPERATORS:
        expectations = {expected for op, _, _, expected in CASES if op == name}
        assert expectations == {True, False}, name
        value = next(v for op, v, _, _ in CASES if op == name)
        key = None if name in ("time_of_day", "day_of_week", "date_range") else "k"
        # values of no operator's type: always false, negations included
        for context_value in wrong:
            assert outcome(name, value, context_value, key) is False, (name, context_value)


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_a_missing_key_is_unknown_naming_it(name):
    value = next(v for op, v, _, _ in CASES if op == name)
    key = None if name in ("time_of_day", "day_of_week", "date_range") else "some.key"
    group = one(name, value, key)
    assert group.evaluate({}) == Unknown(frozenset({key or TIME_KEY}))
    assert group.evaluate({"other": "x", "some": {"key": "nested, not flattened"}}) == Unknown(
        frozenset({key or TIME_KEY})
    )


@pytest.mark.parametrize("name", ["string_equals", "string_not_equals", "ip_address", "not_ip_address", "in", "not_in"])
def test_an_empty_list_context_value_is_false_even_negated(name):
    # An empty list has no element that matches, and none that does not: false either way
    # (conservative: an empty list never satisfies a negation).
    value = next(v for op, v, _, _ in CASES if op == name)
    assert outcome(name, value, []) is False


def test_a_present_key_with_a_null_value_is_not_missing():
    assert one("string_equals", "a").evaluate({"k": None}) is False
    assert one("string_not_equals", "a").evaluate({"k": None}) is False


# ============================================================================ time rules read request.time


@pytest.mark.parametrize(
    "operator, value, inside",
    [
        ("time_of_day", WINDOW, "2024-05-01T12:00:00Z"),
        ("day_of_week", {"days": ["wed"]}, "2024-05-01T12:00:00Z"),
        ("date_range", JANUARY, "2024-01-05T00:00:00Z"),
    ],
)
def test_time_rules_read_request_time_unless_they_name_a_key(operator, value, inside):
    default = one(operator, value, key=None)
    assert default.items[0].key == TIME_KEY == "request.time"
    assert default.evaluate({"request.time": inside}) is True
    assert default.evaluate({"request.time": "2000-06-06T03:00:00Z"}) is False
    assert default.evaluate({"session.start": inside}) == Unknown(frozenset({"request.time"}))
    named = one(operator, value, key="session.start")
    assert named.evaluate({"session.start": inside}) is True
    assert named.evaluate({"request.time": inside}) == Unknown(frozenset({"session.start"}))


def test_other_operators_need_a_key():
    with pytest.raises(ConditionError) as info:
        parse_conditions({"all": [{"operator": "date_lt", "value": "2030-01-01T00:00:00Z"}]})
    assert info.value.path == "all[0].key"


# ============================================================================ three-valued logic

T, F, U = "T", "F", "U"


def _item(state: str, key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A rule on `key` and the context that makes it true (T), false (F) or unknown (U)."""
    rule = {"key": key, "operator": "string_equals", "value": "yes"}
    context = {T: {key: "yes"}, F: {key: "no"}, U: {}}[state]
    return rule, context


ALL_TABLE = {
    (T, T): T, (T, F): F, (T, U): U,
    (F, T): F, (F, F): F, (F, U): F,
    (U, T): U, (U, F): F, (U, U): U,
}  # fmt: skip
ANY_TABLE = {
    (T, T): T, (T, F): T, (T, U): T,
    (F, T): T, (F, F): F, (F, U): U,
    (U, T): T, (U, F): U, (U, U): U,
}  # fmt: skip


@pytest.mark.parametrize("mode, table", [("all", ALL_TABLE), ("any", ANY_TABLE)])
@pytest.mark.parametrize("left, right", sorted(ALL_TABLE))
def test_truth_tables(mode, table, left, right):
    (rule_a, context_a), (rule_b, context_b) = _item(left, "a"), _item(right, "b")
    group = parse_conditions({mode: [rule_a, rule_b]})
    assert group is not None
    result = group.evaluate({**context_a, **context_b})
    expected = table[(left, right)]
    if expected == U:
        # the unknown items, and only those, are named
        assert result == Unknown(frozenset(key for key, state in (("a", left), ("b", right)) if state == U))
    else:
        assert result is (expected == T)


@pytest.mark.parametrize("mode", ["all", "any"])
@pytest.mark.parametrize("state", [T, F, U])
def test_a_group_of_one_is_its_item(mode, state):
    rule, context = _item(state, "a")
    group = parse_conditions({mode: [rule]})
    assert group is not None
    assert group.evaluate(context) == {T: True, F: False, U: Unknown(frozenset({"a"}))}[state]


def rule_on(key: str) -> dict[str, Any]:
    return {"key": key, "operator": "string_equals", "value": "yes"}


@pytest.mark.parametrize(
    "conditions, context, expected",
    [
        # unions of missing keys, in every position
        ({"all": [rule_on("a"), rule_on("b"), rule_on("c")]}, {"b": "yes"}, {"a", "c"}),
        ({"any": [rule_on("a"), rule_on("b"), rule_on("c")]}, {"b": "no"}, {"a", "c"}),
        ({"all": [rule_on("a"), rule_on("a")]}, {}, {"a"}),
        # a decisive item wins over unknown ones, before or after them
        ({"all": [rule_on("a"), rule_on("b"), rule_on("c")]}, {"c": "no"}, False),
        ({"all": [rule_on("c"), rule_on("a"), rule_on("b")]}, {"c": "no"}, False),
        ({"any": [rule_on("a"), rule_on("b"), rule_on("c")]}, {"c": "yes"}, True),
        ({"any": [rule_on("c"), rule_on("a")]}, {"c": "yes"}, True),
        # nested groups
        ({"any": [{"all": [rule_on("a"), rule_on("b")]}, rule_on("c")]}, {"a": "yes", "b": "yes", "c": "no"}, True),
        ({"any": [{"all": [rule_on("a"), rule_on("b")]}, rule_on("c")]}, {"a": "yes", "b": "no", "c": "no"}, False),
        ({"any": [{"all": [rule_on("a"), rule_on("b")]}, rule_on("c")]}, {"a": "yes", "c": "no"}, {"b"}),
        ({"any": [{"all": [rule_on("a"), rule_on("b")]}, rule_on("c")]}, {"a": "no"}, {"c"}),
        ({"any": [{"all": [rule_on("a"), rule_on("b")]}, rule_on("c")]}, {}, {"a", "b", "c"}),
        ({"any": [{"all": [rule_on("a"), rule_on("b")]}, rule_on("c")]}, {"c": "yes"}, True),
        (
            {"all": [{"any": [rule_on("a"), rule_on("b")]}, {"any": [rule_on("c"), rule_on("d")]}]},
            {"b": "no"},
            {"a", "c", "d"},
        ),
        (
            {"all": [{"any": [rule_on("a"), rule_on("b")]}, {"any": [rule_on("c"), rule_on("d")]}]},
            {"a": "no", "b": "no"},
            False,
        ),
        ({"all": [{"any": [rule_on("a"), rule_on("b")]}, {"any": [rule_on("c")]}]}, {"b": "yes"}, {"c"}),
        ({"all": [{"all": [{"all": [{"any": [rule_on("deep")]}]}]}]}, {}, {"deep"}),
        ({"all": [{"all": [{"all": [{"any": [rule_on("deep")]}]}]}]}, {"deep": "yes"}, True),
        ({"any": [{"any": [{"any": [{"all": [rule_on("deep")]}]}]}]}, {"deep": "no"}, False),
    ],
)
def test_groups(conditions, context, expected):
    group = parse_conditions(conditions)
    assert group is not None
    result = group.evaluate(context)
    if isinstance(expected, set):
        assert result == Unknown(frozenset(expected))
    else:
        assert result is expected


# ============================================================================ context flattening


@pytest.mark.parametrize(
    "context, flat",
    [
        ({}, {}),
        ({"a": 1}, {"a": 1}),
        ({"request": {"ip": "10.1.2.3"}}, {"request.ip": "10.1.2.3"}),
        (
            {"request": {"ip": "10.1.2.3", "user": {"id": "u1", "tier": 3}}, "flag": True},
            {"request.ip": "10.1.2.3", "request.user.id": "u1", "request.user.tier": 3, "flag": True},
        ),
        ({"request.ip": "10.1.2.3"}, {"request.ip": "10.1.2.3"}),  # dotted keys are kept
        ({"a": {"b.c": 1}}, {"a.b.c": 1}),
        ({"a": [1, {"b": 2}], "c": []}, {"a": [1, {"b": 2}], "c": []}),  # lists are values
        ({"a": None, "b": "", "c": 0}, {"a": None, "b": "", "c": 0}),
        ({"a": {}, "b": 1}, {"b": 1}),  # an empty object has no keys
        ({1: "x"}, {"1": "x"}),
    ],
)
def test_flatten_context(context, flat):
    assert flatten_context(context) == flat


def test_flatten_context_stops_at_its_depth_cap():
    deep: Any = "leaf"
    for level in reversed(range(1, 11)):
        deep = {f"l{level}": deep}
    flat = flatten_context(deep)
    capped = ".".join(f"l{level}" for level in range(1, MAX_CONTEXT_DEPTH + 1))
    assert MAX_CONTEXT_DEPTH == 8
    # beyond the cap the rest stays one (object) value
    assert flat == {capped: {"l9": {"l10": "leaf"}}}
    # which no operator reads
    assert one("string_equals", "leaf", key=capped + ".l9.l10").evaluate(flat) == Unknown(
        frozenset({capped + ".l9.l10"})
    )
    assert one("string_not_equals", "leaf", key=capped).evaluate(flat) is False
    shallow: Any = "leaf"
    for level in reversed(range(1, MAX_CONTEXT_DEPTH + 1)):
        shallow = {f"l{level}": shallow}
    assert flatten_context(shallow) == {capped: "leaf"}


def test_flattened_context_drives_rules():
    group = parse_conditions(
        {
            "all": [
                {"key": "request.ip", "operator": "ip_address", "value": "10.0.0.0/8"},
                {"key": "resource.tags", "operator": "string_equals", "value": "prod"},
            ]
        }
    )
    assert group is not None
    context = flatten_context({"request": {"ip": "10.1.1.1"}, "resource": {"tags": ["dev", "prod"]}})
    assert group.evaluate(context) is True
    assert group.evaluate(flatten_context({"request": {"ip": "10.1.1.1"}})) == Unknown(frozenset({"resource.tags"}))


# ============================================================================ parse errors


def rule(operator: str = "string_equals", value: Any = "x", key: str | None = "k", **extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"operator": operator, "value": value, **extra}
    if key is not None:
        raw["key"] = key
    return raw


def nest(levels: int) -> dict[str, Any]:
    """`levels` groups, one inside the other, the innermost with one rule."""
    conditions: dict[str, Any] = {"all": [rule()]}
    for _ in range(levels - 1):
        conditions = {"all": [conditions]}
    return conditions


GROUP_SHAPE = 'must be {"all": [...]} or {"any": [...]}'
NON_EMPTY = "must be a non-empty list of rules or groups"
KEY_MESSAGE = f"must be a non-empty context key of at most {MAX_KEY} characters, without control characters"
OPERATOR_MESSAGE = f"must be one of {sorted(OPERATORS)}"
CIDR = "must be an IP address or CIDR, e.g. 10.0.0.0/8"
CLOCK = 'must be a time of day "HH:MM" (00:00 to 24:00)'
INSTANT = "must be an ISO-8601 date-time, e.g. 2030-01-31T00:00:00Z"
STRINGS = f"must be a string or a list of 1 to {MAX_VALUES} strings"
STRING = f"must be a string of at most {MAX_STRING} characters"
MEMBERS = f"must be a list of 1 to {MAX_VALUES} strings, numbers or booleans"
MEMBER = "must be a string, a finite number or a boolean"
NUMBER = "must be a finite number"
DAYS_MESSAGE = "must be a list of days: mon, tue, wed, thu, fri, sat, sun"
DAY_MESSAGE = "must be a day: mon, tue, wed, thu, fri, sat, sun (or its full name)"
WINDOW_FIELDS = "must be an object with ['end', 'start', 'time_zone']"
RULE_FIELD = "unknown field (a rule has key, operator, value)"
IANA = "must be an IANA time zone such as Europe/Paris"


def timed(operator: str, value: Any) -> dict[str, Any]:
    """Conditions of one time rule (on request.time)."""
    return {"all": [rule(operator, value=value, key=None)]}


# (conditions, path, message)
ERRORS: list[tuple[Any, str, str]] = [
    # -- the conditions object
    (["all"], "", GROUP_SHAPE),
    ("all", "", GROUP_SHAPE),
    ({"none": [rule()]}, "", GROUP_SHAPE),
    ({"ALL": [rule()]}, "", GROUP_SHAPE),
    ({"all": [rule()], "any": [rule()]}, "", GROUP_SHAPE),
    ({"all": [rule()], "note": "x"}, "", GROUP_SHAPE),
    ({"all": []}, "all", NON_EMPTY),
    ({"any": []}, "any", NON_EMPTY),
    ({"all": rule()}, "all", NON_EMPTY),
    ({"all": "k"}, "all", NON_EMPTY),
    ({"all": None}, "all", NON_EMPTY),
    ({"all": [rule(), {"any": []}]}, "all[1].any", NON_EMPTY),
    ({"all": [rule(), {"any": [rule()], "all": [rule()]}]}, "all[1]", GROUP_SHAPE),
    ({"all": [{"all": [rule()], "key": "k"}]}, "all[0]", GROUP_SHAPE),
    ({"all": ["k"]}, "all[0]", "must be a rule {key, operator, value} or a group"),
    ({"all": [rule(), None]}, "all[1]", "must be a rule {key, operator, value} or a group"),
    ({"all": [{}]}, "all[0].operator", OPERATOR_MESSAGE),
    # -- operator, key, value, extra fields
    ({"all": [rule("regex")]}, "all[0].operator", OPERATOR_MESSAGE),
    ({"all": [rule("StringEquals")]}, "all[0].operator", OPERATOR_MESSAGE),
    ({"all": [{"key": "k", "value": "x"}]}, "all[0].operator", OPERATOR_MESSAGE),
    ({"all": [rule(key=None)]}, "all[0].key", KEY_MESSAGE),
    ({"all": [rule(key="")]}, "all[0].key", KEY_MESSAGE),
    ({"all": [rule(key=5)]}, "all[0].key", KEY_MESSAGE),
    ({"all": [rule(key="a\x00b")]}, "all[0].key", KEY_MESSAGE),
    ({"all": [rule(key="a\nb")]}, "all[0].key", KEY_MESSAGE),
    ({"all": [rule(key="a\u202eb")]}, "all[0].key", KEY_MESSAGE),  # bidirectional override
    ({"all": [rule(key="a\u2028b")]}, "all[0].key", KEY_MESSAGE),  # line separator
    ({"all": [rule(key="a\u200bb")]}, "all[0].key", KEY_MESSAGE),  # zero-width space
    ({"all": [rule(key="k" * (MAX_KEY + 1))]}, "all[0].key", KEY_MESSAGE),
    ({"all": [{"key": "k", "operator": "string_equals"}]}, "all[0].value", "is required"),
    ({"all": [rule(note="x")]}, "all[0].note", RULE_FIELD),
    ({"all": [rule(zeta=1, alpha=2)]}, "all[0].alpha", RULE_FIELD),
    ({"any": [rule(), rule(), {"all": [rule(), rule(Key="k")]}]}, "any[2].all[1].Key", RULE_FIELD),
    # -- strings
    ({"all": [rule(value=[])]}, "all[0].value", STRINGS),
    ({"all": [rule(value=3)]}, "all[0].value", STRINGS),
    ({"all": [rule(value=None)]}, "all[0].value", STRINGS),
    ({"all": [rule(value=["x"] * (MAX_VALUES + 1))]}, "all[0].value", STRINGS),
    ({"all": [rule(value="x" * (MAX_STRING + 1))]}, "all[0].value", STRING),
    ({"all": [rule(value=["a", "b", "x" * (MAX_STRING + 1)])]}, "all[0].value[2]", STRING),
    ({"all": [rule(value=["a", 1])]}, "all[0].value[1]", STRING),
    ({"all": [rule("string_not_equals", value=[None])]}, "all[0].value[0]", STRING),
    ({"all": [rule("string_like", value="")]}, "all[0].value", "must not be empty"),
    ({"all": [rule("string_like", value=["a*", ""])]}, "all[0].value[1]", "must not be empty"),
    # -- numbers
    ({"all": [rule("numeric_lt", value="10")]}, "all[0].value", NUMBER),
    ({"all": [rule("numeric_gt", value=NAN)]}, "all[0].value", NUMBER),
    ({"all": [rule("numeric_gte", value=INF)]}, "all[0].value", NUMBER),
    ({"all": [rule("numeric_eq", value=True)]}, "all[0].value", NUMBER),
    ({"all": [rule("numeric_lte", value=10**400)]}, "all[0].value", NUMBER),
    ({"all": [rule("numeric_eq", value=[1])]}, "all[0].value", NUMBER),
    # -- dates
    ({"all": [rule("date_lt", value="tomorrow")]}, "all[0].value", INSTANT),
    ({"all": [rule("date_gt", value=20300101)]}, "all[0].value", INSTANT),
    ({"all": [rule("date_gte", value="2030-02-30T00:00:00Z")]}, "all[0].value", INSTANT),
    ({"all": [rule("date_lte", value="2030-01-01T00:00:00+25:00")]}, "all[0].value", INSTANT),
    ({"all": [rule("date_lte", value="0001-01-01T00:00:00+01:00")]}, "all[0].value", INSTANT),
    # -- bool
    ({"all": [rule("bool", value="true")]}, "all[0].value", "must be true or false"),
    ({"all": [rule("bool", value=1)]}, "all[0].value", "must be true or false"),
    # -- CIDRs
    ({"all": [rule("ip_address", value="10.0.0.0/33")]}, "all[0].value", CIDR),
    ({"all": [rule("ip_address", value="10.0.0.x")]}, "all[0].value", CIDR),
    ({"all": [rule("ip_address", value=["10.0.0.0/8", "10.0.0.0/33"])]}, "all[0].value[1]", CIDR),
    ({"all": [rule("not_ip_address", value=["::/0", "fe80::/129", "x"])]}, "all[0].value[1]", CIDR),
    ({"all": [rule("ip_address", value=["10.0.0.0/8", 10])]}, "all[0].value[1]", STRING),
    ({"all": [rule("ip_address", value=[])]}, "all[0].value", STRINGS),
    # -- in / not_in
    ({"all": [rule("in", value="a")]}, "all[0].value", MEMBERS),
    ({"all": [rule("in", value=[])]}, "all[0].value", MEMBERS),
    ({"all": [rule("not_in", value=list(range(MAX_VALUES + 1)))]}, "all[0].value", MEMBERS),
    ({"all": [rule("in", value=["a", {"b": 1}])]}, "all[0].value[1]", MEMBER),
    ({"all": [rule("in", value=[1, 2, None])]}, "all[0].value[2]", MEMBER),
    ({"all": [rule("not_in", value=[NAN])]}, "all[0].value[0]", MEMBER),
    ({"all": [rule("not_in", value=[1, 10**400])]}, "all[0].value[1]", MEMBER),
    ({"all": [rule("in", value=[["a"]])]}, "all[0].value[0]", MEMBER),
    # -- time_of_day
    (timed("time_of_day", "09:00-17:00"), "all[0].value", WINDOW_FIELDS),
    (timed("time_of_day", {"start": "09:00"}), "all[0].value.end", "is required"),
    (timed("time_of_day", {"end": "09:00"}), "all[0].value.start", "is required"),
    (
        timed("time_of_day", {**WINDOW, "zone": "UTC"}),
        "all[0].value.zone",
        "unknown field (expected ['end', 'start', 'time_zone'])",
    ),
    (
        timed("time_of_day", {**WINDOW, "time_zone": "Mars/Olympus"}),
        "all[0].value.time_zone",
        "unknown time zone 'Mars/Olympus'",
    ),
    (timed("time_of_day", {**WINDOW, "time_zone": "America"}), "all[0].value.time_zone", "unknown time zone 'America'"),
    (
        timed("time_of_day", {**WINDOW, "time_zone": "../etc/passwd"}),
        "all[0].value.time_zone",
        "unknown time zone '../etc/passwd'",
    ),
    (
        timed("time_of_day", {**WINDOW, "time_zone": "zone.tab"}),
        "all[0].value.time_zone",
        "unknown time zone 'zone.tab'",
    ),
    (timed("time_of_day", {**WINDOW, "time_zone": ""}), "all[0].value.time_zone", IANA),
    (timed("time_of_day", {**WINDOW, "time_zone": 2}), "all[0].value.time_zone", IANA),
    (timed("time_of_day", {**WINDOW, "time_zone": "A" * 65}), "all[0].value.time_zone", IANA),
    (timed("time_of_day", {"start": "9:00", "end": "17:00"}), "all[0].value.start", CLOCK),
    (timed("time_of_day", {"start": "09:00", "end": "24:01"}), "all[0].value.end", CLOCK),
    (timed("time_of_day", {"start": "25:00", "end": "17:00"}), "all[0].value.start", CLOCK),
    (timed("time_of_day", {"start": "12:60", "end": "17:00"}), "all[0].value.start", CLOCK),
    (timed("time_of_day", {"start": "ab:cd", "end": "17:00"}), "all[0].value.start", CLOCK),
    (timed("time_of_day", {"start": "09.00", "end": "17:00"}), "all[0].value.start", CLOCK),
    (timed("time_of_day", {"start": 900, "end": "17:00"}), "all[0].value.start", CLOCK),
    (timed("time_of_day", {"start": "09:00:00", "end": "17:00"}), "all[0].value.start", CLOCK),
    (timed("time_of_day", {"start": "+9:00", "end": "17:00"}), "all[0].value.start", CLOCK),
    (timed("time_of_day", {"start": "0\u00b2:00", "end": "17:00"}), "all[0].value.start", CLOCK),
    (timed("time_of_day", {"start": "\u0660\u0669:00", "end": "17:00"}), "all[0].value.start", CLOCK),
    (timed("time_of_day", {"start": "09:00", "end": "09:00"}), "all[0].value.end", "must differ from start"),
    (
        timed("time_of_day", {"start": "24:00", "end": "08:00"}),
        "all[0].value.start",
        'must be a time of day "HH:MM" before 24:00',
    ),
    (timed("time_of_day", {"start": "08:00", "end": "08:00"}), "all[0].value.end", "must differ from start"),
    # -- day_of_week
    (timed("day_of_week", ["mon"]), "all[0].value", "must be an object with ['days', 'time_zone']"),
    (timed("day_of_week", {}), "all[0].value.days", "is required"),
    (timed("day_of_week", {"days": []}), "all[0].value.days", DAYS_MESSAGE),
    (timed("day_of_week", {"days": "mon"}), "all[0].value.days", DAYS_MESSAGE),
    (timed("day_of_week", {"days": ["mon"] * 8}), "all[0].value.days", DAYS_MESSAGE),
    (timed("day_of_week", {"days": ["mon", "funday"]}), "all[0].value.days[1]", DAY_MESSAGE),
    (timed("day_of_week", {"days": ["mon", 1]}), "all[0].value.days[1]", DAY_MESSAGE),
    (timed("day_of_week", {"days": ["mo"]}), "all[0].value.days[0]", DAY_MESSAGE),
    (timed("day_of_week", {"days": ["monkey"]}), "all[0].value.days[0]", DAY_MESSAGE),
    (
        timed("day_of_week", {"days": ["mon"], "time_zone": "Nowhere/City"}),
        "all[0].value.time_zone",
        "unknown time zone 'Nowhere/City'",
    ),
    # -- date_range
    (timed("date_range", {"start": "2024-01-01T00:00:00Z"}), "all[0].value.end", "is required"),
    (
        timed("date_range", {**JANUARY, "time_zone": "UTC"}),
        "all[0].value.time_zone",
        "unknown field (expected ['end', 'start'])",
    ),
    (timed("date_range", {"start": "soon", "end": "2024-01-01T00:00:00Z"}), "all[0].value.start", INSTANT),
    (timed("date_range", {"start": "2024-01-01T00:00:00Z", "end": "later"}), "all[0].value.end", INSTANT),
    (
        timed("date_range", {"start": "2024-01-01T00:00:00Z", "end": "2024-01-01T00:00:00Z"}),
        "all[0].value.end",
        "must be after start",
    ),
    (
        timed("date_range", {"start": "2024-02-01T00:00:00Z", "end": "2024-01-01T00:00:00Z"}),
        "all[0].value.end",
        "must be after start",
    ),
    (
        timed("date_range", {"start": "2024-01-01T01:00:00+01:00", "end": "2024-01-01T00:00:00Z"}),
        "all[0].value.end",
        "must be after start",
    ),
    # -- paths through groups
    (
        {"any": [rule(), {"all": [rule(), rule("ip_address", value=["10.0.0.0/8", "bad"])]}]},
        "any[1].all[1].value[1]",
        CIDR,
    ),
    ({"all": [{"any": [{"all": [rule("bool", value="no")]}]}]}, "all[0].any[0].all[0].value", "must be true or false"),
]


@pytest.mark.parametrize(
    "conditions, path, message", ERRORS, ids=[f"{i}-{e[1] or 'root'}" for i, e in enumerate(ERRORS)]
)
def test_parse_errors(conditions, path, message):
    with pytest.raises(ConditionError) as info:
        parse_conditions(conditions)
    assert (info.value.path, info.value.message) == (path, message)
    assert str(info.value) == f"{path}: {message}"
    # conditions already stored that no longer parse: never a crash, never true
    assert stored_conditions(conditions) is UNREADABLE


def test_rule_count_limit_counts_rules_in_every_group():
    assert parse_conditions({"all": [rule()] * MAX_RULES}) is not None
    with pytest.raises(ConditionError) as info:
        parse_conditions({"all": [rule()] * (MAX_RULES + 1)})
    assert (info.value.path, info.value.message) == (f"all[{MAX_RULES}]", f"at most {MAX_RULES} rules per statement")
    assert MAX_RULES == 32
    spread = {"any": [{"all": [rule()] * 20}, rule(), {"any": [rule()] * 11}]}
    assert parse_conditions(spread) is not None  # 32 in all
    spread["any"][2]["any"].append(rule())
    with pytest.raises(ConditionError) as info:
        parse_conditions(spread)
    assert (info.value.path, info.value.message) == ("any[2].any[11]", f"at most {MAX_RULES} rules per statement")


def test_nesting_limit():
    assert MAX_DEPTH == 4
    assert parse_conditions(nest(MAX_DEPTH)) is not None
    with pytest.raises(ConditionError) as info:
        parse_conditions(nest(MAX_DEPTH + 1))
    assert (info.value.path, info.value.message) == (
        "all[0].all[0].all[0].all[0]",
        f"groups nest at most {MAX_DEPTH} deep",
    )


def test_keys_at_the_limits():
    assert parse_conditions({"all": [rule(key="k" * MAX_KEY)]}) is not None
    assert parse_conditions({"all": [rule(key="request.user.name é 名前 ✓")]}) is not None
    assert parse_conditions({"all": [rule(value=["x" * MAX_STRING] * MAX_VALUES)]}) is not None
    assert parse_conditions({"all": [rule("in", value=list(range(MAX_VALUES)))]}) is not None
    week = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    assert parse_conditions({"all": [rule("day_of_week", value={"days": week}, key=None)]}) is not None


def test_empty_conditions_are_none():
    assert parse_conditions(None) is None
    assert parse_conditions({}) is None
    assert stored_conditions(None) is None
    assert stored_conditions({}) is None


# ============================================================================ parsed form


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_parsed_rules_are_hashable_and_compare_by_value(name):
    value = next(v for op, v, _, _ in CASES if op == name)
    key = None if name in ("time_of_day", "day_of_week", "date_range") else "k"
    first, second = one(name, value, key), one(name, json.loads(json.dumps(value)), key)
    # statements are cached by value: equal conditions, equal hashes
    assert first == second and hash(first) == hash(second)
    assert isinstance(first.items[0], Rule) and first.items[0].operator == name


def test_source_is_canonical_json():
    a = parse_conditions({"any": [{"value": ["b", "a"], "operator": "string_equals", "key": "k"}, {"all": [rule()]}]})
    b = parse_conditions({"any": [{"key": "k", "operator": "string_equals", "value": ["b", "a"]}, {"all": [rule()]}]})
    assert a is not None and b is not None
    source = '{"any":[{"key":"k","operator":"string_equals","value":["b","a"]},{"all":[{"key":"k","operator":"string_equals","value":"x"}]}]}'  # noqa: E501
    assert a.source == b.source == source
    assert json.loads(a.source) == {
        "any": [{"key": "k", "operator": "string_equals", "value": ["b", "a"]}, {"all": [rule()]}]
    }
    assert a == b
    # the source is the conditions as written: list order counts, and another spelling differs
    c = parse_conditions({"any": [{"key": "k", "operator": "string_equals", "value": ["a", "b"]}, {"all": [rule()]}]})
    assert c is not None and c.source != a.source


def test_source_keeps_the_default_key_unwritten():
    group = parse_conditions({"all": [{"operator": "time_of_day", "value": WINDOW}]})
    assert group is not None
    assert group.source == '{"all":[{"operator":"time_of_day","value":{"end":"17:00","start":"09:00"}}]}'


# ============================================================================ unreadable stored conditions


@pytest.mark.parametrize(
    "garbage",
    [
        {"x": 1},
        {"all": []},
        {"all": [{"key": "k", "operator": "future_operator", "value": 1}]},
        {"all": [{"key": "k", "operator": "string_equals", "value": "a", "since": "v9"}]},
        ["all"],
    ],
)
def test_stored_garbage_is_unreadable_and_always_unknown(garbage):
    condition = stored_conditions(garbage)
    assert condition is UNREADABLE
    for context in [{}, {"k": "a"}, {"(unreadable conditions)": ""}, {"(unreadable conditions)": ["", "x"]}]:
        result = condition.evaluate(context)
        assert isinstance(result, Unknown) and result.missing == frozenset({"(unreadable conditions)"}), context


def test_stored_conditions_that_parse_are_parsed():
    raw = {"all": [rule("numeric_lt", value=3)]}
    assert stored_conditions(raw) == parse_conditions(raw)
    assert stored_conditions(raw) is not UNREADABLE


def test_ints_and_floats_are_the_same_numbers():
    # (the sources differ: "3" and "3.0"; the rules do not)
    assert one("numeric_eq", 3).items == one("numeric_eq", 3.0).items
    assert one("in", [3]).items == one("in", [3.0]).items
    assert one("in", [3]).items != one("in", ["3"]).items != one("in", [True]).items
