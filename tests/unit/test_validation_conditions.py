"""Write-time checks of statement conditions and of a request's context
(policyhub.service.validation): every fault is InvalidArgument naming the full field path."""

from __future__ import annotations

from typing import Any

import pytest

from policyhub.engine.conditions import MAX_CONTEXT_KEYS, OPERATORS, parse_conditions
from policyhub.errors import InvalidArgument
from policyhub.service import validation
from policyhub.service.validation import CONTEXT_MAX_BYTES, encoded_size

GOOD = {"all": [{"key": "request.ip", "operator": "ip_address", "value": ["10.0.0.0/8"]}]}


def stmt(conditions: Any = None, effect: str = "ALLOW") -> dict[str, Any]:
    value: dict[str, Any] = {"effect": effect, "actions": ["a.b"], "resources": ["r/*"]}
    if conditions is not None:
        value["conditions"] = conditions
    return value


def invalid(call, *args) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as info:
        call(*args)
    error = info.value
    # the path travels in the message, the violation and the metadata alike
    assert error.violations[0].field == error.field == error.metadata["field"]
    assert error.message == f"{error.field}: {error.description}"
    assert error.code == "INVALID_ARGUMENT"
    return error


# ============================================================================ statements


@pytest.mark.parametrize(
    "conditions, field, description",
    [
        (
            {"all": [{"key": "request.ip", "operator": "ip_address", "value": ["10.0.0.0/8", "10.0.0.0/99"]}]},
            "statements[2].conditions.all[0].value[1]",
            "must be an IP address or CIDR, e.g. 10.0.0.0/8",
        ),
        (["all"], "statements[2].conditions", 'must be {"all": [...]} or {"any": [...]}'),
        ({"all": [], "any": []}, "statements[2].conditions", 'must be {"all": [...]} or {"any": [...]}'),
        ({"any": []}, "statements[2].conditions.any", "must be a non-empty list of rules or groups"),
        (
            {"any": [GOOD, {"all": [{"key": "k", "operator": "nope", "value": 1}]}]},
            "statements[2].conditions.any[1].all[0].operator",
            f"must be one of {sorted(OPERATORS)}",
        ),
        (
            {"all": [{"operator": "time_of_day", "value": {"start": "09:00", "end": "17:00", "time_zone": "Mars/X"}}]},
            "statements[2].conditions.all[0].value.time_zone",
            "unknown time zone 'Mars/X'",
        ),
        (
            {"all": [{"operator": "time_of_day", "value": {"start": "09:00", "end": "17:00", "time_zone": "Europe"}}]},
            "statements[2].conditions.all[0].value.time_zone",
            "unknown time zone 'Europe'",
        ),
        (
            {"all": [{"operator": "time_of_day", "value": {"start": "0\u00b9:00", "end": "17:00"}}]},
            "statements[2].conditions.all[0].value.start",
            'must be a time of day "HH:MM" (00:00 to 24:00)',
        ),
        (
            {"all": [{"operator": "date_range", "value": {"start": "2030-01-02", "end": "2030-01-01"}}]},
            "statements[2].conditions.all[0].value.end",
            "must be after start",
        ),
        (
            {"all": [{"key": "k", "operator": "in", "value": ["a", {"b": 1}]}]},
            "statements[2].conditions.all[0].value[1]",
            "must be a string, a finite number or a boolean",
        ),
        (
            {"all": [{"key": "k", "operator": "numeric_lt", "value": 1e400}]},
            "statements[2].conditions.all[0].value",
            "must be a finite number",
        ),
        (
            {"all": [{"key": "k\u202e", "operator": "bool", "value": True}]},
            "statements[2].conditions.all[0].key",
            "must be a non-empty context key of at most 256 characters, without control characters",
        ),
        (
            {"all": [{"key": "k", "operator": "bool", "value": True, "comment": "x"}]},
            "statements[2].conditions.all[0].comment",
            "unknown field (a rule has key, operator, value)",
        ),
        (
            {"all": [{"key": "k", "operator": "bool", "value": True}] * 33},
            "statements[2].conditions.all[32]",
            "at most 32 rules per statement",
        ),
    ],
)
def test_statements_name_the_full_path_of_a_bad_condition(conditions, field, description):
    values = [stmt(), stmt(GOOD, "DENY"), stmt(conditions)]
    error = invalid(validation.statements, values)
    assert (error.field, error.description) == (field, description)
    error = invalid(validation.statement, stmt(conditions), "statements[2]")
    assert (error.field, error.description) == (field, description)
    error = invalid(validation.statements, values, "policy.statements")
    assert error.field == "policy." + field


