"""Queries of the change log (policyhub.model.change); RevisionManager writes it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from policyhub.manager.database import collection, translate_errors
from policyhub.model import ChangeDocument

_FIELDS = {"_id": 0, "seq": 1, "changes": 1, "transaction_id": 1, "created_at": 1, "purge_at": 1}


class ChangeManager:
    @translate_errors()
    def after(self, domain_id: str, seq: int, limit: int) -> list[dict[str, Any]]:
        """The domain's records with seq >= `seq`, ascending, at most `limit` of them (through
        the (domain_id, seq) index: only what follows the reader's position is read)."""
        return list(
            collection(ChangeDocument)
            .find({"domain_id": domain_id, "seq": {"$gte": seq}}, _FIELDS)
            .sort("seq", 1)
            .limit(limit)
        )

    @translate_errors()
    def purge_expired(self, now: datetime) -> int:
        """The sweep that backs the TTL index on purge_at (which the embedded store does not
        run; on MongoDB it makes expiry prompt too). Returns how many records it removed."""
        return collection(ChangeDocument).delete_many({"purge_at": {"$lte": now}}).deleted_count
