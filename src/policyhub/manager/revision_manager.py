"""Per-domain revision counters (see policyhub.model.revision), the marks of writes that span
several documents but must be seen all at once, and the change log record each bump writes
(see policyhub.model.change)."""

from __future__ import annotations

import contextlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pymongo.errors
from pymongo import ReturnDocument

from policyhub.manager.database import collection, translate_errors
from policyhub.model import ChangeDocument, RevisionDocument

DUPLICATE_KEY = 11000
# One change: {"kind": POLICY|ASSIGNMENT|GROUP|ROLE, "id": ..., "operation": CREATE|UPDATE|DELETE},
# an ASSIGNMENT one with "subject" and "grant" ({"type", "id"}; see policyhub.model.change).
Change = dict[str, Any]
# Applied to a write's changes once its revision has moved, before they are logged (see
# policyhub.service.invalidation): as many changes out as in, as the revisions are counted by them.
Settle = Callable[[list[Change]], list[Change]]

# How long the mark of a write in progress stands: far longer than such a write takes (each of
# its database calls is bounded by the connection timeout; a longer one, a bulk import, renews
# its mark as it goes, see keep_write), short enough that the mark of a process that died
# half-way does not hold readers back for long.
WRITE_MARK_SECONDS = 30.0
# The most changes one change record holds: a write that changed more (a bulk import) lands as
# several consecutive revisions at once, one record each, so no record nears MongoDB's 16 MiB
# document limit (a change is at most ~600 bytes, an assignment's pair included).
CHANGES_PER_RECORD = 10_000


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
    def __init__(self, change_retention: timedelta = timedelta(days=7)):
        self.change_retention = change_retention

    @translate_errors()
    def bump(
        self,
        domain_id: str,
        changes: list[Change] | None = None,
        transaction_id: str = "",
        complete: bool = True,
        settle: Settle | None = None,
    ) -> int:
        """Moves the domain's revision on and logs what changed at the new revision (an empty
        record for a write that changed nothing, so the log has no holes; one marked incomplete
        for a write that failed part-way). Returns it. `settle`, when given, is applied to the
        changes once the revision has moved, before they are logged."""
        return self._land(domain_id, {"$inc": {"revision": 1}}, changes or [], transaction_id, complete, settle)

    def _land(
        self,
        domain_id: str,
        update: dict[str, Any],
        changes: list[Change],
        transaction_id: str,
        complete: bool,
        settle: Settle | None,
    ) -> int:
        """Moves the revision on by one, or by one per CHANGES_PER_RECORD changes (in the same
        update, so readers see all of them land at once), and writes a record per revision."""
        count = max(1, -(-len(changes) // CHANGES_PER_RECORD))
        update["$inc"]["revision"] = count
        revisions = collection(RevisionDocument)
        stored = _count(revisions, domain_id, update)
        if stored is None:
            # The domain's first write: its counter is created apart, then counted. An upsert that
            # counts could race another process's first write, and a racing upsert may answer
            # without the document although it counted (its revision would be unknown).
            with contextlib.suppress(pymongo.errors.DuplicateKeyError):
                revisions.update_one({"domain_id": domain_id}, {"$setOnInsert": {"revision": 0}}, upsert=True)
            stored = _count(revisions, domain_id, update)
        if stored is None:
            raise RuntimeError(f"the revision counter of domain {domain_id} vanished while it was counted")
        revision = int(stored["revision"])
        if settle is not None:
            changes = settle(changes)
        parts = [changes[i : i + CHANGES_PER_RECORD] for i in range(0, len(changes), CHANGES_PER_RECORD)] or [[]]
        now = datetime.now(timezone.utc)
        first = revision - len(parts) + 1
        records = [
            {
                "domain_id": domain_id,
                "seq": first + offset,
                "changes": part,
                "transaction_id": transaction_id,
                **({} if complete else {"incomplete": True}),
                "created_at": now,
                "purge_at": now + self.change_retention,
            }
            for offset, part in enumerate(parts)
        ]
        try:
            collection(ChangeDocument).insert_many(records, ordered=False)
        except pymongo.errors.BulkWriteError as exc:
            # Written already (a retried call) is fine; anything else is not.
            if any(error.get("code") != DUPLICATE_KEY for error in exc.details.get("writeErrors", [])):
                raise
        return revision

    @translate_errors()
    def changes_after(
        self, domain_id: str, seq: int, limit: int = 1000, upto: int | None = None
    ) -> list[dict[str, Any]]:
        """The domain's change records after `seq` (up to `upto` included, when given), in order
        (at most `limit`)."""
        seqs: dict[str, int] = {"$gt": seq}
        if upto is not None:
            seqs["$lte"] = upto
        found = (
            collection(ChangeDocument)
            .find({"domain_id": domain_id, "seq": seqs}, {"_id": 0})
            .sort("seq", 1)
            .limit(limit)
        )
        return list(found)

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
    def keep_write(self, domain_id: str, mark: str) -> None:
        """Renews the mark of a write that is still under way (a long one renews it as it goes,
        so readers keep waiting for it; a writer that died stops renewing, and its mark runs out)."""
        collection(RevisionDocument).update_one(
            {"domain_id": domain_id, f"writes.{mark}": {"$exists": True}},
            {"$set": {f"writes.{mark}": time.time() + WRITE_MARK_SECONDS}},
        )

    @translate_errors()
    def end_write(
        self,
        domain_id: str,
        mark: str,
        changes: list[Change] | None = None,
        transaction_id: str = "",
        complete: bool = True,
        settle: Settle | None = None,
    ) -> int:
        """Lands the write: one update removes its mark and bumps the revision (then its change
        record is written, as for bump). Returns the new revision."""
        return self._land(
            domain_id,
            {"$inc": {"revision": 1, "landed": 1}, "$unset": {f"writes.{mark}": ""}},
            changes or [],
            transaction_id,
            complete,
            settle,
        )


def _count(revisions, domain_id: str, update: dict[str, Any]) -> dict | None:
    """Applies `update` to the domain's revision counter; the counter after it, None when the
    domain has none yet. (The projection keeps `_id`: the embedded store takes a document it
    projects to nothing, one whose counter a begin_write created, for no document at all.)"""
    return revisions.find_one_and_update(
        {"domain_id": domain_id}, update, projection={"revision": 1}, return_document=ReturnDocument.AFTER
    )
