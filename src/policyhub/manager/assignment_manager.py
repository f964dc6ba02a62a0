"""Persistence and queries of assignments."""
from __future__ import annotations

from typing import Any, Iterable

import pymongo.errors
from mongoengine import NotUniqueError

from policyhub.errors import AlreadyExists, NotFound
from policyhub.manager.database import aggregate, translate_errors
from policyhub.model import AssignmentDocument
from policyhub.query import QuerySchema, compile_list, compile_stat, unpack_list, unpack_stat

# (subject_type, subject_id, grant_type, grant_id): what makes an assignment unique in a domain.
Key = tuple[str, str, str, str]
KEY_FIELDS = ("subject_type", "subject_id", "grant_type", "grant_id")
EDGE_FIELDS = {"_id": 0, **{field: 1 for field in KEY_FIELDS}, "expires_at": 1}


def key_of(record: dict[str, Any]) -> Key:
    return tuple(record[field] for field in KEY_FIELDS)  # type: ignore[return-value]


def _record(raw: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in raw.items() if key != "_id"}


class AssignmentManager:
    def __init__(self, page_max_limit: int):
        self.schema = QuerySchema(
            keyword_fields=("assignment_id", "subject_id", "grant_id"),
            minimal_fields=("assignment_id", *KEY_FIELDS, "domain_id"),
            datetime_fields=frozenset({"created_at", "expires_at"}),
            default_sort=(("created_at", True),),
            max_limit=page_max_limit,
        )

    @translate_errors()
    def create(self, record: dict[str, Any]) -> dict[str, Any]:
        try:
            AssignmentDocument(**record).save(force_insert=True)
        except NotUniqueError:
            raise AlreadyExists("Assignment", "subject/grant", "/".join(key_of(record))) from None
        return self.get(record["domain_id"], record["assignment_id"])

    @translate_errors()
    def find_by_keys(self, domain_id: str, keys: Iterable[Key]) -> dict[Key, dict[str, Any]]:
        wanted = set(keys)
        if not wanted:
            return {}
        # Two $in lists (served by the unique index) and an exact filter here: a $or of
        # thousands of clauses is far slower, on MongoDB and on the embedded store alike.
        query = {"domain_id": domain_id,
                 "subject_id": {"$in": sorted({key[1] for key in wanted})},
                 "grant_id": {"$in": sorted({key[3] for key in wanted})}}
        found: dict[Key, dict[str, Any]] = {}
        for raw in AssignmentDocument._get_collection().find(query):
            key = key_of(raw)
            if key in wanted:
                found[key] = _record(raw)
        return found

    @translate_errors()
    def insert_many(self, records: list[dict[str, Any]]) -> None:
        """All or nothing: on failure, what this call inserted is removed again."""
        if not records:
            return
        collection = AssignmentDocument._get_collection()
        documents = [AssignmentDocument(**record).to_mongo().to_dict() for record in records]
        try:
            collection.insert_many(documents, ordered=True)
        except pymongo.errors.PyMongoError as exc:
            ids = [record["assignment_id"] for record in records]
            collection.delete_many({"domain_id": records[0]["domain_id"], "assignment_id": {"$in": ids}})
            if isinstance(exc, pymongo.errors.BulkWriteError):
                raise AlreadyExists("Assignment", "subject/grant", "a concurrent write; retry") from exc
            raise

    @translate_errors()
    def delete_ids(self, domain_id: str, assignment_ids: list[str]) -> int:
        return AssignmentDocument._get_collection().delete_many(
            {"domain_id": domain_id, "assignment_id": {"$in": assignment_ids}}).deleted_count

    @translate_errors()
    def delete(self, domain_id: str, assignment_id: str) -> None:
        if AssignmentDocument.objects(domain_id=domain_id, assignment_id=assignment_id).delete() == 0:
            raise NotFound("Assignment", "assignment_id", assignment_id)

    @translate_errors()
    def get(self, domain_id: str, assignment_id: str) -> dict[str, Any]:
        raw = AssignmentDocument._get_collection().find_one({"domain_id": domain_id, "assignment_id": assignment_id})
        if raw is None:
            raise NotFound("Assignment", "assignment_id", assignment_id)
        return _record(raw)

    @translate_errors()
    def count_for_policy(self, domain_id: str, policy_ids: list[str]) -> dict[str, int]:
        found = AssignmentDocument._get_collection().aggregate([
            {"$match": {"domain_id": domain_id, "grant_type": "POLICY", "grant_id": {"$in": policy_ids}}},
            {"$group": {"_id": "$grant_id", "n": {"$sum": 1}}}])
        return {doc["_id"]: doc["n"] for doc in found}

    @translate_errors()
    def for_policy(self, domain_id: str, policy_id: str) -> list[dict[str, Any]]:
        """The raw assignments granting a policy (what a cascade delete parks on the policy)."""
        return list(AssignmentDocument._get_collection().find(
            {"domain_id": domain_id, "grant_type": "POLICY", "grant_id": policy_id}, {"_id": 0}))

    @translate_errors()
    def put_back(self, documents: list[dict[str, Any]]) -> None:
        """Re-inserts parked assignments; ones that exist again meanwhile are kept as they are."""
        if not documents:
            return
        try:
            AssignmentDocument._get_collection().insert_many([dict(d) for d in documents], ordered=False)
        except pymongo.errors.BulkWriteError as exc:
            if any(error.get("code") != 11000 for error in exc.details.get("writeErrors", [])):
                raise

    @translate_errors()
    def regrant(self, domain_id: str, policy_id: str, new_policy_id: str) -> int:
        """Points a renamed policy's assignments at its new id."""
        return AssignmentDocument._get_collection().update_many(
            {"domain_id": domain_id, "grant_type": "POLICY", "grant_id": policy_id},
            {"$set": {"grant_id": new_policy_id}}).modified_count

    @translate_errors()
    def edges(self, domain_id: str) -> list[dict[str, Any]]:
        """Every assignment of the domain, reduced to what the evaluation engine needs."""
        return list(AssignmentDocument._get_collection().find({"domain_id": domain_id}, EDGE_FIELDS))

    def list(self, domain_id: str, query: dict | None) -> tuple[list[dict], int]:
        plan = compile_list(query, self.schema, {"domain_id": domain_id})
        results, total = unpack_list(plan, aggregate(AssignmentDocument, plan.pipeline))
        return [_record(doc) for doc in results], total

    def stat(self, domain_id: str, query: dict | None) -> tuple[list, int | None]:
        plan = compile_stat(query, self.schema, {"domain_id": domain_id})
        return unpack_stat(plan, aggregate(AssignmentDocument, plan.pipeline))
