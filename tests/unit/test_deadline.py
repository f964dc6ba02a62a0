"""Which database bound a unary call runs under: list, stat and the batch writes get the larger
query bound; what a write must finish runs beyond it."""

from __future__ import annotations

import contextlib
import time
from types import SimpleNamespace

import grpc
import pymongo
import pytest
from pymongo import _csot

from policyhub.api.deadline import DeadlineInterceptor
from policyhub.manager.database import Database, beyond_the_deadline, seconds_left
from policyhub.service.undo import Undo


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
        ("/spaceone.api.repository.v1.Assignment/add", "query"),
        ("/spaceone.api.repository.v1.Assignment/remove", "query"),
        ("/spaceone.api.repository.v1.Policy/delete_many", "query"),
        ("/spaceone.api.repository.v1.Group/delete_many", "query"),
        ("/spaceone.api.repository.v1.Group/add_users", "query"),
        ("/spaceone.api.repository.v1.Role/unbind_users", "query"),
        ("/spaceone.api.repository.v1.Policy/delete", "point"),
        ("/spaceone.api.repository.v1.Assignment/create", "point"),
        ("/spaceone.api.repository.v1.Policy/get", "point"),
        ("/spaceone.api.repository.v1.Policy/update", "point"),
        ("/spaceone.api.repository.v1.Assignment/list_subjects", "point"),
    ],
)
def test_list_stat_and_batch_writes_run_under_the_query_bound(method, bound):
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


def test_what_is_left_of_a_calls_bound_is_known_to_what_waits_in_it():
    """A caller waiting for work it shares (a domain's index being built) waits as long as its own
    database operations may take: the call's bound, a nested one only shortening it."""
    database = Database("mongodb://db", "policyhub", timeout_ms=5000, query_timeout_ms=20000)
    assert seconds_left() is None
    with database.bounded(2.0):
        assert 1.5 < seconds_left() <= 2.0
        with database.bounded_query(None):  # 20 s, within a block of 2 s: still 2 s
            assert 1.5 < seconds_left() <= 2.0
        with database.bounded(0.5):
            assert 0 < seconds_left() <= 0.5
        assert 1.5 < seconds_left() <= 2.0
        assert beyond_the_deadline(seconds_left) is None
    assert seconds_left() is None
    with database.bounded_by_deadline(3.0):
        assert 2.5 < seconds_left() <= 3.0
    with database.bounded_by_deadline(2**63 / 1e9):
        assert seconds_left() is None
    with database.bounded(0.001):
        time.sleep(0.01)
        assert seconds_left() == 0.0


def test_a_whole_domains_read_for_its_index_has_the_build_limit_never_less_than_a_querys():
    for build_timeout_ms, expected in ((120_000, 120.0), (None, 20.0), (10_000, 20.0)):
        database = Database("mongodb://db", "policyhub", 5000, 20000, build_timeout_ms=build_timeout_ms)
        with database.bounded_build():
            assert _csot.get_timeout() == pytest.approx(expected)


def test_what_a_write_must_finish_runs_beyond_the_callers_bound():
    database = Database("mongodb://db", "policyhub", timeout_ms=5000, query_timeout_ms=20000)
    with database.bounded(0.5):
        assert _csot.get_timeout() == pytest.approx(0.5)
        assert beyond_the_deadline(_csot.get_timeout) is None  # the connection's own limit applies
        assert beyond_the_deadline(lambda left: left, 3) == 3
        assert _csot.get_timeout() == pytest.approx(0.5)


def test_compensations_run_beyond_the_callers_bound():
    seen = []
    with pytest.raises(RuntimeError):
        with pymongo.timeout(0.5), Undo() as undo:
            undo.push(lambda: seen.append(_csot.get_timeout()))
            raise RuntimeError("the write failed: its bound ran out")
    assert seen == [None]
