"""Persistence and queries of repositories (installation-wide)."""
from __future__ import annotations

from typing import Any

from mongoengine import NotUniqueError

from policyhub.errors import AlreadyExists, NotFound
from policyhub.manager.database import aggregate, translate_errors
from policyhub.manager.records import repository_record
from policyhub.model import RepositoryDocument
from policyhub.query import QuerySchema, compile_list, compile_stat, unpack_list, unpack_stat

# Repositories are installation-wide: their queries have no tenant scope.
INSTALLATION_SCOPE: dict = {}


class RepositoryManager:
    def __init__(self, page_max_limit: int):
        self.schema = QuerySchema(
            keyword_fields=("repository_id", "name", "repository_type", "endpoint"),
            minimal_fields=("repository_id", "name", "repository_type"),
            datetime_fields=frozenset({"created_at"}),
            default_sort=(("created_at", False),),
            max_limit=page_max_limit,
        )

    @translate_errors()
    def ensure(self, record: dict[str, Any]) -> None:
        """Creates a built-in repository unless it exists (idempotent across processes)."""
        fields = {f"set_on_insert__{key}": value for key, value in record.items() if key != "repository_id"}
        RepositoryDocument.objects(repository_id=record["repository_id"]).update_one(upsert=True, **fields)

    @translate_errors()
    def create(self, record: dict[str, Any]) -> dict[str, Any]:
        """Stores a registered (remote) repository; a taken name is ALREADY_EXISTS."""
        document = RepositoryDocument(**record)
        try:
            document.save(force_insert=True)
        except NotUniqueError:
            raise AlreadyExists("Repository", "name", record["name"]) from None
        return repository_record(document.to_mongo())

    @translate_errors()
    def conflict(self, name: str, endpoint: str) -> tuple[str, str] | None:
        """(field, value) of an existing repository with this name or endpoint, else None."""
        clash = RepositoryDocument._get_collection().find_one(
            {"$or": [{"name": name}, {"endpoint": endpoint}]}, {"_id": 0, "name": 1, "endpoint": 1})
        if clash is None:
            return None
        return ("name", name) if clash.get("name") == name else ("endpoint", endpoint)

    @translate_errors()
    def of_type(self, repository_type: str) -> list[dict[str, Any]]:
        """Every repository of a type, oldest first (indexed on repository_type)."""
        found = RepositoryDocument._get_collection().find({"repository_type": repository_type}, {"_id": 0})
        return sorted((repository_record(raw) for raw in found),
                      key=lambda record: (record["created_at"], record["repository_id"]))

    @translate_errors()
    def get(self, repository_id: str) -> dict[str, Any]:
        document = RepositoryDocument.objects(repository_id=repository_id).first()
        if document is None:
            raise NotFound("Repository", "repository_id", repository_id)
        return repository_record(document.to_mongo())

    @translate_errors()
    def rename(self, repository_id: str, name: str) -> dict[str, Any]:
        try:
            updated = RepositoryDocument.objects(repository_id=repository_id).modify(new=True, set__name=name)
        except NotUniqueError:
            raise AlreadyExists("Repository", "name", name) from None
        if updated is None:
            raise NotFound("Repository", "repository_id", repository_id)
        return repository_record(updated.to_mongo())

    @translate_errors()
    def delete(self, repository_id: str) -> None:
        if RepositoryDocument.objects(repository_id=repository_id).delete() == 0:
            raise NotFound("Repository", "repository_id", repository_id)

    def list(self, query: dict | None) -> tuple[list[dict], int]:
        plan = compile_list(query, self.schema, INSTALLATION_SCOPE)
        results, total = unpack_list(plan, aggregate(RepositoryDocument, plan.pipeline))
        return [repository_record(doc) for doc in results], total

    def stat(self, query: dict | None) -> tuple[list, int | None]:
        plan = compile_stat(query, self.schema, INSTALLATION_SCOPE)
        return unpack_stat(plan, aggregate(RepositoryDocument, plan.pipeline))

