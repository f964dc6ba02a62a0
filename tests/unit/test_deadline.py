"""Which database bound a unary call runs under: list and stat get the larger query bound."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import grpc
import pytest
from pymongo import _csot

from policyhub.api.deadline import DeadlineInterceptor
from policyhub.manager.database import Database


def bound_of(method: str, seconds_left: float | None = None) -> str:
    used = []

    def bound(name):
        def enter(remaining):
            used.append((name, remaining))
            return contextlib.nullcontext()

        return enter

    interceptor = DeadlineInterceptor(bound("point"), bound("query"), bound("stream"))
    handler = interceptor.intercept_service(
        lambda details: grpc.unary_unary_rpc_method_handler(lambda request, context: "answer"),
        SimpleNamespace(method=method),
    )
    assert handler.unary_unary(None, SimpleNamespace(time_remaining=lambda: seconds_left)) == "answer"
    ((name, remaining),) = used
    assert remaining == seconds_left
    return name


@pytest.mark.parametrize(
    "method, bound",
    [
        ("/spaceone.api.repository.v1.Policy/list", "query"),
        ("/spaceone.api.repository.v1.Policy/stat", "query"),
        ("/spaceone.api.repository.v1.Audit/list", "query"),
        ("/spaceone.api.repository.v1.Policy/get", "point"),
        ("/spaceone.api.repository.v1.Policy/update", "point"),
        ("/spaceone.api.repository.v1.Assignment/list_subjects", "point"),
    ],
)
def test_list_and_stat_run_under_the_query_bound(method, bound):
    assert bound_of(method, 3.0) == bound


def test_the_query_bound_is_the_query_limit_or_the_deadline_whichever_is_sooner():
    database = Database("mongodb://db", "policyhub", timeout_ms=5000, query_timeout_ms=20000)
    for block, expected in (
        (database.bounded(None), 5.0),
        (database.bounded_query(None), 20.0),
        (database.bounded_query(7.5), 7.5),
        (database.bounded_query(60.0), 20.0),
    ):
        with block:
            assert _csot.get_timeout() == pytest.approx(expected)


def test_a_call_without_a_deadline_is_bounded_by_the_limits_alone():
    """gRPC reports no deadline as one ~2**63 ns away; pymongo could not turn that into a time."""
    database = Database("mongodb://db", "policyhub", timeout_ms=5000, query_timeout_ms=20000)
    no_deadline = 2**63 / 1e9
    with database.bounded(no_deadline):
        assert _csot.get_timeout() == pytest.approx(5.0)
    with database.bounded_by_deadline(no_deadline):
        assert _csot.get_timeout() is None
    with database.bounded_by_deadline(3.0):
        assert _csot.get_timeout() == pytest.approx(3.0)
