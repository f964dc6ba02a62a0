"""Per-domain revision counters (see policyhub.model.revision)."""

from __future__ import annotations

from policyhub.manager.database import collection, translate_errors
from policyhub.model import RevisionDocument


class RevisionManager:
    @translate_errors()
    def bump(self, domain_id: str) -> None:
        collection(RevisionDocument).update_one({"domain_id": domain_id}, {"$inc": {"revision": 1}}, upsert=True)

    @translate_errors()
    def current(self, domain_ids: list[str]) -> tuple[int, ...]:
        """The revisions of the given domains, in order (0 for a domain never written)."""
        stored = {
            doc["domain_id"]: doc["revision"]
            for doc in collection(RevisionDocument).find(
                {"domain_id": {"$in": domain_ids}}, {"_id": 0, "domain_id": 1, "revision": 1}
            )
        }
        return tuple(stored.get(domain_id, 0) for domain_id in domain_ids)
