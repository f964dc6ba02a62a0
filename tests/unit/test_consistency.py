"""Consistency tokens and requirements (policyhub.service.consistency): encoding, decoding and
the checks of a request's `consistency`."""

from __future__ import annotations

import pytest

from policyhub.errors import InvalidArgument, RequiredParameter
from policyhub.service.consistency import (
    FULLY_CONSISTENT,
    Consistency,
    Requirement,
    consistency_token,
    requested,
    token_revision,
)


@pytest.mark.parametrize("revision", [0, 1, 42, 10**17, 10**18 - 1])
def test_a_token_names_its_revision(revision):
    token = consistency_token(revision)
    assert token == f"ct1.{revision}"
    assert token_revision(token, "f") == revision


@pytest.mark.parametrize(
    "token",
    ["", "ct1.", "ct1", "ct1.-1", "ct1.+1", "ct1.1 ", " ct1.1", "ct1.1\n", "ct1.1e3", "ct2.1", "CT1.1", "1"]
    + ["ct1.\u0661", "ct1." + "1" * 19],
)
def test_anything_else_is_not_a_token(token):
    with pytest.raises(InvalidArgument) as info:
        token_revision(token, "consistency.token")
    assert info.value.field == "consistency.token"


def test_a_long_value_is_clipped_in_the_error():
    with pytest.raises(InvalidArgument) as info:
        token_revision("ct1." + "9" * 10_000, "consistency.token")
    assert len(str(info.value)) < 300


def test_unset_or_none_is_fully_consistent():
    assert requested(None) == requested({}) == FULLY_CONSISTENT
    assert requested({"requirement": "REQUIREMENT_NONE", "token": ""}) == FULLY_CONSISTENT
    assert requested({"requirement": "FULLY_CONSISTENT"}) == FULLY_CONSISTENT
    assert requested({"requirement": "MINIMIZE_LATENCY"}) == Consistency(Requirement.MINIMIZE_LATENCY)


def test_at_least_as_fresh_takes_the_tokens_revision_and_requires_one():
    assert requested({"requirement": "AT_LEAST_AS_FRESH", "token": "ct1.12"}) == Consistency(
        Requirement.AT_LEAST_AS_FRESH, 12
    )
    with pytest.raises(RequiredParameter) as info:
        requested({"requirement": "AT_LEAST_AS_FRESH", "token": ""})
    assert info.value.field == "consistency.token"


@pytest.mark.parametrize("requirement", ["", "REQUIREMENT_NONE", "MINIMIZE_LATENCY", "FULLY_CONSISTENT"])
def test_a_token_with_another_requirement_is_refused(requirement):
    with pytest.raises(InvalidArgument) as info:
        requested({"requirement": requirement, "token": "ct1.3"})
    assert info.value.field == "consistency.token"


def test_an_unknown_requirement_is_refused_naming_it():
    with pytest.raises(InvalidArgument) as info:
        requested({"requirement": "42"}, "items")
    assert info.value.field == "items.requirement"
    assert "MINIMIZE_LATENCY" in info.value.description
