"""Persistence and queries of repositories (installation-wide)."""

from __future__ import annotations

from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from policyhub.errors import AlreadyExists, NotFound
from policyhub.manager.database import collection, to_stored, translate_errors
from policyhub.manager.queries import run_list, run_stat
from policyhub.manager.records import REPOSITORY_FIELDS, repository_record
from policyhub.model import RepositoryDocument
from policyhub.query import QueryKeys, QuerySchema, compile_list, compile_stat

# Repositories are installation-wide: their queries have no tenant scope.
INSTALLATION_SCOPE: dict = {}


class RepositoryManager:
    def __init__(self, page_max_limit: int):
        self.schema = QuerySchema(
            # RepositoryInfo shows the stored fields as they are.
            keys=QueryKeys(fields=frozenset(REPOSITORY_FIELDS)),
            keyword_fields=("repository_id", "name", "repository_type", "endpoint", "remote_repository_id"),
            minimal_fields=("repository_id", "name", "repository_type"),
            datetime_fields=frozenset({"created_at"}),
            default_sort=(("created_at", False),),
            max_limit=page_max_limit,
        )

    @translate_errors()
    def ensure(self, record: dict[str, Any]) -> None:
        """Creates a built-in repository unless it exists (idempotent across processes)."""
        fields = {key: value for key, value in record.items() if key != "repository_id"}
        collection(RepositoryDocument).update_one(
            {"repository_id": record["repository_id"]}, {"$setOnInsert": fields}, upsert=True
        )

    @translate_errors()
    def create(self, record: dict[str, Any]) -> dict[str, Any]:
        """Stores a registered (remote) repository; a taken name is ALREADY_EXISTS."""
        stored = to_stored(RepositoryDocument, record)
        try:
            collection(RepositoryDocument).insert_one(stored)
        except DuplicateKeyError:
            raise AlreadyExists("Repository", "name", record["name"]) from None
        return repository_record(stored)

    @translate_errors()
    def conflict(self, name: str, endpoint: str) -> tuple[str, str] | None:
        """(field, value) of an existing repository with this name or endpoint, else None."""
        clash = collection(RepositoryDocument).find_one(
            {"$or": [{"name": name}, {"endpoint": endpoint}]}, {"_id": 0, "name": 1, "endpoint": 1}
        )
        if clash is None:
            return None
        return ("name", name) if clash.get("name") == name else ("endpoint", endpoint)

    @translate_errors()
    def of_type(self, repository_type: str) -> list[dict[str, Any]]:
        """Every repository of a type, oldest first (indexed on repository_type)."""
        found = collection(RepositoryDocument).find({"repository_type": repository_type}, {"_id": 0})
        return sorted(
            (repository_record(raw) for raw in found),
            key=lambda record: (record["created_at"], record["repository_id"]),
        )

    @translate_errors()
    def get(self, repository_id: str) -> dict[str, Any]:
        raw = collection(RepositoryDocument).find_one({"repository_id": repository_id})
        if raw is None:
            raise NotFound("Repository", "repository_id", repository_id)
        return repository_record(raw)

    @translate_errors()
    def rename(self, repository_id: str, name: str) -> dict[str, Any]:
        try:
            updated = collection(RepositoryDocument).find_one_and_update(
                {"repository_id": repository_id}, {"$set": {"name": name}}, return_document=ReturnDocument.AFTER
            )
        except DuplicateKeyError:
            raise AlreadyExists("Repository", "name", name) from None
        if updated is None:
            raise NotFound("Repository", "repository_id", repository_id)
        return repository_record(updated)

    @translate_errors()
    def delete(self, repository_id: str) -> None:
        if collection(RepositoryDocument).delete_one({"repository_id": repository_id}).deleted_count == 0:
            raise NotFound("Repository", "repository_id", repository_id)

    def list(self, query: dict | None) -> tuple[list[dict], int]:
        plan = compile_list(query, self.schema, INSTALLATION_SCOPE)
        results, total = run_list(RepositoryDocument, plan)
        return [repository_record(doc) for doc in results], total

    def stat(self, query: dict | None) -> tuple[list, int | None]:
        plan = compile_stat(query, self.schema, INSTALLATION_SCOPE)
        return run_stat(RepositoryDocument, plan)
