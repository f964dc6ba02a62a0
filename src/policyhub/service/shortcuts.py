"""Request fields that narrow a list (SpaceONE's `PolicyQuery.policy_id`, ...): eq filters
ANDed with the request's query, so the query compiler is the only place that builds filters."""

from __future__ import annotations

from typing import Any


def narrowed(query: dict | None, fields: dict[str, Any]) -> dict:
    """The query with one `eq` filter per field that has a value."""
    narrowed_query = dict(query or {})
    extra = [{"k": key, "v": value, "o": "eq"} for key, value in fields.items() if value]
    if extra:
        narrowed_query["filter"] = list(narrowed_query.get("filter") or []) + extra
    return narrowed_query
