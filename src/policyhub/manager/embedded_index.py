"""In-process hash indexes for the embedded store (mongomock), which has none of its own: every
find, unique-key check, update and delete there scans the whole collection.

Each collection keeps, for every key set its declared indexes start with (an index on
(domain_id, policy_id, deleted_at) gives (domain_id), (domain_id, policy_id) and the full set),
a map from the documents' values at those keys to the documents holding them. A query whose
filter fixes those keys by equality (or `$in`) reads only the documents under its values, in the
collection's natural order, and still matches each one with mongomock's own filter: the index
only narrows what is matched, so results are those of the scan. Documents whose value at a key is
not a plain scalar (an array, an embedded document, a NaN, a type without a simple equality) are
kept aside per index and always matched, since an equality can reach inside them.

The maps follow every change of the stored documents: mongomock stores and removes through its
collection store's item assignment and deletion (patched here) and updates documents in place
(its update appliers, patched to re-index the document they changed). Writes are serialized
(policyhub.manager.database), readers take no lock: a reader copies a bucket in one step under
the GIL and sees each document either before or after a concurrent write.

A pipeline that opens with `$match` is the find it stands for, served by these indexes; the stages
after it that only read documents (sort, page, count, group: policyhub.manager.embedded_pipeline)
run on the stored documents, and only their results are copied. Every write moves the collection's
version (odd while the write is under way); such a read that saw the version move reads again, so
its results are those of one moment between writes unless writes keep meeting it: after
_READ_ATTEMPTS reads it answers with the last, whose documents (a page's, or those a group counted)
may each be as before or after a write that met it, as a find's are.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import mongomock.aggregate
import mongomock.collection
import mongomock.filtering
import mongomock.helpers
import mongomock.store
from bson import ObjectId

from policyhub.manager.embedded_pipeline import evaluate_head

# Types whose equality in MongoDB is Python's (ints and floats compare as numbers in both; True
# hashes with 1, which only widens a bucket). Anything else is matched by mongomock alone.
_PLAIN_TYPES = frozenset({str, int, bool, float, type(None), datetime, ObjectId})
# Bounds the buckets one query reads through `$in` on several keys before it scans instead.
_MAX_LOOKUPS = 1024
# Bounds the keys one document takes in a table (arrays at several keys multiply); beyond, it is
# matched by every query of that table.
_MAX_KEYS_PER_DOCUMENT = 64
# Reads of a pipeline's head that a write met before one answers as it read.
_READ_ATTEMPTS = 3
_IRREGULAR = object()


def _plain(value: Any) -> bool:
    if type(value) not in _PLAIN_TYPES:
        return False
    return value == value  # NaN is not: MongoDB matches NaN with NaN, Python hashing does not


def _normal(value: Any) -> Any:
    # Stored dates are naive UTC to the millisecond (mongomock's storage form): filters are too.
    if isinstance(value, datetime):
        return mongomock.helpers.patch_datetime_awareness_in_document(value)
    return value


def _values_at(document: Mapping, path: str) -> tuple | object:
    """The plain values an equality on `path` compares with: (None,) when the path is missing (as
    MongoDB's `{path: null}` matches), each element of an array of plain values (an equality
    matches any of them), _IRREGULAR for anything else (empty or nested arrays, arrays on the way,
    embedded documents, other types)."""
    value: Any = document
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, (list, tuple)):
            return _IRREGULAR
        else:
            return (None,)
    if isinstance(value, (list, tuple)):
        if not value or not all(_plain(item) for item in value):
            return _IRREGULAR
        return tuple(dict.fromkeys(_normal(item) for item in value))
    if not _plain(value):
        return _IRREGULAR
    return (_normal(value),)


class _Table:
    """One key set: value tuple -> {document id: None} (a dict, so buckets keep insertion order
    and copy in one step), plus the documents with an irregular value and each document's keys."""

    def __init__(self, paths: tuple[str, ...]):
        self.paths = paths
        self.buckets: dict[tuple, dict[Any, None]] = {}
        self.irregular: dict[Any, None] = {}
        self.entries: dict[Any, Any] = {}

    def keys(self, document: Mapping) -> list[tuple] | object:
        per_path = [_values_at(document, path) for path in self.paths]
        if any(values is _IRREGULAR for values in per_path):
            return _IRREGULAR
        keys = list(itertools.islice(itertools.product(*per_path), _MAX_KEYS_PER_DOCUMENT + 1))  # type: ignore[arg-type]
        return keys if len(keys) <= _MAX_KEYS_PER_DOCUMENT else _IRREGULAR

    def put(self, doc_id: Any, document: Mapping | None) -> None:
        """Files the document under its keys now (None: removed). The new keys are filed before the
        old ones are dropped, so a concurrent reader never misses a document whose key stays."""
        old = self.entries.get(doc_id)
        new = None if document is None else self.keys(document)
        if new == old:
            return
        if new is _IRREGULAR:
            self.irregular[doc_id] = None
        elif new is not None:
            for key in new:  # type: ignore[attr-defined]
                self.buckets.setdefault(key, {})[doc_id] = None
        if new is None:
            self.entries.pop(doc_id, None)
        else:
            self.entries[doc_id] = new
        if old is _IRREGULAR:
            if new is not _IRREGULAR:
                self.irregular.pop(doc_id, None)
        elif old is not None:
            kept = set(new) if isinstance(new, list) else set()
            for key in old:
                if key in kept:
                    continue
                bucket = self.buckets.get(key)
                if bucket is not None:
                    bucket.pop(doc_id, None)
                    if not bucket:
                        del self.buckets[key]

    def lookup(self, choices: list[list]) -> tuple[list[Any], list[Any]]:
        """(the ids under these values, irregular ones first; the irregular ones)."""
        irregular = list(self.irregular)
        ids = list(irregular)
        for key in itertools.product(*choices):
            bucket = self.buckets.get(key)
            if bucket:
                ids.extend(list(bucket))
        return ids, irregular


