"""Persistence and queries of groups and roles (see policyhub.model.subject_set); one manager
per collection, the same code for both."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pymongo.errors
from mongoengine import Document
from pymongo import ReturnDocument

from policyhub.errors import AlreadyExists, NotFound
from policyhub.manager import bulk_writes
from policyhub.manager.bulk_writes import Progress, Revert, Update
from policyhub.manager.database import collection, to_stored, translate_errors
from policyhub.manager.queries import run_list, run_stat
from policyhub.query import QueryKeys, QuerySchema, compile_list, compile_stat

DUPLICATE_KEY = 11000
# Shown by GroupInfo and RoleInfo but worked out (from the assignments) as the answer is built.
COMPUTED = {
    "member_count": "counted from the assignments when the answer is built, not stored",
    "policy_ids": "read from the assignments when the answer is built, not stored",
    "consistency_token": "given by a write's answer, not stored with the set",
}
ROLE_COMPUTED = {
    "is_bound": "whether the role has members, worked out when the answer is built, not stored",
    "permission_groups": "worked out from the role's policies when the answer is built, not stored",
}


class SubjectSetManager:
    def __init__(self, document: type[Document], resource: str, id_field: str, page_max_limit: int):
        self.document = document
        # "Group" / "Role": names the resource in NOT_FOUND and ALREADY_EXISTS errors.
        self.resource = resource
        self.id_field = id_field
        self.schema = QuerySchema(
            # What a query may name: the stored fields, which GroupInfo and RoleInfo show as they are.
            keys=QueryKeys(
                fields=frozenset({id_field, "name", "description", "labels", "domain_id", "created_at", "updated_at"}),
                maps=frozenset({"tags"}),
                computed={**COMPUTED, **(ROLE_COMPUTED if resource == "Role" else {})},
            ),
            keyword_fields=(id_field, "name", "description"),
            minimal_fields=(id_field, "name", "domain_id"),
            datetime_fields=frozenset({"created_at", "updated_at"}),
            default_sort=(("created_at", False),),
            max_limit=page_max_limit,
        )

    def _record(self, raw: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in raw.items() if key != "_id"}

    @translate_errors()
    def create(self, record: dict[str, Any]) -> dict[str, Any]:
        stored = to_stored(self.document, record)
        try:
            collection(self.document).insert_one(stored)
        except pymongo.errors.DuplicateKeyError:
            raise AlreadyExists(self.resource, self.id_field, record[self.id_field]) from None
        return self._record(stored)

    @translate_errors()
    def get(self, domain_id: str, set_id: str) -> dict[str, Any]:
        raw = collection(self.document).find_one({"domain_id": domain_id, self.id_field: set_id})
        if raw is None:
            raise NotFound(self.resource, self.id_field, set_id)
        return self._record(raw)

    @translate_errors()
    def existing_ids(self, domain_id: str, set_ids: list[str]) -> set[str]:
        return {
            raw[self.id_field]
            for batch in bulk_writes.in_batches(set_ids)
            for raw in collection(self.document).find(self._ids(domain_id, batch), {"_id": 0, self.id_field: 1})
        }

    @translate_errors()
    def get_many(self, domain_id: str, set_ids: list[str]) -> dict[str, dict[str, Any]]:
        return {
            raw[self.id_field]: self._record(raw)
            for batch in bulk_writes.in_batches(set_ids)
            for raw in collection(self.document).find(self._ids(domain_id, batch))
        }

    @translate_errors()
    def update(self, domain_id: str, set_id: str, changes: dict[str, Any], now: datetime) -> dict[str, Any]:
        """Writes the changes (a change of the id field renames: refused when the new id is taken)."""
        try:
            updated = collection(self.document).find_one_and_update(
                {"domain_id": domain_id, self.id_field: set_id},
                {"$set": {**changes, "updated_at": now}},
                return_document=ReturnDocument.AFTER,
            )
        except pymongo.errors.DuplicateKeyError:
            raise AlreadyExists(self.resource, self.id_field, changes[self.id_field]) from None
        if updated is None:
            raise NotFound(self.resource, self.id_field, set_id)
        return self._record(updated)

    @translate_errors()
    def delete_ids(self, domain_id: str, set_ids: list[str]) -> int:
        return sum(
            collection(self.document).delete_many(self._ids(domain_id, batch)).deleted_count
            for batch in bulk_writes.in_batches(set_ids)
        )

    def _ids(self, domain_id: str, batch: list[str]) -> dict[str, Any]:
        """Selects a batch of the domain's sets by id: an equality and an `$in` of at most
        IN_BATCH ids, which the unique (domain_id, id) index serves."""
        return {"domain_id": domain_id, self.id_field: {"$in": batch}}

    @translate_errors()
    def put_back(self, records: list[dict[str, Any]]) -> None:
        """Re-inserts deleted documents (undo); ones that exist again meanwhile are kept as they are."""
        if not records:
            return
        try:
            collection(self.document).insert_many([to_stored(self.document, r) for r in records], ordered=False)
        except pymongo.errors.BulkWriteError as exc:
            if any(error.get("code") != DUPLICATE_KEY for error in exc.details.get("writeErrors", [])):
                raise

    @translate_errors()
    def ensure(self, records: list[dict[str, Any]]) -> int:
        """Creates each document unless its id exists (idempotent, safe from several processes at
        once); returns how many this call created. One upsert each: it runs at start, once per set
        that only assignments name."""
        sets = collection(self.document)
        created = 0
        for record in records:
            try:
                result = sets.update_one(
                    {"domain_id": record["domain_id"], self.id_field: record[self.id_field]},
                    {"$setOnInsert": to_stored(self.document, record)},
                    upsert=True,
                )
            except pymongo.errors.DuplicateKeyError:
                continue  # another process starting at the same time created it
            created += result.upserted_id is not None
        return created

    # -- bulk (export and import of a domain) ----------------------------------------------------

    @translate_errors()
    def snapshot(self, domain_id: str) -> list[dict[str, Any]]:
        """Every set of the domain, as stored (with `_id`, for a bulk write's undo; without a
        bulk delete's claim)."""
        return list(
            collection(self.document)
            .find({"domain_id": domain_id}, {bulk_writes.CLAIM: 0})
            .batch_size(bulk_writes.BATCH)
        )

    @translate_errors()
    def ids(self, domain_id: str) -> set[str]:
        found = collection(self.document).find({"domain_id": domain_id}, {"_id": 0, self.id_field: 1})
        return {raw[self.id_field] for raw in found}

    @translate_errors()
    def insert_bulk(self, records: list[dict[str, Any]], progress: Progress) -> list[Any]:
        """Creates the sets, all or nothing; returns what `remove_bulk` takes to undo it."""
        stored = [to_stored(self.document, record) for record in records]
        return bulk_writes.insert(self.document, stored, progress, self._plural)

    @translate_errors()
    def update_bulk(
        self, updates: list[tuple[dict[str, Any], dict[str, Any]]], now: datetime, progress: Progress
    ) -> list[Revert]:
        """Writes each (set as read, changes), compare-and-set on the `updated_at` read (a set
        changed or deleted meanwhile is ConcurrentChange, nothing written); returns what
        `revert_bulk` takes to undo it."""
        return bulk_writes.update(
            self.document,
            [
                Update(
                    selector={"_id": raw["_id"], "updated_at": raw["updated_at"]},
                    update={"$set": {**changes, "updated_at": now}},
                    after={"_id": raw["_id"], "updated_at": now},
                    raw=raw,
                )
                for raw, changes in updates
            ],
            progress,
            self._plural,
        )

    @translate_errors()
    def delete_bulk(self, raws: list[dict[str, Any]], progress: Progress) -> list[dict[str, Any]]:
        """Deletes the sets as read; returns what `put_back_bulk` takes to undo it."""
        return bulk_writes.delete(self.document, raws, progress, self._plural)

    @translate_errors()
    def remove_bulk(self, ids: list[Any], progress: Progress) -> None:
        """Undoes insert_bulk."""
        bulk_writes.remove(self.document, ids, progress)

    @translate_errors()
    def revert_bulk(self, reverts: list[Revert], progress: Progress) -> None:
        """Undoes update_bulk."""
        bulk_writes.revert(self.document, reverts, progress)

    @translate_errors()
    def put_back_bulk(self, raws: list[dict[str, Any]], progress: Progress) -> None:
        """Undoes delete_bulk."""
        bulk_writes.put_back(self.document, raws, progress)

    @property
    def _plural(self) -> str:
        return f"{self.resource.lower()}s"

    def list(self, domain_id: str, query: dict | None) -> tuple[list[dict], int]:
        plan = compile_list(query, self.schema, {"domain_id": domain_id})
        results, total = run_list(self.document, plan)
        return [self._record(doc) for doc in results], total

    def stat(self, domain_id: str, query: dict | None) -> tuple[list, int | None]:
        plan = compile_stat(query, self.schema, {"domain_id": domain_id})
        return run_stat(self.document, plan)
