"""How database failures of a user's query reach the caller: out of time is UNAVAILABLE (the
database's state), a query the server rejects for its data is INVALID_ARGUMENT (the query's)."""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import pymongo.errors
import pytest

from policyhub.errors import InvalidArgument, Unavailable
from policyhub.manager import database
from policyhub.model import PolicyDocument


def failing_collection(error: Exception):
    def aggregate(pipeline):
        raise error

    return SimpleNamespace(aggregate=aggregate, database=SimpleNamespace(client=None))


@pytest.mark.parametrize(
    "error, expected",
    [
        (pymongo.errors.ExecutionTimeout("operation exceeded time limit", 50), Unavailable),
        (pymongo.errors.NetworkTimeout("timed out"), Unavailable),
        (pymongo.errors.OperationFailure("can't convert from BSON type string to Date", 16006), InvalidArgument),
        (pymongo.errors.OperationFailure("internal server error", 1), Unavailable),
    ],
)
def test_a_query_out_of_time_is_unavailable_and_a_rejected_one_invalid(monkeypatch, error, expected):
    monkeypatch.setattr(database, "collection", lambda document: failing_collection(error))
    with pytest.raises(expected):
        database.aggregate(PolicyDocument, [{"$match": {}}])


def test_every_manager_method_that_reads_or_writes_translates_database_errors():
    """A method of a manager class that calls the database directly carries @translate_errors
    (else a timeout or a lost connection is INTERNAL instead of UNAVAILABLE). Private helpers
    are called from decorated methods only, and are checked through them."""
    unwrapped = []
    for path in sorted((Path(database.__file__).parent).glob("*_manager.py")):
        tree = ast.parse(path.read_text())
        for cls in (node for node in tree.body if isinstance(node, ast.ClassDef)):
            for method in (node for node in cls.body if isinstance(node, ast.FunctionDef)):
                if method.name.startswith("_"):
                    continue
                decorated = any("translate_errors" in ast.unparse(d) for d in method.decorator_list)
                body = ast.unparse(method)
                if not decorated and any(call in body for call in ("collection(", "bulk_writes.", "get_db(")):
                    unwrapped.append(f"{path.name}: {cls.name}.{method.name}")
    assert unwrapped == []


@pytest.mark.parametrize(
    "error, expected",
    [
        (pymongo.errors.OperationFailure("internal server error", 1), Unavailable),
        (pymongo.errors.OperationFailure("interrupted at shutdown", 11600), Unavailable),
        (pymongo.errors.OperationFailure("not primary", 10107), Unavailable),
        (pymongo.errors.OperationFailure("bad value", 2), pymongo.errors.OperationFailure),
    ],
)
def test_a_fault_of_the_database_server_is_unavailable(error, expected):
    """The server's own failure may be retried; an error about the request is left to its caller."""
    with pytest.raises(expected):
        with database.translate_errors():
            raise error
