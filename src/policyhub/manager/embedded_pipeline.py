"""The head of an aggregation pipeline on the embedded store (mongomock), evaluated on the stored
documents themselves.

mongomock copies every document a pipeline's `$match` keeps before running the next stage, sorts
with a comparison written in Python, and groups by sorting every document by its group key. A
list page or a stat over a large domain then costs the domain. Here the stages that only read
the documents run on references to them, and only their results are copied:

- `$sort` orders references by keys Python compares natively in MongoDB's order (the same pairwise
  answers as mongomock's comparison), pass by pass as mongomock sorts;
- `$skip` and `$limit` slice references, so a page copies only its own documents;
- `$count` counts references;
- `$group` on a plain field path (or an object of them) with `$sum`, `$avg`, `$min`, `$max`,
  `$first`, `$last`, `$push`, `$addToSet` or `$mergeObjects` of constants, field paths or objects
  of field paths reads each document once, files it under its key, and sorts the distinct keys
  only.

Results are those of mongomock's own stages, in its order and with its types: a stage or a value
outside what is handled here (a key mongomock could group in an order of its own, an unsortable
type, an expression) stops the head, and mongomock runs the rest on copies as it always did.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import mongomock.aggregate
import mongomock.filtering
import mongomock.helpers
from bson import ObjectId
from sentinels import NOTHING

_BsonComparable = mongomock.filtering.BsonComparable
# BSON type ranks (mongomock's `_get_compare_type`) whose values mongomock compares with Python's
# own operators: None (all equal), numbers, strings, ObjectIds, booleans, dates.
_NULL_RANK = 5
_NATIVE_RANKS = frozenset({_NULL_RANK, 10, 15, 35, 40, 45})
# `_get_compare_type` of the common types, read without its chain of isinstance checks.
_RANKS = {type(None): _NULL_RANK, int: 10, float: 10, str: 15, ObjectId: 35, bool: 40, datetime: 45}
_ACCUMULATORS = frozenset({"$sum", "$avg", "$min", "$max", "$first", "$last", "$push", "$addToSet", "$mergeObjects"})
# Group key values that are their own hashable form (NaN aside); tags for the others' forms.
_OWN_FORM = frozenset({str, int, float, ObjectId, type(None)})
_BOOL, _ARRAY, _OBJECT = object(), object(), object()


class _Unsupported(Exception):
    """A stage or a value this module does not evaluate: mongomock does."""


def evaluate_head(documents: list[Mapping], stages: list) -> tuple[list, int]:
    """(what the first stages make of the stored `documents`, how many stages that is). The result
    may hold stored documents or parts of them: the caller copies it before anything else reads
    it. Stages not evaluated here are left, in order, to mongomock."""
    for done, stage in enumerate(stages):
        if not isinstance(stage, Mapping) or len(stage) != 1:
            return documents, done
        ((name, options),) = stage.items()
        try:
            if name == "$sort":
                documents = _sort(documents, options)
            elif name in ("$skip", "$limit") and type(options) is int and options >= 0:
                documents = documents[options:] if name == "$skip" else documents[:options]
            elif name == "$count":
                # mongomock's own stage validates the name; it reads only the number of documents.
                return mongomock.aggregate._handle_count_stage(documents, None, options), done + 1
            elif name == "$group":
                return _group(documents, options), done + 1
            else:
                return documents, done
        except _Unsupported:
            return documents, done
    return documents, len(stages)


# ---------------------------------------------------------------- $sort


def _sort(documents: list[Mapping], options: Any) -> list[Mapping]:
    if not isinstance(options, Mapping) or not all(type(direction) is int for direction in options.values()):
        raise _Unsupported
    # mongomock sorts once per key, the last key first, each pass stable.
    for path, direction in reversed(list(options.items())):
        documents = sorted(documents, key=_sort_key(path), reverse=direction < 0)
    return documents


def _sort_key(path: str) -> Callable[[Mapping], tuple]:
    """mongomock's sort key (`filtering.resolve_sort_key`: missing sorts as null, an array by its
    first element, an empty array first) as a tuple whose comparisons give the same answers:
    the BSON type rank, then the value itself where mongomock compares values with Python's
    operators, else mongomock's comparable wrapper."""

    top_level = "." not in path and path != ""

    def key(document: Mapping) -> tuple:
        # A stored document is a dict: resolve_key's own reading of a top-level field.
        value = document.get(path, NOTHING) if top_level else mongomock.filtering.resolve_key(path, document)
        if value is NOTHING:
            return (1, _NULL_RANK, 0)
        if isinstance(value, (list, tuple)):
            if not value:
                return (0, _NULL_RANK, 0)
            value = value[0]
        rank = _RANKS.get(type(value))
        if rank is None:
            try:
                rank = mongomock.filtering._get_compare_type(value)
            except NotImplementedError:
                raise _Unsupported from None  # mongomock fails on it, if it has to compare it at all
        if rank == _NULL_RANK:
            return (1, rank, 0)
        return (1, rank, value if rank in _NATIVE_RANKS else _BsonComparable(value))

    return key


# ---------------------------------------------------------------- $group


