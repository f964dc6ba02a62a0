"""Which start-up migrations have run (policyhub.model.migration)."""

from __future__ import annotations

from datetime import datetime

from policyhub.manager.database import collection, translate_errors
from policyhub.model import MigrationDocument


class MigrationManager:
    @translate_errors()
    def done(self, name: str) -> bool:
        return collection(MigrationDocument).find_one({"name": name}, {"_id": 1}) is not None

    @translate_errors()
    def record(self, name: str, now: datetime) -> None:
        """Idempotent: processes starting together may both run a migration and record it."""
        collection(MigrationDocument).update_one({"name": name}, {"$setOnInsert": {"done_at": now}}, upsert=True)
