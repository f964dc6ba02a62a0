"""Per-domain revision counters (see policyhub.model.revision), and the marks of writes that
span several documents but must be seen all at once."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from policyhub.manager.database import collection, translate_errors
from policyhub.model import RevisionDocument

# How long the mark of a write in progress stands: far longer than such a write takes (each of
# its database calls is bounded by the connection timeout), short enough that the mark of a
# process that died half-way does not hold readers back for long.
WRITE_MARK_SECONDS = 30.0


@dataclass(frozen=True)
class RevisionState:
    # the revisions of the domains asked, in order (0 for a domain never written)
    revisions: tuple[int, ...]
    # a write spanning several documents is under way in one of them
    writing: bool
    # how many such writes have landed in them (an index built across one may hold half of it)
    landed: int

    def same_writes(self, other: RevisionState) -> bool:
        """No write of several documents began or landed between the two states."""
        return not (self.writing or other.writing) and self.landed == other.landed


class RevisionManager:
    @translate_errors()
    def bump(self, domain_id: str) -> None:
        collection(RevisionDocument).update_one({"domain_id": domain_id}, {"$inc": {"revision": 1}}, upsert=True)

    @translate_errors()
    def current(self, domain_ids: list[str]) -> tuple[int, ...]:
        """The revisions of the given domains, in order (0 for a domain never written)."""
        return self.state(domain_ids).revisions

    @translate_errors()
    def state(self, domain_ids: list[str]) -> RevisionState:
        """The revisions of the given domains, and whether a write marked with begin_write is
        under way in one of them: one read."""
        now = time.time()
        stored = {
            doc["domain_id"]: doc
            for doc in collection(RevisionDocument).find(
                {"domain_id": {"$in": domain_ids}}, {"_id": 0, "domain_id": 1, "revision": 1, "writes": 1, "landed": 1}
            )
        }
        writing = any(until > now for doc in stored.values() for until in (doc.get("writes") or {}).values())
        return RevisionState(
            tuple(stored.get(d, {}).get("revision", 0) for d in domain_ids),
            writing,
            sum(doc.get("landed", 0) for doc in stored.values()),
        )

    @translate_errors()
    def begin_write(self, domain_id: str) -> str:
        """Marks a write spanning several documents as under way (readers then wait for it to
        land rather than see half of it); returns the mark to pass to end_write. Marks left by
        processes that died half-way are cleared here once they have run out."""
        revisions = collection(RevisionDocument)
        mark = secrets.token_hex(8)
        now = time.time()
        stored = revisions.find_one({"domain_id": domain_id}, {"_id": 0, "writes": 1}) or {}
        update: dict = {"$set": {f"writes.{mark}": now + WRITE_MARK_SECONDS}}
        stale = {f"writes.{old}": "" for old, until in (stored.get("writes") or {}).items() if until <= now}
        if stale:
            update["$unset"] = stale
        revisions.update_one({"domain_id": domain_id}, update, upsert=True)
        return mark

    @translate_errors()
    def end_write(self, domain_id: str, mark: str) -> None:
        """Lands the write: one update removes its mark and bumps the revision."""
        collection(RevisionDocument).update_one(
            {"domain_id": domain_id},
            {"$inc": {"revision": 1, "landed": 1}, "$unset": {f"writes.{mark}": ""}},
            upsert=True,
        )