def _key_sets(store: mongomock.store.CollectionStore) -> tuple[tuple[str, ...], ...]:
    """Every prefix of every declared index's keys (MongoDB serves equality on a prefix too)."""
    sets: dict[tuple[str, ...], None] = {}
    for index in list(store.indexes.values()):
        paths = tuple(path for path, _ in index["key"])
        for length in range(1, len(paths) + 1):
            if "_id" not in paths[:length]:
                sets[paths[:length]] = None
    return tuple(sets)


class _HashIndexes:
    def __init__(self, store: mongomock.store.CollectionStore):
        self.store = store
        self.lock = threading.RLock()
        self.key_sets: tuple[tuple[str, ...], ...] = ()
        self.tables: dict[tuple[str, ...], _Table] = {}
        # Natural order: the position each id took when first stored (an overwrite keeps it).
        self.positions: dict[Any, int] = {}
        self.counter = itertools.count()
        self.documents: Any = None
        # Moved by every write before and after it changes a document (writes are serialized).
        self.version = 0
        self.sync()

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        self.version += 1
        try:
            yield
        finally:
            self.version += 1

    def sync(self) -> dict[tuple[str, ...], _Table]:
        """The tables for the indexes declared now, rebuilt when those or the documents' dict changed."""
        key_sets = _key_sets(self.store)
        documents = self.store._documents
        if key_sets == self.key_sets and documents is self.documents:
            return self.tables
        with self.lock:
            if documents is not self.documents:
                self.positions = {doc_id: next(self.counter) for doc_id in list(documents)}
                self.documents = documents
            tables = {paths: _Table(paths) for paths in key_sets}
            for doc_id, document in list(documents.items()):
                for table in tables.values():
                    table.put(doc_id, document)
            self.tables, self.key_sets = tables, key_sets
            return tables

    def stored(self, doc_id: Any, document: Mapping) -> None:
        with self.lock:
            tables = self.sync()
            if doc_id not in self.positions:
                self.positions[doc_id] = next(self.counter)
            for table in tables.values():
                table.put(doc_id, document)

    def removed(self, doc_id: Any) -> None:
        with self.lock:
            for table in self.sync().values():
                table.put(doc_id, None)
            self.positions.pop(doc_id, None)

    def candidates(self, filter: Mapping) -> tuple[list[Any], set[Any] | None, int] | None:
        """(ids of the documents that may match, in natural order; those of them the filter must
        still check, None for all; the version they were read at), or None when no index applies.
        Only the irregular ones need a check when the buckets answer the filter (`_answered`)."""
        fixed = _equalities(filter)
        if not fixed:
            return None
        version = self.version
        checked: set[Any] | None = None
        if "_id" in fixed and not any(isinstance(value, datetime) for value in fixed["_id"]):
            # The documents' own dict is keyed by _id (datetimes there keep the form they came in).
            ids = [doc_id for doc_id in fixed["_id"] if doc_id in self.store._documents]
        else:
            tables = self.sync()
            best = max(
                (paths for paths in tables if all(path in fixed for path in paths)),
                key=len,
                default=None,
            )
            if best is None:
                return None
            choices = [fixed[path] for path in best]
            lookups = 1
            for values in choices:
                lookups *= len(values)
            if lookups > _MAX_LOOKUPS:
                return None
            ids, irregular = tables[best].lookup(choices)
            if _answered(filter, best):
                checked = set(irregular)
        positions = self.positions
        unique = dict.fromkeys(ids)
        return sorted(unique, key=lambda doc_id: positions.get(doc_id, -1)), checked, version


