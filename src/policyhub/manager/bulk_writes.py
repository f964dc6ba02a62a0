"""Writes of many documents (the bulk import, the batch deletes), in batches: each database call carries at most
BATCH documents or operations, a few round trips for a large write and never one per document,
while each call stays well within the connection's per-operation time limit even on a slow
server. Between batches the caller's `progress` runs (a long write renews its write-under-way
mark there, see RevisionManager.keep_write).

Each write is all or nothing by itself (a failure half-way undoes what it did, then raises) and
returns what undoes it, for the caller's Undo when a later step fails. Undoing touches exactly
the documents the write changed, as it changed them: inserted documents by the `_id` given
here, updated ones only while they still hold what the write set (never a change another
caller made since), deleted ones (exactly those this write deleted) only where nothing took
their place."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import pymongo.errors
from bson import ObjectId
from mongoengine import Document
from pymongo import DeleteOne, ReplaceOne, UpdateOne

from policyhub.errors import ConcurrentChange
from policyhub.manager.database import collection, embedded

# At most this many documents or operations per database call (and per batch of a bulk read):
# a batch of assignments takes ~0.3-0.5 s on the slowest backend we test (a wire-protocol server
# written in Python; 5,000 took up to 5 s, the default per-operation limit, on a busy machine),
# a few ms on MongoDB.
BATCH = 1000
# At most this many values in one `$in` that is matched against as many documents (a batch of
# assignment ids or subject ids): a server may test each candidate document against the whole
# list (the wire-protocol server the tests run on does, as does the embedded store), so one
# `$in` of n values costs n^2 there. In lists of IN_BATCH the cost stays linear, in n / IN_BATCH
# round trips (50 for a batch of 10,000), each served by an index on MongoDB.
IN_BATCH = 200
DUPLICATE_KEY = 11000
# A remover's claim on a document it is about to delete (the field AssignmentManager.remove_ids
# claims assignments with), and how long it stands: far longer than a claim and its delete take.
CLAIM = "removal"
CLAIM_SECONDS = 60.0

Progress = Callable[[], None]


@dataclass(frozen=True)
class Update:
    """One document's update: `selector` matches it as read (compare-and-set), `after` as this
    write leaves it (what its undo matches), `raw` is the document as read (what it puts back)."""

    selector: dict[str, Any]
    update: dict[str, Any]
    after: dict[str, Any]
    raw: dict[str, Any]


# What undoes an update: (selector of the document as the write left it, the document as read).
Revert = tuple[dict[str, Any], dict[str, Any]]


def in_batches(values: Sequence[Any]) -> Iterator[list[Any]]:
    """The values in lists of at most IN_BATCH, for one `$in` each."""
    for start in range(0, len(values), IN_BATCH):
        yield list(values[start : start + IN_BATCH])


def insert(document: type[Document], documents: Sequence[dict[str, Any]], progress: Progress, what: str) -> list[Any]:
    """Inserts the documents, each with a new `_id`; returns those ids (what `remove` takes to
    undo it). A unique key taken meanwhile (a concurrent create of the same id or pair) is
    ConcurrentChange naming `what`."""
    prepared = [{**doc, "_id": ObjectId()} for doc in documents]
    ids = [doc["_id"] for doc in prepared]
    stored = collection(document)
    try:
        for start in range(0, len(prepared), BATCH):
            stored.insert_many(prepared[start : start + BATCH], ordered=False)
            progress()
    except pymongo.errors.BulkWriteError as exc:
        remove(document, ids, progress)
        errors = exc.details.get("writeErrors", [])
        if errors and all(error.get("code") == DUPLICATE_KEY for error in errors):
            raise _concurrent(len(errors), what, "created") from None
        raise
    except Exception:
        remove(document, ids, progress)
        raise
    return ids


def update(document: type[Document], updates: Sequence[Update], progress: Progress, what: str) -> list[Revert]:
    """Applies each update to its document as read; one that changed meanwhile (its selector
    matches nothing) is ConcurrentChange naming `what`. Returns what `revert` takes to undo it."""
    reverts = [(item.after, item.raw) for item in updates]
    try:
        matched = _apply(document, [UpdateOne(item.selector, item.update) for item in updates], progress)
    except Exception:
        revert(document, reverts, progress)
        raise
    if matched != len(updates):
        revert(document, reverts, progress)
        raise _concurrent(len(updates) - matched, what, "changed")
    return reverts


def delete(
    document: type[Document], raws: Sequence[dict[str, Any]], progress: Progress, what: str
) -> list[dict[str, Any]]:
    """Deletes the documents as read (by `_id`), all or nothing. Each is first claimed (the
    remover's claim of assignments, see AssignmentManager.remove_ids), so this call deletes
    exactly what it claimed: one gone meanwhile, or claimed by another remover, is
    ConcurrentChange naming `what`, and nothing is deleted. Returns what `put_back` takes to
    undo it."""
    if not raws:
        return []
    stored = collection(document)
    now = time.time()
    token = secrets.token_hex(8)
    claims = [
        UpdateOne(
            {"_id": raw["_id"], f"{CLAIM}.until": {"$not": {"$gt": now}}},
            {"$set": {CLAIM: {"by": token, "until": now + CLAIM_SECONDS}}},
        )
        for raw in raws
    ]
    ours = {"domain_id": raws[0]["domain_id"], f"{CLAIM}.by": token}
    try:
        claimed = _apply(document, claims, progress)
        if claimed != len(raws):
            raise _concurrent(len(raws) - claimed, what, "removed or being removed")
        stored.delete_many(ours)
    except Exception:
        # Whatever this call claimed and did not delete is free again.
        stored.update_many(ours, {"$unset": {CLAIM: ""}})
        raise
    progress()
    return list(raws)


def remove(document: type[Document], ids: Sequence[Any], progress: Progress) -> None:
    """Undoes `insert`: deletes the documents with these `_id`s."""
    _apply(document, [DeleteOne({"_id": _id}) for _id in ids], progress)


def revert(document: type[Document], reverts: Sequence[Revert], progress: Progress) -> None:
    """Undoes `update`: each document that still holds what the update set is put back as it
    was read."""
    _apply(document, [ReplaceOne(after, raw) for after, raw in reverts], progress)


def put_back(document: type[Document], raws: Sequence[dict[str, Any]], progress: Progress) -> None:
    """Undoes `delete`: each document is inserted again as it was read, unless it is there (or
    another document took its unique key meanwhile: that one stays)."""
    operations = [
        UpdateOne({"_id": raw["_id"]}, {"$setOnInsert": {k: v for k, v in raw.items() if k != "_id"}}, upsert=True)
        for raw in raws
    ]
    try:
        _apply(document, operations, progress)
    except pymongo.errors.BulkWriteError as exc:
        if any(error.get("code") != DUPLICATE_KEY for error in exc.details.get("writeErrors", [])):
            raise


def _apply(document: type[Document], operations: list[Any], progress: Progress, count: str = "matched") -> int:
    """Runs the operations unordered, in batches; returns how many matched (or were deleted)."""
    stored = collection(document)
    if embedded(stored):
        return _apply_one_by_one(stored, operations, count)
    done = 0
    for start in range(0, len(operations), BATCH):
        result = stored.bulk_write(operations[start : start + BATCH], ordered=False)
        done += result.deleted_count if count == "deleted" else result.matched_count
        progress()
    return done


def _apply_one_by_one(stored, operations: list[Any], count: str) -> int:
    """The embedded store (in process, so one call per operation costs nothing on the wire)
    cannot run pymongo's current bulk operations: each runs as its own call, errors collected
    as a bulk write reports them."""
    done = 0
    errors = []
    for index, operation in enumerate(operations):
        try:
            if isinstance(operation, DeleteOne):
                done += stored.delete_one(operation._filter).deleted_count
            elif isinstance(operation, ReplaceOne):
                done += stored.replace_one(
                    operation._filter, operation._doc, upsert=bool(operation._upsert)
                ).matched_count
            else:
                done += stored.update_one(
                    operation._filter, operation._doc, upsert=bool(operation._upsert)
                ).matched_count
        except pymongo.errors.DuplicateKeyError as exc:
            errors.append({"index": index, "code": DUPLICATE_KEY, "errmsg": str(exc)})
    if errors:
        raise pymongo.errors.BulkWriteError({"writeErrors": errors})
    return done


def _concurrent(count: int, what: str, verb: str) -> ConcurrentChange:
    return ConcurrentChange(
        f"{count} {what} {verb} meanwhile by another call; nothing was written, retry",
        metadata={"resource": what},
    )
