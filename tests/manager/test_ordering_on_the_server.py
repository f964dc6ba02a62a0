"""The order `query.ordering.in_order` gives merged runs is the wire-protocol server's own: random
values of every placed type, in two owners' documents, sorted by the server in one query and
merged from two sorted runs."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policyhub.manager.database import collection
from policyhub.model import PolicyDocument
from policyhub.query import in_order

pytestmark = pytest.mark.wire

VALUES = st.one_of(
    st.none(),
    st.just(...),  # no `x` at all
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=4),
    st.booleans(),
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(timezone.utc)),
)


@pytest.fixture
def scratch(app, backend):
    if backend != "wire":
        pytest.skip("compares with the wire-protocol server's order")
    stored = collection(PolicyDocument).database[f"ordering_{uuid.uuid4().hex[:8]}"]
    yield stored
    stored.drop()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.tuples(st.sampled_from("ab"), VALUES), max_size=25), direction=st.sampled_from([1, -1]))
def test_merged_runs_are_in_the_servers_order(scratch, values, direction):
    scratch.delete_many({})
    if values:
        scratch.insert_many(
            [{"owner": owner, **({} if value is ... else {"x": value})} for owner, value in values], ordered=True
        )
    sort = {"x": direction, "_id": 1}
    runs = [list(scratch.aggregate([{"$match": {"owner": owner}}, {"$sort": sort}])) for owner in "ab"]
    servers = list(scratch.aggregate([{"$match": {"owner": {"$in": ["a", "b"]}}}, {"$sort": sort}]))
    merged = in_order(runs, sort)
    assert merged is not None
    assert [document["_id"] for document in merged] == [document["_id"] for document in servers]
