"""MongoDB's sort order, in Python, for merging pages read apart.

A list over several owners of documents (a domain's policies and the managed ones) is read as one
sorted run per owner, each an equality on domain_id that every MongoDB-compatible server serves
by index; `in_order` merges the runs exactly as the server would have sorted them together.

Pure. Only the scalar values whose order is plain are placed: null or missing, numbers,
strings, ObjectIds, booleans and dates, each ranked by its BSON type first (in that order) and
then by value; strings compare by code point, which is the byte order of their UTF-8 that the
server's simple collation uses. A value whose order is not plain (an array, which sorts by its
smallest or largest element; an object; NaN; another BSON type) makes `in_order` answer None,
and the caller reads the list in one query instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from bson import Int64, ObjectId

# BSON sort ranks (MinKey 1 ... MaxKey 13) of the types placed here.
_NULL, _NUMBER, _STRING, _OBJECT_ID, _BOOLEAN, _DATE = 2, 3, 4, 8, 9, 10
_RANKS: dict[type, int] = {
    int: _NUMBER,
    Int64: _NUMBER,  # how the driver reads a 64-bit integer
    float: _NUMBER,
    str: _STRING,
    ObjectId: _OBJECT_ID,
    bool: _BOOLEAN,
}
_MISSING = object()
# A value's place: (BSON rank, value).
Place = tuple[int, Any]


class _Unplaced(Exception):
    """A value whose place in MongoDB's order is not plain."""


class _Descending:
    """A sort key compared the other way round."""

    __slots__ = ("key",)

    def __init__(self, key: Place) -> None:
        self.key = key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Descending) and self.key == other.key

    def __lt__(self, other: _Descending) -> bool:
        return other.key < self.key


def in_order(runs: Sequence[Sequence[Mapping[str, Any]]], sort: Mapping[str, int]) -> list[Mapping[str, Any]] | None:
    """The documents of all `runs` in the order `sort` ({path: 1 or -1}) gives them on a MongoDB
    server, or None when a sort value has no plain place (see the module's docstring)."""
    documents = [document for run in runs for document in run]
    try:
        keyed = [(_key(document, sort), position) for position, document in enumerate(documents)]
        # Dates with and without a time zone do not compare: not placed either.
        keyed.sort()
    except (_Unplaced, TypeError):
        return None
    return [documents[position] for _, position in keyed]


def _key(document: Mapping[str, Any], sort: Mapping[str, int]) -> tuple[Place | _Descending, ...]:
    return tuple(
        _place(_value(document, path)) if direction > 0 else _Descending(_place(_value(document, path)))
        for path, direction in sort.items()
    )


def _value(document: Mapping[str, Any], path: str) -> Any:
    value: Any = document
    for part in path.split("."):
        if isinstance(value, list):
            raise _Unplaced  # a path through an array reaches several values
        if not isinstance(value, Mapping):
            return _MISSING
        value = value.get(part, _MISSING)
        if value is _MISSING:
            return _MISSING
    return value


def _place(value: Any) -> Place:
    """Places compare as MongoDB orders the values."""
    if value is _MISSING or value is None:
        return (_NULL, 0)  # a missing field sorts as null
    if isinstance(value, datetime):
        return (_DATE, value)
    rank = _RANKS.get(type(value))
    if rank is None or value != value:  # NaN sorts before every number: not placed here
        raise _Unplaced
    return (rank, value)