def _group(documents: list[Mapping], options: Any) -> list[dict]:
    """mongomock's `$group` (`aggregate._handle_group_stage`): it sorts the documents by their key
    (BSON order, stable), then makes a group of each run of keys equal in Python, whose `_id` is
    the run's first key; a falsy `_id` makes one group of everything, even of nothing.

    Here each document is read once and filed under a form of its key (`_key_form`) that is equal
    exactly for keys BSON orders as equal, so the files in BSON order are mongomock's sorted
    documents; runs are then joined as mongomock's are, by Python equality of adjacent keys."""
    if not isinstance(options, Mapping) or "_id" not in options:
        raise _Unsupported
    key_of = _key_reader(options["_id"])
    fields = [(name, *_accumulator(spec)) for name, spec in options.items() if name != "_id"]
    files: dict[Any, tuple[Any, list[list]]] = {}
    if key_of is None:
        files[None] = (None, [[] for _ in fields])
    readers = [read for _, _, read in fields]
    for document in documents:
        key = None if key_of is None else key_of(document)
        form = None if key_of is None else _key_form(key)
        filed = files.get(form)
        if filed is None:
            filed = files[form] = (key, [[] for _ in fields])
        for read, values in zip(readers, filed[1], strict=True):
            try:
                values.append(read(document))
            except KeyError:
                pass  # a missing value is left out, as mongomock does
    ordered = list(files.values())
    if key_of is not None:
        ordered.sort(key=lambda filed: _BsonComparable(filed[0]))
    runs: list[tuple[Any, list[list]]] = []
    for key, values in ordered:
        if runs and runs[-1][0] == key:
            for collected, more in zip(runs[-1][1], values, strict=True):
                collected.extend(more)
        else:
            runs.append((key, values))
    results = []
    for key, values in runs:
        result = {
            name: _accumulated(operator, collected)
            for (name, operator, _), collected in zip(fields, values, strict=True)
        }
        result["_id"] = key
        results.append(result)
    return results


def _key_reader(expression: Any) -> Callable[[Mapping], Any] | None:
    """Reads a document's group key as mongomock does (a missing path is None, an object key
    leaves its missing paths out); None for a falsy `_id` (one group)."""
    if not expression:
        return None
    if isinstance(expression, Mapping):
        if not all(
            isinstance(name, str) and not name.startswith("$") and _path(value) for name, value in expression.items()
        ):
            raise _Unsupported
        # mongomock's parse of an object of paths: each path read as below, the missing ones left out.
        readers = [(name, _reader(value[1:])) for name, value in expression.items()]

        def key_of(document: Mapping) -> Any:
            key = {}
            for name, read in readers:
                try:
                    key[name] = read(document)
                except KeyError:
                    pass
            return key

        return key_of
    if not _path(expression):
        raise _Unsupported
    read = _reader(expression[1:])

    def value_or_none(document: Mapping) -> Any:
        try:
            return read(document)
        except KeyError:
            return None

    return value_or_none


def _reader(path: str) -> Callable[[Mapping], Any]:
    """mongomock's reading of a field path in an expression (`helpers.get_value_by_dot`, arrays on
    the way mapped), raising KeyError where the path is missing."""
    if "." not in path:
        return lambda document: document[path]  # a stored document is a dict
    return lambda document: mongomock.helpers.get_value_by_dot(document, path, can_generate_array=True)


def _path(expression: Any) -> bool:
    return isinstance(expression, str) and expression.startswith("$") and not expression.startswith("$$")


def _accumulator(spec: Any) -> tuple[str, Callable[[Mapping], Any]]:
    """(operator, what it reads from a document: raises KeyError where mongomock leaves it out)."""
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise _Unsupported
    ((operator, operand),) = spec.items()
    if operator not in _ACCUMULATORS:
        raise _Unsupported
    if _path(operand):
        return operator, _reader(operand[1:])
    if isinstance(operand, Mapping):
        if not all(
            isinstance(name, str) and not name.startswith("$") and _path(value) for name, value in operand.items()
        ):
            raise _Unsupported
        return operator, lambda document: mongomock.aggregate._parse_expression(operand, document)
    if operand is None or type(operand) in (bool, int, float) or (type(operand) is str and not operand.startswith("$")):
        return operator, lambda document: operand  # a constant (count's 1), as mongomock reads it
    raise _Unsupported


def _accumulated(operator: str, values: list) -> Any:
    """mongomock's accumulators (`aggregate._accumulate_group`) over the values collected."""
    if operator == "$push":
        return values
    if operator == "$addToSet":
        kept: list = []
        for value in values:
            value = value or None  # mongomock's own reading: falsy values become null
            if value not in kept:
                kept.append(value)
        return kept
    return mongomock.aggregate._GROUPING_OPERATOR_MAP[operator](values)


def _key_form(key: Any) -> Any:
    """A hashable form of a group key, equal exactly when BSON orders the keys as equal, or
    _Unsupported for keys where mongomock's comparison is not a consistent order this can follow.

    Scalars are their own form (Python's equality is BSON's between them: numbers by value,
    other types never equal to one another) but booleans, which Python finds equal to 1 and 0
    while BSON orders them apart. mongomock compares arrays element by element with Python's `!=`
    before its BSON comparison, so inside arrays `1` and `True` (or two objects with their fields
    in another order) are equal while they are not at the top or in an object: keys with booleans,
    objects or arrays inside arrays are left to mongomock, as are NaN (equal to nothing, itself
    included), naive/aware mixes and the types without a plain equality."""
    if type(key) is dict:
        return (_OBJECT, tuple((name, _value_form(value, in_array=False)) for name, value in key.items()))
    if type(key) is str:
        return key
    return _value_form(key, in_array=False)


def _value_form(value: Any, in_array: bool) -> Any:
    kind = type(value)
    if kind in _OWN_FORM and value == value:
        return value
    if kind is datetime and value.tzinfo is None:
        return value
    if in_array:
        raise _Unsupported
    if kind is bool:
        return (_BOOL, value)
    if kind is list:
        if all(type(item) is str for item in value):
            return (_ARRAY, tuple(value))
        return (_ARRAY, tuple(_value_form(item, in_array=True) for item in value))
    raise _Unsupported
