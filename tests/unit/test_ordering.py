"""query.ordering: MongoDB's sort order in Python, for pages merged from parts read apart (the
server's own order for the same values is compared in tests/manager/test_ordering_on_the_server.py)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest
from bson import Decimal128, ObjectId
from hypothesis import given
from hypothesis import strategies as st

from policyhub.query import in_order

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
OID = ObjectId("650000000000000000000001")


def docs(*values):
    """Documents with `x` set to each value (a bare `...` leaves it out), `_id` their position."""
    return [({"_id": i} if value is ... else {"_id": i, "x": value}) for i, value in enumerate(values)]


def order(runs, sort):
    merged = in_order(runs, sort)
    return None if merged is None else [document["_id"] for document in merged]


def test_types_rank_before_values_null_numbers_strings_object_ids_booleans_dates():
    values = [T0, True, OID, "a", 2.5, None, ..., 1, False, "B"]
    runs = [docs(*values)]
    # missing and null are equal (then `_id` decides), numbers of both kinds by value, "B" < "a" by code point
    expected = [5, 6, 7, 4, 9, 3, 2, 8, 1, 0]
    assert order(runs, {"x": 1, "_id": 1}) == expected
    assert order(runs, {"x": -1, "_id": 1}) == [0, 1, 8, 2, 3, 9, 4, 7, 5, 6]


def test_runs_read_apart_merge_into_one_order():
    first = [{"_id": 1, "x": 3}, {"_id": 2, "x": 7}]
    second = [{"_id": 3, "x": 1}, {"_id": 4, "x": 5}, {"_id": 5, "x": 9}]
    assert order([first, second], {"x": 1, "_id": 1}) == [3, 1, 4, 2, 5]
    assert order([[], second], {"x": -1, "_id": 1}) == [5, 4, 3]
    assert order([], {"x": 1}) == []


def test_keys_in_turn_each_in_its_own_direction():
    runs = [[{"_id": 1, "a": 1, "b": "x"}, {"_id": 2, "a": 1, "b": "y"}], [{"_id": 3, "a": 0, "b": "z"}]]
    assert order(runs, {"a": -1, "b": -1, "_id": 1}) == [2, 1, 3]
    assert order(runs, {"a": 1, "b": -1, "_id": 1}) == [3, 2, 1]


def test_dotted_paths_read_into_objects_and_miss_elsewhere():
    runs = [[{"_id": 1, "t": {"k": 2}}, {"_id": 2, "t": {"k": 1}}, {"_id": 3, "t": "plain"}, {"_id": 4}]]
    assert order(runs, {"t.k": 1, "_id": 1}) == [3, 4, 2, 1]


@pytest.mark.parametrize(
    "value",
    [[1, 2], [], {"k": 1}, math.nan, Decimal128("1.5"), b"bytes"],
    ids=["array", "empty array", "object", "NaN", "decimal", "binary"],
)
def test_a_value_without_a_plain_place_leaves_the_order_to_the_server(value):
    assert order([docs(1, value, "a")], {"x": 1, "_id": 1}) is None


def test_a_path_through_an_array_leaves_the_order_to_the_server():
    assert order([[{"_id": 1, "t": [{"k": 1}]}]], {"t.k": 1}) is None


def test_dates_with_and_without_a_zone_leave_the_order_to_the_server():
    assert order([docs(T0, T0.replace(tzinfo=None) + timedelta(days=1))], {"x": 1, "_id": 1}) is None


SCALARS = st.one_of(
    st.none(),
    st.just(...),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=4),
    st.booleans(),
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(timezone.utc)),
)


@given(st.lists(SCALARS, max_size=30), st.integers(0, 30), st.sampled_from([1, -1]))
def test_how_the_documents_are_split_into_runs_never_changes_the_order(values, cut, direction):
    documents = docs(*values)
    sort = {"x": direction, "_id": 1}
    whole = order([documents], sort)
    assert whole is not None and sorted(whole) == list(range(len(values)))
    assert order([documents[cut:], documents[:cut]], sort) == whole
    # each neighbour pair is in order by its place alone
    assert order([[documents[i] for i in reversed(whole)]], sort) == whole