def _equalities(filter: Mapping) -> dict[str, list]:
    """The keys a filter fixes to plain values (`{k: v}`, `{k: {"$eq": v}}`, `{k: {"$in": [...]}}`,
    also inside `$and`), each with the values it allows. Every other condition only narrows the
    match further, so the documents under these values hold every match."""
    fixed: dict[str, list] = {}
    for key, condition in filter.items():
        if key == "$and" and isinstance(condition, list):
            for part in condition:
                if isinstance(part, Mapping):
                    for path, values in _equalities(part).items():
                        fixed.setdefault(path, values)
            continue
        if not isinstance(key, str) or key.startswith("$"):
            continue
        values = _allowed(condition)
        if values is not None:
            fixed.setdefault(key, values)
    return fixed


def _answered(filter: Mapping, paths: tuple[str, ...]) -> bool:
    """Whether the buckets of these paths hold exactly the documents the filter matches, irregular
    ones aside: the filter is equalities (or `$in`) on these paths and no others, to strings (where
    mongomock's equality is Python's, as the buckets') or to null on a top-level path (which a
    missing field matches too, as it is filed)."""
    if len(filter) != len(paths) or any(path not in filter for path in paths):
        return False
    for path, condition in filter.items():
        values = _allowed(condition)
        if values is None or not all(type(value) is str or (value is None and "." not in path) for value in values):
            return False
    return True


def _allowed(condition: Any) -> list | None:
    if _plain(condition):
        return [_normal(condition)]
    if isinstance(condition, Mapping) and len(condition) == 1:
        ((operator, operand),) = condition.items()
        if operator == "$eq" and _plain(operand):
            return [_normal(operand)]
        if operator == "$in" and isinstance(operand, (list, tuple)) and all(_plain(value) for value in operand):
            return list(dict.fromkeys(_normal(value) for value in operand))
    return None


class _Everything:
    def __contains__(self, item: Any) -> bool:
        return True


_EVERY_ID = _Everything()


def _matching(
    filter: Mapping, documents: Mapping, ids: list, checked: Any, indexes: _HashIndexes, version: int
) -> Iterator[dict]:
    """The stored documents of these ids the filter matches; those not in `checked` match by their
    buckets alone while no write has begun since they were looked up at `version` (a write may
    change them; one under way then may have filed them by values half written)."""
    for doc_id in ids:
        document = documents.get(doc_id)
        if document is None:
            continue
        if (doc_id in checked or indexes.version != version or version % 2) and not mongomock.filtering.filter_applies(
            filter, document
        ):
            continue
        yield document


def _indexes(store: mongomock.store.CollectionStore) -> _HashIndexes:
    indexes = store.__dict__.get("_policyhub_hash_indexes")
    if indexes is None:
        indexes = store.__dict__.setdefault("_policyhub_hash_indexes", _HashIndexes(store))
    return indexes