def test_statement_keeps_conditions_as_given():
    result = validation.statement(stmt(GOOD), "statements[0]")
    assert result == {"effect": "ALLOW", "actions": ["a.b"], "resources": ["r/*"], "conditions": GOOD}
    assert parse_conditions(result["conditions"]) == parse_conditions(GOOD)
    # no conditions, or empty ones: stored as {}
    assert validation.statement(stmt(), "s")["conditions"] == {}
    assert validation.statement(stmt({}), "s")["conditions"] == {}
    assert validation.statements([stmt(GOOD), stmt()]) == [
        {"effect": "ALLOW", "actions": ["a.b"], "resources": ["r/*"], "conditions": GOOD},
        {"effect": "ALLOW", "actions": ["a.b"], "resources": ["r/*"], "conditions": {}},
    ]


def test_the_first_bad_statement_is_named():
    bad = {"any": [{"key": "k", "operator": "bool", "value": "yes"}]}
    error = invalid(validation.statements, [stmt(), stmt(bad), stmt(["x"])])
    assert (error.field, error.description) == ("statements[1].conditions.any[0].value", "must be true or false")


def test_other_statement_fields_are_checked_before_the_conditions():
    value = stmt(["x"])
    value["actions"] = []
    error = invalid(validation.statement, value, "statements[0]")
    assert error.field == "statements[0].actions"


# ============================================================================ context


def test_context_is_flattened():
    assert validation.context(None) == {}
    assert validation.context({}) == {}
    assert validation.context({"request": {"ip": "10.0.0.1", "user": {"tier": 2.0}}, "tags": ["a", "b"]}) == {
        "request.ip": "10.0.0.1",
        "request.user.tier": 2.0,
        "tags": ["a", "b"],
    }


def sized(total: int) -> dict[str, Any]:
    """A context whose stored size is exactly `total` bytes."""
    context = {f"k{i}": "x" * 4000 for i in range(total // 4000)}
    context["rest"] = ""
    context["rest"] = "x" * (total - encoded_size(context))
    assert encoded_size(context) == total
    return context


def test_context_size_cap():
    assert CONTEXT_MAX_BYTES == 16 * 1024
    assert len(validation.context(sized(CONTEXT_MAX_BYTES))) == 5
    error = invalid(validation.context, sized(CONTEXT_MAX_BYTES + 1))
    assert error.field == "context"
    assert (
        error.description == f"is {CONTEXT_MAX_BYTES + 1} bytes stored; at most {CONTEXT_MAX_BYTES} bytes are allowed"
    )
    error = invalid(validation.context, sized(CONTEXT_MAX_BYTES + 1), "items[3].context")
    assert error.field == "items[3].context"


def nested_keys(count: int) -> dict[str, Any]:
    """`count` flattened keys under a few top-level objects."""
    context: dict[str, Any] = {}
    for i in range(count):
        context.setdefault(f"g{i // 100}", {})[f"k{i}"] = i
    return context


def test_context_key_cap_counts_flattened_keys():
    assert MAX_CONTEXT_KEYS == 256
    assert len(validation.context(nested_keys(MAX_CONTEXT_KEYS))) == MAX_CONTEXT_KEYS
    error = invalid(validation.context, nested_keys(MAX_CONTEXT_KEYS + 1))
    assert (error.field, error.description) == ("context", f"must have at most {MAX_CONTEXT_KEYS} keys, got 257")
    error = invalid(validation.context, nested_keys(300), "items[0].context")
    assert (error.field, error.description) == ("items[0].context", "must have at most 256 keys, got 300")


def test_a_flat_context_may_use_every_key():
    flat = {f"k{i}": i for i in range(MAX_CONTEXT_KEYS)}
    assert validation.context(flat) == flat
    flat["one_more"] = 0
    error = invalid(validation.context, flat)
    assert error.field == "context"


@pytest.mark.parametrize(
    "context, field",
    [
        ({"a": float("nan")}, "context.a"),
        ({"a": float("inf")}, "context.a"),
        ({"request": {"score": float("-inf")}}, "context.request.score"),
        ({"a": [1, float("nan")]}, "context.a[1]"),
    ],
)
def test_context_refuses_numbers_that_are_not_finite(context, field):
    error = invalid(validation.context, context)
    assert (error.field, error.description) == (field, "must be a finite number")


def test_context_refuses_values_too_deep_or_too_long():
    deep: Any = "x"
    for _ in range(12):
        deep = {"d": deep}
    assert invalid(validation.context, deep).field.startswith("context.d")
    error = invalid(validation.context, {"a": "x" * 4097})
    assert error.field == "context.a"
