"""When a domain's evaluation caches must be invalidated, and what goes into its change log."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from policyhub.manager.revision_manager import RevisionManager
from policyhub.service.consistency import consistency_token


class ChangeSet:
    """What a write changed, told by the service as it goes; its token once the write landed."""

    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []
        self.revision = 0

    def add(self, kind: str, item_id: str, operation: str) -> None:
        self.items.append({"kind": kind, "id": item_id, "operation": operation})

    @property
    def token(self) -> str:
        return consistency_token(self.revision)


@contextmanager
def invalidating(revisions: RevisionManager, domain_id: str, transaction_id: str = "") -> Iterator[ChangeSet]:
    """Bumps the domain's revision when the block ends, however it ends (a write that failed
    half-way, or was rolled back, may still have been seen by an index built meanwhile), and
    logs the changes the block told its ChangeSet (none when it failed)."""
    changes = ChangeSet()
    failed = True
    try:
        yield changes
        failed = False
    finally:
        changes.revision = revisions.bump(domain_id, [] if failed else changes.items, transaction_id)


@contextmanager
def invalidating_at_once(revisions: RevisionManager, domain_id: str, transaction_id: str = "") -> Iterator[ChangeSet]:
    """As `invalidating`, for a write of several documents that must be seen all at once (a
    rename moving every assignment that names the old id): no evaluation index is built while
    it is under way, so no check ever answers from half of it (see IndexCache.get)."""
    mark = revisions.begin_write(domain_id)
    changes = ChangeSet()
    failed = True
    try:
        yield changes
        failed = False
    finally:
        changes.revision = revisions.end_write(domain_id, mark, [] if failed else changes.items, transaction_id)