def _hashable_id(doc_id: Any) -> Any:
    return mongomock.helpers.hashdict(doc_id) if isinstance(doc_id, dict) else doc_id


def index_embedded_store() -> None:
    """Gives every mongomock collection the hash indexes above, and turns off mongomock's TTL
    emulation, which walks every document of a collection with a TTL index on each read: on the
    embedded store expired documents are purged by the purge sweep, and readers that must not see
    them filter by time (MongoDB's own TTL monitor is lazy too). Idempotent; affects only mongomock."""
    store_class = mongomock.store.CollectionStore
    collection_class = mongomock.collection.Collection
    if getattr(store_class, "_policyhub_indexed", False):
        return
    set_item, del_item = store_class.__setitem__, store_class.__delitem__
    scan = collection_class._iter_documents
    apply_update, apply_pipeline = collection_class._apply_update_document, collection_class._apply_update_pipeline
    aggregate = collection_class.aggregate

    def __setitem__(self, key, value):
        indexes = _indexes(self)
        with indexes.writing():
            set_item(self, key, value)
            indexes.stored(key, value)

    def __delitem__(self, key):
        indexes = _indexes(self)
        with indexes.writing():
            del_item(self, key)
            indexes.removed(key)

    def _remove_expired_documents(self):
        return None

    def _iter_documents(self, filter) -> Iterator[dict]:
        store = self._store
        indexes = _indexes(store)
        found = indexes.candidates(filter) if isinstance(filter, Mapping) else None
        if found is None:
            return scan(self, filter)
        ids, checked, version = found
        if not ids or checked is None:
            if not ids:
                mongomock.filtering.filter_applies(filter, {})  # validates the filter, as the scan does
            checked = _EVERY_ID
        return _matching(filter, store._documents, ids, checked, indexes, version)

    def _reindexed(apply):
        def wrapper(self, existing_document, *args, **kwargs):
            store = self._store
            indexes = _indexes(store)
            with indexes.writing():
                try:
                    return apply(self, existing_document, *args, **kwargs)
                finally:
                    # Updates change the stored document in place (or an upsert's draft, not stored yet).
                    doc_id = _hashable_id(existing_document.get("_id"))
                    if store._documents.get(doc_id) is existing_document:
                        indexes.stored(doc_id, existing_document)

        return wrapper

    def aggregate_from_match(self, pipeline, session=None, **kwargs):
        # mongomock copies the whole collection into a pipeline, then matches; a leading $match is
        # the find it stands for (same filter semantics, same natural order), served by the indexes.
        if not (pipeline and len(pipeline[0]) == 1 and isinstance(pipeline[0].get("$match"), Mapping)) or session:
            return aggregate(self, pipeline, session=session, **kwargs)
        spec = mongomock.helpers.patch_datetime_awareness_in_document(pipeline[0]["$match"])
        if not self.codec_options.tz_aware:
            return mongomock.aggregate.process_pipeline(list(self.find(spec)), self.database, pipeline[1:], session)
        # What a find returns, copied once (this rebuilds every dict and list): the head's results only.
        aware = mongomock.helpers.make_datetime_timezone_aware_in_document
        indexes = _indexes(self._store)
        for _ in range(_READ_ATTEMPTS):
            version = indexes.version
            head, done = evaluate_head(list(self._iter_documents(spec)), pipeline[1:])
            results = [aware(document) for document in head]
            if indexes.version == version and not version % 2:
                break
        return mongomock.aggregate.process_pipeline(results, self.database, pipeline[1 + done :], session)

    store_class.__setitem__, store_class.__delitem__ = __setitem__, __delitem__
    store_class._remove_expired_documents = _remove_expired_documents
    collection_class._iter_documents = _iter_documents
    collection_class._apply_update_document = _reindexed(apply_update)
    collection_class._apply_update_pipeline = _reindexed(apply_pipeline)
    collection_class.aggregate = aggregate_from_match
    store_class._policyhub_indexed = True
