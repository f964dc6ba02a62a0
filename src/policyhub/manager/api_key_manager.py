"""Persistence of API keys (hashes only)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from policyhub.errors import NotFound
from policyhub.manager.database import collection, to_stored, translate_errors
from policyhub.manager.queries import run_list
from policyhub.model import ApiKeyDocument
from policyhub.query import QueryKeys, QuerySchema, compile_list

# Never leaves the manager: not in answers, audit entries or logs.
_SECRET_FIELDS = {"_id": 0, "key_hash": 0}
# What a key query may name: the fields of ApiKeyInfo (never the hash, which no answer shows).
API_KEY_KEYS = QueryKeys(
    fields=frozenset({"api_key_id", "name", "service_account_id", "domain_id", "state", "created_at", "revoked_at"}),
    computed={"api_key": "shown once, when the key is created, and never stored"},
)


class ApiKeyManager:
    def __init__(self, page_max_limit: int):
        self.schema = QuerySchema(
            keys=API_KEY_KEYS,
            keyword_fields=("api_key_id", "name", "service_account_id"),
            minimal_fields=("api_key_id", "name", "service_account_id", "state"),
            datetime_fields=frozenset({"created_at", "revoked_at"}),
            default_sort=(("created_at", False),),
            max_limit=page_max_limit,
        )

    @translate_errors()
    def create(self, record: dict[str, Any]) -> dict[str, Any]:
        collection(ApiKeyDocument).insert_one(to_stored(ApiKeyDocument, record))
        return {key: value for key, value in record.items() if key != "key_hash"}

    @translate_errors()
    def find_for_authentication(self, api_key_id: str) -> dict[str, Any] | None:
        """The one read that sees the hash: used to authenticate a presented key."""
        return collection(ApiKeyDocument).find_one({"api_key_id": api_key_id}, {"_id": 0})

    @translate_errors()
    def revoke(self, domain_id: str, api_key_id: str, now: datetime) -> dict[str, Any]:
        selector = {"api_key_id": api_key_id, "domain_id": domain_id}
        api_keys = collection(ApiKeyDocument)
        api_keys.update_one({**selector, "state": "ACTIVE"}, {"$set": {"state": "REVOKED", "revoked_at": now}})
        found = api_keys.find_one(selector, _SECRET_FIELDS)
        if found is None:
            raise NotFound("ApiKey", "api_key_id", api_key_id)
        return found

    def list(self, domain_id: str, query: dict | None) -> tuple[list[dict], int]:
        plan = compile_list(query, self.schema, {"domain_id": domain_id})
        results, total = run_list(ApiKeyDocument, plan)
        return [{k: v for k, v in doc.items() if k not in _SECRET_FIELDS} for doc in results], total
