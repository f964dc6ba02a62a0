"""When a domain's evaluation caches must be invalidated, and what goes into its change log."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

from policyhub.manager.revision_manager import RevisionManager
from policyhub.service.consistency import consistency_token

# How often a long write under way renews its mark (see RevisionManager.keep_write): well within
# the mark's lifetime.
KEEP_WRITE_SECONDS = 5.0


class ChangeSet:
    """What a write changed, told by the service as it goes; its token once the write landed."""

    def __init__(self, keep: Callable[[], None] | None = None) -> None:
        self.items: list[dict[str, str]] = []
        self.revision = 0
        self._keep = keep
        self._kept_at = time.monotonic()

    def keep_alive(self) -> None:
        """Called as a long write goes on (between its batches): renews the write-under-way mark
        of an `invalidating_at_once` write every few seconds, so readers keep waiting for it."""
        if self._keep is not None and time.monotonic() - self._kept_at >= KEEP_WRITE_SECONDS:
            self._keep()
            self._kept_at = time.monotonic()

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
    changes = ChangeSet(keep=lambda: revisions.keep_write(domain_id, mark))
    failed = True
    try:
        yield changes
        failed = False
    finally:
        changes.revision = revisions.end_write(domain_id, mark, [] if failed else changes.items, transaction_id)
