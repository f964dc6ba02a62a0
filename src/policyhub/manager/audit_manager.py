"""Persistence and queries of the audit trail."""

from __future__ import annotations

from typing import Any

from policyhub.manager import bulk_writes
from policyhub.manager.database import collection, to_stored, translate_errors
from policyhub.manager.queries import run_list, run_stat
from policyhub.model import AuditDocument
from policyhub.query import QueryKeys, QuerySchema, compile_list, compile_stat

# What an audit query may name: the fields of AuditInfo; `before` and `after` are the resource
# as it was, free-form.
AUDIT_KEYS = QueryKeys(
    fields=frozenset(
        {
            "audit_id",
            "transaction_id",
            "caller_type",
            "caller_id",
            "method",
            "resource_type",
            "resource_id",
            "domain_id",
            "created_at",
        }
    ),
    maps=frozenset({"before", "after"}),
)


def _record(raw: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in raw.items() if key != "_id"}


class AuditManager:
    def __init__(self, page_max_limit: int):
        self.schema = QuerySchema(
            keys=AUDIT_KEYS,
            keyword_fields=("resource_id", "caller_id", "method", "transaction_id"),
            minimal_fields=(
                "audit_id",
                "transaction_id",
                "caller_id",
                "method",
                "resource_type",
                "resource_id",
                "created_at",
            ),
            datetime_fields=frozenset({"created_at"}),
            default_sort=(("created_at", False),),
            max_limit=page_max_limit,
        )

    @translate_errors()
    def add_many(self, entries: list[dict[str, Any]]) -> None:
        """In calls of at most bulk_writes.BATCH entries, each well within the per-operation limit."""
        audits = collection(AuditDocument)
        for start in range(0, len(entries), bulk_writes.BATCH):
            audits.insert_many(
                [to_stored(AuditDocument, entry) for entry in entries[start : start + bulk_writes.BATCH]]
            )

    def list(self, domain_id: str, query: dict | None) -> tuple[list[dict], int]:
        plan = compile_list(query, self.schema, {"domain_id": domain_id})
        results, total = run_list(AuditDocument, plan)
        return [_record(doc) for doc in results], total

    def stat(self, domain_id: str, query: dict | None) -> tuple[list, int | None]:
        plan = compile_stat(query, self.schema, {"domain_id": domain_id})
        return run_stat(AuditDocument, plan)
